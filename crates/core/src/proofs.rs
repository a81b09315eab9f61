//! Reading and writing proof records (`docs/FORMAT.md` §16): which of a point's databases
//! already passed `integrity_check` on their restored bytes. Everything read is untrusted (any
//! key holder can write a record): a damaged or oversized record is skipped, and a record only
//! ever applies to the exact point, checksum and page count it names.
use std::collections::HashMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::object;
use crate::format::proof::{
    ProofRecord, CHECK_INTEGRITY, CHECK_QUICK, MAX_PROOF_PAYLOAD, PROOF_MAGIC,
};
use crate::id::ObjectId;
use crate::repository::{verify_name, Repository};
use crate::storage::ObjectKind;

/// Records by name, and the names of those that could not be read with why.
pub(crate) type Listing = (Vec<(String, ProofRecord)>, Vec<(String, Error)>);

/// Every proof record in the repository, by name; those that cannot be read (damaged, too
/// large, written by a newer lifeboat) come back as errors beside them.
pub(crate) fn read_all(repo: &Repository) -> Result<Listing> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for e in repo.storage().list(ObjectKind::Proof)? {
        match read_one(repo, &e.name) {
            Ok(r) => good.push((e.name, r)),
            Err(err) => bad.push((e.name, err)),
        }
    }
    Ok((good, bad))
}

fn read_one(repo: &Repository, name: &str) -> Result<ProofRecord> {
    let what = format!("proof {name}");
    let bytes = repo.storage().read(ObjectKind::Proof, name)?;
    verify_name(name, &bytes, &what)?;
    let payload = object::open_bounded(repo.key(), PROOF_MAGIC, &bytes, &what, MAX_PROOF_PAYLOAD)?;
    ProofRecord::decode(&payload, &what)
}

/// The readable records of `point`. Best effort: a record that cannot be read is skipped with
/// a warning and a failed listing counts as none (a record only saves work; without it the
/// checks run).
pub(crate) fn of_point(repo: &Repository, point: &ObjectId) -> Vec<ProofRecord> {
    let hex = point.to_hex();
    let names = match repo.storage().list(ObjectKind::Proof) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot list proof records (checks will run): {e}");
            return Vec::new();
        }
    };
    // One record at a time, dropped unless it is this point's: any key holder can write
    // records, and holding them all (each up to 1 MiB decoded) could exhaust the memory of
    // the machine that needs the restore. At most `KEEP` of this point's are kept.
    const KEEP: usize = 16;
    let mut out = Vec::new();
    for e in names {
        match read_one(repo, &e.name) {
            Ok(r) if r.point == hex => {
                out.push(r);
                if out.len() >= KEEP {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("ignoring proof {}: {err}", e.name),
        }
    }
    out
}

/// Seals and writes a record under the hash of its bytes.
pub(crate) fn write(repo: &Repository, record: &ProofRecord) -> Result<ObjectId> {
    let bytes = object::seal(repo.key(), PROOF_MAGIC, &record.encode())?;
    let id = ObjectId::of(&bytes);
    repo.storage()
        .write(ObjectKind::Proof, &id.to_hex(), &bytes)
        .map_err(|e| Error::from(e).context("write proof record"))?;
    Ok(id)
}

/// What the proof records say about one point, for listings (`points`, `status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PointProofs {
    /// The most thorough check any record says its databases passed (`integrity_check`, else
    /// `quick_check`), by a restore or a drill.
    pub check: Option<String>,
    /// The newest drill of the point.
    pub last_drill: Option<DrillSeen>,
    /// Drills recorded, and how many of them failed.
    pub drills: u32,
    /// Drills that failed.
    pub failed_drills: u32,
}

/// One drill as a listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrillSeen {
    /// When it ended (RFC 3339).
    pub time: String,
    /// Host that ran it.
    pub hostname: String,
    /// Every check passed.
    pub ok: bool,
    /// How long it took (the recovery time it measured), seconds.
    pub seconds: f64,
    /// What failed, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

impl Repository {
    /// The proof records of the points `wanted` (hex ids), summarized per point. Each record
    /// is read, folded in and dropped, and only points asked for are kept, with their texts
    /// cut short (any key holder can write many large records, naming points that do not
    /// exist); unreadable records are skipped with a warning, as a restore skips them.
    pub fn proofs_by_point(
        &self,
        wanted: &std::collections::HashSet<String>,
    ) -> Result<HashMap<String, PointProofs>> {
        by_point(self, wanted)
    }
}

/// How drills are ordered to find the newest: by time, and at the same time (two drills in one
/// millisecond, or records of versions that kept whole seconds) a failed one counts as newer,
/// so that a failure is never hidden by a pass it cannot be told apart from.
pub fn drill_order(time: &str, ok: bool) -> (Option<jiff::Timestamp>, bool) {
    (time.parse().ok(), !ok)
}

/// Longest failure text and host name a listing keeps from a record.
const MAX_TEXT: usize = 1000;

fn cut(s: &str) -> String {
    match s.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn by_point(
    repo: &Repository,
    wanted: &std::collections::HashSet<String>,
) -> Result<HashMap<String, PointProofs>> {
    let mut out: HashMap<String, PointProofs> = HashMap::new();
    for e in repo.storage().list(ObjectKind::Proof)? {
        let r = match read_one(repo, &e.name) {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!("ignoring proof {}: {err}", e.name);
                continue;
            }
        };
        if !wanted.contains(&r.point) {
            continue;
        }
        let p = out.entry(r.point.clone()).or_default();
        for c in &r.components {
            let better = matches!(
                (p.check.as_deref(), c.check.as_str()),
                (_, CHECK_INTEGRITY) | (None, CHECK_QUICK)
            );
            if better {
                p.check = Some(c.check.clone());
            }
        }
        if let Some(d) = &r.drill {
            p.drills += 1;
            p.failed_drills += u32::from(!d.ok);
            let newer = p
                .last_drill
                .as_ref()
                .is_none_or(|l| drill_order(&l.time, l.ok) <= drill_order(&r.time, d.ok));
            if newer {
                p.last_drill = Some(DrillSeen {
                    time: cut(&r.time),
                    hostname: cut(&r.hostname),
                    ok: d.ok,
                    seconds: d.seconds,
                    failure: d.failure.as_deref().map(cut),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::drill_order;

    /// The newest drill is the latest one; at the same time, the failed one, whatever order the
    /// records were listed in (two drills in one second hid a failure behind a pass).
    #[test]
    fn a_failure_is_never_hidden_by_a_pass_of_the_same_time() {
        let t = "2026-12-02T08:49:04Z";
        assert!(drill_order(t, true) < drill_order(t, false));
        assert!(drill_order(t, false) < drill_order("2026-12-02T08:49:05Z", true));
        assert!(drill_order("2026-12-02T08:49:04.001Z", true) > drill_order(t, false));
    }
}
