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
use crate::retention::Decision;
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
    let decide = |id: &crate::id::ObjectId, keep: bool| Decision {
        id: id.to_hex(),
        time: String::new(),
        tags: vec![],
        keep,
        reasons: vec![],
    };
    crate::ops::forget::forget(&repo, &[decide(&first.0, false), decide(&second.0, true)]).unwrap();
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
        vec![y_id, x_id]
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
