//! Sessions: the one door through which anything is added to a repository or read for a
//! restore. Why (`docs/ARCHITECTURE.md`, "Prune beside running backups"): a point is safe
//! beside a concurrent prune only if its writer took a lease *before* it listed prune records
//! and loaded the index, recorded the records it saw in that lease, never deduplicated
//! against condemned packs, and published nothing once its lease may have looked dead to a
//! prune. Each caller (backup, restore, copy, prune) once hand-coded that order, and one
//! forgotten step in a new caller (a continuous capture loop that runs for days, a drill)
//! would write a point under a lapsed lease.
//!
//! So the order lives here, and only here:
//! - [`Repository::begin_backup`] takes the lease, then loads the index, then records the
//!   prune records seen. The [`BackupSession`] owns the only [`ChunkWriter`] handed out;
//!   [`BackupSession::commit`] flushes it (packs, then index objects), refuses when the lease
//!   lapsed, and only then writes the point, last.
//! - [`Repository::begin_restore`] takes a lease (best effort: read-only media must restore)
//!   and loads the index; a [`RestoreSession`] hands out readers.
//! - copy, forget and prune hold a [`Publisher`] (a lease) and publish each mutation through
//!   [`Publisher::publish`], which refuses once the lease lapsed.
//!
//! `Repository` itself has no public way to write a point, pack or index object: outside core
//! nothing holds the key to seal one (`Repository::storage` only moves raw bytes).
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::format::delta::Delta;
use crate::format::point::Point;
use crate::format::proof::ProofRecord;
use crate::id::ObjectId;
use crate::lease::LeaseGuard;
use crate::reader::ChunkReader;
use crate::repository::Repository;
use crate::storage::Storage;
use crate::writer::{ChunkWriter, WriteSummary};

/// A lease held by an operation that mutates a repository. Every mutation that a concurrent
/// prune must be able to account for goes through [`Publisher::publish`].
pub(crate) struct Publisher {
    lease: LeaseGuard,
}

impl Publisher {
    /// Takes a lease for `operation` on `storage` (no key needed: copy has none).
    pub(crate) fn acquire(
        storage: Arc<dyn Storage>,
        operation: &str,
        ttl: Duration,
    ) -> Result<Self> {
        Ok(Publisher {
            lease: LeaseGuard::acquire(storage, operation, ttl)?,
        })
    }

    /// Runs `mutation` if the lease is still alive; else refuses and runs nothing.
    pub(crate) fn publish<T>(&self, mutation: impl FnOnce() -> Result<T>) -> Result<T> {
        self.lease.check_alive()?;
        mutation()
    }

    /// The lease (prune compares it with the leases it lists).
    pub(crate) fn lease(&self) -> &LeaseGuard {
        &self.lease
    }
}

impl Repository {
    /// Opens a backup session: takes a `backup` lease, then loads the index (so a prune
    /// that condemns packs after this is seen and its packs are never deduplicated against,
    /// and one that condemned them before waits for this lease), then records the prune
    /// records seen in the lease. Fails when the repository is not writable.
    pub fn begin_backup(&mut self) -> Result<BackupSession<'_>> {
        let publisher = Publisher::acquire(Arc::clone(self.storage()), "backup", self.lease_ttl)?;
        self.load_index()?;
        publisher
            .lease()
            .set_seen_prunes(self.seen_prunes().to_vec())?;
        let repo: &Repository = self;
        Ok(BackupSession {
            repo,
            writer: Some(repo.writer()),
            reader: repo.reader(),
            publisher,
        })
    }

    /// Opens a restore session: takes a `restore` lease so that a prune waits instead of
    /// deleting packs under this restore, then loads the index. The lease is best effort: a
    /// restore from read-only media or with read-only credentials must still work (without
    /// it a concurrent prune can only make the restore fail loudly, never restore wrong data).
    pub fn begin_restore(&mut self) -> Result<RestoreSession<'_>> {
        let lease = LeaseGuard::acquire(Arc::clone(self.storage()), "restore", self.lease_ttl)
            .map_err(|e| {
                tracing::warn!(
                    "restoring without a lease (a prune elsewhere could interrupt this restore): {e}"
                )
            })
            .ok();
        self.load_index()?;
        if let Some(l) = &lease {
            let _ = l.set_seen_prunes(self.seen_prunes().to_vec());
        }
        Ok(RestoreSession {
            repo: self,
            _lease: lease,
        })
    }
}

/// A backup in progress: the lease, the loaded index and the one writer. Dropped without
/// [`BackupSession::commit`], it publishes nothing (packs already written stay unreferenced
/// until prune, which is harmless).
///
/// The only way to store chunks and write a point:
/// ```no_run
/// # use lifeboat_core::{Point, Repository, Result};
/// fn backup(repo: &mut Repository, make_point: impl FnOnce(Vec<lifeboat_core::ChunkId>) -> Point) -> Result<()> {
///     let mut session = repo.begin_backup()?; // lease, then index
///     let chunks = session.writer().store_bytes(b"config = 1")?;
///     session.commit(|_summary| make_point(chunks))?; // packs, index, lease check, point
///     Ok(())
/// }
/// ```
/// There is no other: a repository does not hand out a writer,
/// ```compile_fail
/// fn sneak(repo: &lifeboat_core::Repository) {
///     let _writer = repo.writer();
/// }
/// ```
/// nor write a point by itself.
/// ```compile_fail
/// fn sneak(repo: &lifeboat_core::Repository, point: &lifeboat_core::Point) {
///     let _ = repo.write_point(point);
/// }
/// ```
pub struct BackupSession<'r> {
    repo: &'r Repository,
    /// Always `Some` until `commit` takes it.
    writer: Option<ChunkWriter<'r>>,
    reader: ChunkReader<'r>,
    publisher: Publisher,
}

impl<'r> BackupSession<'r> {
    /// The repository (points, config; read-only). Borrowed from the session, so nothing
    /// taken from it outlives the session's lease.
    pub fn repository(&self) -> &Repository {
        self.repo
    }

    /// The writer new chunks go through.
    pub fn writer(&mut self) -> &mut ChunkWriter<'r> {
        self.writer
            .as_mut()
            .expect("a session's writer lives until commit (or a failed commit_delta)")
    }

    /// The writer and the session's reader (previous page tables and trees) at once, as a
    /// capture needs them. Both are borrowed from the session: neither outlives its lease.
    pub fn parts(&mut self) -> (&mut ChunkWriter<'r>, &mut ChunkReader<'r>) {
        (
            self.writer
                .as_mut()
                .expect("a session's writer lives until commit"),
            &mut self.reader,
        )
    }

    /// Fails now if the lease lapsed (a long capture may call this to stop early).
    pub fn check_alive(&self) -> Result<()> {
        self.publisher.lease().check_alive()
    }

    /// Makes the backup visible: flushes the writer (packs, then index objects, durable),
    /// lets `point` fill in the point from what was stored, checks that the lease is still
    /// alive and only then writes the point. On any error nothing is published.
    pub fn commit(
        mut self,
        point: impl FnOnce(&WriteSummary) -> Point,
    ) -> Result<(ObjectId, Point)> {
        self.publisher.lease().check_alive()?;
        let writer = self
            .writer
            .take()
            .expect("a session's writer lives until commit");
        let summary = writer.finish()?;
        let point = point(&summary);
        let id = self.publisher.publish(|| self.repo.write_point(&point))?;
        Ok((id, point))
    }

    /// Publishes one link of a continuous chain (`docs/FORMAT.md` §17) and keeps the session
    /// open for the next: flushes the writer (packs, then index objects, durable), lets
    /// `delta` fill in the record, checks the lease and writes it; then a fresh writer takes
    /// the next interval's pages. On any error nothing is published and the session is spent
    /// (the caller opens a new one).
    ///
    /// A session held across intervals must still end within minutes: a prune that condemned
    /// packs after it began waits for it to end before sweeping (see `docs/ARCHITECTURE.md`,
    /// "Continuous capture").
    pub fn commit_delta(
        &mut self,
        delta: impl FnOnce(&WriteSummary) -> Delta,
    ) -> Result<(ObjectId, Delta)> {
        self.publisher.lease().check_alive()?;
        let mut writer = self
            .writer
            .take()
            .expect("a session's writer lives until commit");
        let whole = writer.take_whole();
        let summary = writer.finish()?;
        let delta = delta(&summary);
        let id = self.publisher.publish(|| self.repo.write_delta(&delta))?;
        let mut next = self.repo.writer();
        // Its pages stored whole are durable and indexed now: bases for the next intervals'
        // page patches (the loaded index is the session's start's).
        next.set_whole(whole);
        self.writer = Some(next);
        Ok((id, delta))
    }
}

/// A restore (or any read of point data) in progress: the lease, if it could be taken, and
/// the loaded index.
pub struct RestoreSession<'r> {
    repo: &'r Repository,
    _lease: Option<LeaseGuard>,
}

impl RestoreSession<'_> {
    /// The repository (points, config; read-only), borrowed from the session.
    pub fn repository(&self) -> &Repository {
        self.repo
    }

    /// A reader of stored chunks; every chunk it returns is authenticated. It borrows the
    /// session,
    /// ```no_run
    /// fn within(repo: &mut lifeboat_core::Repository) -> lifeboat_core::Result<()> {
    ///     let session = repo.begin_restore()?;
    ///     let mut reader = session.reader();
    ///     reader.read(&lifeboat_core::ChunkId([0; 16]))?;
    ///     Ok(())
    /// }
    /// ```
    /// so no read happens after the session (and its lease) ended:
    /// ```compile_fail
    /// fn outlive(repo: &mut lifeboat_core::Repository) -> lifeboat_core::Result<()> {
    ///     let mut reader = repo.begin_restore()?.reader(); // the session is dropped here
    ///     reader.read(&lifeboat_core::ChunkId([0; 16]))?;
    ///     Ok(())
    /// }
    /// ```
    pub fn reader(&self) -> ChunkReader<'_> {
        self.repo.reader()
    }

    /// The readable proof records of `point` (`docs/FORMAT.md` §16): which of its databases
    /// already passed `integrity_check` on their restored bytes. Best effort: records that
    /// cannot be read are skipped with a warning (the checks then run).
    pub fn proofs(&self, point: &ObjectId) -> Vec<ProofRecord> {
        crate::proofs::of_point(self.repo, point)
    }

    /// Writes a proof record (after a check passed on restored bytes). Not published through
    /// a lease: a record references no chunk, so a prune can never lose data over it; one for a
    /// point forgotten meanwhile is dropped by the next prune.
    pub fn record_proof(&self, record: &ProofRecord) -> Result<ObjectId> {
        crate::proofs::write(self.repo, record)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::format::key::KdfParams;
    use crate::format::point::{Component, ComponentKind, PointStats, TreeBody};
    use crate::storage::ObjectKind;

    use crate::test_store::TestStore as Store;

    fn point(app: &str, chunks: Vec<crate::ChunkId>, summary: &WriteSummary) -> Point {
        Point {
            app: app.into(),
            time: jiff::Timestamp::now().to_string(),
            tags: vec![],
            hostname: "test".into(),
            lifeboat_version: "test".into(),
            components: vec![Component {
                kind: ComponentKind::Config,
                path: "/etc/app.toml".into(),
                size: 0,
                sqlite: None,
                tree: Some(TreeBody {
                    entries: chunks,
                    files: 0,
                    dirs: 0,
                    symlinks: 0,
                }),
                postgres: None,
            }],
            stats: PointStats {
                bytes_new: summary.bytes_new,
                ..PointStats::default()
            },
            definition: None,
        }
    }

    fn repo(store: &Arc<Store>, ttl: Duration) -> Repository {
        let storage: Arc<dyn Storage> = Arc::clone(store) as Arc<dyn Storage>;
        let mut r = Repository::init(
            storage,
            b"pw",
            KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            },
        )
        .unwrap();
        r.lease_ttl = ttl;
        r
    }

    #[test]
    fn a_commit_under_a_lapsed_lease_publishes_nothing() {
        let store = Arc::new(Store::default());
        let mut repo = repo(&store, Duration::from_secs(2));
        // One good point first.
        let mut s = repo.begin_backup().unwrap();
        let ids = s.writer().store_bytes(b"first version").unwrap();
        let (first, _) = s.commit(|sum| point("app", ids, sum)).unwrap();
        let before = store.snapshot();

        let mut s = repo.begin_backup().unwrap();
        let ids = s.writer().store_bytes(&vec![7u8; 300_000]).unwrap();
        // The store stops taking the lease's refreshes for longer than half its lifetime
        // (2 s): a prune elsewhere may now judge this backup dead.
        store.unreachable.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1300));
        assert!(s.check_alive().is_err());
        store.unreachable.store(false, Ordering::SeqCst);
        // Even once the store is back, the lease stays lapsed for good.
        std::thread::sleep(Duration::from_millis(500));
        let err = s.commit(|sum| point("app", ids, sum)).unwrap_err();
        assert!(err.to_string().contains("nothing was published"), "{err}");
        assert!(err.is_retryable());
        // The repository is as it was: the same objects (the refused commit did not even
        // flush its writer), the one earlier point.
        assert_eq!(store.snapshot(), before);
        assert_eq!(store.names(ObjectKind::Point), vec![first.to_hex()]);
        // And a new session works again.
        let mut s = repo.begin_backup().unwrap();
        let ids = s.writer().store_bytes(b"third").unwrap();
        s.commit(|sum| point("app", ids, sum)).unwrap();
        assert_eq!(store.names(ObjectKind::Point).len(), 2);
        assert!(store.names(ObjectKind::Lease).is_empty(), "leases released");
    }

    #[test]
    fn a_session_holds_its_lease_until_it_ends() {
        let store = Arc::new(Store::default());
        let mut repo = repo(&store, Duration::from_secs(60));
        let s = repo.begin_backup().unwrap();
        assert_eq!(store.names(ObjectKind::Lease).len(), 1);
        drop(s);
        assert!(store.names(ObjectKind::Lease).is_empty());
        assert!(
            store.names(ObjectKind::Point).is_empty(),
            "dropped: nothing published"
        );
        let r = repo.begin_restore().unwrap();
        assert_eq!(store.names(ObjectKind::Lease).len(), 1);
        drop(r);
        assert!(store.names(ObjectKind::Lease).is_empty());
    }
}
