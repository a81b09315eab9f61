//! Key slots: several passwords open the same repository.
use lifeboat_core::{KeyInfo, Result};

use crate::password::PasswordSource;
use crate::setup::Setup;

/// Adds a key slot for the password from `new` (else `LIFEBOAT_NEW_PASSWORD`), with the
/// repository's argon2id cost; returns its id.
pub fn add_key(setup: &Setup, label: &str, new: &PasswordSource) -> Result<String> {
    let repo = setup.open(None)?;
    let pw = new.resolve(&PasswordSource::default(), "LIFEBOAT_NEW_PASSWORD")?;
    lifeboat_core::add_key(&repo, &pw, label)
}

/// The key slots.
pub fn list_keys(setup: &Setup) -> Result<Vec<KeyInfo>> {
    lifeboat_core::list_keys(&setup.open(None)?)
}

/// Removes the key slot with this id prefix; returns its id.
pub fn remove_key(setup: &Setup, id: &str) -> Result<String> {
    lifeboat_core::remove_key(&setup.open(None)?, id)
}
