//! Directory file descriptors for restores: every create, write, chmod, chown, utime, rename
//! and unlink of a restore goes through a directory fd or the open file, never by path.
//!
//! A restore runs as root into directories the app's own (unprivileged) user controls, who can
//! swap any name there for a symlink at any moment. The rules:
//!
//! - **down to an anchor** the path is the operator's (config, `--to DIR`): it is walked from
//!   `/` one name at a time ([`SafeDir::open_trusted`]), and a symlink on the way is followed
//!   only in a directory that no user but root (or this process's user) can write: one the
//!   app's user owns, or `/tmp`, could have it point anywhere, so it is refused;
//! - **below the anchor** (`DIR` for `--to DIR`; in place, the root of a file tree being
//!   restored that holds the component, e.g. a secret configured inside an uploads directory)
//!   a symlink is followed only while it stays beneath the anchor ([`SafeDir::open_beneath`],
//!   `openat2` with `RESOLVE_BENEATH`): whatever a point or a local user put there, nothing
//!   leads outside;
//! - **at and below the component's root** no symlink is ever followed: each directory is
//!   opened from its parent's fd with `O_NOFOLLOW | O_DIRECTORY`, files are created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` relative to it, and modes, owners and times are set with
//!   `fchmod`/`fchown`/`futimens` on the open file or directory (a symlink's owner through an
//!   `O_PATH` fd). A symlink found where the point has a directory is unlinked and the
//!   directory created; renames are `renameat`/`renameat2` within a directory fd, which never
//!   follow; trees are removed by walking fds ([`SafeDir::remove_tree`]).
//!
//! What an attacker who swaps names can still do is make a restore fail, or leave a symlink of
//! theirs under their own directory; they cannot make root write, chmod or chown anything
//! outside it.
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use lifeboat_core::{Error, ErrorKind, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat, CWD};

/// An open directory and the path it was reached by (for messages only, never used to act).
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    shown: PathBuf,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

/// Mode bits (permissions plus setuid/setgid/sticky) of a stat.
#[allow(clippy::unnecessary_cast)] // mode_t is u16 on some platforms
pub fn mode_of(st: &Stat) -> u32 {
    st.st_mode as u32 & 0o7777
}

/// The names of `path` in order: `..` kept (resolved physically, from the directory reached),
/// `.` and the root dropped.
fn names_of(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Whether only root or this process's user can have put a symlink in the directory `st`
/// describes: owned by one of them, writable by no group and no other user.
fn only_privileged_can_write(st: &Stat) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    (st.st_uid == 0 || st.st_uid == me) && mode_of(st) & 0o022 == 0
}

impl SafeDir {
    /// Opens the directory `path`, creating it and its parents first if missing (with the
    /// default mode, as `create_dir_all`). The operator named it (config, `--to`), but the
    /// directories on the way may belong to others: it is walked from `/` one name at a time,
    /// and a symlink on the way is followed only where no user other than root (or this
    /// process's user) can have put it: in a directory they own and no group or other user
    /// may write. A symlink in `/home/app/` (the app's user owns it) or in `/tmp` is refused,
    /// never followed, when running as root.
    pub fn open_trusted(path: &Path) -> Result<SafeDir> {
        Ok(SafeDir::walk_trusted(path, true)?.expect("created"))
    }

    /// The existing directory `path`, walked as [`SafeDir::open_trusted`] does; `None` when
    /// it (or a directory on the way) does not exist. Creates nothing.
    pub fn open_existing_trusted(path: &Path) -> Result<Option<SafeDir>> {
        SafeDir::walk_trusted(path, false)
    }

    /// What [`SafeDir::open_trusted`] would refuse, without creating anything: `Ok` also when
    /// a directory on the way is missing (it would be created).
    pub fn check_trusted(path: &Path) -> Result<()> {
        SafeDir::walk_trusted(path, false).map(|_| ())
    }

    /// The walk of [`SafeDir::open_trusted`]; without `create`, `None` at the first missing
    /// directory.
    fn walk_trusted(path: &Path, create: bool) -> Result<Option<SafeDir>> {
        let shown = path.to_path_buf();
        let abs = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
        let fail = |e: rustix::io::Errno| Error::io(path.display(), errno(e));
        let root = || rustix::fs::openat(CWD, "/", dir_flags(), Mode::empty());
        let mut dir = root().map_err(fail)?;
        let mut todo: VecDeque<OsString> = names_of(&abs);
        let mut follows = 0;
        let mut rounds = 0;
        while let Some(name) = todo.pop_front() {
            rounds += 1;
            if rounds > 4096 {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{}: changed repeatedly while it was being opened (another process is swapping it)",
                        path.display()
                    ),
                ));
            }
            if name == ".." {
                dir = rustix::fs::openat(&dir, "..", dir_flags(), Mode::empty()).map_err(fail)?;
                continue;
            }
            match rustix::fs::openat(&dir, &name, dir_flags() | OFlags::NOFOLLOW, Mode::empty()) {
                Ok(fd) => dir = fd,
                Err(rustix::io::Errno::NOENT) if !create => return Ok(None),
                Err(rustix::io::Errno::NOENT) => {
                    match rustix::fs::mkdirat(&dir, &name, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => todo.push_front(name),
                        Err(e) => return Err(fail(e)),
                    }
                }
                Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => {
                    let Ok(st) = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW) else {
                        todo.push_front(name);
                        continue;
                    };
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        return Err(fail(e));
                    }
                    let holder = rustix::fs::fstat(&dir).map_err(fail)?;
                    if !only_privileged_can_write(&holder) {
                        return Err(Error::new(
                            ErrorKind::Refused,
                            format!(
                                "{}: {:?} on the way is a symlink in a directory that user {} can change; \
                                 lifeboat does not follow it (that user could point it anywhere)",
                                path.display(),
                                name,
                                holder.st_uid
                            ),
                        )
                        .with_hint(
                            "name the real path (without the symlink) in lifeboat.toml or on the command line",
                        ));
                    }
                    follows += 1;
                    if follows > 40 {
                        return Err(fail(rustix::io::Errno::LOOP));
                    }
                    let target = rustix::fs::readlinkat(&dir, &name, Vec::new()).map_err(fail)?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        dir = root().map_err(fail)?;
                    }
                    for n in names_of(&target).into_iter().rev() {
                        todo.push_front(n);
                    }
                }
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(Some(SafeDir { fd: dir, shown }))
    }

    /// The directory `rel` beneath this one, created (mode 0777 & umask) where missing if
    /// `create` (else missing is an error of kind `NotFound`). A
    /// symlink on the way is followed only if it stays beneath this directory
    /// (`openat2` with `RESOLVE_BENEATH`: an absolute target or a `..` that climbs out is
    /// refused), so whatever a point or a local user put under a restore's root, nothing
    /// beneath it can lead outside it. Without `openat2` (kernels before 5.6, some seccomp
    /// filters) no symlink is followed at all.
    pub fn open_beneath(&self, rel: &Path, create: bool) -> Result<SafeDir> {
        let names: Vec<OsString> = names_of(rel).into_iter().collect();
        if names.iter().any(|n| n == "..") {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("{} climbs out of {}", rel.display(), self.shown.display()),
            ));
        }
        let shown = self.shown.join(rel);
        let fail = |e: rustix::io::Errno| match e {
            rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => Error::new(
                ErrorKind::Refused,
                format!(
                    "{}: a symlink on the way leads outside {}; lifeboat never writes there",
                    shown.display(),
                    self.shown.display()
                ),
            )
            .with_hint("remove the symlink (or restore with --to into an empty directory)"),
            e => Error::io(shown.display(), errno(e)),
        };
        let mut cur =
            rustix::fs::openat(&self.fd, ".", dir_flags(), Mode::empty()).map_err(fail)?;
        for i in 0..names.len() {
            let prefix: PathBuf = names[..=i].iter().collect();
            let mut created = false;
            cur = loop {
                match rustix::fs::openat2(
                    &self.fd,
                    &prefix,
                    dir_flags(),
                    Mode::empty(),
                    ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
                ) {
                    Ok(fd) => break fd,
                    Err(rustix::io::Errno::NOENT) if create && !created => {
                        created = true;
                        match rustix::fs::mkdirat(&cur, &names[i], Mode::from_raw_mode(0o777)) {
                            Ok(()) | Err(rustix::io::Errno::EXIST) => continue,
                            Err(e) => return Err(fail(e)),
                        }
                    }
                    Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                        // No openat2: the strict walk, no symlink followed.
                        let d = SafeDir {
                            fd: cur,
                            shown: self.shown.join(names[..i].iter().collect::<PathBuf>()),
                        };
                        break d
                            .child_dir(&names[i], create, false)
                            .map(|d| d.fd)
                            .map_err(|e| {
                                e.with_hint(
                                    "a symlink on the way is not followed (no openat2 here)",
                                )
                            })?;
                    }
                    Err(e) => return Err(fail(e)),
                }
            };
        }
        Ok(SafeDir { fd: cur, shown })
    }

    /// The directory holding `path` (opened by [`SafeDir::open_trusted`]) and `path`'s last
    /// component, which the caller then handles without following it.
    pub fn parent_of(path: &Path) -> Result<(SafeDir, OsString)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("{} has no parent directory", path.display()),
            ));
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        Ok((SafeDir::open_trusted(parent)?, name.to_os_string()))
    }

    /// The root directory of a component at `path`: its parent opened normally, `path` itself
    /// opened without following a symlink, created if missing; a symlink there is replaced by
    /// a new directory (capture refuses a symlinked root, so the point never has one).
    pub fn open_root(path: &Path) -> Result<SafeDir> {
        let (parent, name) = SafeDir::parent_of(path)?;
        parent.child_dir(&name, true, false)
    }

    /// The path this directory was reached by (messages only).
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Where the directory is now, symlinks resolved (from `/proc/self/fd`; `shown()` when that
    /// cannot be read): for the one thing that must open a file by path (SQLite), so that a
    /// symlink the operator has in the path (`/var/lib -> /data/lib`) does not trip
    /// `SQLITE_OPEN_NOFOLLOW`.
    pub fn real_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        std::fs::read_link(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
            .ok()
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| self.shown.clone())
    }

    /// `shown()/name`, for messages.
    pub fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.shown.join(name.as_ref())
    }

    /// The directory's fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory `name` in this one without following a symlink. With `create`, a
    /// missing directory is made (mode 0777 & umask, as `create_dir_all`), and a symlink there
    /// (with `replace_any`, any non-directory) is unlinked first: replaced, never followed.
    pub fn child_dir(&self, name: &OsStr, create: bool, replace_any: bool) -> Result<SafeDir> {
        let shown = self.join(name);
        let fail = |e: rustix::io::Errno| Error::io(shown.display(), errno(e));
        // Each round changes what is there (mkdir, unlink); a local user who keeps swapping
        // names can make this fail, never make it follow a link.
        for _ in 0..8 {
            match rustix::fs::openat(
                &self.fd,
                name,
                dir_flags() | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => return Ok(SafeDir { fd, shown }),
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => continue,
                        Err(e) => return Err(fail(e)),
                    }
                }
                Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) if create => {
                    let Some(st) = self.stat(name) else { continue };
                    let ft = FileType::from_raw_mode(st.st_mode);
                    if ft == FileType::Directory {
                        continue;
                    }
                    if ft != FileType::Symlink && !replace_any {
                        return Err(fail(e));
                    }
                    match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                        Ok(()) | Err(rustix::io::Errno::NOENT) => continue,
                        Err(e) => return Err(fail(e)),
                    }
                }
                Err(e) => return Err(fail(e)),
            }
        }
        Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{}: changed repeatedly while it was being created (another process is swapping it)",
                shown.display()
            ),
        ))
    }

    /// A private directory `name` (0700, created here, empty): for temporary files that
    /// something must open by path (SQLite), so no other user can put anything in it.
    pub fn private_dir(&self, name: &OsStr) -> Result<SafeDir> {
        let shown = self.join(name);
        let fail = |e: rustix::io::Errno| Error::io(shown.display(), errno(e));
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)).map_err(fail)?;
        let d = self.child_dir(name, false, false)?;
        let st = d.fstat()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if st.st_uid != me || mode_of(&st) & 0o077 != 0 {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "{}: replaced by another user's directory while it was being created",
                    shown.display()
                ),
            ));
        }
        Ok(d)
    }

    /// Another handle on the same open directory (never re-resolved by name).
    pub fn try_clone(&self) -> Result<SafeDir> {
        Ok(SafeDir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| Error::io(self.shown.display(), e))?,
            shown: self.shown.clone(),
        })
    }

    /// `fstat` of this directory.
    pub fn fstat(&self) -> Result<Stat> {
        rustix::fs::fstat(&self.fd).map_err(|e| Error::io(self.shown.display(), errno(e)))
    }

    /// What `name` is, not following a symlink; `None` if it does not exist (or cannot be
    /// looked at).
    pub fn stat(&self, name: &OsStr) -> Option<Stat> {
        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// Creates the file `name` exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`) with `mode`,
    /// opened for reading and writing.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map_err(errno)?;
        Ok(File::from(fd))
    }

    /// Opens the existing file `name` again, write-only with `O_DIRECT` (writes go from the
    /// caller's memory to the disk, not through the page cache); refused unless it is the same
    /// file as `same` (device and inode). Fails on a filesystem without `O_DIRECT`.
    pub fn reopen_direct(&self, name: &OsStr, same: &File) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::DIRECT | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let (a, b) = (fstat(&fd)?, fstat(same)?);
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(io::Error::other(
                "the file was replaced while it was reopened",
            ));
        }
        Ok(File::from(fd))
    }

    /// Removes the non-directory `name` (a symlink itself, never its target).
    pub fn remove_file(&self, name: &OsStr) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(errno)
    }

    /// Removes the empty directory `name`.
    pub fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
        rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR).map_err(errno)
    }

    /// Renames `from` in this directory to `to` in `dest` (neither followed if a symlink).
    pub fn rename_to(&self, from: &OsStr, dest: &SafeDir, to: &OsStr) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &dest.fd, to).map_err(errno)
    }

    /// Creates the symlink `name` -> `target`.
    pub fn symlink(&self, target: &str, name: &OsStr) -> io::Result<()> {
        rustix::fs::symlinkat(target, &self.fd, name).map_err(errno)
    }

    /// Sets the owner of the symlink `name` itself: opened with `O_PATH | O_NOFOLLOW`, checked
    /// to be a symlink, then changed through that fd (`AT_EMPTY_PATH`), so a name swapped for
    /// a hard link to another file in between is never changed.
    pub fn chown_symlink(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
            return Err(io::Error::other(
                "replaced by something else than a symlink",
            ));
        }
        rustix::fs::chownat(
            &fd,
            "",
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// Swaps `a` in this directory and `b` in `other` atomically
    /// (`renameat2(RENAME_EXCHANGE)`; neither followed if a symlink). Where the filesystem
    /// cannot exchange, `b` is moved into this directory as `a.old` first, then `a` to `b`, then
    /// `a.old` to `a` (`b` moved back on failure): not atomic, but never losing either.
    pub fn exchange_with(&self, a: &OsStr, other: &SafeDir, b: &OsStr) -> io::Result<()> {
        match rustix::fs::renameat_with(&self.fd, a, &other.fd, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                let mut aside = a.to_os_string();
                aside.push(".old");
                rustix::fs::renameat_with(&other.fd, b, &self.fd, &aside, RenameFlags::NOREPLACE)
                    .map_err(errno)?;
                if let Err(e) =
                    rustix::fs::renameat_with(&self.fd, a, &other.fd, b, RenameFlags::NOREPLACE)
                {
                    let _ = rustix::fs::renameat(&self.fd, &aside, &other.fd, b);
                    return Err(errno(e));
                }
                rustix::fs::renameat(&self.fd, &aside, &self.fd, a).map_err(errno)
            }
            Err(e) => Err(errno(e)),
        }
    }

    /// Moves `from` in this directory to `to` in `other`, failing if `to` exists.
    pub fn rename_noreplace_to(&self, from: &OsStr, other: &SafeDir, to: &OsStr) -> io::Result<()> {
        rustix::fs::renameat_with(&self.fd, from, &other.fd, to, RenameFlags::NOREPLACE)
            .map_err(errno)
    }

    /// Removes `name` and, if it is a directory, everything in it. Each directory is opened
    /// from its parent's fd with `O_NOFOLLOW`: a symlink anywhere in it is removed itself,
    /// never followed, whoever swaps names meanwhile.
    pub fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        self.remove_tree_at(name, 0)
    }

    fn remove_tree_at(&self, name: &OsStr, depth: usize) -> io::Result<()> {
        if depth > 2048 {
            return Err(io::Error::other("directory tree too deep to remove"));
        }
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            dir_flags() | OFlags::NOFOLLOW,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                return match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                    Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                    Err(e) => Err(errno(e)),
                };
            }
            Err(e) => return Err(errno(e)),
        };
        let dir = SafeDir {
            fd,
            shown: self.join(name),
        };
        dir.clear_at(depth)?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// Removes everything in this directory (through its fd: whatever name it has now, and
    /// whoever renames it meanwhile, only what is inside this very directory goes).
    pub fn clear(&self) -> io::Result<()> {
        self.clear_at(0)
    }

    fn clear_at(&self, depth: usize) -> io::Result<()> {
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&self.fd).map_err(errno)? {
            let entry = entry.map_err(errno)?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push((OsStr::from_bytes(n).to_os_string(), entry.file_type()));
            }
        }
        for (n, ft) in names {
            let r = if ft == FileType::Directory || ft == FileType::Unknown {
                self.remove_tree_at(&n, depth + 1)
            } else {
                match rustix::fs::unlinkat(&self.fd, &n, AtFlags::empty()) {
                    Err(rustix::io::Errno::ISDIR) => self.remove_tree_at(&n, depth + 1),
                    r => r.map_err(errno),
                }
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r?,
            }
        }
        Ok(())
    }

    /// Removes `name` from this directory only if it is still the file or directory `was`
    /// describes (same device and inode; a directory must be empty): for a name another user
    /// could have swapped since.
    pub fn remove_if_same(&self, name: &OsStr, was: &Stat) -> io::Result<()> {
        let Some(now) = self.stat(name) else {
            return Ok(());
        };
        if (now.st_dev, now.st_ino) != (was.st_dev, was.st_ino) {
            return Err(io::Error::other(format!(
                "{} was replaced by another process; left in place",
                self.join(name).display()
            )));
        }
        let flags = if FileType::from_raw_mode(now.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(&self.fd, name, flags) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(errno(e)),
        }
    }

    /// `syncfs` of the filesystem holding this directory: one call makes every file written
    /// to it durable (a restored tree before it is swapped in).
    pub fn sync_filesystem(&self) -> Result<()> {
        rustix::fs::syncfs(&self.fd).map_err(|e| {
            Error::io(
                format!("sync the filesystem of {}", self.shown.display()),
                errno(e),
            )
        })
    }

    /// fsync the directory, so a rename in it is durable.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd)
            .map_err(|e| Error::io(format!("sync directory {}", self.shown.display()), errno(e)))
    }
}

/// Creates the new file `path` (`O_EXCL | O_NOFOLLOW`, `mode`), its missing directories too,
/// for something written where a restore just wrote (a config `recover` writes under its
/// root): below `anchor` no symlink leads outside it (`SafeDir::open_beneath`); above it, or
/// without one, the path is walked by `SafeDir::open_trusted`'s rule.
pub fn create_new_file(anchor: Option<&Path>, path: &Path, mode: u32) -> Result<File> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("{} names no file", path.display()),
        ));
    };
    let dir = match anchor.and_then(|a| Some((a, parent.strip_prefix(a).ok()?))) {
        Some((a, rel)) => SafeDir::open_trusted(a)?.open_beneath(rel, true)?,
        None => SafeDir::open_trusted(parent)?,
    };
    dir.create_file(name, mode)
        .map_err(|e| Error::io(path.display(), e))
}

/// `fchown` of an open file or directory.
pub fn fchown(fd: impl AsFd, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(errno)
}

/// `fchmod` of an open file or directory.
pub fn fchmod(fd: impl AsFd, mode: u32) -> io::Result<()> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(errno)
}

/// `fstat` of an open file or directory.
pub fn fstat(fd: impl AsFd) -> io::Result<Stat> {
    rustix::fs::fstat(fd).map_err(errno)
}

/// `futimens` of an open file or directory: the modification time to `ns` nanoseconds since
/// the epoch, the access time left as it is.
pub fn set_mtime(fd: impl AsFd, ns: i64) -> io::Result<()> {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: ns.div_euclid(1_000_000_000),
            tv_nsec: ns.rem_euclid(1_000_000_000) as _,
        },
    };
    rustix::fs::futimens(fd, &ts).map_err(errno)
}

/// A walk down a component's tree from its root directory, keeping the fds of the current
/// chain of directories open (a tree is visited parents first, so consecutive entries share
/// most of the chain; at most its depth is open at once).
pub struct DirWalk {
    root: SafeDir,
    stack: Vec<(String, SafeDir)>,
}

impl DirWalk {
    /// Starts at `root`.
    pub fn new(root: SafeDir) -> DirWalk {
        DirWalk {
            root,
            stack: Vec::new(),
        }
    }

    /// The directory `comps` (relative to the root, no `.`/`..`), each component opened
    /// with [`SafeDir::child_dir`] (created and symlinks or files replaced when `create`).
    pub fn dir(&mut self, comps: &[&str], create: bool) -> Result<&SafeDir> {
        let common = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((n, _), c)| n == *c)
            .count();
        self.stack.truncate(common);
        for c in &comps[common..] {
            let parent = self.stack.last().map_or(&self.root, |(_, d)| d);
            let d = parent.child_dir(OsStr::new(c), create, true)?;
            self.stack.push((c.to_string(), d));
        }
        Ok(self.stack.last().map_or(&self.root, |(_, d)| d))
    }
}
