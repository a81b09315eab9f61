//! The in-memory index: chunk id -> location. Built from every index object at open; the
//! writer adds what it stores. About 56 bytes per chunk (a 1 GiB database of 4 KiB pages is
//! 262,144 chunks, about 15 MiB).
use std::collections::HashMap;

use crate::format::index::IndexFile;
use crate::format::pack::BlockEntry;
use crate::id::{ChunkId, ObjectId};

/// Where a chunk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Position of the pack in [`Index::pack`].
    pub pack: u32,
    /// Offset of the sealed block in the pack.
    pub block_offset: u32,
    /// Length of the sealed block.
    pub block_len: u32,
    /// Offset of the chunk in the decoded block.
    pub offset: u32,
    /// Length of the chunk.
    pub len: u32,
}

/// Chunk id -> location, for all loaded index objects.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<ObjectId>,
    map: HashMap<ChunkId, Location>,
}

impl Index {
    /// Adds every entry of an index object. A chunk already known keeps its first location.
    pub fn add(&mut self, file: &IndexFile) {
        for (pack, entries) in &file.packs {
            self.add_pack(*pack, entries);
        }
    }

    /// Adds one pack's entries.
    pub fn add_pack(&mut self, pack: ObjectId, entries: &[BlockEntry]) {
        let p = self.packs.len() as u32;
        self.packs.push(pack);
        self.map.reserve(entries.len());
        for e in entries {
            self.map.entry(e.id).or_insert(Location {
                pack: p,
                block_offset: e.block_offset,
                block_len: e.block_len,
                offset: e.offset,
                len: e.len,
            });
        }
    }

    /// Whether the chunk is stored.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.map.contains_key(id)
    }

    /// Location of a chunk.
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.map.get(id).copied()
    }

    /// Id of the pack at a [`Location::pack`] position.
    pub fn pack(&self, pos: u32) -> ObjectId {
        self.packs[pos as usize]
    }

    /// Number of chunks known.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
