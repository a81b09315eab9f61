//! This machine's state directory and how files in it are written: `$LIFEBOAT_STATE_DIR`; as
//! root `/var/lib/lifeboat`; else `$XDG_STATE_HOME/lifeboat`, else `~/.local/state/lifeboat`.
//! Directories are created 0700, files 0600, each written whole to a temp file, fsynced and
//! renamed over the old one (a crash leaves the old file or the new one, never half of one).
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The local state directory (see the module documentation); `None` when there is no home.
pub fn state_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("LIFEBOAT_STATE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    // As root, not a directory named by the environment (`sudo -E` keeps a user's
    // XDG_STATE_HOME, which that user could change).
    if crate::trust::effective_uid() == 0 {
        return Some(PathBuf::from("/var/lib/lifeboat"));
    }
    std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(|d| PathBuf::from(d).join("lifeboat"))
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state/lifeboat"))
        })
}

/// Creates `dir` and its missing parents, 0700.
pub(crate) fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Replaces `path` with `bytes`: written to `.NAME.tmp` beside it (created new, 0600, never
/// through a symlink; one left by a killed writer is removed first), fsynced, renamed over
/// `path`, and the directory fsynced. The caller makes sure no other process writes the same
/// file at the same time (a lock, or one daemon per state file).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

/// [`write_atomic`] with the file's mode (the umask aside): a file another user's program
/// reads (node_exporter's textfile collector) cannot be 0600.
pub(crate) fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("a state file path needs a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    let write = || -> std::io::Result<()> {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        // Whatever the umask (a service's may be 077).
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(parent)?.sync_all()
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
