//! File trees (uploads), single secret files and single config files: capture and restore.
//!
//! Files are cut by the keyed content-defined chunker and deduplicated; a file whose size and
//! mtime match the previous point is not read again (its chunks are reused, as restic does).
//! Restore writes each file to a temporary name (created 0600, so a secret is never readable
//! by others, not even briefly), sets owner, mode and mtime, then renames it into place.
//! Directory modes and times are applied last, deepest first.
use std::collections::HashMap;
use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::BufWriter;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use globset::GlobSet;
use lifeboat_core::{
    load_tree, ChunkReader, ChunkWriter, Component, ComponentKind, EntryKind, Error, ErrorKind,
    Progress, Result, TreeBody, TreeEntry,
};

use crate::app::SourceSpec;
use crate::source::{
    no_body, require_absolute, target_path, Capture, RestoreContext, RestoredComponent, Source,
    SourceKind,
};
use crate::util::{fsync_dir, temp_path};

fn src_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Source, format!("{}: {msg}", path.display()))
}

fn mtime_ns(md: &fs::Metadata) -> i64 {
    md.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec())
}

struct Walk<'a, 'w> {
    writer: &'a mut ChunkWriter<'w>,
    excludes: &'a GlobSet,
    previous: HashMap<String, TreeEntry>,
    entries: Vec<TreeEntry>,
    bytes_read: u64,
    progress: &'a dyn Progress,
}

impl Walk<'_, '_> {
    fn visit(&mut self, abs: &Path, rel: String) -> Result<()> {
        let md = fs::symlink_metadata(abs)
            .map_err(|e| Error::io(abs.display(), e).with_kind(ErrorKind::Source))?;
        let ft = md.file_type();
        let mut entry = TreeEntry {
            path: rel.clone(),
            kind: EntryKind::File,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime_ns: mtime_ns(&md),
            size: 0,
            chunks: Vec::new(),
            target: None,
            ctime_ns: None,
            inode: None,
        };
        if ft.is_dir() {
            entry.kind = EntryKind::Dir;
            self.entries.push(entry);
            let mut children: Vec<_> = fs::read_dir(abs)
                .map_err(|e| Error::io(abs.display(), e).with_kind(ErrorKind::Source))?
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io(abs.display(), e).with_kind(ErrorKind::Source))?;
            children.sort_by_key(|c| c.file_name());
            for c in children {
                let name = c.file_name();
                let name = name.to_str().ok_or_else(|| {
                    src_err(
                        &c.path(),
                        "file name is not UTF-8; lifeboat 0.1 cannot store it yet",
                    )
                })?;
                let child_rel = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                if self.excludes.is_match(&child_rel) || self.excludes.is_match(name) {
                    tracing::debug!(path = %child_rel, "excluded");
                    continue;
                }
                self.visit(&c.path(), child_rel)?;
            }
        } else if ft.is_symlink() {
            entry.kind = EntryKind::Symlink;
            let t = fs::read_link(abs)
                .map_err(|e| Error::io(abs.display(), e).with_kind(ErrorKind::Source))?;
            entry.target = Some(
                t.to_str()
                    .ok_or_else(|| src_err(abs, "symlink target is not UTF-8"))?
                    .to_string(),
            );
            self.entries.push(entry);
        } else if ft.is_file() {
            entry.size = md.len();
            entry.ctime_ns = Some(
                md.ctime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(md.ctime_nsec()),
            );
            entry.inode = Some(md.ino());
            // Same size, mtime, ctime and inode: unchanged (ctime catches `cp -p`/`rsync -t`
            // replacements that keep the mtime). Anything else is read again.
            let reuse = self.previous.get(&rel).filter(|p| {
                p.kind == EntryKind::File
                    && p.size == entry.size
                    && p.mtime_ns == entry.mtime_ns
                    && p.ctime_ns == entry.ctime_ns
                    && p.inode == entry.inode
                    && p.chunks.iter().all(|c| self.writer.has(c))
            });
            if let Some(p) = reuse {
                entry.chunks = p.chunks.clone();
            } else {
                let f = File::open(abs)
                    .map_err(|e| Error::io(abs.display(), e).with_kind(ErrorKind::Source))?;
                let (chunks, n) = self
                    .writer
                    .store_stream(f)
                    .map_err(|e| e.context(abs.display()))?;
                if n != entry.size {
                    tracing::warn!(path = %abs.display(), "file changed size while it was read ({} -> {n} bytes)", entry.size);
                    entry.size = n;
                }
                self.bytes_read += n;
                entry.chunks = chunks;
            }
            self.progress.inc(entry.size);
            self.entries.push(entry);
        } else {
            tracing::warn!(path = %abs.display(), "skipping a socket, fifo or device file");
        }
        Ok(())
    }
}

/// Captures a directory (`Files`) or a single file (`Secret`, `Config`) at absolute `root`.
pub fn capture(
    writer: &mut ChunkWriter<'_>,
    reader: &mut ChunkReader<'_>,
    kind: ComponentKind,
    root: &Path,
    excludes: &GlobSet,
    previous: Option<&TreeBody>,
    progress: &dyn Progress,
) -> Result<Component> {
    let md = fs::symlink_metadata(root)
        .map_err(|e| Error::io(root.display(), e).with_kind(ErrorKind::Source))?;
    match kind {
        ComponentKind::Files if !md.is_dir() => {
            return Err(src_err(root, "is not a directory")
                .with_hint("list single files under `secrets` or `config`"));
        }
        ComponentKind::Secret | ComponentKind::Config if !md.is_file() => {
            return Err(src_err(
                root,
                format!(
                    "is not a regular file (a {} must be one file)",
                    kind.as_str()
                ),
            )
            .with_hint("list directories under `files`"));
        }
        ComponentKind::Sqlite => return Err(src_err(root, "internal: sqlite is not a tree")),
        _ => {}
    }
    let previous = match previous {
        Some(p) => load_tree(reader, p)
            .map(|v| v.into_iter().map(|e| (e.path.clone(), e)).collect())
            .unwrap_or_else(|e| {
                tracing::warn!("previous tree unreadable, reading every file: {e}");
                HashMap::new()
            }),
        None => HashMap::new(),
    };
    progress.start(kind.as_str(), 0);
    let mut walk = Walk {
        writer,
        excludes,
        previous,
        entries: Vec::new(),
        bytes_read: 0,
        progress,
    };
    walk.visit(root, String::new())?;
    progress.finish();
    let entries = walk.entries;
    let size = entries.iter().map(|e| e.size).sum();
    let count = |k: EntryKind| entries.iter().filter(|e| e.kind == k).count() as u64;
    let (files, dirs, symlinks) = (
        count(EntryKind::File),
        count(EntryKind::Dir),
        count(EntryKind::Symlink),
    );
    let encoded = serde_json::to_vec(&entries).expect("tree serialises");
    let ids = walk.writer.store_bytes(&encoded)?;
    Ok(Component {
        kind,
        path: root.display().to_string(),
        size,
        sqlite: None,
        postgres: None,
        tree: Some(TreeBody {
            entries: ids,
            files,
            dirs,
            symlinks,
        }),
    })
}

/// What a tree restore did.
#[derive(Debug, Default, Clone)]
pub struct TreeRestoreReport {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Things that could not be restored exactly (e.g. owner, when not running as root).
    pub warnings: Vec<String>,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sets the recorded owner on `path`; a warning (naming `shown`, the final path) says when
/// that is not possible.
fn set_owner(path: &Path, shown: &Path, e: &TreeEntry, report: &mut TreeRestoreReport) {
    let md = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => return,
    };
    if md.uid() == e.uid && md.gid() == e.gid {
        return;
    }
    if let Err(err) = std::os::unix::fs::lchown(path, Some(e.uid), Some(e.gid)) {
        let why = if is_root() {
            err.to_string()
        } else {
            "run the restore as root to set owners".into()
        };
        report.warnings.push(format!(
            "{}: owner {}:{} not set ({why})",
            shown.display(),
            e.uid,
            e.gid
        ));
    }
}

fn time_of(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Restores a tree so that its root lands at `target` (a directory for `Files`, the file
/// itself for `Secret`/`Config`).
pub fn restore(
    reader: &mut ChunkReader<'_>,
    body: &TreeBody,
    target: &Path,
    progress: &dyn Progress,
) -> Result<TreeRestoreReport> {
    let entries = load_tree(reader, body)?;
    let total: u64 = entries.iter().map(|e| e.size).sum();
    progress.start("restoring files", total);
    let mut report = TreeRestoreReport::default();
    let mut dirs = Vec::new();
    for e in &entries {
        let path = if e.path.is_empty() {
            target.to_path_buf()
        } else {
            target.join(&e.path)
        };
        if e.path.split('/').any(|c| c == ".." || c == ".") || e.path.starts_with('/') {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("tree entry {:?} escapes its root", e.path),
            ));
        }
        match e.kind {
            EntryKind::Dir => {
                // A symlink where the point has a directory is replaced, never followed:
                // otherwise files would be written wherever the link points.
                if !e.path.is_empty() && fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                    fs::remove_file(&path).map_err(|err| Error::io(path.display(), err))?;
                }
                fs::create_dir_all(&path).map_err(|err| Error::io(path.display(), err))?;
                dirs.push((path, e));
            }
            EntryKind::Symlink => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(|err| Error::io(parent.display(), err))?;
                }
                if fs::symlink_metadata(&path).is_ok() {
                    fs::remove_file(&path).map_err(|err| Error::io(path.display(), err))?;
                }
                let t = e.target.as_deref().unwrap_or_default();
                std::os::unix::fs::symlink(t, &path)
                    .map_err(|err| Error::io(path.display(), err))?;
                set_owner(&path, &path, e, &mut report);
            }
            EntryKind::File => {
                restore_file(reader, e, &path, &mut report)?;
                progress.inc(e.size);
            }
        }
    }
    for (path, e) in dirs.iter().rev() {
        set_owner(path, path, e, &mut report);
        fs::set_permissions(path, fs::Permissions::from_mode(e.mode))
            .map_err(|err| Error::io(path.display(), err))?;
        if let Ok(d) = File::open(path) {
            let _ = d.set_times(FileTimes::new().set_modified(time_of(e.mtime_ns)));
        }
    }
    progress.finish();
    Ok(report)
}

fn restore_file(
    reader: &mut ChunkReader<'_>,
    e: &TreeEntry,
    path: &Path,
    report: &mut TreeRestoreReport,
) -> Result<()> {
    let dir = path.parent().ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            format!("{} has no parent", path.display()),
        )
    })?;
    fs::create_dir_all(dir).map_err(|err| Error::io(dir.display(), err))?;
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} is a directory, the point has a file there",
                path.display()
            ),
        ));
    }
    let tmp = temp_path(path);
    let res = (|| -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|err| Error::io(tmp.display(), err))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let n = reader.read_stream(&e.chunks, &mut w)?;
        if n != e.size {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}: restored {n} bytes, the point recorded {}",
                    path.display(),
                    e.size
                ),
            ));
        }
        let f = w
            .into_inner()
            .map_err(|err| Error::io(tmp.display(), err.into_error()))?;
        f.sync_all().map_err(|err| Error::io(tmp.display(), err))?;
        f.set_times(FileTimes::new().set_modified(time_of(e.mtime_ns)))
            .map_err(|err| Error::io(tmp.display(), err))?;
        set_owner(&tmp, path, e, report);
        // chmod after chown: chown clears setuid/setgid bits.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(e.mode))
            .map_err(|err| Error::io(tmp.display(), err))?;
        fs::rename(&tmp, path).map_err(|err| Error::io(path.display(), err))?;
        Ok(())
    })();
    if let Err(err) = res {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    fsync_dir(dir)?;
    report.files += 1;
    report.bytes += e.size;
    Ok(())
}

// ---- The `Source` and `SourceKind` implementations ----------------------------------------

/// A configured directory tree (`Files`) or single file (`Secret`, `Config`).
#[derive(Debug, Clone)]
pub struct TreeSource {
    kind: ComponentKind,
    path: PathBuf,
}

impl TreeSource {
    /// The tree or file of `kind` at `path` (checked to be absolute by [`Source::validate`]).
    pub fn new(kind: ComponentKind, path: PathBuf) -> TreeSource {
        TreeSource { kind, path }
    }
}

impl Source for TreeSource {
    fn kind(&self) -> ComponentKind {
        self.kind
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn validate(&self) -> Result<()> {
        require_absolute(&self.path)
    }

    fn capture(
        &self,
        cx: &mut Capture<'_, '_>,
        previous: Option<&Component>,
        progress: &dyn Progress,
    ) -> Result<Component> {
        capture(
            cx.writer,
            cx.reader,
            self.kind,
            &self.path,
            cx.excludes,
            previous.and_then(|c| c.tree.as_ref()),
            progress,
        )
    }
}

/// Restores file trees and single files: [`ComponentKind::Files`], [`ComponentKind::Secret`]
/// and [`ComponentKind::Config`] components.
pub struct TreeKind;

impl SourceKind for TreeKind {
    fn kinds(&self) -> &'static [ComponentKind] {
        &[
            ComponentKind::Files,
            ComponentKind::Secret,
            ComponentKind::Config,
        ]
    }

    fn at_path(&self, kind: ComponentKind, path: PathBuf) -> Option<Box<dyn Source>> {
        Some(Box::new(TreeSource::new(kind, path)))
    }

    fn current_state(&self, c: &Component, _cx: &RestoreContext<'_>) -> Result<Vec<SourceSpec>> {
        let p = Path::new(&c.path);
        let Ok(md) = fs::metadata(p) else {
            return Ok(Vec::new());
        };
        let kind = if md.is_dir() {
            ComponentKind::Files
        } else if c.kind == ComponentKind::Secret {
            ComponentKind::Secret
        } else {
            ComponentKind::Config
        };
        Ok(vec![SourceSpec::path(kind, p.to_path_buf())])
    }

    fn restore(
        &self,
        c: &Component,
        cx: &RestoreContext<'_>,
        reader: &mut ChunkReader<'_>,
        progress: &dyn Progress,
    ) -> Result<RestoredComponent> {
        let body = c.tree.as_ref().ok_or_else(|| no_body(c))?;
        let dest = target_path(&cx.options.target, &c.path);
        let TreeRestoreReport {
            files,
            bytes,
            warnings,
        } = restore(reader, body, &dest, progress)?;
        Ok(RestoredComponent {
            kind: c.kind,
            path: dest.display().to_string(),
            bytes,
            verified: format!("{files} files authenticated chunk by chunk, sizes match"),
            warnings,
        })
    }
}
