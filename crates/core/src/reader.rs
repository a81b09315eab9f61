//! The chunk reader: finds a chunk in the index, reads its sealed block (one ranged read),
//! authenticates, decompresses and checks the chunk's keyed hash before handing it out.
//! Nothing unauthenticated ever leaves this module. Recently decoded blocks are cached, so
//! reading the chunks of a block in order costs one read.
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use crate::crypto::MasterKey;
use crate::error::{err, Error, Result};
use crate::format::pack::{decode_block_to_slice, decode_block_with, decoded_len, BLOCK_AAD};
use crate::id::ChunkId;
use crate::index::Index;
use crate::storage::{ObjectKind, Storage};

/// Decoded blocks kept by [`ChunkReader::with_chunk`] (4 MiB each). Its callers read small
/// streams (page-table segments, trees, files) mostly in order, so two suffice; every cached
/// block counts against the 100 MiB budget of a restore.
const CACHE_BLOCKS: usize = 2;

/// Receives one block's worth of `(position, chunk)` pairs from [`ChunkReader::read_parallel`].
pub type BatchSink<'a> = dyn Fn(&[(usize, &[u8])]) -> Result<()> + Sync + 'a;

/// Index block number -> decoded block.
type BlockCache = VecDeque<(u32, Arc<Vec<u8>>)>;

/// Reads and authenticates chunks. Obtain one from a [`crate::BackupSession`] or a
/// [`crate::RestoreSession`].
pub struct ChunkReader<'r> {
    storage: Arc<dyn Storage>,
    key: &'r MasterKey,
    index: &'r Index,
    cache: BlockCache,
}

impl<'r> ChunkReader<'r> {
    pub(crate) fn new(storage: Arc<dyn Storage>, key: &'r MasterKey, index: &'r Index) -> Self {
        ChunkReader {
            storage,
            key,
            index,
            cache: VecDeque::with_capacity(CACHE_BLOCKS),
        }
    }

    /// The key of the rolling database checksum, to recompute a restored page table's.
    pub fn checksum_key(&self) -> crate::components::ChecksumKey {
        self.key.checksum_key()
    }

    /// Calls `f` with the authenticated content of a chunk.
    pub fn with_chunk<T>(&mut self, id: &ChunkId, f: impl FnOnce(&[u8]) -> T) -> Result<T> {
        let loc = self.index.get(id).ok_or_else(|| {
            err!(Corrupt, "chunk {id} is referenced but not in any index (its pack is missing or was never indexed)")
                .with_hint("run `lifeboat check --read-data`; restore from another copy of the repository if you have one")
        })?;
        let key = loc.block;
        let block = match self.cache.iter().find(|(k, _)| *k == key) {
            Some((_, b)) => Arc::clone(b),
            None => {
                let b = Arc::new(self.load_block(loc.pack, loc.block_offset, loc.block_len)?);
                if self.cache.len() == CACHE_BLOCKS {
                    self.cache.pop_front();
                }
                self.cache.push_back((key, Arc::clone(&b)));
                b
            }
        };
        let pack = self.index.pack(loc.pack);
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
        let data = block.get(start..end).ok_or_else(|| {
            err!(
                Corrupt,
                "pack {pack}: chunk {id} lies outside its block (index and pack disagree)"
            )
        })?;
        if self.key.chunk_id(data) != *id {
            return Err(err!(
                Corrupt,
                "pack {pack}: chunk {id} does not match its id"
            ));
        }
        Ok(f(data))
    }

    /// The authenticated content of a chunk.
    pub fn read(&mut self, id: &ChunkId) -> Result<Vec<u8>> {
        self.with_chunk(id, <[u8]>::to_vec)
    }

    /// Writes the chunks in order to `out`; returns bytes written.
    pub fn read_stream(&mut self, ids: &[ChunkId], out: &mut dyn Write) -> Result<u64> {
        let mut n = 0u64;
        for id in ids {
            let r = self.with_chunk(id, |d| out.write_all(d).map(|()| d.len()))?;
            n += r.map_err(|e| Error::io("write restored data", e))? as u64;
        }
        Ok(n)
    }

    /// The concatenation of a (small) stream in memory.
    pub fn read_bytes(&mut self, ids: &[ChunkId]) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.read_stream(ids, &mut v)?;
        Ok(v)
    }

    /// Reads every chunk of `ids` on `threads` threads and calls `sink(batch)` once per block,
    /// where `batch` holds `(i, data)` for every position `i` whose chunk is in that block, in
    /// ascending `i`, with the authenticated content of `ids[i]`. Batches arrive in no
    /// particular order; every position appears in exactly one batch. (Batches let a caller
    /// write runs of consecutive positions with one system call.)
    ///
    /// Positions are grouped by the block that holds their chunk, so every block is read and
    /// decoded exactly once, whatever the order of `ids` (a restore of an incremental point
    /// needs old and new blocks interleaved). Before anything is read, every id must be in the
    /// index; a missing one fails the call without a single `sink` call. On the first error
    /// (damaged block, sink failure) the other threads stop and that error is returned. Memory:
    /// one sealed and one decoded block per thread, 16 bytes per position; the cache of
    /// [`ChunkReader::with_chunk`] is emptied first (it would sit unused beside them).
    pub fn read_parallel(
        &mut self,
        ids: &[ChunkId],
        threads: usize,
        sink: &BatchSink<'_>,
    ) -> Result<()> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Mutex;

        // One 16-byte record per position, sorted by (block, offset in block, position):
        // 18 MiB for a 4 GiB database of 4 KiB pages. (A map of per-block vectors of
        // (position, offset, len, id) was twice that and grew by doubling.)
        #[derive(Clone, Copy)]
        struct Want {
            block: u32,
            offset: u32,
            len: u32,
            pos: u32,
        }
        if u32::try_from(ids.len()).is_err() {
            return Err(err!(
                Other,
                "{} chunks are too many for one read",
                ids.len()
            ));
        }
        self.cache.clear();
        let mut wants: Vec<Want> = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let loc = self.index.get(id).ok_or_else(|| {
                err!(Corrupt, "chunk {id} is referenced but not in any index (its pack is missing or was never indexed)")
                    .with_hint("run `lifeboat check --read-data`; nothing was written")
            })?;
            wants.push(Want {
                block: loc.block,
                offset: loc.offset,
                len: loc.len,
                pos: i as u32,
            });
        }
        wants.sort_unstable_by_key(|w| (w.block, w.offset, w.pos));
        // Work items: the range of `wants` that one block serves.
        let mut order: Vec<std::ops::Range<usize>> = Vec::new();
        let mut start = 0;
        for i in 1..=wants.len() {
            if i == wants.len() || wants[i].block != wants[start].block {
                order.push(start..i);
                start = i;
            }
        }
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        let work = || {
            let mut dctx = match zstd::bulk::Decompressor::new() {
                Ok(d) => d,
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    *first_err.lock().expect("error slot") = Some(err!(Other, "zstd: {e}"));
                    return;
                }
            };
            let mut block = AlignedBuf::default();
            while !stop.load(Ordering::Relaxed) {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(range) = order.get(k) else {
                    return;
                };
                let wants = &wants[range.clone()];
                let res = (|| {
                    // Every chunk of a block shares the block's location.
                    let loc = self
                        .index
                        .get(&ids[wants[0].pos as usize])
                        .expect("looked up above");
                    self.decode_block_aligned(
                        loc.pack,
                        loc.block_offset,
                        loc.block_len,
                        &mut dctx,
                        &mut block,
                    )?;
                    let block = block.as_slice();
                    let pack_id = self.index.pack(loc.pack);
                    let mut verified: Option<(ChunkId, u32)> = None;
                    let mut batch: Vec<(usize, &[u8])> = Vec::with_capacity(wants.len());
                    for w in wants {
                        let id = &ids[w.pos as usize];
                        let data = block.get(w.offset as usize..w.offset as usize + w.len as usize).ok_or_else(|| {
                            err!(Corrupt, "pack {pack_id}: chunk {id} lies outside its block (index and pack disagree)")
                        })?;
                        // Identical chunks at several positions are hashed once per block.
                        if verified != Some((*id, w.offset)) {
                            if self.key.chunk_id(data) != *id {
                                return Err(err!(
                                    Corrupt,
                                    "pack {pack_id}: chunk {id} does not match its id"
                                ));
                            }
                            verified = Some((*id, w.offset));
                        }
                        batch.push((w.pos as usize, data));
                    }
                    batch.sort_unstable_by_key(|(i, _)| *i);
                    sink(&batch)
                })();
                if let Err(e) = res {
                    stop.store(true, Ordering::Relaxed);
                    let mut slot = first_err.lock().expect("error slot");
                    if slot.is_none() {
                        *slot = Some(e);
                    }
                    return;
                }
            }
        };
        let threads = threads.clamp(1, order.len().max(1));
        std::thread::scope(|s| {
            for _ in 1..threads {
                s.spawn(work);
            }
            work();
        });
        match first_err.into_inner().expect("error slot") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Reads one sealed block (one ranged read), decrypts it in place and calls `f` with the
    /// plaintext and a description of the block for errors.
    fn with_block<T>(
        &self,
        pack: u32,
        offset: u32,
        len: u32,
        f: impl FnOnce(&[u8], &str) -> Result<T>,
    ) -> Result<T> {
        let pack_id = self.index.pack(pack);
        let what = format!("pack {} (block at offset {offset})", pack_id.to_hex());
        let mut sealed = self
            .storage
            .read_range(
                ObjectKind::Pack,
                &pack_id.to_hex(),
                offset as u64,
                len as u64,
            )
            .map_err(|e| Error::from(e).context(format!("read pack {pack_id}")))?;
        let plain = self.key.open_in_place(BLOCK_AAD, &mut sealed).map_err(|e| {
            e.context(what.clone()).with_hint(
                "this pack is damaged: run `lifeboat check --read-data` to list what is affected; nothing was restored from it",
            )
        })?;
        f(plain, &what)
    }

    /// Reads, authenticates and decompresses one block into `out` with the caller's context.
    fn decode_block_into(
        &self,
        pack: u32,
        offset: u32,
        len: u32,
        dctx: &mut zstd::bulk::Decompressor<'_>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.with_block(pack, offset, len, |plain, what| {
            decode_block_with(plain, what, dctx, out)
        })
    }

    /// [`Self::decode_block_into`] into a buffer that starts at an [`AlignedBuf::ALIGN`]
    /// boundary (the parallel restore path, whose pages may go to `O_DIRECT` writes).
    fn decode_block_aligned(
        &self,
        pack: u32,
        offset: u32,
        len: u32,
        dctx: &mut zstd::bulk::Decompressor<'_>,
        out: &mut AlignedBuf,
    ) -> Result<()> {
        self.with_block(pack, offset, len, |plain, what| {
            let size = decoded_len(plain, what)?;
            decode_block_to_slice(plain, what, dctx, out.prepare(size))
        })
    }

    fn load_block(&self, pack: u32, offset: u32, len: u32) -> Result<Vec<u8>> {
        let mut dctx = zstd::bulk::Decompressor::new().map_err(|e| err!(Other, "zstd: {e}"))?;
        let mut out = Vec::new();
        self.decode_block_into(pack, offset, len, &mut dctx, &mut out)?;
        Ok(out)
    }
}

/// A reusable buffer whose content starts at an [`AlignedBuf::ALIGN`]-byte boundary: a block
/// decoded into it hands out pages at aligned addresses (a block of 4 KiB pages), which is what
/// `O_DIRECT` writes need, so the restore writes them without a copy into the page cache.
#[derive(Default)]
struct AlignedBuf {
    raw: Vec<u8>,
    len: usize,
}

impl AlignedBuf {
    const ALIGN: usize = 4096;

    /// The content, `len` bytes long, to be filled by the caller (the buffer only grows).
    fn prepare(&mut self, len: usize) -> &mut [u8] {
        if self.raw.len() < len + Self::ALIGN {
            self.raw = vec![0; len + Self::ALIGN];
        }
        self.len = len;
        let pad = self.pad();
        &mut self.raw[pad..pad + len]
    }

    fn as_slice(&self) -> &[u8] {
        let pad = self.pad().min(self.raw.len());
        &self.raw[pad..(pad + self.len).min(self.raw.len())]
    }

    /// Bytes from the start of `raw` to the first aligned address (computed from the address:
    /// `align_offset` may give up and return `usize::MAX`).
    fn pad(&self) -> usize {
        let addr = self.raw.as_ptr() as usize;
        (Self::ALIGN - addr % Self::ALIGN) % Self::ALIGN
    }
}
