//! SQLite page tables (`docs/FORMAT.md` §9): which chunk holds each page of a database.
//!
//! A table is stored as chunks of its own (so an unchanged table costs nothing):
//! - **base**: the chunk id of page 1, 2, ... N, 16 bytes each, split into segments of
//!   [`SEGMENT_PAGES`] ids; each segment is one chunk.
//! - **delta**: (page number u32 LE, chunk id) pairs, 20 bytes each, sorted by page number,
//!   for the pages that differ from the base (including pages past the base's end), split
//!   into segments of [`SEGMENT_PAGES`] pairs. A delta is cumulative against its base, so a
//!   restore reads at most one base and one delta, never a chain.
use crate::error::{err, Result};
use crate::id::ChunkId;

/// Bytes of one delta entry: page number + id.
pub const DELTA_LEN: usize = 4 + ChunkId::LEN;

/// Entries per stored segment.
pub const SEGMENT_PAGES: usize = 1024;

/// Encodes base ids (one segment's worth).
pub fn encode_base(ids: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * ChunkId::LEN);
    for id in ids {
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes base ids.
pub fn decode_base(b: &[u8]) -> Result<Vec<ChunkId>> {
    if !b.len().is_multiple_of(ChunkId::LEN) {
        return Err(err!(
            Corrupt,
            "page table segment has a bad length {}",
            b.len()
        ));
    }
    Ok(b.chunks_exact(ChunkId::LEN)
        .map(|c| ChunkId(c.try_into().expect("id bytes")))
        .collect())
}

/// Encodes delta pairs.
pub fn encode_delta(pairs: &[(u32, ChunkId)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * DELTA_LEN);
    for (p, id) in pairs {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&id.0);
    }
    out
}

/// Decodes delta pairs.
pub fn decode_delta(b: &[u8]) -> Result<Vec<(u32, ChunkId)>> {
    if !b.len().is_multiple_of(DELTA_LEN) {
        return Err(err!(
            Corrupt,
            "page delta segment has a bad length {}",
            b.len()
        ));
    }
    Ok(b.chunks_exact(DELTA_LEN)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().expect("4 bytes")),
                ChunkId(c[4..].try_into().expect("id bytes")),
            )
        })
        .collect())
}
