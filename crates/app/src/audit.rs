//! The audit log (issue 15 item 6): every backup, restore, rollback, drill, forget, prune,
//! copy and key change, who ran it and how it ended, as one [`AuditEvent`]:
//!
//! - appended as a JSON line to `audit.log` in this machine's state directory (one `write`
//!   with `O_APPEND`, so the daemon and a command running at once never interleave; never
//!   through a symlink, only to a regular file owned by the effective user, created 0600);
//! - written into the repository the operation used, as an audit record (`docs/FORMAT.md`
//!   §18), so the history survives the machine. Only when the operation unlocked it: a
//!   failure before the password opened the repository (a wrong password) is in the local
//!   file only.
//!
//! Both are best effort: an audit log that cannot be written costs a warning, never the
//! operation. Operations record through [`audited`] (a whole operation given a [`Setup`]) or
//! [`Op`] (one holding its repository), never by hand. [`log`] reads the events back.
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::Timestamp;
use lifeboat_core::{AuditEvent, Error, ErrorKind, Repository, Result, RESULT_FAILED, RESULT_OK};
use serde::Serialize;

use crate::setup::Setup;
use crate::state_dir::{create_dir, state_dir};

/// The file name of the local audit log in the state directory.
pub const AUDIT_FILE: &str = "audit.log";
/// Most of the local file `log --local` reads: its last 64 MiB.
const MAX_LOCAL_READ: u64 = 64 << 20;

/// What an operation's result adds to its event: the app, the points, bytes, a message.
pub(crate) trait Audited {
    /// Fills in what the result knows. `result` is `ok` unless this says otherwise (a drill
    /// that ran and failed is a result, not an error).
    fn facts(&self, ev: &mut AuditEvent);
}

/// Where an event goes besides the local file.
pub(crate) enum Target<'a> {
    /// This repository.
    Repo(&'a Repository),
    /// The repository the setup unlocked last, if it unlocked one during the operation.
    Setup(&'a Setup),
}

/// One operation being audited: started now, recorded by [`Op::finish`].
pub(crate) struct Op {
    command: String,
    app: Option<String>,
    started: Instant,
}

impl Op {
    /// An operation `command` (of `app`, if known yet) starting now.
    pub fn start(command: &str, app: Option<&str>) -> Op {
        Op {
            command: command.to_string(),
            app: app.map(str::to_string),
            started: Instant::now(),
        }
    }

    /// An operation run through `setup`, starting now: the repository it unlocks from now on
    /// is the one its record goes to.
    fn through(setup: &Setup, command: &str, app: Option<&str>) -> Op {
        setup.forget_last_unlocked();
        Op::start(command, app)
    }

    /// Records how the operation ended (best effort) and hands its result back.
    pub fn finish<T: Audited>(self, to: Target<'_>, result: Result<T>) -> Result<T> {
        self.end(to, result.as_ref().map(|t| t as &dyn Audited));
        result
    }

    /// Records how the operation ended (best effort).
    pub fn end(self, to: Target<'_>, outcome: std::result::Result<&dyn Audited, &Error>) {
        let to = if outcome.as_ref().err().is_some_and(|e| store_just_failed(e)) {
            None
        } else {
            Some(to)
        };
        record(to, self.event_of(outcome));
    }

    /// The event of the operation ended with `outcome` (not yet stamped with the time).
    fn event_of(self, outcome: std::result::Result<&dyn Audited, &Error>) -> AuditEvent {
        let mut ev = self.event();
        match outcome {
            Ok(t) => t.facts(&mut ev),
            Err(e) => {
                ev.result = RESULT_FAILED.into();
                ev.message = crate::hooks::without_hook_output(e.message()).into_owned();
            }
        }
        ev
    }

    fn event(&self) -> AuditEvent {
        let (uid, user) = real_user();
        let sudo_user = (uid == 0)
            .then(|| std::env::var("SUDO_USER").ok())
            .flatten()
            .filter(|s| !s.is_empty());
        AuditEvent {
            time: String::new(),
            host: lifeboat_core::hostname(),
            user,
            uid,
            sudo_user,
            command: self.command.clone(),
            app: self.app.clone(),
            points: Vec::new(),
            more_points: 0,
            result: RESULT_OK.into(),
            message: String::new(),
            bytes: None,
            duration_ms: Some(self.started.elapsed().as_millis() as u64),
            destination: None,
            lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Runs a whole operation through `setup` and records it: into the repository the setup
/// unlocked for it (if any) and the local file.
pub(crate) fn audited<T: Audited>(
    setup: &Setup,
    command: &str,
    app: Option<&str>,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    Op::through(setup, command, app).finish(Target::Setup(setup), f())
}

/// Runs the planning of an operation `command` (a restore, a rollback, a forget), recording
/// it only when it fails: a plan that succeeds is recorded when it runs, and one never run
/// (a dry run, a question answered no) did nothing.
pub(crate) fn audited_if_refused<T>(
    setup: &Setup,
    command: &str,
    app: Option<&str>,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let op = Op::through(setup, command, app);
    let result = f();
    if let Err(e) = &result {
        op.end(Target::Setup(setup), Err(e));
    }
    result
}

/// Whether the operation failed because its store did not answer (a transient error, after
/// its retries): its record is then not written there, as that would wait the whole retry
/// budget again (minutes on S3) for one more refusal before the caller hears of the failure.
/// The local file has it.
fn store_just_failed(e: &Error) -> bool {
    e.is_retryable()
}

/// Stamps the event with the time, writes it to the repository (when there is one) and to
/// the local file. Failures are warnings.
fn record(to: Option<Target<'_>>, mut ev: AuditEvent) {
    ev.time = now();
    let written = match to {
        Some(Target::Repo(repo)) => Some(write_to(repo, &mut ev)),
        Some(Target::Setup(setup)) => setup.with_last_unlocked(|repo| write_to(repo, &mut ev)),
        None => None,
    };
    if let Some(Err(e)) = written {
        tracing::warn!(
            "the audit record of this {} could not be written to the repository: {e}",
            ev.command
        );
    }
    let ev = ev.bounded();
    match local_path() {
        Some(path) => {
            if let Err(e) = append_local(&path, &ev) {
                tracing::warn!(
                    "audit log {}: {e}; this {} is not in it",
                    path.display(),
                    ev.command
                );
            }
        }
        None => tracing::warn!("no state directory for the audit log (set LIFEBOAT_STATE_DIR)"),
    }
}

fn write_to(repo: &Repository, ev: &mut AuditEvent) -> Result<()> {
    if ev.destination.is_none() {
        ev.destination = Some(repo.storage().location());
    }
    repo.write_audit(ev).map(|_| ())
}

/// Now, RFC 3339 UTC to the millisecond.
fn now() -> String {
    let t = Timestamp::now();
    t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string()
}

/// The real uid and its name (`uid N` when it has none).
fn real_user() -> (u32, String) {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: an all-zero passwd is a valid value (null pointers, zero ids) that getpwuid_r
    // overwrites; it is read only when getpwuid_r returned 0 and set `found`.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and `buf` is as long as said.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    let name = if rc == 0 && !found.is_null() && !pw.pw_name.is_null() {
        // SAFETY: getpwuid_r succeeded: pw_name points to a NUL-terminated string in `buf`.
        unsafe { std::ffi::CStr::from_ptr(pw.pw_name) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("uid {uid}")
    };
    (uid, name)
}

/// `audit.log` in the state directory; `None` when there is none.
pub fn local_path() -> Option<PathBuf> {
    state_dir().map(|d| d.join(AUDIT_FILE))
}

/// Appends one event as one line with one `write` (`O_APPEND`: lines of concurrent writers
/// never interleave). Refuses a symlink (never followed), anything but a regular file, a file
/// with more than one hard link (another file's other name), and a file another user owns
/// (who could read what we append or feed the log lines).
fn append_local(path: &Path, ev: &AuditEvent) -> std::result::Result<(), String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symlink; refused, not followed".to_string(),
            _ => e.to_string(),
        })?;
    let md = f.metadata().map_err(|e| e.to_string())?;
    if !md.is_file() {
        return Err("not a regular file; refused".into());
    }
    // A hard link to another file of ours (as root: /etc/shadow, a unit file, a cron table)
    // made by a user who can write the state directory would have us append to that file.
    if md.nlink() != 1 {
        return Err(format!(
            "has {} hard links (a link to another file?); refused",
            md.nlink()
        ));
    }
    let euid = crate::trust::effective_uid();
    if md.uid() != euid {
        return Err(format!(
            "owned by uid {}, not by uid {euid} that runs lifeboat; refused",
            md.uid()
        ));
    }
    let mut line = ev.encode();
    line.push(b'\n');
    let n = (&f).write(&line).map_err(|e| e.to_string())?;
    if n != line.len() {
        return Err(format!("only {n} of {} bytes written", line.len()));
    }
    Ok(())
}

/// What `lifeboat log` shows.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    /// Only this app's events.
    pub app: Option<String>,
    /// The local file instead of the repository.
    pub local: bool,
    /// At most this many, the newest.
    pub limit: Option<usize>,
    /// Only events at or after this moment.
    pub since: Option<Timestamp>,
}

/// The events, oldest first, and what could not be read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogReport {
    /// Where they were read: the repository's location, or the local file's path.
    pub source: String,
    /// The events asked for, oldest first (newest last).
    pub events: Vec<AuditEvent>,
    /// Records (`audit/<id>`) or lines (`line N`) that could not be read, with why; skipped.
    pub damaged: Vec<Damaged>,
    /// Records not read because of the listing's bounds.
    pub unread: usize,
}

/// One record or line that could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct Damaged {
    /// `audit/<id>` or `line N`.
    pub what: String,
    /// Why.
    pub error: String,
}

/// The audit events of the repository (of `req.app`'s, or the only one, or `--repo`), or of
/// the local file with `req.local`; filtered and cut to the newest `limit`, oldest first.
/// Unreadable records and lines are skipped and listed in [`LogReport::damaged`].
pub fn log(setup: &Setup, req: &LogRequest) -> Result<LogReport> {
    let mut report = if req.local {
        read_local()?
    } else {
        let repo = setup.open(req.app.as_deref())?;
        let listing = repo.audit_records()?;
        LogReport {
            source: repo.storage().location(),
            events: listing.events.into_iter().map(|(_, e)| e).collect(),
            damaged: listing
                .damaged
                .into_iter()
                .map(|(name, error)| Damaged {
                    what: format!("audit/{name}"),
                    error,
                })
                .collect(),
            unread: listing.unread,
        }
    };
    report.events.retain(|e| {
        req.app.as_ref().is_none_or(|a| e.app.as_ref() == Some(a))
            && req
                .since
                .is_none_or(|s| e.timestamp().is_some_and(|t| t >= s))
    });
    if let Some(n) = req.limit {
        let cut = report.events.len().saturating_sub(n);
        report.events.drain(..cut);
    }
    Ok(report)
}

/// The local file's events (its last [`MAX_LOCAL_READ`] bytes), in the file's order (the
/// order they ended on this machine), sorted by time.
fn read_local() -> Result<LogReport> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = local_path().ok_or_else(|| {
        Error::new(
            ErrorKind::Usage,
            "no state directory, so no local audit log",
        )
        .with_hint("set LIFEBOAT_STATE_DIR")
    })?;
    let mut report = LogReport {
        source: path.display().to_string(),
        ..LogReport::default()
    };
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(Error::io(path.display(), e)),
    };
    let md = f.metadata().map_err(|e| Error::io(path.display(), e))?;
    if !md.is_file() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let skip = md.len().saturating_sub(MAX_LOCAL_READ);
    f.seek(SeekFrom::Start(skip))
        .map_err(|e| Error::io(path.display(), e))?;
    let mut text = Vec::new();
    f.take(MAX_LOCAL_READ)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(path.display(), e))?;
    let mut lines = text.split(|b| *b == b'\n').enumerate().peekable();
    if skip > 0 {
        lines.next(); // the tail of a line cut by the bound
    }
    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        let what = format!("line {}", n + 1);
        match AuditEvent::decode(line, &format!("{} {what}", path.display())) {
            Ok(e) => report.events.push(e),
            Err(e) => report.damaged.push(Damaged {
                what,
                error: e.message().to_string(),
            }),
        }
    }
    report.events.sort_by_key(|e| e.timestamp());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(command: &str) -> AuditEvent {
        let mut ev = Op::start(command, Some("chat")).event();
        ev.time = now();
        ev
    }

    /// Two writers appending at once (the daemon and a command) leave whole lines only.
    #[test]
    fn concurrent_appends_never_interleave() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join(AUDIT_FILE);
        let long = AuditEvent {
            message: "m".repeat(1900),
            ..event("backup")
        };
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        append_local(&path, &long).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 800);
        for l in lines {
            assert_eq!(AuditEvent::decode(l.as_bytes(), "line").unwrap(), long);
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// A failed hook's stderr (which can print anything: a token, an `env` dump) is not
    /// recorded, wherever the hook's error sits in the operation's message; the rest is.
    #[test]
    fn a_failed_hooks_output_is_not_recorded() {
        use crate::hooks::{run_hook, HookCommand, HookContext, HooksConfig, Phase};
        let hooks = HooksConfig {
            stop: Some(HookCommand::Shell(
                "echo TOKEN=hunter$((1+1)) >&2; printf 'x \\342\\237\\251 y\\n' >&2; exit 3".into(),
            )),
            ..HooksConfig::default()
        };
        let cx = HookContext {
            app: "chat".into(),
            operation: "restore",
            point: None,
            result: None,
        };
        let e = run_hook(&hooks, Phase::Stop, &cx).unwrap_err();
        assert!(e.message().contains("hunter2"), "{}", e.message());
        let e = Error::new(e.kind(), format!("{}; nothing was restored", e.message()));
        let ev = Op::start("restore", Some("chat")).event_of(Err(&e));
        let m = ev.bounded().message;
        // The command is named (the config's text), what it printed is not.
        assert!(m.contains("hunter$((1+1))"), "{m}");
        assert!(!m.contains("hunter2") && !m.contains("x ' y"), "{m}");
        assert!(m.contains("exit status 3"), "{m}");
        assert!(m.contains("not recorded"), "{m}");
        assert!(m.ends_with("; nothing was restored"), "{m}");
    }

    /// An operation that failed because the store did not answer is not written there again
    /// (another retry budget spent); a refusal of another kind is.
    #[test]
    fn a_store_that_just_failed_is_not_asked_again() {
        let down = Error::new(ErrorKind::Io, "s3: timed out").retryable();
        assert!(store_just_failed(&down));
        let refused = Error::new(ErrorKind::Usage, "no such point");
        assert!(!store_just_failed(&refused));
    }

    /// A hard link at the log's name (to a file the user running lifeboat owns, such as
    /// /etc/shadow for root) is refused and the file it names left untouched.
    #[test]
    fn a_hard_link_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("shadow");
        std::fs::write(&target, b"root:x:1::\n").unwrap();
        let path = d.path().join(AUDIT_FILE);
        std::fs::hard_link(&target, &path).unwrap();
        let e = append_local(&path, &event("backup")).unwrap_err();
        assert!(e.contains("hard link"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"root:x:1::\n");
    }

    /// A symlink at the log's name is refused and its target left untouched; so is a FIFO
    /// (which would block the operation).
    #[test]
    fn a_symlink_or_fifo_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("elsewhere");
        std::fs::write(&target, b"keep\n").unwrap();
        let path = d.path().join(AUDIT_FILE);
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = append_local(&path, &event("prune")).unwrap_err();
        assert!(e.contains("symlink"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep\n");
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Without a reader the open itself fails (ENXIO); with one, the type check refuses.
        assert!(append_local(&fifo, &event("prune")).is_err());
    }
}
