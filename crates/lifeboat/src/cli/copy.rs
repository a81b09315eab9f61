use clap::Args;
use lifeboat_app::CopyRequest;
use lifeboat_core::Result;

use super::Context;
use crate::output::{duration_ms, esc, json, out_line, size};

pub const AFTER_HELP: &str = "Examples:
  lifeboat copy --to s3://my-bucket/chat             from --repo (or the app's repository)
  lifeboat copy chat                                 to every repository in the app's copy_to
  lifeboat copy --from offsite --to /var/backups/lb  bring an off-site replica home

The target must be a replica, created once with `lifeboat init --repo TARGET --from SOURCE`.
Interrupted copies resume: what was copied is valid and is skipped the next time.";

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// App whose repository is the source (and whose copy_to lists the targets)
    pub app: Option<String>,
    /// Target replica: a [repository.NAME] of lifeboat.toml, a path or a URL (repeatable)
    #[arg(long, value_name = "TARGET")]
    pub to: Vec<String>,
    /// Source instead of --repo / the app's repository
    #[arg(long, value_name = "SOURCE")]
    pub from: Option<String>,
    /// JSON report on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: CopyArgs) -> Result<()> {
    let req = CopyRequest {
        app: a.app,
        to: a.to,
        from: a.from,
    };
    // A line that cannot be printed does not stop the copies to the other replicas; the
    // first such error is the result once they are done.
    let mut unprinted = None;
    let copied = lifeboat_app::copy(&ctx.setup, &req, &ctx.progress, &mut |c| {
        if !a.json && unprinted.is_none() {
            let r = &c.report;
            let line = out_line(format_args!(
                "{} -> {}: {} point(s) copied ({} already there), {} pack(s), {} index(es), {} in {}",
                esc(&c.from),
                esc(&c.to),
                r.points,
                r.points_present,
                r.packs,
                r.indexes,
                size(r.bytes),
                duration_ms(c.duration_ms)
            ));
            unprinted = line.err();
        }
    })?;
    if let Some(e) = unprinted {
        return Err(e);
    }
    if a.json {
        json(&serde_json::to_value(&copied).expect("serialisable"))?;
    }
    Ok(())
}
