//! Retention: which policy applies (the request's, else the config's `[app.X.keep_in.REPO]`,
//! else `[app.X.keep]`), the plan with the rule behind each decision, then forget and an
//! optional prune. Forget also thins the app's continuous deltas (`docs/FORMAT.md` §17): the
//! chains of the points it removes, and whole chains older than `continuous_keep`.
use std::time::Duration;

use lifeboat_core::{
    forget, forget_deltas, plan_retention, prune, thin_deltas, Decision, DeltaForgetReport, Error,
    ErrorKind, ObjectId, Policy, Progress, PruneOptions, PruneReport, Repository, Result,
};
use serde::Serialize;

use crate::setup::Setup;

/// Whose points, and under which policy.
#[derive(Debug, Clone, Default)]
pub struct ForgetRequest {
    /// The app (default: the config's only app).
    pub app: Option<String>,
    /// A policy given directly (the CLI's `--keep-*` flags); `None`: the config's. Without a
    /// time zone of its own it takes the config's policy's.
    pub policy: Option<Policy>,
    /// Time zone of the calendar rules, overriding whichever policy applies.
    pub timezone: Option<String>,
}

/// The decisions for an app's points; nothing is changed until [`ForgetPlan::apply`].
#[derive(Serialize)]
pub struct ForgetPlan {
    /// The app.
    pub app: String,
    /// The policy applied.
    #[serde(serialize_with = "describe")]
    pub policy: Policy,
    /// The `[repository.NAME]` whose points these are, if the config names it.
    pub repository: Option<String>,
    /// One decision per point, newest first.
    pub points: Vec<Decision>,
    /// How long continuous deltas are kept (`continuous_keep`, default 24 h), in seconds.
    #[serde(serialize_with = "seconds")]
    pub continuous_keep: Duration,
    /// The app's continuous deltas the plan removes and keeps (a dry run of
    /// [`ForgetPlan::apply`]'s thinning; the apply plans again, as the chains may have grown).
    pub deltas: DeltaForgetReport,
    /// Interval links older than `continuous_fine` (default 1 h) that a minute link covers,
    /// which the apply drops (`thin_deltas`: every interval for the last hour, then every
    /// minute).
    pub deltas_thinned: u64,
    /// `continuous_fine`.
    #[serde(serialize_with = "seconds")]
    pub continuous_fine: Duration,
    #[serde(skip)]
    repo: Repository,
}

/// Default `continuous_fine`: every interval's link for an hour, then one a minute.
pub const DEFAULT_CONTINUOUS_FINE: Duration = Duration::from_secs(3600);

/// Default of `continuous_keep`.
pub const DEFAULT_CONTINUOUS_KEEP: Duration = Duration::from_secs(24 * 3600);

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn describe<S: serde::Serializer>(p: &Policy, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&p.describe())
}

impl ForgetPlan {
    /// How many points the plan removes.
    pub fn removed(&self) -> usize {
        self.points.iter().filter(|d| !d.keep).count()
    }

    /// The ids of the points the plan removes.
    fn removed_ids(&self) -> Vec<ObjectId> {
        removed_ids(&self.points)
    }

    /// Forgets the points the plan removes and thins the app's deltas (their chains, and
    /// chains older than `continuous_keep`), then prunes with `prune` if given. Each of the
    /// two is recorded in the audit log (`forget`, with the points removed; `prune`).
    pub fn apply(
        mut self,
        prune_with: Option<&PruneOptions>,
        progress: &dyn Progress,
    ) -> Result<Option<PruneReport>> {
        let op = crate::audit::Op::start("forget", Some(&self.app));
        let forgot = self.forget();
        op.finish(crate::audit::Target::Repo(&self.repo), forgot)?;
        prune_with
            .map(|opts| {
                let op = crate::audit::Op::start("prune", None);
                let pruned = prune(&mut self.repo, opts, progress);
                op.finish(crate::audit::Target::Repo(&self.repo), pruned)
            })
            .transpose()
    }

    /// The forget itself: the points removed (hex ids).
    fn forget(&self) -> Result<Forgot> {
        let removed: Vec<String> = self
            .points
            .iter()
            .filter(|d| !d.keep)
            .map(|d| d.id.clone())
            .collect();
        let forgotten = forget(&self.repo, &self.points);
        // Deleted on purpose here: no longer a point `latest` must find (also after a partial
        // failure; a point still there but no longer known is only a weaker check).
        crate::known_points::forget(&self.repo, &removed);
        forgotten?;
        forget_deltas(
            &self.repo,
            &self.app,
            self.continuous_keep,
            jiff::Timestamp::now(),
            &self.removed_ids(),
            false,
        )?;
        thin_deltas(
            &self.repo,
            &self.app,
            self.continuous_fine,
            jiff::Timestamp::now(),
            false,
        )?;
        Ok(Forgot {
            removed,
            kept: self.points.len() - self.removed(),
        })
    }
}

/// What a forget removed, for the audit log.
struct Forgot {
    removed: Vec<String>,
    kept: usize,
}

impl crate::audit::Audited for Forgot {
    fn facts(&self, ev: &mut lifeboat_core::AuditEvent) {
        ev.message = format!("{} points removed, {} kept", self.removed.len(), self.kept);
        ev.points = self.removed.clone();
    }
}

fn removed_ids(points: &[Decision]) -> Vec<ObjectId> {
    points
        .iter()
        .filter(|d| !d.keep)
        .filter_map(|d| ObjectId::from_hex(&d.id))
        .collect()
}

/// Resolves the policy and plans it over the app's points (its repository's). A refusal is
/// recorded in the audit log as a failed forget; the plan is recorded when applied.
pub fn plan(setup: &Setup, req: &ForgetRequest) -> Result<ForgetPlan> {
    crate::audit::audited_if_refused(setup, "forget", req.app.as_deref(), || {
        plan_unaudited(setup, req)
    })
}

fn plan_unaudited(setup: &Setup, req: &ForgetRequest) -> Result<ForgetPlan> {
    let config = setup.config()?;
    let app = req
        .app
        .clone()
        .or_else(|| {
            config
                .as_ref()
                .and_then(|c| c.only_app())
                .map(str::to_string)
        })
        .ok_or_else(|| {
            Error::new(ErrorKind::Usage, "which app? `lifeboat forget APP`")
                .with_hint("retention applies to one app's points at a time")
        })?;
    let (location, _) = setup.location_for(Some(&app))?;
    let repository = config
        .as_ref()
        .and_then(|c| c.repository_name(&location))
        .map(str::to_string);
    let from_config = config
        .as_ref()
        .and_then(|c| c.keep_for(&app, repository.as_deref()))
        .cloned();
    let mut policy = match (req.policy.clone(), from_config) {
        (Some(mut p), cfg) => {
            if p.timezone.is_none() {
                p.timezone = cfg.and_then(|c| c.timezone);
            }
            p
        }
        (None, Some(p)) => p,
        (None, None) => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("no retention policy for app {app}"),
            )
            .with_hint(format!(
                "add [app.{app}.keep] (e.g. daily = 7, weekly = 4, monthly = 12) to lifeboat.toml, or pass --keep-daily etc."
            )))
        }
    };
    if let Some(tz) = &req.timezone {
        policy.timezone = Some(tz.clone());
    }
    policy.validate()?;
    let tz = policy.time_zone()?;
    let repo = setup.open(Some(&app))?;
    let points: Vec<_> = repo
        .points()?
        .into_iter()
        .filter(|(_, p)| p.app == app)
        .collect();
    let points = plan_retention(&points, &policy, &tz)?;
    let continuous_keep = config
        .as_ref()
        .and_then(|c| c.app.get(&app))
        .and_then(|a| a.continuous_keep)
        .unwrap_or(DEFAULT_CONTINUOUS_KEEP);
    let deltas = forget_deltas(
        &repo,
        &app,
        continuous_keep,
        jiff::Timestamp::now(),
        &removed_ids(&points),
        true,
    )?;
    let continuous_fine = config
        .as_ref()
        .and_then(|c| c.app.get(&app))
        .and_then(|a| a.continuous_fine)
        .unwrap_or(DEFAULT_CONTINUOUS_FINE);
    let deltas_thinned = thin_deltas(&repo, &app, continuous_fine, jiff::Timestamp::now(), true)?;
    Ok(ForgetPlan {
        app,
        policy,
        repository,
        points,
        continuous_keep,
        deltas,
        deltas_thinned,
        continuous_fine,
        repo,
    })
}
