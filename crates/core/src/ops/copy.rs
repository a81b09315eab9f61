//! Replicas: one repository in several places (a fast local disk and an off-site store).
//!
//! A replica has the same config (id, chunker) and key slots as its source, so every object
//! has the same bytes and the same name in both, and copying is moving ciphertext: no
//! password is needed, nothing is decrypted or re-chunked, and deduplication carries over.
//! [`init_replica`] makes an empty location a replica; [`copy`] brings over every object the
//! destination lacks.
//!
//! Safety:
//! - every object is verified on the way: its bytes must hash to its name (a damaged source
//!   object is never written to the destination);
//! - the order of writes is the backup's (§11 of `FORMAT.md`): packs, then index objects,
//!   then points, so a point becomes visible in the destination only after everything it
//!   may reference is there;
//! - if any source pack or index is damaged or vanished, no point is copied (a point might
//!   need it) and the call fails naming the objects; what was copied stays (it is valid and
//!   the next run skips it).
use serde::Serialize;

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::{err, Error, Result};
use crate::format::config::RepoConfig;
use crate::id::ObjectId;
use crate::progress::Progress;
use crate::repository::read_config;
use crate::session::Publisher;
use crate::storage::{ObjectKind, Storage, StorageError};

/// What [`copy`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Points copied (now in both).
    pub points: usize,
    /// Index objects copied.
    pub indexes: usize,
    /// Packs copied.
    pub packs: usize,
    /// Key slots copied (a slot added to the source since the last copy).
    pub keys: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Points of the source the destination already had.
    pub points_present: usize,
    /// Proof records copied (after the points; `docs/FORMAT.md` §16).
    pub proofs: usize,
    /// Delta records of continuous capture copied (after the points; §17).
    pub deltas: usize,
    /// Audit records copied (last; §18).
    pub audit: usize,
}

/// Makes the empty location `to` a replica of the repository at `from`: key slots first,
/// then the config (the order of `init`). Refuses when `to` already holds a repository.
pub fn init_replica(from: &dyn Storage, to: &dyn Storage) -> Result<RepoConfig> {
    let config = read_config(from)?;
    match to.read(ObjectKind::Config, "config") {
        Ok(_) => {
            return Err(
                err!(Refused, "{} already holds a repository", to.location()).with_hint(
                    "use `lifeboat copy` to bring it up to date, or choose an empty location",
                ),
            )
        }
        Err(StorageError::NotFound { .. }) => {}
        Err(e) => return Err(Error::from(e).context("look for an existing repository")),
    }
    copy_kind(from, to, ObjectKind::Key, &mut CopyReport::default(), None)?;
    let bytes = from.read(ObjectKind::Config, "config")?;
    to.write(ObjectKind::Config, "config", &bytes)?;
    Ok(config)
}

/// Copies every key slot, pack, index object, point, proof and audit record of `from` that `to`
/// lacks, in that order, verifying each. Both must be the same repository (see [`init_replica`]).
pub fn copy(
    from: &dyn Storage,
    to: &Arc<dyn Storage>,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let a = read_config(from)?;
    let b = read_config(to.as_ref())?;
    if a.id != b.id {
        return Err(err!(
            Refused,
            "{} (repository {}) is not a replica of {} (repository {})",
            to.location(),
            &b.id[..8.min(b.id.len())],
            from.location(),
            &a.id[..8.min(a.id.len())]
        )
        .with_hint(
            "a copy target must be created with `lifeboat init --from SOURCE`; copying between different repositories would re-encrypt everything",
        ));
    }
    // A prune of the replica must not delete a pack this copy found there and relies on.
    let publisher = Publisher::acquire(Arc::clone(to), "copy", crate::lease::lease_ttl())?;
    let to = to.as_ref();
    let mut report = CopyReport::default();
    copy_kind(from, to, ObjectKind::Key, &mut report, None)?;
    // Points and deltas are listed before packs and index objects, and only those are copied:
    // each is written after its packs and index objects, so all of those are in the later
    // listings. A point or delta written while the packs were copied (a continuous capture
    // writes one every interval) waits for the next copy, instead of arriving in the replica
    // without its data.
    let listed = |kind| -> Result<HashSet<String>> {
        Ok(from.list(kind)?.into_iter().map(|e| e.name).collect())
    };
    let points_listed = listed(ObjectKind::Point)?;
    let deltas_listed = listed(ObjectKind::Delta)?;
    let mut damaged = Vec::new();
    for kind in [ObjectKind::Pack, ObjectKind::Index] {
        damaged.extend(copy_kind(from, to, kind, &mut report, Some(progress))?);
    }
    if !damaged.is_empty() {
        return Err(err!(
            Corrupt,
            "{} object(s) of {} could not be copied: {}; no point was copied",
            damaged.len(),
            from.location(),
            damaged.join(", ")
        )
        .with_hint("run `lifeboat check --read-data` on the source; the objects copied so far are valid and are not copied again"));
    }
    let mut bad_points = publisher
        .publish(|| copy_listed(from, to, ObjectKind::Point, &mut report, &points_listed))?;
    // Deltas after the points (a chain starts from a point) and under the lease like them:
    // they name chunks a prune of the replica must count.
    bad_points.extend(
        publisher
            .publish(|| copy_listed(from, to, ObjectKind::Delta, &mut report, &deltas_listed))?,
    );
    // Proof records last: without the password a copy cannot tell whose they are, so it
    // carries all of them; one whose point was not copied is dropped by the replica's prune.
    // A damaged one is left behind (it only ever saved a check).
    copy_kind(from, to, ObjectKind::Proof, &mut report, None)?;
    // Audit records too, as they are (the history must survive the machine and the store); a
    // damaged one is left behind, as `check` of the source names it.
    copy_kind(from, to, ObjectKind::Audit, &mut report, None)?;
    if !bad_points.is_empty() {
        return Err(err!(
            Corrupt,
            "point(s) of {} could not be copied: {}",
            from.location(),
            bad_points.join(", ")
        )
        .with_hint("run `lifeboat check` on the source"));
    }
    Ok(report)
}

/// [`copy_kind`] of only the objects named in `listed`.
fn copy_listed(
    from: &dyn Storage,
    to: &dyn Storage,
    kind: ObjectKind,
    report: &mut CopyReport,
    listed: &HashSet<String>,
) -> Result<Vec<String>> {
    copy_some(from, to, kind, report, None, Some(listed))
}

/// Copies the objects of `kind` that `to` lacks. Returns the names (as `kind/name`) of source
/// objects that were damaged or vanished; storage failures end the call.
fn copy_kind(
    from: &dyn Storage,
    to: &dyn Storage,
    kind: ObjectKind,
    report: &mut CopyReport,
    progress: Option<&dyn Progress>,
) -> Result<Vec<String>> {
    copy_some(from, to, kind, report, progress, None)
}

fn copy_some(
    from: &dyn Storage,
    to: &dyn Storage,
    kind: ObjectKind,
    report: &mut CopyReport,
    progress: Option<&dyn Progress>,
    only: Option<&HashSet<String>>,
) -> Result<Vec<String>> {
    let mut have: HashSet<String> = to.list(kind)?.into_iter().map(|e| e.name).collect();
    let (mut want, both): (Vec<_>, Vec<_>) = from
        .list(kind)?
        .into_iter()
        .filter(|e| only.is_none_or(|o| o.contains(&e.name)))
        .partition(|e| !have.contains(&e.name));
    have = both.into_iter().map(|e| e.name).collect();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    if kind == ObjectKind::Point {
        report.points_present = have.len();
    }
    if let Some(p) = progress {
        p.start(
            &format!("copying {kind}s"),
            want.iter().map(|e| e.size).sum(),
        );
    }
    let mut damaged = Vec::new();
    for e in &want {
        crate::cancel::check()?;
        let bytes = match from.read(kind, &e.name) {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => {
                damaged.push(format!("{kind}/{} (vanished)", e.name));
                continue;
            }
            Err(err) => return Err(Error::from(err).context(format!("read {kind} {}", e.name))),
        };
        if ObjectId::of(&bytes).to_hex() != e.name {
            damaged.push(format!(
                "{kind}/{} (content does not match its name)",
                e.name
            ));
            continue;
        }
        to.write(kind, &e.name, &bytes)
            .map_err(|err| Error::from(err).context(format!("write {kind} {}", e.name)))?;
        report.bytes += bytes.len() as u64;
        match kind {
            ObjectKind::Pack => report.packs += 1,
            ObjectKind::Index => report.indexes += 1,
            ObjectKind::Point => report.points += 1,
            ObjectKind::Key => report.keys += 1,
            ObjectKind::Proof => report.proofs += 1,
            ObjectKind::Delta => report.deltas += 1,
            ObjectKind::Audit => report.audit += 1,
            ObjectKind::Config | ObjectKind::Lease | ObjectKind::Prune => {}
        }
        if let Some(p) = progress {
            p.inc(e.size);
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    Ok(damaged)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::storage::ListEntry;
    use crate::test_chain::*;
    use crate::test_store::TestStore;
    use crate::Repository;

    type Hook = Box<dyn FnOnce() + Send>;

    /// The source store, running `hook` once, just after its packs were listed: a backup or a
    /// continuous capture committing while the copy runs.
    struct Racing {
        inner: Arc<TestStore>,
        hook: Mutex<Option<Hook>>,
    }

    impl Storage for Racing {
        fn location(&self) -> String {
            "racing".into()
        }
        fn list(&self, kind: ObjectKind) -> crate::storage::StorageResult<Vec<ListEntry>> {
            let out = self.inner.list(kind);
            if kind == ObjectKind::Pack {
                if let Some(h) = self.hook.lock().unwrap().take() {
                    h();
                }
            }
            out
        }
        fn read(&self, kind: ObjectKind, name: &str) -> crate::storage::StorageResult<Vec<u8>> {
            self.inner.read(kind, name)
        }
        fn read_range(
            &self,
            kind: ObjectKind,
            name: &str,
            offset: u64,
            len: u64,
        ) -> crate::storage::StorageResult<Vec<u8>> {
            self.inner.read_range(kind, name, offset, len)
        }
        fn write(
            &self,
            kind: ObjectKind,
            name: &str,
            data: &[u8],
        ) -> crate::storage::StorageResult<()> {
            self.inner.write(kind, name, data)
        }
        fn delete(&self, kind: ObjectKind, name: &str) -> crate::storage::StorageResult<()> {
            self.inner.delete(kind, name)
        }
    }

    /// A delta (or point) committed after the copy listed the packs must not reach the
    /// replica without its packs: its chain would have a link whose pages are nowhere, and
    /// the replica's prune would refuse to run until the next copy.
    #[test]
    fn a_delta_committed_during_a_copy_never_arrives_without_its_data() {
        let src = Arc::new(TestStore::default());
        let mut repo = repo(&src);
        let base = base_point(&mut repo, "app", "b");
        let dst: Arc<dyn Storage> = Arc::new(TestStore::default());
        init_replica(src.as_ref(), dst.as_ref()).unwrap();
        copy(src.as_ref(), &dst, &crate::NoProgress).unwrap();
        let racing = Racing {
            inner: Arc::clone(&src),
            hook: Mutex::new(Some(Box::new({
                let src = Arc::clone(&src);
                let base = base.clone();
                move || {
                    let mut r = reopen(&src);
                    chain(&mut r, &base, &three_steps(jiff::Timestamp::now()));
                }
            }))),
        };
        copy(&racing, &dst, &crate::NoProgress).unwrap();
        let mut replica = Repository::open(Arc::clone(&dst), b"pw").unwrap();
        replica.load_index().unwrap();
        let deltas = replica.deltas().unwrap();
        let mut reader = replica.reader();
        for (id, d) in &deltas {
            for seg in &d.pages {
                reader.read(seg).unwrap_or_else(|e| {
                    panic!(
                        "delta {} is in the replica without its pages: {e}",
                        id.short()
                    )
                });
            }
        }
        // The next copy brings the chain whole.
        copy(src.as_ref(), &dst, &crate::NoProgress).unwrap();
        let mut replica = Repository::open(Arc::clone(&dst), b"pw").unwrap();
        replica.load_index().unwrap();
        assert_eq!(replica.deltas().unwrap().len(), 3);
    }
}
