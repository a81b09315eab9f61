//! Restore in two steps: [`plan`] resolves the app and point, selects the components,
//! chooses the target and the PostgreSQL settings, works out what an in-place restore
//! replaces and runs the preflight refusals; then (after the front end has asked its
//! question) [`RestorePlan::run`] takes the pre-restore safety point and restores.
use std::path::PathBuf;

use lifeboat_core::{
    Component, ComponentKind, Error, ErrorKind, ObjectId, Point, Progress, Repository, Result,
};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{
    backup_app, registry, restore_point, AppSpec, PgRestoreSettings, RestoreContext,
    RestoreOptions, RestoreTarget, RestoredComponent,
};
use serde::Serialize;

use crate::setup::Setup;

/// What to restore, where, and how.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    /// The app (default: the config's only app).
    pub app: Option<String>,
    /// A point id prefix or `latest` (default). Given without `app`, the name of an app
    /// of the config means that app's latest point.
    pub point: Option<String>,
    /// Restore under this directory instead of in place.
    pub to: Option<PathBuf>,
    /// Restore the one selected component to exactly this path.
    pub output: Option<PathBuf>,
    /// Only these kinds (`Sqlite` means every database, PostgreSQL included); empty: all.
    pub only: Vec<ComponentKind>,
    /// PostgreSQL: restore into this new database instead of in place.
    pub pg_database: Option<String>,
    /// PostgreSQL: onto this server instead of the configured one.
    pub pg_url: Option<String>,
    /// PostgreSQL: parallel pg_restore jobs.
    pub jobs: Option<u32>,
    /// PostgreSQL: only these tables (new database only).
    pub tables: Vec<String>,
    /// PostgreSQL: run the point's roles/tablespaces script first.
    pub pg_globals: bool,
    /// PostgreSQL: objects owned by the restoring user; no GRANTs.
    pub pg_no_owner: bool,
    /// PostgreSQL: end other sessions of a database replaced in place.
    pub pg_terminate: bool,
    /// Replace a database even if open by another process or newer than the point; overwrite
    /// an existing `output`.
    pub force: bool,
    /// Take the pre-restore point of the current state before an in-place restore.
    pub safety_point: bool,
    /// How SQLite checks a restored database.
    pub verify: Verify,
    /// `latest` may be older than the newest point this machine wrote or restored (that point
    /// is missing or damaged in the repository); without it that is an error.
    pub allow_older: bool,
    /// `latest` may be a point dated in the future (more than a few minutes ahead of this
    /// machine's clock); without it such points are passed over.
    pub allow_future: bool,
}

impl Default for RestoreRequest {
    fn default() -> RestoreRequest {
        RestoreRequest {
            app: None,
            point: None,
            to: None,
            output: None,
            only: Vec::new(),
            pg_database: None,
            pg_url: None,
            jobs: None,
            tables: Vec::new(),
            pg_globals: false,
            pg_no_owner: false,
            pg_terminate: false,
            force: false,
            safety_point: true,
            verify: Verify::Full,
            allow_older: false,
            allow_future: false,
        }
    }
}

/// A restore ready to run: the preflight passed, nothing is changed yet.
///
/// Its fields are private: a front end shows them (the accessors) and confirms, but cannot
/// edit what `run` restores or drop what it must save first.
pub struct RestorePlan {
    id: ObjectId,
    /// The point as stored (what is remembered as restored).
    whole: Point,
    point: Point,
    replaced: Vec<Component>,
    opts: RestoreOptions,
    safety_point: bool,
    remember: bool,
    repo: Repository,
}

impl RestorePlan {
    /// The point's id.
    pub fn id(&self) -> ObjectId {
        self.id
    }

    /// The point, with only the selected components (paths as they will be written for
    /// `output`).
    pub fn point(&self) -> &Point {
        &self.point
    }

    /// What an in-place restore replaces (empty when restoring elsewhere): the front end
    /// confirms these before [`RestorePlan::run`], which saves them first (pre-restore point).
    pub fn replaced(&self) -> &[Component] {
        &self.replaced
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The point's id (hex).
    pub point: String,
    /// Each component restored.
    pub restored: Vec<RestoredComponent>,
    /// The pre-restore point taken first, if any.
    #[serde(skip)]
    pub safety_point: Option<ObjectId>,
}

/// Resolves and checks a restore; refusals (open or newer database, name taken) come here,
/// before any question and any safety point.
pub fn plan(setup: &Setup, req: &RestoreRequest) -> Result<RestorePlan> {
    let config = setup.config()?;
    let is_app = |s: &str| config.as_ref().is_some_and(|c| c.has_app(s));
    let latest = || "latest".to_string();
    let (app, spec) = match (&req.app, &req.point) {
        (None, None) => (
            config
                .as_ref()
                .and_then(|c| c.only_app())
                .map(str::to_string),
            latest(),
        ),
        (None, Some(x)) if is_app(x) => (Some(x.clone()), latest()),
        (None, Some(x)) => (None, x.clone()),
        (Some(a), p) => (Some(a.clone()), p.clone().unwrap_or_else(latest)),
    };
    let mut repo = setup.open(app.as_deref())?;
    let found = repo.find_point_with(app.as_deref(), &spec, req.allow_future);
    if spec == "latest" {
        // Not older than the newest point this machine knows, if that one is gone or damaged
        // (with no point at all, that is the error rather than "there are no points").
        let time = match &found {
            Ok((_, p)) => p.timestamp().ok(),
            Err(_) => None,
        };
        crate::known_points::check_latest(&repo, app.as_deref(), time, req.allow_older)?;
    }
    let (id, mut point) = found?;
    {
        // The point's paths, before anything (a pre-restore point included) is read or written.
        let session = repo.begin_restore()?;
        let mut reader = session.reader();
        lifeboat_sources::app::check_point_paths(&mut reader, &point, &id.short())?;
    }
    let whole = point.clone();
    let mut only = req.only.clone();
    if only.contains(&ComponentKind::Sqlite) {
        // `db` means every database of the point.
        only.push(ComponentKind::Postgres);
    }
    if !only.is_empty() {
        point.components.retain(|c| only.contains(&c.kind));
    }
    if point.components.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("point {} has no component matching --only", id.short()),
        ));
    }
    let target = match (&req.to, &req.output) {
        (Some(dir), _) => RestoreTarget::Into(dir.clone()),
        (None, Some(out)) => {
            if point.components[0].kind == ComponentKind::Postgres {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "a PostgreSQL database restores into a database, not a file",
                )
                .with_hint("use --pg-database NAME"));
            }
            if point.components.len() != 1 {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "--output needs exactly one component, point {} has {}",
                        id.short(),
                        point.components.len()
                    ),
                )
                .with_hint("choose one with --only db|files|secrets|config, or use --to DIR"));
            }
            if out.exists() && !req.force {
                return Err(
                    Error::new(ErrorKind::Refused, format!("{} exists", out.display()))
                        .with_hint("choose a new path, or pass --force to overwrite it"),
                );
            }
            let abs = std::path::absolute(out).map_err(|e| Error::io(out.display(), e))?;
            // Normalized (a restore refuses `.` and `..` in a component path): the directory
            // as it really is, then the file name.
            let abs = match (abs.parent(), abs.file_name()) {
                (Some(dir), Some(name)) => dir
                    .canonicalize()
                    .map_err(|e| Error::io(dir.display(), e))?
                    .join(name),
                _ => abs,
            };
            point.components[0].path = abs.display().to_string();
            RestoreTarget::InPlace
        }
        (None, None) => RestoreTarget::InPlace,
    };
    let mut pg = PgRestoreSettings {
        connections: match (&config, &app) {
            (Some(c), Some(app)) => c.pg_sources(app),
            _ => Vec::new(),
        },
        url: req.pg_url.clone(),
        database: req.pg_database.clone(),
        tables: req.tables.clone(),
        globals: req.pg_globals,
        no_owner: req.pg_no_owner,
        terminate: req.pg_terminate,
        ..PgRestoreSettings::default()
    };
    if let Some(j) = req.jobs {
        pg.jobs = j.max(1);
    }
    // What an in-place restore replaces: everything, except databases sent to a new name.
    let replaced: Vec<Component> = if req.to.is_none() && req.output.is_none() {
        point
            .components
            .iter()
            .filter(|c| c.kind != ComponentKind::Postgres || req.pg_database.is_none())
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let opts = RestoreOptions {
        target,
        only: Vec::new(),
        force: req.force,
        verify: req.verify,
        postgres: pg,
    };
    lifeboat_sources::app::preflight(&point, &opts)?;
    Ok(RestorePlan {
        id,
        whole,
        point,
        replaced,
        opts,
        safety_point: req.safety_point,
        remember: setup.remembers_points(),
        repo,
    })
}

impl RestorePlan {
    /// Restores. An in-place restore that replaces something needs `confirmed`, and first
    /// saves what it replaces as a `pre-restore` point (unless the request turned that off);
    /// `saved` sees that point's id as soon as it is written.
    pub fn run(
        mut self,
        confirmed: bool,
        progress: &dyn Progress,
        saved: &mut dyn FnMut(&ObjectId),
    ) -> Result<RestoreReport> {
        let mut safety_point = None;
        if !self.replaced.is_empty() {
            if !confirmed {
                let list: Vec<_> = self.replaced.iter().map(|c| c.path.as_str()).collect();
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "an in-place restore replaces {}; it was not confirmed",
                        list.join(", ")
                    ),
                ));
            }
            if self.safety_point {
                safety_point = save_current_state(
                    &mut self.repo,
                    &self.point,
                    &self.replaced,
                    &self.opts,
                    progress,
                )?;
                if let Some(id) = &safety_point {
                    saved(id);
                }
            }
        }
        let id = self.id;
        let restored = restore_point(&mut self.repo, &id, &self.point, &self.opts, progress)
            .map_err(|e| {
                // A point that lifeboat refuses (damaged, or a hostile globals.sql) is named.
                if e.kind() == ErrorKind::Corrupt {
                    e.context(format!("point {}", self.id.short()))
                } else {
                    e
                }
            })?;
        if self.remember {
            crate::known_points::record(&self.repo, &self.id, &self.whole);
        }
        Ok(RestoreReport {
            point: self.id.to_hex(),
            restored,
            safety_point,
        })
    }
}

/// Backs up what is there now, before it is replaced, as a `pre-restore` point (`None` when
/// nothing of it exists). Each kind says what its restore would replace
/// (`SourceKind::current_state`); when that cannot be captured (a database SQLite cannot
/// read), the kinds that can fall back to raw bytes do (`SourceKind::current_state_raw`).
fn save_current_state(
    repo: &mut Repository,
    point: &Point,
    replaced: &[Component],
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Option<ObjectId>> {
    let selected: Vec<&Component> = replaced.iter().collect();
    let cx = RestoreContext {
        options: opts,
        point_time: point.timestamp()?,
        selected: &selected,
        proofs: None,
    };
    let mut sources = Vec::new();
    for c in replaced {
        sources.extend(registry::kind(c.kind).current_state(c, &cx)?);
    }
    if sources.is_empty() {
        return Ok(None);
    }
    let app = point.app.as_str();
    let mut spec = AppSpec {
        name: app.to_string(),
        sources,
        excludes: Vec::new(),
        time: None,
    };
    let tags = ["pre-restore".to_string()];
    let id = match backup_app(repo, &spec, &tags, progress) {
        Ok((id, _)) => id,
        Err(e)
            if replaced
                .iter()
                .any(|c| registry::kind(c.kind).current_state_raw(c).is_some()) =>
        {
            tracing::warn!("pre-restore point through SQLite failed ({e}); saving the raw database files instead");
            let mut raw = Vec::new();
            for c in replaced {
                let k = registry::kind(c.kind);
                match k.current_state_raw(c) {
                    Some(r) => raw.extend(r),
                    None => raw.extend(k.current_state(c, &cx)?),
                }
            }
            spec.sources = raw;
            backup_app(repo, &spec, &tags, progress)
                .map_err(|e| {
                    e.context("take the pre-restore point").with_hint(
                        "the current state could not be saved first; fix the error or pass --no-safety-point",
                    )
                })?
                .0
        }
        Err(e) => return Err(e.context("take the pre-restore point").with_hint(
            "the current state could not be saved first; fix the error or pass --no-safety-point",
        )),
    };
    Ok(Some(id))
}
