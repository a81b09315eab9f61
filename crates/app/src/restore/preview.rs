//! What a restore would do, without doing it (`restore --dry-run`, and the question before an
//! in-place restore): for each component where it goes, the size there now and after, the
//! files of a tree that are not in the point (an in-place tree restore removes them: they go
//! into the pre-restore point), whether a pre-restore point is taken, and an estimate of the
//! time. Reads the point's trees (authenticated) and looks at the targets; changes nothing.
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use lifeboat_core::{load_tree, Component, ComponentKind, Point, Result};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{target_path, RestoreTarget};
use serde::Serialize;

use super::RestorePlan;
use crate::hooks::Phase;

/// At most this many removed paths are listed (all are counted).
const LISTED: usize = 20;
/// A live tree is walked for at most this many entries (a preview must not take long).
const WALK_LIMIT: u64 = 1_000_000;

/// What a restore would do.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePreview {
    /// The point's id (hex).
    pub point: String,
    /// Its app.
    pub app: String,
    /// When it was taken (RFC 3339, UTC).
    pub time: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The host that wrote it.
    pub hostname: String,
    /// `in place`, `under DIR` or `to FILE`.
    pub target: String,
    /// Each component, in the order it is restored.
    pub components: Vec<PreviewComponent>,
    /// Whether a pre-restore point of what is replaced is taken first.
    pub safety_point: bool,
    /// The app's hooks this restore runs, in order (`stop: systemctl stop chat`).
    pub hooks: Vec<String>,
    /// The app's checks after the restore (smoke queries, health URL).
    pub checks: Vec<String>,
    /// A rough estimate of the restore's duration in seconds (speeds measured on a 2-core
    /// machine from a local repository: see `docs/BENCHMARKS.md`; a remote store adds its
    /// transfer time).
    pub estimated_seconds: u64,
}

/// One component of a [`RestorePreview`].
#[derive(Debug, Clone, Serialize)]
pub struct PreviewComponent {
    /// Its kind.
    pub kind: ComponentKind,
    /// Where it goes.
    pub path: String,
    /// Whether something there now is replaced.
    pub replaces: bool,
    /// Bytes there now (a database with its `-wal`; a tree: its files), if anything is there.
    pub size_now: Option<u64>,
    /// Bytes after the restore.
    pub size_after: u64,
    /// A tree: its files there now.
    pub files_now: Option<u64>,
    /// A tree: its files after.
    pub files_after: Option<u64>,
    /// A tree: how many files and directories there now are not in the point (removed).
    pub removed_count: u64,
    /// The first of them (relative to the tree's root).
    pub removed: Vec<String>,
}

impl RestorePlan {
    /// What [`RestorePlan::run`] would do; changes nothing.
    pub fn preview(&mut self) -> Result<RestorePreview> {
        let target = match (&self.opts.target, self.replaced.is_empty()) {
            (RestoreTarget::Into(dir), _) => format!("under {}", dir.display()),
            (RestoreTarget::InPlace, true) if self.point.components.len() == 1 => {
                format!("to {}", self.point.components[0].path)
            }
            (RestoreTarget::InPlace, _) => "in place".to_string(),
        };
        let mut components = Vec::new();
        let mut seconds = 0.0;
        let session = self.repo.begin_restore()?;
        let mut reader = session.reader();
        for c in &self.point.components {
            let dest = target_path(&self.opts.target, &c.path);
            let mut p = PreviewComponent {
                kind: c.kind,
                path: if c.kind == ComponentKind::Postgres {
                    c.path.clone()
                } else {
                    dest.display().to_string()
                },
                replaces: self.replaced.iter().any(|r| r.path == c.path),
                size_now: None,
                size_after: c.size,
                files_now: None,
                files_after: c
                    .tree
                    .as_ref()
                    .filter(|_| c.kind == ComponentKind::Files)
                    .map(|t| t.files),
                removed_count: 0,
                removed: Vec::new(),
            };
            match c.kind {
                ComponentKind::Postgres => {}
                ComponentKind::Sqlite => {
                    p.size_now = file_size(&dest).map(|n| {
                        n + file_size(&PathBuf::from(format!("{}-wal", dest.display())))
                            .unwrap_or(0)
                    });
                }
                _ if std::fs::symlink_metadata(&dest).is_ok_and(|m| m.is_dir()) => {
                    let keep = nested_paths(&self.to_restore, c);
                    let entries = match &c.tree {
                        Some(t) => load_tree(&mut reader, t)?,
                        None => Vec::new(),
                    };
                    let in_point: HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
                    let live = walk(&dest);
                    p.size_now = Some(live.bytes);
                    p.files_now = Some(live.files);
                    for rel in &live.paths {
                        let gone = !in_point.contains(rel.as_str())
                            && !keep.iter().any(|k| Path::new(rel).starts_with(k));
                        if gone {
                            p.removed_count += 1;
                            if p.removed.len() < LISTED {
                                p.removed.push(rel.clone());
                            }
                        }
                    }
                }
                _ => p.size_now = file_size(&dest),
            }
            p.replaces |= p.size_now.is_some();
            seconds += estimate(c, self.opts.verify) + p.size_now.unwrap_or(0) as f64 / SAVE_RATE;
            components.push(p);
        }
        let in_place = !self.replaced.is_empty();
        let hooks = [Phase::Stop, Phase::Start]
            .into_iter()
            .filter(|_| in_place)
            .filter_map(|ph| {
                ph.command(&self.hooks)
                    .map(|c| format!("{}: {}", ph.as_str(), c.display()))
            })
            .collect();
        let mut checks: Vec<String> = self
            .checks
            .sql
            .iter()
            .filter(|(db, _)| {
                self.point
                    .components
                    .iter()
                    .any(|c| c.kind == ComponentKind::Sqlite && Path::new(&c.path) == db)
            })
            .flat_map(|(db, qs)| qs.iter().map(move |q| format!("{}: {q}", db.display())))
            .collect();
        if in_place {
            if let Some((url, _)) = &self.checks.health {
                checks.push(format!("health: {}", url.as_str()));
            }
        }
        let p = &self.whole;
        Ok(RestorePreview {
            point: self.id.to_hex(),
            app: p.app.clone(),
            time: p.time.clone(),
            tags: p.tags.clone(),
            hostname: p.hostname.clone(),
            target,
            components,
            safety_point: self.safety_point && in_place,
            hooks,
            checks,
            estimated_seconds: seconds.ceil().max(1.0) as u64,
        })
    }
}

/// Paths (relative to `c`'s root) of `point`'s other components inside `c`: its restore keeps
/// them.
fn nested_paths(point: &Point, c: &Component) -> Vec<PathBuf> {
    point
        .components
        .iter()
        .filter(|o| o.path != c.path)
        .filter_map(|o| Path::new(&o.path).strip_prefix(&c.path).ok())
        .map(Path::to_path_buf)
        .collect()
}

/// Bytes per second of a pre-restore point of what is there now (mostly deduplicated).
const SAVE_RATE: f64 = 300e6;

/// Seconds to restore `c`, from speeds measured on the 2-core bench machine (local
/// repository): pages ~300 MB/s, `integrity_check` ~10 s/GiB, `quick_check` ~1.5 s/GiB,
/// files ~200 MB/s plus a little per file, `pg_restore` ~40 MB/s of dump.
fn estimate(c: &Component, verify: Verify) -> f64 {
    let gib = c.size as f64 / (1u64 << 30) as f64;
    match c.kind {
        ComponentKind::Sqlite => {
            c.size as f64 / 300e6
                + gib
                    * match verify {
                        Verify::Full => 10.0,
                        Verify::Quick => 1.5,
                    }
        }
        ComponentKind::Postgres => c.size as f64 / 40e6,
        _ => c.size as f64 / 200e6 + c.tree.as_ref().map_or(0.0, |t| t.files as f64 * 0.0005),
    }
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::symlink_metadata(p)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

#[derive(Default)]
struct Live {
    files: u64,
    bytes: u64,
    paths: Vec<String>,
}

/// Every entry under `root` (relative paths), up to `WALK_LIMIT`: walked through directory fds
/// with `O_NOFOLLOW` (the app's user may swap a directory for a symlink to one only root can
/// list; it is skipped, never listed).
fn walk(root: &Path) -> Live {
    use rustix::fs::{AtFlags, FileType, Mode, OFlags};
    let mut live = Live::default();
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(fd) = rustix::fs::openat(rustix::fs::CWD, root, flags, Mode::empty()) else {
        return live;
    };
    let mut todo = vec![(fd, String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if live.paths.len() as u64 >= WALK_LIMIT {
                return live;
            }
            let name = e.file_name();
            if matches!(name.to_bytes(), b"." | b"..") {
                continue;
            }
            let shown = String::from_utf8_lossy(name.to_bytes()).into_owned();
            let r = if rel.is_empty() {
                shown
            } else {
                format!("{rel}/{shown}")
            };
            let Ok(st) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    if let Ok(sub) = rustix::fs::openat(&dir, name, flags, Mode::empty()) {
                        todo.push((sub, r.clone()));
                    }
                }
                FileType::RegularFile => {
                    live.files += 1;
                    live.bytes += st.st_size as u64;
                }
                _ => {}
            }
            live.paths.push(r);
        }
    }
    live.paths.sort();
    live
}
