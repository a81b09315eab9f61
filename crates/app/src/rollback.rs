//! Rollback: putting back the state an in-place restore replaced (its `pre-restore` point).
//!
//! - Automatically, when an in-place restore fails after the app's stop hook ran (the restore
//!   itself, SQLite's verification, a smoke query, the start hook or the health URL):
//!   [`after_failure`] stops the app again if its start hook had run, restores the
//!   pre-restore point in place, runs the start hook and returns an error of kind
//!   `RolledBack` (exit 9) saying what failed and that the previous state is back. No second
//!   pre-restore point is taken of the state that failed: it is the restored point itself,
//!   still in the repository (only what the app wrote between its start and the failed
//!   health check is lost), and saving it would keep the app down longer. The app's checks are
//!   not run on the state put back (it is what ran before, checked or not). If putting it back
//!   fails, the error is of kind `RollbackFailed` (exit 10), names the pre-restore point and
//!   the command to retry, and the start hook is not run again (the app would run on data
//!   that failed).
//! - On purpose, `lifeboat rollback APP` ([`plan`]): the last in-place restore of the app done
//!   on this machine (remembered per repository and app in the state file of
//!   `known_points.rs`) is undone by restoring its pre-restore point in place, as a restore:
//!   confirmed, with its own pre-restore point (so a second rollback undoes the first), hooks
//!   and checks (and the automatic rollback if they fail).
use lifeboat_core::{Error, ErrorKind, ObjectId, Point, Progress, Repository, Result};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{restore_point, PgRestoreSettings, RestoreOptions, RestoreTarget};

use crate::hooks::{run_hook, HookContext, HooksConfig, Phase};
use crate::known_points::{last_restore, record_restore, LastRestore};
use crate::restore::{plan_with, RestorePlan, RestoreRequest};
use crate::setup::Setup;

/// An in-place restore that failed after its stop hook.
pub(crate) struct Failed<'a> {
    pub repo: &'a mut Repository,
    /// The point being restored (selected components).
    pub point: &'a Point,
    pub id: ObjectId,
    /// What failed.
    pub failure: Error,
    /// The pre-restore point taken before the stop hook.
    pub safety_point: Option<ObjectId>,
    /// Whether a pre-restore point was asked for (`--no-safety-point` not given).
    pub safety_point_asked: bool,
    /// Whether the start hook ran (successfully or not): the app may be running.
    pub started: bool,
    pub hooks: &'a HooksConfig,
    pub hook_cx: &'a HookContext,
    /// The failed restore's options (verification level, PostgreSQL connections).
    pub opts: &'a RestoreOptions,
}

/// Undoes a failed in-place restore as well as it can and returns the error to report (see
/// the module documentation).
pub(crate) fn after_failure(f: Failed<'_>, progress: &dyn Progress) -> Error {
    let app = f.point.app.clone();
    let what = format!(
        "{} of point {} failed: {}",
        f.hook_cx.operation,
        f.id.short(),
        f.failure.message()
    );
    let Some(pre) = f.safety_point else {
        let why = if f.safety_point_asked {
            "nothing was at the restored paths before, so no pre-restore point was taken"
        } else {
            "no pre-restore point was taken (--no-safety-point)"
        };
        let again = if f.started {
            String::new()
        } else {
            match run_hook(f.hooks, Phase::Start, f.hook_cx) {
                Ok(Some(_)) => "; the start hook ran".to_string(),
                Ok(None) => String::new(),
                Err(e) => format!("; the start hook failed too: {e}"),
            }
        };
        let e = Error::new(
            f.failure.kind(),
            format!(
                "{what}; no rollback is possible: {why}; what the restore wrote is in place{again}"
            ),
        );
        return match f.failure.hint() {
            Some(h) => e.with_hint(h.to_string()),
            None => e,
        };
    };
    tracing::warn!("{what}; putting back pre-restore point {}", pre.short());
    let cx = HookContext {
        operation: "rollback",
        point: Some(pre.to_hex()),
        ..f.hook_cx.clone()
    };
    let mut notes = Vec::new();
    if f.started {
        if let Err(e) = run_hook(f.hooks, Phase::Stop, &cx) {
            notes.push(format!("the stop hook failed: {e}"));
        }
    }
    let opts = RestoreOptions {
        target: RestoreTarget::InPlace,
        only: Vec::new(),
        force: false,
        replace_newer: true,
        app_stops_first: false,
        verify: f.opts.verify,
        verify_replayed: f.opts.verify_replayed,
        postgres: PgRestoreSettings {
            database: None,
            tables: Vec::new(),
            globals: false,
            ..f.opts.postgres.clone()
        },
        // Not even for this machine's own saved state: what a capture saw in a directory the
        // app's user controls is theirs to shape (setuid bits stay off, as in any restore).
        keep_setid: false,
        replayed: None,
        recheck: false,
        write_proof: true,
    };
    let put_back = f
        .repo
        .read_point(&pre)
        .and_then(|p| restore_point(f.repo, &pre, &p, &opts, progress));
    let retry = format!("lifeboat rollback {app} --yes");
    if let Err(e) = put_back {
        // `lifeboat rollback APP` retries from this record.
        record_restore(
            f.repo,
            &app,
            LastRestore {
                restored: f.id.to_hex(),
                restored_time: f.point.time.clone(),
                pre_restore: pre.to_hex(),
                at: jiff::Timestamp::now().to_string(),
            },
        );
        notes.push(
            "the start hook was not run again, so that the app does not run on data that failed"
                .into(),
        );
        return Error::new(
            ErrorKind::RollbackFailed,
            format!(
                "{what}. ROLLBACK FAILED: putting back pre-restore point {} (the state before this restore) failed: {}. The app's data may be half restored; {}",
                pre.to_hex(),
                e.message(),
                notes.join("; ")
            ),
        )
        .with_hint(format!(
            "fix the cause, then retry the rollback: `{retry}` (or `lifeboat restore {app} {} --yes --force`)",
            pre.short()
        ));
    }
    match run_hook(f.hooks, Phase::Start, &cx) {
        Ok(ran) => {
            let started = if ran.is_some() {
                " and the app was started again"
            } else {
                ""
            };
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            };
            Error::new(
                ErrorKind::RolledBack,
                format!(
                    "{what}. Rolled back: pre-restore point {} (the state before this restore) is back in place{started}{notes}",
                    pre.short()
                ),
            )
            .with_hint(format!(
                "the point that failed is unchanged in the repository; look at it beside with `lifeboat restore {app} {} --to DIR`",
                f.id.short()
            ))
        }
        Err(e) => Error::new(
            ErrorKind::RollbackFailed,
            format!(
                "{what}. Pre-restore point {} (the state before this restore) is back in place, but ROLLBACK FAILED: the start hook failed: {e}",
                pre.to_hex()
            ),
        )
        .with_hint(format!("start the app by hand, and find out why its start hook fails (`{retry}` would restore the same state again)")),
    }
}

/// What `lifeboat rollback` undoes.
#[derive(Debug, Clone, Default)]
pub struct RollbackRequest {
    /// The app (default: the config's only app).
    pub app: Option<String>,
    /// How SQLite checks the databases put back.
    pub verify: Verify,
}

/// A rollback ready to run: a restore plan of the pre-restore point, and what it undoes.
pub struct RollbackPlan {
    /// The last in-place restore of the app on this machine (what is undone).
    pub undoing: LastRestore,
    /// The restore of its pre-restore point; `run` it as any restore (confirmed first).
    pub plan: RestorePlan,
}

/// Finds the last in-place restore of the app done on this machine and plans putting back
/// its pre-restore point. Refuses (kind `Usage`) when none is remembered, naming the newest
/// pre-restore point of the app if there is one.
pub fn plan(setup: &Setup, req: &RollbackRequest) -> Result<RollbackPlan> {
    crate::audit::audited_if_refused(setup, "rollback", req.app.as_deref(), || {
        plan_unaudited(setup, req)
    })
}

fn plan_unaudited(setup: &Setup, req: &RollbackRequest) -> Result<RollbackPlan> {
    let config = setup.config()?;
    let app = match (&req.app, &config) {
        (Some(a), _) => a.clone(),
        (None, Some(c)) => c
            .only_app()
            .ok_or_else(|| {
                Error::new(ErrorKind::Usage, "which app? the config defines several")
                    .with_hint("name it: lifeboat rollback APP")
            })?
            .to_string(),
        (None, None) => {
            return Err(Error::new(ErrorKind::Usage, "which app?")
                .with_hint("name it: lifeboat rollback APP"))
        }
    };
    let mut undoing = None;
    let mut find = |repo: &Repository| -> Result<String> {
        match last_restore(&repo.config().id, &app) {
            Some(last) => {
                let pre = last.pre_restore.clone();
                undoing = Some(last);
                Ok(pre)
            }
            None => Err(no_record(repo, &app)),
        }
    };
    let restore = RestoreRequest {
        app: Some(app.clone()),
        verify: Some(req.verify),
        safety_point: true,
        ..RestoreRequest::default()
    };
    let plan = plan_with(setup, &restore, Some(&mut find)).map_err(|e| {
        if e.kind() == ErrorKind::Usage && e.message().starts_with("no point") {
            e.context("the pre-restore point of the last restore is gone from the repository")
        } else {
            e
        }
    })?;
    let undoing = undoing.expect("found before the plan");
    if !plan.point().tags.iter().any(|t| t == "pre-restore") {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "point {} remembered as the pre-restore point of app {app} is not one",
                plan.id().short()
            ),
        ));
    }
    Ok(RollbackPlan { undoing, plan })
}

fn no_record(repo: &Repository, app: &str) -> Error {
    let newest = repo.points().ok().and_then(|ps| {
        ps.into_iter()
            .filter(|(_, p)| p.app == app && p.tags.iter().any(|t| t == "pre-restore"))
            .max_by(|a, b| a.1.time.cmp(&b.1.time))
    });
    let e = Error::new(
        ErrorKind::Usage,
        format!("this machine has done no in-place restore of app {app} in this repository that could be rolled back"),
    );
    match newest {
        Some((id, p)) => e.with_hint(format!(
            "the newest pre-restore point of app {app} is {} (taken {}, before an in-place restore that may have been done elsewhere); `lifeboat restore {app} {} --yes --force` puts it back",
            id.short(),
            p.time,
            id.short()
        )),
        None => e.with_hint(format!(
            "app {app} has no pre-restore point either; `lifeboat points {app}` lists what can be restored"
        )),
    }
}
