//! The chunk writer: deduplicates chunks, groups new ones into 4 MiB blocks (before
//! compression; `BLOCK_TARGET`), compresses and encrypts blocks on all cores, and packs them
//! into ~16 MiB pack files (`PACK_TARGET`). `docs/FORMAT.md` §6, writer policy.
//!
//! # Execution model
//! The caller's thread reads the source, hashes each chunk (keyed BLAKE3) and checks the
//! index. New chunks are appended to the current block; a full block goes through a bounded
//! channel to `N = available_parallelism` worker threads (zstd + XChaCha20-Poly1305), which
//! hand sealed blocks to one packer thread that appends them to the current pack and writes
//! each finished pack to storage. Channels are bounded, so memory stays at about
//! `(2N + 2) x block + pack` whatever the source size.
//!
//! Nothing written here is visible to readers until [`ChunkWriter::finish`] has written the
//! index object covering the packs; a point referencing the chunks is written after that.
//! A crash before then leaves only unreferenced packs (reclaimed by prune).
use std::collections::HashSet;
use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::crypto::{MasterKey, NONCE_LEN, SEAL_OVERHEAD};
use crate::error::{err, Error, Result};
use crate::format::config::ChunkerParams;
use crate::format::index::IndexFile;
use crate::format::object;
use crate::format::pack::{
    encode_trailer, BlockEntry, BLOCK_AAD, CODEC_NONE, CODEC_ZSTD, PACK_MAGIC, TRAILER_AAD,
};
use crate::id::{ChunkId, ObjectId};
use crate::index::Index;
use crate::storage::{ObjectKind, Storage};

/// Target size of a block before compression. 4 MiB blocks compress within 0.6% of whole-file
/// zstd (1 MiB: 2.4% worse) on the benchmark's chat DB, and keep one block per worker cheap.
pub const BLOCK_TARGET: usize = 4 * 1024 * 1024;
/// Target size of a pack file.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;
/// zstd level for blocks. Level 3 on 4 MiB blocks stores SQLite pages within 0.6% of
/// whole-file `zstd -3`; with 16-byte chunk ids the metadata stays under 1.5% more, and level 3
/// is ~25% faster than level 4 (compression is what bounds a full backup). Measured in
/// docs/BENCHMARKS.md.
pub const ZSTD_LEVEL: i32 = 3;

/// A chunk queued in a block: id, offset and length in the block, base of a page patch.
type Queued = (ChunkId, u32, u32, Option<ChunkId>);

struct RawBlock {
    data: Vec<u8>,
    chunks: Vec<Queued>,
}

struct SealedBlock {
    sealed: Vec<u8>,
    chunks: Vec<Queued>,
}

/// How [`ChunkWriter::store_page_against`] stored a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageStored {
    /// Already in the repository: nothing written.
    Known,
    /// Stored as its own bytes (it may serve as a base from now on).
    Whole,
    /// Stored as a patch against the base offered.
    Patch,
}

/// A page is stored as a patch only when the patch is shorter than the page divided by
/// this; otherwise whole, and it becomes the next base. For a page that grows by r bytes a
/// version (a leaf gaining rows), patches against a base grow r, 2r, ... up to the limit L,
/// then one whole page P: about L/2 + P*r/L bytes a version, least at L = sqrt(2*P*r) (about
/// 900 bytes for 4 KiB pages and 100-byte rows); a quarter page is near that and leaves room
/// for bigger rows.
pub const PATCH_MAX_FRACTION: usize = 4;

/// What a finished writer stored.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    /// The index objects written (empty when nothing new was stored).
    pub indexes: Vec<ObjectId>,
    /// Chunks offered.
    pub chunks_seen: u64,
    /// Bytes offered.
    pub bytes_seen: u64,
    /// Chunks that were new.
    pub chunks_new: u64,
    /// Bytes of new chunks before compression.
    pub bytes_new: u64,
    /// Bytes written to storage (packs + index).
    pub bytes_stored: u64,
    /// Packs written.
    pub packs: u64,
}

/// Writes chunks into a repository. Only a [`crate::BackupSession`] hands one out (or core's
/// own prune), so nothing is stored without a lease and a loaded index.
pub struct ChunkWriter<'r> {
    key: &'r MasterKey,
    index: &'r Index,
    chunker: ChunkerParams,
    pending: HashSet<ChunkId>,
    /// Pages stored whole by [`ChunkWriter::store_page_against`] in this writer or, handed
    /// over, in earlier writers of the same session whose index objects are durable: bases
    /// a patch may name although the loaded index does not list them yet.
    whole: HashSet<ChunkId>,
    block: RawBlock,
    to_workers: Option<SyncSender<RawBlock>>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<PackerOutput>>>,
    summary: WriteSummary,
    blocks_sent: u64,
    /// Block buffers handed back by the workers, reused instead of reallocated.
    recycled: Receiver<Vec<u8>>,
}

#[derive(Default)]
struct PackerOutput {
    packs: u64,
    indexes: Vec<ObjectId>,
    bytes: u64,
    blocks: u64,
}

impl<'r> ChunkWriter<'r> {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        key: &'r MasterKey,
        index: &'r Index,
        chunker: ChunkerParams,
    ) -> ChunkWriter<'r> {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Capacity 1 each: with N workers busy, at most N + 2 raw blocks are in flight, plus
        // at most 2 spare buffers waiting to be reused.
        let (to_workers, work_rx) = sync_channel::<RawBlock>(1);
        let (to_packer, packer_rx) = sync_channel::<Result<SealedBlock>>(1);
        let (recycle_tx, recycle_rx) = sync_channel::<Vec<u8>>(2);
        let work_rx = Arc::new(Mutex::new(work_rx));
        // The threads outlive this borrow: they share one copy of the key (wiped on drop
        // when the last of them ends), not one each.
        let shared_key = Arc::new(key.duplicate());
        let workers = (0..n)
            .map(|i| {
                let rx = Arc::clone(&work_rx);
                let tx = to_packer.clone();
                let recycle = recycle_tx.clone();
                let key = Arc::clone(&shared_key);
                std::thread::Builder::new()
                    .name(format!("lifeboat-seal-{i}"))
                    .spawn(move || seal_worker(&rx, &tx, &recycle, &key))
                    .expect("spawn worker thread")
            })
            .collect();
        drop(to_packer);
        let st = Arc::clone(&storage);
        let packer_key = shared_key;
        let packer = std::thread::Builder::new()
            .name("lifeboat-packer".into())
            .spawn(move || packer_loop(&packer_rx, st.as_ref(), &packer_key))
            .expect("spawn packer thread");
        ChunkWriter {
            key,
            index,
            chunker,
            pending: HashSet::new(),
            whole: HashSet::new(),
            block: RawBlock {
                data: Vec::with_capacity(BLOCK_TARGET),
                chunks: Vec::new(),
            },
            recycled: recycle_rx,
            to_workers: Some(to_workers),
            workers,
            packer: Some(packer),
            summary: WriteSummary::default(),
            blocks_sent: 0,
        }
    }

    /// The key of the rolling database checksum of pages stored through this writer.
    pub fn checksum_key(&self) -> crate::components::ChecksumKey {
        self.key.checksum_key()
    }

    /// Stores a database page: like [`ChunkWriter::store_chunk`], but a page is checked only
    /// against the index, not against the chunks queued in this run. Identical pages within
    /// one capture (rare, and they compress to almost nothing in a block) may be stored twice;
    /// in exchange the dedup set does not grow by 33+ bytes for every page of the database,
    /// which is what keeps a 1 GiB database's backup under 100 MiB of memory. Storing a chunk
    /// twice is valid: every stored copy is indexed and any indexed location may be read.
    pub fn store_page(&mut self, data: &[u8]) -> Result<ChunkId> {
        crate::cancel::check()?;
        let id = self.key.chunk_id(data);
        self.summary.chunks_seen += 1;
        self.summary.bytes_seen += data.len() as u64;
        if self.index.contains(&id) {
            return Ok(id);
        }
        self.append(id, data, None)?;
        Ok(id)
    }

    /// Stores a database page like [`ChunkWriter::store_page`], as a patch against `base`
    /// (an earlier version of the same page: its id and content) when the base is stored
    /// whole in the repository (patches are one level deep: a reader fetches at most one
    /// more chunk per page) and the patch is shorter than the page / [`PATCH_MAX_FRACTION`];
    /// whole otherwise. The page's id is the hash of its full content either way.
    pub fn store_page_against(
        &mut self,
        data: &[u8],
        base: Option<(&ChunkId, &[u8])>,
    ) -> Result<(ChunkId, PageStored)> {
        crate::cancel::check()?;
        let id = self.key.chunk_id(data);
        self.summary.chunks_seen += 1;
        self.summary.bytes_seen += data.len() as u64;
        if self.index.contains(&id) {
            return Ok((id, PageStored::Known));
        }
        if let Some((base_id, base)) = base {
            let whole = self.whole.contains(base_id)
                || (self.index.contains(base_id)
                    && self.index.get(base_id).is_some_and(|l| l.base.is_none()));
            // The base's bytes must be the base's: a patch against other bytes would make a
            // page no reader can rebuild (a caller's stale copy is simply not used).
            if whole && *base_id != id && self.key.chunk_id(base) == *base_id {
                let limit = data.len() / PATCH_MAX_FRACTION;
                if let Some(p) = crate::format::patch::encode(base_id, base, data, limit) {
                    self.append(id, &p, Some(*base_id))?;
                    return Ok((id, PageStored::Patch));
                }
            }
        }
        self.append(id, data, None)?;
        self.whole.insert(id);
        Ok((id, PageStored::Whole))
    }

    /// The id a chunk of these bytes has (tests that craft what another key holder could).
    #[cfg(test)]
    pub(crate) fn id_of(&self, data: &[u8]) -> ChunkId {
        self.key.chunk_id(data)
    }

    /// Bytes of new chunks queued so far, as stored (a patch's length, not its page's).
    pub fn summary_bytes_new(&self) -> u64 {
        self.summary.bytes_new
    }

    /// Hands the pages this writer stored whole to the session's next writer (after this
    /// one's index objects are durable), so they can serve as bases there.
    pub(crate) fn take_whole(&mut self) -> HashSet<ChunkId> {
        std::mem::take(&mut self.whole)
    }

    /// See [`ChunkWriter::take_whole`].
    pub(crate) fn set_whole(&mut self, whole: HashSet<ChunkId>) {
        self.whole = whole;
    }

    /// Stores a chunk's bytes as they sit in a block (a page patch with its base), already
    /// authenticated by the caller (prune's repack): no hashing, no deduplication.
    pub(crate) fn store_stored(
        &mut self,
        id: ChunkId,
        stored: &[u8],
        base: Option<ChunkId>,
    ) -> Result<()> {
        self.summary.chunks_seen += 1;
        self.summary.bytes_seen += stored.len() as u64;
        self.append(id, stored, base)
    }

    /// Stores one chunk (if new) and returns its id.
    pub fn store_chunk(&mut self, data: &[u8]) -> Result<ChunkId> {
        crate::cancel::check()?;
        let id = self.key.chunk_id(data);
        self.summary.chunks_seen += 1;
        self.summary.bytes_seen += data.len() as u64;
        if self.index.contains(&id) || !self.pending.insert(id) {
            return Ok(id);
        }
        self.append(id, data, None)?;
        Ok(id)
    }

    fn append(&mut self, id: ChunkId, data: &[u8], base: Option<ChunkId>) -> Result<()> {
        self.summary.chunks_new += 1;
        self.summary.bytes_new += data.len() as u64;
        let off = self.block.data.len() as u32;
        self.block.data.extend_from_slice(data);
        self.block.chunks.push((id, off, data.len() as u32, base));
        if self.block.data.len() >= BLOCK_TARGET {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Stores a byte stream cut by the keyed content-defined chunker; returns the chunk ids in
    /// order. Also returns the number of bytes read.
    pub fn store_stream(&mut self, reader: impl Read) -> Result<(Vec<ChunkId>, u64)> {
        let mut ids = Vec::new();
        let (p, seed) = (self.chunker, self.key.chunker_seed());
        let total = cut_stream(reader, p, seed, |chunk| {
            ids.push(self.store_chunk(chunk)?);
            Ok(())
        })?;
        Ok((ids, total))
    }

    /// Stores a small in-memory buffer (a page table, a tree listing) as a stream.
    pub fn store_bytes(&mut self, data: &[u8]) -> Result<Vec<ChunkId>> {
        if data.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.store_stream(data)?.0)
    }

    /// Whether this chunk is already stored or queued (no hashing).
    pub fn has(&self, id: &ChunkId) -> bool {
        self.index.contains(id) || self.pending.contains(id)
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.chunks.is_empty() {
            return Ok(());
        }
        let data = self
            .recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BLOCK_TARGET));
        let block = std::mem::replace(
            &mut self.block,
            RawBlock {
                data,
                chunks: Vec::new(),
            },
        );
        let tx = self.to_workers.as_ref().expect("writer is open");
        if tx.send(block).is_err() {
            // The pipeline stopped: the packer's error says why.
            return Err(self
                .shutdown()
                .err()
                .unwrap_or_else(|| err!(Other, "writer pipeline stopped")));
        }
        self.blocks_sent += 1;
        Ok(())
    }

    fn shutdown(&mut self) -> Result<PackerOutput> {
        drop(self.to_workers.take());
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.packer.take() {
            Some(p) => p
                .join()
                .map_err(|_| err!(Other, "packer thread panicked"))?,
            None => Err(err!(Other, "writer already finished")),
        }
    }

    /// Flushes everything, waits for the packs to be durable and writes one index object
    /// for them. After this returns `Ok`, a point may reference every chunk stored.
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.flush_block()?;
        // The dedup set is not needed any more; free it before the last index is encoded.
        self.pending = HashSet::new();
        let out = self.shutdown()?;
        if out.blocks != self.blocks_sent {
            // A worker died (panic) and its block is lost: never write an index or point
            // that would reference it.
            return Err(err!(
                Other,
                "internal error: {} blocks sent, {} packed; nothing was committed",
                self.blocks_sent,
                out.blocks
            ));
        }
        let mut summary = std::mem::take(&mut self.summary);
        summary.packs = out.packs;
        summary.bytes_stored = out.bytes;
        summary.indexes = out.indexes;
        Ok(summary)
    }
}

impl Drop for ChunkWriter<'_> {
    fn drop(&mut self) {
        // Abandoned writer (error path): stop the threads; packs already written stay
        // unreferenced until prune.
        if self.packer.is_some() {
            let _ = self.shutdown();
        }
    }
}

/// Cuts `reader` with the keyed content-defined chunker of parameters `p` and seed `seed`,
/// handing each chunk to `each` in order; returns the bytes read.
pub(crate) fn cut_stream(
    reader: impl Read,
    p: ChunkerParams,
    seed: u64,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let cdc = fastcdc::v2020::StreamCDC::with_level_and_seed(
        reader,
        p.min as usize,
        p.avg as usize,
        p.max as usize,
        fastcdc::v2020::Normalization::Level1,
        seed,
    );
    let mut total = 0u64;
    for chunk in cdc {
        let chunk = chunk.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => Error::io("read", io),
            other => err!(Source, "chunking failed: {other}"),
        })?;
        total += chunk.length as u64;
        each(&chunk.data)?;
    }
    Ok(total)
}

fn seal_worker(
    rx: &Mutex<Receiver<RawBlock>>,
    tx: &SyncSender<Result<SealedBlock>>,
    recycle: &SyncSender<Vec<u8>>,
    key: &MasterKey,
) {
    // One compression context per worker, reused: a fresh context per block allocates and
    // zeroes megabytes of match tables each time.
    let mut cctx = match zstd::bulk::Compressor::new(ZSTD_LEVEL) {
        Ok(c) => Some(c),
        Err(e) => {
            let _ = tx.send(Err(err!(Other, "zstd: {e}")));
            return;
        }
    };
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(mut block) = job else { return };
        let sealed = seal_block(cctx.as_mut().expect("context"), key, &block.data).map(|sealed| {
            SealedBlock {
                sealed,
                chunks: std::mem::take(&mut block.chunks),
            }
        });
        block.data.clear();
        let _ = recycle.try_send(block.data);
        if tx.send(sealed).is_err() {
            return;
        }
    }
}

/// `nonce || seal(codec || zstd(data))`, built in one buffer and encrypted in place.
fn seal_block(
    cctx: &mut zstd::bulk::Compressor<'_>,
    key: &MasterKey,
    data: &[u8],
) -> Result<Vec<u8>> {
    let head = NONCE_LEN + 1;
    let mut out =
        Vec::with_capacity(head + zstd::zstd_safe::compress_bound(data.len()) + SEAL_OVERHEAD);
    out.resize(head, 0);
    out[NONCE_LEN] = CODEC_ZSTD;
    let mut cursor = std::io::Cursor::new(&mut out);
    cursor.set_position(head as u64);
    let n = cctx
        .compress_to_buffer(data, &mut cursor)
        .map_err(|e| err!(Other, "zstd: {e}"))?;
    if n >= data.len() {
        // Incompressible: store as is.
        out.truncate(NONCE_LEN);
        out.push(CODEC_NONE);
        out.extend_from_slice(data);
    }
    key.seal_in_place(BLOCK_AAD, &mut out)?;
    Ok(out)
}

/// A pack being written: streamed to storage block by block and hashed on the way, so its
/// name (the hash of its bytes) is known at the end without holding it in memory.
struct OpenPack<'s> {
    out: Box<dyn crate::storage::ObjectWriter + 's>,
    hasher: blake3::Hasher,
    len: u64,
    entries: Vec<BlockEntry>,
}

impl<'s> OpenPack<'s> {
    fn new(storage: &'s dyn Storage) -> Result<OpenPack<'s>> {
        let out = storage
            .create(ObjectKind::Pack)
            .map_err(|e| Error::from(e).context("start pack"))?;
        let mut pack = OpenPack {
            out,
            hasher: blake3::Hasher::new(),
            len: 0,
            entries: Vec::new(),
        };
        pack.append(PACK_MAGIC)?;
        pack.append(&[object::OBJECT_VERSION, 0, 0, 0])?;
        Ok(pack)
    }

    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.out
            .write(data)
            .map_err(|e| Error::from(e).context("write pack"))?;
        self.hasher.update(data);
        self.len += data.len() as u64;
        Ok(())
    }
}

/// An index object is written after this many packs (and at the end), so the index of a
/// large backup is never held in memory whole, and an interrupted backup leaves indexed packs
/// that a re-run deduplicates against instead of storing again.
const PACKS_PER_INDEX: usize = 4;

fn packer_loop(
    rx: &Receiver<Result<SealedBlock>>,
    storage: &dyn Storage,
    key: &MasterKey,
) -> Result<PackerOutput> {
    let mut out = PackerOutput::default();
    let mut unindexed: Vec<(ObjectId, Vec<BlockEntry>)> = Vec::new();
    let mut pack: Option<OpenPack<'_>> = None;
    for block in rx.iter() {
        let block = block?;
        out.blocks += 1;
        let p = match pack.as_mut() {
            Some(p) => p,
            None => pack.insert(OpenPack::new(storage)?),
        };
        let block_offset = p.len as u32;
        let block_len = block.sealed.len() as u32;
        p.append(&block.sealed)?;
        for (id, offset, len, base) in block.chunks {
            p.entries.push(BlockEntry {
                id,
                block_offset,
                block_len,
                offset,
                len,
                base,
            });
        }
        if p.len >= PACK_TARGET as u64 {
            let full = pack.take().expect("open pack");
            out.bytes += write_pack(key, full, &mut unindexed)?;
            out.packs += 1;
            if unindexed.len() >= PACKS_PER_INDEX {
                write_index(storage, key, &mut unindexed, &mut out)?;
            }
        }
    }
    if let Some(p) = pack.take() {
        out.bytes += write_pack(key, p, &mut unindexed)?;
        out.packs += 1;
    }
    write_index(storage, key, &mut unindexed, &mut out)?;
    Ok(out)
}

/// Writes one index object for the packs written so far (all of them already durable).
fn write_index(
    storage: &dyn Storage,
    key: &MasterKey,
    packs: &mut Vec<(ObjectId, Vec<BlockEntry>)>,
    out: &mut PackerOutput,
) -> Result<()> {
    if packs.is_empty() {
        return Ok(());
    }
    let file = IndexFile {
        packs: std::mem::take(packs),
    };
    let bytes = file.seal(key)?;
    let id = ObjectId::of(&bytes);
    storage
        .write(ObjectKind::Index, &id.to_hex(), &bytes)
        .map_err(|e| Error::from(e).context("write index"))?;
    out.bytes += bytes.len() as u64;
    out.indexes.push(id);
    Ok(())
}

/// Appends the trailer and publishes the pack under the hash of its bytes.
fn write_pack(
    key: &MasterKey,
    mut pack: OpenPack<'_>,
    done: &mut Vec<(ObjectId, Vec<BlockEntry>)>,
) -> Result<u64> {
    let compressed = zstd::bulk::compress(&encode_trailer(&pack.entries), ZSTD_LEVEL)
        .map_err(|e| err!(Other, "zstd: {e}"))?;
    let trailer = key.seal(TRAILER_AAD, &compressed)?;
    pack.append(&trailer)?;
    pack.append(&(trailer.len() as u32).to_le_bytes())?;
    let id = ObjectId(*pack.hasher.finalize().as_bytes());
    let len = pack.len;
    pack.out
        .finish(&id.to_hex())
        .map_err(|e| Error::from(e).context(format!("write pack {id}")))?;
    tracing::debug!(pack = %id, bytes = len, chunks = pack.entries.len(), "pack written");
    done.push((id, pack.entries));
    Ok(len)
}
