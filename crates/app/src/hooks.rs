//! An app's hooks: commands from `[app.NAME.hooks]` that run around an in-place restore
//! (`stop`, `start`) and a cold backup (`before_backup`, `after_backup`).
//!
//! ```toml
//! [app.chat.hooks]
//! stop  = "systemctl stop chat"                    # a string runs through /bin/sh -c
//! start = ["systemctl", "start", "chat"]           # an array is the argv itself
//! before_backup = "docker compose -f /srv/chat/compose.yaml stop"
//! after_backup  = "docker compose -f /srv/chat/compose.yaml start"
//! timeout = "60s"                                  # per hook (default 60 s)
//! ```
//!
//! Hooks come only from the local config, never from a point. A hook learns its context from
//! environment variables, never from text put into its command: `LIFEBOAT_APP`,
//! `LIFEBOAT_PHASE` (`stop`, `start`, `before_backup`, `after_backup`), `LIFEBOAT_OPERATION`
//! (`restore`, `rollback`, `backup`), `LIFEBOAT_POINT` (the point being restored, or the point a
//! backup wrote; unset before a backup) and, for `after_backup`, `LIFEBOAT_RESULT` (`ok` or
//! `failed`). lifeboat's own secrets (`SECRET_ENV`) are removed from its environment; stdin is
//! `/dev/null`; it runs in the config file's directory.
//!
//! A hook runs in a process group of its own. When it outlives its timeout, the whole group
//! gets SIGTERM, and SIGKILL [`KILL_GRACE`] later if anything of it is left. Its output goes to
//! the log (info level, `-v`), at most [`LOGGED_LINES`] lines per stream of at most
//! [`LINE_BYTES`] bytes each; a failure names the hook, its command, how it ended and the last
//! [`TAIL_LINES`] lines of its stderr (on one line, joined by ` | `, between `⟨` and `⟩`;
//! the audit log records the message without them, [`without_hook_output`]).
use std::collections::VecDeque;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use lifeboat_core::{Error, ErrorKind, Result};
use lifeboat_sources::scrub_child_env;
use serde::{Deserialize, Serialize};

/// How long a hook may run when `timeout` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Between SIGTERM and SIGKILL to a timed-out hook's process group.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Lines of each output stream written to the log, per hook run.
pub const LOGGED_LINES: usize = 200;
/// Longest line kept (longer lines are cut).
pub const LINE_BYTES: usize = 1024;
/// Lines of stderr quoted in a failure.
pub const TAIL_LINES: usize = 10;

/// A hook's command: a string runs through `/bin/sh -c`, an array is the argv.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum HookCommand {
    /// `/bin/sh -c TEXT`.
    Shell(String),
    /// The program and its arguments, no shell.
    Argv(Vec<String>),
}

impl HookCommand {
    /// How the command is shown in messages.
    pub fn display(&self) -> String {
        match self {
            HookCommand::Shell(s) => s.clone(),
            HookCommand::Argv(v) => format!("{v:?}"),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            HookCommand::Shell(s) => s.trim().is_empty(),
            HookCommand::Argv(v) => v.first().is_none_or(|p| p.is_empty()),
        }
    }
}

/// `[app.NAME.hooks]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Stops the app before an in-place restore writes anything.
    pub stop: Option<HookCommand>,
    /// Starts the app after an in-place restore (and again after a rollback).
    pub start: Option<HookCommand>,
    /// Runs before a backup (a cold backup stops the app here).
    pub before_backup: Option<HookCommand>,
    /// Runs after a backup, also when the backup (or `before_backup`) failed.
    pub after_backup: Option<HookCommand>,
    /// Per hook run (default [`DEFAULT_TIMEOUT`]): `"60s"`, `"2m"`, `"1m 30s"`.
    #[serde(default, deserialize_with = "de_duration")]
    pub timeout: Option<Duration>,
    /// Where hooks run: the config file's directory (so `./stop.sh` means the same as a
    /// relative path in the config does); `None`: lifeboat's own working directory.
    #[serde(skip)]
    pub dir: Option<std::path::PathBuf>,
}

impl HooksConfig {
    /// The first problem of this table, as `(key, message)`.
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        for (key, c) in [
            ("stop", &self.stop),
            ("start", &self.start),
            ("before_backup", &self.before_backup),
            ("after_backup", &self.after_backup),
        ] {
            if c.as_ref().is_some_and(HookCommand::is_empty) {
                return Some((key, "the command is empty".into()));
            }
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Some(("timeout", "must be more than zero".into()));
        }
        None
    }

    /// The timeout of each hook run.
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
}

/// A duration in jiff's friendly format (`"60s"`, `"2m"`, `"1h 5m"`) or ISO 8601 (`"PT60S"`).
pub(crate) fn de_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    let sd: jiff::SignedDuration = s.parse().map_err(|e| {
        serde::de::Error::custom(format!(
            "{s:?} is not a duration ({e}); write e.g. \"60s\" or \"2m\""
        ))
    })?;
    Duration::try_from(sd)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is negative")))
}

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before an in-place restore writes.
    Stop,
    /// After an in-place restore (or its rollback).
    Start,
    /// Before a backup.
    BeforeBackup,
    /// After a backup.
    AfterBackup,
}

impl Phase {
    /// The name used in the config, in `LIFEBOAT_PHASE` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Stop => "stop",
            Phase::Start => "start",
            Phase::BeforeBackup => "before_backup",
            Phase::AfterBackup => "after_backup",
        }
    }

    /// This phase's command in `hooks`.
    pub fn command(self, hooks: &HooksConfig) -> Option<&HookCommand> {
        match self {
            Phase::Stop => hooks.stop.as_ref(),
            Phase::Start => hooks.start.as_ref(),
            Phase::BeforeBackup => hooks.before_backup.as_ref(),
            Phase::AfterBackup => hooks.after_backup.as_ref(),
        }
    }
}

/// What a hook is told (environment variables; see the module documentation).
#[derive(Debug, Clone)]
pub struct HookContext {
    /// `LIFEBOAT_APP`.
    pub app: String,
    /// `LIFEBOAT_OPERATION`: `restore`, `rollback` or `backup`.
    pub operation: &'static str,
    /// `LIFEBOAT_POINT` (hex), when there is one.
    pub point: Option<String>,
    /// `LIFEBOAT_RESULT` (`after_backup`).
    pub result: Option<&'static str>,
}

/// A hook that ran and succeeded.
#[derive(Debug, Clone, Serialize)]
pub struct HookRun {
    /// Its phase.
    pub phase: Phase,
    /// Its command as written in the config.
    pub command: String,
    /// Wall time in milliseconds.
    pub ms: u64,
}

/// Runs the hook of `phase` in `hooks`, if one is configured (`Ok(None)` otherwise). Fails
/// (kind `Other`, exit 1) when it cannot be started, exits non-zero, is killed by a signal or
/// outlives its timeout; the message names the phase, the command, how it ended and the end
/// of its stderr.
pub fn run_hook(hooks: &HooksConfig, phase: Phase, cx: &HookContext) -> Result<Option<HookRun>> {
    let Some(cmd) = phase.command(hooks) else {
        return Ok(None);
    };
    run_command(cmd, phase, cx, hooks).map(Some)
}

fn run_command(
    cmd: &HookCommand,
    phase: Phase,
    cx: &HookContext,
    hooks: &HooksConfig,
) -> Result<HookRun> {
    let timeout = hooks.timeout();
    let name = format!("{} hook `{}`", phase.as_str(), cmd.display());
    let mut c = match cmd {
        HookCommand::Shell(s) => {
            let mut c = Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
        HookCommand::Argv(v) => {
            let mut c = Command::new(&v[0]);
            c.args(&v[1..]);
            c
        }
    };
    scrub_child_env(&mut c);
    for k in ["LIFEBOAT_POINT", "LIFEBOAT_RESULT"] {
        c.env_remove(k);
    }
    c.env("LIFEBOAT_APP", &cx.app)
        .env("LIFEBOAT_PHASE", phase.as_str())
        .env("LIFEBOAT_OPERATION", cx.operation);
    if let Some(p) = &cx.point {
        c.env("LIFEBOAT_POINT", p);
    }
    if let Some(r) = cx.result {
        c.env("LIFEBOAT_RESULT", r);
    }
    if let Some(d) = &hooks.dir {
        c.current_dir(d);
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    tracing::info!("running {name}");
    let started = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| Error::io(format!("start {name}"), e).with_kind(ErrorKind::Other))?;
    let pgid = child.id() as i32;
    let out = Arc::new(Output::default());
    let readers = [
        child
            .stdout
            .take()
            .map(|s| reader(s, phase, "stdout", out.clone())),
        child
            .stderr
            .take()
            .map(|s| reader(s, phase, "stderr", out.clone())),
    ];
    let status = wait(&mut child, pgid, started + timeout);
    // The output ends when every process holding the pipes is gone; a hook that leaves a
    // daemon behind with them open is not waited for.
    out.wait_closed(readers.iter().flatten().count(), Duration::from_secs(2));
    let ms = started.elapsed().as_millis() as u64;
    let how = match status {
        Ok(Ended::Exited(st)) if st.success() => {
            tracing::info!("{name} succeeded ({ms} ms)");
            return Ok(HookRun {
                phase,
                command: cmd.display(),
                ms,
            });
        }
        Ok(Ended::Exited(st)) => describe_status(st),
        Ok(Ended::TimedOut) => format!(
            "timed out after {} and was killed (SIGTERM to its process group, SIGKILL {} s later)",
            crate::duration_ms(timeout.as_millis() as u64),
            KILL_GRACE.as_secs()
        ),
        Err(e) => format!("could not be waited for: {e}"),
    };
    let tail = out.tail();
    let tail = if tail.is_empty() {
        " (no stderr)".to_string()
    } else {
        // Between the two marks, which never occur inside (so the audit log can leave it out).
        let tail: Vec<String> = tail
            .iter()
            .map(|l| l.replace([OUTPUT_START, OUTPUT_END], "'"))
            .collect();
        format!(
            "; the end of its stderr: {OUTPUT_START}{}{OUTPUT_END}",
            tail.join(" | ")
        )
    };
    Err(Error::new(ErrorKind::Other, format!("{name} {how}{tail}")))
}

/// Opens the tail of a failed hook's stderr in its error message.
const OUTPUT_START: char = '\u{27e8}';
/// Closes it.
const OUTPUT_END: char = '\u{27e9}';

/// `message` (an error's, which may have quoted a failed hook's stderr anywhere in it) with
/// every quoted hook output replaced by `not recorded`: what a program printed can hold
/// anything (a connection string, a token, an `env` dump), and the audit log keeps it for
/// good, in the repository too.
pub(crate) fn without_hook_output(message: &str) -> std::borrow::Cow<'_, str> {
    if !message.contains(OUTPUT_START) {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(OUTPUT_START) {
        out.push_str(&rest[..i]);
        out.push(OUTPUT_START);
        out.push_str("not recorded");
        out.push(OUTPUT_END);
        rest = &rest[i + OUTPUT_START.len_utf8()..];
        rest = match rest.find(OUTPUT_END) {
            Some(j) => &rest[j + OUTPUT_END.len_utf8()..],
            None => "",
        };
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

fn describe_status(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("failed with exit status {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        _ => format!("failed ({st})"),
    }
}

enum Ended {
    Exited(ExitStatus),
    TimedOut,
}

/// Waits for the hook until `deadline`; then SIGTERM to its group, and SIGKILL after
/// [`KILL_GRACE`] unless the whole group is gone by then.
fn wait(child: &mut std::process::Child, pgid: i32, deadline: Instant) -> std::io::Result<Ended> {
    let tick = Duration::from_millis(20);
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(Ended::Exited(st));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(tick);
    }
    kill_group(pgid, libc::SIGTERM);
    let grace = Instant::now() + KILL_GRACE;
    let mut reaped = false;
    while Instant::now() < grace {
        if !reaped && child.try_wait()?.is_some() {
            reaped = true;
        }
        // SAFETY: kill with signal 0 only checks whether the group has a process left.
        if reaped && unsafe { libc::kill(-pgid, 0) } != 0 {
            return Ok(Ended::TimedOut);
        }
        std::thread::sleep(tick);
    }
    kill_group(pgid, libc::SIGKILL);
    if !reaped {
        child.wait()?;
    }
    Ok(Ended::TimedOut)
}

fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: a signal to the process group the hook was spawned into (its pid is the group
    // id, `process_group(0)`); a group that no longer exists gives ESRCH, which is fine.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// What the readers collected: the last stderr lines, and how many streams are closed.
#[derive(Default)]
struct Output {
    state: Mutex<(VecDeque<String>, usize)>,
    closed: Condvar,
}

impl Output {
    fn push_stderr(&self, line: String) {
        let mut s = self.state.lock().expect("not poisoned");
        if s.0.len() == TAIL_LINES {
            s.0.pop_front();
        }
        s.0.push_back(line);
    }

    fn close(&self) {
        self.state.lock().expect("not poisoned").1 += 1;
        self.closed.notify_all();
    }

    fn wait_closed(&self, streams: usize, within: Duration) {
        let s = self.state.lock().expect("not poisoned");
        let _ = self.closed.wait_timeout_while(s, within, |s| s.1 < streams);
    }

    fn tail(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("not poisoned")
            .0
            .iter()
            .cloned()
            .collect()
    }
}

/// Reads one output stream in bounded lines: each logged (the first [`LOGGED_LINES`]) and,
/// for stderr, kept in the tail.
fn reader(
    mut r: impl Read + Send + 'static,
    phase: Phase,
    stream: &'static str,
    out: Arc<Output>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut line: Vec<u8> = Vec::new();
        let mut logged = 0usize;
        let mut emit = |line: &mut Vec<u8>| {
            // Control characters (escape sequences) are shown, not sent to a terminal.
            let text: String = String::from_utf8_lossy(line)
                .trim_end()
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            line.clear();
            if logged < LOGGED_LINES {
                tracing::info!("{} hook {stream}: {text}", phase.as_str());
            } else if logged == LOGGED_LINES {
                tracing::info!(
                    "{} hook {stream}: more than {LOGGED_LINES} lines; the rest is not logged",
                    phase.as_str()
                );
            }
            logged += 1;
            if stream == "stderr" {
                out.push_stderr(text);
            }
        };
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    emit(&mut line);
                } else if line.len() < LINE_BYTES {
                    line.push(b);
                }
            }
        }
        if !line.is_empty() {
            emit(&mut line);
        }
        out.close();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> HookContext {
        HookContext {
            app: "chat".into(),
            operation: "restore",
            point: Some("ab".into()),
            result: None,
        }
    }

    #[test]
    fn a_failing_hook_is_named_with_its_status_and_stderr() {
        let hooks = HooksConfig {
            stop: Some(HookCommand::Shell(
                "for i in $(seq 1 30); do echo line$i >&2; done; exit 3".into(),
            )),
            ..HooksConfig::default()
        };
        let e = run_hook(&hooks, Phase::Stop, &cx()).unwrap_err();
        let m = e.to_string();
        assert!(m.starts_with("stop hook `for i"), "{m}");
        assert!(m.contains("exit status 3"), "{m}");
        assert!(m.contains("line30") && m.contains("line21"), "{m}");
        assert!(m.contains("line29 | line30"), "{m}");
        let hooks = HooksConfig {
            stop: Some(HookCommand::Shell(
                "printf 'a\\033]52;c;x\\007b\\n' >&2; exit 1".into(),
            )),
            ..HooksConfig::default()
        };
        let m = run_hook(&hooks, Phase::Stop, &cx())
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("a\\u{1b}]52;c;x\\u{7}b"),
            "control characters shown: {m}"
        );
        assert!(!m.contains("line20"), "only the last 10 lines: {m}");
    }

    #[test]
    fn context_goes_through_the_environment_and_secrets_do_not() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("env");
        let hooks = HooksConfig {
            start: Some(HookCommand::Argv(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "echo \"$LIFEBOAT_APP $LIFEBOAT_PHASE $LIFEBOAT_OPERATION $LIFEBOAT_POINT ${{AWS_SESSION_TOKEN:-none}}\" > {}",
                    f.display()
                ),
            ])),
            ..HooksConfig::default()
        };
        // A secret of lifeboat's environment (SECRET_ENV) that no other test reads.
        std::env::set_var("AWS_SESSION_TOKEN", "secret");
        let run = run_hook(&hooks, Phase::Start, &cx()).unwrap().unwrap();
        assert_eq!(run.phase, Phase::Start);
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "chat start restore ab none\n"
        );
        assert!(run_hook(&hooks, Phase::Stop, &cx()).unwrap().is_none());
    }

    #[test]
    fn a_missing_program_is_an_error_naming_the_hook() {
        let hooks = HooksConfig {
            stop: Some(HookCommand::Argv(vec!["/nonexistent/stop-it".into()])),
            ..HooksConfig::default()
        };
        let e = run_hook(&hooks, Phase::Stop, &cx()).unwrap_err();
        assert!(e.to_string().contains("start stop hook"), "{e}");
    }
}
