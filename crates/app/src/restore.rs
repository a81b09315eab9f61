//! Restore in two steps: [`plan`] resolves the app and point, selects the components,
//! chooses the target and the PostgreSQL settings, works out what an in-place restore
//! replaces and runs the preflight refusals; then (after the front end has asked its
//! question) [`RestorePlan::run`] takes the pre-restore safety point and restores.
//!
//! In place, `run` goes: pre-restore point -> `stop` hook -> restore (SQLite's own
//! verification) -> smoke queries -> `start` hook -> health URL. When anything after the stop
//! hook fails, `crate::rollback` puts the pre-restore point back and starts the app again.
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

use crate::checks::{smoke, wait_healthy, Checks};
use crate::hooks::{run_hook, HookContext, HookRun, HooksConfig, Phase};
use crate::setup::Setup;

mod at_time;
mod drill;
mod preview;

pub use at_time::{parse_at, AtTime, ReplayedDb};
pub use drill::{drill, DrillReport, DrillRequest};
pub use preview::{PreviewComponent, RestorePreview};

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
    /// How SQLite checks a restored database; `None`: `integrity_check` (for a database
    /// rebuilt from continuous deltas too, see ARCHITECTURE.md, Decisions).
    pub verify: Option<Verify>,
    /// `latest` may be older than the newest point this machine wrote or restored (that point
    /// is missing or damaged in the repository); without it that is an error.
    pub allow_older: bool,
    /// `latest` may be a point dated in the future (more than a few minutes ahead of this
    /// machine's clock); without it such points are passed over.
    pub allow_future: bool,
    /// Restore setuid/setgid bits of files as the point records them (cleared by default).
    pub keep_setid: bool,
    /// In place, replace paths that the config does not list for the app (default: refused
    /// when the config defines the app).
    pub allow_unlisted: bool,
    /// The app as it was at this moment: files from the newest point at or before it, each
    /// SQLite database from that point or its newer continuous deltas (see `at_time.rs`).
    pub at: Option<jiff::Timestamp>,
    /// Run SQLite's checks even on a database a proof record says already passed them.
    pub recheck: bool,
    /// Record the checks that passed in a proof record (off for a drill, which writes its
    /// own).
    pub write_proof: bool,
    /// PostgreSQL restored elsewhere (`to`): the new databases' suffix instead of
    /// `_restored_<point time>` (a drill's own names).
    pub pg_suffix: Option<String>,
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
            verify: None,
            allow_older: false,
            allow_future: false,
            keep_setid: false,
            allow_unlisted: false,
            at: None,
            recheck: false,
            write_proof: true,
            pg_suffix: None,
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
    /// The whole point, as `restore_point` gets it with `opts.only` (paths as written).
    to_restore: Point,
    replaced: Vec<Component>,
    opts: RestoreOptions,
    safety_point: bool,
    remember: bool,
    repo: Repository,
    /// The app's hooks and checks, from the local config only (never from the point).
    hooks: HooksConfig,
    checks: Checks,
    /// `restore`, or `rollback` (`LIFEBOAT_OPERATION` of the hooks).
    operation: &'static str,
    /// Where the parts of a restore `--at` come from.
    at: Option<AtTime>,
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

    /// For a restore `--at`: the point and the continuous deltas used.
    pub fn at_time(&self) -> Option<&AtTime> {
        self.at.as_ref()
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
    /// The app's hooks that ran (in place: stop, then start).
    pub hooks: Vec<HookRun>,
    /// The app's own checks that passed (smoke queries, health URL), one line each.
    pub checks: Vec<String>,
    /// For a restore `--at`: where each part came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<AtTime>,
}

/// Resolves and checks a restore; refusals (open or newer database, name taken) come here,
/// before any question and any safety point. A refusal is recorded in the audit log as a
/// failed restore (a plan that is never run is not recorded: nothing happened).
pub fn plan(setup: &Setup, req: &RestoreRequest) -> Result<RestorePlan> {
    crate::audit::audited_if_refused(setup, "restore", req.app.as_deref(), || {
        plan_with(setup, req, None)
    })
}

impl crate::audit::Audited for RestoreReport {
    fn facts(&self, ev: &mut lifeboat_core::AuditEvent) {
        ev.points = std::iter::once(self.point.clone())
            .chain(self.safety_point.map(|p| p.to_hex()))
            .collect();
        ev.bytes = Some(self.restored.iter().map(|c| c.bytes).sum());
        let short = &self.point[..8.min(self.point.len())];
        ev.message = match &self.safety_point {
            Some(pre) => format!(
                "point {short} restored ({} components; pre-restore point {})",
                self.restored.len(),
                pre.short()
            ),
            None => format!(
                "point {short} restored ({} components)",
                self.restored.len()
            ),
        };
    }
}

/// Names the point of a rollback once the repository is open.
pub(crate) type PointOfRollback<'a> = dyn FnMut(&Repository) -> Result<String> + 'a;

/// [`plan`], or with `rollback` the plan of `lifeboat rollback`: `rollback` names the point
/// (a pre-restore point) once the repository is open, and a database modified after that
/// point is replaced rather than refused (one open by another process is still refused).
pub(crate) fn plan_with(
    setup: &Setup,
    req: &RestoreRequest,
    rollback: Option<&mut PointOfRollback<'_>>,
) -> Result<RestorePlan> {
    let replace_newer = rollback.is_some();
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
    let spec = match rollback {
        Some(f) => f(&repo)?,
        None => spec,
    };
    let (found, at, mut replayed) = match req.at {
        Some(t) => {
            if spec != "latest" {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "--at picks the point itself; do not name one",
                ));
            }
            let app = app.clone().ok_or_else(|| {
                Error::new(ErrorKind::Usage, "which app? --at needs the app")
                    .with_hint("lifeboat restore APP --at TIME")
            })?;
            let (id, p, tables, info) = at_time::resolve(&mut repo, &app, t)?;
            (Ok((id, p)), Some(info), tables)
        }
        None => (
            repo.find_point_with(app.as_deref(), &spec, req.allow_future),
            None,
            std::collections::HashMap::new(),
        ),
    };
    if spec == "latest" && at.is_none() {
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
    // `point` keeps the selected components (what is shown and replaced); the restore gets
    // the whole point and the selection (a tree restore keeps what lies inside it at the
    // paths of components not selected).
    let mut to_restore = point.clone();
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
            let abs = abs.display().to_string();
            if let Some(t) = replayed.remove(&point.components[0].path) {
                replayed.insert(abs.clone(), t);
            }
            for c in &mut to_restore.components {
                if c.path == point.components[0].path && c.kind == point.components[0].kind {
                    c.path = abs.clone();
                }
            }
            point.components[0].path = abs;
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
        new_suffix: req.pg_suffix.clone(),
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
    if let Some(c) = &config {
        let app = &whole.app;
        if c.has_app(app) && !replaced.is_empty() {
            refuse_unlisted(&c.app_spec(app)?, &replaced, &id, req.allow_unlisted)?;
        } else if !req.allow_unlisted && !replaced.is_empty() && !c.has_app(app) {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "point {} is of app {app}, which lifeboat.toml does not define; it would write {} in place",
                    id.short(),
                    replaced.iter().map(|c| c.path.as_str()).collect::<Vec<_>>().join(", ")
                ),
            )
            .with_hint("restore with --to DIR and look at it first, or pass --allow-unlisted"));
        }
    }
    let opts = RestoreOptions {
        target,
        only,
        force: req.force,
        replace_newer,
        app_stops_first: false,
        verify: req.verify.unwrap_or(Verify::Full),
        verify_replayed: req.verify.unwrap_or(Verify::Full),
        postgres: pg,
        keep_setid: req.keep_setid,
        replayed: (!replayed.is_empty()).then(|| std::sync::Arc::new(replayed)),
        recheck: req.recheck,
        write_proof: req.write_proof,
    };
    // Hooks and checks of the app of that name in the local config (a point only names it).
    let app_config = config.as_ref().and_then(|c| c.app.get(&point.app));
    let hooks = app_config.map(|a| a.hooks.clone()).unwrap_or_default();
    let checks = app_config
        .map(|a| a.checks.plan(&a.sqlite))
        .unwrap_or_default();
    // The app still runs now and has its database open; a stop hook closes it before the
    // restore, whose own check refuses an open database then.
    let preflight_opts = RestoreOptions {
        app_stops_first: hooks.stop.is_some() && !replaced.is_empty(),
        ..opts.clone()
    };
    lifeboat_sources::app::preflight(&to_restore, &preflight_opts)?;
    Ok(RestorePlan {
        id,
        whole,
        point,
        to_restore,
        replaced,
        opts,
        safety_point: req.safety_point,
        remember: setup.remembers_points(),
        repo,
        hooks,
        checks,
        operation: if replace_newer { "rollback" } else { "restore" },
        at,
    })
}

/// In place a point writes where it says, as root. Any key holder can write a point (another
/// host of a shared repository, or whoever stole its password), so when the config defines
/// the app, only the paths it lists for it are replaced in place.
/// A listed path in a component of another kind is refused even with `allow_unlisted` (it could
/// change what the path is).
fn refuse_unlisted(
    spec: &AppSpec,
    replaced: &[Component],
    id: &ObjectId,
    allow_unlisted: bool,
) -> Result<()> {
    for comp in replaced {
        if comp.kind == ComponentKind::Postgres {
            // A database on the configured server (or `--pg-url`), not a path.
            continue;
        }
        // By path and kind: a component of another kind at a listed path could change what
        // the path is (a pre-restore point may hold a database as its raw files, as `config`
        // components at its path and its `-wal`/`-journal`: those are regular files, as a
        // `config` component always is, see `check_tree`).
        let c = comp.path.trim_end_matches('/');
        let mut path_listed = false;
        let listed = spec.sources.iter().any(|s| {
            s.source().path().is_some_and(|p| {
                let p = p.as_os_str().to_string_lossy();
                let p = p.trim_end_matches('/');
                let kind = s.source().kind();
                path_listed |= c == p;
                (c == p && kind == comp.kind)
                    || (kind == ComponentKind::Sqlite
                        && comp.kind == ComponentKind::Config
                        && [p.to_string(), format!("{p}-wal"), format!("{p}-journal")]
                            .iter()
                            .any(|x| x == c))
            })
        });
        if !listed && path_listed {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "point {} would write {} in place as {}, which lifeboat.toml lists as another kind for app {}",
                    id.short(),
                    comp.path,
                    comp.kind.as_str(),
                    spec.name
                ),
            )
            .with_hint("restore with --to DIR and look at it first"));
        }
        if allow_unlisted {
            continue;
        }
        if !listed {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "point {} would write {} ({}) in place, and lifeboat.toml does not list it for app {}",
                    id.short(),
                    comp.path,
                    comp.kind.as_str(),
                    spec.name
                ),
            )
            .with_hint("restore with --to DIR and look at it first; if it belongs to the app, add it to lifeboat.toml or pass --allow-unlisted"));
        }
    }
    Ok(())
}

impl RestorePlan {
    /// Restores. An in-place restore that replaces something needs `confirmed`, and first
    /// saves what it replaces as a `pre-restore` point (unless the request turned that off);
    /// `saved` sees that point's id as soon as it is written.
    ///
    /// In place, the app's `stop` hook runs next, then the restore, the smoke queries, the
    /// `start` hook and the health URL. When anything after the stop hook fails, the
    /// pre-restore point is put back and the app started again: the error is then of kind
    /// `RolledBack` (exit 9), or `RollbackFailed` (exit 10) naming the pre-restore point and
    /// the command to retry. A failed stop hook changes nothing (the start hook runs again).
    /// Elsewhere (`--to`), no hook runs and the smoke queries check the restored copies.
    ///
    /// The outcome is recorded in the audit log (command `restore`, or `rollback`).
    pub fn run(
        mut self,
        confirmed: bool,
        progress: &dyn Progress,
        saved: &mut dyn FnMut(&ObjectId),
    ) -> Result<RestoreReport> {
        let op = crate::audit::Op::start(self.operation, Some(&self.point.app));
        let result = self.run_unaudited(confirmed, progress, saved);
        op.finish(crate::audit::Target::Repo(&self.repo), result)
    }

    fn run_unaudited(
        &mut self,
        confirmed: bool,
        progress: &dyn Progress,
        saved: &mut dyn FnMut(&ObjectId),
    ) -> Result<RestoreReport> {
        let mut safety_point = None;
        if self.replaced.is_empty() {
            let restored = self.restore(progress)?;
            let checks = self.smoke().map_err(|e| {
                e.context(format!(
                    "restore of point {} (nothing in place was changed)",
                    self.id.short()
                ))
            })?;
            self.remember();
            return Ok(self.report(restored, None, Vec::new(), checks));
        }
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
        let cx = HookContext {
            app: self.point.app.clone(),
            operation: self.operation,
            point: Some(self.id.to_hex()),
            result: None,
        };
        let mut hooks = Vec::new();
        let stopped = run_hook(&self.hooks, Phase::Stop, &cx).and_then(|r| {
            hooks.extend(r);
            // The refusals again, now (a database the app still has open after its stop hook,
            // or opened since the plan): nothing is written yet, so nothing needs rolling back.
            lifeboat_sources::app::preflight(&self.to_restore, &self.opts)
        });
        if let Err(e) = stopped {
            // Nothing was written, but the app may be (half) stopped: start it again.
            let again = match run_hook(&self.hooks, Phase::Start, &cx) {
                Ok(Some(_)) => "; the start hook ran again".to_string(),
                Ok(None) => String::new(),
                Err(e2) => format!("; the start hook that ran again failed too: {e2}"),
            };
            let err = Error::new(
                e.kind(),
                format!("{}; nothing was restored{again}", e.message()),
            );
            return Err(match e.hint() {
                Some(h) => err.with_hint(h.to_string()),
                None => err,
            });
        }
        let mut checks = Vec::new();
        let mut started = false;
        let outcome = (|| -> Result<Vec<RestoredComponent>> {
            let restored = self.restore(progress)?;
            checks.extend(self.smoke()?);
            started = true;
            hooks.extend(run_hook(&self.hooks, Phase::Start, &cx)?);
            if let Some((url, timeout)) = &self.checks.health {
                checks.push(wait_healthy(url, *timeout)?);
            }
            Ok(restored)
        })();
        match outcome {
            Ok(restored) => {
                self.remember();
                if let Some(pre) = &safety_point {
                    crate::known_points::record_restore(
                        &self.repo,
                        &self.point.app,
                        crate::known_points::LastRestore {
                            restored: self.id.to_hex(),
                            restored_time: self.point.time.clone(),
                            pre_restore: pre.to_hex(),
                            at: jiff::Timestamp::now().to_string(),
                        },
                    );
                }
                Ok(self.report(restored, safety_point, hooks, checks))
            }
            Err(failure) => Err(crate::rollback::after_failure(
                crate::rollback::Failed {
                    repo: &mut self.repo,
                    point: &self.point,
                    id: self.id,
                    failure,
                    safety_point,
                    safety_point_asked: self.safety_point,
                    started,
                    hooks: &self.hooks,
                    hook_cx: &cx,
                    opts: &self.opts,
                },
                progress,
            )),
        }
    }

    /// The restore itself (with SQLite's own verification).
    fn restore(&mut self, progress: &dyn Progress) -> Result<Vec<RestoredComponent>> {
        let id = self.id;
        restore_point(&mut self.repo, &id, &self.to_restore, &self.opts, progress).map_err(|e| {
            // A point that lifeboat refuses (damaged, or a hostile globals.sql) is named.
            if e.kind() == ErrorKind::Corrupt {
                e.context(format!("point {}", self.id.short()))
            } else {
                e
            }
        })
    }

    /// The app's smoke queries on the databases this restore wrote (where it wrote them).
    fn smoke(&self) -> Result<Vec<String>> {
        let mut passed = Vec::new();
        for (db, queries) in &self.checks.sql {
            let restored =
                self.point.components.iter().any(|c| {
                    c.kind == ComponentKind::Sqlite && std::path::Path::new(&c.path) == db
                });
            if restored {
                let at =
                    lifeboat_sources::target_path(&self.opts.target, &db.display().to_string());
                passed.extend(smoke(&at, queries)?);
            }
        }
        Ok(passed)
    }

    fn remember(&self) {
        if self.remember {
            crate::known_points::record(&self.repo, &self.id, &self.whole);
        }
    }

    fn report(
        &self,
        restored: Vec<RestoredComponent>,
        safety_point: Option<ObjectId>,
        hooks: Vec<HookRun>,
        checks: Vec<String>,
    ) -> RestoreReport {
        RestoreReport {
            point: self.id.to_hex(),
            restored,
            safety_point,
            hooks,
            checks,
            at: self.at.clone(),
        }
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
        components: &point.components,
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
        definition: None,
        previous: crate::known_points::newest(&repo.config().id, &point.app),
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
    // The point reuses chunks the index lists; the restore is about to remove what it saved,
    // so the packs it rests on must still be in the store (whole).
    let missing = lifeboat_core::missing_packs(repo, &id)?;
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "the pre-restore point {} rests on data the repository no longer holds ({} packs missing or truncated, e.g. {}); restoring now could lose the current state for good, so nothing was changed",
                id.short(),
                missing.len(),
                missing[0]
            ),
        )
        .with_hint("run `lifeboat check` to see what is damaged; restore with --to DIR, or pass --no-safety-point to replace the current state without a way back"));
    }
    Ok(Some(id))
}
