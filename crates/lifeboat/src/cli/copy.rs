use clap::Args;
use lifeboat_core::{copy, Error, ErrorKind, Result};

use super::Context;
use crate::output::{duration_ms, json, size};

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
    let from = match &a.from {
        Some(s) => ctx.setup.storage_named(s)?,
        None => ctx.setup.storage_only(a.app.as_deref())?,
    };
    let mut targets = a.to.clone();
    if targets.is_empty() {
        if let (Some(app), Some(cfg)) = (&a.app, ctx.setup.config()?) {
            targets = cfg
                .app
                .get(app)
                .map(|x| x.copy_to.clone())
                .unwrap_or_default();
        }
    }
    if targets.is_empty() {
        return Err(Error::new(ErrorKind::Usage, "no copy target").with_hint(
            "pass --to TARGET, or list targets in the app's `copy_to` in lifeboat.toml",
        ));
    }
    let mut reports = Vec::new();
    for t in &targets {
        let to = ctx.setup.storage_named(t)?;
        let start = std::time::Instant::now();
        let r = copy(from.as_ref(), &to, &ctx.progress)?;
        if !a.json {
            println!(
                "{} -> {}: {} point(s) copied ({} already there), {} pack(s), {} index(es), {} in {}",
                from.location(),
                to.location(),
                r.points,
                r.points_present,
                r.packs,
                r.indexes,
                size(r.bytes),
                duration_ms(start.elapsed().as_millis() as u64)
            );
        }
        reports
            .push(serde_json::json!({ "from": from.location(), "to": to.location(), "report": r }));
    }
    if a.json {
        json(&reports);
    }
    Ok(())
}
