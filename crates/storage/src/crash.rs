//! Fault injection for crash tests: a [`Storage`] that kills its own process (abort, like
//! SIGKILL: no destructor, no cleanup) right before its N-th mutation (write or delete).
//! Enabled only by `LIFEBOAT_CRASH_BEFORE_MUTATION=N` (see `tests/cli/retention.rs`, which
//! kills prune before each of its mutations in turn); never set it in production.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lifeboat_core::{ListEntry, ObjectKind, RequestStats, Storage, StorageResult};

/// See the module documentation.
pub struct CrashBefore {
    inner: Arc<dyn Storage>,
    left: AtomicU64,
}

impl CrashBefore {
    /// Wraps `inner` if `LIFEBOAT_CRASH_BEFORE_MUTATION` is set.
    pub fn from_env(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        match std::env::var("LIFEBOAT_CRASH_BEFORE_MUTATION")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(n) if n > 0 => Arc::new(CrashBefore {
                inner,
                left: AtomicU64::new(n),
            }),
            _ => inner,
        }
    }

    fn step(&self, what: &str) {
        if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
            eprintln!("lifeboat: crash injected before {what}");
            std::process::abort();
        }
    }
}

impl Storage for CrashBefore {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        self.inner.read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        self.inner.read_range(kind, name, offset, len)
    }
    // `create` is the trait's default: it buffers and calls `write`, so a pack counts once.
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        self.step(&format!("write {kind} {name}"));
        self.inner.write(kind, name, data)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        self.step(&format!("delete {kind} {name}"));
        self.inner.delete(kind, name)
    }
    fn requests(&self) -> RequestStats {
        self.inner.requests()
    }
}
