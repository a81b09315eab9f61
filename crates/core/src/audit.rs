//! Reading and writing audit records (`docs/FORMAT.md` §18): the repository's copy of the
//! audit log, one object per operation, so the history survives the machine. Everything read
//! is untrusted (any key holder can write a record): a damaged or oversized record is skipped
//! and named, the number read is bounded, and nothing else in lifeboat depends on a record.
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::audit::{AuditEvent, AUDIT_MAGIC, MAX_AUDIT_PAYLOAD};
use crate::format::object;
use crate::id::ObjectId;
use crate::repository::{verify_name, Repository};
use crate::storage::ObjectKind;

/// Most records one listing reads (one GET each; at ~30 a day, 9 years of a busy daemon).
/// The rest are counted in [`AuditListing::unread`], never read.
pub const MAX_AUDIT_RECORDS: usize = 100_000;
/// Most bytes of events one listing keeps (a record's JSON is typically ~400 bytes; any key
/// holder could write large ones). Records past it are counted as unread.
pub const MAX_AUDIT_BYTES: usize = 64 << 20;
/// Longest reason kept for a record that could not be read, in characters: a key holder's
/// record can make the JSON parser's message quote a whole 64 KiB field, and 100,000 of
/// those must not cost gigabytes (nor flood `log`'s warnings).
const MAX_DAMAGED_REASON: usize = 300;

/// The audit records of a repository, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditListing {
    /// The readable records, by time (then name), oldest first.
    pub events: Vec<(String, AuditEvent)>,
    /// Records that could not be read (damaged, too large, newer version), with why.
    pub damaged: Vec<(String, String)>,
    /// Records listed beyond [`MAX_AUDIT_RECORDS`] or [`MAX_AUDIT_BYTES`] and not read.
    pub unread: usize,
}

/// `s` cut to `max` characters (a cut one ends in `...`).
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

fn read_one(repo: &Repository, name: &str) -> Result<AuditEvent> {
    let what = format!("audit {name}");
    let bytes = repo.storage().read(ObjectKind::Audit, name)?;
    verify_name(name, &bytes, &what)?;
    let payload = object::open_bounded(repo.key(), AUDIT_MAGIC, &bytes, &what, MAX_AUDIT_PAYLOAD)?;
    AuditEvent::decode(&payload, &what)
}

impl Repository {
    /// Writes one audit record under the hash of its bytes (the event bounded first). Not
    /// published under a lease: a record references no chunk, and nothing deletes records.
    pub fn write_audit(&self, event: &AuditEvent) -> Result<ObjectId> {
        let payload = event.clone().bounded().encode();
        let bytes = object::seal(self.key(), AUDIT_MAGIC, &payload)?;
        let id = ObjectId::of(&bytes);
        self.storage()
            .write(ObjectKind::Audit, &id.to_hex(), &bytes)
            .map_err(|e| Error::from(e).context("write audit record"))?;
        Ok(id)
    }

    /// Every audit record (at most [`MAX_AUDIT_RECORDS`] and [`MAX_AUDIT_BYTES`]), oldest first; those that cannot be
    /// read are named beside them. Fails only when the store cannot list them.
    pub fn audit_records(&self) -> Result<AuditListing> {
        let mut out = AuditListing::default();
        let mut names = self.storage().list(ObjectKind::Audit)?;
        if names.len() > MAX_AUDIT_RECORDS {
            out.unread = names.len() - MAX_AUDIT_RECORDS;
            names.truncate(MAX_AUDIT_RECORDS);
        }
        let mut kept = 0;
        let listed = names.len();
        for (n, e) in names.into_iter().enumerate() {
            if kept > MAX_AUDIT_BYTES {
                out.unread += listed - n;
                break;
            }
            match read_one(self, &e.name) {
                Ok(ev) => {
                    kept += ev.encode().len();
                    out.events.push((e.name, ev));
                }
                Err(err) => {
                    let why = cut(&err.to_string(), MAX_DAMAGED_REASON);
                    kept += why.len() + e.name.len();
                    out.damaged.push((e.name, why));
                }
            }
        }
        out.events
            .sort_by(|a, b| (a.1.timestamp(), &a.0).cmp(&(b.1.timestamp(), &b.0)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::format::key::KdfParams;
    use crate::storage::Storage;
    use crate::test_store::TestStore;

    /// A key holder's record whose JSON quotes a 60 KiB string where a number belongs: the
    /// parser's message would quote it whole. The reason kept (and printed by `log` and
    /// `check`) is short, and damaged records count toward the listing's byte bound.
    #[test]
    fn a_hostile_records_reason_is_bounded() {
        let store = Arc::new(TestStore::default());
        let storage: Arc<dyn Storage> = Arc::clone(&store) as Arc<dyn Storage>;
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let repo = Repository::init(storage, b"pw", kdf).unwrap();
        let payload = format!(
            r#"{{"time":"2026-12-03T10:00:00Z","host":"h","user":"u","uid":"{}","command":"backup","result":"ok","lifeboat_version":"0"}}"#,
            r"\u001b[2J".repeat(6000)
        );
        assert!(payload.len() < MAX_AUDIT_PAYLOAD);
        let bytes = object::seal(repo.key(), AUDIT_MAGIC, payload.as_bytes()).unwrap();
        let name = ObjectId::of(&bytes).to_hex();
        repo.storage()
            .write(ObjectKind::Audit, &name, &bytes)
            .unwrap();
        let listing = repo.audit_records().unwrap();
        assert!(listing.events.is_empty());
        assert_eq!(listing.damaged.len(), 1);
        let why = &listing.damaged[0].1;
        assert!(why.contains("bad audit event"), "{why}");
        assert!(
            why.chars().count() <= MAX_DAMAGED_REASON + 3,
            "{}",
            why.len()
        );
    }
}
