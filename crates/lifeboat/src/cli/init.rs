use clap::Args;
use lifeboat_core::{KdfParams, Repository, Result};

use super::Context;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// argon2id memory in MiB for the key slot (default 64)
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub kdf_memory_mib: u32,
}

pub fn run(ctx: &Context, a: InitArgs) -> Result<()> {
    let (storage, password) = ctx.storage_for(None)?;
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
