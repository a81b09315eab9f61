//! Test fixture for core's unit tests of delta records (`docs/FORMAT.md` §17): a repository
//! with points holding a `sqlite` component and chains of deltas on them, written through the
//! real session (`commit`, `commit_delta`).
use std::sync::Arc;
use std::time::Duration;

use crate::components::{load_page_table, DbChecksum};
use crate::format::delta::Delta;
use crate::format::key::KdfParams;
use crate::format::pagetable::{encode_base, encode_delta};
use crate::format::point::{Component, ComponentKind, Point, PointStats, SqliteBody};
use crate::id::{ChunkId, ObjectId};
use crate::repository::Repository;
use crate::storage::Storage;
use crate::test_store::TestStore;

pub(crate) const PAGE: u32 = 512;
pub(crate) const DB: &str = "/srv/app/db.sqlite";

/// Opens the repository on `store` a second time (another process, as it were).
pub(crate) fn reopen(store: &Arc<TestStore>) -> Repository {
    let storage: Arc<dyn Storage> = Arc::clone(store) as Arc<dyn Storage>;
    let mut r = Repository::open(storage, b"pw").unwrap();
    r.lease_ttl = Duration::from_secs(60);
    r
}

/// A fresh repository on `store` (tiny KDF cost).
pub(crate) fn repo(store: &Arc<TestStore>) -> Repository {
    let storage: Arc<dyn Storage> = Arc::clone(store) as Arc<dyn Storage>;
    let mut r = Repository::init(
        storage,
        b"pw",
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
    )
    .unwrap();
    r.lease_ttl = Duration::from_secs(60);
    r
}

/// A page whose bytes depend on `tag` (distinct tags, distinct chunks).
pub(crate) fn page(tag: &str) -> Vec<u8> {
    let seed = blake3::hash(tag.as_bytes());
    let mut out = Vec::with_capacity(PAGE as usize);
    while out.len() < PAGE as usize {
        out.extend_from_slice(seed.as_bytes());
    }
    out.truncate(PAGE as usize);
    out
}

/// Writes a point of `app` with one `sqlite` component at [`DB`] whose pages are `pages`
/// (tags for [`page`]); returns its id and the point.
pub(crate) fn sqlite_point(repo: &mut Repository, app: &str, pages: &[&str]) -> (ObjectId, Point) {
    sqlite_point_with(repo, app, |w| {
        pages
            .iter()
            .map(|t| w.store_page(&page(t)).unwrap())
            .collect()
    })
}

/// Writes a point of `app` with one `sqlite` component at [`DB`] whose page table `store`
/// returns, having stored its pages through the session's writer.
pub(crate) fn sqlite_point_with(
    repo: &mut Repository,
    app: &str,
    store: impl FnOnce(&mut crate::writer::ChunkWriter<'_>) -> Vec<ChunkId>,
) -> (ObjectId, Point) {
    let mut s = repo.begin_backup().unwrap();
    let w = s.writer();
    let table = store(w);
    let seg = w.store_chunk(&encode_base(&table)).unwrap();
    let checksum = DbChecksum::of_table(&w.checksum_key(), &table).to_hex();
    let body = SqliteBody {
        page_size: PAGE,
        page_count: table.len() as u32,
        checksum,
        base: vec![seg],
        base_pages: table.len() as u32,
        delta: vec![],
        journal_mode: "wal".into(),
        user_version: 0,
        schema_version: None,
        row_counts: Default::default(),
        mode: None,
        uid: None,
        gid: None,
    };
    s.commit(|_| Point {
        app: app.into(),
        time: jiff::Timestamp::now().to_string(),
        tags: vec![],
        hostname: "test".into(),
        lifeboat_version: "test".into(),
        components: vec![Component {
            kind: ComponentKind::Sqlite,
            path: DB.into(),
            size: PAGE as u64 * table.len() as u64,
            sqlite: Some(body),
            tree: None,
            postgres: None,
        }],
        stats: PointStats::default(),
        definition: None,
    })
    .unwrap()
}

/// The tags of a four-page base: `PREFIX p1` .. `PREFIX p4`.
pub(crate) fn base_tags(prefix: &str) -> Vec<String> {
    (1..=4).map(|i| format!("{prefix} p{i}")).collect()
}

/// [`sqlite_point`] of the four pages [`base_tags`].
pub(crate) fn base_point(repo: &mut Repository, app: &str, prefix: &str) -> (ObjectId, Point) {
    let tags = base_tags(prefix);
    let refs: Vec<&str> = tags.iter().map(String::as_str).collect();
    sqlite_point(repo, app, &refs)
}

/// The `sqlite` body of a fixture point.
pub(crate) fn body(point: &Point) -> &SqliteBody {
    point.components[0].sqlite.as_ref().unwrap()
}

/// One interval: the new page count and the (pgno, tag) pages that changed.
pub(crate) struct Step<'a> {
    pub(crate) page_count: u32,
    pub(crate) changed: &'a [(u32, &'a str)],
    pub(crate) time: jiff::Timestamp,
}

/// Writes a chain of deltas on `base`, one per step, in one session (as the capture does).
/// Each interval also stores one chunk nothing references (garbage in the deltas' packs).
/// Returns the deltas' ids, first link first.
pub(crate) fn chain(
    repo: &mut Repository,
    base: &(ObjectId, Point),
    steps: &[Step<'_>],
) -> Vec<ObjectId> {
    let mut s = repo.begin_backup().unwrap();
    chain_in(&mut s, base, steps)
}

/// [`chain`] within an open session.
pub(crate) fn chain_in(
    s: &mut crate::session::BackupSession<'_>,
    base: &(ObjectId, Point),
    steps: &[Step<'_>],
) -> Vec<ObjectId> {
    let (base_id, point) = base;
    let mut table = {
        let (_, reader) = s.parts();
        load_page_table(reader, body(point)).unwrap()
    };
    let key = s.writer().checksum_key();
    let mut before = DbChecksum::of_table(&key, &table).to_hex();
    let mut parent: Option<ObjectId> = None;
    let mut out = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let w = s.writer();
        w.store_chunk(format!("garbage {base_id} {i}").as_bytes())
            .unwrap();
        table.truncate(step.page_count as usize);
        table.resize(step.page_count as usize, ChunkId::default());
        let mut pairs = Vec::new();
        for (pgno, tag) in step.changed {
            let id = w.store_page(&page(tag)).unwrap();
            table[*pgno as usize - 1] = id;
            pairs.push((*pgno, id));
        }
        pairs.sort_by_key(|(p, _)| *p);
        let seg = w.store_chunk(&encode_delta(&pairs)).unwrap();
        let after = DbChecksum::of_table(&key, &table).to_hex();
        let delta = Delta {
            app: point.app.clone(),
            path: DB.into(),
            base: base_id.to_hex(),
            parent: parent.map(|p| p.to_hex()),
            seq: i as u64 + 1,
            time: step.time.to_string(),
            hostname: "test".into(),
            lifeboat_version: "test".into(),
            page_size: PAGE,
            page_count: step.page_count,
            checksum_before: before.clone(),
            checksum_after: after.clone(),
            pages: vec![seg],
            changed: pairs.len() as u32,
            healed: false,
            wal: None,
            level: 0,
            until: None,
        };
        let (id, _) = s.commit_delta(|_| delta).unwrap();
        parent = Some(id);
        before = after;
        out.push(id);
    }
    out
}

/// The standard three-link chain: page 2 changes, the database grows to 5 pages, page 1
/// changes and it shrinks back to 4; `start` is the first link's time, one minute apart.
pub(crate) fn three_steps(start: jiff::Timestamp) -> Vec<Step<'static>> {
    let at = |m: i64| {
        start
            .checked_add(jiff::SignedDuration::from_mins(m))
            .unwrap()
    };
    vec![
        Step {
            page_count: 4,
            changed: &[(2, "d1 p2")],
            time: at(0),
        },
        Step {
            page_count: 5,
            changed: &[(3, "d2 p3"), (5, "d2 p5")],
            time: at(1),
        },
        Step {
            page_count: 4,
            changed: &[(1, "d3 p1")],
            time: at(2),
        },
    ]
}

/// The page table expected after [`three_steps`] on a base of pages `b1..b4` (`tag` prefix).
pub(crate) fn three_steps_pages(prefix: &str) -> Vec<String> {
    vec![
        "d3 p1".into(),
        "d1 p2".into(),
        "d2 p3".into(),
        format!("{prefix} p4"),
    ]
}

/// Replays the chain `ids` (first link first) of `base` with a freshly loaded index and reads
/// every page of the result, comparing it with `expect` (tags).
pub(crate) fn replay_and_read(
    repo: &mut Repository,
    base: &Point,
    ids: &[ObjectId],
    expect: &[String],
) -> crate::error::Result<()> {
    repo.load_index()?;
    let mut all = std::collections::HashMap::new();
    for id in ids {
        all.insert(*id, repo.read_delta(id)?);
    }
    let chain = crate::deltas::chain_to(&all, ids.last().unwrap())?;
    let mut reader = repo.reader();
    let (table, _) = crate::deltas::replay(&mut reader, body(base), &chain)?;
    assert_eq!(table.len(), expect.len());
    for (id, tag) in table.iter().zip(expect) {
        assert_eq!(reader.read(id)?, page(tag), "page {tag}");
    }
    Ok(())
}

/// A retention decision keeping (or forgetting) point `id`, for `forget`.
pub(crate) fn decision(id: &ObjectId, keep: bool) -> crate::retention::Decision {
    crate::retention::Decision {
        id: id.to_hex(),
        time: String::new(),
        tags: vec![],
        keep,
        reasons: vec![],
    }
}
