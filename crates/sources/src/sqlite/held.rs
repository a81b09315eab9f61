//! Descriptors of SQLite files that lifeboat opens outside SQLite, kept open for the life of
//! the process.
//!
//! POSIX record locks belong to a process and a file, not to a descriptor: closing *any*
//! descriptor of a file drops every lock the process holds on it, including the ones
//! SQLite's own connections hold (SQLite's "How To Corrupt", §2.2). In the daemon, a
//! continuous follower's snapshot and a scheduled backup's read transaction are such locks:
//! one `File::open` and `close` of the database (to read its header) or of its `-shm` (to
//! probe a checkpointer) would let the app's last connection checkpoint past the snapshot and
//! delete the log, or a TRUNCATE checkpoint run under the follower, and captures would go on
//! from stale handles without a word. SQLite itself never closes such a descriptor while a
//! lock is held (it parks it); lifeboat keeps one descriptor per file (device and inode) it
//! ever read this way, found again by `lstat` before any new open.
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// Kept descriptors by (device, inode), and any second descriptor of the same file that a
/// race (the name swapped between `lstat` and `open`) made this process open: those are
/// never closed either.
struct Held {
    by_file: HashMap<(u64, u64), Arc<File>>,
    extra: Vec<File>,
}

fn held() -> &'static Mutex<Held> {
    static HELD: OnceLock<Mutex<Held>> = OnceLock::new();
    HELD.get_or_init(|| {
        Mutex::new(Held {
            by_file: HashMap::new(),
            extra: Vec::new(),
        })
    })
}

/// A read-only descriptor of the regular file at `path`, never closed: the one already kept
/// for that file, or a new one (opened without following a symlink when `nofollow`, and
/// never blocking on a FIFO swapped in). `Ok(None)` when nothing is there; an error for
/// anything but a regular file.
pub(crate) fn open_held(path: &Path, nofollow: bool) -> std::io::Result<Option<Arc<File>>> {
    let md = match if nofollow {
        std::fs::symlink_metadata(path)
    } else {
        std::fs::metadata(path)
    } {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if md.is_file() {
        let m = held().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = m.by_file.get(&(md.dev(), md.ino())) {
            return Ok(Some(Arc::clone(f)));
        }
    }
    let mut flags = libc::O_CLOEXEC | libc::O_NONBLOCK;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let md = f.metadata()?;
    if !md.is_file() {
        // No SQLite lock lives on anything but a regular file: closing this one is safe.
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut m = held().lock().unwrap_or_else(|p| p.into_inner());
    let key = (md.dev(), md.ino());
    if let Some(kept) = m.by_file.get(&key).cloned() {
        m.extra.push(f);
        return Ok(Some(kept));
    }
    let f = Arc::new(f);
    m.by_file.insert(key, Arc::clone(&f));
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_descriptor_per_file_kept_and_found_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, b"x").unwrap();
        let a = open_held(&p, true).unwrap().unwrap();
        let b = open_held(&p, false).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(open_held(&dir.path().join("none"), true).unwrap().is_none());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(open_held(&link, true).is_err(), "a symlink is not followed");
        assert!(
            open_held(dir.path(), true).is_err(),
            "a directory is refused"
        );
    }
}
