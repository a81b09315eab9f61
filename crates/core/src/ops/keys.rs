//! Key slots: several passwords open the same master key (`key add|list|remove`).
use serde::Serialize;

use crate::error::{err, Result};
use crate::format::key::{KdfParams, KeyFile};
use crate::id::ObjectId;
use crate::repository::Repository;
use crate::storage::ObjectKind;

/// One key slot as listed.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Slot name (hex id).
    pub id: String,
    /// When it was added.
    pub created: String,
    /// Host that added it.
    pub hostname: String,
    /// Operator's label.
    pub label: String,
    /// Whether this slot opened the repository in this run.
    pub current: bool,
}

/// Adds a slot for `password`; returns its name.
pub fn add_key(repo: &Repository, password: &[u8], label: &str, kdf: KdfParams) -> Result<String> {
    if password.is_empty() {
        return Err(err!(Usage, "the new password is empty"));
    }
    let slot = KeyFile::wrap(repo.key(), password, &repo.config().id, kdf, label)?;
    let bytes = slot.to_bytes();
    let name = ObjectId::of(&bytes).to_hex();
    repo.storage().write(ObjectKind::Key, &name, &bytes)?;
    Ok(name)
}

/// Lists the slots.
pub fn list_keys(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for e in repo.storage().list(ObjectKind::Key)? {
        let f = KeyFile::parse(&repo.storage().read(ObjectKind::Key, &e.name)?, &e.name)?;
        out.push(KeyInfo {
            current: e.name == repo.key_name(),
            id: e.name,
            created: f.created,
            hostname: f.hostname,
            label: f.label,
        });
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// Removes the slot whose name starts with `prefix`. Refuses to remove the slot that opened
/// the repository in this run (so nobody locks themselves out) and the last slot.
pub fn remove_key(repo: &Repository, prefix: &str) -> Result<String> {
    let keys = list_keys(repo)?;
    let found: Vec<_> = keys.iter().filter(|k| k.id.starts_with(prefix)).collect();
    let k = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(err!(Usage, "no key slot starts with {prefix:?}")
                .with_hint("`lifeboat key list` shows the slots"))
        }
        _ => {
            return Err(err!(Usage, "several key slots start with {prefix:?}")
                .with_hint("give more characters"))
        }
    };
    if k.current {
        return Err(err!(Refused, "key slot {} is the one this password opened", &k.id[..8])
            .with_hint("open the repository with another password to remove this slot, so you cannot lock yourself out"));
    }
    if keys.len() == 1 {
        return Err(err!(Refused, "key slot {} is the last one", &k.id[..8]));
    }
    repo.storage().delete(ObjectKind::Key, &k.id)?;
    Ok(k.id.clone())
}
