//! Small file-system helpers shared by the sources.
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Variables of lifeboat's own environment that hold its secrets: the repository passwords and
/// the S3 store's credentials. No child (pg_dump, psql, pg_restore, a wrapper, a password
/// command) needs them, so none inherits them ([`scrub_child_env`]).
pub const SECRET_ENV: &[&str] = &[
    "LIFEBOAT_PASSWORD",
    "LIFEBOAT_NEW_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Removes [`SECRET_ENV`] from the environment `cmd` passes on. Variables set on `cmd` on
/// purpose afterwards (`PGPASSWORD` for PostgreSQL's tools) are not affected.
pub fn scrub_child_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for k in SECRET_ENV {
        cmd.env_remove(k);
    }
    cmd
}

/// A hidden temporary name beside `target` (same directory, so a rename is atomic).
pub fn temp_path(target: &Path) -> PathBuf {
    target.with_file_name(temp_name(target.file_name().unwrap_or_default()))
}

/// A hidden temporary name for `name` in the same directory: `.NAME.lifeboat-PID-RANDOM`.
pub fn temp_name(name: &OsStr) -> OsString {
    OsString::from(format!(
        ".{}.lifeboat-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        random_hex(6)
    ))
}

/// `bytes` random bytes from the OS as hex (for temporary names; zeros if unavailable, which
/// only makes a name collision, never a silent overwrite, possible: callers create exclusively).
pub fn random_hex(bytes: usize) -> String {
    let mut rnd = vec![0u8; bytes];
    let _ = getrandom_fill(&mut rnd);
    hex::encode(rnd)
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(buf)
}

/// The pid of another process that has `path` (or its `-wal`/`-shm`) open, found by scanning
/// `/proc/*/fd` and comparing device and inode numbers (so a process in a container, which
/// sees the file under another path, is found too). Processes of other users are visible only
/// to root; that limit is documented in docs/ARCHITECTURE.md.
pub fn open_by_other_process(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let mut targets = Vec::new();
    for s in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(s);
        if let Ok(md) = std::fs::metadata(PathBuf::from(p)) {
            targets.push((md.dev(), md.ino()));
        }
    }
    if targets.is_empty() {
        return None;
    }
    let me = std::process::id();
    for proc_ent in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_ent
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_ent.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            // metadata() follows the magic link to the open file itself.
            if let Ok(md) = std::fs::metadata(fd.path()) {
                if targets.contains(&(md.dev(), md.ino())) {
                    return Some(pid);
                }
            }
        }
    }
    None
}
