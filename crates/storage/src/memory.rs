//! In-memory storage for unit tests. Never the only test of a feature: the conformance test
//! and the CLI tests run against real directories.
use std::collections::BTreeMap;
use std::sync::Mutex;

use lifeboat_core::{ListEntry, ObjectKind, Storage, StorageError, StorageResult};

/// Objects in a map, keyed by their layout path ([`ObjectKind::object_path`]), so names map to
/// objects exactly as in a real destination (`config` has one name, whatever is asked).
#[derive(Default)]
pub struct MemoryStorage {
    objects: Mutex<BTreeMap<String, (ObjectKind, Vec<u8>)>>,
}

impl std::fmt::Debug for MemoryStorage {
    // Hand-written so a test failure never dumps repository contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStorage(..)")
    }
}

impl MemoryStorage {
    /// Empty storage.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }
    fn key(kind: ObjectKind, name: &str) -> String {
        kind.object_path(name)
    }
}

impl Storage for MemoryStorage {
    fn location(&self) -> String {
        "memory".into()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        Ok(self
            .objects
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, (k, _))| *k == kind)
            .map(|(path, (_, v))| ListEntry {
                // The name is the path's last segment (`config` for the config).
                name: path.rsplit('/').next().unwrap_or(path).to_string(),
                size: v.len() as u64,
            })
            .collect())
    }
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        self.objects
            .lock()
            .expect("lock")
            .get(&Self::key(kind, name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| StorageError::NotFound {
                what: format!("{kind} {name}"),
            })
            .and_then(|v| {
                kind.check_size(format!("{kind} {name}"), v.len() as u64)?;
                Ok(v)
            })
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        let all = self.read(kind, name)?;
        let end = offset + len;
        if end > all.len() as u64 {
            return Err(StorageError::Truncated {
                what: format!("{kind} {name}"),
                size: all.len() as u64,
                wanted_end: end,
            });
        }
        Ok(all[offset as usize..end as usize].to_vec())
    }
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        self.objects
            .lock()
            .expect("lock")
            .insert(Self::key(kind, name), (kind, data.to_vec()));
        Ok(())
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        self.objects
            .lock()
            .expect("lock")
            .remove(&Self::key(kind, name))
            .map(|_| ())
            .ok_or_else(|| StorageError::NotFound {
                what: format!("{kind} {name}"),
            })
    }
}
