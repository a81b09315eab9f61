use clap::Args;
use lifeboat_core::Result;

use super::Context;
use crate::output::{esc, outln};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// argon2id memory in MiB for the key slot (default 64)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub kdf_memory_mib: u32,
    /// Make a replica of this repository (a [repository.NAME] of lifeboat.toml, a path or a
    /// URL): same id and key slots, filled by `lifeboat copy`
    #[arg(long, value_name = "SOURCE")]
    pub from: Option<String>,
}

pub fn run(ctx: &Context, a: InitArgs) -> Result<()> {
    if let Some(src) = &a.from {
        let c = lifeboat_app::init_from(&ctx.setup, src)?;
        outln!(
            "created a replica of repository {} at {} (from {})",
            &c.id[..8],
            esc(&c.location),
            esc(c.from.as_deref().unwrap_or_default())
        );
        outln!("fill it with `lifeboat copy --to {}`", esc(&c.location));
        return Ok(());
    }
    let c = lifeboat_app::init(&ctx.setup, a.kdf_memory_mib)?;
    outln!(
        "created lifeboat repository {} at {}",
        &c.id[..8],
        esc(&c.location)
    );
    outln!("keep the password safe: without it nothing in this repository can be read");
    Ok(())
}
