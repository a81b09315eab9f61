//! Key slots: several passwords open the same repository. Adding and removing one is
//! recorded in the audit log (`key add`, `key remove`: the slot's id, never a password).
use lifeboat_core::{AuditEvent, KeyInfo, Result};

use crate::audit::{audited, Audited};
use crate::password::PasswordSource;
use crate::setup::Setup;

/// Adds a key slot for the password from `new` (else `LIFEBOAT_NEW_PASSWORD`), with the
/// repository's argon2id cost; returns its id.
pub fn add_key(setup: &Setup, label: &str, new: &PasswordSource) -> Result<String> {
    audited(setup, "key add", None, || {
        let repo = setup.open(None)?;
        let pw = new.resolve(&PasswordSource::default(), "LIFEBOAT_NEW_PASSWORD")?;
        lifeboat_core::add_key(&repo, &pw, label).map(Slot)
    })
    .map(|s| s.0)
}

/// The key slots.
pub fn list_keys(setup: &Setup) -> Result<Vec<KeyInfo>> {
    lifeboat_core::list_keys(&setup.open(None)?)
}

/// Removes the key slot with this id prefix; returns its id.
pub fn remove_key(setup: &Setup, id: &str) -> Result<String> {
    audited(setup, "key remove", None, || {
        lifeboat_core::remove_key(&setup.open(None)?, id).map(Slot)
    })
    .map(|s| s.0)
}

/// A key slot added or removed (its id).
struct Slot(String);

impl Audited for Slot {
    fn facts(&self, ev: &mut AuditEvent) {
        ev.message = format!("key slot {}", &self.0[..8.min(self.0.len())]);
    }
}
