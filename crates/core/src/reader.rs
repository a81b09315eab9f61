//! The chunk reader: finds a chunk in the index, reads its sealed block (one ranged read),
//! authenticates, decompresses and checks the chunk's keyed hash before handing it out.
//! Nothing unauthenticated ever leaves this module. Recently decoded blocks are cached, so
//! reading the chunks of a block in order costs one read.
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::crypto::MasterKey;
use crate::error::{err, Error, Result};
use crate::format::pack::{decode_block_to_slice, decode_block_with, decoded_len, BLOCK_AAD};
use crate::format::patch;
use crate::id::ChunkId;
use crate::index::{Index, Location};
use crate::storage::{ObjectKind, Storage};

/// Decoded blocks kept by [`ChunkReader::with_chunk`] (4 MiB each). Its callers read small
/// streams (page-table segments, trees, files) mostly in order, so two suffice; every cached
/// block counts against the 100 MiB budget of a restore.
const CACHE_BLOCKS: usize = 2;

/// Receives one block's worth of `(position, chunk)` pairs from [`ChunkReader::read_parallel`].
pub type BatchSink<'a> = dyn Fn(&[(usize, &[u8])]) -> Result<()> + Sync + 'a;

/// Index block number -> decoded block.
type BlockCache = VecDeque<(u32, Arc<Vec<u8>>)>;

/// Receives one block's wants and their stored bytes from `ChunkReader::read_wants`.
type WantSink<'a> = dyn Fn(&[(Want, &[u8])]) -> Result<()> + Sync + 'a;

/// Bytes of page patches held at once by [`ChunkReader::read_parallel`] (a round): their
/// pages are rebuilt when their bases' blocks are read.
pub const PATCH_ROUND_BYTES: usize = 32 << 20;
/// Page patches per round at most (each keeps a slot; their stored bytes can be as small as
/// a header, so the bytes alone do not bound a round).
const PATCH_ROUND_COUNT: usize = 65_536;
/// Rebuilt pages handed to the sink at once (at most 16 MiB of 64 KiB pages per thread).
const PATCH_SINK_PAGES: usize = 256;

/// One chunk to read: where in which block, and for which position. 16 bytes, sorted by
/// (block, offset, position): 18 MiB for a 4 GiB database of 4 KiB pages. (A map of
/// per-block vectors of (position, offset, len, id) was twice that and grew by doubling.)
#[derive(Clone, Copy)]
struct Want {
    block: u32,
    offset: u32,
    len: u32,
    pos: u32,
}

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
        let loc = self.locate(id)?;
        match loc.base {
            None => {
                let block = self.cached_block(&loc)?;
                let data = self.chunk_in(&block, &loc, id)?;
                self.verify(data, id, &loc)?;
                Ok(f(data))
            }
            Some(base) => {
                let block = self.cached_block(&loc)?;
                let patch = self.chunk_in(&block, &loc, id)?.to_vec();
                let base_loc = self.locate_base(&base, id)?;
                let base_block = self.cached_block(&base_loc)?;
                let base_data = self.chunk_in(&base_block, &base_loc, &base)?;
                self.verify(base_data, &base, &base_loc)?;
                let mut page = Vec::new();
                self.apply_patch(id, &loc, &patch, &base, base_data, &mut page)?;
                Ok(f(&page))
            }
        }
    }

    /// The bytes of a chunk as stored in its block, and its base when it is a page patch;
    /// authenticated first (a patch by rebuilding its page). For copying a chunk as it is
    /// (prune's repack).
    pub(crate) fn read_stored(&mut self, id: &ChunkId) -> Result<(Vec<u8>, Option<ChunkId>)> {
        let loc = self.locate(id)?;
        let block = self.cached_block(&loc)?;
        let stored = self.chunk_in(&block, &loc, id)?.to_vec();
        match loc.base {
            None => self.verify(&stored, id, &loc)?,
            Some(_) => self.with_chunk(id, |_| ())?,
        }
        Ok((stored, loc.base))
    }

    /// Rebuilds and authenticates the page patches `entries` (all in one block of the pack at
    /// position `pack`; those copies, whichever the index prefers): `check --read-data`.
    /// Returns the first failure's message per patch that fails.
    pub(crate) fn verify_patches(
        &mut self,
        pack: u32,
        entries: &[&crate::format::pack::BlockEntry],
    ) -> Result<Vec<String>> {
        let Some(first) = entries.first() else {
            return Ok(Vec::new());
        };
        let mut dctx = zstd::bulk::Decompressor::new().map_err(|e| err!(Other, "zstd: {e}"))?;
        let mut block = Vec::new();
        self.decode_block_into(
            pack,
            first.block_offset,
            first.block_len,
            &mut dctx,
            &mut block,
        )?;
        let mut failed = Vec::new();
        let mut page = Vec::new();
        for entry in entries {
            let loc = Location {
                block: u32::MAX,
                pack,
                block_offset: entry.block_offset,
                block_len: entry.block_len,
                offset: entry.offset,
                len: entry.len,
                base: entry.base,
            };
            let base = entry.base.expect("a page patch");
            let res = self.chunk_in(&block, &loc, &entry.id).and_then(|patch| {
                let base_data = self.read(&base)?;
                self.apply_patch(&entry.id, &loc, patch, &base, &base_data, &mut page)
            });
            if let Err(e) = res {
                failed.push(e.to_string());
            }
        }
        Ok(failed)
    }

    fn locate(&self, id: &ChunkId) -> Result<Location> {
        self.index.get(id).ok_or_else(|| {
            err!(Corrupt, "chunk {id} is referenced but not in any index (its pack is missing or was never indexed)")
                .with_hint("run `lifeboat check --read-data`; restore from another copy of the repository if you have one")
        })
    }

    /// Where the base of page patch `of` is: it must be indexed, and stored whole (patches are
    /// one level deep; a patch of a patch, or a cycle, is refused).
    fn locate_base(&self, base: &ChunkId, of: &ChunkId) -> Result<Location> {
        let loc = self.index.get(base).ok_or_else(|| {
            err!(Corrupt, "chunk {base}, the base of page patch {of}, is not in any index (its pack is missing)")
                .with_hint("run `lifeboat check --read-data`; restore from another copy of the repository if you have one")
        })?;
        if loc.base.is_some() {
            return Err(err!(
                Corrupt,
                "page patch {of} names base {base}, which is itself a patch (a base must be stored whole)"
            ));
        }
        Ok(loc)
    }

    /// The decoded block holding `loc`, from the cache or read (one ranged read).
    fn cached_block(&mut self, loc: &Location) -> Result<Arc<Vec<u8>>> {
        let key = loc.block;
        // Least recently used out: a hit moves to the back (a patch's block stays while its
        // bases' blocks come and go, as prune's repack and check read them).
        if let Some(i) = self.cache.iter().position(|(k, _)| *k == key) {
            let hit = self.cache.remove(i).expect("present");
            let b = Arc::clone(&hit.1);
            self.cache.push_back(hit);
            return Ok(b);
        }
        let b = Arc::new(self.load_block(loc.pack, loc.block_offset, loc.block_len)?);
        if self.cache.len() == CACHE_BLOCKS {
            self.cache.pop_front();
        }
        self.cache.push_back((key, Arc::clone(&b)));
        Ok(b)
    }

    /// The chunk's stored bytes inside its decoded block (not yet authenticated).
    fn chunk_in<'b>(&self, block: &'b [u8], loc: &Location, id: &ChunkId) -> Result<&'b [u8]> {
        let (start, end) = (loc.offset as usize, loc.offset as usize + loc.len as usize);
        block.get(start..end).ok_or_else(|| {
            err!(
                Corrupt,
                "pack {}: chunk {id} lies outside its block (index and pack disagree)",
                self.index.pack(loc.pack)
            )
        })
    }

    /// Checks that `data` hashes to `id` (keyed: this is what authenticates a chunk).
    fn verify(&self, data: &[u8], id: &ChunkId, loc: &Location) -> Result<()> {
        if self.key.chunk_id(data) != *id {
            return Err(err!(
                Corrupt,
                "pack {}: chunk {id} does not match its id",
                self.index.pack(loc.pack)
            ));
        }
        Ok(())
    }

    /// Writes into `out` the page that `patch` (the stored bytes of `id`, at `loc`) makes of
    /// `base_data` (the authenticated content of `base`), and authenticates the result.
    fn apply_patch(
        &self,
        id: &ChunkId,
        loc: &Location,
        patch: &[u8],
        base: &ChunkId,
        base_data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        patch::apply(patch, base, base_data, out).map_err(|e| {
            e.context(format!(
                "pack {}: page patch {id}",
                self.index.pack(loc.pack)
            ))
        })?;
        self.verify(out, id, loc)
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

    /// Reads every chunk of `ids` on `threads` threads and calls `sink(batch)` with batches
    /// of `(i, data)` pairs, where `data` is the authenticated content of `ids[i]`, in
    /// ascending `i` within a batch. Batches arrive in no particular order; every position
    /// appears in exactly one batch. (Batches let a caller write runs of consecutive positions
    /// with one system call.)
    ///
    /// Chunks stored whole are grouped by the block that holds them, one batch per block, so
    /// every block is read and decoded exactly once whatever the order of `ids` (a restore of
    /// an incremental point needs old and new blocks interleaved). Page patches come after
    /// them, in rounds of at most [`PATCH_ROUND_BYTES`] of patches: the round's patches are
    /// read, then their bases (each base block once; each page rebuilt, authenticated and
    /// handed out in batches of at most 256). Before anything is read, every id must be in
    /// the index; a missing one fails the call without a single `sink` call. On the first
    /// error (damaged block, sink failure) the other threads stop and that error is returned. Memory: one sealed and one decoded
    /// block per thread, 16 bytes per position, and a round's patches; the cache of
    /// [`ChunkReader::with_chunk`] is emptied first (it would sit unused beside them).
    pub fn read_parallel(
        &mut self,
        ids: &[ChunkId],
        threads: usize,
        sink: &BatchSink<'_>,
    ) -> Result<()> {
        if u32::try_from(ids.len()).is_err() {
            return Err(err!(
                Other,
                "{} chunks are too many for one read",
                ids.len()
            ));
        }
        self.cache.clear();
        let mut wants: Vec<Want> = Vec::with_capacity(ids.len());
        let mut patched: Vec<(u32, Location)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let loc = self.index.get(id).ok_or_else(|| {
                err!(Corrupt, "chunk {id} is referenced but not in any index (its pack is missing or was never indexed)")
                    .with_hint("run `lifeboat check --read-data`; nothing was written")
            })?;
            if let Some(base) = &loc.base {
                self.locate_base(base, id).map_err(|e| {
                    e.with_hint("run `lifeboat check --read-data`; nothing was written")
                })?;
                patched.push((i as u32, loc));
                continue;
            }
            wants.push(Want {
                block: loc.block,
                offset: loc.offset,
                len: loc.len,
                pos: i as u32,
            });
        }
        self.read_wants(ids, wants, threads, true, &|wants| {
            sink(
                &wants
                    .iter()
                    .map(|(w, d)| (w.pos as usize, *d))
                    .collect::<Vec<_>>(),
            )
        })?;
        // Page patches, a round at a time: their stored bytes first (not yet authenticated:
        // a patch is authenticated by the page it makes), then each base block once.
        let mut at = 0;
        while at < patched.len() {
            let mut bytes = 0usize;
            let mut end = at;
            while end < patched.len()
                && (end == at || (bytes < PATCH_ROUND_BYTES && end - at < PATCH_ROUND_COUNT))
            {
                bytes += patched[end].1.len as usize;
                end += 1;
            }
            let round = &patched[at..end];
            at = end;
            // The round's patches, by position in `round`.
            let stored: Vec<Mutex<Vec<u8>>> =
                round.iter().map(|_| Mutex::new(Vec::new())).collect();
            let wants = round
                .iter()
                .enumerate()
                .map(|(k, (_, l))| Want {
                    block: l.block,
                    offset: l.offset,
                    len: l.len,
                    pos: k as u32,
                })
                .collect();
            let round_ids: Vec<ChunkId> = round.iter().map(|(i, _)| ids[*i as usize]).collect();
            self.read_wants(&round_ids, wants, threads, false, &|got| {
                for (w, d) in got {
                    *stored[w.pos as usize].lock().expect("patch slot") = d.to_vec();
                }
                Ok(())
            })?;
            // Their bases: each distinct one once; `users[b]` are the round positions of
            // the patches against base `b`.
            let mut base_ids: Vec<ChunkId> = Vec::new();
            let mut users: Vec<Vec<u32>> = Vec::new();
            let mut seen: std::collections::HashMap<ChunkId, usize> = Default::default();
            for (k, (_, l)) in round.iter().enumerate() {
                let b = l.base.expect("a patch");
                let j = *seen.entry(b).or_insert_with(|| {
                    base_ids.push(b);
                    users.push(Vec::new());
                    base_ids.len() - 1
                });
                users[j].push(k as u32);
            }
            let mut wants = Vec::with_capacity(base_ids.len());
            for (j, b) in base_ids.iter().enumerate() {
                let l = self.index.get(b).expect("located above");
                wants.push(Want {
                    block: l.block,
                    offset: l.offset,
                    len: l.len,
                    pos: j as u32,
                });
            }
            let flush = |pages: &mut Vec<(usize, Vec<u8>)>| -> Result<()> {
                if pages.is_empty() {
                    return Ok(());
                }
                pages.sort_unstable_by_key(|(i, _)| *i);
                let batch: Vec<(usize, &[u8])> =
                    pages.iter().map(|(i, p)| (*i, p.as_slice())).collect();
                sink(&batch)?;
                pages.clear();
                Ok(())
            };
            self.read_wants(&base_ids, wants, threads, true, &|got| {
                let mut pages: Vec<(usize, Vec<u8>)> = Vec::new();
                for (w, base_data) in got {
                    let base = &base_ids[w.pos as usize];
                    for &k in &users[w.pos as usize] {
                        let (i, loc) = &round[k as usize];
                        let patch =
                            std::mem::take(&mut *stored[k as usize].lock().expect("patch slot"));
                        let mut page = Vec::new();
                        self.apply_patch(
                            &ids[*i as usize],
                            loc,
                            &patch,
                            base,
                            base_data,
                            &mut page,
                        )?;
                        pages.push((*i as usize, page));
                        // Rebuilt pages go out in small batches: one base may serve every
                        // patch of the round (a key holder can write that), and a round's
                        // pages must not all be held at once.
                        if pages.len() == PATCH_SINK_PAGES {
                            flush(&mut pages)?;
                        }
                    }
                }
                flush(&mut pages)
            })?;
        }
        Ok(())
    }

    /// Reads the blocks `wants` name on `threads` threads, each block once, and calls
    /// `sink(batch)` per block with its wants and their bytes (checked against
    /// `ids[want.pos]` when `verify`; page patches are not, their page is).
    fn read_wants(
        &self,
        ids: &[ChunkId],
        mut wants: Vec<Want>,
        threads: usize,
        verify: bool,
        sink: &WantSink<'_>,
    ) -> Result<()> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
                    let mut batch: Vec<(Want, &[u8])> = Vec::with_capacity(wants.len());
                    for w in wants {
                        let id = &ids[w.pos as usize];
                        let data = block.get(w.offset as usize..w.offset as usize + w.len as usize).ok_or_else(|| {
                            err!(Corrupt, "pack {pack_id}: chunk {id} lies outside its block (index and pack disagree)")
                        })?;
                        // Identical chunks at several positions are hashed once per block.
                        if verify && verified != Some((*id, w.offset)) {
                            if self.key.chunk_id(data) != *id {
                                return Err(err!(
                                    Corrupt,
                                    "pack {pack_id}: chunk {id} does not match its id"
                                ));
                            }
                            verified = Some((*id, w.offset));
                        }
                        batch.push((*w, data));
                    }
                    batch.sort_unstable_by_key(|(w, _)| w.pos);
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
