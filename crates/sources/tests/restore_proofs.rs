//! Restores of real WAL-mode SQLite databases through `restore_point`, and the proof records
//! (`docs/FORMAT.md` §16) that let a later restore of the same bytes skip SQLite's check.
//!
//! What must hold: the restored file is byte-equal to the database backed up; a passed
//! `integrity_check` is recorded once and used only for exactly the point, checksum and page
//! count it names (also when restored to another file) (a forged or mismatched record changes nothing); a record never lets a
//! damaged block through; prune drops the records of forgotten points and keeps the others;
//! copy carries them; check reads them.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_core::{
    check, copy, forget, init_replica, prune, CheckOptions, ComponentKind, Decision, ErrorKind,
    KdfParams, NoProgress, ObjectId, ObjectKind, Point, ProofRecord, ProvenDatabase, PruneOptions,
    Repository, Storage, CHECK_INTEGRITY,
};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{
    backup_app, restore_point, AppSpec, PgRestoreSettings, RestoreOptions, RestoreTarget,
    SourceSpec,
};
use lifeboat_storage::LocalStorage;

struct Setup {
    dir: tempfile::TempDir,
    storage: Arc<dyn Storage>,
    repo: Repository,
    db: PathBuf,
    /// `RestoreOptions::recheck` of the next restores.
    recheck: bool,
}

/// A WAL-mode database with an indexed table (so `integrity_check` has index entries to
/// match), checkpointed so that its file holds every page, in a local repository.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("chat.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.execute_batch(
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, channel INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE INDEX messages_channel ON messages(channel, id);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 3000)
           INSERT INTO messages(channel, body) SELECT i % 17, printf('message %d %.*c', i, i % 200, 'x') FROM n;
         PRAGMA wal_checkpoint(TRUNCATE);",
    )
    .unwrap();
    drop(c);
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path().join("repo")));
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let repo = Repository::init(Arc::clone(&storage), b"pw", kdf).unwrap();
    Setup {
        dir,
        storage,
        repo,
        db,
        recheck: false,
    }
}

impl Setup {
    fn backup(&mut self) -> (ObjectId, Point) {
        let app = AppSpec {
            name: "chat".into(),
            sources: vec![SourceSpec::path(ComponentKind::Sqlite, &self.db)],
            ..AppSpec::default()
        };
        backup_app(&mut self.repo, &app, &[], &NoProgress).unwrap()
    }

    /// Restores under `DIR/<to>` with `--verify full`; returns the `verified` text and where
    /// the file landed.
    fn restore(
        &mut self,
        id: &ObjectId,
        point: &Point,
        to: &str,
    ) -> lifeboat_core::Result<(String, PathBuf)> {
        self.restore_at(id, point, to, Verify::Full)
    }

    fn restore_at(
        &mut self,
        id: &ObjectId,
        point: &Point,
        to: &str,
        verify: Verify,
    ) -> lifeboat_core::Result<(String, PathBuf)> {
        let root = self.dir.path().join(to);
        let opts = RestoreOptions {
            target: RestoreTarget::Into(root.clone()),
            only: Vec::new(),
            force: false,
            replace_newer: false,
            app_stops_first: false,
            verify,
            verify_replayed: Verify::Quick,
            postgres: PgRestoreSettings::default(),
            keep_setid: false,
            replayed: None,
            recheck: self.recheck,
            write_proof: true,
        };
        let out = restore_point(&mut self.repo, id, point, &opts, &NoProgress)?;
        assert_eq!(out.len(), 1);
        Ok((out[0].verified.clone(), PathBuf::from(&out[0].path)))
    }

    fn proofs(&self) -> Vec<String> {
        self.storage
            .list(ObjectKind::Proof)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    fn record(&mut self, record: &ProofRecord) {
        let session = self.repo.begin_restore().unwrap();
        session.record_proof(record).unwrap();
    }
}

fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                v.extend(files_under(&e.path()));
            } else {
                v.push(e.path());
            }
        }
    }
    v
}

fn proof_of(id: &ObjectId, point: &Point) -> ProofRecord {
    let c = &point.components[0];
    let body = c.sqlite.as_ref().unwrap();
    ProofRecord {
        point: id.to_hex(),
        time: "2026-12-01T12:00:00Z".into(),
        hostname: "elsewhere".into(),
        by: "drill".into(),
        lifeboat_version: "0.1.0".into(),
        components: vec![ProvenDatabase {
            path: c.path.clone(),
            checksum: body.checksum.clone(),
            page_count: body.page_count,
            check: CHECK_INTEGRITY.into(),
        }],
        drill: None,
    }
}

#[test]
fn restored_database_is_byte_equal_and_its_check_runs_once() {
    let mut s = setup();
    let (id, point) = s.backup();
    let source = std::fs::read(&s.db).unwrap();

    let (verified, file) = s.restore(&id, &point, "one").unwrap();
    assert!(verified.contains("integrity_check ok"), "{verified}");
    assert!(
        std::fs::read(&file).unwrap() == source,
        "restored bytes differ from the source"
    );
    assert_eq!(s.proofs().len(), 1, "the passed check is recorded");

    // Same point, same bytes (restored elsewhere): the record says integrity_check already
    // passed on them.
    let (verified, file) = s.restore(&id, &point, "two").unwrap();
    assert!(verified.contains("integrity_check proven on"), "{verified}");
    assert!(verified.contains("by restore on host"), "{verified}");
    assert!(
        std::fs::read(&file).unwrap() == source,
        "restored bytes differ from the source"
    );
    assert_eq!(
        s.proofs().len(),
        1,
        "nothing new was checked, nothing new recorded"
    );

    let r = check(&mut s.repo, CheckOptions::default(), &NoProgress).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!((r.proofs, r.stale_proofs), (1, 0));
}

#[test]
fn a_quick_check_proves_quick_restores_only() {
    let mut s = setup();
    let (id, point) = s.backup();
    let (verified, _) = s.restore_at(&id, &point, "one", Verify::Quick).unwrap();
    assert!(verified.contains("quick_check ok"), "{verified}");
    assert_eq!(s.proofs().len(), 1, "the passed quick_check is recorded");
    let (verified, _) = s.restore_at(&id, &point, "two", Verify::Quick).unwrap();
    assert!(verified.contains("quick_check proven on"), "{verified}");
    // A full restore does not take a quick_check for an integrity_check...
    let (verified, _) = s.restore(&id, &point, "three").unwrap();
    assert!(
        verified.contains("integrity_check ok") && !verified.contains("proven"),
        "{verified}"
    );
    assert_eq!(s.proofs().len(), 2);
    // ...and once integrity_check passed, a quick restore needs neither.
    let (verified, _) = s.restore_at(&id, &point, "four", Verify::Quick).unwrap();
    assert!(verified.contains("proven on"), "{verified}");
    assert_eq!(s.proofs().len(), 2, "nothing new was checked");
}

#[test]
fn a_record_of_other_bytes_does_not_skip_the_check() {
    let mut s = setup();
    let (id, point) = s.backup();
    let good = proof_of(&id, &point);
    let mut forged = Vec::new();
    let mut r = good.clone();
    r.components[0].checksum = "00".repeat(16);
    forged.push(r);
    let mut r = good.clone();
    r.point = "ab".repeat(32);
    forged.push(r);
    let mut r = good.clone();
    r.components[0].page_count += 1;
    forged.push(r);
    let mut r = good.clone();
    r.components[0].check = "quick_check".into();
    forged.push(r);
    for r in &forged {
        s.record(r);
    }
    let (verified, _) = s.restore(&id, &point, "one").unwrap();
    assert!(
        verified.contains("integrity_check ok") && !verified.contains("proven"),
        "{verified}"
    );
    // The matching record (as a drill elsewhere would write it) does skip the check.
    s.record(&good);
    let (verified, _) = s.restore(&id, &point, "two").unwrap();
    assert!(
        verified
            .contains("integrity_check proven on 2026-12-01T12:00:00Z by drill on host elsewhere"),
        "{verified}"
    );
}

/// `restore --recheck` (and every drill) runs the check on proven bytes too, and records that
/// it passed again.
#[test]
fn a_recheck_runs_the_check_on_proven_bytes() {
    let mut s = setup();
    let (id, point) = s.backup();
    s.record(&proof_of(&id, &point));
    s.recheck = true;
    let (verified, _) = s.restore(&id, &point, "one").unwrap();
    assert!(
        verified.contains("integrity_check ok") && !verified.contains("proven"),
        "{verified}"
    );
    assert_eq!(
        s.proofs().len(),
        2,
        "the check that passed again is recorded"
    );
}

#[test]
fn a_record_never_admits_a_damaged_block() {
    let mut s = setup();
    let (id, point) = s.backup();
    s.restore(&id, &point, "one").unwrap();
    assert_eq!(s.proofs().len(), 1);
    // Flip one byte in the middle of every pack: the blocks no longer authenticate.
    for p in files_under(&s.dir.path().join("repo/packs")) {
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    }
    let e = s.restore(&id, &point, "two").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let left = files_under(&s.dir.path().join("two"));
    assert!(left.is_empty(), "a failed restore left {left:?}");
}

#[test]
fn prune_drops_the_records_of_forgotten_points_and_copy_carries_the_rest() {
    let mut s = setup();
    let (old, old_point) = s.backup();
    let (new, new_point) = s.backup();
    s.restore(&old, &old_point, "one").unwrap();
    s.restore(&new, &new_point, "two").unwrap();
    assert_eq!(s.proofs().len(), 2);

    let decision = |id: &ObjectId, keep: bool| Decision {
        id: id.to_hex(),
        time: String::new(),
        tags: Vec::new(),
        keep,
        reasons: if keep {
            vec!["last 1".into()]
        } else {
            Vec::new()
        },
    };
    forget(&s.repo, &[decision(&old, false), decision(&new, true)]).unwrap();
    let r = check(&mut s.repo, CheckOptions::default(), &NoProgress).unwrap();
    assert_eq!((r.proofs, r.stale_proofs), (2, 1));

    let dry = PruneOptions {
        dry_run: true,
        ..PruneOptions::default()
    };
    assert_eq!(
        prune(&mut s.repo, &dry, &NoProgress)
            .unwrap()
            .proofs_deleted,
        1
    );
    assert_eq!(s.proofs().len(), 2, "a dry run deletes nothing");
    let report = prune(&mut s.repo, &PruneOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.proofs_deleted, 1);
    assert_eq!(s.proofs().len(), 1);
    let session = s.repo.begin_restore().unwrap();
    assert!(session.proofs(&old).is_empty());
    assert_eq!(
        session.proofs(&new).len(),
        1,
        "the live point keeps its record"
    );
    drop(session);

    let replica: Arc<dyn Storage> = Arc::new(LocalStorage::new(s.dir.path().join("replica")));
    init_replica(s.storage.as_ref(), replica.as_ref()).unwrap();
    let copied = copy(s.storage.as_ref(), &replica, &NoProgress).unwrap();
    assert_eq!(copied.proofs, 1);
    assert_eq!(replica.list(ObjectKind::Proof).unwrap().len(), 1);
}
