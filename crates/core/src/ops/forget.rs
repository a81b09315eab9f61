//! `forget`: removes the points a retention plan did not keep, and thins the delta records of
//! continuous capture (`docs/FORMAT.md` §17). Deleting a point manifest or a delta record is
//! atomic and the data it referenced stays until `prune`, so a forget killed half-way leaves
//! some points removed and every other point whole.
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::{err, Error, Result};
use crate::id::ObjectId;
use crate::repository::Repository;
use crate::retention::Decision;
use crate::session::Publisher;
use crate::storage::{ObjectKind, StorageError};

/// Deletes the points `decisions` does not keep; returns how many were deleted.
pub fn forget(repo: &Repository, decisions: &[Decision]) -> Result<u64> {
    if !decisions.is_empty() && decisions.iter().all(|d| !d.keep) {
        return Err(err!(
            Refused,
            "the plan removes every point; nothing was deleted"
        ));
    }
    let publisher = forget_lease(repo)?;
    publisher.publish(|| delete_points(repo, decisions))
}

/// The lease every forget holds. Deleting points or deltas cannot hurt a concurrent prune
/// (it only makes more data dead), but forget goes through the same door as every mutation:
/// a lease, checked before it acts.
fn forget_lease(repo: &Repository) -> Result<Publisher> {
    let publisher = Publisher::acquire(Arc::clone(repo.storage()), "forget", repo.lease_ttl)?;
    // Forget reads and references no chunk, so no prune record can hurt it: it lists every
    // record present as seen, and only the sweep of a record written while it runs waits
    // for it (a forget killed elsewhere held every sweep back for a lease lifetime).
    let records = repo.storage().list(ObjectKind::Prune)?;
    publisher
        .lease()
        .set_seen_prunes(records.into_iter().map(|e| e.name).collect())?;
    Ok(publisher)
}

fn delete_points(repo: &Repository, decisions: &[Decision]) -> Result<u64> {
    let mut n = 0;
    for d in decisions.iter().filter(|d| !d.keep) {
        match repo.storage().delete(ObjectKind::Point, &d.id) {
            Ok(()) | Err(StorageError::NotFound { .. }) => n += 1,
            Err(e) => {
                return Err(Error::from(e).context(format!(
                    "delete point {} ({n} points were deleted before)",
                    &d.id[..8]
                )))
            }
        }
    }
    Ok(n)
}

/// What [`forget_deltas`] removed (or, in a dry run, would remove) and kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeltaForgetReport {
    /// Delta records removed.
    pub deltas: u64,
    /// Chains (all deltas of one base point and database path) removed.
    pub chains: u64,
    /// Of those, chains whose base point is forgotten now or gone.
    pub chains_of_gone_points: u64,
    /// Delta records kept.
    pub kept_deltas: u64,
    /// Chains kept.
    pub kept_chains: u64,
}

/// Thins the delta records of `app` (`docs/FORMAT.md` §17): removes every chain (all deltas
/// with the same `base` and `path`) whose base point is in `forgotten_points` or is no point
/// any more, and every chain whose newest link is older than `now - keep_within`. A chain is
/// removed whole or not at all: it replays from its base, so a missing link in the middle
/// would make every later link a gap. Deltas that cannot be read are left alone (`check`
/// names them). With `dry_run` nothing is deleted and no lease is taken.
pub fn forget_deltas(
    repo: &Repository,
    app: &str,
    keep_within: Duration,
    now: jiff::Timestamp,
    forgotten_points: &[ObjectId],
    dry_run: bool,
) -> Result<DeltaForgetReport> {
    // Deltas before points: a delta is written only after its base point exists, so a delta
    // listed here whose base is missing from the later listing belongs to a forgotten point.
    let deltas = repo.deltas()?;
    type Link = (u64, ObjectId, jiff::Timestamp);
    let mut chains: BTreeMap<(String, String), Vec<Link>> = BTreeMap::new();
    for (id, d) in deltas.into_iter().filter(|(_, d)| d.app == app) {
        let t = d.timestamp()?;
        chains
            .entry((d.base, d.path))
            .or_default()
            .push((d.seq, id, t));
    }
    let mut report = DeltaForgetReport::default();
    if chains.is_empty() {
        return Ok(report);
    }
    let points: HashSet<String> = repo.point_names()?;
    let forgotten: HashSet<String> = forgotten_points.iter().map(ObjectId::to_hex).collect();
    let span = jiff::SignedDuration::try_from(keep_within).unwrap_or(jiff::SignedDuration::MAX);
    let cutoff = now.checked_sub(span).unwrap_or(jiff::Timestamp::MIN);
    // The newest chain of each database is the one a running capture may still extend: the
    // age rule never drops it (its next link would name a deleted parent, a gap), only a
    // newer chain of the same database or its base point going does.
    let mut newest_chain: BTreeMap<&str, (jiff::Timestamp, &str)> = BTreeMap::new();
    for ((base, path), links) in &chains {
        let newest = links.iter().map(|l| l.2).max().expect("a chain has links");
        let e = newest_chain
            .entry(path.as_str())
            .or_insert((newest, base.as_str()));
        if newest > e.0 {
            *e = (newest, base.as_str());
        }
    }
    let live: HashSet<(String, String)> = newest_chain
        .into_iter()
        .map(|(path, (_, base))| (base.to_string(), path.to_string()))
        .collect();
    let mut doomed: Vec<ObjectId> = Vec::new();
    for (key, links) in &mut chains {
        let base = &key.0;
        let gone = forgotten.contains(base.as_str()) || !points.contains(base.as_str());
        let newest = links.iter().map(|l| l.2).max().expect("a chain has links");
        if gone || (newest < cutoff && !live.contains(key)) {
            report.chains += 1;
            report.chains_of_gone_points += gone as u64;
            report.deltas += links.len() as u64;
            // Newest link first: a forget killed half-way leaves the chain's first links, a
            // chain without a gap, which the next forget removes too (its newest remaining
            // link is older still, or its base is gone).
            links.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            doomed.extend(links.iter().map(|l| l.1));
        } else {
            report.kept_chains += 1;
            report.kept_deltas += links.len() as u64;
        }
    }
    if dry_run || doomed.is_empty() {
        return Ok(report);
    }
    let publisher = forget_lease(repo)?;
    publisher.publish(|| {
        for (n, id) in doomed.iter().enumerate() {
            match repo.storage().delete(ObjectKind::Delta, &id.to_hex()) {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(Error::from(e).context(format!(
                        "delete delta {} ({n} deltas were deleted before)",
                        id.short()
                    )))
                }
            }
        }
        Ok(())
    })?;
    Ok(report)
}

/// Thins the continuous chains of `app` to one link a minute before `now - fine`: in each
/// chain, the level-0 (interval) links up to the one that the newest level-1 (minute) link
/// older than that reaches (`until`) are deleted, highest `seq` first (a forget killed
/// half-way leaves an older run that still replays from link 1, and the link after the
/// deleted ones still has its parent reached by that level-1 link, never a gap). A restore
/// then replays level-1 links up to the minute, and level-0 links after it (`links_to`).
///
/// Which links go is decided by the chain's structure, never by time alone: a level-0 link
/// goes when its `seq` is at most `until`'s and its `time` is not after it (a link after
/// `until` whose clock stepped back stays; so do the links of a run resumed later), and only
/// when the level-1 link replays up to its first (a damaged or missing minute link is no
/// route) and reaches `until`'s state. If a level-0 link that stays would then name a deleted
/// parent no level-1 link reaches (a fork left by a retried write), the chain is left whole.
/// Returns how many records went (in a dry run, would go).
pub fn thin_deltas(
    repo: &Repository,
    app: &str,
    fine: Duration,
    now: jiff::Timestamp,
    dry_run: bool,
) -> Result<u64> {
    use crate::format::delta::Delta;
    use std::collections::HashMap;
    let span = jiff::SignedDuration::try_from(fine).unwrap_or(jiff::SignedDuration::MAX);
    let cutoff = now.checked_sub(span).unwrap_or(jiff::Timestamp::MIN);
    let mut chains: BTreeMap<(String, String), HashMap<ObjectId, Delta>> = BTreeMap::new();
    for (id, d) in repo.deltas()?.into_iter().filter(|(_, d)| d.app == app) {
        d.timestamp()?;
        chains
            .entry((d.base.clone(), d.path.clone()))
            .or_default()
            .insert(id, d);
    }
    let mut doomed: Vec<ObjectId> = Vec::new();
    for ((_, path), links) in &chains {
        let time = |d: &Delta| d.timestamp().expect("checked above");
        // The level-1 links older than the cutoff, newest first: the first that is a route.
        let mut minutes: Vec<(&ObjectId, &Delta)> = links
            .iter()
            .filter(|(_, d)| d.level == 1 && time(d) < cutoff)
            .collect();
        minutes.sort_by(|a, b| time(b.1).cmp(&time(a.1)).then(a.0.cmp(b.0)));
        let upto = minutes.into_iter().find_map(|(id, m)| {
            let until = ObjectId::from_hex(m.until.as_deref()?)?;
            crate::deltas::chain_to(links, id).ok()?;
            match links.get(&until) {
                Some(u)
                    if u.level != 0
                        || u.checksum_after != m.checksum_after
                        || u.page_count != m.page_count
                        || u.time != m.time =>
                {
                    None
                }
                Some(u) => Some((u.seq, time(m))),
                // Thinned already: its seq is one less than its child's (no child: nothing
                // to tell; an older minute link may).
                None => links
                    .values()
                    .find(|d| d.level == 0 && d.parent.as_deref() == m.until.as_deref())
                    .map(|c| (c.seq - 1, time(m))),
            }
        });
        let Some((until_seq, until_time)) = upto else {
            continue;
        };
        let mut old: Vec<(&ObjectId, &Delta)> = links
            .iter()
            .filter(|(_, d)| d.level == 0 && d.seq <= until_seq && time(d) <= until_time)
            .collect();
        if old.is_empty() {
            continue;
        }
        let gone: HashSet<&ObjectId> = old.iter().map(|(id, _)| *id).collect();
        let reached: HashSet<ObjectId> = links
            .values()
            .filter(|d| d.level == 1)
            .filter_map(|d| ObjectId::from_hex(d.until.as_deref()?))
            .collect();
        let strands = links.iter().any(|(id, d)| {
            d.level == 0
                && !gone.contains(id)
                && d.parent
                    .as_deref()
                    .and_then(ObjectId::from_hex)
                    .is_some_and(|p| gone.contains(&p) && !reached.contains(&p))
        });
        if strands {
            tracing::warn!(
                "the continuous chain of {path} from point {} forks; not thinned",
                old[0].1.base.chars().take(8).collect::<String>()
            );
            continue;
        }
        old.sort_by(|a, b| b.1.seq.cmp(&a.1.seq).then(a.0.cmp(b.0)));
        doomed.extend(old.iter().map(|(id, _)| **id));
    }
    if dry_run || doomed.is_empty() {
        return Ok(doomed.len() as u64);
    }
    let publisher = forget_lease(repo)?;
    publisher.publish(|| {
        for id in &doomed {
            match repo.storage().delete(ObjectKind::Delta, &id.to_hex()) {
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => {
                    return Err(Error::from(e).context(format!("delete delta {}", id.short())))
                }
            }
        }
        Ok(())
    })?;
    Ok(doomed.len() as u64)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::test_chain::*;
    use crate::test_store::TestStore;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn hours_ago(now: jiff::Timestamp, h: i64) -> jiff::Timestamp {
        now.checked_sub(jiff::SignedDuration::from_hours(h))
            .unwrap()
    }

    /// Three links at `start`, `start + 1h`, `start + 2h`... spread by `gap_h` hours.
    fn steps(start: jiff::Timestamp, gap_h: i64) -> Vec<Step<'static>> {
        let mut s = three_steps(start);
        for (i, st) in s.iter_mut().enumerate() {
            st.time = start
                .checked_add(jiff::SignedDuration::from_hours(gap_h * i as i64))
                .unwrap();
        }
        s
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn forget_deltas_drops_whole_chains_only() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let b = base_point(&mut repo, "app", "B");
        let c = base_point(&mut repo, "other", "C");
        // Chain on A: all of it two days old. Chain on B: starts 30 h ago, newest link 1 h
        // ago (straddles the window). Chain of another app: old, but not this app's.
        let old = chain(&mut repo, &a, &steps(hours_ago(now, 50), 1));
        let straddling = chain(&mut repo, &b, &steps(hours_ago(now, 30), 14));
        let other = chain(&mut repo, &c, &steps(hours_ago(now, 50), 1));
        let all = sorted(store.names(ObjectKind::Delta));
        assert_eq!(all.len(), 9);

        // A dry run deletes nothing and says what a real one would.
        let dry = forget_deltas(&repo, "app", DAY, now, &[], true).unwrap();
        assert_eq!(
            dry,
            DeltaForgetReport {
                deltas: 3,
                chains: 1,
                chains_of_gone_points: 0,
                kept_deltas: 3,
                kept_chains: 1,
            }
        );
        assert_eq!(sorted(store.names(ObjectKind::Delta)), all);

        let done = forget_deltas(&repo, "app", DAY, now, &[], false).unwrap();
        assert_eq!(done, dry);
        let left = sorted(store.names(ObjectKind::Delta));
        let mut expect: Vec<String> = straddling
            .iter()
            .chain(&other)
            .map(|i| i.to_hex())
            .collect();
        expect.sort();
        assert_eq!(
            left, expect,
            "the old chain went whole, the straddling one stayed whole"
        );
        assert!(old.iter().all(|i| !left.contains(&i.to_hex())));
        // The straddling chain still replays to its end.
        let mut expect_pages = base_tags("B");
        expect_pages[0] = "d3 p1".into();
        expect_pages[1] = "d1 p2".into();
        expect_pages[2] = "d2 p3".into();
        replay_and_read(&mut repo, &b.1, &straddling, &expect_pages).unwrap();
        assert!(store.names(ObjectKind::Lease).is_empty(), "lease released");

        // A wide window keeps it all; a window that covers nothing still keeps the newest
        // chain of the database (a running capture may extend it: dropping it would make its
        // next link a gap), until a newer chain of that database exists.
        let wide = forget_deltas(&repo, "app", 3 * DAY, now, &[], false).unwrap();
        assert_eq!((wide.deltas, wide.kept_deltas), (0, 3));
        let narrow =
            forget_deltas(&repo, "app", Duration::from_secs(1800), now, &[], false).unwrap();
        assert_eq!((narrow.deltas, narrow.chains), (0, 0));
        let newer = base_point(&mut repo, "app", "D");
        let newest = chain(&mut repo, &newer, &three_steps(now));
        let narrow =
            forget_deltas(&repo, "app", Duration::from_secs(1800), now, &[], false).unwrap();
        assert_eq!((narrow.deltas, narrow.chains), (3, 1));
        assert_eq!(
            sorted(store.names(ObjectKind::Delta)),
            sorted(other.iter().chain(&newest).map(|i| i.to_hex()).collect())
        );
    }

    /// A minute link written by hand over the interval links `covered` (as the capture does).
    fn minute_link(
        repo: &mut Repository,
        base: &(ObjectId, crate::format::point::Point),
        covered: &[ObjectId],
        parent: Option<(ObjectId, u64)>,
    ) -> ObjectId {
        minute_link_until(repo, base, covered, parent, *covered.last().unwrap())
    }

    /// [`minute_link`] naming `until` (a key holder's or a bug's: not the last covered link).
    fn minute_link_until(
        repo: &mut Repository,
        base: &(ObjectId, crate::format::point::Point),
        covered: &[ObjectId],
        parent: Option<(ObjectId, u64)>,
        until: ObjectId,
    ) -> ObjectId {
        use crate::format::pagetable::{decode_delta, encode_delta};
        repo.load_index().unwrap();
        let links: Vec<crate::format::delta::Delta> = covered
            .iter()
            .map(|i| repo.read_delta(i).unwrap())
            .collect();
        let mut pairs = std::collections::BTreeMap::new();
        {
            let mut reader = repo.reader();
            for d in &links {
                pairs.retain(|p: &u32, _| *p <= d.page_count);
                for seg in &d.pages {
                    pairs.extend(decode_delta(&reader.read(seg).unwrap()).unwrap());
                }
            }
        }
        let (first, last) = (&links[0], links.last().unwrap());
        let pairs: Vec<_> = pairs.into_iter().collect();
        let mut s = repo.begin_backup().unwrap();
        let seg = s.writer().store_chunk(&encode_delta(&pairs)).unwrap();
        let d = crate::format::delta::Delta {
            parent: parent.map(|p| p.0.to_hex()),
            seq: parent.map_or(1, |p| p.1 + 1),
            checksum_before: first.checksum_before.clone(),
            pages: vec![seg],
            changed: pairs.len() as u32,
            level: 1,
            until: Some(until.to_hex()),
            wal: None,
            base: base.0.to_hex(),
            ..last.clone()
        };
        s.commit_delta(|_| d).unwrap().0
    }

    #[test]
    fn thinning_keeps_a_link_a_minute_and_every_moment_after_still_replays() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let tags: Vec<String> = (0..6).map(|i| format!("m{i} p2")).collect();
        let changes: Vec<[(u32, &str); 1]> = tags.iter().map(|t| [(2u32, t.as_str())]).collect();
        let start = hours_ago(now, 3);
        let steps: Vec<Step<'_>> = changes
            .iter()
            .enumerate()
            .map(|(i, c)| Step {
                page_count: 4,
                changed: c,
                time: start
                    .checked_add(jiff::SignedDuration::from_mins(20 * i as i64))
                    .unwrap(),
            })
            .collect();
        let ids = chain(&mut repo, &a, &steps);
        let m1 = minute_link(&mut repo, &a, &ids[0..2], None);
        let m2 = minute_link(&mut repo, &a, &ids[2..4], Some((m1, 1)));
        let expect_at = |i: usize| {
            let mut e = base_tags("A");
            e[1] = format!("m{i} p2");
            e
        };
        // Before thinning, the interval links replay through the minute links already.
        {
            repo.load_index().unwrap();
            let all: std::collections::HashMap<_, _> = store
                .names(ObjectKind::Delta)
                .iter()
                .map(|n| {
                    let id = ObjectId::from_hex(n).unwrap();
                    (id, repo.read_delta(&id).unwrap())
                })
                .collect();
            let l = crate::deltas::links_to(&all, &ids[5]).unwrap();
            assert_eq!(
                l.iter().map(|x| x.0).collect::<Vec<_>>(),
                vec![m1, m2, ids[4], ids[5]]
            );
        }
        // The links are 3 h, 2h40, 2h20, 2 h, 1h40 and 1h20 old; the minute links reach links
        // 2 and 4. Every interval link up to the newest minute link older than an hour
        // (links 1-4) goes; links 5 and 6 stay (the minute link over them is not written yet).
        let dry = thin_deltas(&repo, "app", Duration::from_secs(3600), now, true).unwrap();
        assert_eq!(dry, 4);
        assert_eq!(store.names(ObjectKind::Delta).len(), 8, "a dry run");
        assert_eq!(
            thin_deltas(&repo, "app", Duration::from_secs(3600), now, false).unwrap(),
            4
        );
        let left = store.names(ObjectKind::Delta);
        assert_eq!(left.len(), 4);
        repo.load_index().unwrap();
        let all: std::collections::HashMap<_, _> = left
            .iter()
            .map(|n| {
                let id = ObjectId::from_hex(n).unwrap();
                (id, repo.read_delta(&id).unwrap())
            })
            .collect();
        let mut reader = repo.reader();
        for (tip, i) in [(ids[5], 5), (ids[4], 4), (m2, 3), (m1, 1)] {
            let l = crate::deltas::links_to(&all, &tip).unwrap();
            let (table, _) = crate::deltas::replay(&mut reader, body(&a.1), &l).unwrap();
            for (id, tag) in table.iter().zip(expect_at(i)) {
                assert_eq!(reader.read(id).unwrap(), page(&tag), "{tag} at link {i}");
            }
        }
        drop(reader);
        // check sees a thinned chain as whole.
        let report = crate::ops::check::check(
            &mut repo,
            crate::ops::check::CheckOptions { read_data: true },
            &crate::progress::NoProgress,
        )
        .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        // Nothing more to thin.
        assert_eq!(
            thin_deltas(&repo, "app", Duration::from_secs(3600), now, false).unwrap(),
            0
        );
    }

    /// Six interval links 20 minutes apart from 3 h ago, each changing page 2 to `m{i} p2`;
    /// `shift(i)` moves link i's time (a clock stepped back).
    fn six_links(
        repo: &mut Repository,
        a: &(ObjectId, crate::format::point::Point),
        now: jiff::Timestamp,
        shift: impl Fn(usize) -> i64,
    ) -> Vec<ObjectId> {
        let tags: Vec<String> = (0..6).map(|i| format!("m{i} p2")).collect();
        let changes: Vec<[(u32, &str); 1]> = tags.iter().map(|t| [(2u32, t.as_str())]).collect();
        let start = hours_ago(now, 3);
        let steps: Vec<Step<'_>> = changes
            .iter()
            .enumerate()
            .map(|(i, c)| Step {
                page_count: 4,
                changed: c,
                time: start
                    .checked_add(jiff::SignedDuration::from_mins(20 * i as i64 + shift(i)))
                    .unwrap(),
            })
            .collect();
        chain(repo, a, &steps)
    }

    /// The readable deltas in the store, by id.
    fn readable(
        repo: &mut Repository,
        store: &TestStore,
    ) -> std::collections::HashMap<ObjectId, crate::format::delta::Delta> {
        repo.load_index().unwrap();
        store
            .names(ObjectKind::Delta)
            .iter()
            .filter_map(|n| {
                let id = ObjectId::from_hex(n).unwrap();
                Some((id, repo.read_delta(&id).ok()?))
            })
            .collect()
    }

    /// Every interval link in the store replays (`links_to`) to its own moment (page 2 =
    /// `m{i} p2`), and `check` finds nothing.
    fn every_link_replays(
        repo: &mut Repository,
        store: &TestStore,
        a: &(ObjectId, crate::format::point::Point),
        ids: &[ObjectId],
    ) {
        let all = readable(repo, store);
        let mut reader = repo.reader();
        for (i, id) in ids.iter().enumerate() {
            if !all.contains_key(id) {
                continue;
            }
            let l = crate::deltas::links_to(&all, id)
                .unwrap_or_else(|e| panic!("link {} of {}: {e}", i + 1, ids.len()));
            let (table, _) = crate::deltas::replay(&mut reader, body(&a.1), &l).unwrap();
            assert_eq!(
                reader.read(&table[1]).unwrap(),
                page(&format!("m{i} p2")),
                "link {}",
                i + 1
            );
        }
        drop(reader);
        let report = crate::ops::check::check(
            repo,
            crate::ops::check::CheckOptions { read_data: false },
            &crate::progress::NoProgress,
        )
        .unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }

    /// Review: thinning chose the interval links to delete by time alone. A clock stepped back
    /// between two links (NTP) gave the link after the minute link's `until` an earlier time;
    /// it was deleted, and the link after it named a parent no minute link reaches: a gap.
    #[test]
    fn thinning_never_strands_the_link_after_a_clock_that_stepped_back() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        // Link 4 is 30 minutes before link 3.
        let ids = six_links(&mut repo, &a, now, |i| if i == 3 { -50 } else { 0 });
        minute_link(&mut repo, &a, &ids[0..3], None);
        every_link_replays(&mut repo, &store, &a, &ids);
        let n = thin_deltas(&repo, "app", Duration::from_secs(3600), now, false).unwrap();
        assert_eq!(n, 3, "links 1-3 go, link 4 (after until) stays");
        every_link_replays(&mut repo, &store, &a, &ids);
    }

    /// Review: a minute link that cannot be read (or is missing) is no route: interval links
    /// after the minute link that follows it still replay through their level-0 parents, and
    /// thinning does not delete the interval links that are then the only way.
    #[test]
    fn a_damaged_minute_link_is_no_route_for_replay_or_thinning() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let ids = six_links(&mut repo, &a, now, |_| 0);
        let m1 = minute_link(&mut repo, &a, &ids[0..2], None);
        minute_link(&mut repo, &a, &ids[2..4], Some((m1, 1)));
        repo.storage()
            .write(ObjectKind::Delta, &m1.to_hex(), b"damaged")
            .unwrap();
        let all = readable(&mut repo, &store);
        let l = crate::deltas::links_to(&all, &ids[5]).expect("the interval links are whole");
        assert_eq!(l.len(), 6);
        let n = thin_deltas(&repo, "app", Duration::from_secs(3600), now, false).unwrap();
        assert_eq!(n, 0, "no whole minute route: nothing thinned");
        let all = readable(&mut repo, &store);
        let mut reader = repo.reader();
        for (i, id) in ids.iter().enumerate() {
            let l = crate::deltas::links_to(&all, id).unwrap();
            let (table, _) = crate::deltas::replay(&mut reader, body(&a.1), &l).unwrap();
            assert_eq!(reader.read(&table[1]).unwrap(), page(&format!("m{i} p2")));
        }
    }

    /// Review: a level-1 link whose parent is an interval link (a key holder's, or a bug's)
    /// replayed, so thinning deleted the interval links it stands for, its own parent among
    /// them: every moment after was a gap.
    #[test]
    fn a_minute_link_chained_to_an_interval_link_is_no_route() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let ids = six_links(&mut repo, &a, now, |_| 0);
        let m = minute_link(&mut repo, &a, &ids[2..4], Some((ids[1], 2)));
        let all = readable(&mut repo, &store);
        assert!(crate::deltas::chain_to(&all, &m).is_err());
        thin_deltas(&repo, "app", Duration::from_secs(3600), now, false).unwrap();
        let all = readable(&mut repo, &store);
        let mut reader = repo.reader();
        for (i, id) in ids.iter().enumerate() {
            let l = crate::deltas::links_to(&all, id).unwrap();
            let (table, _) = crate::deltas::replay(&mut reader, body(&a.1), &l).unwrap();
            assert_eq!(reader.read(&table[1]).unwrap(), page(&format!("m{i} p2")));
        }
    }

    /// Review: a level-1 link whose `until` names the tip but whose state is another link's
    /// (a key holder's, or a bug's) was replayed in place of the tip, and nothing compared its
    /// `checksum_after` with the tip's: the restore said link 5 and gave link 4.
    #[test]
    fn a_minute_link_naming_the_tip_with_another_state_is_not_replayed_as_it() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let ids = six_links(&mut repo, &a, now, |_| 0);
        minute_link_until(&mut repo, &a, &ids[0..4], None, ids[4]);
        let all = readable(&mut repo, &store);
        let l = crate::deltas::links_to(&all, &ids[4]).unwrap();
        let mut reader = repo.reader();
        let (table, sum) = crate::deltas::replay(&mut reader, body(&a.1), &l).unwrap();
        assert_eq!(sum.to_hex(), all[&ids[4]].checksum_after);
        assert_eq!(reader.read(&table[1]).unwrap(), page("m4 p2"));
    }

    /// Review: `check` walked back from each tip only to the newest interval link a minute
    /// link reaches, so the interval links the minute links cover (every interval of the last
    /// hour, which restore --at replays) were never verified: a missing one was not reported,
    /// and a restore --at that moment failed.
    #[test]
    fn check_finds_a_gap_among_the_interval_links_a_minute_link_covers() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let ids = six_links(&mut repo, &a, now, |_| 0);
        minute_link(&mut repo, &a, &ids[0..4], None);
        repo.storage()
            .delete(ObjectKind::Delta, &ids[1].to_hex())
            .unwrap();
        let all = readable(&mut repo, &store);
        assert!(
            crate::deltas::links_to(&all, &ids[2]).is_err(),
            "link 3 is past a gap"
        );
        let report = crate::ops::check::check(
            &mut repo,
            crate::ops::check::CheckOptions { read_data: false },
            &crate::progress::NoProgress,
        )
        .unwrap();
        assert!(
            report.problems.iter().any(|p| p.message.contains("gap")),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn forget_deltas_drops_the_chains_of_forgotten_and_gone_points() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let now = jiff::Timestamp::now();
        let a = base_point(&mut repo, "app", "A");
        let b = base_point(&mut repo, "app", "B");
        let c = base_point(&mut repo, "app", "C");
        chain(&mut repo, &a, &three_steps(now));
        chain(&mut repo, &b, &three_steps(now));
        let kept = chain(&mut repo, &c, &three_steps(now));
        // B is forgotten now (its manifest is still there in a dry run); A went earlier.
        repo.storage()
            .delete(ObjectKind::Point, &a.0.to_hex())
            .unwrap();
        let r = forget_deltas(&repo, "app", DAY, now, &[b.0], false).unwrap();
        assert_eq!(
            r,
            DeltaForgetReport {
                deltas: 6,
                chains: 2,
                chains_of_gone_points: 2,
                kept_deltas: 3,
                kept_chains: 1,
            }
        );
        assert_eq!(
            sorted(store.names(ObjectKind::Delta)),
            sorted(kept.iter().map(|i| i.to_hex()).collect())
        );
    }
}
