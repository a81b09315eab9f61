//! `lifeboat install`: what runs lifeboat unattended, generated from `lifeboat.toml`.
//!
//! - [`systemd_service`]: a hardened `lifeboat.service` running `lifeboat run` (the daemon),
//!   its sandbox computed from the config (what it must write, whether it needs the network
//!   and home directories). Every directive carries a comment saying why.
//! - [`systemd_timers`]: instead of the daemon, one oneshot service and one `.timer` per
//!   scheduled job (backup, copy, forget), the schedule turned into `OnCalendar=`
//!   ([`on_calendar`]).
//! - [`crontab`]: crontab lines, one per job ([`cron_spec`]), each under `flock -w` so two
//!   jobs of one app never overlap, output to syslog or a file.
//!
//! Everything here is a pure function of the config and the options (no file is read or
//! written); the CLI writes the result.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_core::{Error, ErrorKind, Result};

use crate::config::Config;
use crate::human::one_line;
use crate::jobs::JobKind;
use crate::schedule::{CronFields, Form, Schedule};

/// Default `[daemon] grace` of `lifeboat run` (kept in step with the daemon's).
const DEFAULT_GRACE: Duration = Duration::from_secs(300);
/// What systemd gives the daemon beyond the grace to reach a safe point and exit (the daemon
/// itself waits 60 s for stopped jobs before it exits anyway).
const STOP_MARGIN: Duration = Duration::from_secs(90);
/// Where the units keep the storage cache (`CacheDirectory=lifeboat`).
pub const CACHE_DIR: &str = "/var/cache/lifeboat";
/// The state directory of a root lifeboat (`StateDirectory=lifeboat`).
pub const STATE_DIR: &str = "/var/lib/lifeboat";

/// How the generated files call lifeboat.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The lifeboat binary (absolute).
    pub exe: PathBuf,
    /// The config file (absolute).
    pub config: PathBuf,
    /// crontab: directory of the per-app lock files (default `/run/lifeboat`, created 0700: a
    /// world-writable one such as `/run/lock` would let any user hold an app's lock).
    pub lock_dir: PathBuf,
    /// crontab: append each job's output to this file instead of sending it to syslog.
    pub log_file: Option<PathBuf>,
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFile {
    /// File name (`lifeboat.service`, `lifeboat-chat-backup.timer`).
    pub name: String,
    /// Contents.
    pub contents: String,
}

/// When a systemd timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `OnCalendar=` expression (a wall-clock schedule; `Persistent=` catches up).
    Calendar(String),
    /// `OnUnitActiveSec=`: an `every` period that no calendar expression can hold.
    Interval(Duration),
}

/// One scheduled job as the generated units and lines see it.
struct JobSpec<'a> {
    app: &'a str,
    kind: JobKind,
    key: &'static str,
    schedule: &'a Schedule,
    tz: Option<&'a str>,
    random_delay: Duration,
    /// The lifeboat invocations (argv after the binary) the job runs, in order.
    runs: Vec<Vec<String>>,
}

fn job_specs<'a>(config: &'a Config, o: &InstallOptions) -> Vec<JobSpec<'a>> {
    let cfg = o.config.display().to_string();
    let mut out = Vec::new();
    for (name, a) in &config.app {
        let base = |extra: &[&str]| -> Vec<String> {
            let mut v = vec!["-c".to_string(), cfg.clone()];
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        for (kind, key, s) in [
            (JobKind::Backup, "schedule", &a.schedule),
            (JobKind::Copy, "copy_schedule", &a.copy_schedule),
            (JobKind::Forget, "forget_schedule", &a.forget_schedule),
            (JobKind::Drill, "drill_schedule", &a.drill_schedule),
        ] {
            let Some(schedule) = s else { continue };
            // The same operations `lifeboat run` runs for the job (jobs::run_job).
            let runs = match kind {
                JobKind::Backup => vec![base(&["backup", name, "--tag", "scheduled"])],
                JobKind::Copy => vec![base(&["copy", name])],
                JobKind::Forget => std::iter::once(base(&["forget", name, "--prune"]))
                    .chain(
                        a.copy_to
                            .iter()
                            .map(|r| base(&["-r", r, "forget", name, "--prune"])),
                    )
                    .collect(),
                // (The newest point: the daemon's every-fourth-day older point needs its
                // state; run `lifeboat drill APP POINT` by hand for a chosen one.)
                JobKind::Drill => {
                    let mut v = vec!["drill".to_string(), name.clone()];
                    if let Some(d) = &config.daemon.scratch_dir {
                        v.extend(["--scratch".to_string(), d.display().to_string()]);
                    }
                    let v: Vec<&str> = v.iter().map(String::as_str).collect();
                    vec![base(&v)]
                }
            };
            out.push(JobSpec {
                app: name,
                kind,
                key,
                schedule,
                tz: a.timezone.as_deref().or(config.daemon.timezone.as_deref()),
                random_delay: a.random_delay.unwrap_or_default(),
                runs,
            });
        }
    }
    out
}

fn unexpressible(j: &JobSpec<'_>, target: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!(
            "app.{}.{} = {:?} cannot be {target}: {why}",
            j.app,
            j.key,
            j.schedule.to_string()
        ),
    )
    .with_hint("run `lifeboat run` (the daemon runs every schedule), or write a schedule that can")
}

// ---------------------------------------------------------------------------------------
// Schedules in other schedulers' syntax.

/// The systemd timer trigger of a schedule in time zone `tz` (None: the system's).
///
/// Named schedules map directly; a cron expression becomes the `OnCalendar=` expression of
/// the same slots; `every D` becomes a calendar expression when `D` divides a minute, an hour
/// or a day (lifeboat aligns `every` to the Unix epoch, so the expression is in UTC), else
/// an `OnUnitActiveSec=` interval.
pub fn on_calendar(s: &Schedule, tz: Option<&str>) -> std::result::Result<Trigger, String> {
    let zone = |e: String| match tz {
        Some(z) => format!("{e} {z}"),
        None => e,
    };
    Ok(Trigger::Calendar(match s.form() {
        Form::Hourly => zone("*-*-* *:00:00".into()),
        Form::Daily => zone("*-*-* 00:00:00".into()),
        Form::Weekly => zone("Mon *-*-* 00:00:00".into()),
        Form::Monthly => zone("*-*-01 00:00:00".into()),
        Form::Every(d) => match every_calendar(d) {
            Some(e) => format!("{e} UTC"),
            None => return Ok(Trigger::Interval(d)),
        },
        Form::Cron(c) => zone(cron_calendar(&c)?),
    }))
}

fn every_calendar(d: Duration) -> Option<String> {
    if d.subsec_nanos() != 0 {
        return None;
    }
    let s = d.as_secs();
    let divides = |n: u64, of: u64| n > 0 && n < of && of.is_multiple_of(n);
    if divides(s, 60) {
        Some(format!("*-*-* *:*:00/{s}"))
    } else if s == 60 {
        Some("*-*-* *:*:00".into())
    } else if s.is_multiple_of(60) && divides(s / 60, 60) {
        Some(format!("*-*-* *:00/{}:00", s / 60))
    } else if s == 3600 {
        Some("*-*-* *:00:00".into())
    } else if s.is_multiple_of(3600) && divides(s / 3600, 24) {
        Some(format!("*-*-* 00/{}:00:00", s / 3600))
    } else if s == 86_400 {
        Some("*-*-* 00:00:00".into())
    } else {
        None
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// `OnCalendar=` for a cron expression: `0 3 * * 1-5` is `Mon..Fri *-*-* 03:00:00`.
fn cron_calendar(c: &CronFields<'_>) -> std::result::Result<String, String> {
    let sec = calendar_field(c.second, "second", 0, None, true)?;
    let min = calendar_field(c.minute, "minute", 0, None, true)?;
    let hour = calendar_field(c.hour, "hour", 0, None, true)?;
    let dom = calendar_field(c.day_of_month, "day of month", 1, None, false)?;
    let month = calendar_field(c.month, "month", 1, Some(&MONTHS), false)?;
    let days = weekdays(c.day_of_week)?;
    let dow = if days.iter().all(|d| *d) {
        String::new()
    } else {
        // systemd's week starts on Monday: Mon..Sat, then Sun.
        let order = [1, 2, 3, 4, 5, 6, 0];
        let mut parts = Vec::new();
        let mut i = 0;
        while i < 7 {
            if !days[order[i]] {
                i += 1;
                continue;
            }
            let start = i;
            while i + 1 < 7 && days[order[i + 1]] {
                i += 1;
            }
            let (a, b) = (SYSTEMD_DAYS[order[start]], SYSTEMD_DAYS[order[i]]);
            parts.push(match i - start {
                0 => a.to_string(),
                1 => format!("{a},{b}"),
                _ => format!("{a}..{b}"),
            });
            i += 1;
        }
        format!("{} ", parts.join(","))
    };
    Ok(format!("{dow}*-{month}-{dom} {hour}:{min}:{sec}"))
}

/// One cron field (not the day of week) in systemd's calendar syntax: lists stay lists,
/// `a-b` is `a..b`, `*/n` is `FIRST/n`, names are numbers; time fields are two digits.
fn calendar_field(
    field: &str,
    what: &str,
    first: u32,
    names: Option<&[&str]>,
    pad: bool,
) -> std::result::Result<String, String> {
    let value = |v: &str| -> std::result::Result<String, String> {
        let n = if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() {
            v.parse::<u32>().map_err(|e| e.to_string())?
        } else if let Some(i) = names.and_then(|n| {
            n.iter()
                .position(|name| name.eq_ignore_ascii_case(v))
                .map(|i| i as u32 + first)
        }) {
            i
        } else {
            return Err(format!("{what} {v:?} has no systemd calendar equivalent"));
        };
        Ok(if pad {
            format!("{n:02}")
        } else {
            n.to_string()
        })
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let step = step
            .map(|s| {
                s.parse::<u32>()
                    .map_err(|_| format!("{what} step {s:?} has no systemd calendar equivalent"))
            })
            .transpose()?;
        let range = match range {
            "*" | "?" => match step {
                Some(_) => value(&first.to_string())?,
                None => "*".to_string(),
            },
            r => match r.split_once('-') {
                Some((a, b)) => format!("{}..{}", value(a)?, value(b)?),
                None => value(r)?,
            },
        };
        out.push(match step {
            Some(s) => format!("{range}/{s}"),
            None => range,
        });
    }
    Ok(out.join(","))
}

/// The days a cron day-of-week field selects, indexed 0 (Sunday) to 6.
fn weekdays(field: &str) -> std::result::Result<[bool; 7], String> {
    let err = || format!("day of week {field:?} has no systemd calendar equivalent");
    let day = |v: &str| -> std::result::Result<usize, String> {
        if let Ok(n) = v.parse::<usize>() {
            return (n <= 7).then_some(n).ok_or_else(err);
        }
        DAYS.iter()
            .position(|d| d.eq_ignore_ascii_case(v))
            .ok_or_else(err)
    };
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<usize>().map_err(|_| err())?),
            None => (part, 1),
        };
        if step == 0 {
            return Err(err());
        }
        let (a, b) = match range {
            "*" | "?" => (0, 6),
            r => match r.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None if step > 1 => (day(r)?, 6),
                None => (day(r)?, day(r)?),
            },
        };
        if a > b {
            return Err(err());
        }
        for d in (a..=b).step_by(step) {
            days[d % 7] = true;
        }
    }
    Ok(days)
}

/// The five crontab time fields of a schedule. Cron has no seconds, and `every D` only
/// when `D` is a whole number of minutes dividing an hour, or of hours dividing a day.
pub fn cron_spec(s: &Schedule) -> std::result::Result<String, String> {
    Ok(match s.form() {
        Form::Hourly => "0 * * * *".into(),
        Form::Daily => "0 0 * * *".into(),
        Form::Weekly => "0 0 * * 1".into(),
        Form::Monthly => "0 0 1 * *".into(),
        Form::Every(d) => {
            let secs = d.as_secs();
            let (m, h) = (secs / 60, secs / 3600);
            if d.subsec_nanos() != 0 || !secs.is_multiple_of(60) {
                return Err("cron cannot run more precisely than whole minutes".into());
            } else if m < 60 && 60u64.is_multiple_of(m) {
                if m == 1 {
                    "* * * * *".into()
                } else {
                    format!("*/{m} * * * *")
                }
            } else if secs.is_multiple_of(3600) && h < 24 && 24u64.is_multiple_of(h) {
                if h == 1 {
                    "0 * * * *".into()
                } else {
                    format!("0 */{h} * * *")
                }
            } else if secs == 86_400 {
                "0 0 * * *".into()
            } else {
                return Err(
                    "cron repeats only within an hour or a day: the period must divide an hour (in minutes) or a day (in hours)"
                        .into(),
                );
            }
        }
        Form::Cron(c) => {
            if c.second != "0" {
                return Err("cron has no seconds field".into());
            }
            format!(
                "{} {} {} {} {}",
                c.minute, c.hour, c.day_of_month, c.month, c.day_of_week
            )
        }
    })
}

// ---------------------------------------------------------------------------------------
// The sandbox.

/// What the config needs from the system, which decides the sandbox.
struct Needs {
    /// Directories the jobs write (collapsed: no entry under another), each with why.
    write: Vec<(PathBuf, Vec<String>)>,
    /// Why the home directories must stay visible (empty: `ProtectHome=yes`).
    home: Vec<String>,
    /// Remote repositories (S3, SFTP): the network is needed.
    remote: Vec<String>,
    /// Why traffic to other hosts than this one may be needed (empty: localhost only).
    other_hosts: Vec<String>,
    /// Why hooks or wrappers may switch users or signal other users' processes.
    helpers: Vec<String>,
    /// Targets whose directory is `/`, which is never made writable.
    at_root: Vec<PathBuf>,
}

fn under_home(p: &Path) -> bool {
    ["/home", "/root", "/run/user"]
        .iter()
        .any(|h| p.starts_with(h))
}

fn loopback_url(url: &str) -> bool {
    // A libpq URL `postgresql://user@host:port/db` or `host=... port=...`.
    let host = if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let hostport = authority.rsplit('@').next().unwrap_or("");
        let host = if let Some(h) = hostport.strip_prefix('[') {
            h.split(']').next().unwrap_or("")
        } else {
            hostport.split(':').next().unwrap_or("")
        };
        host.to_string()
    } else {
        url.split_whitespace()
            .find_map(|kv| kv.strip_prefix("host="))
            .unwrap_or("")
            .to_string()
    };
    // No host: libpq's Unix socket.
    host.is_empty()
        || host.starts_with('/')
        || host.starts_with("%2F")
        || matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1")
}

fn needs(config: &Config, o: &InstallOptions) -> Needs {
    let mut write: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut add = |p: PathBuf, why: String| write.entry(p).or_default().push(why);
    let mut read: Vec<PathBuf> = vec![o.exe.clone(), o.config.clone()];
    let mut home = Vec::new();
    let mut remote = Vec::new();
    let mut other_hosts = Vec::new();
    let mut helpers = Vec::new();
    let mut at_root = Vec::new();
    for (name, r) in &config.repository {
        if r.path.contains("://") {
            remote.push(format!("{name} ({})", r.path));
            other_hosts.push(format!("repository {name} is remote"));
            if r.path.starts_with("sftp://") {
                if r.identity_file.is_none() {
                    home.push(format!(
                        "repository {name} uses ~/.ssh keys (no identity_file)"
                    ));
                }
                if r.known_hosts.is_none() && r.host_key_fingerprint.is_none() {
                    home.push(format!(
                        "repository {name} uses ~/.ssh/known_hosts (no known_hosts)"
                    ));
                }
            }
        } else {
            add(PathBuf::from(&r.path), format!("local repository {name}"));
        }
        if r.password_command.is_some() {
            other_hosts.push(format!("repository {name} has a password_command"));
        }
        read.extend(r.password_file.iter().map(PathBuf::from));
        read.extend(
            [&r.secret_access_key_file, &r.identity_file, &r.known_hosts]
                .into_iter()
                .flatten()
                .cloned(),
        );
    }
    if let Some(dir) = &config.daemon.scratch_dir {
        if config.app.values().any(|a| a.drill_schedule.is_some()) {
            add(
                dir.clone(),
                "drills' scratch copies ([daemon] scratch_dir)".into(),
            );
        }
    }
    for (name, a) in &config.app {
        // Each source's directory: SQLite keeps its -wal and -shm beside the database (even
        // to read it), and an in-place restore stages each tree or file beside its target.
        let sources = a
            .sqlite
            .iter()
            .map(|p| (p, "SQLite's -wal/-shm and restores beside"))
            .chain(
                a.files
                    .iter()
                    .chain(&a.secrets)
                    .chain(&a.config)
                    .map(|p| (p, "restores staged beside")),
            );
        for (p, what) in sources {
            let why = format!("{what} {}", p.display());
            match p.parent() {
                Some(d) if d != Path::new("/") && !d.as_os_str().is_empty() => {
                    add(d.to_path_buf(), why);
                }
                _ => {
                    at_root.push(p.clone());
                    add(p.clone(), why);
                }
            }
        }
        let hooks = &a.hooks;
        if hooks.stop.is_some()
            || hooks.start.is_some()
            || hooks.before_backup.is_some()
            || hooks.after_backup.is_some()
        {
            other_hosts.push(format!("app {name} has hooks"));
            helpers.push(format!("app {name} has hooks"));
        }
        if let Some(u) = &a.checks.health_url {
            if !loopback_url(u) {
                other_hosts.push(format!("app {name}'s health_url is not on this host"));
            }
        }
        for pg in &a.postgres {
            if !pg.command.is_empty() {
                helpers.push(format!(
                    "app {name} runs PostgreSQL tools through a command"
                ));
            }
            if !pg.url.as_deref().is_none_or(loopback_url) {
                other_hosts.push(format!(
                    "app {name}'s PostgreSQL server is not on this host"
                ));
            }
            read.extend(pg.password_file.iter().chain(&pg.bin_dir).cloned());
        }
    }
    if let Some(d) = config.daemon.state_file.as_ref().and_then(|f| f.parent()) {
        add(d.to_path_buf(), "[daemon] state_file".into());
    }
    // Collapse: a directory under another one listed adds nothing.
    let mut collapsed: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for (p, why) in write {
        // In path order an ancestor comes first.
        match collapsed.iter_mut().find(|(q, _)| p.starts_with(q)) {
            Some((_, w)) => w.extend(why),
            None => collapsed.push((p, why)),
        }
    }
    let write = collapsed;
    for p in write.iter().map(|(p, _)| p).chain(&read) {
        if under_home(p) {
            home.push(format!("{} is under a home directory", p.display()));
        }
    }
    other_hosts.dedup();
    helpers.dedup();
    Needs {
        write,
        home,
        remote,
        other_hosts,
        helpers,
        at_root,
    }
}

/// A value in a unit file: specifiers (`%`) and variables (`$`) escaped, quoted when it
/// holds spaces, quotes or backslashes.
fn unit_word(s: &str) -> String {
    let s = s.replace('%', "%%").replace('$', "$$");
    if s.is_empty() || s.contains([' ', '\t', '"', '\'', '\\', ';']) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// An app's name as part of a unit name: characters systemd does not take become `\xHH`.
fn unit_name_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn exec_line(o: &InstallOptions, args: &[String]) -> String {
    std::iter::once(o.exe.display().to_string())
        .chain(args.iter().cloned())
        .map(|a| unit_word(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

/// Lines `(comment, directive)` of the sandbox every generated service shares.
fn sandbox(n: &Needs, o: &InstallOptions) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut add = |c: &str, d: String| v.push((c.to_string(), d));
    add(
        "Runs as root: a backup reads every user's files, a restore sets their owners back.",
        "User=root".into(),
    );
    add(
        "Files lifeboat creates (points in a local repository, state, cache) are the owner's only.",
        "UMask=0077".into(),
    );
    add(
        "The whole file system is read-only for the jobs, except the paths below.",
        "ProtectSystem=strict".into(),
    );
    if n.write.is_empty() {
        add("The config names no path the jobs write.", String::new());
    }
    if !n.write.is_empty() {
        add(
            "'-': a path missing at start does not stop the service (a backup names the missing source).",
            String::new(),
        );
    }
    for (p, why) in &n.write {
        add(
            &format!("Written: {}: {}.", p.display(), why.join("; ")),
            format!("ReadWritePaths={}", unit_word(&format!("-{}", p.display()))),
        );
    }
    for p in &n.at_root {
        add(
            &format!(
                "{} sits in /, which stays read-only: an in-place restore of it must run outside this service.",
                p.display()
            ),
            String::new(),
        );
    }
    add(
        &format!("{STATE_DIR}: what ran when, the newest points seen (created 0700, writable)."),
        "StateDirectory=lifeboat".into(),
    );
    add(
        &format!("{CACHE_DIR}: cached keys, indexes and point manifests of remote repositories."),
        "CacheDirectory=lifeboat".into(),
    );
    add(
        "Use that cache rather than ~/.cache.",
        format!("Environment=LIFEBOAT_CACHE_DIR={CACHE_DIR}"),
    );
    add(
        "Optional: LIFEBOAT_PASSWORD, AWS_* and PG* variables the config does not hold (mode 0600).",
        // The rest of the line is the path (no quoting); `%` would be a specifier.
        format!(
            "EnvironmentFile=-{}",
            o.config
                .parent()
                .unwrap_or(Path::new("/etc/lifeboat"))
                .join("lifeboat.env")
                .display()
                .to_string()
                .replace('%', "%%")
        ),
    );
    if n.home.is_empty() {
        add(
            "No path of the config is under /home, /root or /run/user: hide them.",
            "ProtectHome=yes".into(),
        );
    } else {
        add(
            &format!(
                "ProtectHome= not set (home directories stay read-only through ProtectSystem=strict): {}.",
                n.home.join("; ")
            ),
            String::new(),
        );
    }
    add(
        "A private /tmp, emptied when the service stops.",
        "PrivateTmp=yes".into(),
    );
    add(
        "Only pseudo devices (null, zero, random); no disks or hardware.",
        "PrivateDevices=yes".into(),
    );
    add(
        "Neither lifeboat nor a hook can gain privileges (setuid programs such as sudo do not work in hooks).",
        "NoNewPrivileges=yes".into(),
    );
    let mut caps = vec![
        "CAP_DAC_READ_SEARCH",
        "CAP_DAC_OVERRIDE",
        "CAP_CHOWN",
        "CAP_FOWNER",
        "CAP_FSETID",
    ];
    add(
        "Root keeps only: CAP_DAC_READ_SEARCH to read and list every user's files (backup), CAP_DAC_OVERRIDE to write into their directories, CAP_CHOWN to give restored files their owners, CAP_FOWNER to set modes and times of files it does not own, CAP_FSETID to keep setuid/setgid bits across that chown.",
        String::new(),
    );
    if !n.helpers.is_empty() {
        caps.extend(["CAP_SETUID", "CAP_SETGID", "CAP_KILL"]);
        add(
            &format!(
                "CAP_SETUID, CAP_SETGID, CAP_KILL: hooks and wrappers may switch users (runuser) or signal an app ({}).",
                n.helpers.join("; ")
            ),
            String::new(),
        );
    }
    add("", format!("CapabilityBoundingSet={}", caps.join(" ")));
    add(
        "No job creates setuid/setgid files (restores are run by hand, outside this service).",
        "RestrictSUIDSGID=yes".into(),
    );
    add(
        "Kernel tunables (/proc/sys, /sys) read-only.",
        "ProtectKernelTunables=yes".into(),
    );
    add(
        "No kernel module loading.",
        "ProtectKernelModules=yes".into(),
    );
    add("No kernel log access.", "ProtectKernelLogs=yes".into());
    add(
        "Control groups read-only.",
        "ProtectControlGroups=yes".into(),
    );
    add("The clock cannot be set.", "ProtectClock=yes".into());
    add(
        "The hostname cannot be changed.",
        "ProtectHostname=yes".into(),
    );
    add(
        "No new namespaces (a hook running rootless containers would need this removed).",
        "RestrictNamespaces=yes".into(),
    );
    add(
        "The execution domain (personality) is fixed.",
        "LockPersonality=yes".into(),
    );
    add("No realtime scheduling.", "RestrictRealtime=yes".into());
    add(
        "Only native system calls (no 32-bit compat entry points).",
        "SystemCallArchitectures=native".into(),
    );
    add(
        "Sockets: Unix (journald, D-Bus for hooks' systemctl, PostgreSQL) and IP only.",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6".into(),
    );
    if n.other_hosts.is_empty() {
        add(
            "Every repository is local and nothing else needs another host: IP traffic only to this host.",
            "IPAddressDeny=any".into(),
        );
        add("", "IPAddressAllow=localhost".into());
    } else {
        add(
            &format!("No IP address restriction: {}.", n.other_hosts.join("; ")),
            String::new(),
        );
    }
    add(
        "Backups yield to the machine's real work.",
        "Nice=10".into(),
    );
    add("", "IOSchedulingClass=best-effort".into());
    add("", "IOSchedulingPriority=7".into());
    v
}

fn render(sections: &[(&str, Vec<(String, String)>)], header: &[String]) -> String {
    let mut s = String::new();
    for h in header {
        s.push_str(&format!("# {}\n", one_line(h)));
    }
    for (name, lines) in sections {
        s.push_str(&format!("\n[{name}]\n"));
        for (comment, directive) in lines {
            if !comment.is_empty() {
                s.push_str(&format!("# {}\n", one_line(comment)));
            }
            if !directive.is_empty() {
                s.push_str(&one_line(directive));
                s.push('\n');
            }
        }
    }
    s
}

fn unit_section(description: String, n: &Needs) -> Vec<(String, String)> {
    let mut v = vec![(
        String::new(),
        format!("Description={}", description.replace('%', "%%")),
    )];
    if !n.remote.is_empty() {
        v.push((
            format!(
                "Remote repositories ({}): start once the network is up.",
                n.remote.join(", ")
            ),
            "Wants=network-online.target".into(),
        ));
        v.push((String::new(), "After=network-online.target".into()));
    }
    v
}

/// `lifeboat.service`: `lifeboat run` in the foreground under a sandbox computed from the
/// config (see the module documentation).
pub fn systemd_service(config: &Config, o: &InstallOptions) -> Result<UnitFile> {
    // Every schedule must parse for the daemon, which it did when the config loaded.
    let n = needs(config, o);
    let grace = config.daemon.grace.unwrap_or(DEFAULT_GRACE);
    let stop = grace + STOP_MARGIN;
    let mut service = vec![
        (
            "A foreground process; started once its binary could be executed.".to_string(),
            "Type=exec".to_string(),
        ),
        (
            String::new(),
            format!("ExecStart={}", exec_line(o, &run_args(o))),
        ),
        (
            "SIGHUP reloads lifeboat.toml (a broken config is logged and the running one kept)."
                .into(),
            "ExecReload=/bin/kill -HUP $MAINPID".into(),
        ),
        (
            "SIGTERM: no new job; running jobs get [daemon] grace, then stop at a safe point."
                .into(),
            "KillSignal=SIGTERM".into(),
        ),
        (
            "Only lifeboat gets SIGTERM: a running pg_dump or hook is left to finish within the grace (SIGKILL for all at the timeout).".into(),
            "KillMode=mixed".into(),
        ),
        (
            format!(
                "[daemon] grace ({}) plus {} to reach a safe point and exit.",
                secs(grace),
                secs(STOP_MARGIN)
            ),
            format!("TimeoutStopSec={}", secs(stop)),
        ),
        (
            "A crash restarts it; a finished job is never repeated (the state file says what ran).".into(),
            "Restart=on-failure".into(),
        ),
        (String::new(), "RestartSec=30s".into()),
        (
            "Exit 2 is a usage or config error, which a restart does not fix.".into(),
            "RestartPreventExitStatus=2".into(),
        ),
    ];
    service.extend(sandbox(&n, o));
    let contents = render(
        &[
            (
                "Unit",
                unit_section("lifeboat: scheduled backups (lifeboat run)".into(), &n),
            ),
            ("Service", service),
            (
                "Install",
                vec![(String::new(), "WantedBy=multi-user.target".into())],
            ),
        ],
        &[
            format!("Generated by `lifeboat install systemd` from {}.", o.config.display()),
            "Install: copy to /etc/systemd/system/, then `systemctl daemon-reload && systemctl enable --now lifeboat`.".into(),
            "Hooks, password_command and PostgreSQL tools run inside the same sandbox.".into(),
        ],
    );
    Ok(UnitFile {
        name: "lifeboat.service".into(),
        contents,
    })
}

fn run_args(o: &InstallOptions) -> Vec<String> {
    vec!["-c".into(), o.config.display().to_string(), "run".into()]
}

/// Instead of the daemon: for every scheduled job (an app's `schedule`, `copy_schedule`,
/// `forget_schedule`) a oneshot `lifeboat-APP-JOB.service` running the same operation and a
/// `lifeboat-APP-JOB.timer` firing it on the schedule. A schedule systemd cannot express is
/// an error naming it.
pub fn systemd_timers(config: &Config, o: &InstallOptions) -> Result<Vec<UnitFile>> {
    let specs = job_specs(config, o);
    if specs.is_empty() {
        return Err(no_schedules(o));
    }
    let n = needs(config, o);
    let mut out = Vec::new();
    for j in &specs {
        let trigger = on_calendar(j.schedule, j.tz)
            .map_err(|why| unexpressible(j, "a systemd timer", &why))?;
        let base = format!("lifeboat-{}-{}", unit_name_part(j.app), j.kind);
        let mut service = vec![(
            "One run, then the service is inactive until the timer fires again.".to_string(),
            "Type=oneshot".to_string(),
        )];
        for (i, args) in j.runs.iter().enumerate() {
            let c = if j.runs.len() > 1 && i == 0 {
                "Each command runs only if the one before succeeded.".into()
            } else {
                String::new()
            };
            service.push((c, format!("ExecStart={}", exec_line(o, args))));
        }
        service.extend([
            (
                "A backup takes as long as it takes (a oneshot's default start timeout is 90 s).".into(),
                "TimeoutStartSec=infinity".into(),
            ),
            (
                "SIGTERM (systemctl stop, shutdown) ends the command where it is: nothing partial is ever visible (a point is written last); its lease expires after its TTL.".into(),
                "KillSignal=SIGTERM".into(),
            ),
            (
                "To every process of the job: lifeboat and its children (pg_dump, hooks).".into(),
                "KillMode=control-group".into(),
            ),
            (
                "Time to exit.".into(),
                format!("TimeoutStopSec={}", secs(STOP_MARGIN * 5)),
            ),
        ]);
        service.extend(sandbox(&n, o));
        let what = match j.kind {
            JobKind::Backup => "backup",
            JobKind::Copy => "copy to replicas",
            JobKind::Forget => "forget and prune",
            JobKind::Drill => "restore drill",
        };
        let header = vec![
            format!(
                "Generated by `lifeboat install systemd --timer` from {}: app.{}.{} = {:?}.",
                o.config.display(),
                j.app,
                j.key,
                j.schedule.to_string()
            ),
            "Timers replace `lifeboat run`: do not run both with the same config.".into(),
        ];
        out.push(UnitFile {
            name: format!("{base}.service"),
            contents: render(
                &[
                    (
                        "Unit",
                        unit_section(format!("lifeboat: {what} of {}", j.app), &n),
                    ),
                    ("Service", service),
                ],
                &header,
            ),
        });
        let mut timer = Vec::new();
        match &trigger {
            Trigger::Calendar(e) => {
                timer.push((
                    format!(
                        "{:?}{}",
                        j.schedule.to_string(),
                        match j.tz {
                            Some(z) => format!(" in {z}"),
                            None => String::new(),
                        }
                    ),
                    format!("OnCalendar={e}"),
                ));
                timer.push((
                    "After downtime, a missed run happens once at boot (as lifeboat run's catch-up).".into(),
                    "Persistent=true".into(),
                ));
            }
            Trigger::Interval(d) => {
                timer.push((
                    format!(
                        "{:?}: no calendar expression repeats every {}; first run when the timer starts, then {} after each run.",
                        j.schedule.to_string(),
                        secs(*d),
                        secs(*d)
                    ),
                    "OnActiveSec=0".into(),
                ));
                timer.push((String::new(), format!("OnUnitActiveSec={}", secs(*d))));
            }
        }
        if !j.random_delay.is_zero() {
            timer.push((
                "random_delay: each run starts up to this long after its slot.".into(),
                format!("RandomizedDelaySec={}", secs(j.random_delay)),
            ));
        }
        timer.push((
            "Fire at the slot itself, not within the default 1 min window.".into(),
            "AccuracySec=1s".into(),
        ));
        timer.push((String::new(), format!("Unit={base}.service")));
        out.push(UnitFile {
            name: format!("{base}.timer"),
            contents: render(
                &[
                    (
                        "Unit",
                        vec![(
                            String::new(),
                            format!(
                                "Description=lifeboat: {what} of {} on schedule",
                                j.app.replace('%', "%%")
                            ),
                        )],
                    ),
                    ("Timer", timer),
                    (
                        "Install",
                        vec![(String::new(), "WantedBy=timers.target".into())],
                    ),
                ],
                &[
                    format!(
                        "Generated by `lifeboat install systemd --timer` from {}.",
                        o.config.display()
                    ),
                    format!(
                        "Enable: systemctl daemon-reload && systemctl enable --now {base}.timer"
                    ),
                ],
            ),
        });
    }
    Ok(out)
}

fn no_schedules(o: &InstallOptions) -> Error {
    Error::new(
        ErrorKind::Usage,
        format!(
            "no app in {} has a schedule, copy_schedule or forget_schedule",
            o.config.display()
        ),
    )
    .with_hint("add e.g. `schedule = \"daily\"` to an [app.NAME] table")
}

/// A word for /bin/sh (single-quoted unless plainly safe).
fn sh_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.,:=@+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Crontab lines (root's crontab: five time fields and a command) for every scheduled job,
/// with a comment header. Each command runs under `flock -w 3600` on a lock per app, in a
/// directory only root can write (a job waits for another job of its app, and says so if it
/// gives up after an hour) and sends its output to syslog
/// (`logger -t lifeboat-APP`) or appends it to `log_file`. A schedule cron cannot express is
/// an error naming it.
pub fn crontab(config: &Config, o: &InstallOptions) -> Result<String> {
    let mut specs = job_specs(config, o);
    if specs.is_empty() {
        return Err(no_schedules(o));
    }
    // Jobs in the system's time zone first: a CRON_TZ line holds for the lines after it,
    // and there is no portable way back to the system's zone.
    specs.sort_by_key(|j| j.tz.is_some());
    let out = match &o.log_file {
        Some(f) => format!(">> {} 2>&1", sh_word(&f.display().to_string())),
        None => String::new(),
    };
    let mut s = format!(
        "# lifeboat: scheduled jobs of {} (generated by `lifeboat install cron`).\n\
         # For root's crontab: `lifeboat install cron | crontab -u root -` REPLACES it;\n\
         # to add to it: `(crontab -u root -l; lifeboat install cron) | crontab -u root -`.\n\
         # These lines replace `lifeboat run`: do not run both with the same config.\n\
         # flock -w 3600: a job waits (up to an hour, then says it skipped) while another job\n\
         # of the same app runs; the lock files are in a directory only root can write.\n\
         # Output: {}. Times are the system's time zone{}.\n",
        o.config.display(),
        match &o.log_file {
            Some(f) => format!("appended to {}", f.display()),
            None => "syslog (logger -t lifeboat-APP; journalctl -t lifeboat-APP)".into(),
        },
        if specs.iter().any(|j| j.tz.is_some()) {
            " (CRON_TZ lines are honoured by cronie, not by Debian's cron)"
        } else {
            ""
        }
    );
    let mut tz_now: Option<&str> = None;
    for j in &specs {
        let spec = cron_spec(j.schedule).map_err(|why| unexpressible(j, "a crontab line", &why))?;
        if let Some(tz) = j.tz.filter(|_| j.tz != tz_now) {
            s.push_str(&format!("CRON_TZ={tz}\n"));
            tz_now = j.tz;
        }
        let lock = o
            .lock_dir
            .join(format!("lifeboat-{}.lock", unit_name_part(j.app)));
        let lock = sh_word(&lock.display().to_string());
        let cmds: Vec<String> = j
            .runs
            .iter()
            .map(|args| {
                let argv: Vec<String> = std::iter::once(o.exe.display().to_string())
                    .chain(args.iter().cloned())
                    .map(|a| sh_word(&a))
                    .collect();
                // Waits (up to an hour) for another job of the app, and says so when it
                // gives up; `(exit $s)` keeps the failure for the `&&` chain.
                format!(
                    "flock -w 3600 -E 75 {lock} {} || {{ s=$?; [ $s -ne 75 ] || echo {}; (exit $s); }}",
                    argv.join(" "),
                    sh_word(&format!(
                        "lifeboat: {} {} skipped: another job of the app held its lock for an hour",
                        j.app, j.key
                    ))
                )
            })
            .collect();
        let mut steps = Vec::new();
        if !j.random_delay.is_zero() {
            steps.push(format!(
                "sleep $(shuf -i 0-{} -n 1)",
                j.random_delay.as_secs()
            ));
        }
        // The lock directory is root's: in a world-writable one (/run/lock) any user could
        // hold an app's lock and stop its jobs.
        steps.push(format!(
            "mkdir -p -m 0700 {}",
            sh_word(&o.lock_dir.display().to_string())
        ));
        steps.extend(cmds);
        let cmd = if steps.len() == 1 {
            steps.remove(0)
        } else {
            format!("{{ {}; }}", steps.join(" && "))
        };
        let sink = if out.is_empty() {
            format!(
                "2>&1 | logger -t {}",
                sh_word(&format!("lifeboat-{}", j.app))
            )
        } else {
            out.clone()
        };
        s.push_str(&format!(
            "{}\n{spec} {}\n",
            one_line(&format!(
                "# app.{}.{} = {:?}",
                j.app,
                j.key,
                j.schedule.to_string()
            )),
            // A `%` in a crontab command is a newline unless escaped.
            one_line(&format!("{cmd} {sink}")).replace('%', "\\%")
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/lifeboat/lifeboat.toml"), text.to_string()).unwrap()
    }

    fn opts() -> InstallOptions {
        InstallOptions {
            exe: "/usr/local/bin/lifeboat".into(),
            config: "/etc/lifeboat/lifeboat.toml".into(),
            lock_dir: "/run/lifeboat".into(),
            log_file: None,
        }
    }

    fn cal(s: &str) -> String {
        match on_calendar(&Schedule::parse(s).unwrap(), None).unwrap() {
            Trigger::Calendar(c) => c,
            t => panic!("{s}: {t:?}"),
        }
    }

    /// Keys of an INI text: `(section, key, value)` in order.
    pub(crate) fn ini(text: &str) -> Vec<(String, String, String)> {
        let mut section = String::new();
        let mut out = Vec::new();
        for l in text.lines() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if let Some(s) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not key=value: {l}"));
            out.push((section.clone(), k.to_string(), v.to_string()));
        }
        out
    }

    fn values<'a>(kv: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
        kv.iter()
            .filter(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    const CHAT: &str = r#"
[repository.local]
path = "/var/backups/lifeboat"
password_file = "/etc/lifeboat/password"

[app.chat]
sqlite = ["/srv/chat/chat.db"]
files = ["/srv/chat/uploads"]
secrets = ["/srv/chat/ssh_host_key"]
config = ["/etc/chat/config.toml"]
schedule = "0 3 * * 1-5"
random_delay = "5m"

[daemon]
grace = "10m"
"#;

    #[test]
    fn schedules_become_on_calendar_expressions() {
        assert_eq!(cal("hourly"), "*-*-* *:00:00");
        assert_eq!(cal("daily"), "*-*-* 00:00:00");
        assert_eq!(cal("weekly"), "Mon *-*-* 00:00:00");
        assert_eq!(cal("monthly"), "*-*-01 00:00:00");
        assert_eq!(cal("0 3 * * 1-5"), "Mon..Fri *-*-* 03:00:00");
        assert_eq!(cal("30 2 * * sat,0"), "Sat,Sun *-*-* 02:30:00");
        assert_eq!(cal("0 3 * * 0-6"), "*-*-* 03:00:00");
        assert_eq!(cal("0 3 * * 5,6,0"), "Fri..Sun *-*-* 03:00:00");
        assert_eq!(cal("*/10 * * * *"), "*-*-* *:00/10:00");
        assert_eq!(cal("0 8-18/2 1 jan,jul *"), "*-1,7-1 08..18/2:00:00");
        assert_eq!(cal("*/5 * * * * *"), "*-*-* *:*:00/5");
        assert_eq!(cal("every 15m"), "*-*-* *:00/15:00 UTC");
        assert_eq!(cal("every 30s"), "*-*-* *:*:00/30 UTC");
        assert_eq!(cal("every 6h"), "*-*-* 00/6:00:00 UTC");
        assert_eq!(cal("every 1h"), "*-*-* *:00:00 UTC");
        assert_eq!(cal("every 24h"), "*-*-* 00:00:00 UTC");
        assert_eq!(
            on_calendar(&Schedule::parse("every 7m").unwrap(), None).unwrap(),
            Trigger::Interval(Duration::from_secs(420))
        );
        assert_eq!(
            on_calendar(&Schedule::parse("daily").unwrap(), Some("Europe/Berlin")).unwrap(),
            Trigger::Calendar("*-*-* 00:00:00 Europe/Berlin".into())
        );
        // Cron steps over days of the week exist; systemd has lists, so they become one.
        assert_eq!(cal("0 3 * * */2"), "Tue,Thu,Sat,Sun *-*-* 03:00:00");
    }

    #[test]
    fn cron_specs_and_what_cron_cannot_express() {
        let c = |s: &str| cron_spec(&Schedule::parse(s).unwrap());
        assert_eq!(c("hourly").unwrap(), "0 * * * *");
        assert_eq!(c("weekly").unwrap(), "0 0 * * 1");
        assert_eq!(c("every 15m").unwrap(), "*/15 * * * *");
        assert_eq!(c("every 6h").unwrap(), "0 */6 * * *");
        assert_eq!(c("every 24h").unwrap(), "0 0 * * *");
        assert_eq!(c("0 3 * * 1-5").unwrap(), "0 3 * * 1-5");
        assert!(c("every 7m").unwrap_err().contains("divide an hour"));
        assert!(c("every 30s").unwrap_err().contains("whole minutes"));
        assert!(c("every 48h").is_err());
        assert!(c("*/5 * * * * *").unwrap_err().contains("seconds"));
        // The error names the app, the key and the schedule.
        let cfg = config(
            "[repository.r]\npath = \"/r\"\n[app.chat]\nfiles = [\"/srv/u\"]\nschedule = \"every 7m\"\n",
        );
        let e = crontab(&cfg, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("app.chat.schedule = \"every 7m\" cannot be a crontab line"),
            "{e}"
        );
        // The same schedule is a timer with OnUnitActiveSec.
        let units = systemd_timers(&cfg, &opts()).unwrap();
        assert!(
            units[1].contents.contains("OnUnitActiveSec=420s"),
            "{}",
            units[1].contents
        );
    }

    #[test]
    fn the_service_sandbox_follows_the_config() {
        let u = systemd_service(&config(CHAT), &opts()).unwrap();
        let kv = ini(&u.contents);
        let one = |k: &str| {
            let v = values(&kv, k);
            assert_eq!(v.len(), 1, "{k}: {v:?}\n{}", u.contents);
            v[0].to_string()
        };
        assert_eq!(
            one("ExecStart"),
            "/usr/local/bin/lifeboat -c /etc/lifeboat/lifeboat.toml run"
        );
        assert_eq!(one("Type"), "exec");
        assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
        assert_eq!(one("TimeoutStopSec"), "690s"); // grace 10 min + 90 s
        assert_eq!(one("ProtectSystem"), "strict");
        assert_eq!(one("ProtectHome"), "yes");
        assert_eq!(one("StateDirectory"), "lifeboat");
        assert_eq!(one("UMask"), "0077");
        assert_eq!(one("IPAddressDeny"), "any");
        assert_eq!(one("RestrictAddressFamilies"), "AF_UNIX AF_INET AF_INET6");
        let caps = one("CapabilityBoundingSet");
        for c in [
            "CAP_DAC_READ_SEARCH",
            "CAP_CHOWN",
            "CAP_FOWNER",
            "CAP_DAC_OVERRIDE",
        ] {
            assert!(caps.contains(c), "{caps}");
        }
        assert!(!caps.contains("CAP_SETUID"), "{caps}");
        // Directories of the sources, the repository; uploads' parent covers the db's.
        assert_eq!(
            values(&kv, "ReadWritePaths"),
            ["-/etc/chat", "-/srv/chat", "-/var/backups/lifeboat"]
        );
        assert!(values(&kv, "Wants").is_empty());
        // Every directive in [Service] has a comment above it or its group's.
        assert!(u.contents.matches("\n# ").count() > 25, "{}", u.contents);
    }

    #[test]
    fn remote_repositories_homes_and_hooks_loosen_the_sandbox() {
        let u = systemd_service(
            &config(
                r#"
[repository.nas]
url = "sftp://lb@nas.lan/backups"
[repository.s3]
url = "s3://bucket/chat"
[app.chat]
repository = "nas"
copy_to = ["s3"]
sqlite = ["/home/chat/chat.db"]
[app.chat.hooks]
stop = "systemctl stop chat"
[app.chat.keep]
daily = 7
[daemon]
state_file = "/srv/state/daemon.json"
"#,
            ),
            &opts(),
        )
        .unwrap();
        let kv = ini(&u.contents);
        assert!(values(&kv, "ProtectHome").is_empty(), "{}", u.contents);
        assert!(u.contents.contains("/home/chat is under a home directory"));
        assert!(u.contents.contains("uses ~/.ssh keys"));
        assert!(values(&kv, "IPAddressDeny").is_empty());
        assert!(u.contents.contains("repository nas is remote"));
        assert_eq!(values(&kv, "After"), ["network-online.target"]);
        assert_eq!(
            values(&kv, "ReadWritePaths"),
            ["-/home/chat", "-/srv/state"]
        );
        assert!(values(&kv, "CapabilityBoundingSet")[0].contains("CAP_SETUID"));
        assert_eq!(values(&kv, "TimeoutStopSec"), ["390s"]);
    }

    #[test]
    fn timers_per_job_with_the_same_commands_as_the_daemon() {
        let cfg = config(
            r#"
[repository.local]
path = "/var/backups/lifeboat"
[repository.offsite]
url = "s3://b/p"
[app.chat]
copy_to = ["offsite"]
sqlite = ["/srv/chat/chat.db"]
schedule = "every 15m"
copy_schedule = "daily"
forget_schedule = "0 4 * * sun"
random_delay = "2m"
timezone = "Europe/Berlin"
[app.chat.keep]
daily = 7
"#,
        );
        let units = systemd_timers(&cfg, &opts()).unwrap();
        let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "lifeboat-chat-backup.service",
                "lifeboat-chat-backup.timer",
                "lifeboat-chat-copy.service",
                "lifeboat-chat-copy.timer",
                "lifeboat-chat-forget.service",
                "lifeboat-chat-forget.timer",
            ]
        );
        let kv = ini(&units[0].contents);
        assert_eq!(values(&kv, "Type"), ["oneshot"]);
        assert_eq!(
            values(&kv, "ExecStart"),
            ["/usr/local/bin/lifeboat -c /etc/lifeboat/lifeboat.toml backup chat --tag scheduled"]
        );
        assert_eq!(values(&kv, "TimeoutStartSec"), ["infinity"]);
        let kv = ini(&units[1].contents);
        assert_eq!(values(&kv, "OnCalendar"), ["*-*-* *:00/15:00 UTC"]);
        assert_eq!(values(&kv, "Persistent"), ["true"]);
        assert_eq!(values(&kv, "RandomizedDelaySec"), ["120s"]);
        let kv = ini(&units[3].contents);
        assert_eq!(values(&kv, "OnCalendar"), ["*-*-* 00:00:00 Europe/Berlin"]);
        let kv = ini(&units[4].contents);
        assert_eq!(
            values(&kv, "ExecStart"),
            [
                "/usr/local/bin/lifeboat -c /etc/lifeboat/lifeboat.toml forget chat --prune",
                "/usr/local/bin/lifeboat -c /etc/lifeboat/lifeboat.toml -r offsite forget chat --prune"
            ]
        );
        let kv = ini(&units[5].contents);
        assert_eq!(
            values(&kv, "OnCalendar"),
            ["Sun *-*-* 04:00:00 Europe/Berlin"]
        );

        let cron = crontab(&cfg, &opts()).unwrap();
        let lines: Vec<&str> = cron
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(lines[0], "CRON_TZ=Europe/Berlin");
        assert_eq!(
            lines[1],
            "*/15 * * * * { sleep $(shuf -i 0-120 -n 1) && mkdir -p -m 0700 /run/lifeboat && flock -w 3600 -E 75 /run/lifeboat/lifeboat-chat.lock /usr/local/bin/lifeboat -c /etc/lifeboat/lifeboat.toml backup chat --tag scheduled || { s=$?; [ $s -ne 75 ] || echo 'lifeboat: chat schedule skipped: another job of the app held its lock for an hour'; (exit $s); }; } 2>&1 | logger -t lifeboat-chat"
        );
        assert!(lines[3].starts_with("0 4 * * sun { sleep"), "{}", lines[3]);
        assert!(
            lines[3].contains("; (exit $s); } && flock -w 3600 -E 75 /run/lifeboat/lifeboat-chat.lock /usr/local/bin/lifeboat -c /etc/lifeboat/lifeboat.toml -r offsite forget chat --prune || {"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn odd_names_and_paths_are_quoted() {
        let mut o = opts();
        o.exe = "/opt/life boat/lifeboat".into();
        o.config = "/etc/lifeboat/100%.toml".into();
        o.log_file = Some("/var/log/lifeboat.log".into());
        let cfg = config(
            "[repository.r]\npath = \"/r\"\n[app.\"my app\"]\nfiles = [\"/srv/u\"]\nschedule = \"daily\"\n",
        );
        let units = systemd_timers(&cfg, &o).unwrap();
        assert_eq!(units[0].name, "lifeboat-my\\x20app-backup.service");
        let kv = ini(&units[0].contents);
        assert_eq!(
            values(&kv, "ExecStart"),
            ["\"/opt/life boat/lifeboat\" -c /etc/lifeboat/100%%.toml backup \"my app\" --tag scheduled"]
        );
        let cron = crontab(&cfg, &o).unwrap();
        assert!(
            cron.contains("0 0 * * * { mkdir -p -m 0700 /run/lifeboat && flock -w 3600 -E 75 '/run/lifeboat/lifeboat-my\\x20app.lock' '/opt/life boat/lifeboat' -c '/etc/lifeboat/100\\%.toml' backup 'my app' --tag scheduled || {"),
            "{cron}"
        );
    }

    /// `systemd-analyze calendar` agrees with the expressions, when it is installed.
    #[test]
    fn systemd_parses_the_calendar_expressions() {
        if std::process::Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("note: no systemd-analyze here; the expressions were checked as text only");
            return;
        }
        for s in [
            "hourly",
            "weekly",
            "monthly",
            "0 3 * * 1-5",
            "30 2 * * sat,0",
            "0 8-18/2 1 jan,jul *",
            "*/5 * * * * *",
            "every 15m",
            "every 30s",
            "every 6h",
            "0 3 * * */2",
        ] {
            let Trigger::Calendar(e) =
                on_calendar(&Schedule::parse(s).unwrap(), Some("Europe/Berlin")).unwrap()
            else {
                panic!("{s}")
            };
            let o = std::process::Command::new("systemd-analyze")
                .args(["calendar", &e])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{s} -> {e}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// The command of a crontab line (after the five time fields), as cron hands it to sh.
    fn cron_command(line: &str) -> String {
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start().split_once(' ').unwrap().1;
        }
        rest.replace("\\%", "%")
    }

    /// Options whose crontab lines run [`stub_exe`] (taking `secs`) with locks and the log in
    /// a temp dir; `None` when this machine has no `flock`.
    fn cron_rig(secs: u32) -> Option<(tempfile::TempDir, InstallOptions)> {
        std::process::Command::new("flock")
            .arg("-V")
            .output()
            .ok()?;
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts();
        o.exe = stub_exe(dir.path(), secs);
        o.lock_dir = dir.path().to_path_buf();
        o.log_file = Some(dir.path().join("log"));
        Some((dir, o))
    }

    /// A stand-in for the lifeboat binary: records its arguments, then takes `secs`.
    fn stub_exe(dir: &Path, secs: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let exe = dir.join("lifeboat");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\necho \"$*\" >> {}/ran\nsleep {secs}\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        exe
    }

    /// Review: the defaults an operator writes (`schedule = "hourly"`, `forget_schedule =
    /// "daily"`) fire in the same minute at 00:00. Under `flock -n` on the app's lock one of
    /// the two exits 1 without a word: every day either the midnight backup or the forget is
    /// dropped (retention never applied, the repository grows), and no log says so.
    #[test]
    fn cron_jobs_of_one_app_in_the_same_minute_both_run() {
        let Some((dir, o)) = cron_rig(2) else {
            println!("note: no flock here; skipped");
            return;
        };
        let cfg = config(
            "[repository.r]\npath = \"/r\"\n[app.chat]\nsqlite = [\"/srv/chat.db\"]\nschedule = \"hourly\"\nforget_schedule = \"daily\"\n[app.chat.keep]\ndaily = 7\n",
        );
        let cron = crontab(&cfg, &o).unwrap();
        let lines: Vec<&str> = cron
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(lines.len(), 2, "{cron}");
        // Both fire at 00:00: cron starts them together.
        let children: Vec<_> = lines
            .iter()
            .map(|l| {
                std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(cron_command(l))
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            c.wait().unwrap();
        }
        let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap_or_default();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(
            ran.contains("backup chat") && ran.contains("forget chat"),
            "ran: {ran:?}; log: {log:?}"
        );
    }

    /// Review: the per-app lock is `/run/lock/lifeboat-APP.lock` by default, in a directory
    /// every user can write. A local user creates it and holds a lock on it (`flock
    /// /run/lock/lifeboat-chat.lock sleep infinity`): every scheduled job of the app is then
    /// skipped by `flock -n`, silently, for as long as the user likes.
    #[test]
    fn a_cron_job_skipped_for_a_held_lock_says_so() {
        let Some((dir, o)) = cron_rig(0) else {
            println!("note: no flock here; skipped");
            return;
        };
        let cfg = config(
            "[repository.r]\npath = \"/r\"\n[app.chat]\nsqlite = [\"/srv/chat.db\"]\nschedule = \"hourly\"\n",
        );
        let cron = crontab(&cfg, &o).unwrap();
        let line = cron
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap();
        let mut holder = std::process::Command::new("flock")
            .arg(dir.path().join("lifeboat-chat.lock"))
            .args(["sleep", "5"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let st = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(cron_command(line))
            .status()
            .unwrap();
        let _ = holder.kill();
        let _ = holder.wait();
        let ran = std::fs::read_to_string(dir.path().join("ran")).unwrap_or_default();
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        assert!(
            !ran.is_empty() || !log.trim().is_empty(),
            "the backup was skipped without a word (status {st}, empty log)"
        );
    }

    /// Review: the default lock directory (/run/lock, mode 1777) lets any user create and
    /// hold an app's lock file (above).
    #[test]
    fn the_cron_lock_files_are_in_a_directory_only_root_can_write() {
        let cfg = config(
            "[repository.r]\npath = \"/r\"\n[app.chat]\nsqlite = [\"/srv/chat.db\"]\nschedule = \"hourly\"\n",
        );
        let cron = crontab(&cfg, &opts()).unwrap();
        assert!(
            !cron.contains("/run/lock/lifeboat-chat.lock"),
            "lock in world-writable /run/lock: {cron}"
        );
    }

    /// Review: an app name (a quoted TOML key) or a path holding a newline is written into
    /// the crontab and the units as it is: the text after the newline is a crontab line of
    /// root's, or a directive of the unit (`ExecStartPre=` runs as root, unsandboxed with `+`).
    #[test]
    fn newlines_in_names_and_paths_cannot_add_crontab_lines_or_unit_directives() {
        // Refused where the config is read...
        let e = Config::parse(
            Path::new("/etc/lifeboat/lifeboat.toml"),
            "[repository.r]\npath = \"/r\"\n[app.\"x\\n* * * * * touch /tmp/pwned\"]\nfiles = [\"/srv/u\\nExecStartPre=+/bin/touch /tmp/pwned\"]\nschedule = \"hourly\"\n".into(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("control character"), "{e}");
        // ...and no value can start a line of a unit or a crontab whatever it holds.
        let rendered = render(
            &[(
                "Service",
                vec![(
                    "x\nExecStartPre=+/bin/true".into(),
                    "Description=a\nExecStartPre=+/bin/true".into(),
                )],
            )],
            &["h\n* * * * * touch /tmp/pwned".into()],
        );
        assert!(
            !rendered
                .lines()
                .any(|l| l.starts_with("ExecStartPre=") || l.starts_with("* * * * *")),
            "{rendered}"
        );
    }
}
