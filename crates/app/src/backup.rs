//! Back up an app from `lifeboat.toml`, or paths given directly as a one-off app.
use std::path::{Path, PathBuf};

use lifeboat_core::{ComponentKind, Error, ErrorKind, ObjectId, Point, Progress, Result};
use lifeboat_sources::{backup_app, sqlite::is_sqlite_file, AppSpec, SourceSpec};
use serde::Serialize;

use crate::hooks::{run_hook, HookContext, HookRun, Phase};
use crate::points::{summary, PointSummary};
use crate::setup::Setup;

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct BackupRequest {
    /// An app name from the config, or paths to back up as a one-off app. Empty: the config's
    /// only app.
    pub targets: Vec<String>,
    /// Secret files (SSH host key, .env) to include in a one-off backup.
    pub secrets: Vec<PathBuf>,
    /// App name of a one-off backup (default: the first path's file stem).
    pub name: Option<String>,
    /// Tags of the point; empty means `manual`.
    pub tags: Vec<String>,
    /// Exclude globs for directories, added to the app's.
    pub excludes: Vec<String>,
    /// Record this capture time instead of now (tests and benchmarks of retention).
    pub time: Option<jiff::Timestamp>,
}

/// The point a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// Its id.
    pub id: ObjectId,
    /// The point.
    pub point: Point,
    /// The app's hooks that ran (before_backup, after_backup).
    pub hooks: Vec<HookRun>,
}

impl Serialize for BackupReport {
    /// `{"id": HEX, "point": <the point as listed>, "hooks": [...]}` (`hooks` only when some ran).
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            id: String,
            point: PointSummary,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            hooks: &'a [HookRun],
        }
        Json {
            id: self.id.to_hex(),
            point: summary(&self.id, &self.point),
            hooks: &self.hooks,
        }
        .serialize(s)
    }
}

fn abs(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p.display(), e).with_kind(ErrorKind::Usage))
}

/// What a path given directly is: a directory is a file tree, a SQLite file a database, any
/// other file a config file.
pub fn classify(p: &Path) -> Result<ComponentKind> {
    let md = std::fs::metadata(p).map_err(|e| {
        Error::io(format!("source {}", p.display()), e).with_kind(ErrorKind::Source)
    })?;
    if md.is_dir() {
        Ok(ComponentKind::Files)
    } else if is_sqlite_file(p)? {
        Ok(ComponentKind::Sqlite)
    } else {
        Ok(ComponentKind::Config)
    }
}

/// Backs up the app (or the paths) as one point in its repository, and records it in the
/// audit log.
pub fn backup(setup: &Setup, req: &BackupRequest, progress: &dyn Progress) -> Result<BackupReport> {
    let app = req.name.as_deref().or(match req.targets.as_slice() {
        [one] if !one.contains('/') => Some(one.as_str()),
        _ => None,
    });
    crate::audit::audited(setup, "backup", app, || run(setup, req, progress))
}

impl crate::audit::Audited for BackupReport {
    fn facts(&self, ev: &mut lifeboat_core::AuditEvent) {
        ev.app = Some(self.point.app.clone());
        ev.points = vec![self.id.to_hex()];
        ev.bytes = Some(self.point.stats.bytes_stored);
        ev.message = format!("point {} ({})", self.id.short(), self.point.tags.join(","));
    }
}

fn run(setup: &Setup, req: &BackupRequest, progress: &dyn Progress) -> Result<BackupReport> {
    let config = setup.config()?;
    let app_name = match (req.targets.as_slice(), &config) {
        ([one], Some(c)) if c.has_app(one) => Some(one.clone()),
        ([], Some(c)) if req.secrets.is_empty() => Some(
            c.only_app()
                .ok_or_else(|| {
                    Error::new(ErrorKind::Usage, "which app? the config defines several")
                        .with_hint("name it: lifeboat backup APP")
                })?
                .to_string(),
        ),
        _ => None,
    };
    let mut spec = match (&app_name, &config) {
        (Some(n), Some(c)) => {
            let mut s = c.app_spec(n)?;
            s.excludes.extend(req.excludes.iter().cloned());
            s
        }
        _ => {
            if req.targets.is_empty() && req.secrets.is_empty() {
                return Err(Error::new(ErrorKind::Usage, "nothing to back up").with_hint(
                    "name an app from lifeboat.toml, or give paths: lifeboat backup --repo DIR /path/app.db /path/uploads",
                ));
            }
            let mut sources = Vec::new();
            for t in &req.targets {
                let p = abs(Path::new(t))?;
                sources.push(SourceSpec::path(classify(&p)?, p));
            }
            for s in &req.secrets {
                sources.push(SourceSpec::path(ComponentKind::Secret, abs(s)?));
            }
            // Databases first: they are the part that moves; files follow right after.
            sources.sort_by_key(|s| s.kind != ComponentKind::Sqlite);
            let name = req.name.clone().unwrap_or_else(|| {
                sources[0]
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "adhoc".into())
            });
            AppSpec {
                definition: None,
                previous: None,
                name,
                sources,
                excludes: req.excludes.clone(),
                time: None,
            }
        }
    };
    spec.time = req.time;
    let mut repo = setup.open(app_name.as_deref())?;
    // Unchanged files are reused only from a point this machine wrote (or restored).
    spec.previous = crate::known_points::newest(&repo.config().id, &spec.name);
    let tags = if req.tags.is_empty() {
        vec!["manual".to_string()]
    } else {
        req.tags.clone()
    };
    // A cold backup: the app's before_backup hook (e.g. stop it), the backup, and its
    // after_backup hook whatever happened (the app must come back).
    let hooks = app_name
        .as_deref()
        .and_then(|n| config.as_ref()?.app.get(n))
        .map(|a| a.hooks.clone())
        .unwrap_or_default();
    let mut cx = HookContext {
        app: spec.name.clone(),
        operation: "backup",
        point: None,
        result: None,
    };
    let mut hooks_ran = Vec::new();
    let before = run_hook(&hooks, Phase::BeforeBackup, &cx);
    let result = match before {
        Ok(r) => {
            hooks_ran.extend(r);
            backup_app(&mut repo, &spec, &tags, progress)
        }
        Err(e) => Err(Error::new(
            e.kind(),
            format!("{}; no backup was made", e.message()),
        )),
    };
    cx.point = result.as_ref().ok().map(|(id, _)| id.to_hex());
    cx.result = Some(if result.is_ok() { "ok" } else { "failed" });
    let after = run_hook(&hooks, Phase::AfterBackup, &cx);
    let (id, point) = match (result, after) {
        (Ok(r), Ok(a)) => {
            hooks_ran.extend(a);
            r
        }
        (Err(e), Ok(_)) => return Err(e),
        (Err(e), Err(a)) => {
            let msg = format!("{}; and then: {}", e.message(), a.message());
            return Err(Error::new(e.kind(), msg));
        }
        (Ok((id, point)), Err(a)) => {
            if setup.remembers_points() {
                crate::known_points::record(&repo, &id, &point);
            }
            return Err(Error::new(
                a.kind(),
                format!("point {} was written, but {}", id.short(), a.message()),
            )
            .with_hint("the app may not be running: check it"));
        }
    };
    if setup.remembers_points() {
        crate::known_points::record(&repo, &id, &point);
    }
    Ok(BackupReport {
        id,
        point,
        hooks: hooks_ran,
    })
}
