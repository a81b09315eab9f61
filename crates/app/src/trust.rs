//! What lifeboat may trust when it runs as root: a file whose directory, or a directory above
//! it, another user can change can be swapped for theirs between a check and its use (a
//! config whose `password_command` then runs as root, a demo directory whose files root then
//! writes and reads). Sticky directories (`/tmp`) let others add entries but not rename or
//! remove ours, so they are fine.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lifeboat_core::{Error, Result};

/// The effective user id of this process.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A directory that a user other than root and `euid` could change.
#[derive(Debug)]
pub(crate) struct Changeable {
    /// The directory.
    pub dir: PathBuf,
    /// Its owner.
    pub uid: u32,
    /// Its mode bits.
    pub mode: u32,
}

/// Checks `dir` (an existing, canonical directory) and every directory above it: each must be
/// owned by root or `euid`, and not writable by group or others unless sticky.
pub(crate) fn check_ancestors(dir: &Path, euid: u32) -> Result<Option<Changeable>> {
    for a in dir.ancestors() {
        let md = std::fs::metadata(a).map_err(|e| Error::io(a.display(), e))?;
        let (uid, mode) = (md.uid(), md.mode() & 0o7777);
        if (uid != 0 && uid != euid) || (mode & 0o022 != 0 && mode & 0o1000 == 0) {
            return Ok(Some(Changeable {
                dir: a.to_path_buf(),
                uid,
                mode,
            }));
        }
    }
    Ok(None)
}
