//! The chunk writer: deduplicates chunks, groups new ones into ~1 MiB blocks, compresses and
//! encrypts blocks on all cores, and packs them into ~16 MiB pack files.
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

use crate::crypto::MasterKey;
use crate::error::{err, Error, Result};
use crate::format::config::ChunkerParams;
use crate::format::index::{IndexFile, INDEX_MAGIC};
use crate::format::object;
use crate::format::pack::{
    encode_block, encode_entries, BlockEntry, BLOCK_AAD, PACK_MAGIC, TRAILER_AAD,
};
use crate::id::{ChunkId, ObjectId};
use crate::index::Index;
use crate::storage::{ObjectKind, Storage};

/// Target size of a block before compression.
pub const BLOCK_TARGET: usize = 1024 * 1024;
/// Target size of a pack file.
pub const PACK_TARGET: usize = 16 * 1024 * 1024;
/// zstd level for blocks.
pub const ZSTD_LEVEL: i32 = 3;

struct RawBlock {
    data: Vec<u8>,
    chunks: Vec<(ChunkId, u32, u32)>,
}

struct SealedBlock {
    sealed: Vec<u8>,
    chunks: Vec<(ChunkId, u32, u32)>,
}

/// What a finished writer stored.
#[derive(Debug, Default, Clone)]
pub struct WriteSummary {
    /// The index object written (None when nothing new was stored).
    pub index: Option<(ObjectId, IndexFile)>,
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

/// Writes chunks into a repository. Obtain one from [`crate::Repository::writer`].
pub struct ChunkWriter<'r> {
    key: &'r MasterKey,
    index: &'r Index,
    chunker: ChunkerParams,
    storage: Arc<dyn Storage>,
    pending: HashSet<ChunkId>,
    block: RawBlock,
    to_workers: Option<SyncSender<RawBlock>>,
    workers: Vec<JoinHandle<()>>,
    packer: Option<JoinHandle<Result<PackerOutput>>>,
    summary: WriteSummary,
    blocks_sent: u64,
}

struct PackerOutput {
    packs: Vec<(ObjectId, Vec<BlockEntry>)>,
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
        let (to_workers, work_rx) = sync_channel::<RawBlock>(n);
        let (to_packer, packer_rx) = sync_channel::<Result<SealedBlock>>(n);
        let work_rx = Arc::new(Mutex::new(work_rx));
        let workers = (0..n)
            .map(|i| {
                let rx = Arc::clone(&work_rx);
                let tx = to_packer.clone();
                let key = key.clone();
                std::thread::Builder::new()
                    .name(format!("lifeboat-seal-{i}"))
                    .spawn(move || seal_worker(&rx, &tx, &key))
                    .expect("spawn worker thread")
            })
            .collect();
        drop(to_packer);
        let st = Arc::clone(&storage);
        let packer_key = key.clone();
        let packer = std::thread::Builder::new()
            .name("lifeboat-packer".into())
            .spawn(move || packer_loop(&packer_rx, st.as_ref(), &packer_key))
            .expect("spawn packer thread");
        ChunkWriter {
            key,
            index,
            chunker,
            storage,
            pending: HashSet::new(),
            block: RawBlock {
                data: Vec::with_capacity(BLOCK_TARGET),
                chunks: Vec::new(),
            },
            to_workers: Some(to_workers),
            workers,
            packer: Some(packer),
            summary: WriteSummary::default(),
            blocks_sent: 0,
        }
    }

    /// Stores one chunk (if new) and returns its id.
    pub fn store_chunk(&mut self, data: &[u8]) -> Result<ChunkId> {
        let id = self.key.chunk_id(data);
        self.summary.chunks_seen += 1;
        self.summary.bytes_seen += data.len() as u64;
        if self.index.contains(&id) || !self.pending.insert(id) {
            return Ok(id);
        }
        self.summary.chunks_new += 1;
        self.summary.bytes_new += data.len() as u64;
        let off = self.block.data.len() as u32;
        self.block.data.extend_from_slice(data);
        self.block.chunks.push((id, off, data.len() as u32));
        if self.block.data.len() >= BLOCK_TARGET {
            self.flush_block()?;
        }
        Ok(id)
    }

    /// Stores a byte stream cut by the keyed content-defined chunker; returns the chunk ids in
    /// order. Also returns the number of bytes read.
    pub fn store_stream(&mut self, reader: impl Read) -> Result<(Vec<ChunkId>, u64)> {
        let p = self.chunker;
        let cdc = fastcdc::v2020::StreamCDC::with_level_and_seed(
            reader,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            fastcdc::v2020::Normalization::Level1,
            self.key.chunker_seed(),
        );
        let mut ids = Vec::new();
        let mut total = 0u64;
        for chunk in cdc {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(io) => Error::io("read", io),
                other => err!(Source, "chunking failed: {other}"),
            })?;
            total += chunk.length as u64;
            ids.push(self.store_chunk(&chunk.data)?);
        }
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
        let block = std::mem::replace(
            &mut self.block,
            RawBlock {
                data: Vec::with_capacity(BLOCK_TARGET),
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
        summary.packs = out.packs.len() as u64;
        summary.bytes_stored = out.bytes;
        if !out.packs.is_empty() {
            let file = IndexFile { packs: out.packs };
            let bytes = object::seal(self.key, INDEX_MAGIC, &file.encode())?;
            let id = ObjectId::of(&bytes);
            self.storage
                .write(ObjectKind::Index, &id.to_hex(), &bytes)
                .map_err(|e| Error::from(e).context("write index"))?;
            summary.bytes_stored += bytes.len() as u64;
            summary.index = Some((id, file));
        }
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

fn seal_worker(
    rx: &Mutex<Receiver<RawBlock>>,
    tx: &SyncSender<Result<SealedBlock>>,
    key: &MasterKey,
) {
    loop {
        let job = match rx.lock() {
            Ok(guard) => guard.recv(),
            Err(_) => return,
        };
        let Ok(block) = job else { return };
        let plain = encode_block(&block.data, ZSTD_LEVEL);
        let sealed = key.seal(BLOCK_AAD, &plain).map(|sealed| SealedBlock {
            sealed,
            chunks: block.chunks,
        });
        if tx.send(sealed).is_err() {
            return;
        }
    }
}

struct OpenPack {
    buf: Vec<u8>,
    entries: Vec<BlockEntry>,
}

impl OpenPack {
    fn new() -> OpenPack {
        let mut buf = Vec::with_capacity(PACK_TARGET + BLOCK_TARGET);
        buf.extend_from_slice(PACK_MAGIC);
        buf.extend_from_slice(&[object::OBJECT_VERSION, 0, 0, 0]);
        OpenPack {
            buf,
            entries: Vec::new(),
        }
    }
}

fn packer_loop(
    rx: &Receiver<Result<SealedBlock>>,
    storage: &dyn Storage,
    key: &MasterKey,
) -> Result<PackerOutput> {
    let mut out = PackerOutput {
        packs: Vec::new(),
        bytes: 0,
        blocks: 0,
    };
    let mut pack = OpenPack::new();
    for block in rx.iter() {
        let block = block?;
        out.blocks += 1;
        let block_offset = pack.buf.len() as u32;
        let block_len = block.sealed.len() as u32;
        pack.buf.extend_from_slice(&block.sealed);
        for (id, offset, len) in block.chunks {
            pack.entries.push(BlockEntry {
                id,
                block_offset,
                block_len,
                offset,
                len,
            });
        }
        if pack.buf.len() >= PACK_TARGET {
            let full = std::mem::replace(&mut pack, OpenPack::new());
            out.bytes += write_pack(storage, key, full, &mut out.packs)?;
        }
    }
    if !pack.entries.is_empty() {
        out.bytes += write_pack(storage, key, pack, &mut out.packs)?;
    }
    Ok(out)
}

fn write_pack(
    storage: &dyn Storage,
    key: &MasterKey,
    mut pack: OpenPack,
    done: &mut Vec<(ObjectId, Vec<BlockEntry>)>,
) -> Result<u64> {
    let compressed = zstd::bulk::compress(&encode_entries(&pack.entries), ZSTD_LEVEL)
        .map_err(|e| err!(Other, "zstd: {e}"))?;
    let trailer = key.seal(TRAILER_AAD, &compressed)?;
    pack.buf.extend_from_slice(&trailer);
    pack.buf
        .extend_from_slice(&(trailer.len() as u32).to_le_bytes());
    let id = ObjectId::of(&pack.buf);
    storage
        .write(ObjectKind::Pack, &id.to_hex(), &pack.buf)
        .map_err(|e| Error::from(e).context(format!("write pack {id}")))?;
    tracing::debug!(pack = %id, bytes = pack.buf.len(), chunks = pack.entries.len(), "pack written");
    done.push((id, pack.entries));
    Ok(pack.buf.len() as u64)
}
