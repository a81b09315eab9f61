//! Create a repository, or a replica of one.
use lifeboat_core::{init_replica, KdfParams, Repository, Result};
use serde::Serialize;

use crate::setup::Setup;

/// A repository created.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// Repository id (hex).
    pub id: String,
    /// Where it is.
    pub location: String,
    /// For a replica: the location of the repository it copies.
    pub from: Option<String>,
}

/// Creates the repository (the only one, or the override) with a first key slot whose
/// argon2id memory is `kdf_memory_mib`.
pub fn init(setup: &Setup, kdf_memory_mib: u32) -> Result<Created> {
    let (storage, password) = setup.storage_for(None)?;
    let kdf = KdfParams {
        memory_kib: kdf_memory_mib * 1024,
        ..KdfParams::default()
    };
    let repo = Repository::init(storage, &password, kdf)?;
    Ok(Created {
        id: repo.config().id.clone(),
        location: repo.storage().location(),
        from: None,
    })
}

/// Creates the repository (the only one, or the override) as a replica of `from` (same id
/// and key slots; no password needed).
pub fn init_from(setup: &Setup, from: &str) -> Result<Created> {
    let src = setup.storage_named(from)?;
    let to = setup.storage_only(None)?;
    let config = init_replica(src.as_ref(), to.as_ref())?;
    Ok(Created {
        id: config.id,
        location: to.location(),
        from: Some(src.location()),
    })
}
