//! The in-memory index: chunk id -> location, built from every index object before a backup,
//! restore or check. 32 bytes per chunk (16-byte chunk id + 4 u32s) plus 12 per block and 16
//! per page patch's base (a 4 GiB database of 4 KiB pages is 1,048,576 chunks: 32 MiB; its
//! 1,024 blocks of 4 MiB add 12 KiB).

use crate::format::index::IndexFile;
use crate::format::pack::BlockEntry;
use crate::id::{ChunkId, ObjectId};

/// Where a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Position of the block in the index (chunks of one block share it); see
    /// [`Index::block_count`].
    pub block: u32,
    /// Position of the pack in [`Index::pack`].
    pub pack: u32,
    /// Offset of the sealed block in the pack.
    pub block_offset: u32,
    /// Length of the sealed block.
    pub block_len: u32,
    /// Offset of the chunk in the decoded block.
    pub offset: u32,
    /// Length of the chunk as stored (a page patch's length, not the page's).
    pub len: u32,
    /// For a page stored as a patch, the chunk it patches (stored whole).
    pub base: Option<ChunkId>,
}

/// A sealed block: which pack, where, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockLoc {
    pack: u32,
    offset: u32,
    len: u32,
}

/// A chunk inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkLoc {
    block: u32,
    offset: u32,
    len: u32,
    /// Position of the base in `Index::bases`, or [`WHOLE`].
    base: u32,
}

/// [`ChunkLoc::base`] of a chunk stored whole.
const WHOLE: u32 = u32::MAX;

/// Chunk id -> location, for all loaded index objects.
///
/// Held as one sorted vector of (id, block, offset, len), 28 bytes per chunk, and a vector of
/// blocks (pack, offset, length): no hash-table slack (a `HashMap` costs about twice that at
/// its load factor) and the block fields, shared by about a thousand pages, are stored once.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<ObjectId>,
    /// Per pack position: condemned by a pending prune (readable, but not for deduplication).
    condemned: Vec<bool>,
    blocks: Vec<BlockLoc>,
    entries: Vec<(ChunkId, ChunkLoc)>,
    /// Bases of page patches, referred to by [`ChunkLoc::base`].
    bases: Vec<ChunkId>,
    /// `entries[starts[b]..starts[b + 1]]` are the ids whose top `bits` bits are `b` (ids are
    /// keyed hashes, so about four per bucket): a lookup searches a few entries instead of
    /// the whole table (a 1 GiB restore looks up 270,000 ids; the plain binary search over
    /// all of them was the largest cost before its first byte was written).
    starts: Vec<u32>,
    bits: u32,
    sorted: bool,
}

impl Index {
    /// Adds every entry of an index object. Call [`Index::finish`] after the last one.
    pub fn add(&mut self, file: &IndexFile) {
        for (pack, entries) in &file.packs {
            self.add_pack(*pack, entries);
        }
    }

    /// Adds one pack's entries. Call [`Index::finish`] after the last one.
    pub fn add_pack(&mut self, pack: ObjectId, entries: &[BlockEntry]) {
        self.add_pack_as(pack, entries, false);
    }

    /// Adds one pack's entries; a `condemned` pack (a pending prune will delete it) still
    /// serves reads but [`Index::contains`] ignores it, so no new point comes to depend on it.
    /// Add condemned packs after the others: the first-added location of a chunk wins.
    pub fn add_pack_as(&mut self, pack: ObjectId, entries: &[BlockEntry], condemned: bool) {
        let p = self.packs.len() as u32;
        self.packs.push(pack);
        self.condemned.push(condemned);
        self.entries.reserve(entries.len());
        for e in entries {
            let b = BlockLoc {
                pack: p,
                offset: e.block_offset,
                len: e.block_len,
            };
            // A pack lists its chunks block by block; a block seen again out of order only
            // gets a second number (it would then be read twice, never wrongly).
            if self.blocks.last() != Some(&b) {
                self.blocks.push(b);
            }
            let block = (self.blocks.len() - 1) as u32;
            let base = match e.base {
                Some(b) => {
                    self.bases.push(b);
                    (self.bases.len() - 1) as u32
                }
                None => WHOLE,
            };
            self.entries.push((
                e.id,
                ChunkLoc {
                    block,
                    offset: e.offset,
                    len: e.len,
                    base,
                },
            ));
        }
        self.starts.clear();
        self.sorted = false;
    }

    /// Sorts for lookups; a chunk listed more than once keeps the location added first.
    pub fn finish(&mut self) {
        // Unstable (in place: a stable sort would allocate half the vector again) but
        // deterministic: block numbers grow in the order packs were added, so sorting on
        // (id, block, offset) puts the first-added location of a chunk first.
        // Per id, a copy in a live pack comes before one in a condemned pack (a pending prune
        // will delete it), then the earliest added: the one kept by `dedup_by` below is the
        // one reads and dedup use, and prune's mark counts a chunk live only in that pack.
        // (Ordering by the order added alone made a condemned copy win when index objects were
        // added after a load: review of 8c2007a.)
        // A copy stored whole comes before a patch of the same page (no base to fetch).
        let (blocks, condemned) = (&self.blocks, &self.condemned);
        self.entries.sort_unstable_by_key(|(id, l)| {
            let dead = condemned[blocks[l.block as usize].pack as usize];
            (*id, dead, l.base != WHOLE, l.block, l.offset)
        });
        self.prefer_readable_patches();
        self.entries.dedup_by(|later, first| later.0 == first.0);
        self.entries.shrink_to_fit();
        self.bases.shrink_to_fit();
        self.blocks.shrink_to_fit();
        self.bits = (usize::BITS - self.entries.len().leading_zeros())
            .saturating_sub(3)
            .min(24);
        let mut starts = vec![0u32; (1usize << self.bits) + 1];
        for (id, _) in &self.entries {
            starts[Self::bucket(id, self.bits) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        self.starts = starts;
        self.sorted = true;
    }

    /// Among the copies of a page stored only as patches, moves to the front the first whose
    /// base has a whole copy: a dead patch left in a pack prune kept can name a base prune
    /// deleted, and the page stored again later (as a patch of another base) must be the copy
    /// reads use. Entries are sorted; each group of one id is looked at once.
    fn prefer_readable_patches(&mut self) {
        let entries = &self.entries;
        let has_whole = |id: &ChunkId| {
            let start = entries.partition_point(|(e, _)| e < id);
            entries[start..]
                .iter()
                .take_while(|(e, _)| e == id)
                .any(|(_, l)| l.base == WHOLE)
        };
        let mut swaps = Vec::new();
        let mut i = 0;
        while i < entries.len() {
            let mut j = i + 1;
            while j < entries.len() && entries[j].0 == entries[i].0 {
                j += 1;
            }
            // A whole copy sorts first in its group; only groups of patches need a choice.
            if j - i > 1 && entries[i].1.base != WHOLE {
                if let Some(k) =
                    (i..j).find(|&k| has_whole(&self.bases[entries[k].1.base as usize]))
                {
                    swaps.push((i, k));
                }
            }
            i = j;
        }
        for (i, k) in swaps {
            self.entries.swap(i, k);
        }
    }

    /// The packs the loaded index objects list (a pack listed by several, several times).
    pub(crate) fn pack_ids(&self) -> &[ObjectId] {
        &self.packs
    }

    /// Whether the chunk is stored in a pack that is not condemned (what deduplication may
    /// rely on).
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.get(id).is_some_and(|l| {
            !self.condemned[l.pack as usize]
                && l.base.is_none_or(|b| {
                    self.get(&b)
                        .is_some_and(|bl| bl.base.is_none() && !self.condemned[bl.pack as usize])
                })
        })
    }

    /// Location of a chunk.
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        debug_assert!(
            self.sorted || self.entries.is_empty(),
            "Index::finish was not called"
        );
        let b = Self::bucket(id, self.bits);
        let (lo, hi) = match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo as usize, hi as usize),
            _ => (0, self.entries.len()),
        };
        let part = &self.entries[lo..hi];
        let i = part.binary_search_by(|e| e.0.cmp(id)).ok()?;
        let c = part[i].1;
        let b = self.blocks[c.block as usize];
        Some(Location {
            block: c.block,
            pack: b.pack,
            block_offset: b.offset,
            block_len: b.len,
            offset: c.offset,
            len: c.len,
            base: (c.base != WHOLE).then(|| self.bases[c.base as usize]),
        })
    }

    /// The bucket of `id` in [`Index::starts`]: its top `bits` bits.
    fn bucket(id: &ChunkId, bits: u32) -> usize {
        let top = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
        if bits == 0 {
            0
        } else {
            (top >> (32 - bits)) as usize
        }
    }

    /// Number of [`Location::pack`] positions (a pack listed by several index objects has
    /// several).
    pub(crate) fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Id of the pack at a [`Location::pack`] position.
    pub fn pack(&self, pos: u32) -> ObjectId {
        self.packs[pos as usize]
    }

    /// Number of chunks known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: u8, off: u32) -> BlockEntry {
        BlockEntry {
            id: ChunkId([b; 16]),
            block_offset: off,
            block_len: 10,
            offset: 0,
            len: 1,
            base: None,
        }
    }

    #[test]
    fn lookups_and_first_location_wins() {
        let mut ix = Index::default();
        ix.add_pack(ObjectId([1; 32]), &[entry(7, 8), entry(3, 8)]);
        ix.add_pack(ObjectId([2; 32]), &[entry(7, 99), entry(5, 8)]);
        ix.finish();
        assert_eq!(ix.len(), 3);
        let l = ix.get(&ChunkId([7; 16])).unwrap();
        assert_eq!((ix.pack(l.pack), l.block_offset), (ObjectId([1; 32]), 8));
        assert!(ix.contains(&ChunkId([5; 16])));
        assert!(!ix.contains(&ChunkId([4; 16])));
    }

    #[test]
    fn every_id_is_found_through_its_bucket() {
        for n in [0usize, 1, 7, 8, 9, 1000, 5000] {
            let ids: Vec<ChunkId> = (0..n as u32)
                .map(|i| {
                    let h = blake3::hash(&i.to_le_bytes());
                    ChunkId(h.as_bytes()[..16].try_into().unwrap())
                })
                .collect();
            let entries: Vec<BlockEntry> = ids
                .iter()
                .enumerate()
                .map(|(i, id)| BlockEntry {
                    id: *id,
                    block_offset: 8,
                    block_len: 10,
                    offset: i as u32,
                    len: 1,
                    base: None,
                })
                .collect();
            let mut ix = Index::default();
            ix.add_pack(ObjectId([1; 32]), &entries);
            ix.finish();
            for (i, id) in ids.iter().enumerate() {
                assert_eq!(ix.get(id).map(|l| l.offset), Some(i as u32), "n={n} i={i}");
            }
            for edge in [[0u8; 16], [0xff; 16], [0x80; 16]] {
                assert!(ids.contains(&ChunkId(edge)) || ix.get(&ChunkId(edge)).is_none());
            }
        }
    }

    /// Two copies of a page, both patches: the one whose base is gone (a dead patch a
    /// prune left in a kept pack) must not be the one reads use.
    #[test]
    fn of_two_patched_copies_the_one_whose_base_exists_is_used() {
        let mut ix = Index::default();
        let page = ChunkId([7; 16]);
        let (gone, here) = (ChunkId([1; 16]), ChunkId([2; 16]));
        let patch = |off: u32, base: ChunkId| BlockEntry {
            base: Some(base),
            ..entry(7, off)
        };
        ix.add_pack(ObjectId([1; 32]), &[patch(8, gone)]);
        ix.add_pack(ObjectId([2; 32]), &[patch(8, here), entry(2, 99)]);
        ix.finish();
        assert_eq!(ix.get(&page).unwrap().base, Some(here));
        assert_eq!(ix.pack(ix.get(&page).unwrap().pack), ObjectId([2; 32]));
    }

    #[test]
    fn condemned_packs_serve_reads_but_not_deduplication() {
        let mut ix = Index::default();
        ix.add_pack(ObjectId([1; 32]), &[entry(7, 8)]);
        ix.add_pack_as(ObjectId([2; 32]), &[entry(7, 50), entry(9, 8)], true);
        ix.finish();
        // 7 is also in a live pack: found there, usable.
        assert!(ix.contains(&ChunkId([7; 16])));
        assert_eq!(
            ix.pack(ix.get(&ChunkId([7; 16])).unwrap().pack),
            ObjectId([1; 32])
        );
        // 9 is only in the condemned pack: readable, not for dedup.
        assert!(ix.get(&ChunkId([9; 16])).is_some());
        assert!(!ix.contains(&ChunkId([9; 16])));
    }
}
