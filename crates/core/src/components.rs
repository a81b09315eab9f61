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

impl DbChecksum {
    /// Folds page `pgno` (1-based) with content id `id` in or out (XOR is its own inverse).
    pub fn toggle(&mut self, key: &crate::MasterKey, pgno: u32, id: &ChunkId) {
        let mut h = key.checksum_hasher();
        h.update(b"lifeboat page v1");
        h.update(&pgno.to_le_bytes());
        h.update(&id.0);
        let d = h.finalize();
        for (a, b) in self.0.iter_mut().zip(&d.as_bytes()[..16]) {
            *a ^= b;
        }
    }

    /// The checksum of a whole table.
    pub fn of_table(key: &crate::MasterKey, table: &[ChunkId]) -> DbChecksum {
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
