//! An in-memory `Storage` for core's own unit tests (core cannot dev-depend on
//! lifeboat-storage's `MemoryStorage`: that would link two copies of core's types). Lease
//! writes fail while `unreachable` is set: a store that went away for longer than half a
//! lease's lifetime.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::storage::{ListEntry, ObjectKind, Storage, StorageError, StorageResult};

/// Objects in memory; lease writes fail while `unreachable` is set (a store that went
/// away for longer than half a lease's lifetime).
#[derive(Default)]
pub(crate) struct TestStore {
    objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    /// While set, lease writes fail.
    pub(crate) unreachable: AtomicBool,
    /// Reads of objects with these names fail as a store that timed out would.
    pub(crate) failing_reads: Mutex<Vec<String>>,
}

impl TestStore {
    /// The names of the objects of `kind`.
    pub(crate) fn names(&self, kind: ObjectKind) -> Vec<String> {
        self.list(kind)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }
    /// Every object but the leases.
    pub(crate) fn snapshot(&self) -> BTreeMap<(String, String), Vec<u8>> {
        let mut m = self.objects.lock().unwrap().clone();
        m.retain(|(k, _), _| k != &ObjectKind::Lease.to_string());
        m
    }
}

impl Storage for TestStore {
    fn location(&self) -> String {
        "test store".into()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        let k = kind.to_string();
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|((kk, _), _)| *kk == k)
            .map(|((_, n), v)| ListEntry {
                name: n.clone(),
                size: v.len() as u64,
            })
            .collect())
    }
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        if self.failing_reads.lock().unwrap().iter().any(|n| n == name) {
            return Err(StorageError::Remote {
                what: format!("{kind} {name}"),
                message: "timed out".into(),
                retryable: true,
            });
        }
        let k = (kind.to_string(), name.to_string());
        self.objects
            .lock()
            .unwrap()
            .get(&k)
            .cloned()
            .ok_or_else(|| StorageError::NotFound {
                what: format!("{kind} {name}"),
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
        Ok(all[offset as usize..(offset + len) as usize].to_vec())
    }
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        if kind == ObjectKind::Lease && self.unreachable.load(Ordering::SeqCst) {
            return Err(StorageError::Remote {
                what: format!("{kind} {name}"),
                message: "connection refused".into(),
                retryable: true,
            });
        }
        let k = (kind.to_string(), name.to_string());
        self.objects.lock().unwrap().insert(k, data.to_vec());
        Ok(())
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        let k = (kind.to_string(), name.to_string());
        self.objects.lock().unwrap().remove(&k);
        Ok(())
    }
}
