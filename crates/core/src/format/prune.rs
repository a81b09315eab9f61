//! Prune records (`prune/<id>`): what a prune condemned and must still delete (`docs/FORMAT.md`
//! §15). Framed by [`super::object`] with magic `LBPR`, named by the hash of their bytes; the
//! payload is UTF-8 JSON of [`PruneRecord`]. Written after the replacement index objects and
//! repacked packs are durable and before anything is deleted; deleted last, when every object
//! it lists is gone.
use serde::{Deserialize, Serialize};

use crate::error::{err, Result};

/// Prune record magic.
pub const PRUNE_MAGIC: &[u8; 4] = b"LBPR";

/// One prune's condemned objects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PruneRecord {
    /// When phase 1 wrote it (RFC 3339 UTC).
    pub time: String,
    /// Host that wrote it.
    pub hostname: String,
    /// Packs to delete (hex ids).
    pub packs: Vec<String>,
    /// Index objects to delete (hex ids); every index object that lists a condemned pack.
    pub indexes: Vec<String>,
    /// Points that existed when the live set was computed (hex ids). A point not in this
    /// list was written later and may reference condemned chunks: it resurrects their packs.
    pub points: Vec<String>,
    /// Delta records (`docs/FORMAT.md` §17) whose chunks were counted live (hex ids). Like
    /// `points`: a delta not in this list was written later and resurrects what it needs.
    /// Absent in a record written before deltas existed (then every delta is walked).
    #[serde(default)]
    pub deltas: Vec<String>,
}

impl PruneRecord {
    /// Encodes the JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("prune record serialises")
    }
    /// Decodes a JSON payload.
    pub fn decode(b: &[u8], what: &str) -> Result<PruneRecord> {
        serde_json::from_slice(b).map_err(|e| err!(Corrupt, "{what}: bad prune record: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_round_trip_and_old_records_decode() {
        let r = PruneRecord {
            time: "2026-12-01T12:00:00Z".into(),
            hostname: "h".into(),
            packs: vec!["aa".repeat(32)],
            indexes: vec!["bb".repeat(32)],
            points: vec!["cc".repeat(32)],
            deltas: vec!["dd".repeat(32), "ee".repeat(32)],
        };
        let back = PruneRecord::decode(&r.encode(), "prune record x").unwrap();
        assert_eq!(back.deltas, r.deltas);
        assert_eq!(back.points, r.points);
        assert_eq!(back.packs, r.packs);
        // A record written before the field existed: no deltas counted.
        let old = br#"{"time":"2026-11-01T00:00:00Z","hostname":"h","packs":[],"indexes":[],"points":["aa"]}"#;
        let back = PruneRecord::decode(old, "prune record y").unwrap();
        assert!(back.deltas.is_empty());
        assert_eq!(back.points, vec!["aa".to_string()]);
    }
}
