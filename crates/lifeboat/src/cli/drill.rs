use std::path::PathBuf;

use clap::Args;
use lifeboat_app::{DrillReport, DrillRequest};
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;
use crate::output::{esc, json, outln, size};

pub const AFTER_HELP: &str = "Examples:
  lifeboat drill chat              # the newest point of app chat
  lifeboat drill chat 1a2b3c4d     # that point
  lifeboat drill chat --json

A drill restores the point into a private scratch directory (PostgreSQL databases into new
databases on the same server, dropped afterwards), runs every check even where a proof record
says they passed (integrity_check, row counts, the app's smoke queries; files, secrets and
config read back and compared with the point), times it, and records the outcome in the
repository: `lifeboat points` shows drilled points, and later restores of a drilled point
skip SQLite's check. Nothing in place is touched.

Exits 0 when the drill passed; when it failed, with the code of what failed (5: data damaged
in the repository, 8: a check failed), after printing and recording the outcome.";

#[derive(Debug, Args)]
pub struct DrillArgs {
    /// APP [POINT]: the app (default: the config's only app) and a point id prefix or
    /// `latest` (default)
    #[arg(num_args = 0..=2)]
    pub args: Vec<String>,
    /// Make the scratch directory here (default: $TMPDIR or /tmp); it needs room for the point
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Print the outcome as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: DrillArgs) -> Result<()> {
    let mut args = a.args.into_iter();
    let (app, point) = (args.next(), args.next());
    let report = lifeboat_app::drill(
        &ctx.setup,
        &DrillRequest {
            app,
            point,
            scratch: a.scratch,
        },
        &ctx.progress,
    )?;
    if a.json {
        json(&report)?;
    } else {
        print(&report)?;
    }
    verdict(&report)
}

fn print(r: &DrillReport) -> Result<()> {
    outln!(
        "drill of point {} of app {} ({}): {} in {:.1} s, {} restored",
        &r.point[..8],
        esc(&r.app),
        crate::output::local_time(&r.point_time),
        if r.ok { "passed" } else { "FAILED" },
        r.seconds,
        size(r.bytes)
    );
    for c in &r.checks {
        outln!("  ok  {}", esc(c));
    }
    if let Some(f) = &r.failure {
        outln!("  FAILED  {}", esc(f));
    }
    match &r.record {
        Some(id) => outln!("recorded in the repository as drill {}", &id[..8]),
        None => outln!("the outcome could not be recorded in the repository (see the warning)"),
    }
    Ok(())
}

/// A failed drill is an error of the kind of what failed (its exit code), after the report.
fn verdict(r: &DrillReport) -> Result<()> {
    if r.ok {
        return Ok(());
    }
    Err(Error::new(
        r.failure_kind.unwrap_or(ErrorKind::Verify),
        format!("the drill of point {} failed", &r.point[..8]),
    )
    .with_hint("the point cannot be restored as it is: take a new backup now, and run `lifeboat check --read-data` to see what is damaged"))
}
