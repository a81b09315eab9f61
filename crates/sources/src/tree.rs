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
use std::os::unix::ffi::OsStrExt;
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
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

fn src_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Source, format!("{}: {msg}", path.display()))
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
    /// Captures `name` in the directory `dir` (reached as `abs`, for messages) as `rel`.
    ///
    /// Everything goes through directory fds, as a restore does (`crate::dirfd`): the app's
    /// user owns these directories and can swap any name for a symlink, a FIFO or another of
    /// their directories at any moment, and a backup runs as root. So each name is opened
    /// from its directory's fd with `O_NOFOLLOW` (a file also `O_NONBLOCK`, so a FIFO swapped
    /// in never blocks), and what is recorded (kind, mode, owner, size, times) comes from
    /// `fstat` of what was opened: the metadata always belongs to the bytes stored, and a
    /// symlink swapped in is never followed to a file only root can read.
    #[allow(clippy::unnecessary_cast)] // stat field widths differ by platform
    fn visit(&mut self, dir: BorrowedFd<'_>, name: &OsStr, abs: &Path, rel: String) -> Result<()> {
        let io = |e: rustix::io::Errno| {
            Error::io(abs.display(), std::io::Error::from(e)).with_kind(ErrorKind::Source)
        };
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
        let mut entry = TreeEntry {
            path: rel.clone(),
            kind: EntryKind::File,
            mode: dirfd::mode_of(&st),
            uid: st.st_uid,
            gid: st.st_gid,
            mtime_ns: stat_mtime_ns(&st),
            size: 0,
            chunks: Vec::new(),
            target: None,
            ctime_ns: None,
            inode: None,
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let fd = match rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                        return Err(changed(abs));
                    }
                    Err(e) => return Err(io(e)),
                };
                let st = rustix::fs::fstat(&fd).map_err(io)?;
                entry.kind = EntryKind::Dir;
                entry.mode = dirfd::mode_of(&st);
                (entry.uid, entry.gid) = (st.st_uid, st.st_gid);
                entry.mtime_ns = stat_mtime_ns(&st);
                self.entries.push(entry);
                let mut children = Vec::new();
                for c in rustix::fs::Dir::read_from(&fd).map_err(io)? {
                    let c = c.map_err(io)?;
                    let n = c.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        children.push(OsStr::from_bytes(n).to_os_string());
                    }
                }
                children.sort();
                for c in children {
                    let child_abs = abs.join(&c);
                    let name = c.to_str().ok_or_else(|| {
                        src_err(
                            &child_abs,
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
                    self.visit(fd.as_fd(), &c, &child_abs, child_rel)?;
                }
            }
            FileType::Symlink => {
                entry.kind = EntryKind::Symlink;
                let t = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(io)?;
                entry.target = Some(
                    t.to_str()
                        .map_err(|_| src_err(abs, "symlink target is not UTF-8"))?
                        .to_string(),
                );
                self.entries.push(entry);
            }
            FileType::RegularFile => {
                let stat_entry = |entry: &mut TreeEntry, st: &rustix::fs::Stat| {
                    entry.mode = dirfd::mode_of(st);
                    (entry.uid, entry.gid) = (st.st_uid, st.st_gid);
                    entry.mtime_ns = stat_mtime_ns(st);
                    entry.size = st.st_size as u64;
                    entry.ctime_ns = Some(
                        (st.st_ctime as i64)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(st.st_ctime_nsec as i64),
                    );
                    entry.inode = Some(st.st_ino as u64);
                };
                stat_entry(&mut entry, &st);
                // Same size, mtime, ctime and inode: unchanged (ctime catches `cp -p`/`rsync
                // -t` replacements that keep the mtime). Nothing is read, and the metadata
                // recorded is the previous point's, of the same bytes.
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
                    let fd = match rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY
                            | OFlags::NOFOLLOW
                            | OFlags::NONBLOCK
                            | OFlags::NOCTTY
                            | OFlags::CLOEXEC,
                        Mode::empty(),
                    ) {
                        Ok(fd) => fd,
                        Err(rustix::io::Errno::LOOP) => return Err(changed(abs)),
                        Err(e) => return Err(io(e)),
                    };
                    let st = rustix::fs::fstat(&fd).map_err(io)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                        return Err(changed(abs));
                    }
                    stat_entry(&mut entry, &st);
                    let (chunks, n) = self
                        .writer
                        .store_stream(File::from(fd))
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
            }
            _ => tracing::warn!(path = %abs.display(), "skipping a socket, fifo or device file"),
        }
        Ok(())
    }
}

/// A name that changed kind between its `stat` and its `open` (something swapped it).
fn changed(abs: &Path) -> Error {
    src_err(
        abs,
        "changed while it was being read (another process replaced it); nothing of it was stored",
    )
    .with_hint("run the backup again; if it keeps happening, something keeps swapping files there")
}

#[allow(clippy::unnecessary_cast)] // time_t and its nanoseconds differ in width by platform
fn stat_mtime_ns(st: &rustix::fs::Stat) -> i64 {
    (st.st_mtime as i64)
        .saturating_mul(1_000_000_000)
        .saturating_add(st.st_mtime_nsec as i64)
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
    // The root's directory: the operator's path (`SafeDir::open_trusted`'s rule: a symlink on
    // the way only where no other user can have put it); the root itself is never followed.
    let (parent, name) = match (root.parent(), root.file_name()) {
        (Some(p), Some(n)) => (
            SafeDir::open_existing_trusted(p)
                .map_err(|e| e.with_kind(ErrorKind::Source))?
                .ok_or_else(|| src_err(p, "does not exist"))?,
            n.to_os_string(),
        ),
        _ => return Err(src_err(root, "has no parent directory")),
    };
    walk.visit(parent.fd(), &name, root, String::new())?;
    // The root is what the kind says, checked again on what was captured (it may have been
    // swapped since the check above).
    let root_kind = walk.entries.first().map(|e| e.kind);
    let want = if kind == ComponentKind::Files {
        EntryKind::Dir
    } else {
        EntryKind::File
    };
    if root_kind != Some(want) {
        return Err(changed(root));
    }
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

pub(crate) fn is_root() -> bool {
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
    /// The component's kind: `Files` must have a directory root, `Secret` and `Config`
    /// exactly one regular file (what capture records; a point from another key holder may
    /// say otherwise, and a symlink root would replace a whole directory with a link).
    pub kind: ComponentKind,
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
    let root = entries
        .first()
        .filter(|r| r.path.is_empty())
        .map(|r| r.kind);
    match (how.kind, root) {
        (ComponentKind::Files, Some(EntryKind::Dir)) => {
            restore_staged(reader, &entries, how, &target, &mut report, progress)?;
        }
        (ComponentKind::Secret | ComponentKind::Config, Some(EntryKind::File))
            if entries.len() == 1 =>
        {
            let e = &entries[0];
            let mut w = Writing {
                reader,
                report: &mut report,
                keep_setid: how.keep_setid,
                sync_each: true,
            };
            w.file(e, how.parent, how.name, &target)?;
            progress.inc(e.size);
        }
        (kind, root) => {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "{}: a {} component whose tree has {} entries and a root that is {}; lifeboat never writes such a point",
                    target.display(),
                    kind.as_str(),
                    entries.len(),
                    match root {
                        Some(EntryKind::Dir) => "a directory",
                        Some(EntryKind::File) => "a file",
                        Some(EntryKind::Symlink) => "a symlink",
                        None => "missing",
                    }
                ),
            ));
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
    // A private directory (0700, root's) beside the target holds the new tree while it is
    // built, and the old one after the swap: the app's user may rename anything in `parent`
    // (theirs), but nothing inside this directory, so what is removed at the end is exactly
    // the tree that was swapped out, reached through this directory's fd, never by a name in
    // `parent`.
    let holder_name = temp_name(how.name);
    let holder = parent.private_dir(&holder_name)?;
    let holder_st = holder.fstat()?;
    let tree = OsStr::new("tree");
    let cleanup = |note: &mut Vec<String>| {
        let cleared = holder.remove_tree(tree).and_then(|()| holder.clear());
        if let Err(e) = cleared.and_then(|()| parent.remove_if_same(&holder_name, &holder_st)) {
            note.push(format!(
                "{}: could not be removed completely ({e}); remove it by hand",
                parent.join(&holder_name).display()
            ));
        }
    };
    let built = (|| -> Result<SafeDir> {
        let stage = holder.child_dir(tree, true, false)?;
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
        // One sync for every file and directory written, before the swap makes them live.
        stage.sync_filesystem()?;
        Ok(stage)
    })();
    let stage = match built {
        Ok(s) => s,
        Err(e) => {
            cleanup(&mut report.warnings);
            return Err(e);
        }
    };
    let new_st = stage.fstat()?;
    // The swap: one rename; the old tree (if any) ends up in the holder, under `tree`.
    let swapped = match parent.stat(how.name) {
        None => holder
            .rename_noreplace_to(tree, parent, how.name)
            .or_else(|_| holder.exchange_with(tree, parent, how.name)),
        Some(_) => holder.exchange_with(tree, parent, how.name),
    };
    if let Err(err) = swapped {
        cleanup(&mut report.warnings);
        return Err(Error::io(
            format!("swap the restored tree in at {}", target.display()),
            err,
        ));
    }
    parent.sync()?;
    let in_place = parent
        .stat(how.name)
        .is_some_and(|st| (st.st_dev, st.st_ino) == (new_st.st_dev, new_st.st_ino));
    // The old tree (saved in the pre-restore point) is removed, unless its root is not owned
    // as the point's root is: then it may be a directory another user renamed over the target
    // just before the swap (one they could not delete themselves), and it is put back beside
    // the target for the operator to look at.
    if let Some(old) = holder.stat(tree) {
        let root_uid = entries.first().map(|e| e.uid);
        if FileType::from_raw_mode(old.st_mode) == FileType::Directory
            && Some(old.st_uid) != root_uid
        {
            let aside = temp_name(how.name);
            match holder.rename_noreplace_to(tree, parent, &aside) {
                Ok(()) => report.warnings.push(format!(
                    "{}: the replaced directory was owned by uid {}, not {} as the point's; it was kept as {} (remove it once checked)",
                    target.display(),
                    old.st_uid,
                    root_uid.unwrap_or_default(),
                    parent.join(&aside).display()
                )),
                Err(e) => report.warnings.push(format!(
                    "{}: the replaced directory (uid {}) could not be kept aside ({e}); it is in {}",
                    target.display(),
                    old.st_uid,
                    parent.join(&holder_name).display()
                )),
            }
        }
    }
    cleanup(&mut report.warnings);
    if !in_place {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{}: replaced by another process while the restored tree was swapped in",
                target.display()
            ),
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
            kind: c.kind,
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
