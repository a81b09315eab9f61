//! Delta records (`deltas/<id>`): the pages of one SQLite database that changed in one
//! interval of continuous capture (`docs/FORMAT.md` §17). Framed by [`super::object`] with
//! magic `LBDT`, named by the hash of their bytes; the payload is compact UTF-8 JSON of
//! [`Delta`].
//!
//! A delta is one link of a *chain*: it starts from an ordinary point (`base`) and each delta
//! names the one before it (`parent`, absent for the first). Replaying a chain onto the base's
//! page table gives the database at each delta's `time`. Every link carries the whole-database
//! checksum before and after it (§9.2), so a missing or foreign link is found, never skipped.
//! The changed pages themselves are stored like any page table (§9.1 delta segments: (pgno,
//! id) pairs as chunks in the normal packs), so the record stays a few hundred bytes.
use serde::{Deserialize, Serialize};

use crate::error::{err, Result};
use crate::id::{ChunkId, ObjectId};

/// Delta record magic.
pub const DELTA_MAGIC: &[u8; 4] = b"LBDT";
/// Largest payload a reader decompresses (the stored object is at most 1 MiB too): the
/// changed pages are in segments, so a record is small whatever the interval wrote.
pub const MAX_DELTA_PAYLOAD: usize = 1 << 20;
/// Most links a chain may have (a reader refuses a longer one before fetching it): the
/// capture starts a new chain from a new point at least every hour, 3,600 links at 1 s.
pub const MAX_CHAIN: u64 = 100_000;

/// One interval's changes to one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The app.
    pub app: String,
    /// The database's path (the `sqlite` component's `path` in the base point).
    pub path: String,
    /// Hex id of the point the chain starts from.
    pub base: String,
    /// Hex id of the previous link; absent for the first link (whose parent is `base`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Position in the chain: 1 for the first link, parent's + 1 after.
    pub seq: u64,
    /// RFC 3339 UTC: read just before the interval's read transaction began. Every
    /// transaction that returned before this moment is in it (one committing in between the
    /// clock read and the snapshot may be too).
    pub time: String,
    /// Host that captured it.
    pub hostname: String,
    /// `CARGO_PKG_VERSION` of the writer.
    pub lifeboat_version: String,
    /// Page size (equal along a chain; a change of page size starts a new chain).
    pub page_size: u32,
    /// Pages after this link.
    pub page_count: u32,
    /// §9.2 checksum of the database before this link (the parent's `checksum_after`, or the
    /// base component's `checksum`), 32 hex chars.
    pub checksum_before: String,
    /// §9.2 checksum after it, 32 hex chars.
    pub checksum_after: String,
    /// Delta segments (§9.1 encoding: (pgno u32 LE, id) pairs, ascending pgno) of the pages
    /// whose content differs from the parent, pages past `page_count` left out.
    pub pages: Vec<ChunkId>,
    /// How many pairs the segments hold.
    pub changed: u32,
    /// The pages were found by comparing every page with the parent (after the capture could
    /// not prove from the WAL that it saw every frame), not from the WAL's frame headers.
    #[serde(default)]
    pub healed: bool,
    /// Where the capture was in the WAL after this link (lets a restarted capture resume
    /// without comparing every page). Informational for readers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalMark>,
    /// 0: one interval of the capture. 1: one minute: the union of the pages of that minute's
    /// interval links, with their final ids (no page data of its own), in a chain of its own
    /// (`parent` names the previous level-1 link); it reaches the state of the level-0 link
    /// `until` names, so a restore may replay level-1 links up to a minute and level-0 links
    /// after it, and `forget` may drop level-0 links older than an hour.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub level: u8,
    /// Level 1 only: hex id of the level-0 link whose state this link reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

/// A position in a `-wal` file: the frame after which the next interval starts, in the WAL
/// generation named by its salts, with SQLite's running checksum at that frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalMark {
    /// WAL header salt-1.
    pub salt1: u32,
    /// WAL header salt-2.
    pub salt2: u32,
    /// Frames read (the last one a commit frame).
    pub frame: u32,
    /// SQLite's cumulative checksum after that frame (the header's when `frame` is 0).
    pub cksum: [u32; 2],
}

impl Delta {
    /// Encodes the JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("delta serialises")
    }

    /// Decodes a JSON payload and checks what a reader relies on: ids are ids, checksums are
    /// 32 hex chars, `seq` is 1 exactly when there is no parent and within [`MAX_CHAIN`], the
    /// time parses, a page size SQLite allows. Anything else is `Corrupt`.
    pub fn decode(b: &[u8], what: &str) -> Result<Delta> {
        let d: Delta =
            serde_json::from_slice(b).map_err(|e| err!(Corrupt, "{what}: bad delta: {e}"))?;
        let bad = |why: &str| err!(Corrupt, "{what}: bad delta: {why}");
        if ObjectId::from_hex(&d.base).is_none() {
            return Err(bad("base is not an id"));
        }
        if d.parent
            .as_deref()
            .is_some_and(|p| ObjectId::from_hex(p).is_none())
        {
            return Err(bad("parent is not an id"));
        }
        if (d.seq == 1) != d.parent.is_none() || d.seq == 0 || d.seq > MAX_CHAIN {
            return Err(bad("seq does not fit its parent"));
        }
        for c in [&d.checksum_before, &d.checksum_after] {
            if c.len() != 32 || hex::decode(c).is_err() {
                return Err(bad("checksum is not 32 hex chars"));
            }
        }
        if !(512..=65536).contains(&d.page_size) || !d.page_size.is_power_of_two() {
            return Err(bad("page size"));
        }
        match (d.level, d.until.as_deref()) {
            (0, None) => {}
            (1, Some(u)) if ObjectId::from_hex(u).is_some() => {}
            _ => return Err(bad("level and until do not fit")),
        }
        d.timestamp()?;
        Ok(d)
    }

    /// The capture time.
    pub fn timestamp(&self) -> Result<jiff::Timestamp> {
        self.time
            .parse()
            .map_err(|e| err!(Corrupt, "delta time {:?} is not valid: {e}", self.time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta() -> Delta {
        Delta {
            app: "chat".into(),
            path: "/srv/chat.db".into(),
            base: "ab".repeat(32),
            parent: Some("cd".repeat(32)),
            seq: 2,
            time: "2026-12-01T12:00:00.5Z".into(),
            hostname: "h".into(),
            lifeboat_version: "0.1.0".into(),
            page_size: 4096,
            page_count: 10,
            checksum_before: "00".repeat(16),
            checksum_after: "11".repeat(16),
            pages: vec![ChunkId([3; 16])],
            changed: 2,
            healed: false,
            wal: Some(WalMark {
                salt1: 1,
                salt2: 2,
                frame: 7,
                cksum: [3, 4],
            }),
            level: 0,
            until: None,
        }
    }

    #[test]
    fn decodes_what_it_encodes() {
        let d = delta();
        assert_eq!(Delta::decode(&d.encode(), "delta x").unwrap(), d);
    }

    #[test]
    fn refuses_links_that_do_not_hold_together() {
        type Spoil = Box<dyn Fn(&mut Delta)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("base", Box::new(|d| d.base = "../x".into())),
            ("parent", Box::new(|d| d.parent = Some("zz".into()))),
            ("seq 1 with a parent", Box::new(|d| d.seq = 1)),
            ("seq 0", Box::new(|d| d.seq = 0)),
            ("no parent past 1", Box::new(|d| d.parent = None)),
            ("too long", Box::new(|d| d.seq = MAX_CHAIN + 1)),
            ("checksum", Box::new(|d| d.checksum_after = "x".into())),
            ("page size", Box::new(|d| d.page_size = 1000)),
            ("time", Box::new(|d| d.time = "yesterday".into())),
            ("level 1 without until", Box::new(|d| d.level = 1)),
            (
                "until on level 0",
                Box::new(|d| d.until = Some("ab".repeat(32))),
            ),
            (
                "level 2",
                Box::new(|d| {
                    d.level = 2;
                    d.until = Some("ab".repeat(32));
                }),
            ),
        ];
        for (name, f) in cases {
            let mut d = delta();
            f(&mut d);
            let e = Delta::decode(&d.encode(), "delta x").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{name}: {e}");
        }
        assert!(Delta::decode(b"[]", "delta x").is_err());
    }
}
