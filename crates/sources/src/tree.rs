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
    no_body, require_absolute, Capture, RestoreContext, RestoredComponent, Source, SourceKind,
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
    /// Files whose setuid/setgid bits were cleared.
    pub setid_cleared: u64,
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

/// How a tree is restored.
pub(crate) struct TreeRestore<'a> {
    /// The directory that holds the tree's root (opened safely: `RestoreContext::parent_dir`).
    pub parent: &'a SafeDir,
    /// The root's name in `parent`.
    pub name: &'a OsStr,
    /// Paths (relative to the root) of other components that lie inside this tree: what is
    /// there now is kept, moved into the new tree (with a database's side files).
    pub keep: Vec<(PathBuf, bool)>,
    /// Restore setuid/setgid bits (`RestoreOptions::keep_setid`).
    pub keep_setid: bool,
}

/// Restores a tree: a directory (`Files`) is built complete in a private staging directory
/// beside its target and swapped in by one rename, so the result equals the point exactly
/// (files absent from the point go: they are in the pre-restore point) and a failure leaves
/// the old tree as it was; a single file (`Secret`, `Config`) is written to a temporary name
/// and renamed over the target.
///
/// Everything goes through directory fds (`crate::dirfd`); no symlink is followed at or below
/// the target, and a symlink where the point has a directory or file is replaced.
pub(crate) fn restore(
    reader: &mut ChunkReader<'_>,
    body: &TreeBody,
    how: &TreeRestore<'_>,
    progress: &dyn Progress,
) -> Result<TreeRestoreReport> {
    let target = how.parent.join(how.name);
    let entries = load_tree(reader, body)?;
    for e in &entries {
        if let Some(why) = lifeboat_core::entry_path_problem(&e.path) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("tree entry {:?} {why}", e.path),
            ));
        }
    }
    let total: u64 = entries.iter().map(|e| e.size).sum();
    progress.start("restoring files", total);
    let mut report = TreeRestoreReport::default();
    match entries.first() {
        Some(root) if root.path.is_empty() && root.kind == EntryKind::Dir => {
            restore_staged(reader, &entries, how, &target, &mut report, progress)?;
        }
        _ => {
            // A single file: nothing else may be in the point.
            if entries.len() != 1 || !entries[0].path.is_empty() {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "{}: a single-file tree with {} entries",
                        target.display(),
                        entries.len()
                    ),
                ));
            }
            let e = &entries[0];
            let mut w = Writing {
                reader,
                report: &mut report,
                keep_setid: how.keep_setid,
                sync_each: true,
            };
            match e.kind {
                EntryKind::File => w.file(e, how.parent, how.name, &target)?,
                EntryKind::Symlink => w.symlink(e, how.parent, how.name, &target)?,
                EntryKind::Dir => unreachable!("matched above"),
            }
            progress.inc(e.size);
        }
    }
    progress.finish();
    if report.setid_cleared > 0 {
        report.warnings.push(format!(
            "{}: setuid/setgid bits of {} files not restored (they may come from another key holder; --keep-setid restores them)",
            target.display(),
            report.setid_cleared
        ));
    }
    Ok(report)
}

/// Builds the tree in a private directory beside `target`, then swaps it in.
fn restore_staged(
    reader: &mut ChunkReader<'_>,
    entries: &[TreeEntry],
    how: &TreeRestore<'_>,
    target: &Path,
    report: &mut TreeRestoreReport,
    progress: &dyn Progress,
) -> Result<()> {
    let parent = how.parent;
    let stage_name = temp_name(how.name);
    // 0700 and root's until the very end (the root's recorded mode and owner are set last),
    // so no other user can reach into it while it is built.
    let stage = parent.private_dir(&stage_name)?;
    let ours = stage.fstat()?;
    let is_ours = |name: &OsStr| {
        parent
            .stat(name)
            .is_some_and(|st| (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino))
    };
    let built = (|| -> Result<()> {
        let mut walk = DirWalk::new(stage.try_clone()?);
        let mut w = Writing {
            reader,
            report,
            keep_setid: how.keep_setid,
            sync_each: false,
        };
        for e in entries.iter().skip(1) {
            let shown = target.join(&e.path);
            let mut comps: Vec<&str> = e.path.split('/').collect();
            if e.kind == EntryKind::Dir {
                walk.dir(&comps, true)?;
                continue;
            }
            let name = OsString::from(comps.pop().unwrap_or_default());
            let dir = walk.dir(&comps, true)?;
            match e.kind {
                EntryKind::File => w.file(e, dir, &name, &shown)?,
                EntryKind::Symlink => w.symlink(e, dir, &name, &shown)?,
                EntryKind::Dir => unreachable!("handled above"),
            }
            progress.inc(e.size);
        }
        keep_nested(parent, how, &stage, target)?;
        // Directory owners, modes and times last, deepest first (the root last of all), each
        // on its own fd.
        for e in entries.iter().rev().filter(|e| e.kind == EntryKind::Dir) {
            let comps: Vec<&str> = if e.path.is_empty() {
                Vec::new()
            } else {
                e.path.split('/').collect()
            };
            let d = walk.dir(&comps, false)?;
            let shown = target.join(&e.path);
            set_owner(d.fd(), &shown, e, w.report);
            // setuid means nothing on a directory; setgid (inherit the group) is kept.
            dirfd::fchmod(d.fd(), e.mode & !0o4000)
                .map_err(|err| Error::io(shown.display(), err))?;
            let _ = dirfd::set_mtime(d.fd(), e.mtime_ns);
        }
        // One sync for every file and directory written, before the swap makes them live.
        stage.sync_filesystem()
    })();
    if let Err(e) = built {
        if is_ours(&stage_name) {
            let _ = parent.remove_tree(&stage_name);
        }
        return Err(e);
    }
    // The swap: one rename; the old tree (if any) ends up under the staging name.
    let swapped = if !is_ours(&stage_name) {
        Err(std::io::Error::other(
            "the staging directory was moved by another process",
        ))
    } else if parent.stat(how.name).is_none() {
        parent
            .rename_noreplace(&stage_name, how.name)
            .or_else(|_| parent.exchange(&stage_name, how.name, &temp_name(how.name)))
    } else {
        parent.exchange(&stage_name, how.name, &temp_name(how.name))
    };
    if let Err(err) = swapped {
        if is_ours(&stage_name) {
            let _ = parent.remove_tree(&stage_name);
        }
        return Err(Error::io(
            format!("swap the restored tree in at {}", target.display()),
            err,
        ));
    }
    parent.sync()?;
    if !is_ours(how.name) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{}: replaced by another process while the restored tree was swapped in",
                target.display()
            ),
        ));
    }
    // The old tree, now under the staging name (saved in the pre-restore point).
    if let Err(err) = parent.remove_tree(&stage_name) {
        report.warnings.push(format!(
            "{}: the replaced tree could not be removed completely ({err}); remove it by hand",
            parent.join(&stage_name).display()
        ));
    }
    Ok(())
}

/// Moves what lies at other components' paths inside the old tree into the new one (a
/// database or a secret configured inside an uploads directory is its own component: the
/// tree's restore does not replace it).
fn keep_nested(
    parent: &SafeDir,
    how: &TreeRestore<'_>,
    stage: &SafeDir,
    target: &Path,
) -> Result<()> {
    if how.keep.is_empty() {
        return Ok(());
    }
    // The old tree, if there is one; never followed if a symlink.
    let Ok(old) = parent.child_dir(how.name, false, false) else {
        return Ok(());
    };
    for (rel, with_sidecars) in &how.keep {
        let (Some(dir), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        let Ok(from) = old.open_beneath(dir, false) else {
            continue;
        };
        let mut names = vec![name.to_os_string()];
        if *with_sidecars {
            for s in ["-wal", "-shm", "-journal"] {
                let mut n = name.to_os_string();
                n.push(s);
                names.push(n);
            }
        }
        let to = stage.open_beneath(dir, true)?;
        for n in names {
            if from.stat(&n).is_none() {
                continue;
            }
            let shown = target.join(dir).join(&n);
            to.remove_tree(&n)
                .map_err(|e| Error::io(shown.display(), e))?;
            from.rename_to(&n, &to, &n)
                .map_err(|e| Error::io(format!("keep {}", shown.display()), e))?;
        }
    }
    Ok(())
}

/// Writes files and symlinks of a tree.
struct Writing<'a, 'r> {
    reader: &'a mut ChunkReader<'r>,
    report: &'a mut TreeRestoreReport,
    keep_setid: bool,
    /// fsync each file and its directory (a single file); a staged tree syncs once instead.
    sync_each: bool,
}

impl Writing<'_, '_> {
    /// A symlink `name` in `dir` (whatever is there replaced), owned as recorded.
    fn symlink(&mut self, e: &TreeEntry, dir: &SafeDir, name: &OsStr, shown: &Path) -> Result<()> {
        if dir.stat(name).is_some() {
            dir.remove_tree(name)
                .map_err(|err| Error::io(shown.display(), err))?;
        }
        let t = e.target.as_deref().unwrap_or_default();
        dir.symlink(t, name)
            .map_err(|err| Error::io(shown.display(), err))?;
        if dir
            .stat(name)
            .is_some_and(|st| (st.st_uid, st.st_gid) != (e.uid, e.gid))
        {
            if let Err(err) = dir.chown_symlink(name, e.uid, e.gid) {
                owner_warning(err, shown, e, self.report);
            }
        }
        Ok(())
    }

    /// Writes one file to a temporary name in `dir` (created exclusively, 0600, never
    /// following a symlink), sets its owner, mode and mtime on the open file, then renames it
    /// over `name`.
    fn file(&mut self, e: &TreeEntry, dir: &SafeDir, name: &OsStr, path: &Path) -> Result<()> {
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
        let mode = if self.keep_setid {
            e.mode
        } else {
            e.mode & !0o6000
        };
        if mode != e.mode {
            self.report.setid_cleared += 1;
        }
        let tmp_name = temp_name(name);
        let tmp = dir.join(&tmp_name);
        let res = (|| -> Result<()> {
            let f = dir
                .create_file(&tmp_name, 0o600)
                .map_err(|err| Error::io(tmp.display(), err))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let n = self.reader.read_stream(&e.chunks, &mut w)?;
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
            if self.sync_each {
                f.sync_all().map_err(|err| Error::io(tmp.display(), err))?;
            }
            dirfd::set_mtime(&f, e.mtime_ns).map_err(|err| Error::io(tmp.display(), err))?;
            set_owner(f.as_fd(), path, e, self.report);
            // chmod after chown: chown clears setuid/setgid bits.
            dirfd::fchmod(&f, mode).map_err(|err| Error::io(tmp.display(), err))?;
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
        if self.sync_each {
            dir.sync()?;
        }
        self.report.files += 1;
        self.report.bytes += e.size;
        Ok(())
    }
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
        let dest = cx.dest(c);
        let (parent, name) = cx.parent_dir(c)?;
        // Other components inside this tree (by their paths in the point).
        let keep = cx
            .components
            .iter()
            .filter(|o| o.path != c.path)
            .filter_map(|o| {
                let rel = Path::new(&o.path).strip_prefix(&c.path).ok()?;
                Some((rel.to_path_buf(), o.kind == ComponentKind::Sqlite))
            })
            .collect();
        let how = TreeRestore {
            parent: &parent,
            name: &name,
            keep,
            keep_setid: cx.options.keep_setid,
        };
        let TreeRestoreReport {
            files,
            bytes,
            warnings,
            ..
        } = restore(reader, body, &how, progress)?;
        Ok(RestoredComponent {
            kind: c.kind,
            path: dest.display().to_string(),
            bytes,
            verified: format!("{files} files authenticated chunk by chunk, sizes match"),
            warnings,
        })
    }
}
