//! Whether the store still holds everything a point needs, without reading pack data: the
//! check an in-place restore makes of its pre-restore point before it removes what that point
//! saved. A backup reuses chunks the index lists (deduplication), so a pre-restore point can
//! rest on packs that a storage attacker (or an operator's mistake) deleted or truncated since
//! the index was written; restoring over the live data would then lose it for good.
use std::collections::{HashMap, HashSet};

use crate::error::Result;
use crate::id::{ChunkId, ObjectId};
use crate::repository::Repository;
use crate::storage::ObjectKind;
use crate::{load_page_table, load_tree};

/// The packs point `id` needs that the store does not hold whole: missing, or shorter than a
/// block the index places in it (pack ids, hex). Reads the point and its page tables and trees
/// (authenticated) and lists the packs once; reads no pack data. A chunk the index does not
/// list at all is reported as `"unindexed chunk <id>"`.
pub fn missing_packs(repo: &mut Repository, id: &ObjectId) -> Result<Vec<String>> {
    let point = repo.read_point(id)?;
    let session = repo.begin_restore()?;
    let mut reader = session.reader();
    let mut chunks: HashSet<ChunkId> = HashSet::new();
    for c in &point.components {
        if let Some(s) = &c.sqlite {
            chunks.extend(s.base.iter().chain(&s.delta).copied());
            chunks.extend(load_page_table(&mut reader, s)?);
        }
        if let Some(t) = &c.tree {
            chunks.extend(t.entries.iter().copied());
            for e in load_tree(&mut reader, t)? {
                chunks.extend(e.chunks);
            }
        }
    }
    let index = session.repository().index();
    let mut need: HashMap<ObjectId, u64> = HashMap::new();
    let mut out = Vec::new();
    for ch in &chunks {
        match index.get(ch) {
            Some(loc) => {
                let end = loc.block_offset as u64 + loc.block_len as u64;
                let e = need.entry(index.pack(loc.pack)).or_default();
                *e = (*e).max(end);
            }
            None => out.push(format!("unindexed chunk {}", ch.to_hex())),
        }
    }
    let sizes: HashMap<String, u64> = session
        .repository()
        .storage()
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    for (pack, end) in need {
        let name = pack.to_hex();
        if sizes.get(&name).is_none_or(|size| *size < end) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}
