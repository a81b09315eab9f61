//! Delta records (`docs/FORMAT.md` §17): reading them (as untrusted: bounded, name checked,
//! links checked), writing one (only through [`crate::BackupSession::commit_delta`]), putting a
//! chain together and replaying it onto its base point's page table.
//!
//! A chain is trusted only as far as its checksums link: each link's `checksum_before` must be
//! the checksum the replay computed so far, and its `checksum_after` what the replay computes
//! after applying it. A link missing from storage is a gap, and a gap is an error that names
//! it and the newest moment still restorable before it (bottomless stops silently at a gap;
//! that is the failure this module exists to rule out).
use std::collections::HashMap;

use crate::components::{load_page_table, DbChecksum};
use crate::error::{err, Error, Result};
use crate::format::delta::{Delta, DELTA_MAGIC, MAX_DELTA_PAYLOAD};
use crate::format::object;
use crate::format::pagetable::decode_delta;
use crate::format::point::SqliteBody;
use crate::id::{ChunkId, ObjectId};
use crate::reader::ChunkReader;
use crate::repository::{verify_name, Repository};
use crate::storage::ObjectKind;

/// Readable deltas by id, and the names of those that could not be read with why.
pub type DeltaListing = (Vec<(ObjectId, Delta)>, Vec<(String, Error)>);

impl Repository {
    /// Every delta record, and beside them those that cannot be read (damaged, too large,
    /// written by a newer lifeboat).
    pub fn deltas_and_damaged(&self) -> Result<DeltaListing> {
        let listed = self.storage().list(ObjectKind::Delta)?;
        // Thousands of small objects (one per busy interval): read on several threads, as a
        // remote store answers each after a round trip.
        const READERS: usize = 16;
        let per = listed.len().div_ceil(READERS).max(64);
        let read_part = |part: &[crate::storage::ListEntry]| {
            let mut good = Vec::new();
            let mut bad = Vec::new();
            for e in part {
                let Some(id) = ObjectId::from_hex(&e.name) else {
                    bad.push((e.name.clone(), err!(Corrupt, "delta name is not an id")));
                    continue;
                };
                match self.read_delta(&id) {
                    Ok(d) => good.push((id, d)),
                    // Forgotten meanwhile: not a delta any more.
                    Err(_)
                        if matches!(
                            self.storage().read(ObjectKind::Delta, &e.name),
                            Err(crate::StorageError::NotFound { .. })
                        ) => {}
                    Err(er) => bad.push((e.name.clone(), er)),
                }
            }
            (good, bad)
        };
        // A thread that cannot be started (a pids limit on the service) reads its part on
        // this one; one that panicked is an error, not a panic of the caller (the daemon).
        let parts: Vec<DeltaListing> = std::thread::scope(|s| {
            let handles: Vec<_> = listed
                .chunks(per)
                .map(|part| {
                    let h = std::thread::Builder::new()
                        .name("delta-reader".into())
                        .spawn_scoped(s, move || read_part(part));
                    (part, h)
                })
                .collect();
            handles
                .into_iter()
                .map(|(part, h)| match h {
                    Ok(h) => h
                        .join()
                        .map_err(|_| err!(Other, "internal error: a delta reader thread panicked")),
                    Err(_) => Ok(read_part(part)),
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for (g, b) in parts {
            good.extend(g);
            bad.extend(b);
        }
        Ok((good, bad))
    }

    /// Every delta record, or an error if one cannot be read (one deleted meanwhile is
    /// skipped, and so is a name that is not an id: nothing can name it as a parent or a
    /// chain member): what prune needs, since a skipped delta's chunks would look dead.
    pub(crate) fn deltas_strict(&self) -> Result<Vec<(ObjectId, Delta)>> {
        let (good, bad) = self.deltas_and_damaged()?;
        if let Some((name, e)) = bad
            .into_iter()
            .find(|(name, _)| ObjectId::from_hex(name).is_some())
        {
            return Err(e
                .context(format!("read delta {}", short_name(&name)))
                .with_hint(
                "prune deletes nothing while a delta record cannot be read; run `lifeboat check`",
            ));
        }
        Ok(good)
    }

    /// Every readable delta record; damaged ones are skipped with a warning (a chain that
    /// needed one then reports the gap). A record the store failed to deliver (a timeout, an
    /// I/O error) is an error, not a damaged record: skipping the newest link of a chain made
    /// a restore --at give an older moment with only a warning, and the capture resume an
    /// older tip.
    pub fn deltas(&self) -> Result<Vec<(ObjectId, Delta)>> {
        let (good, bad) = self.deltas_and_damaged()?;
        let (failed, bad): (Vec<_>, Vec<_>) = bad.into_iter().partition(|(_, e)| {
            matches!(
                e.kind(),
                crate::ErrorKind::Io | crate::ErrorKind::Interrupted
            )
        });
        if let Some((name, e)) = failed.into_iter().next() {
            return Err(e.context(format!("read delta {}", short_name(&name))));
        }
        for (name, e) in bad {
            tracing::warn!("skipping delta {}: {e}", short_name(&name));
        }
        Ok(good)
    }

    /// Reads one delta record: name = hash, at most 1 MiB stored and decoded, fields checked
    /// ([`Delta::decode`]).
    pub fn read_delta(&self, id: &ObjectId) -> Result<Delta> {
        let name = id.to_hex();
        let what = format!("delta {}", id.short());
        let bytes = self.storage().read(ObjectKind::Delta, &name)?;
        verify_name(&name, &bytes, &what)?;
        let payload =
            object::open_bounded(self.key(), DELTA_MAGIC, &bytes, &what, MAX_DELTA_PAYLOAD)?;
        Delta::decode(&payload, &what)
    }

    /// Seals and writes a delta record. Only [`crate::BackupSession::commit_delta`] calls it,
    /// after the lease check.
    pub(crate) fn write_delta(&self, delta: &Delta) -> Result<ObjectId> {
        let bytes = object::seal(self.key(), DELTA_MAGIC, &delta.encode())?;
        let id = ObjectId::of(&bytes);
        self.storage()
            .write(ObjectKind::Delta, &id.to_hex(), &bytes)
            .map_err(|e| Error::from(e).context("write delta"))?;
        Ok(id)
    }
}

/// The links to replay to reach `tip` (in `all`: the deltas of one base and path, both
/// levels), first first. A level-1 link: its chain. A level-0 link: walking back through its
/// parents, the first link some level-1 link reaches (`until`) is replaced by that level-1
/// link's chain (fewer links to read; and the only way once `forget` dropped the level-0
/// links older than an hour); without one, back to the first link. A parent missing where no
/// level-1 link takes over is a gap (`Corrupt`, named as by [`chain_to`]).
///
/// A level-1 link stands in for a level-0 link only when its own chain is whole and, when
/// that level-0 link is present, it reaches the same state (`checksum_after`, `page_count`,
/// `time`): the replay compares a level-1 link's `checksum_after` with the next link's
/// `checksum_before`, but nothing follows the tip, so a level-1 link naming the tip with
/// another state would be restored as the tip's moment. When no level-1 link can stand in,
/// the walk goes on through the level-0 parents (a damaged or missing minute link costs
/// reads, not the chain).
pub fn links_to<'a>(
    all: &'a HashMap<ObjectId, Delta>,
    tip: &ObjectId,
) -> Result<Vec<(ObjectId, &'a Delta)>> {
    links_to_inner(all, tip, true)
}

/// [`links_to`] through every level-0 link still stored: a level-1 link stands in only for
/// one `forget` thinned. What `check` uses to verify the interval links minute links cover
/// (a walk from the tip stops at the newest link a minute link reaches).
pub(crate) fn interval_links_to<'a>(
    all: &'a HashMap<ObjectId, Delta>,
    tip: &ObjectId,
) -> Result<Vec<(ObjectId, &'a Delta)>> {
    links_to_inner(all, tip, false)
}

fn links_to_inner<'a>(
    all: &'a HashMap<ObjectId, Delta>,
    tip: &ObjectId,
    minutes_first: bool,
) -> Result<Vec<(ObjectId, &'a Delta)>> {
    let d = all
        .get(tip)
        .ok_or_else(|| err!(Corrupt, "delta {} is not in the repository", tip.short()))?;
    if d.level != 0 {
        return chain_to(all, tip);
    }
    // Level-0 link id -> the level-1 links that reach it (sorted: the choice among several
    // does not depend on a hash map's order).
    let mut reach: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for (id, x) in all {
        if x.level == 1 && x.base == d.base && x.path == d.path {
            if let Some(u) = x.until.as_deref().and_then(ObjectId::from_hex) {
                reach.entry(u).or_default().push(*id);
            }
        }
    }
    for v in reach.values_mut() {
        v.sort();
    }
    let mut after: Vec<(ObjectId, &Delta)> = Vec::new();
    let mut at = *tip;
    loop {
        let here = all.get(&at);
        if let Some(rs) = reach.get(&at).filter(|_| minutes_first || here.is_none()) {
            let mut failed = None;
            for r in rs {
                let rd = &all[r];
                if let Some(x) = here {
                    if rd.checksum_after != x.checksum_after
                        || rd.page_count != x.page_count
                        || rd.time != x.time
                    {
                        continue;
                    }
                }
                match chain_to(all, r) {
                    Ok(mut out) => {
                        after.reverse();
                        out.extend(after);
                        return Ok(out);
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if here.is_none() {
                // Thinned, and no level-1 link that reaches it replays: the error of one.
                return Err(failed.unwrap_or_else(|| {
                    err!(Corrupt, "delta {} is not in the repository", at.short())
                }));
            }
        }
        let x =
            here.ok_or_else(|| err!(Corrupt, "delta {} is not in the repository", at.short()))?;
        if let Some((_, later)) = after.last() {
            if x.seq + 1 != later.seq || x.level != 0 {
                return Err(err!(
                    Corrupt,
                    "delta {} (seq {}) names a parent of seq {}",
                    at.short(),
                    later.seq,
                    x.seq
                ));
            }
        }
        after.push((at, x));
        if after.len() as u64 > crate::format::delta::MAX_CHAIN {
            return Err(err!(
                Corrupt,
                "delta chain is longer than the format allows"
            ));
        }
        match &x.parent {
            None => {
                after.reverse();
                return Ok(after);
            }
            Some(p) => {
                let pid = ObjectId::from_hex(p).expect("checked by decode");
                if !all.contains_key(&pid) && !reach.contains_key(&pid) {
                    return Err(gap(all, x, &pid));
                }
                at = pid;
            }
        }
    }
}

/// The first 8 characters of a listed name (any name a storage attacker chose: slicing 8
/// bytes panics inside a multi-byte character).
fn short_name(name: &str) -> String {
    name.chars().take(8).collect()
}

/// The links from the chain's first to `tip`, in order, looked up in `all` (the deltas of one
/// base and path). A link whose parent is not in `all` is a gap: `Corrupt`, naming the
/// missing link and the newest time restorable before it.
pub fn chain_to<'a>(
    all: &'a HashMap<ObjectId, Delta>,
    tip: &ObjectId,
) -> Result<Vec<(ObjectId, &'a Delta)>> {
    let mut out = Vec::new();
    let mut at = *tip;
    loop {
        let d = all
            .get(&at)
            .ok_or_else(|| err!(Corrupt, "delta {} is not in the repository", at.short()))?;
        if let Some((_, later)) = out.last() {
            let later: &&Delta = later;
            if d.seq + 1 != later.seq {
                return Err(err!(
                    Corrupt,
                    "delta {} (seq {}) names a parent of seq {}",
                    at.short(),
                    later.seq,
                    d.seq
                ));
            }
            // A level's links name only links of their level: a level-1 link naming an
            // interval link would make `forget`, which deletes interval links a minute link
            // covers, cut that minute link's own chain.
            if d.level != later.level {
                return Err(err!(
                    Corrupt,
                    "a level-{} link names delta {} of level {} as its parent",
                    later.level,
                    at.short(),
                    d.level
                ));
            }
        }
        out.push((at, d));
        if out.len() as u64 > crate::format::delta::MAX_CHAIN {
            return Err(err!(
                Corrupt,
                "delta chain is longer than the format allows"
            ));
        }
        match &d.parent {
            None => break,
            Some(p) => {
                let pid = ObjectId::from_hex(p).expect("checked by decode");
                if !all.contains_key(&pid) {
                    return Err(gap(all, d, &pid));
                }
                at = pid;
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// The error for a link whose parent `missing` is gone: which link, and the newest time that
/// can still be restored before the gap (the end of the unbroken run from the base).
fn gap(all: &HashMap<ObjectId, Delta>, after: &Delta, missing: &ObjectId) -> Error {
    let mut run: Vec<&Delta> = all
        .values()
        .filter(|d| {
            d.base == after.base
                && d.path == after.path
                && d.level == after.level
                && d.seq < after.seq
        })
        .collect();
    run.sort_by_key(|d| d.seq);
    let mut newest: Option<&Delta> = None;
    for (i, d) in run.iter().enumerate() {
        if d.seq != i as u64 + 1 {
            break;
        }
        newest = Some(d);
    }
    let before = match newest {
        Some(d) => format!("delta seq {} at {}", d.seq, d.time),
        None => format!("the base point {}", &after.base[..8]),
    };
    Error::new(
        crate::ErrorKind::Corrupt,
        format!(
            "the continuous chain of {} from point {} has a gap: delta seq {} ({}) is missing, so delta seq {} at {} and everything after it cannot be replayed",
            after.path,
            &after.base[..8],
            after.seq - 1,
            missing.short(),
            after.seq,
            after.time
        ),
    )
    .with_hint(format!(
        "the newest moment restorable before the gap is {before}; restore --at a time before it, or a point; `lifeboat check` lists damaged deltas"
    ))
}

/// Replays `chain` (first link first) onto the base component `base`: the page table and the
/// checksum after the last link. Each link's `checksum_before` must equal the running
/// checksum and its `checksum_after` the one computed after it; page sizes must match the
/// base; every page past the base's end must be given by a link. Any mismatch is `Corrupt`.
pub fn replay(
    reader: &mut ChunkReader<'_>,
    base: &SqliteBody,
    chain: &[(ObjectId, &Delta)],
) -> Result<(Vec<ChunkId>, DbChecksum)> {
    let key = reader.checksum_key();
    let mut table = load_page_table(reader, base)?;
    let mut sum = DbChecksum::of_table(&key, &table);
    if sum.to_hex() != base.checksum {
        return Err(err!(
            Corrupt,
            "the base point's page table does not match its checksum"
        ));
    }
    for (id, d) in chain {
        let what = || format!("delta {} (seq {}, {})", id.short(), d.seq, d.time);
        if d.page_size != base.page_size {
            return Err(err!(Corrupt, "{}: page size differs from its base", what()));
        }
        if sum.to_hex() != d.checksum_before {
            return Err(err!(
                Corrupt,
                "{}: does not follow the link before it (checksum before differs)",
                what()
            ));
        }
        // The link's pairs first (their number is bounded by the bytes stored), so that a
        // page count no pair backs (a key holder's `page_count` of 4 billion) is refused
        // before the table grows to it: every page the link adds must be listed.
        let mut pairs = Vec::new();
        for seg in &d.pages {
            pairs.extend(decode_delta(&reader.read(seg)?)?);
        }
        if pairs.len() as u64 != d.changed as u64 {
            return Err(err!(
                Corrupt,
                "{}: lists {} pages, says {}",
                what(),
                pairs.len(),
                d.changed
            ));
        }
        let n = d.page_count as usize;
        if n.saturating_sub(table.len()) > pairs.len() {
            return Err(err!(
                Corrupt,
                "{}: grows the database to {n} pages but lists only {} pages",
                what(),
                pairs.len()
            ));
        }
        while table.len() > n {
            let p = table.len() as u32;
            let old = table.pop().expect("not empty");
            sum.toggle(&key, p, &old);
        }
        let grown_from = table.len();
        table.resize(n, ChunkId::default());
        for (pgno, new) in pairs {
            let i = (pgno as usize)
                .checked_sub(1)
                .filter(|&i| i < n)
                .ok_or_else(|| err!(Corrupt, "{}: names page {pgno} outside 1..={n}", what()))?;
            if i < grown_from || table[i] != ChunkId::default() {
                sum.toggle(&key, pgno, &table[i]);
            }
            table[i] = new;
            sum.toggle(&key, pgno, &new);
        }
        if table[grown_from..].contains(&ChunkId::default()) {
            return Err(err!(Corrupt, "{}: new pages with no chunk", what()));
        }
        if sum.to_hex() != d.checksum_after {
            return Err(err!(
                Corrupt,
                "{}: the pages do not give its checksum after",
                what()
            ));
        }
    }
    Ok((table, sum))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::format::pagetable::encode_delta;
    use crate::test_chain::*;
    use crate::test_store::TestStore;

    /// A storage attacker (no key) names an object in `deltas/` as it likes: listing it must
    /// not panic (8 bytes of `aaaaaaaé` end inside the `é`).
    #[test]
    fn a_delta_name_with_multibyte_characters_is_skipped_not_a_panic() {
        let store = Arc::new(TestStore::default());
        let repo = repo(&store);
        repo.storage()
            .write(ObjectKind::Delta, "aaaaaaa\u{e9}x", b"junk")
            .unwrap();
        assert!(repo.deltas().unwrap().is_empty());
        let (_, bad) = repo.deltas_and_damaged().unwrap();
        assert_eq!(bad.len(), 1);
    }

    /// Review: a delta the store failed to deliver (a timeout) was skipped like a damaged one:
    /// a restore --at then took the link before it as the newest, an older moment, with only
    /// a warning. It is an error.
    #[test]
    fn a_delta_the_store_fails_to_deliver_is_an_error_not_skipped() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let base = base_point(&mut repo, "app", "b");
        let ids = chain(&mut repo, &base, &three_steps(jiff::Timestamp::now()));
        store.failing_reads.lock().unwrap().push(ids[2].to_hex());
        let e = repo.deltas().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Io, "{e}");
        store.failing_reads.lock().unwrap().clear();
        assert_eq!(repo.deltas().unwrap().len(), 3);
    }

    /// A key holder's link that claims 4 billion pages and lists one must be refused before
    /// the replay allocates a table of that size (64 GiB: the process aborted).
    #[test]
    fn a_link_whose_page_count_no_pair_backs_is_refused_before_allocating() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let base = base_point(&mut repo, "app", "b");
        let key_sum = body(&base.1).checksum.clone();
        let mut s = repo.begin_backup().unwrap();
        let w = s.writer();
        let id = w.store_page(&page("huge")).unwrap();
        let seg = w.store_chunk(&encode_delta(&[(5, id)])).unwrap();
        let forged = Delta {
            app: "app".into(),
            path: DB.into(),
            base: base.0.to_hex(),
            parent: None,
            seq: 1,
            time: jiff::Timestamp::now().to_string(),
            hostname: "elsewhere".into(),
            lifeboat_version: "test".into(),
            page_size: PAGE,
            page_count: u32::MAX,
            checksum_before: key_sum,
            checksum_after: "00".repeat(16),
            pages: vec![seg],
            changed: 1,
            healed: false,
            wal: None,
            level: 0,
            until: None,
        };
        let (did, _) = s.commit_delta(|_| forged).unwrap();
        drop(s);
        repo.load_index().unwrap();
        let mut all = HashMap::new();
        all.insert(did, repo.read_delta(&did).unwrap());
        let chain = chain_to(&all, &did).unwrap();
        let mut reader = repo.reader();
        let e = replay(&mut reader, body(&base.1), &chain).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("grows the database"), "{e}");
    }
}
