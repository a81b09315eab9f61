//! Reading the large parts of a point back: a SQLite page table (base + cumulative delta)
//! and a file tree. Shared by restore, check and the next backup (which diffs against the
//! previous table).
use crate::error::{err, Result};
use crate::format::pagetable::{decode_base, decode_delta};
use crate::format::point::{SqliteBody, TreeBody};
use crate::format::tree::TreeEntry;
use crate::id::ChunkId;
use crate::reader::ChunkReader;

/// The chunk id of every page, page 1 first (`page_count` entries).
pub fn load_page_table(reader: &mut ChunkReader<'_>, body: &SqliteBody) -> Result<Vec<ChunkId>> {
    let mut table = Vec::with_capacity(body.page_count as usize);
    for seg in &body.base {
        table.extend(decode_base(&reader.read(seg)?)?);
    }
    if table.len() != body.base_pages as usize {
        return Err(err!(
            Corrupt,
            "page table lists {} pages, the point says {}",
            table.len(),
            body.base_pages
        ));
    }
    table.resize(body.page_count as usize, ChunkId::default());
    for seg in &body.delta {
        for (pgno, id) in decode_delta(&reader.read(seg)?)? {
            let i = (pgno as usize)
                .checked_sub(1)
                .filter(|&i| i < table.len())
                .ok_or_else(|| {
                    err!(
                        Corrupt,
                        "page delta names page {pgno} outside 1..={}",
                        body.page_count
                    )
                })?;
            table[i] = id;
        }
    }
    if table
        .iter()
        .skip(body.base_pages as usize)
        .any(|id| *id == ChunkId::default())
    {
        return Err(err!(Corrupt, "page table has pages with no chunk"));
    }
    Ok(table)
}

/// Builds the page table of a new capture one page at a time, against the previous point's
/// **base** table (`docs/FORMAT.md` §9.1).
///
/// With a usable previous base it keeps only the cumulative delta (pages whose id differs
/// from the base, plus pages past its end) and streams the base one segment (1,024 ids,
/// 16 KiB) at a time, so an incremental backup of a 4 GiB database holds kilobytes of page
/// table instead of two 18 MiB tables. When the delta grows past `limit` pages it switches,
/// once, to a full table (rebuilt from the base and the delta so far) and the caller writes a
/// new base. Without a previous base it builds the full table from the start.
pub struct PageTableBuilder<'p> {
    state: TableState<'p>,
    pages: usize,
    page_count: usize,
}

enum TableState<'p> {
    Full(Vec<ChunkId>),
    Delta {
        previous: &'p SqliteBody,
        limit: usize,
        /// Index into `previous.base` of the segment held in `segment`.
        next_segment: usize,
        segment: Vec<ChunkId>,
        /// Page position (0-based) of `segment[0]`.
        segment_start: usize,
        delta: Vec<(u32, ChunkId)>,
    },
}

/// What [`PageTableBuilder::finish`] produced.
pub enum PageTable {
    /// Every page's id: store a new base.
    Full(Vec<ChunkId>),
    /// (page number, id) of every page that differs from the previous base, in page order:
    /// store this delta and reuse the previous base.
    Delta(Vec<(u32, ChunkId)>),
}

impl<'p> PageTableBuilder<'p> {
    /// A builder for `page_count` pages. `previous` is the previous point's body when its base
    /// segments are all readable (call [`PageTableBuilder::usable_base`] first); `limit` is
    /// the largest delta (in pages) worth keeping.
    pub fn new(page_count: u32, previous: Option<&'p SqliteBody>, limit: usize) -> Self {
        let state = match previous {
            Some(previous) => TableState::Delta {
                previous,
                limit,
                next_segment: 0,
                segment: Vec::new(),
                segment_start: 0,
                delta: Vec::new(),
            },
            None => TableState::Full(Vec::with_capacity(page_count as usize)),
        };
        PageTableBuilder {
            state,
            pages: 0,
            page_count: page_count as usize,
        }
    }

    /// Whether `previous`'s base can serve as the base of a delta: every segment is stored,
    /// authenticates and decodes, and together they list `base_pages` ids. Reading them all
    /// first (a few blocks) means a damaged base falls back to a full table up front instead
    /// of failing the capture half way.
    pub fn usable_base(reader: &mut ChunkReader<'_>, previous: &SqliteBody) -> Result<()> {
        let mut n = 0usize;
        for seg in &previous.base {
            n += decode_base(&reader.read(seg)?)?.len();
        }
        if n != previous.base_pages as usize {
            return Err(err!(
                Corrupt,
                "page table lists {n} pages, the point says {}",
                previous.base_pages
            ));
        }
        Ok(())
    }

    /// Records the id of the next page (pages come in order, page 1 first).
    pub fn push(&mut self, reader: &mut ChunkReader<'_>, id: ChunkId) -> Result<()> {
        let p = self.pages;
        self.pages += 1;
        let TableState::Delta {
            previous,
            limit,
            next_segment,
            segment,
            segment_start,
            delta,
        } = &mut self.state
        else {
            let TableState::Full(table) = &mut self.state else {
                unreachable!()
            };
            table.push(id);
            return Ok(());
        };
        while p >= *segment_start + segment.len() && *next_segment < previous.base.len() {
            *segment_start += segment.len();
            *segment = decode_base(&reader.read(&previous.base[*next_segment])?)?;
            *next_segment += 1;
        }
        if segment.get(p.wrapping_sub(*segment_start)) != Some(&id) {
            delta.push((p as u32 + 1, id));
        }
        if delta.len() > *limit {
            let table = rebuild(reader, previous, delta, p + 1, self.page_count)?;
            self.state = TableState::Full(table);
        }
        Ok(())
    }

    /// The table or delta for the pages pushed so far.
    pub fn finish(self) -> PageTable {
        match self.state {
            TableState::Full(t) => PageTable::Full(t),
            TableState::Delta { delta, .. } => PageTable::Delta(delta),
        }
    }
}

/// The first `pages` ids: the previous base patched with the delta.
fn rebuild(
    reader: &mut ChunkReader<'_>,
    previous: &SqliteBody,
    delta: &[(u32, ChunkId)],
    pages: usize,
    capacity: usize,
) -> Result<Vec<ChunkId>> {
    let mut table = Vec::with_capacity(capacity.max(pages));
    for seg in &previous.base {
        if table.len() >= pages {
            break;
        }
        table.extend(decode_base(&reader.read(seg)?)?);
    }
    table.resize(pages, ChunkId::default());
    for (pgno, id) in delta {
        table[*pgno as usize - 1] = *id;
    }
    Ok(table)
}

/// The entries of a tree, in stored (parent-before-child) order.
pub fn load_tree(reader: &mut ChunkReader<'_>, body: &TreeBody) -> Result<Vec<TreeEntry>> {
    let bytes = reader.read_bytes(&body.entries)?;
    serde_json::from_slice(&bytes).map_err(|e| err!(Corrupt, "file tree is damaged: {e}"))
}

/// The rolling checksum of a database (`docs/FORMAT.md` §9.2): XOR over all pages of the
/// first 16 bytes of BLAKE3 keyed with the checksum key over
/// ("lifeboat page v1" || page number u32 LE || chunk id).
/// It changes with any page and can be updated per page write, so continuous mode can keep
/// it current for almost nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbChecksum(pub [u8; 16]);

/// The key of [`DbChecksum`], derived from the master key. Sources hold this (from
/// [`crate::ChunkWriter::checksum_key`] or [`crate::ChunkReader::checksum_key`]), never the
/// master key itself. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct ChecksumKey(pub(crate) [u8; 32]);

impl Drop for ChecksumKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for ChecksumKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChecksumKey(..)")
    }
}

impl DbChecksum {
    /// Folds page `pgno` (1-based) with content id `id` in or out (XOR is its own inverse).
    pub fn toggle(&mut self, key: &ChecksumKey, pgno: u32, id: &ChunkId) {
        let mut h = blake3::Hasher::new_keyed(&key.0);
        h.update(b"lifeboat page v1");
        h.update(&pgno.to_le_bytes());
        h.update(&id.0);
        let d = h.finalize();
        for (a, b) in self.0.iter_mut().zip(&d.as_bytes()[..16]) {
            *a ^= b;
        }
    }

    /// The checksum of a whole table.
    pub fn of_table(key: &ChecksumKey, table: &[ChunkId]) -> DbChecksum {
        let mut c = DbChecksum::default();
        for (i, id) in table.iter().enumerate() {
            c.toggle(key, i as u32 + 1, id);
        }
        c
    }

    /// 32 hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}
