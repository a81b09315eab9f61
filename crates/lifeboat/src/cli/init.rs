use clap::Args;
use lifeboat_core::{init_replica, KdfParams, Repository, Result};

use super::Context;

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
        let from = ctx.setup.storage_named(src)?;
        let to = ctx.setup.storage_only(None)?;
        let config = init_replica(from.as_ref(), to.as_ref())?;
        println!(
            "created a replica of repository {} at {} (from {})",
            &config.id[..8],
            to.location(),
            from.location()
        );
        println!("fill it with `lifeboat copy --to {}`", to.location());
        return Ok(());
    }
    let (storage, password) = ctx.setup.storage_for(None)?;
    let kdf = KdfParams {
        memory_kib: a.kdf_memory_mib * 1024,
        ..KdfParams::default()
    };
    let repo = Repository::init(storage, &password, kdf)?;
    println!(
        "created lifeboat repository {} at {}",
        &repo.config().id[..8],
        repo.storage().location()
    );
    println!("keep the password safe: without it nothing in this repository can be read");
    Ok(())
}
