//! Packs (`packs/<first 2 hex>/<id>`): `docs/FORMAT.md` §6.
//!
//! ```text
//! offset      size  field
//! 0           4     magic b"LBPK"
//! 4           1     version (1)
//! 5           3     reserved, zero
//! 8           ...   blocks, back to back; each = seal(aad = b"lifeboat pack block v1", block plaintext)
//! T           L     trailer = seal(aad = b"lifeboat pack trailer v1", zstd(trailer payload))
//! end-4       4     L as u32 little-endian
//! ```
//! Block plaintext: 1 byte codec (0 = stored, 1 = zstd) then the payload, which decodes to the
//! concatenation of the block's chunks. The trailer lists each block's sealed length and its
//! chunks' lengths ([`encode_trailer`]); the index lists each chunk's [`BlockEntry`] (chunk id,
//! block offset in the pack, sealed block length, offset and length of the chunk inside the
//! decoded block), column by column. The pack's name is the BLAKE3 hash of all its bytes.
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
pub const ENTRY_LEN: usize = ChunkId::LEN + 16;

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
    /// Length of the chunk as stored in the block.
    pub len: u32,
    /// For a page stored as a patch (`super::patch`), the chunk it is a patch against, stored
    /// whole; `None` for a chunk stored as its own bytes. Only index objects of version 2
    /// carry it (§7).
    pub base: Option<ChunkId>,
}

impl BlockEntry {
    /// The four u32 fields, in their encoded order.
    fn fields(&self) -> [u32; 4] {
        [self.block_offset, self.block_len, self.offset, self.len]
    }
}

/// Encodes a list of entries column by column (count u32 LE, then all 16-byte chunk ids, then
/// each u32 field for all entries; [`ENTRY_LEN`] = 32 bytes per entry, `docs/FORMAT.md` §7), so
/// that zstd squeezes the highly regular location columns to almost nothing and only the ids
/// cost space.
///
/// With `bases` (index objects of version 2) one more column follows: per entry the 16-byte
/// id of its base, all zero for a chunk stored whole.
pub fn encode_entries(entries: &[BlockEntry], bases: bool) -> Vec<u8> {
    let per = ENTRY_LEN + if bases { ChunkId::LEN } else { 0 };
    let mut out = Vec::with_capacity(4 + entries.len() * per);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.id.0);
    }
    for k in 0..4 {
        for e in entries {
            out.extend_from_slice(&e.fields()[k].to_le_bytes());
        }
    }
    if bases {
        for e in entries {
            out.extend_from_slice(&e.base.unwrap_or_default().0);
        }
    }
    out
}

/// Decodes a list made by [`encode_entries`] from the start of `b`; returns the rest. A base
/// column whose id is all zero means "stored whole"; a chunk that names itself as its base
/// is `Corrupt`.
pub fn decode_entries<'a>(
    b: &'a [u8],
    what: &str,
    bases: bool,
) -> Result<(Vec<BlockEntry>, &'a [u8])> {
    if b.len() < 4 {
        return Err(err!(Corrupt, "{what}: entry list truncated"));
    }
    let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes")) as usize;
    let per = ENTRY_LEN + if bases { ChunkId::LEN } else { 0 };
    let end = n
        .checked_mul(per)
        .and_then(|x| x.checked_add(4))
        .filter(|&e| e <= b.len())
        .ok_or_else(|| {
            err!(
                Corrupt,
                "{what}: entry list says {n} entries but is shorter"
            )
        })?;
    const L: usize = ChunkId::LEN;
    let ids = &b[4..4 + L * n];
    let col = |k: usize, i: usize| {
        let at = 4 + L * n + 4 * (k * n + i);
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    };
    let base_at = 4 + ENTRY_LEN * n;
    let entries: Vec<BlockEntry> = (0..n)
        .map(|i| BlockEntry {
            id: ChunkId(ids[L * i..L * i + L].try_into().expect("id bytes")),
            block_offset: col(0, i),
            block_len: col(1, i),
            offset: col(2, i),
            len: col(3, i),
            base: bases
                .then(|| {
                    let at = base_at + L * i;
                    ChunkId(b[at..at + L].try_into().expect("id bytes"))
                })
                .filter(|id| *id != ChunkId::default()),
        })
        .collect();
    if let Some(e) = entries.iter().find(|e| e.base == Some(e.id)) {
        return Err(err!(
            Corrupt,
            "{what}: chunk {} is a patch against itself",
            e.id
        ));
    }
    Ok((entries, &b[end..]))
}

/// One block as the trailer lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailerBlock {
    /// Offset of the sealed block in the pack.
    pub block_offset: u32,
    /// Length of the sealed block.
    pub block_len: u32,
    /// Lengths of the chunks in the decoded block, in order (they sit back to back).
    pub chunk_lens: Vec<u32>,
}

/// Encodes the trailer payload (before zstd): `block_count u32`, then per block
/// `sealed_len u32, chunk_count u32, chunk_len u32 x chunk_count`. Blocks sit back to back
/// from offset 8 and chunks back to back in each block, so offsets are implied; chunk ids are
/// not repeated here (the index has them, and a rebuild recomputes them by hashing).
pub fn encode_trailer(entries: &[BlockEntry]) -> Vec<u8> {
    let blocks = trailer_blocks(entries);
    let mut out = (blocks.len() as u32).to_le_bytes().to_vec();
    for b in &blocks {
        out.extend_from_slice(&b.block_len.to_le_bytes());
        out.extend_from_slice(&(b.chunk_lens.len() as u32).to_le_bytes());
        for l in &b.chunk_lens {
            out.extend_from_slice(&l.to_le_bytes());
        }
    }
    out
}

/// The blocks of a pack as [`encode_trailer`] describes them, from index entries.
pub fn trailer_blocks(entries: &[BlockEntry]) -> Vec<TrailerBlock> {
    let mut sorted: Vec<&BlockEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| (e.block_offset, e.offset));
    let mut blocks: Vec<TrailerBlock> = Vec::new();
    for e in sorted {
        match blocks.last_mut() {
            Some(b) if b.block_offset == e.block_offset => b.chunk_lens.push(e.len),
            _ => blocks.push(TrailerBlock {
                block_offset: e.block_offset,
                block_len: e.block_len,
                chunk_lens: vec![e.len],
            }),
        }
    }
    blocks
}

/// Decodes a trailer payload.
pub fn decode_trailer(b: &[u8], what: &str) -> Result<Vec<TrailerBlock>> {
    let mut at = 0usize;
    let mut u32_at = |what2: &str| -> Result<u32> {
        let v = b
            .get(at..at + 4)
            .ok_or_else(|| err!(Corrupt, "{what}: trailer truncated at {what2}"))?;
        at += 4;
        Ok(u32::from_le_bytes(v.try_into().expect("4 bytes")))
    };
    let n = u32_at("block count")?;
    let mut offset = PACK_HEADER_LEN as u32;
    let mut blocks = Vec::new();
    for _ in 0..n {
        let block_len = u32_at("block length")?;
        let count = u32_at("chunk count")?;
        let mut chunk_lens = Vec::new();
        for _ in 0..count {
            chunk_lens.push(u32_at("chunk length")?);
        }
        blocks.push(TrailerBlock {
            block_offset: offset,
            block_len,
            chunk_lens,
        });
        offset = offset.saturating_add(block_len);
    }
    Ok(blocks)
}

/// Bytes before the first block.
pub const PACK_HEADER_LEN: usize = 8;

/// Largest decoded block a reader accepts (writers make about 4 MiB).
pub const MAX_BLOCK_LEN: usize = 64 * 1024 * 1024;

/// Decodes a block's plaintext into `out` (cleared first) with a reusable zstd context.
pub fn decode_block_with(
    plain: &[u8],
    what: &str,
    dctx: &mut zstd::bulk::Decompressor<'_>,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.clear();
    match plain.first() {
        Some(&CODEC_NONE) => out.extend_from_slice(&plain[1..]),
        Some(&CODEC_ZSTD) => {
            out.reserve(decoded_len(plain, what)?);
            dctx.decompress_to_buffer(&plain[1..], out)
                .map_err(|e| err!(Corrupt, "{what}: bad zstd block: {e}"))?;
        }
        Some(c) => return Err(err!(Corrupt, "{what}: unknown block codec {c}")),
        None => return Err(err!(Corrupt, "{what}: empty block")),
    }
    Ok(())
}

/// The length a block's plaintext decodes to (a zstd block's recorded frame size, at most
/// [`MAX_BLOCK_LEN`]), known before decoding so the caller can provide the buffer.
pub fn decoded_len(plain: &[u8], what: &str) -> Result<usize> {
    match plain.first() {
        Some(&CODEC_NONE) => Ok(plain.len() - 1),
        Some(&CODEC_ZSTD) => zstd::zstd_safe::get_frame_content_size(&plain[1..])
            .ok()
            .flatten()
            .filter(|&l| l as usize <= MAX_BLOCK_LEN)
            .map(|l| l as usize)
            .ok_or_else(|| err!(Corrupt, "{what}: zstd block without a valid size")),
        Some(c) => Err(err!(Corrupt, "{what}: unknown block codec {c}")),
        None => Err(err!(Corrupt, "{what}: empty block")),
    }
}

/// Decodes a block's plaintext into `out`, which must be exactly [`decoded_len`] bytes long; a
/// block that decodes to another length is corrupt.
pub fn decode_block_to_slice(
    plain: &[u8],
    what: &str,
    dctx: &mut zstd::bulk::Decompressor<'_>,
    out: &mut [u8],
) -> Result<()> {
    let n = match plain.first() {
        Some(&CODEC_NONE) if plain.len() - 1 == out.len() => {
            out.copy_from_slice(&plain[1..]);
            out.len()
        }
        Some(&CODEC_ZSTD) => dctx
            .decompress_to_buffer(&plain[1..], out)
            .map_err(|e| err!(Corrupt, "{what}: bad zstd block: {e}"))?,
        _ => {
            return Err(err!(
                Corrupt,
                "{what}: block does not decode to its recorded size"
            ))
        }
    };
    if n != out.len() {
        return Err(err!(
            Corrupt,
            "{what}: block decoded to {n} bytes, its frame says {}",
            out.len()
        ));
    }
    Ok(())
}

/// Decodes a block's plaintext.
pub fn decode_block(plain: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut dctx = zstd::bulk::Decompressor::new().map_err(|e| err!(Other, "zstd: {e}"))?;
    let mut out = Vec::new();
    decode_block_with(plain, what, &mut dctx, &mut out)?;
    Ok(out)
}
