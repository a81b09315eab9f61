//! What the scheduled jobs did: one small JSON file (`[daemon] state_file`, else
//! `daemon-state.json` in the state directory), written atomically by `lifeboat run` when a
//! job starts and when it ends, read by `lifeboat schedule`. It is what makes a restarted
//! daemon run a missed job once (and not again a job that ran just before the restart):
//!
//! `{"version": 1, "jobs": {"chat/backup": {"last_start": "<RFC 3339>", "last_end": ...,
//! "last_success": ..., "outcome": "ok" | "failed" | "interrupted" | "running", "message":
//! "...", "point": "<hex>", "failures": 0, "runs": 12, "duration_ms": 812}}}`
//!
//! A file that cannot be read is set aside (renamed `*.unreadable`) with a warning and the
//! daemon starts from nothing: every job then counts as never run and runs once at start,
//! which costs a backup, never a missed one.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use lifeboat_core::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::state_dir::{create_dir, state_dir, write_atomic};

const VERSION: u32 = 1;
/// Largest state file read (a few hundred bytes per job).
const MAX_BYTES: u64 = 4 << 20;

/// How a job's last run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Started, not ended (or the daemon died while it ran).
    Running,
    /// Succeeded.
    Ok,
    /// Failed; retried with backoff.
    Failed,
    /// Stopped because the daemon was asked to stop.
    Interrupted,
}

/// What one job did last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// When its last run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start: Option<Timestamp>,
    /// When its last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_end: Option<Timestamp>,
    /// When a run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Timestamp>,
    /// How the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// What it did, or why it failed (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The point the last successful backup wrote (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    /// Failures in a row (0 after a success).
    #[serde(default)]
    pub failures: u32,
    /// Runs started since the state file was created.
    #[serde(default)]
    pub runs: u64,
    /// How long the last run took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// Every job's record, by `app/kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsState {
    /// Format version (1).
    pub version: u32,
    /// Records by job key.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobRecord>,
}

impl JobsState {
    /// Where the config's daemon keeps its state: `[daemon] state_file`, else
    /// `daemon-state.json` in the state directory.
    ///
    /// Running as root, a `state_file` below a directory another user can change is refused
    /// (as a config there is): that user could swap the state, or put a FIFO there that
    /// blocks the daemon's start.
    pub fn path_for(config: &Config) -> Result<PathBuf> {
        if let Some(p) = &config.daemon.state_file {
            let euid = crate::trust::effective_uid();
            if euid == 0 {
                // The nearest directory that exists (the rest is created 0700 by root).
                let existing = p.ancestors().skip(1).find(|a| a.is_dir());
                if let Some(dir) = existing {
                    if let Some(c) = crate::trust::check_ancestors(dir, euid)? {
                        return Err(Error::new(
                            ErrorKind::Refused,
                            format!(
                                "[daemon] state_file {}: {} (owner uid {}, mode {:o}) can be changed by another user, who could then swap the daemon's state",
                                p.display(),
                                c.dir.display(),
                                c.uid,
                                c.mode
                            ),
                        )
                        .with_hint("put the state file in a directory only root can change, e.g. /var/lib/lifeboat"));
                    }
                }
            }
            return Ok(p.clone());
        }
        state_dir()
            .map(|d| d.join("daemon-state.json"))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Usage,
                    "no state directory for the daemon's state file",
                )
                .with_hint("set [daemon] state_file in lifeboat.toml, or LIFEBOAT_STATE_DIR")
            })
    }

    /// Reads the state at `path`; a missing file is an empty state, an unreadable one is set
    /// aside with a warning (see the module documentation).
    pub fn load(path: &Path) -> JobsState {
        let read = || -> std::result::Result<Option<JobsState>, String> {
            // Never through a symlink, never blocking (a FIFO), and only a regular file.
            use std::os::unix::fs::OpenOptionsExt;
            let f = match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
            {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            if !f.metadata().map_err(|e| e.to_string())?.is_file() {
                return Err("not a regular file".into());
            }
            let mut text = Vec::new();
            use std::io::Read;
            f.take(MAX_BYTES + 1)
                .read_to_end(&mut text)
                .map_err(|e| e.to_string())?;
            if text.len() as u64 > MAX_BYTES {
                return Err(format!("larger than {MAX_BYTES} bytes"));
            }
            let s: JobsState = serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            if s.version != VERSION {
                return Err(format!("version {} is not {VERSION}", s.version));
            }
            Ok(Some(s))
        };
        match read() {
            Ok(Some(s)) => s,
            Ok(None) => JobsState {
                version: VERSION,
                ..JobsState::default()
            },
            Err(e) => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(".unreadable");
                let _ = std::fs::rename(path, &aside);
                tracing::warn!(
                    "the daemon's state file {} is unreadable ({e}); set aside as {}, every job counts as never run",
                    path.display(),
                    Path::new(&aside).display()
                );
                JobsState {
                    version: VERSION,
                    ..JobsState::default()
                }
            }
        }
    }

    /// Writes the state to `path` atomically (its directory created 0700 if missing).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
        }
        let mut text = serde_json::to_vec_pretty(self).expect("serialisable");
        text.push(b'\n');
        write_atomic(path, &text).map_err(|e| Error::io(path.display(), e))
    }

    /// Notes that `key` started at `at`.
    pub fn started(&mut self, key: &str, at: Timestamp) {
        let r = self.jobs.entry(key.to_string()).or_default();
        r.last_start = Some(at);
        r.outcome = Some(Outcome::Running);
        r.runs += 1;
    }

    /// Notes how `key` ended at `at`: `Ok(summary)` or `Err((outcome, message))`.
    pub fn ended(
        &mut self,
        key: &str,
        at: Timestamp,
        result: std::result::Result<(String, Option<String>), (Outcome, String)>,
    ) {
        let r = self.jobs.entry(key.to_string()).or_default();
        r.last_end = Some(at);
        r.duration_ms = r
            .last_start
            .map(|s| at.duration_since(s).as_millis().max(0) as u64);
        match result {
            Ok((summary, point)) => {
                r.outcome = Some(Outcome::Ok);
                r.message = Some(summary);
                r.failures = 0;
                r.last_success = Some(at);
                if point.is_some() {
                    r.point = point;
                }
            }
            Err((outcome, message)) => {
                r.outcome = Some(outcome);
                r.message = Some(message);
                if outcome == Outcome::Failed {
                    r.failures = r.failures.saturating_add(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_survives_a_save_and_a_damaged_one_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/daemon-state.json");
        let mut s = JobsState::load(&path);
        assert!(s.jobs.is_empty());
        let t: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        s.started("chat/backup", t);
        s.ended(
            "chat/backup",
            t + jiff::SignedDuration::from_secs(2),
            Ok(("point ab".into(), Some("ab".repeat(32)))),
        );
        s.started("chat/copy", t);
        s.ended(
            "chat/copy",
            t,
            Err((Outcome::Failed, "no route to host".into())),
        );
        s.save(&path).unwrap();
        let back = JobsState::load(&path);
        assert_eq!(back, s);
        assert_eq!(back.jobs["chat/backup"].duration_ms, Some(2000));
        assert_eq!(back.jobs["chat/copy"].failures, 1);

        std::fs::write(&path, b"{not json").unwrap();
        let fresh = JobsState::load(&path);
        assert!(fresh.jobs.is_empty());
        assert!(dir.path().join("sub/daemon-state.json.unreadable").exists());
    }

    /// Review: `[daemon] state_file` may name any path, and `load` opens it with
    /// `File::open`, following symlinks and blocking on a FIFO. A user who can write the
    /// state file's directory (a path the operator thought harmless) replaces the file with a
    /// FIFO, and `lifeboat run` (root) hangs at start forever, before its first job.
    #[test]
    fn a_fifo_in_place_of_the_state_file_does_not_hang_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon-state.json");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o666) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(JobsState::load(&p));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(3));
        if got.is_err() {
            // Unblock the reader so the test process can exit.
            let _ = std::fs::OpenOptions::new().write(true).open(&path);
        }
        assert!(got.is_ok(), "JobsState::load blocked on a FIFO");
    }

    /// Review: as root, the config is refused when a directory above it can be changed by
    /// another user, but `[daemon] state_file` is used wherever it points. Such a user swaps
    /// the state (or a FIFO, above) under the root daemon.
    #[test]
    fn as_root_a_state_file_in_a_directory_another_user_can_change_is_refused() {
        if crate::trust::effective_uid() != 0 {
            println!("note: not root; skipped");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let text = format!(
            "[repository.r]\npath = \"/r\"\n[app.a]\nsqlite = [\"/srv/a.db\"]\n[daemon]\nstate_file = \"{}/daemon-state.json\"\n",
            open.display()
        );
        let cfg = Config::parse(Path::new("/etc/lifeboat/lifeboat.toml"), text).unwrap();
        assert!(
            JobsState::path_for(&cfg).is_err(),
            "a state file in a world-writable directory was accepted"
        );
    }
}
