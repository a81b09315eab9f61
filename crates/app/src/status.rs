//! `lifeboat status`: whether every app of the config is protected and proven, per app and per
//! destination (its repository and each `copy_to` replica), with one verdict. The same
//! report serves the human table, `--json`, and (later) the daemon's metrics and the
//! dashboard; the exit code says whether anything is unhealthy, so the command is a
//! monitoring probe by itself.
//!
//! What is unhealthy (each a line in `problems`):
//! - a destination that cannot be read (unreachable, wrong password, damaged listing);
//! - no point of the app in its repository; with a backup schedule, no new point two slots
//!   after the newest (plus `[alerts] grace`, default 15 min, and the app's `random_delay`: a
//!   run starts late and takes a while), slots counted from the point so uneven cron schedules are judged right; points
//!   dated in the future do not count (`latest` passes them over);
//! - a replica, with a copy schedule, that lacks the newest point of the repository whose
//!   copy is two copy slots overdue;
//! - the newest drill of the app's own points failed; with a drill schedule, no drill for two
//!   of its slots, or none ever;
//! - a scheduled job whose last runs failed (the state file of `lifeboat run`);
//! - a continuous capture that keeps failing (what `lifeboat run` reports);
//! - the anomalies of [`crate::anomalies`] (a backup much smaller than the ones before, a
//!   table's rows fallen, a secret changed), judged on the two newest points.
//!
//! Each rule can be turned off in `[alerts]` (or per app, `[app.NAME.alerts]`): `stale`,
//! `drill`, `size_drop`, `rows_drop`, `secret_changed`. A failed drill stops being a problem
//! when a later drill passes or a point newer than the drill exists (a fresh point is the
//! repair; the next drill proves it); the failed point keeps its `FAILED` mark in `points`.
use std::collections::HashMap;
use std::path::PathBuf;

use jiff::{SignedDuration, Timestamp};
use lifeboat_core::{drill_order, is_future, DrillSeen, ObjectId, Point, Result};
use serde::Serialize;

use crate::alerts::Rules;
use crate::continuous::StreamStatus;

use crate::config::Config;
use crate::job_state::JobsState;
use crate::jobs::{schedule_report, JobStatus};
use crate::schedule::Schedule;
use crate::setup::Setup;

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Nothing is unhealthy.
    pub healthy: bool,
    /// Each app of the config.
    pub apps: Vec<AppStatus>,
}

/// One app.
#[derive(Debug, Clone, Serialize)]
pub struct AppStatus {
    /// The app.
    pub app: String,
    /// No problem.
    pub healthy: bool,
    /// What is wrong.
    pub problems: Vec<Problem>,
    /// Its repository, then each replica.
    pub destinations: Vec<DestinationStatus>,
    /// The newest drill of any of its points (in its repository).
    pub last_drill: Option<PointDrill>,
    /// Its scheduled jobs: next run, last outcome, failures in a row.
    pub jobs: Vec<JobStatus>,
    /// Its continuous captures, as the running `lifeboat run` reports them (empty without
    /// one).
    pub continuous: Vec<StreamLag>,
}

/// One problem: what makes an app unhealthy, and what an alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The rule that found it: `no_point`, `unreadable`, `stale`, `replica_behind`,
    /// `drill_failed`, `drill_overdue`, `job_failed`, `continuous_failing`, `size_drop`,
    /// `rows_drop`, `secret_changed`.
    pub rule: &'static str,
    /// Stable while the problem lasts, unique within the app (`stale`,
    /// `rows:/srv/chat.db:messages`): an alert is raised when a key appears and a recovery
    /// sent when it goes.
    pub key: String,
    /// What is wrong, one line.
    pub message: String,
}

/// One database followed by continuous capture.
#[derive(Debug, Clone, Serialize)]
pub struct StreamLag {
    /// The database.
    pub database: String,
    /// When its newest link (or its chain's base) was taken.
    pub last_capture: Option<String>,
    /// Seconds from then to the report: what a crash now would lose at most.
    pub lag_s: Option<f64>,
    /// Deltas written since the capture started.
    pub deltas: u64,
    /// Bytes stored since the capture started.
    pub bytes_stored: u64,
    /// The last error, while failures go on.
    pub failing: Option<String>,
}

/// Continuous captures by app and database, as the daemon holds them.
pub type Streams = HashMap<String, HashMap<PathBuf, StreamStatus>>;

/// A drill and the point it drilled.
#[derive(Debug, Clone, Serialize)]
pub struct PointDrill {
    /// The point (hex id).
    pub point: String,
    /// The drill.
    #[serde(flatten)]
    pub drill: DrillSeen,
}

/// The app's points in one destination.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationStatus {
    /// The repository's name in the config (or its location).
    pub repository: String,
    /// `repository` or `replica`.
    pub role: &'static str,
    /// Points of the app there.
    pub points: usize,
    /// The newest.
    pub newest: Option<NewestPoint>,
    /// Sizes of the newest points (up to 10, oldest first): the trend.
    pub sizes: Vec<u64>,
    /// Why the destination could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A destination's newest point.
#[derive(Debug, Clone, Serialize)]
pub struct NewestPoint {
    /// Point id (hex).
    pub id: String,
    /// When it was taken.
    pub time: String,
    /// How old it is, seconds.
    pub age_s: i64,
    /// Its logical size.
    pub size: u64,
    /// Bytes it added to the repository.
    pub added: u64,
}

/// How many points' sizes make the trend.
const TREND: usize = 10;

/// Added to a schedule's deadlines (and the app's `random_delay`) when `[alerts] grace` is
/// out of range: a job starts late and runs for a while.
const GRACE: SignedDuration = SignedDuration::from_secs(15 * 60);

/// The status of every app of `config` (or only `app`). `streams` are the continuous
/// captures of a running daemon (its own, or those it last wrote to the state directory:
/// [`read_streams`]).
pub fn status(
    setup: &Setup,
    config: &Config,
    app: Option<&str>,
    streams: &Streams,
) -> Result<StatusReport> {
    let now = Timestamp::now();
    let state = JobsState::load(&JobsState::path_for(config)?);
    let jobs = schedule_report(config, &state, now)?;
    let mut apps = Vec::new();
    for (name, a) in &config.app {
        if app.is_some_and(|x| x != name) {
            continue;
        }
        let rules = Rules::of(config, name);
        let mut problems: Vec<Problem> = Vec::new();
        // One problem per key: a forged manifest can name one component (or table) twice,
        // and a key seen twice would be two identical series in `/metrics`, which
        // Prometheus and node_exporter's textfile collector refuse.
        let mut problem = |rule: &'static str, key: String, message: String| {
            if !problems.iter().any(|p| p.key == key) {
                problems.push(Problem { rule, key, message })
            }
        };
        let mut destinations = Vec::new();
        let mut last_drill: Option<PointDrill> = None;
        let tz = crate::jobs::time_zone(config, a)?;
        let grace = SignedDuration::try_from(a.random_delay.unwrap_or_default())
            .unwrap_or(SignedDuration::ZERO)
            + SignedDuration::try_from(config.alerts.grace.unwrap_or(crate::alerts::DEFAULT_GRACE))
                .unwrap_or(GRACE);
        // Due by: the second slot of `s` after `t`, plus the grace (a run may start late and
        // take a while). Measured from the point, not as a period around now: uneven cron
        // schedules (weekdays only) are judged by their real slots.
        let due = |s: &Schedule, t: Timestamp| {
            s.next_after(t, &tz)
                .and_then(|a| s.next_after(a, &tz))
                .and_then(|b| b.checked_add(grace).ok())
        };
        // The app's points in its repository, newest last, those dated in the future aside
        // (`latest` passes them over; they must not hide a stalled app).
        let mut main_points: Vec<(ObjectId, Point)> = Vec::new();
        let targets = std::iter::once((None, "repository"))
            .chain(a.copy_to.iter().map(|r| (Some(r.clone()), "replica")));
        for (repo, role) in targets {
            let shown = repo
                .clone()
                .or_else(|| a.repository.clone())
                .unwrap_or_else(|| "repository".into());
            let s = setup.with_repo(repo.clone());
            let mut d = DestinationStatus {
                repository: shown.clone(),
                role,
                points: 0,
                newest: None,
                sizes: Vec::new(),
                error: None,
            };
            let mut opened = None;
            let read = s.open(Some(name)).and_then(|r| {
                let mut points = r.points()?;
                // A point whose time is not a time (any key holder can write one) is no
                // point here: as the only one it failed the whole status, so the daemon's
                // alerts went silent for every app.
                points.retain(|(_, p)| {
                    &p.app == name
                        && !p.tags.iter().any(|t| t == "pre-restore")
                        && p.timestamp().is_ok()
                        && !is_future(p, now)
                });
                let proofs = if role == "repository" {
                    let wanted = points.iter().map(|(id, _)| id.to_hex()).collect();
                    r.proofs_by_point(&wanted)?
                } else {
                    Default::default()
                };
                opened = Some(r);
                Ok((points, proofs))
            });
            let (mut points, proofs) = match read {
                Ok(x) => x,
                Err(e) => {
                    problem(
                        "unreadable",
                        format!("unreadable:{shown}"),
                        format!("{shown}: cannot be read: {}", e.message()),
                    );
                    d.error = Some(e.to_string());
                    destinations.push(d);
                    continue;
                }
            };
            points.sort_by_key(|(_, p)| p.timestamp().ok());
            d.points = points.len();
            d.sizes = points
                .iter()
                .rev()
                .take(TREND)
                .rev()
                .map(|(_, p)| crate::anomalies::point_size(p))
                .collect();
            if let Some((id, p)) = points.last() {
                let summary = crate::points::summary(id, p);
                d.newest = Some(NewestPoint {
                    id: id.to_hex(),
                    time: p.time.clone(),
                    age_s: p.timestamp().map_or(0, |t| now.duration_since(t).as_secs()),
                    size: summary.size,
                    added: summary.added,
                });
            }
            if role == "repository" {
                match (points.last(), &a.schedule) {
                    (None, _) => problem(
                        "no_point",
                        "no_point".into(),
                        format!("{shown}: no point of {name} yet"),
                    ),
                    (Some((_, p)), Some(sched)) if rules.stale => {
                        let t = p.timestamp()?;
                        if due(sched, t).is_some_and(|d| d < now) {
                            problem(
                                "stale",
                                "stale".into(),
                                format!(
                                "{shown}: no new point for two slots of its schedule (the newest is {} old)",
                                crate::human::age(now.duration_since(t))
                            ),
                            );
                        }
                    }
                    (Some(_), _) => {}
                }
                // The newest point against the ones before it. Tagged points (pre-deploy,
                // pre-migration) are judged too: an emptied table is news whoever backed
                // it up.
                if let Some(r) = opened.as_mut() {
                    for p in crate::anomalies::anomalies(r, &points, &rules) {
                        problem(p.rule, p.key, p.message);
                    }
                }
                for (id, p) in &proofs {
                    let Some(dr) = &p.last_drill else { continue };
                    let newer = last_drill.as_ref().is_none_or(|l| {
                        drill_order(&l.drill.time, l.drill.ok) <= drill_order(&dr.time, dr.ok)
                    });
                    if newer {
                        last_drill = Some(PointDrill {
                            point: id.clone(),
                            drill: dr.clone(),
                        });
                    }
                }
                main_points = points;
            } else if let Some(copy) = &a.copy_schedule {
                // The newest point of the repository whose copy is overdue must be here.
                let overdue = main_points.iter().rev().find(|(_, p)| {
                    p.timestamp()
                        .ok()
                        .and_then(|t| due(copy, t))
                        .is_some_and(|d| d < now)
                });
                if let Some((id, p)) = overdue {
                    if !points.iter().any(|(x, _)| x == id) {
                        problem(
                            "replica_behind",
                            format!("replica:{shown}"),
                            format!(
                            "{shown}: lacks point {} ({}) of the repository, two copy slots after it was taken",
                            id.short(),
                            p.time
                        ),
                        );
                    }
                }
            }
            destinations.push(d);
        }
        let newest_time = main_points.last().and_then(|(_, p)| p.timestamp().ok());
        if let Some(l) = last_drill.as_ref().filter(|_| rules.drill) {
            let drilled = l.drill.time.parse::<Timestamp>().ok();
            // A point taken after the failed drill is the repair; the next drill proves it.
            let repaired = matches!((newest_time, drilled), (Some(n), Some(d)) if n > d);
            if !l.drill.ok && !repaired {
                problem(
                    "drill_failed",
                    "drill_failed".into(),
                    format!(
                        "the newest drill (point {}, {}) failed: {}",
                        &l.point[..8.min(l.point.len())],
                        l.drill.time,
                        l.drill.failure.as_deref().unwrap_or("a check failed")
                    ),
                );
            }
        }
        if let Some(sched) = a.drill_schedule.as_ref().filter(|_| rules.drill) {
            let when = last_drill
                .as_ref()
                .and_then(|l| l.drill.time.parse::<Timestamp>().ok());
            // Never drilled: a problem once the oldest point has waited two drill slots
            // (a new app's first drill is not overdue the moment it is configured).
            let first = main_points.first().and_then(|(_, p)| p.timestamp().ok());
            match when {
                None if first
                    .and_then(|t| due(sched, t))
                    .is_some_and(|d| d < now) =>
                {
                    problem(
                        "drill_overdue",
                        "drill_overdue".into(),
                        "no drill has run yet, two slots of the drill schedule after the first point".into(),
                    )
                }
                None => {}
                Some(t) if due(sched, t).is_some_and(|d| d < now) => problem(
                    "drill_overdue",
                    "drill_overdue".into(),
                    format!(
                        "the newest drill is overdue (two slots of its schedule passed; it ran {} ago)",
                        crate::human::age(now.duration_since(t))
                    ),
                ),
                Some(_) => {}
            }
        }
        let jobs: Vec<JobStatus> = jobs.iter().filter(|j| &j.app == name).cloned().collect();
        for j in &jobs {
            if j.last.failures > 0 {
                problem(
                    "job_failed",
                    format!("job:{}", j.job),
                    format!(
                        "job {} failed {} time(s) in a row: {}",
                        j.job,
                        j.last.failures,
                        j.last.message.as_deref().unwrap_or("no message")
                    ),
                );
            }
        }
        let continuous = stream_lags(streams.get(name), now);
        for c in &continuous {
            if let Some(f) = &c.failing {
                problem(
                    "continuous_failing",
                    format!("continuous:{}", c.database),
                    format!("continuous capture of {} is failing: {f}", c.database),
                );
            }
        }
        apps.push(AppStatus {
            app: name.clone(),
            healthy: problems.is_empty(),
            problems,
            destinations,
            last_drill,
            jobs,
            continuous,
        });
    }
    Ok(StatusReport {
        time: now.to_string(),
        healthy: apps.iter().all(|a| a.healthy),
        apps,
    })
}

/// `continuous.json` beside the daemon's state file: the captures of the running daemon,
/// rewritten by it at most once a minute, for `status` run by hand.
pub fn streams_path(config: &Config) -> Result<PathBuf> {
    Ok(JobsState::path_for(config)?.with_file_name("continuous.json"))
}

/// The captures the daemon last wrote ([`streams_path`]); none when it wrote none, or when
/// the file is older than five minutes (the daemon is not running: its lag means nothing).
pub fn read_streams(config: &Config) -> Streams {
    let Ok(path) = streams_path(config) else {
        return Streams::default();
    };
    let fresh = std::fs::symlink_metadata(&path)
        .ok()
        .filter(|m| m.is_file())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < std::time::Duration::from_secs(300));
    if !fresh {
        return Streams::default();
    }
    std::fs::read(&path)
        .ok()
        .filter(|b| b.len() < 4 << 20)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Writes what [`read_streams`] reads.
pub fn write_streams(config: &Config, streams: &Streams) -> Result<()> {
    let path = streams_path(config)?;
    let bytes = serde_json::to_vec(streams).expect("streams serialise");
    crate::state_dir::write_atomic(&path, &bytes)
        .map_err(|e| lifeboat_core::Error::io(path.display(), e))
}

/// One app's captures as [`StreamLag`] rows at `now`, by database.
pub fn stream_lags(
    streams: Option<&HashMap<PathBuf, StreamStatus>>,
    now: Timestamp,
) -> Vec<StreamLag> {
    let mut dbs: Vec<_> = streams.into_iter().flatten().collect();
    dbs.sort_by(|a, b| a.0.cmp(b.0));
    dbs.into_iter()
        .map(|(db, s)| StreamLag {
            database: db.display().to_string(),
            last_capture: s.last_capture.clone(),
            lag_s: s
                .last_capture
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map(|t| now.duration_since(t).as_secs_f64().max(0.0)),
            deltas: s.deltas,
            bytes_stored: s.bytes_stored,
            failing: s.failing.clone(),
        })
        .collect()
}
