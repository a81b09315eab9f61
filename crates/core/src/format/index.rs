//! Index objects (`index/<id>`): which chunks are where (`docs/FORMAT.md` §7).
//! Framed by [`super::object`] with magic `LBIX`; the payload is, little-endian:
//!
//! ```text
//! pack_count u32
//! per pack:  pack id (32 bytes) | entry list (count u32 + 32 bytes per BlockEntry, as in packs)
//! ```
//!
//! An entry is a 16-byte chunk id and four u32s (`ENTRY_LEN`), stored column by column
//! ([`encode_entries`]): all ids, then each field for all entries.
use super::pack::{decode_entries, encode_entries, BlockEntry};
use crate::error::{err, Result};
use crate::id::ObjectId;

/// Index magic.
pub const INDEX_MAGIC: &[u8; 4] = b"LBIX";

/// The contents of one index object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Each pack with the chunks it holds.
    pub packs: Vec<(ObjectId, Vec<BlockEntry>)>,
}

impl IndexFile {
    /// Encodes the payload (before framing).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = (self.packs.len() as u32).to_le_bytes().to_vec();
        for (id, entries) in &self.packs {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&encode_entries(entries));
        }
        out
    }

    /// Decodes a payload.
    pub fn decode(mut b: &[u8], what: &str) -> Result<IndexFile> {
        if b.len() < 4 {
            return Err(err!(Corrupt, "{what}: truncated"));
        }
        let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        b = &b[4..];
        let mut packs = Vec::new();
        for _ in 0..n {
            if b.len() < 32 {
                return Err(err!(Corrupt, "{what}: truncated pack list"));
            }
            let id = ObjectId(b[..32].try_into().expect("32 bytes"));
            let (entries, rest) = decode_entries(&b[32..], what)?;
            packs.push((id, entries));
            b = rest;
        }
        if !b.is_empty() {
            return Err(err!(Corrupt, "{what}: {} trailing bytes", b.len()));
        }
        Ok(IndexFile { packs })
    }
}
