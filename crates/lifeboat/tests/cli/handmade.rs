//! Points written by hand through the library, as anyone with the password could write them:
//! for the tests of what a restore, a check or a recovery does with a hostile point.
use std::sync::Arc;

use lifeboat_core::{
    Component, ComponentKind, EntryKind, ObjectId, Point, PointStats, Repository, Storage,
    TreeBody, TreeEntry,
};
use lifeboat_storage::LocalStorage;

use crate::common::*;

/// A tree entry at `path` of `kind`, owned by the test's user (files 0644, others 0755).
pub fn entry(path: &str, kind: EntryKind) -> TreeEntry {
    TreeEntry {
        path: path.into(),
        kind,
        mode: if kind == EntryKind::File {
            0o644
        } else {
            0o755
        },
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        mtime_ns: 0,
        size: 0,
        chunks: Vec::new(),
        target: None,
        ctime_ns: None,
        inode: None,
    }
}

/// `env`'s (local) repository, opened with the test password.
pub fn open_repo(env: &Env) -> Repository {
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(&env.repo));
    Repository::open(storage, PASSWORD.as_bytes()).unwrap()
}

/// What a hand-made point says besides its components.
pub struct Header<'a> {
    pub app: &'a str,
    /// RFC 3339; `None`: now.
    pub time: Option<&'a str>,
    pub hostname: &'a str,
    pub definition: Option<String>,
}

/// Commits a point of `components` (kind, path, tree entries): files hold `pwned`, symlinks
/// point at `link_to`.
pub fn hand_made_point(
    env: &Env,
    header: Header<'_>,
    components: Vec<(ComponentKind, String, Vec<TreeEntry>)>,
    link_to: &str,
) -> ObjectId {
    let mut repo = open_repo(env);
    let mut s = repo.begin_backup().unwrap();
    let w = s.writer();
    let mut out = Vec::new();
    for (kind, path, mut entries) in components {
        for e in entries.iter_mut() {
            match e.kind {
                EntryKind::File => {
                    e.chunks = w.store_bytes(b"pwned").unwrap();
                    e.size = 5;
                }
                EntryKind::Symlink => e.target = Some(link_to.to_string()),
                EntryKind::Dir => {}
            }
        }
        let count = |k| entries.iter().filter(|e| e.kind == k).count() as u64;
        let body = TreeBody {
            files: count(EntryKind::File),
            dirs: count(EntryKind::Dir),
            symlinks: count(EntryKind::Symlink),
            entries: w
                .store_bytes(&serde_json::to_vec(&entries).unwrap())
                .unwrap(),
        };
        out.push(Component {
            kind,
            path,
            size: 5,
            sqlite: None,
            tree: Some(body),
            postgres: None,
        });
    }
    let time = header
        .time
        .map(str::to_string)
        .unwrap_or_else(|| jiff::Timestamp::now().to_string());
    let (id, _) = s
        .commit(|_| Point {
            app: header.app.into(),
            time,
            tags: vec!["manual".into()],
            hostname: header.hostname.into(),
            lifeboat_version: "0".into(),
            components: out,
            stats: PointStats::default(),
            definition: header.definition,
        })
        .unwrap();
    id
}
