//! Proof records (`proofs/<id>`): a SQLite check that passed on the restored bytes of a
//! point's databases (`docs/FORMAT.md` §16). Framed by [`super::object`] with magic `LBVF`,
//! named by the hash of their bytes; the payload is compact UTF-8 JSON of [`ProofRecord`].
//!
//! Points are immutable, so what a restore or a drill learned about a point is a separate,
//! small object. A record only ever lets a restore skip re-running a check on bytes that are
//! the same (same point, same checksum and page count); every byte is still authenticated and
//! the whole-database checksum still compared, so a forged record (anyone with the password can
//! write one) can skip a check but never get a byte written that was not backed up.
use serde::{Deserialize, Serialize};

use crate::error::{err, Result};
use crate::id::ObjectId;

/// Proof record magic.
pub const PROOF_MAGIC: &[u8; 4] = b"LBVF";
/// Largest payload a reader decompresses (the stored object is at most 1 MiB too).
pub const MAX_PROOF_PAYLOAD: usize = 1 << 20;
/// `PRAGMA integrity_check` of the whole database passed and its row counts equalled the
/// point's.
pub const CHECK_INTEGRITY: &str = "integrity_check";
/// `PRAGMA quick_check` of the whole database passed and its row counts equalled the point's
/// (no index entry was matched to its row).
pub const CHECK_QUICK: &str = "quick_check";

/// One point's databases that passed a check, and who checked them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProofRecord {
    /// The point (hex id of its manifest).
    pub point: String,
    /// When the check passed (RFC 3339 UTC).
    pub time: String,
    /// Host that ran it.
    pub hostname: String,
    /// What ran it: `restore` or `drill`.
    pub by: String,
    /// `CARGO_PKG_VERSION` of the writer.
    pub lifeboat_version: String,
    /// The databases checked.
    pub components: Vec<ProvenDatabase>,
    /// Set by a drill (`by = "drill"`): what it checked, how long it took and whether it
    /// passed. A failed drill's record lists no component (it proves nothing); it is kept so
    /// `points`, `status` and the alerts see the failure. Absent in records of restores and of
    /// versions before drills (readers without the field ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillOutcome>,
}

/// What a drill found (`docs/FORMAT.md` §16).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillOutcome {
    /// Every check passed.
    pub ok: bool,
    /// Wall time from the start of the restore to the end of the last check (the recovery
    /// time the drill measured), in seconds.
    pub seconds: f64,
    /// Bytes restored.
    pub bytes: u64,
    /// What was checked and passed, one line each.
    pub checks: Vec<String>,
    /// What failed (the first failure), when `ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// One database of the point that passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenDatabase {
    /// Where it was restored (the component's path, or the `--output` file). Informational:
    /// a record is matched on point, checksum and page count, never on a path, because a
    /// restore to `--output FILE` renames the component.
    pub path: String,
    /// The point's whole-database checksum of it (§9.2, 32 hex chars).
    pub checksum: String,
    /// Its page count in the point.
    pub page_count: u32,
    /// The check that passed ([`CHECK_INTEGRITY`] or [`CHECK_QUICK`]; other words are ignored
    /// by this reader).
    pub check: String,
}

impl ProofRecord {
    /// A record of `point` written now by this host and version (`by`: `restore` or
    /// `drill`); the time in milliseconds (drills of one point are ordered by it).
    pub fn now(
        point: &ObjectId,
        by: &str,
        components: Vec<ProvenDatabase>,
        drill: Option<DrillOutcome>,
    ) -> ProofRecord {
        let now = jiff::Timestamp::now();
        ProofRecord {
            point: point.to_hex(),
            time: now
                .round(jiff::Unit::Millisecond)
                .unwrap_or(now)
                .to_string(),
            hostname: crate::format::key::hostname(),
            by: by.to_string(),
            lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
            components,
            drill,
        }
    }

    /// Encodes the JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("proof record serialises")
    }

    /// Decodes a JSON payload; a `point` that is not a 64-char hex id is `Corrupt`.
    pub fn decode(b: &[u8], what: &str) -> Result<ProofRecord> {
        let r: ProofRecord = serde_json::from_slice(b)
            .map_err(|e| err!(Corrupt, "{what}: bad proof record: {e}"))?;
        if ObjectId::from_hex(&r.point).is_none() {
            return Err(err!(
                Corrupt,
                "{what}: bad proof record: point is not an id"
            ));
        }
        Ok(r)
    }

    /// The entry that proves the point's database with `checksum` and `page_count` passed one
    /// of the checks in `accepted`, if this record has one. (Within one point, which names
    /// every page table by the keyed ids of its segments, the checksum and page count pick
    /// the bytes.)
    pub fn proves(
        &self,
        checksum: &str,
        page_count: u32,
        accepted: &[&str],
    ) -> Option<&ProvenDatabase> {
        self.components.iter().find(|c| {
            accepted.contains(&c.check.as_str())
                && c.checksum == checksum
                && c.page_count == page_count
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ProofRecord {
        ProofRecord {
            point: "ab".repeat(32),
            time: "2026-12-01T12:00:00Z".into(),
            hostname: "h".into(),
            by: "restore".into(),
            lifeboat_version: "0.1.0".into(),
            components: vec![ProvenDatabase {
                path: "/srv/app.db".into(),
                checksum: "cd".repeat(16),
                page_count: 10,
                check: CHECK_INTEGRITY.into(),
            }],
            drill: None,
        }
    }

    #[test]
    fn decodes_what_it_encodes_and_refuses_what_is_not_a_record() {
        let r = record();
        assert_eq!(ProofRecord::decode(&r.encode(), "proof x").unwrap(), r);
        let bad_point = br#"{"point":"../x","time":"","hostname":"","by":"","lifeboat_version":"","components":[]}"#;
        let e = ProofRecord::decode(bad_point, "proof x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
        let e = ProofRecord::decode(b"[1,2]", "proof x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
    }

    /// A drill's outcome rides in the record; records without one (restores, older
    /// versions) still decode, and a reader that does not know the field ignores it.
    #[test]
    fn a_drill_outcome_round_trips_and_is_optional() {
        let mut r = record();
        r.by = "drill".into();
        r.drill = Some(DrillOutcome {
            ok: false,
            seconds: 1.5,
            bytes: 42,
            checks: vec!["files ok".into()],
            failure: Some("integrity_check failed".into()),
        });
        assert_eq!(ProofRecord::decode(&r.encode(), "proof x").unwrap(), r);
        let plain = record().encode();
        assert!(!String::from_utf8_lossy(&plain).contains("drill"));
        #[derive(serde::Deserialize)]
        struct Older {
            point: String,
        }
        let older: Older = serde_json::from_slice(&r.encode()).unwrap();
        assert_eq!(older.point, r.point);
    }

    #[test]
    fn proves_only_its_checksum_page_count_and_check() {
        let r = record();
        let sum = "cd".repeat(16);
        let full = &[CHECK_INTEGRITY];
        let quick = &[CHECK_INTEGRITY, CHECK_QUICK];
        assert!(r.proves(&sum, 10, full).is_some());
        assert!(r.proves(&sum, 10, quick).is_some());
        assert!(r.proves(&"ce".repeat(16), 10, full).is_none());
        assert!(r.proves(&sum, 11, full).is_none());
        let mut other = r.clone();
        other.components[0].check = CHECK_QUICK.into();
        assert!(
            other.proves(&sum, 10, full).is_none(),
            "a quick_check does not prove integrity_check"
        );
        assert!(other.proves(&sum, 10, quick).is_some());
        other.components[0].check = "fsck".into();
        assert!(
            other.proves(&sum, 10, quick).is_none(),
            "unknown words prove nothing"
        );
    }
}
