use clap::Args;
use lifeboat_app::RollbackRequest;
use lifeboat_core::Result;
use lifeboat_sources::sqlite::Verify;

use super::Context;
use crate::output::{esc, json, local_time, outln};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat rollback chat            asks, then puts back what the last in-place restore replaced
  lifeboat rollback chat --yes      for scripts

This machine remembers, per repository and app, the last in-place restore it did and the
pre-restore point taken just before it. `rollback` restores that pre-restore point in place like
`lifeboat restore` would: it asks first (or takes --yes), saves the current state as a new
pre-restore point (so a second rollback undoes the first), runs the app's stop hook, restores,
runs the smoke queries and the start hook, and polls health_url; if those fail, the state before
the rollback is put back (exit 9). A database changed since the restore is replaced (that is the
point), but not one another process has open. Without a remembered restore it refuses and names
the app's newest pre-restore point, if any.";

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app (default: the config's only app)
    pub app: Option<String>,
    /// Do not ask (for scripts)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// How SQLite checks the databases put back: full (integrity_check) or quick (quick_check)
    #[arg(long, value_parser = super::restore::parse_verify, default_value = "full")]
    pub verify: Verify,
    /// Print what was restored as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: RollbackArgs) -> Result<()> {
    let req = RollbackRequest {
        app: a.app,
        verify: a.verify,
    };
    let rb = lifeboat_app::rollback_plan(&ctx.setup, &req)?;
    let (u, mut plan) = (&rb.undoing, rb.plan);
    let pre_time = plan.point().time.clone();
    crate::output::errln!(
        "undoing the in-place restore of point {} ({}) done at {}: putting back pre-restore point {} (taken {})",
        esc(&u.restored.chars().take(8).collect::<String>()),
        local_time(&u.restored_time),
        local_time(&u.at),
        plan.id().short(),
        local_time(&pre_time)
    );
    super::restore::confirm_in_place(&mut plan, a.yes)?;
    let (id, app) = (plan.id(), plan.point().app.clone());
    let report = super::restore::run_confirmed(ctx, plan)?;
    if a.json {
        return json(&report);
    }
    outln!(
        "rolled back app {}: pre-restore point {} ({}) is back in place",
        esc(&app),
        id.short(),
        local_time(&pre_time)
    );
    super::restore::print_restored(&report.restored)?;
    super::restore::print_hooks_and_checks(&report)
}
