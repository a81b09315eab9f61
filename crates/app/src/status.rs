//! `lifeboat status`: whether every app of the config is protected and proven, per app and per
//! destination (its repository and each `copy_to` replica), with one verdict. The same
//! report serves the human table, `--json`, and (later) the daemon's metrics and the
//! dashboard; the exit code says whether anything is unhealthy, so the command is a
//! monitoring probe by itself.
//!
//! What is unhealthy (each a line in `problems`):
//! - a destination that cannot be read (unreachable, wrong password, damaged listing);
//! - no point of the app in its repository; with a backup schedule, no new point two slots
//!   after the newest (plus 15 min and the app's `random_delay`: a run starts late and takes
//!   a while), slots counted from the point so uneven cron schedules are judged right; points
//!   dated in the future do not count (`latest` passes them over);
//! - a replica, with a copy schedule, that lacks the newest point of the repository whose
//!   copy is two copy slots overdue;
//! - the newest drill of the app's own points failed; with a drill schedule, no drill for two
//!   of its slots, or none ever;
//! - a scheduled job whose last runs failed (the state file of `lifeboat run`).
use jiff::{SignedDuration, Timestamp};
use lifeboat_core::{drill_order, is_future, DrillSeen, ObjectId, Point, Result};
use serde::Serialize;

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
    /// What is wrong, one line each.
    pub problems: Vec<String>,
    /// Its repository, then each replica.
    pub destinations: Vec<DestinationStatus>,
    /// The newest drill of any of its points (in its repository).
    pub last_drill: Option<PointDrill>,
    /// Its scheduled jobs: next run, last outcome, failures in a row.
    pub jobs: Vec<JobStatus>,
}

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

/// Added to a schedule's deadlines (and the app's `random_delay`): a job starts late and runs
/// for a while.
const GRACE: SignedDuration = SignedDuration::from_secs(15 * 60);

/// The status of every app of `config` (or only `app`).
pub fn status(setup: &Setup, config: &Config, app: Option<&str>) -> Result<StatusReport> {
    let now = Timestamp::now();
    let state = JobsState::load(&JobsState::path_for(config)?);
    let jobs = schedule_report(config, &state, now)?;
    let mut apps = Vec::new();
    for (name, a) in &config.app {
        if app.is_some_and(|x| x != name) {
            continue;
        }
        let mut problems = Vec::new();
        let mut destinations = Vec::new();
        let mut last_drill: Option<PointDrill> = None;
        let tz = crate::jobs::time_zone(config, a)?;
        let grace = SignedDuration::try_from(a.random_delay.unwrap_or_default())
            .unwrap_or(SignedDuration::ZERO)
            + GRACE;
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
            let s = Setup::with_config(config.clone(), repo.clone(), setup.password().clone());
            let mut d = DestinationStatus {
                repository: shown.clone(),
                role,
                points: 0,
                newest: None,
                sizes: Vec::new(),
                error: None,
            };
            let read = s.open(Some(name)).and_then(|r| {
                let mut points = r.points()?;
                points.retain(|(_, p)| {
                    &p.app == name
                        && !p.tags.iter().any(|t| t == "pre-restore")
                        && !is_future(p, now)
                });
                let proofs = if role == "repository" {
                    let wanted = points.iter().map(|(id, _)| id.to_hex()).collect();
                    r.proofs_by_point(&wanted)?
                } else {
                    Default::default()
                };
                Ok((points, proofs))
            });
            let (mut points, proofs) = match read {
                Ok(x) => x,
                Err(e) => {
                    problems.push(format!("{shown}: cannot be read: {}", e.message()));
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
                .map(|(_, p)| p.components.iter().map(|c| c.size).sum())
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
                    (None, _) => problems.push(format!("{shown}: no point of {name} yet")),
                    (Some((_, p)), Some(sched)) => {
                        let t = p.timestamp()?;
                        if due(sched, t).is_some_and(|d| d < now) {
                            problems.push(format!(
                                "{shown}: no new point for two slots of its schedule (the newest is {} old)",
                                crate::human::age(now.duration_since(t))
                            ));
                        }
                    }
                    (Some(_), None) => {}
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
                        problems.push(format!(
                            "{shown}: lacks point {} ({}) of the repository, two copy slots after it was taken",
                            id.short(),
                            p.time
                        ));
                    }
                }
            }
            destinations.push(d);
        }
        if let Some(l) = &last_drill {
            if !l.drill.ok {
                problems.push(format!(
                    "the newest drill (point {}, {}) failed: {}",
                    &l.point[..8.min(l.point.len())],
                    l.drill.time,
                    l.drill.failure.as_deref().unwrap_or("a check failed")
                ));
            }
        }
        if let Some(sched) = &a.drill_schedule {
            let when = last_drill
                .as_ref()
                .and_then(|l| l.drill.time.parse::<Timestamp>().ok());
            match when {
                None => problems.push("no drill has run yet (drill is scheduled)".into()),
                Some(t) if due(sched, t).is_some_and(|d| d < now) => problems.push(format!(
                    "the newest drill is overdue (two slots of its schedule passed; it ran {} ago)",
                    crate::human::age(now.duration_since(t))
                )),
                Some(_) => {}
            }
        }
        let jobs: Vec<JobStatus> = jobs.iter().filter(|j| &j.app == name).cloned().collect();
        for j in &jobs {
            if j.last.failures > 0 {
                problems.push(format!(
                    "job {} failed {} time(s) in a row: {}",
                    j.job,
                    j.last.failures,
                    j.last.message.as_deref().unwrap_or("no message")
                ));
            }
        }
        apps.push(AppStatus {
            app: name.clone(),
            healthy: problems.is_empty(),
            problems,
            destinations,
            last_drill,
            jobs,
        });
    }
    Ok(StatusReport {
        time: now.to_string(),
        healthy: apps.iter().all(|a| a.healthy),
        apps,
    })
}
