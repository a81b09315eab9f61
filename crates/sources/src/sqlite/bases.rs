//! The follower's page bases (issue 14, `docs/design/continuous.md` §7): for each page it
//! captured, how to get back the version of it the repository holds whole (its *base*), so
//! the next version can be stored as a patch against that base (a leaf that gains a row a
//! second then costs the row, not the page).
//!
//! What is kept is not the base but the way back to it from the page's last captured
//! version: the base's bytes where they differ from that version (a reverse patch, usually a
//! few hundred bytes). The last captured version itself is read again from the previous
//! snapshot, which the follower holds anyway. So 16 MiB cover tens of thousands of pages, not
//! four thousand: a page edited twice in a day, far apart, still finds its base (with whole
//! bases in the cache, two thirds of the pages stored whole in a paced-day trial were such
//! pages, their base evicted).
//!
//! Bounded by [`BASE_CACHE_BYTES`], least recently used first out. An entry is only a
//! candidate: whether a rebuilt base may serve (its bytes hash to its id, it is stored whole
//! and durable) is the writer's decision (`ChunkWriter::store_page_against`).
use std::collections::{HashMap, VecDeque};

use lifeboat_core::ChunkId;

/// Bytes of reverse patches kept.
pub const BASE_CACHE_BYTES: usize = 16 << 20;
/// Bookkeeping bytes counted per entry besides its patch (the map's slot, the allocator's
/// header, the use order's records).
const ENTRY_OVERHEAD: usize = 128;

/// One page's way back to its base.
pub struct Way {
    /// The version the patch starts from (the page's last captured version).
    pub from: ChunkId,
    /// The base.
    pub base: ChunkId,
    /// The patch (`lifeboat_core` page patch format, naming `from`) that turns `from` into
    /// `base`; empty when `from` is the base.
    pub back: Vec<u8>,
    stamp: u64,
}

/// Page number -> [`Way`], least recently used first out.
#[derive(Default)]
pub struct Bases {
    pages: HashMap<u32, Way>,
    /// (page, stamp) in use order; entries whose stamp is not the page's current one are
    /// stale and skipped.
    order: VecDeque<(u32, u64)>,
    stamp: u64,
    bytes: usize,
}

impl Bases {
    /// The way back to page `pgno`'s base, marked as used.
    pub fn get(&mut self, pgno: u32) -> Option<&Way> {
        self.stamp += 1;
        let stamp = self.stamp;
        let e = self.pages.get_mut(&pgno)?;
        e.stamp = stamp;
        self.order.push_back((pgno, stamp));
        if self.order.len() > 4 * self.pages.len() + 64 {
            let pages = &self.pages;
            self.order
                .retain(|(p, s)| pages.get(p).is_some_and(|e| e.stamp == *s));
        }
        self.pages.get(&pgno)
    }

    /// Records that page `pgno` was captured as `from`, whose base is `base`, reached from
    /// `from` by `back` (empty when `from` is the base).
    pub fn put(&mut self, pgno: u32, from: ChunkId, base: ChunkId, mut back: Vec<u8>) {
        self.stamp += 1;
        let stamp = self.stamp;
        back.shrink_to_fit();
        let new = back.capacity() + ENTRY_OVERHEAD;
        let way = Way {
            from,
            base,
            back,
            stamp,
        };
        if let Some(old) = self.pages.insert(pgno, way) {
            self.bytes -= old.back.capacity() + ENTRY_OVERHEAD;
        }
        self.bytes += new;
        self.order.push_back((pgno, stamp));
        while self.bytes > BASE_CACHE_BYTES {
            let Some((p, s)) = self.order.pop_front() else {
                break;
            };
            if self.pages.get(&p).is_some_and(|e| e.stamp == s) {
                let old = self.pages.remove(&p).expect("present");
                self.bytes -= old.back.capacity() + ENTRY_OVERHEAD;
            }
        }
    }

    /// Forgets every page from `pgno` on (the database shrank).
    pub fn truncate(&mut self, pgno: u32) {
        let gone: Vec<u32> = self.pages.keys().copied().filter(|&p| p >= pgno).collect();
        for p in gone {
            if let Some(old) = self.pages.remove(&p) {
                self.bytes -= old.back.capacity() + ENTRY_OVERHEAD;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_page_goes_first_and_the_bytes_stay_bounded() {
        let mut b = Bases::default();
        let back = vec![7u8; (1 << 20) - ENTRY_OVERHEAD];
        let id = |p: u32| ChunkId([p as u8; 16]);
        for p in 1..=16 {
            b.put(p, id(p), id(p + 100), back.clone());
        }
        assert!(b.get(1).is_some());
        b.put(17, id(17), id(17), back.clone()); // evicts 2, the least recently used
        assert!(b.get(2).is_none());
        assert!(b.get(1).is_some() && b.get(17).is_some());
        assert!(b.bytes <= BASE_CACHE_BYTES);
        // Replacing a page's way keeps one entry.
        b.put(1, id(99), id(99), Vec::new());
        let w = b.get(1).unwrap();
        assert_eq!((w.from, w.base, w.back.len()), (id(99), id(99), 0));
        assert_eq!(b.bytes, 15 << 20 | ENTRY_OVERHEAD);
        b.truncate(10);
        assert!(b.get(12).is_none() && b.get(9).is_some());
        for _ in 0..1000 {
            b.get(9);
        }
        assert!(b.order.len() < 200, "the use order is compacted");
    }
}
