//! Page patches end to end (`docs/FORMAT.md` §6 "Patch chunks", §7 version 2): stored by
//! the writer, read by both reader paths, kept by prune, verified by check, and refused when
//! damaged or malformed by a key holder.
use std::sync::Arc;

use crate::format::patch;
use crate::id::ChunkId;
use crate::ops::check::{check, CheckOptions};
use crate::ops::prune::{prune, PruneOptions};
use crate::progress::NoProgress;
use crate::repository::Repository;
use crate::storage::ObjectKind;
use crate::test_chain::*;
use crate::test_store::TestStore;
use crate::writer::PageStored;

/// `page(tag)` with a few bytes changed (a row added to a leaf, as it were).
fn edited(tag: &str, n: u8) -> Vec<u8> {
    let mut p = page(tag);
    p[100..100 + n as usize].fill(n);
    p[400] ^= n;
    p
}

/// A point of four whole pages, then one whose pages are patches of them.
fn patched_repo(store: &Arc<TestStore>) -> (Repository, Vec<ChunkId>, Vec<Vec<u8>>) {
    let mut repo = repo(store);
    let tags = base_tags("A");
    sqlite_point_with(&mut repo, "app", |w| {
        tags.iter()
            .map(|t| {
                let (id, how) = w.store_page_against(&page(t), None).unwrap();
                assert_eq!(how, PageStored::Whole);
                id
            })
            .collect()
    });
    let pages: Vec<Vec<u8>> = tags.iter().map(|t| edited(t, 5)).collect();
    let mut table = Vec::new();
    sqlite_point_with(&mut repo, "app", |w| {
        for (t, p) in tags.iter().zip(&pages) {
            let base = page(t);
            let base_id = w.id_of(&base);
            let (id, how) = w.store_page_against(p, Some((&base_id, &base))).unwrap();
            assert_eq!(how, PageStored::Patch, "a few bytes changed: a patch");
            table.push(id);
        }
        table.clone()
    });
    repo.load_index().unwrap();
    (repo, table, pages)
}

fn read_all(repo: &Repository, table: &[ChunkId]) -> Vec<Vec<u8>> {
    let mut reader = repo.reader();
    let got = std::sync::Mutex::new(vec![Vec::new(); table.len()]);
    reader
        .read_parallel(table, 2, &|batch| {
            for (i, d) in batch {
                got.lock().unwrap()[*i] = d.to_vec();
            }
            Ok(())
        })
        .unwrap();
    let one_by_one: Vec<Vec<u8>> = table.iter().map(|id| reader.read(id).unwrap()).collect();
    let got = got.into_inner().unwrap();
    assert_eq!(got, one_by_one, "both read paths agree");
    got
}

#[test]
fn patches_read_back_exactly_survive_prune_of_their_bases_point_and_pass_check() {
    let store = Arc::new(TestStore::default());
    let (mut repo, table, pages) = patched_repo(&store);
    for id in &table {
        let loc = repo.index().get(id).unwrap();
        assert!(loc.base.is_some() && (loc.len as usize) < pages[0].len() / 2);
    }
    assert_eq!(read_all(&repo, &table), pages);
    let r = check(&mut repo, CheckOptions { read_data: true }, &NoProgress).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    // Index objects with a patch are version 2; the others stay version 1.
    let versions: Vec<u8> = store
        .names(ObjectKind::Index)
        .iter()
        .map(|n| crate::storage::Storage::read(store.as_ref(), ObjectKind::Index, n).unwrap()[4])
        .collect();
    assert!(
        versions.contains(&1) && versions.contains(&2),
        "{versions:?}"
    );

    // The first point goes: its pages are now needed only as the patches' bases.
    let points = repo.points_strict().unwrap();
    let (first, second) = if points[0].1.time <= points[1].1.time {
        (&points[0], &points[1])
    } else {
        (&points[1], &points[0])
    };
    crate::ops::forget::forget(
        &repo,
        &[decision(&first.0, false), decision(&second.0, true)],
    )
    .unwrap();
    // Repack everything that is partly dead: the patches are copied as patches.
    let opts = PruneOptions {
        repack_below: 1.0,
        dry_run: false,
    };
    let report = prune(&mut repo, &opts, &NoProgress).unwrap();
    assert!(report.deferred.is_empty(), "{report:?}");
    repo.load_index().unwrap();
    assert_eq!(read_all(&repo, &table), pages);
    for id in &table {
        assert!(
            repo.index().get(id).unwrap().base.is_some(),
            "still a patch"
        );
    }
    let r = check(&mut repo, CheckOptions { read_data: true }, &NoProgress).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

#[test]
fn a_patch_whose_base_is_gone_is_named_by_reads_and_check() {
    let store = Arc::new(TestStore::default());
    let (mut repo, table, _) = patched_repo(&store);
    let base = repo.index().get(&table[0]).unwrap().base.unwrap();
    let base_pack = repo.index().pack(repo.index().get(&base).unwrap().pack);
    let patch_pack = repo.index().pack(repo.index().get(&table[0]).unwrap().pack);
    assert_ne!(base_pack, patch_pack);
    crate::storage::Storage::delete(store.as_ref(), ObjectKind::Pack, &base_pack.to_hex()).unwrap();
    let e = repo.reader().read(&table[0]).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
    let mut reader = repo.reader();
    let e = reader.read_parallel(&table, 2, &|_| Ok(())).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
    let r = check(&mut repo, CheckOptions { read_data: true }, &NoProgress).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.object.ends_with(&base_pack.to_hex()) && p.message.contains("missing")),
        "{:?}",
        r.problems
    );
}

/// What another key holder could write: a patch of a patch, a patch that rebuilds a page
/// other than its id, ranges past the page. Each read is refused, nothing handed out.
#[test]
fn malformed_patches_from_a_key_holder_are_refused() {
    let store = Arc::new(TestStore::default());
    let mut repo = repo(&store);
    let y = page("y");
    let x = edited("y", 3);
    let good = edited("y", 9);
    let mut ids = Vec::new();
    sqlite_point_with(&mut repo, "app", |w| {
        let (y_id, _) = w.store_page_against(&y, None).unwrap();
        let (x_id, how) = w.store_page_against(&x, Some((&y_id, &y))).unwrap();
        assert_eq!(how, PageStored::Patch);
        // P: a patch against X, which is itself a patch.
        let p_id = w.id_of(&good);
        let p = patch::encode(&x_id, &x, &good, 4096).unwrap();
        w.store_stored(p_id, &p, Some(x_id)).unwrap();
        // Q: a patch against Y that does not rebuild the page its id names.
        let q_id = w.id_of(&page("q"));
        let q = patch::encode(&y_id, &y, &good, 4096).unwrap();
        w.store_stored(q_id, &q, Some(y_id)).unwrap();
        // R: a range past the end of the page.
        let r_id = w.id_of(&page("r"));
        let mut r = patch::encode(&y_id, &y, &good, 4096).unwrap();
        r[patch::PATCH_HEADER_LEN..patch::PATCH_HEADER_LEN + 4]
            .copy_from_slice(&(PAGE - 2).to_le_bytes());
        w.store_stored(r_id, &r, Some(y_id)).unwrap();
        ids = vec![p_id, q_id, r_id];
        // The point needs them (check excuses a dead patch whose base is gone).
        vec![y_id, x_id, p_id, q_id, r_id]
    });
    repo.load_index().unwrap();
    for (id, word) in ids
        .iter()
        .zip(["itself a patch", "does not match", "past the page"])
    {
        let e = repo.reader().read(id).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains(word), "{word}: {e}");
        let e = repo
            .reader()
            .read_parallel(&[*id], 1, &|_| panic!("nothing is handed out"))
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
    }
    let r = check(&mut repo, CheckOptions { read_data: true }, &NoProgress).unwrap();
    assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
}

/// One base serving many patches (a key holder can write that; a page reverted often does
/// it too): the rebuilt pages go to the sink in small batches, never all at once.
#[test]
fn many_patches_of_one_base_are_handed_out_in_bounded_batches() {
    let store = Arc::new(TestStore::default());
    let mut repo = repo(&store);
    let base = page("base");
    let pages: Vec<Vec<u8>> = (0..600u32)
        .map(|i| {
            let mut p = base.clone();
            p[..4].copy_from_slice(&i.to_le_bytes());
            p
        })
        .collect();
    let mut table = Vec::new();
    sqlite_point_with(&mut repo, "app", |w| {
        let (base_id, _) = w.store_page_against(&base, None).unwrap();
        for p in &pages {
            let (id, how) = w.store_page_against(p, Some((&base_id, &base))).unwrap();
            assert_eq!(how, PageStored::Patch);
            table.push(id);
        }
        table.clone()
    });
    repo.load_index().unwrap();
    let largest = std::sync::atomic::AtomicUsize::new(0);
    let got = std::sync::Mutex::new(vec![Vec::new(); table.len()]);
    repo.reader()
        .read_parallel(&table, 2, &|batch| {
            largest.fetch_max(batch.len(), std::sync::atomic::Ordering::Relaxed);
            for (i, d) in batch {
                got.lock().unwrap()[*i] = d.to_vec();
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(got.into_inner().unwrap(), pages);
    assert!(largest.into_inner() <= 256);
}

// ---------------------------------------------------------------------------------------
// Review of 38bd9e0/f5e6d68: its findings as tests (failing before their fixes).

/// A repository where a normal prune left a dead page patch P indexed (its pack stays: most
/// of it is live) while it deleted P's base X (X's pack was all dead). Returns P's content.
fn pruned_dead_patch(store: &Arc<TestStore>) -> (Repository, Vec<u8>) {
    let mut repo = repo(store);
    let x = page("review base x");
    let p = edited("review base x", 7);
    // Point 1: X whole, alone in its pack.
    let (p1, _) = sqlite_point_with(&mut repo, "app", |w| {
        let (id, how) = w.store_page_against(&x, None).unwrap();
        assert_eq!(how, PageStored::Whole);
        vec![id]
    });
    // Point 2: P as a patch against X, beside eight pages that stay live (point 3).
    let live: Vec<Vec<u8>> = (0..8).map(|i| page(&format!("review live {i}"))).collect();
    let (p2, _) = sqlite_point_with(&mut repo, "app", |w| {
        let x_id = w.id_of(&x);
        let (pid, how) = w.store_page_against(&p, Some((&x_id, &x))).unwrap();
        assert_eq!(how, PageStored::Patch);
        let mut t = vec![pid];
        t.extend(live.iter().map(|l| w.store_page(l).unwrap()));
        t
    });
    // Point 3 keeps the eight pages (so P's pack is mostly live and is not repacked).
    let (p3, _) = sqlite_point_with(&mut repo, "app", |w| {
        live.iter().map(|l| w.store_page(l).unwrap()).collect()
    });
    crate::ops::forget::forget(
        &repo,
        &[
            decision(&p1, false),
            decision(&p2, false),
            decision(&p3, true),
        ],
    )
    .unwrap();
    let report = prune(&mut repo, &PruneOptions::default(), &NoProgress).unwrap();
    assert!(report.deferred.is_empty(), "{report:?}");
    assert!(report.packs_deleted >= 1, "X's pack goes: {report:?}");
    repo.load_index().unwrap();
    (repo, p)
}

/// Finding: deduplication trusts an indexed page patch whose base is gone. A normal prune
/// deletes the base X of a dead patch P whose pack it keeps (the pack is mostly live); P stays
/// indexed. A later backup of a database holding P's content deduplicates against that entry
/// (`Index::contains` is true), so its new point references a page nobody can read: the
/// backup succeeds and the restore fails. No attacker needed (the same happens when a crash
/// or a writer error leaves a patch's index object durable and its base's not: the packer
/// writes index objects every 4 packs, blocks in the order the workers finish).
#[test]
fn review_a_page_deduplicated_against_a_dead_patch_whose_base_prune_deleted_reads_back() {
    let store = Arc::new(TestStore::default());
    let (mut repo, p) = pruned_dead_patch(&store);
    let p_id = repo.key().chunk_id(&p);
    let loc = repo
        .index()
        .get(&p_id)
        .expect("P stays indexed in its kept pack");
    let base = loc.base.expect("as a patch");
    assert!(repo.index().get(&base).is_none(), "its base was pruned");
    // A new point of a database that holds P's content again (a full backup, or continuous).
    sqlite_point_with(&mut repo, "app", |w| vec![w.store_page(&p).unwrap()]);
    repo.load_index().unwrap();
    let got = repo.reader().read(&p_id);
    assert!(
        got.as_ref().is_ok_and(|d| *d == p),
        "the new point's page is unreadable: {got:?}"
    );
}

/// Finding: after that same normal prune (nothing damaged, every point readable) `check`
/// reports a problem: the dead patch left in the kept pack names a base no index lists.
#[test]
fn review_check_after_a_normal_prune_reports_no_problem() {
    let store = Arc::new(TestStore::default());
    let (mut repo, _) = pruned_dead_patch(&store);
    let r = check(&mut repo, CheckOptions { read_data: true }, &NoProgress).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
}

/// Finding (low; another key holder, or pages that were once identical): `read_parallel`
/// rebuilds every page of a round whose base sits in one block before a single sink call,
/// and a round is bounded by the bytes of the *patches* (32 MiB), not of the pages they
/// make. 1,000 pages of 64 KiB that are 40-byte patches of one base make one batch of
/// 62.5 MiB; at the round's bound (~900,000 such patches) it would be ~55 GiB, far past the
/// restore's documented memory ("a round's patches"). Fix: count each patch's page length
/// (its base's `len`) against `PATCH_ROUND_BYTES`, and/or hand rebuilt pages to the sink in
/// pieces.
#[test]
fn review_read_parallel_holds_at_most_a_round_of_rebuilt_pages() {
    const BIG: usize = 64 << 10;
    let store = Arc::new(TestStore::default());
    let mut repo = repo(&store);
    let base: Vec<u8> = (0..BIG).map(|i| (i * 31 % 251) as u8).collect();
    let mut table = Vec::new();
    sqlite_point_with(&mut repo, "app", |w| {
        let (base_id, _) = w.store_page_against(&base, None).unwrap();
        for i in 0..1000u32 {
            let mut p = base.clone();
            p[1000..1004].copy_from_slice(&i.to_le_bytes());
            let (id, how) = w.store_page_against(&p, Some((&base_id, &base))).unwrap();
            assert_eq!(how, PageStored::Patch);
            table.push(id);
        }
        vec![base_id]
    });
    repo.load_index().unwrap();
    let largest = std::sync::atomic::AtomicUsize::new(0);
    repo.reader()
        .read_parallel(&table, 2, &|batch| {
            let bytes: usize = batch.iter().map(|(_, d)| d.len()).sum();
            largest.fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let largest = largest.into_inner();
    assert!(
        largest <= crate::reader::PATCH_ROUND_BYTES,
        "one sink call held {} MiB of rebuilt pages",
        largest >> 20
    );
}

/// Counts ranged reads of pack blocks, per (pack, offset).
struct CountingStore {
    inner: Arc<TestStore>,
    reads: std::sync::Mutex<std::collections::HashMap<(String, u64), usize>>,
}

impl crate::storage::Storage for CountingStore {
    fn location(&self) -> String {
        "counting".into()
    }
    fn list(
        &self,
        kind: ObjectKind,
    ) -> crate::storage::StorageResult<Vec<crate::storage::ListEntry>> {
        self.inner.list(kind)
    }
    fn read(&self, kind: ObjectKind, name: &str) -> crate::storage::StorageResult<Vec<u8>> {
        self.inner.read(kind, name)
    }
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> crate::storage::StorageResult<Vec<u8>> {
        if kind == ObjectKind::Pack {
            *self
                .reads
                .lock()
                .unwrap()
                .entry((name.to_string(), offset))
                .or_default() += 1;
        }
        self.inner.read_range(kind, name, offset, len)
    }
    fn write(
        &self,
        kind: ObjectKind,
        name: &str,
        data: &[u8],
    ) -> crate::storage::StorageResult<()> {
        self.inner.write(kind, name, data)
    }
    fn delete(&self, kind: ObjectKind, name: &str) -> crate::storage::StorageResult<()> {
        self.inner.delete(kind, name)
    }
}

/// Finding (medium, cost): prune's repack copies a page patch with `read_stored`, which
/// rebuilds it through `with_chunk`: one more block read per patch for its base (bases of a
/// capture's interval pack sit in many earlier intervals' blocks) and, the two-block cache
/// evicting in insertion order, the patch's own block read again every other patch. Merging
/// a day of continuous packs (what `MERGE_SMALL_PACKS` is for) then costs a GET and a block
/// decode per live patch instead of per block. `check --read-data` (`verify_patches` reads
/// each base through the same cache) has the same shape. Here: 40 bases in 40 small packs,
/// 40 patches of them in one pack; prune merges all 41. Fix: authenticate repacked patches
/// grouped by base block (as `read_parallel` does), or copy patches under the block's AEAD
/// and leave the page hash to reads and `check`.
#[test]
fn review_prune_reads_no_block_more_than_three_times_when_it_repacks_patches() {
    let inner = Arc::new(TestStore::default());
    let counting = Arc::new(CountingStore {
        inner: Arc::clone(&inner),
        reads: Default::default(),
    });
    let storage: Arc<dyn crate::storage::Storage> = Arc::clone(&counting) as _;
    let mut repo = Repository::init(
        storage,
        b"pw",
        crate::format::key::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    repo.lease_ttl = std::time::Duration::from_secs(60);
    let bases: Vec<Vec<u8>> = (0..40).map(|i| page(&format!("review rp {i}"))).collect();
    for b in &bases {
        sqlite_point_with(&mut repo, "app", |w| {
            vec![w.store_page_against(b, None).unwrap().0]
        });
    }
    sqlite_point_with(&mut repo, "app", |w| {
        bases
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let mut p = b.clone();
                p[10] ^= 1 + i as u8;
                let b_id = w.id_of(b);
                let (id, how) = w.store_page_against(&p, Some((&b_id, b))).unwrap();
                assert_eq!(how, PageStored::Patch);
                id
            })
            .collect()
    });
    counting.reads.lock().unwrap().clear();
    let report = prune(&mut repo, &PruneOptions::default(), &NoProgress).unwrap();
    assert!(report.packs_merged >= 32, "{report:?}");
    let reads = counting.reads.lock().unwrap();
    let most = reads.values().copied().max().unwrap_or(0);
    assert!(
        most <= 3,
        "a block was read {most} times ({} ranged reads of {} blocks)",
        reads.values().sum::<usize>(),
        reads.len()
    );
}
