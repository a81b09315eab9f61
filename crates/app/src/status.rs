//! `lifeboat status`: whether every app of the config is protected and proven, per app and per
//! destination (its repository and each `copy_to` replica), with one verdict. The same
//! report serves the human table, `--json`, and (later) the daemon's metrics and the
//! dashboard; the exit code says whether anything is unhealthy, so the command is a
//! monitoring probe by itself.
//!
//! What is unhealthy (each a line in `problems`):
//! - a destination that cannot be read (unreachable, wrong password, damaged listing);
//! - an app with a backup schedule whose newest point in a destination is older than two
//!   periods of that schedule (the repository) or of its copy schedule (a replica), or that
//!   has no point at all;
//! - the newest drill of the app's points failed; a drill schedule whose newest drill is older
//!   than two of its periods (overdue), or that never ran;
//! - a scheduled job whose last runs failed (the state file of `lifeboat run`).
use jiff::Timestamp;
use lifeboat_core::{DrillSeen, Result};
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
        let period = |s: &Option<Schedule>| s.as_ref().and_then(|s| s.period(now, &tz));
        let targets = std::iter::once((None, "repository", period(&a.schedule))).chain(
            a.copy_to
                .iter()
                .map(|r| (Some(r.clone()), "replica", period(&a.copy_schedule))),
        );
        for (repo, role, every) in targets {
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
                let points = r.points()?;
                let proofs = if role == "repository" {
                    r.proofs_by_point()?
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
            points.retain(|(_, p)| &p.app == name && !p.tags.iter().any(|t| t == "pre-restore"));
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
                let time = p.timestamp()?;
                let summary = crate::points::summary(id, p);
                d.newest = Some(NewestPoint {
                    id: id.to_hex(),
                    time: p.time.clone(),
                    age_s: now.duration_since(time).as_secs(),
                    size: summary.size,
                    added: summary.added,
                });
                if let Some(every) = every {
                    let allowed = every * 2;
                    if now.duration_since(time) > allowed {
                        problems.push(format!(
                            "{shown}: the newest point ({}) is older than two periods of its schedule ({})",
                            crate::human::age(now.duration_since(time)),
                            crate::human::age(every)
                        ));
                    }
                }
            } else if every.is_some() || role == "repository" {
                problems.push(format!("{shown}: no point of {name} yet"));
            }
            for (id, p) in &proofs {
                let Some(dr) = &p.last_drill else { continue };
                let newer = last_drill.as_ref().is_none_or(|l| {
                    l.drill.time.parse::<Timestamp>().ok() <= dr.time.parse::<Timestamp>().ok()
                });
                if newer {
                    last_drill = Some(PointDrill {
                        point: id.clone(),
                        drill: dr.clone(),
                    });
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
        if let Some(every) = period(&a.drill_schedule) {
            let when = last_drill
                .as_ref()
                .and_then(|l| l.drill.time.parse::<Timestamp>().ok());
            match when {
                None => problems.push("no drill has run yet (drill is scheduled)".into()),
                Some(t) if now.duration_since(t) > every * 2 => problems.push(format!(
                    "the newest drill is overdue ({} ago, scheduled every {})",
                    crate::human::age(now.duration_since(t)),
                    crate::human::age(every)
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
