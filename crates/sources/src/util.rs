//! Small file-system helpers shared by the sources.
use std::fs::File;
use std::path::{Path, PathBuf};

use lifeboat_core::{Error, Result};

/// A hidden temporary name beside `target` (same directory, so a rename is atomic).
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut rnd = [0u8; 6];
    let _ = getrandom_fill(&mut rnd);
    target.with_file_name(format!(
        ".{name}.lifeboat-{}-{}",
        std::process::id(),
        hex::encode(rnd)
    ))
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    File::open("/dev/urandom")?.read_exact(buf)
}

/// fsync a directory so a rename in it is durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("sync directory {}", dir.display()), e))
}

/// The pid of another process that has `path` (or its `-wal`/`-shm`) open, found by scanning
/// `/proc/*/fd`. Processes of other users are visible only to root; that limit is documented.
pub fn open_by_other_process(path: &Path) -> Option<u32> {
    let canon = path.canonicalize().ok()?;
    let mut targets = vec![canon.clone()];
    for s in ["-wal", "-shm"] {
        let mut p = canon.as_os_str().to_owned();
        p.push(s);
        targets.push(PathBuf::from(p));
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
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if targets.contains(&link) {
                    return Some(pid);
                }
            }
        }
    }
    None
}
