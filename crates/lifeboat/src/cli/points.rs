use clap::Args;
use lifeboat_core::{ComponentKind, Result};

use super::Context;
use crate::output::{esc, json, local_time, outln, size};

#[derive(Debug, Args)]
pub struct PointsArgs {
    /// Only points of this app
    pub app: Option<String>,
    /// JSON on stdout: the points (an array, oldest first); with --windows the continuous
    /// windows instead
    #[arg(long)]
    pub json: bool,
    /// With --json: print the continuous windows (one per chain of deltas) instead of points
    #[arg(long, requires = "json")]
    pub windows: bool,
}

pub fn run(ctx: &Context, a: PointsArgs) -> Result<()> {
    let report = lifeboat_app::points(&ctx.setup, a.app.as_deref())?;
    if a.json {
        if a.windows {
            return json(&report.windows);
        }
        json(&report.points)?;
        return Ok(());
    }
    if report.points.is_empty() {
        outln!("no points yet");
        return Ok(());
    }
    outln!(
        "{:<9} {:<24} {:<12} {:<18} {:>10} {:>10}  {:<10} CONTENTS{}",
        "ID",
        "TIME",
        "APP",
        "TAGS",
        "SIZE",
        "ADDED",
        "PROVEN",
        if report.replicas.is_empty() {
            ""
        } else {
            "  COPIED TO"
        }
    );
    for s in &report.points {
        let contents: Vec<&str> = s
            .kinds
            .iter()
            .map(|k| match k {
                ComponentKind::Sqlite => "db",
                ComponentKind::Postgres => "pg",
                k => k.as_str(),
            })
            .collect();
        let copied = if report.replicas.is_empty() {
            String::new()
        } else {
            format!(
                "  {}",
                if s.copied_to.is_empty() {
                    "-".into()
                } else {
                    esc(&s.copied_to.join(",")).into_owned()
                }
            )
        };
        let time = if s.future {
            format!("{}*", local_time(&s.time))
        } else {
            local_time(&s.time)
        };
        outln!(
            "{:<9} {:<24} {:<12} {:<18} {:>10} {:>10}  {:<10} {}{copied}",
            &s.id[..8],
            time,
            esc(&s.app),
            esc(&s.tags.join(",")),
            size(s.size),
            size(s.added),
            proven(&s.proofs),
            contents.join("+")
        );
    }
    if !report.windows.is_empty() {
        outln!("\ncontinuous windows (restore APP --at TIME inside one: the database as of then):");
        for w in &report.windows {
            outln!(
                "  {} {}  {} .. {}  {} links{} from point {}",
                esc(&w.app),
                esc(&w.path),
                local_time(&w.from),
                local_time(&w.to),
                w.links,
                if w.healed > 0 {
                    format!(" ({} compared every page)", w.healed)
                } else {
                    String::new()
                },
                &w.base[..8.min(w.base.len())]
            );
        }
    }
    let failed: Vec<_> = report
        .points
        .iter()
        .filter_map(|s| {
            s.proofs
                .last_drill
                .as_ref()
                .filter(|d| !d.ok)
                .map(|d| (s, d))
        })
        .collect();
    if !failed.is_empty() {
        outln!("\nfailed drills (the newest drill of these points failed):");
        for (s, d) in failed {
            outln!(
                "  {} on {} by {}: {}",
                &s.id[..8],
                local_time(&d.time),
                esc(&d.hostname),
                esc(d.failure.as_deref().unwrap_or("failed"))
            );
        }
    }
    if report.points.iter().any(|s| s.future) {
        outln!(
            "\n* dated in the future (more than 5 minutes ahead of this machine's clock): not `latest` \
             unless `restore --allow-future`; check the clock of the machine that wrote it"
        );
    }
    Ok(())
}

/// The PROVEN column: the newest drill (`drill ok`, `DRILL FAILED`), else the most thorough
/// check a restore recorded (`integrity`, `quick`), else `-`.
fn proven(p: &lifeboat_core::PointProofs) -> &'static str {
    match (&p.last_drill, p.check.as_deref()) {
        (Some(d), _) if !d.ok => "DRILL FAIL",
        (Some(_), _) => "drill ok",
        (None, Some(lifeboat_core::CHECK_INTEGRITY)) => "integrity",
        (None, Some(_)) => "quick",
        (None, None) => "-",
    }
}
