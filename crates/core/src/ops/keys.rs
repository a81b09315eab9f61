//! Key slots: several passwords open the same master key (`key add|list|remove`).
use serde::Serialize;

use crate::error::{err, Result};
use crate::format::key::KeyFile;
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
    /// Why the slot cannot be read (damaged, or written by a newer lifeboat); it is listed
    /// (and can be removed) rather than failing the whole listing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// Adds a slot for `password` with the repository's argon2id cost (that of the slot that
/// unlocked it, [`Repository::kdf`]), not the default: a repository made with a higher cost
/// keeps it; returns its name.
pub fn add_key(repo: &Repository, password: &[u8], label: &str) -> Result<String> {
    if password.is_empty() {
        return Err(err!(Usage, "the new password is empty"));
    }
    let slot = KeyFile::wrap(repo.key(), password, &repo.config().id, repo.kdf(), label)?;
    let bytes = slot.to_bytes();
    let name = ObjectId::of(&bytes).to_hex();
    repo.storage().write(ObjectKind::Key, &name, &bytes)?;
    Ok(name)
}

/// Lists the slots.
pub fn list_keys(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for e in repo.storage().list(ObjectKind::Key)? {
        let parsed = repo
            .storage()
            .read(ObjectKind::Key, &e.name)
            .map_err(crate::error::Error::from)
            .and_then(|bytes| KeyFile::parse(&bytes, &e.name));
        let f = match parsed {
            Ok(f) => f,
            // A store that cannot be reached fails the listing; one bad slot does not.
            Err(err) if err.is_retryable() => return Err(err),
            Err(err) => {
                out.push(KeyInfo {
                    current: false,
                    id: e.name,
                    created: String::new(),
                    hostname: String::new(),
                    label: String::new(),
                    damaged: Some(err.to_string()),
                });
                continue;
            }
        };
        out.push(KeyInfo {
            current: e.name == repo.key_name(),
            id: e.name,
            created: f.created,
            hostname: f.hostname,
            label: f.label,
            damaged: None,
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
        return Err(err!(Refused, "key slot {} is the one this password opened", k.id.chars().take(8).collect::<String>())
            .with_hint("open the repository with another password to remove this slot, so you cannot lock yourself out"));
    }
    if k.damaged.is_none() && keys.iter().filter(|k| k.damaged.is_none()).count() == 1 {
        return Err(err!(
            Refused,
            "key slot {} is the last one",
            k.id.chars().take(8).collect::<String>()
        ));
    }
    repo.storage().delete(ObjectKind::Key, &k.id)?;
    Ok(k.id.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::format::key::KdfParams;
    use crate::storage::Storage;

    use crate::test_store::TestStore as Store;

    /// Not the default, so a slot made with the default cost is told apart.
    const COST: KdfParams = KdfParams {
        memory_kib: 1024,
        iterations: 2,
        parallelism: 1,
    };

    fn new_repo() -> (Arc<dyn Storage>, Repository) {
        let storage: Arc<dyn Storage> = Arc::new(Store::default());
        let repo = Repository::init(Arc::clone(&storage), b"pw", COST).unwrap();
        (storage, repo)
    }

    #[test]
    fn key_add_uses_the_repository_cost() {
        let (storage, _) = new_repo();
        let repo = Repository::open(Arc::clone(&storage), b"pw").unwrap();
        assert_eq!(repo.kdf(), COST);
        let name = add_key(&repo, b"second", "two").unwrap();
        let slot = KeyFile::parse(&storage.read(ObjectKind::Key, &name).unwrap(), &name).unwrap();
        assert_eq!(slot.params, COST, "the new slot has the repository's cost");
        let again = Repository::open(Arc::clone(&storage), b"second").unwrap();
        assert_eq!(again.key_name(), name);
        assert_eq!(again.kdf(), COST);
    }

    #[test]
    fn slot_with_unbounded_cost_is_skipped() {
        let (storage, repo) = new_repo();
        // A planted slot (the password is right, the cost would run for days): its params
        // are not authenticated, so it is damaged and the good slot still opens.
        let mut slot = KeyFile::wrap(repo.key(), b"pw", &repo.config().id, COST, "").unwrap();
        slot.params = KdfParams {
            memory_kib: 8,
            iterations: u32::MAX,
            parallelism: 1,
        };
        let bytes = slot.to_bytes();
        let bad = crate::id::ObjectId::of(&bytes).to_hex();
        storage.write(ObjectKind::Key, &bad, &bytes).unwrap();
        let start = std::time::Instant::now();
        let opened = Repository::open(Arc::clone(&storage), b"pw").unwrap();
        assert_ne!(opened.key_name(), bad);
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        // Alone, it makes the repository's slots all damaged.
        storage.delete(ObjectKind::Key, repo.key_name()).unwrap();
        let e = Repository::open(Arc::clone(&storage), b"pw").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
    }
}
