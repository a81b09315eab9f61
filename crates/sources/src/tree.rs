//! File trees (uploads), single secret files and single config files: capture and restore.
//!
//! Files are cut by the keyed content-defined chunker and deduplicated; a file whose size and
//! mtime match the previous point is not read again (its chunks are reused, as restic does).
//! Restore writes each file to a temporary name (created 0600, so a secret is never readable
//! by others, not even briefly), sets owner, mode and mtime, then renames it into place.
//! Directory modes and times are applied last, deepest first. All of it goes through
//! directory fds walked down from the root without following a symlink (`crate::dirfd`).
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::BufWriter;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;
use lifeboat_core::{
    load_tree, ChunkReader, ChunkWriter, Component, ComponentKind, EntryKind, Error, ErrorKind,
    Progress, Result, TreeBody, TreeEntry,
};

use crate::app::SourceSpec;
use crate::dirfd::{self, DirWalk, SafeDir};
use crate::source::{
    no_body, require_absolute, target_path, Capture, RestoreContext, RestoredComponent, Source,
    SourceKind,
};
use crate::util::temp_name;
use rustix::fs::FileType;

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

/// Sets the recorded owner on the open file or directory `fd`; a warning (naming `shown`, the
/// final path) says when that is not possible.
fn set_owner(fd: BorrowedFd<'_>, shown: &Path, e: &TreeEntry, report: &mut TreeRestoreReport) {
    let Ok(st) = dirfd::fstat(fd) else { return };
    if st.st_uid == e.uid && st.st_gid == e.gid {
        return;
    }
    if let Err(err) = dirfd::fchown(fd, e.uid, e.gid) {
        owner_warning(err, shown, e, report);
    }
}

fn owner_warning(err: std::io::Error, shown: &Path, e: &TreeEntry, report: &mut TreeRestoreReport) {
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

/// Restores a tree so that its root lands at `target` (a directory for `Files`, the file
/// itself for `Secret`/`Config`).
///
/// Everything goes through directory fds (`crate::dirfd`): `target`'s parent is opened
/// normally, and no symlink is followed at or below `target`; a symlink where the point has a
/// directory or file is replaced, never followed.
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
    // Opened when first needed: a single file (`Secret`, `Config`) has no root directory.
    let mut walk: Option<DirWalk> = None;
    for e in &entries {
        let path = if e.path.is_empty() {
            target.to_path_buf()
        } else {
            target.join(&e.path)
        };
        if e.path
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
            && !e.path.is_empty()
            || e.path.starts_with('/')
        {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("tree entry {:?} escapes its root", e.path),
            ));
        }
        if e.kind == EntryKind::Dir {
            let comps: Vec<&str> = if e.path.is_empty() {
                Vec::new()
            } else {
                e.path.split('/').collect()
            };
            tree_walk(&mut walk, target)?.dir(&comps, true)?;
            dirs.push((path, e));
            continue;
        }
        // A file or symlink: its directory, and its name in it.
        let trusted;
        let (dir, name) = if e.path.is_empty() {
            let (d, n) = SafeDir::parent_of(target)?;
            trusted = d;
            (&trusted, n)
        } else {
            let mut comps: Vec<&str> = e.path.split('/').collect();
            let name = OsString::from(comps.pop().unwrap_or_default());
            (tree_walk(&mut walk, target)?.dir(&comps, true)?, name)
        };
        match e.kind {
            EntryKind::Symlink => {
                if dir.stat(&name).is_some() {
                    dir.remove_file(&name)
                        .map_err(|err| Error::io(path.display(), err))?;
                }
                let t = e.target.as_deref().unwrap_or_default();
                dir.symlink(t, &name)
                    .map_err(|err| Error::io(path.display(), err))?;
                if dir
                    .stat(&name)
                    .is_some_and(|st| (st.st_uid, st.st_gid) != (e.uid, e.gid))
                {
                    if let Err(err) = dir.chown_symlink(&name, e.uid, e.gid) {
                        owner_warning(err, &path, e, &mut report);
                    }
                }
            }
            EntryKind::File => {
                restore_file(reader, e, dir, &name, &path, &mut report)?;
                progress.inc(e.size);
            }
            EntryKind::Dir => unreachable!("handled above"),
        }
    }
    // Directory owners, modes and times last, deepest first, each on its own fd (reached again
    // from the root without following a symlink).
    for (path, e) in dirs.iter().rev() {
        let comps: Vec<&str> = if e.path.is_empty() {
            Vec::new()
        } else {
            e.path.split('/').collect()
        };
        let d = tree_walk(&mut walk, target)?.dir(&comps, false)?;
        set_owner(d.fd(), path, e, &mut report);
        dirfd::fchmod(d.fd(), e.mode).map_err(|err| Error::io(path.display(), err))?;
        let _ = dirfd::set_mtime(d.fd(), e.mtime_ns);
    }
    progress.finish();
    Ok(report)
}

/// The walk from the tree's root directory `target`, opened (created) the first time.
fn tree_walk<'a>(walk: &'a mut Option<DirWalk>, target: &Path) -> Result<&'a mut DirWalk> {
    if walk.is_none() {
        *walk = Some(DirWalk::new(SafeDir::open_root(target)?));
    }
    Ok(walk.as_mut().expect("just set"))
}

/// Writes one file to a temporary name in `dir` (created exclusively, 0600, never following a
/// symlink), sets its owner, mode and mtime on the open file, then renames it over `name`.
fn restore_file(
    reader: &mut ChunkReader<'_>,
    e: &TreeEntry,
    dir: &SafeDir,
    name: &OsStr,
    path: &Path,
    report: &mut TreeRestoreReport,
) -> Result<()> {
    if dir
        .stat(name)
        .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
    {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{} is a directory, the point has a file there",
                path.display()
            ),
        ));
    }
    let tmp_name = temp_name(name);
    let tmp = dir.join(&tmp_name);
    let res = (|| -> Result<()> {
        let f = dir
            .create_file(&tmp_name, 0o600)
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
        dirfd::set_mtime(&f, e.mtime_ns).map_err(|err| Error::io(tmp.display(), err))?;
        set_owner(f.as_fd(), path, e, report);
        // chmod after chown: chown clears setuid/setgid bits.
        dirfd::fchmod(&f, e.mode).map_err(|err| Error::io(tmp.display(), err))?;
        dir.rename_to(&tmp_name, dir, name)
            .map_err(|err| Error::io(path.display(), err))?;
        // What was renamed is what was written, unless someone swapped the temporary name
        // (they control the directory): then say so rather than report the file restored.
        let ours = dirfd::fstat(&f).map_err(|err| Error::io(tmp.display(), err))?;
        if dir
            .stat(name)
            .is_none_or(|st| (st.st_dev, st.st_ino) != (ours.st_dev, ours.st_ino))
        {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "{}: its temporary file was replaced by another process during the restore",
                    path.display()
                ),
            ));
        }
        Ok(())
    })();
    if let Err(err) = res {
        let _ = dir.remove_file(&tmp_name);
        return Err(err);
    }
    dir.sync()?;
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
