//! Scheduled jobs: what `lifeboat run` runs for each app (from its schedules in
//! `lifeboat.toml`), when each is due, and how one runs. A job runs the same operations as the
//! commands (`backup`, `copy`, `forget --prune`), so a scheduled backup is exactly a manual
//! one with the tag `scheduled`.
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use lifeboat_core::{Error, ErrorKind, NoProgress, PruneOptions, Result};
use serde::{Deserialize, Serialize};

use crate::backup::{backup, BackupRequest};
use crate::config::Config;
use crate::copy::{copy, CopyRequest};
use crate::forget::{plan as forget_plan, ForgetRequest};
use crate::human::{duration_ms, size};
use crate::job_state::{JobRecord, JobsState, Outcome};
use crate::password::PasswordSource;
use crate::restore::{drill, DrillRequest};
use crate::schedule::Schedule;
use crate::setup::Setup;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// `lifeboat backup APP --tag scheduled`.
    Backup,
    /// `lifeboat copy APP` to each of its `copy_to` replicas.
    Copy,
    /// `lifeboat forget APP --prune` in its repository and in each replica.
    Forget,
    /// `lifeboat drill APP`: the newest point, every fourth run a random older one.
    Drill,
}

impl JobKind {
    /// The word used in logs, the state file and `lifeboat schedule`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Copy => "copy",
            JobKind::Forget => "forget",
            JobKind::Drill => "drill",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One scheduled job of one app.
#[derive(Debug, Clone)]
pub struct Job {
    /// The app.
    pub app: String,
    /// What it does.
    pub kind: JobKind,
    /// When.
    pub schedule: Schedule,
    /// Each run starts up to this long after its slot.
    pub random_delay: Duration,
    /// Time zone of the schedule.
    pub tz: TimeZone,
}

/// Default delay before the first retry of a failed job.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);
/// The longest delay between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(3600);

impl Job {
    /// `app/kind`: the job's key in the state file.
    pub fn key(&self) -> String {
        format!("{}/{}", self.app, self.kind)
    }

    /// When the job is next due, given what the state file says about its runs:
    /// - never ran: now (a new schedule protects the app at once and shows a broken setup
    ///   at once, instead of at its first slot);
    /// - else the first slot after its last start, plus this slot's random delay; a daemon
    ///   that was down across several slots finds that slot in the past and runs the job
    ///   once, not once per missed slot;
    /// - after a failure, the retry time if that comes sooner (`retry` doubled per failure
    ///   in a row, at most [`MAX_RETRY`]).
    pub fn due(&self, record: Option<&JobRecord>, retry: Duration, now: Timestamp) -> Timestamp {
        let Some(r) = record.filter(|r| r.last_start.is_some()) else {
            return now;
        };
        // A start recorded in the future (the clock was set back since, or the file was
        // written on a machine whose clock ran ahead) counts as now: otherwise the job would
        // wait until the clock caught up with it, possibly for years.
        let last = r.last_start.expect("filtered").min(now);
        let slot = self
            .schedule
            .next_after(last, &self.tz)
            .map(|s| s + self.delay_for(s))
            .unwrap_or(Timestamp::MAX);
        let as_duration =
            |d: Duration| jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
        // A run that did not finish (stopped by SIGTERM, or the daemon died while it ran)
        // runs again after one retry delay, not at its next slot: a daily backup interrupted
        // by a restart would otherwise leave the app a day without a new point.
        if matches!(r.outcome, Some(Outcome::Interrupted | Outcome::Running)) {
            let base = r.last_end.map_or(last, |e| e.max(last)).min(now);
            let again = base
                .checked_add(as_duration(retry))
                .unwrap_or(Timestamp::MAX);
            return slot.min(again);
        }
        if r.failures == 0 {
            return slot;
        }
        let end = r.last_end.unwrap_or(last);
        let factor = 1u32 << r.failures.saturating_sub(1).min(16);
        let wait = retry.saturating_mul(factor).min(MAX_RETRY);
        let again = end.checked_add(as_duration(wait)).unwrap_or(Timestamp::MAX);
        slot.min(again)
    }

    /// This slot's share of the random delay: fixed per job and slot (a hash of both), so
    /// that recomputing the due time gives the same answer and hosts with the same schedule
    /// spread out.
    fn delay_for(&self, slot: Timestamp) -> jiff::SignedDuration {
        if self.random_delay.is_zero() {
            return jiff::SignedDuration::ZERO;
        }
        let h = blake3::hash(
            format!(
                "{}|{}|{}",
                lifeboat_core::hostname(),
                self.key(),
                slot.as_second()
            )
            .as_bytes(),
        );
        let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
        let ms = self.random_delay.as_millis().max(1) as u64;
        jiff::SignedDuration::from_millis((x % ms) as i64)
    }
}

/// The time zone of app `a`'s schedules: its own, else `[daemon] timezone`, else the system's.
pub fn time_zone(config: &Config, a: &crate::config::AppConfig) -> Result<TimeZone> {
    let get = |n: &str| {
        TimeZone::get(n).map_err(|e| Error::new(ErrorKind::Usage, format!("time zone {n:?}: {e}")))
    };
    match (&a.timezone, &config.daemon.timezone) {
        (Some(n), _) | (None, Some(n)) => get(n),
        (None, None) => Ok(TimeZone::system()),
    }
}

/// Every scheduled job of the config, app by app (backup, copy, forget, drill).
pub fn jobs(config: &Config) -> Result<Vec<Job>> {
    let default_tz = match &config.daemon.timezone {
        Some(name) => TimeZone::get(name)
            .map_err(|e| Error::new(ErrorKind::Usage, format!("time zone {name:?}: {e}")))?,
        None => TimeZone::system(),
    };
    let mut out = Vec::new();
    for (name, a) in &config.app {
        let tz = match &a.timezone {
            Some(n) => TimeZone::get(n)
                .map_err(|e| Error::new(ErrorKind::Usage, format!("time zone {n:?}: {e}")))?,
            None => default_tz.clone(),
        };
        for (kind, s) in [
            (JobKind::Backup, &a.schedule),
            (JobKind::Copy, &a.copy_schedule),
            (JobKind::Forget, &a.forget_schedule),
            (JobKind::Drill, &a.drill_schedule),
        ] {
            if let Some(schedule) = s {
                out.push(Job {
                    app: name.clone(),
                    kind,
                    schedule: schedule.clone(),
                    random_delay: a.random_delay.unwrap_or_default(),
                    tz: tz.clone(),
                });
            }
        }
    }
    Ok(out)
}

/// How a job that returned went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobOutcome {
    /// The point a backup wrote (hex id).
    pub point: Option<String>,
    /// One line: what it did, with sizes.
    pub summary: String,
    /// Storage requests sent, by type.
    pub requests: lifeboat_core::RequestStats,
}

/// Runs `job` now with `config` (passwords from `password`, else the config's and the
/// environment's). Blocks until done; returns what it did or the operation's error.
pub fn run_job(config: &Config, password: &PasswordSource, job: &Job) -> Result<JobOutcome> {
    let setup = |repo: Option<String>| Setup::with_config(config.clone(), repo, password.clone());
    let app = job.app.clone();
    let mut out = JobOutcome::default();
    match job.kind {
        JobKind::Backup => {
            let s = setup(None);
            let r = backup(
                &s,
                &BackupRequest {
                    targets: vec![app],
                    tags: vec!["scheduled".into()],
                    ..BackupRequest::default()
                },
                &NoProgress,
            )?;
            let p = crate::points::summary(&r.id, &r.point);
            out.point = Some(r.id.to_hex());
            out.summary = format!(
                "point {} of {}, {} added, in {}",
                r.id.short(),
                size(p.size),
                size(p.added),
                duration_ms(p.duration_ms)
            );
            out.requests = requests(&s);
        }
        JobKind::Copy => {
            let s = setup(None);
            let done = copy(
                &s,
                &CopyRequest {
                    app: Some(app),
                    ..CopyRequest::default()
                },
                &NoProgress,
                &mut |_| {},
            )?;
            out.summary = done
                .iter()
                .map(|c| {
                    format!(
                        "{} points, {} to {}",
                        c.report.points,
                        size(c.report.bytes),
                        c.to
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            out.requests = requests(&s);
        }
        JobKind::Forget => {
            let a = config.app.get(&app).ok_or_else(|| {
                Error::new(ErrorKind::Usage, format!("no app {app:?} in the config"))
            })?;
            let mut parts = Vec::new();
            let mut total = lifeboat_core::RequestStats::default();
            // The app's repository, then each replica (whose policy may be its own keep_in).
            for repo in std::iter::once(None).chain(a.copy_to.iter().cloned().map(Some)) {
                let s = setup(repo.clone());
                let plan = forget_plan(
                    &s,
                    &ForgetRequest {
                        app: Some(app.clone()),
                        ..ForgetRequest::default()
                    },
                )?;
                let removed = plan.removed();
                let kept = plan.points.len() - removed;
                let pruned = plan.apply(Some(&PruneOptions::default()), &NoProgress)?;
                parts.push(format!(
                    "{}: {removed} forgotten, {kept} kept, {} freed",
                    repo.as_deref()
                        .or(a.repository.as_deref())
                        .unwrap_or("repository"),
                    size(pruned.map_or(0, |p| p.bytes_deleted))
                ));
                total += requests(&s);
            }
            out.summary = parts.join("; ");
            out.requests = total;
        }
        JobKind::Drill => {
            let s = setup(None);
            let point = drill_pick(&s, &app)?;
            let r = drill(
                &s,
                &DrillRequest {
                    app: Some(app),
                    point,
                    scratch: config.daemon.scratch_dir.clone(),
                },
                &NoProgress,
            )?;
            out.point = Some(r.point.clone());
            out.requests = requests(&s);
            if !r.ok {
                // A failed drill is a failed job: the state file, `schedule` and the retries
                // see it (the outcome is recorded in the repository either way).
                return Err(Error::new(
                    r.failure_kind.unwrap_or(ErrorKind::Verify),
                    format!(
                        "drill of point {} failed: {}",
                        &r.point[..8],
                        r.failure.as_deref().unwrap_or("a check failed")
                    ),
                ));
            }
            out.summary = format!(
                "point {} drilled: every check passed in {:.1} s, {} restored",
                &r.point[..8],
                r.seconds,
                size(r.bytes)
            );
        }
    }
    Ok(out)
}

/// Which point a scheduled drill takes: the newest (`None`), except on every fourth day-slot
/// (a hash of the host, the app and the day, so it is spread and repeatable) a random one of
/// the older points: an old point can rot (a pack damaged or deleted) while the newest
/// passes every drill.
fn drill_pick(s: &Setup, app: &str) -> Result<Option<String>> {
    let day = Timestamp::now().as_second() / 86_400;
    let h = blake3::hash(format!("{}|{app}|{day}", lifeboat_core::hostname()).as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    if x % 4 != 0 {
        return Ok(None);
    }
    let repo = s.open(Some(app))?;
    let mut older: Vec<_> = repo
        .points()?
        .into_iter()
        .filter(|(_, p)| p.app == app)
        .collect();
    older.sort_by_key(|(_, p)| p.timestamp().ok());
    older.pop();
    if older.is_empty() {
        return Ok(None);
    }
    let (id, _) = &older[((x / 4) % older.len() as u64) as usize];
    Ok(Some(id.to_hex()))
}

fn requests(s: &Setup) -> lifeboat_core::RequestStats {
    let mut t = lifeboat_core::RequestStats::default();
    for (_, r) in s.opened() {
        t += r;
    }
    t
}

/// One row of `lifeboat schedule`: a job, when it runs next, how it last ran.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The app.
    pub app: String,
    /// What the job does.
    pub job: JobKind,
    /// Its schedule as written.
    pub schedule: Schedule,
    /// Time zone of the schedule.
    pub timezone: String,
    /// When it is next due (a past time: due now, it runs as soon as the daemon can).
    pub next: Timestamp,
    /// What the state file says of its runs.
    #[serde(flatten)]
    pub last: JobRecord,
}

/// Every job of `config` with its next due time and what `state` says it did.
pub fn schedule_report(
    config: &Config,
    state: &JobsState,
    now: Timestamp,
) -> Result<Vec<JobStatus>> {
    let retry = config.daemon.retry.unwrap_or(DEFAULT_RETRY);
    Ok(jobs(config)?
        .into_iter()
        .map(|j| {
            let record = state.jobs.get(&j.key());
            JobStatus {
                next: j.due(record, retry, now),
                app: j.app.clone(),
                job: j.kind,
                schedule: j.schedule.clone(),
                timezone: j.tz.iana_name().unwrap_or("system").to_string(),
                last: record.cloned().unwrap_or_default(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(schedule: &str) -> Job {
        Job {
            app: "chat".into(),
            kind: JobKind::Backup,
            schedule: Schedule::parse(schedule).unwrap(),
            random_delay: Duration::ZERO,
            tz: TimeZone::UTC,
        }
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_job_never_run_is_due_now_and_missed_slots_run_once() {
        let j = job("hourly");
        let now = t("2026-12-01T10:20:00Z");
        assert_eq!(j.due(None, DEFAULT_RETRY, now), now);
        let mut r = JobRecord {
            last_start: Some(t("2026-12-01T06:00:05Z")),
            ..JobRecord::default()
        };
        // Down since 06:00: four slots missed, one run due (the first missed slot, in the past).
        assert_eq!(
            j.due(Some(&r), DEFAULT_RETRY, now),
            t("2026-12-01T07:00:00Z")
        );
        // Once it ran (started now), the next is the next slot, not the other missed ones.
        r.last_start = Some(now);
        assert_eq!(
            j.due(Some(&r), DEFAULT_RETRY, now),
            t("2026-12-01T11:00:00Z")
        );
    }

    #[test]
    fn a_last_start_in_the_future_does_not_hold_the_job_back() {
        let j = job("hourly");
        let now = t("2026-12-01T10:20:00Z");
        let r = JobRecord {
            last_start: Some(t("2031-01-01T00:00:00Z")),
            ..JobRecord::default()
        };
        assert_eq!(
            j.due(Some(&r), DEFAULT_RETRY, now),
            t("2026-12-01T11:00:00Z")
        );
    }

    #[test]
    fn failures_retry_with_doubling_backoff_but_never_after_the_next_slot() {
        let j = job("hourly");
        let start = t("2026-12-01T10:00:00Z");
        let mut r = JobRecord {
            last_start: Some(start),
            last_end: Some(t("2026-12-01T10:00:10Z")),
            failures: 1,
            ..JobRecord::default()
        };
        let retry = Duration::from_secs(60);
        assert_eq!(j.due(Some(&r), retry, start), t("2026-12-01T10:01:10Z"));
        r.failures = 3;
        assert_eq!(j.due(Some(&r), retry, start), t("2026-12-01T10:04:10Z"));
        r.failures = 30;
        assert_eq!(j.due(Some(&r), retry, start), t("2026-12-01T11:00:00Z"));
    }

    #[test]
    fn the_random_delay_is_within_bounds_and_stable_per_slot() {
        let mut j = job("every 10m");
        j.random_delay = Duration::from_secs(300);
        let r = JobRecord {
            last_start: Some(t("2026-12-01T10:00:00Z")),
            ..JobRecord::default()
        };
        let now = t("2026-12-01T10:01:00Z");
        let a = j.due(Some(&r), DEFAULT_RETRY, now);
        assert_eq!(a, j.due(Some(&r), DEFAULT_RETRY, now));
        assert!(
            a >= t("2026-12-01T10:10:00Z") && a < t("2026-12-01T10:15:00Z"),
            "{a}"
        );
    }

    /// Review: a daily backup stopped by SIGTERM (a `systemctl restart` during an upgrade)
    /// or killed with the daemon ends `interrupted` (or stays `running`) with `failures` 0,
    /// so its next run is the next slot: the app goes a whole period without a new point,
    /// and nothing says so. It should run again soon (like a missed slot, or a retry).
    #[test]
    fn an_interrupted_or_killed_run_is_run_again_before_the_next_slot() {
        let j = job("daily");
        let now = t("2026-12-01T00:10:00Z");
        for outcome in [
            crate::job_state::Outcome::Interrupted,
            crate::job_state::Outcome::Running,
        ] {
            let r = JobRecord {
                last_start: Some(t("2026-12-01T00:00:00Z")),
                last_end: Some(t("2026-12-01T00:03:00Z")),
                outcome: Some(outcome),
                ..JobRecord::default()
            };
            let due = j.due(Some(&r), DEFAULT_RETRY, now);
            assert!(
                due <= t("2026-12-01T00:10:00Z"),
                "{outcome:?}: next run {due}, a day without a backup"
            );
        }
    }

    /// Review: `[daemon] retry = "0s"` loads, and a job that fails at once (a store that
    /// refuses, a missing source) is then due again the moment it ends: the daemon runs it
    /// back to back forever, spinning a core and hammering the store.
    #[test]
    fn a_zero_retry_delay_is_refused() {
        let text = "[repository.r]\npath = \"/r\"\n[app.a]\nsqlite = [\"/srv/a.db\"]\nschedule = \"hourly\"\n[daemon]\nretry = \"0s\"\n";
        let loaded = Config::parse(
            std::path::Path::new("/etc/lifeboat/lifeboat.toml"),
            text.into(),
        );
        if let Ok(cfg) = loaded {
            let retry = cfg.daemon.retry.unwrap_or(DEFAULT_RETRY);
            let j = job("hourly");
            let end = t("2026-12-01T10:00:01Z");
            let r = JobRecord {
                last_start: Some(t("2026-12-01T10:00:00Z")),
                last_end: Some(end),
                failures: 5,
                ..JobRecord::default()
            };
            let due = j.due(Some(&r), retry, end);
            assert!(
                due >= end + jiff::SignedDuration::from_secs(1),
                "a job failing at once is due again at {due}, the moment it ended"
            );
        }
    }
}
