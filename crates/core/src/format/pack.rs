//! Packs (`packs/<first 2 hex>/<id>`): `docs/FORMAT.md` §6.
//!
//! ```text
//! offset      size  field
//! 0           4     magic b"LBPK"
//! 4           1     version (1)
//! 5           3     reserved, zero
//! 8           ...   blocks, back to back; each = seal(aad = b"lifeboat pack block v1", block plaintext)
//! T           L     trailer = seal(aad = b"lifeboat pack trailer v1", zstd(entries))
//! end-4       4     L as u32 little-endian
//! ```
//! Block plaintext: 1 byte codec (0 = stored, 1 = zstd) then the payload, which decodes to the
//! concatenation of the block's chunks. Entries (48 bytes each, little-endian) are
//! [`BlockEntry`]: chunk id, block offset in the pack, sealed block length, offset and length
//! of the chunk inside the decoded block. The pack's name is the BLAKE3 hash of all its bytes.
use crate::error::{err, Result};
use crate::id::ChunkId;

/// Pack magic.
pub const PACK_MAGIC: &[u8; 4] = b"LBPK";
/// Associated data of a block.
pub const BLOCK_AAD: &[u8] = b"lifeboat pack block v1";
/// Associated data of the trailer.
pub const TRAILER_AAD: &[u8] = b"lifeboat pack trailer v1";
/// Codec byte: stored as is.
pub const CODEC_NONE: u8 = 0;
/// Codec byte: zstd frame.
pub const CODEC_ZSTD: u8 = 1;
/// Encoded size of one [`BlockEntry`].
pub const ENTRY_LEN: usize = 48;

/// Where one chunk sits inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Offset of the sealed block in the pack file.
    pub block_offset: u32,
    /// Length of the sealed block.
    pub block_len: u32,
    /// Offset of the chunk in the decoded block.
    pub offset: u32,
    /// Length of the chunk.
    pub len: u32,
}

impl BlockEntry {
    /// Appends the 48-byte encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        for v in [self.block_offset, self.block_len, self.offset, self.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes one entry from exactly 48 bytes.
    pub fn decode(b: &[u8]) -> BlockEntry {
        let u =
            |i: usize| u32::from_le_bytes(b[32 + 4 * i..36 + 4 * i].try_into().expect("4 bytes"));
        BlockEntry {
            id: ChunkId(b[..32].try_into().expect("32 bytes")),
            block_offset: u(0),
            block_len: u(1),
            offset: u(2),
            len: u(3),
        }
    }
}

/// Encodes a list of entries (count u32 LE, then entries).
pub fn encode_entries(entries: &[BlockEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// Decodes a list made by [`encode_entries`] from the start of `b`; returns the rest.
pub fn decode_entries<'a>(b: &'a [u8], what: &str) -> Result<(Vec<BlockEntry>, &'a [u8])> {
    if b.len() < 4 {
        return Err(err!(Corrupt, "{what}: entry list truncated"));
    }
    let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    let end = n
        .checked_mul(ENTRY_LEN)
        .and_then(|x| x.checked_add(4))
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            err!(
                Corrupt,
                "{what}: entry list says {n} entries but is shorter"
            )
        })?;
    let entries = b[4..end]
        .chunks_exact(ENTRY_LEN)
        .map(BlockEntry::decode)
        .collect();
    Ok((entries, &b[end..]))
}

/// Encodes a block's plaintext: codec byte + payload; compresses with zstd when that helps.
pub fn encode_block(raw: &[u8], level: i32) -> Vec<u8> {
    if let Ok(c) = zstd::bulk::compress(raw, level) {
        if c.len() < raw.len() {
            let mut out = Vec::with_capacity(c.len() + 1);
            out.push(CODEC_ZSTD);
            out.extend_from_slice(&c);
            return out;
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 1);
    out.push(CODEC_NONE);
    out.extend_from_slice(raw);
    out
}

/// Largest decoded block a reader accepts (writers make about 1 MiB).
pub const MAX_BLOCK_LEN: usize = 64 * 1024 * 1024;

/// Decodes a block's plaintext.
pub fn decode_block(plain: &[u8], what: &str) -> Result<Vec<u8>> {
    match plain.first() {
        Some(&CODEC_NONE) => Ok(plain[1..].to_vec()),
        Some(&CODEC_ZSTD) => {
            let len = zstd::zstd_safe::get_frame_content_size(&plain[1..])
                .ok()
                .flatten()
                .filter(|&l| l as usize <= MAX_BLOCK_LEN)
                .ok_or_else(|| err!(Corrupt, "{what}: zstd block without a valid size"))?;
            zstd::bulk::decompress(&plain[1..], len as usize)
                .map_err(|e| err!(Corrupt, "{what}: bad zstd block: {e}"))
        }
        Some(c) => Err(err!(Corrupt, "{what}: unknown block codec {c}")),
        None => Err(err!(Corrupt, "{what}: empty block")),
    }
}
