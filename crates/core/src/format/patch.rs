//! Page patches (`docs/FORMAT.md` §6, "Patch chunks"): a database page stored as the byte
//! ranges where it differs from an earlier version of it (its *base*), which is stored whole.
//! A chunk's id stays the keyed hash of the whole page, so page tables, checksums and
//! deduplication never see a patch; only how the chunk's bytes sit in a block differs, and the
//! index entry names the base (index objects version 2, §7).
//!
//! ```text
//! offset  size  field
//! 0       4     magic     b"LBPD"
//! 4       16    base      chunk id of the base (the index entry's base, repeated so that an
//!                         index can be rebuilt from packs alone)
//! 20      4     page_len  u32 LE, length of the page (= the base's length)
//! 24      ...   ranges, back to back: offset u32 LE, len u32 LE (> 0), then len bytes
//! ```
//! Ranges are sorted, do not overlap or touch, and lie inside the page. The page is the base
//! with each range's bytes written at its offset; its keyed hash must be the chunk's id.
use crate::error::{err, Result};
use crate::id::ChunkId;

/// Magic of a patch chunk.
pub const PATCH_MAGIC: &[u8; 4] = b"LBPD";
/// Bytes before the first range.
pub const PATCH_HEADER_LEN: usize = 24;
/// Bytes of a range's header.
const RANGE_HEADER_LEN: usize = 8;
/// Two changed runs closer than this are stored as one range (a range header costs 8 bytes).
const MERGE_GAP: usize = RANGE_HEADER_LEN;

/// The patch that turns `base` (whose id is `base_id`) into `page`, or `None` when the two
/// differ in length or the patch would not be shorter than `limit` bytes.
pub fn encode(base_id: &ChunkId, base: &[u8], page: &[u8], limit: usize) -> Option<Vec<u8>> {
    if base.len() != page.len() || u32::try_from(page.len()).is_err() {
        return None;
    }
    // Most patches are a few hundred bytes; a buffer of the page's size each would be kept
    // by callers that hold patches (the follower's ways back to bases).
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(PATCH_MAGIC);
    out.extend_from_slice(&base_id.0);
    out.extend_from_slice(&(page.len() as u32).to_le_bytes());
    let n = page.len();
    let mut i = 0;
    while i < n {
        if base[i] == page[i] {
            i += 1;
            continue;
        }
        // A run of differing bytes, extended over equal gaps shorter than a range header.
        let start = i;
        let mut end = i + 1;
        let mut j = end;
        while j < n {
            if base[j] != page[j] {
                end = j + 1;
                j += 1;
            } else if j - end >= MERGE_GAP {
                break;
            } else {
                j += 1;
            }
        }
        out.extend_from_slice(&(start as u32).to_le_bytes());
        out.extend_from_slice(&((end - start) as u32).to_le_bytes());
        out.extend_from_slice(&page[start..end]);
        if out.len() >= limit {
            return None;
        }
        i = end;
    }
    Some(out)
}

/// The base a patch names (its bytes 4..20); `None` when `patch` is not a patch.
pub fn base_of(patch: &[u8]) -> Option<ChunkId> {
    if patch.len() < PATCH_HEADER_LEN || &patch[..4] != PATCH_MAGIC {
        return None;
    }
    Some(ChunkId(patch[4..20].try_into().expect("16 bytes")))
}

/// Writes the page `patch` describes into `out` (replacing its content), from `base`, the
/// authenticated content of `base_id`. Refuses (`Corrupt`) a patch that names another base,
/// whose length is not the base's, or whose ranges are unsorted, overlapping, empty or past
/// the page. The caller still checks the result's hash against the chunk id.
pub fn apply(patch: &[u8], base_id: &ChunkId, base: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let named = base_of(patch).ok_or_else(|| err!(Corrupt, "page patch: bad header"))?;
    if named != *base_id {
        return Err(err!(
            Corrupt,
            "page patch names base {named}, its index entry {base_id}"
        ));
    }
    let len = u32::from_le_bytes(patch[20..24].try_into().expect("4 bytes")) as usize;
    if len != base.len() {
        return Err(err!(
            Corrupt,
            "page patch is for {len} bytes, its base has {}",
            base.len()
        ));
    }
    out.clear();
    out.extend_from_slice(base);
    let mut at = PATCH_HEADER_LEN;
    let mut min = 0usize;
    while at < patch.len() {
        let head = patch
            .get(at..at + RANGE_HEADER_LEN)
            .ok_or_else(|| err!(Corrupt, "page patch: truncated range header"))?;
        let off = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let n = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
        at += RANGE_HEADER_LEN;
        let bytes = patch
            .get(at..at.saturating_add(n))
            .ok_or_else(|| err!(Corrupt, "page patch: truncated range"))?;
        if n == 0 || off < min || off.saturating_add(n) > len {
            return Err(err!(
                Corrupt,
                "page patch: range {off}+{n} is empty, out of order or past the page"
            ));
        }
        out[off..off + n].copy_from_slice(bytes);
        min = off + n + 1;
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> ChunkId {
        ChunkId([b; 16])
    }

    #[test]
    fn a_patch_rebuilds_the_page_and_is_refused_when_malformed() {
        let base: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
        let mut page = base.clone();
        page[10] ^= 1;
        page[12] ^= 1; // close to the first: one range
        page[3000..3100].fill(9);
        page[4095] ^= 0xff;
        let p = encode(&id(1), &base, &page, 2048).unwrap();
        assert!(p.len() < 200, "{}", p.len());
        assert_eq!(base_of(&p), Some(id(1)));
        let mut out = Vec::new();
        apply(&p, &id(1), &base, &mut out).unwrap();
        assert_eq!(out, page);
        // An unchanged page is a patch with no ranges.
        let same = encode(&id(1), &base, &base, 2048).unwrap();
        assert_eq!(same.len(), PATCH_HEADER_LEN);
        // Too different: none.
        let other: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 1) as u8).collect();
        assert!(encode(&id(1), &base, &other, 2048).is_none());
        assert!(encode(&id(1), &base, &page[..100], 2048).is_none());

        let refused = |p: &[u8], base_id: ChunkId, base: &[u8]| {
            let e = apply(p, &base_id, base, &mut Vec::new()).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
        };
        refused(&p, id(2), &base); // another base
        refused(&p, id(1), &base[..2048]); // another length
        refused(&p[..p.len() - 1], id(1), &base); // truncated
        let mut past = p.clone();
        past[PATCH_HEADER_LEN..PATCH_HEADER_LEN + 4].copy_from_slice(&4095u32.to_le_bytes());
        refused(&past, id(1), &base); // the first range runs past the page
        let mut empty = p[..PATCH_HEADER_LEN].to_vec();
        empty.extend_from_slice(&5u32.to_le_bytes());
        empty.extend_from_slice(&0u32.to_le_bytes());
        refused(&empty, id(1), &base);
        // Two ranges out of order.
        let mut back = p[..PATCH_HEADER_LEN].to_vec();
        for off in [100u32, 50] {
            back.extend_from_slice(&off.to_le_bytes());
            back.extend_from_slice(&1u32.to_le_bytes());
            back.push(1);
        }
        refused(&back, id(1), &base);
        refused(b"LBPX0000000000000000000000", id(1), &base);
    }
}
