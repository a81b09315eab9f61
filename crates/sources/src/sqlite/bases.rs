//! The follower's page bases (issue 14, `docs/design/continuous.md` §7): for the pages it
//! captured recently, the content of a version the repository holds whole, so the next
//! version of a hot page can be stored as a patch against it (a leaf that gains a row a
//! second then costs the row, not the page). Bounded: [`BASE_CACHE_BYTES`] of pages, the
//! least recently used going first. Whether an entry may really serve as a base (stored
//! whole, durable) is the writer's decision (`ChunkWriter::store_page_against`), never this
//! cache's: an entry is only a candidate.
use std::collections::{HashMap, VecDeque};

use lifeboat_core::ChunkId;

/// Bytes of page content kept (16 MiB: 4,096 pages of 4 KiB).
pub const BASE_CACHE_BYTES: usize = 16 << 20;

/// Page number -> (id, content) of a candidate base, least recently used first out.
#[derive(Default)]
pub struct Bases {
    pages: HashMap<u32, (ChunkId, Vec<u8>, u64)>,
    /// (page, stamp) in use order; entries whose stamp is not the page's current one are
    /// stale and skipped.
    order: VecDeque<(u32, u64)>,
    stamp: u64,
    bytes: usize,
}

impl Bases {
    /// The candidate base of page `pgno`, marked as used.
    pub fn get(&mut self, pgno: u32) -> Option<(&ChunkId, &[u8])> {
        self.stamp += 1;
        let stamp = self.stamp;
        let e = self.pages.get_mut(&pgno)?;
        e.2 = stamp;
        self.order.push_back((pgno, stamp));
        if self.order.len() > 4 * self.pages.len() + 64 {
            let pages = &self.pages;
            self.order
                .retain(|(p, s)| pages.get(p).is_some_and(|e| e.2 == *s));
        }
        let e = &self.pages[&pgno];
        Some((&e.0, e.1.as_slice()))
    }

    /// Makes `data` (whose id is `id`) the candidate base of page `pgno`.
    pub fn put(&mut self, pgno: u32, id: ChunkId, data: &[u8]) {
        self.stamp += 1;
        let stamp = self.stamp;
        match self.pages.get_mut(&pgno) {
            Some(e) => {
                e.0 = id;
                e.1.clear();
                e.1.extend_from_slice(data);
                e.2 = stamp;
            }
            None => {
                self.pages.insert(pgno, (id, data.to_vec(), stamp));
                self.bytes += data.len();
            }
        }
        self.order.push_back((pgno, stamp));
        while self.bytes > BASE_CACHE_BYTES {
            let Some((p, s)) = self.order.pop_front() else {
                break;
            };
            if self.pages.get(&p).is_some_and(|e| e.2 == s) {
                let (_, data, _) = self.pages.remove(&p).expect("present");
                self.bytes -= data.len();
            }
        }
    }

    /// Forgets every page from `pgno` on (the database shrank).
    pub fn truncate(&mut self, pgno: u32) {
        let gone: Vec<u32> = self.pages.keys().copied().filter(|&p| p >= pgno).collect();
        for p in gone {
            if let Some((_, data, _)) = self.pages.remove(&p) {
                self.bytes -= data.len();
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
        let page = vec![7u8; 1 << 20];
        for p in 1..=16 {
            b.put(p, ChunkId([p as u8; 16]), &page);
        }
        assert!(b.get(1).is_some());
        b.put(17, ChunkId([17; 16]), &page); // evicts 2, the least recently used
        assert!(b.get(2).is_none());
        assert!(b.get(1).is_some() && b.get(17).is_some());
        assert!(b.bytes <= BASE_CACHE_BYTES);
        // Replacing a page's base keeps one entry.
        b.put(1, ChunkId([99; 16]), &page);
        assert_eq!(b.get(1).unwrap().0, &ChunkId([99; 16]));
        assert_eq!(b.bytes, 16 << 20);
        b.truncate(10);
        assert!(b.get(12).is_none() && b.get(9).is_some());
        for _ in 0..1000 {
            b.get(9);
        }
        assert!(b.order.len() < 200, "the use order is compacted");
    }
}
