//! Directory file descriptors for restores: every create, write, chmod, chown, utime, rename
//! and unlink of a restore goes through a directory fd or the open file, never by path.
//!
//! A restore runs as root into directories the app's own (unprivileged) user controls, who can
//! swap any name there for a symlink at any moment. The rule:
//!
//! - the **parent of a component's root** (the directory holding a database, a secret, a
//!   config file, or an uploads directory) is opened normally, symlinks followed: its path
//!   comes from the operator (config or `--to`), like any path they name;
//! - **at and below the component's root** no symlink is ever followed: each directory is
//!   opened from its parent's fd with `O_NOFOLLOW | O_DIRECTORY`, files are created with
//!   `O_CREAT | O_EXCL | O_NOFOLLOW` relative to it, and modes, owners and times are set with
//!   `fchmod`/`fchown`/`futimens` on the open file or directory. A symlink (or, below the
//!   root, any non-directory) found where the point has a directory is unlinked and the
//!   directory created; renames are `renameat` within a directory fd, which never follows.
//!
//! What an attacker who swaps names can still do is make a restore fail, or leave a symlink of
//! theirs under their own directory; they cannot make root write, chmod or chown anything
//! outside it.
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use lifeboat_core::{Error, ErrorKind, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, CWD};

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

impl SafeDir {
    /// Opens `path` normally (symlinks followed: the operator named it), creating it and its
    /// parents first if missing (with the default mode, as `create_dir_all`).
    pub fn open_trusted(path: &Path) -> Result<SafeDir> {
        std::fs::create_dir_all(path).map_err(|e| Error::io(path.display(), e))?;
        let fd = rustix::fs::openat(CWD, path, dir_flags(), Mode::empty())
            .map_err(|e| Error::io(path.display(), errno(e)))?;
        Ok(SafeDir {
            fd,
            shown: path.to_path_buf(),
        })
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

    /// Sets the owner of the symlink `name` itself (`AT_SYMLINK_NOFOLLOW`).
    pub fn chown_symlink(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        rustix::fs::chownat(
            &self.fd,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(errno)
    }

    /// fsync the directory, so a rename in it is durable.
    pub fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd)
            .map_err(|e| Error::io(format!("sync directory {}", self.shown.display()), errno(e)))
    }
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
