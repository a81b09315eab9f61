//! `forget`: removes the points a retention plan did not keep. Deleting a point manifest is
//! atomic and the data it referenced stays until `prune`, so a forget killed half-way leaves
//! some points removed and every other point whole.
use crate::error::{err, Error, Result};
use crate::repository::Repository;
use crate::retention::Decision;
use crate::session::Publisher;
use crate::storage::{ObjectKind, StorageError};
use std::sync::Arc;

/// Deletes the points `decisions` does not keep; returns how many were deleted.
pub fn forget(repo: &Repository, decisions: &[Decision]) -> Result<u64> {
    if !decisions.is_empty() && decisions.iter().all(|d| !d.keep) {
        return Err(err!(
            Refused,
            "the plan removes every point; nothing was deleted"
        ));
    }
    // Deleting points cannot hurt a concurrent prune (it only makes more data dead), but
    // forget goes through the same door as every mutation: a lease, checked before it acts.
    let publisher = Publisher::acquire(Arc::clone(repo.storage()), "forget", repo.lease_ttl)?;
    // Forget reads and references no chunk, so no prune record can hurt it: it lists every
    // record present as seen, and only the sweep of a record written while it runs waits
    // for it (a forget killed elsewhere held every sweep back for a lease lifetime).
    let records = repo.storage().list(ObjectKind::Prune)?;
    publisher
        .lease()
        .set_seen_prunes(records.into_iter().map(|e| e.name).collect())?;
    publisher.publish(|| delete_points(repo, decisions))
}

fn delete_points(repo: &Repository, decisions: &[Decision]) -> Result<u64> {
    let mut n = 0;
    for d in decisions.iter().filter(|d| !d.keep) {
        match repo.storage().delete(ObjectKind::Point, &d.id) {
            Ok(()) | Err(StorageError::NotFound { .. }) => n += 1,
            Err(e) => {
                return Err(Error::from(e).context(format!(
                    "delete point {} ({n} points were deleted before)",
                    &d.id[..8]
                )))
            }
        }
    }
    Ok(n)
}
