use clap::Args;
use lifeboat_app::{LogReport, LogRequest};
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;
use crate::output::{esc, json, local_time, outln};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat log                        every operation recorded in the repository, newest last
  lifeboat log chat --limit 20        the last 20 operations on app `chat`
  lifeboat log --since -7d --json     the last week, as JSON
  lifeboat log --local                this machine's own file (audit.log in the state directory)

Each backup, restore, rollback, drill, forget, prune, copy and key change is recorded with its
time, host, user, app, points and result. Records that cannot be read are skipped with a
warning (`lifeboat check` names them).";

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only this app's operations
    pub app: Option<String>,
    /// Read this machine's audit.log instead of the repository
    #[arg(long)]
    pub local: bool,
    /// Only the newest N
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only operations at or after TIME (RFC 3339, a local `2026-12-03 10:00`, or `-2h`, `-7d`)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub since: Option<String>,
    /// JSON on stdout: {"source", "events": [...oldest first], "damaged": [...], "unread"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: LogArgs) -> Result<()> {
    let since = a
        .since
        .as_deref()
        .map(|s| lifeboat_app::parse_at(s, jiff::Timestamp::now()))
        .transpose()
        .map_err(|e| {
            let err = Error::new(ErrorKind::Usage, e.message().replacen("--at", "--since", 1));
            match e.hint() {
                Some(h) => err.with_hint(h.to_string()),
                None => err,
            }
        })?;
    let report = lifeboat_app::log(
        &ctx.setup,
        &LogRequest {
            app: a.app,
            local: a.local,
            limit: a.limit,
            since,
        },
    )?;
    for d in &report.damaged {
        tracing::warn!(
            "skipped {} of the audit log: {}",
            esc(&d.what),
            esc(&d.error)
        );
    }
    if report.unread > 0 {
        tracing::warn!(
            "{} audit records were not read (more than one listing reads)",
            report.unread
        );
    }
    if a.json {
        return json(&report);
    }
    table(&report)
}

fn table(report: &LogReport) -> Result<()> {
    if report.events.is_empty() {
        outln!("no operations recorded in {}", esc(&report.source));
        return Ok(());
    }
    outln!(
        "{:<24} {:<16} {:<12} {:<10} {:<12} {:<17} {:<6} MESSAGE",
        "TIME",
        "HOST",
        "USER",
        "COMMAND",
        "APP",
        "POINTS",
        "RESULT"
    );
    for e in &report.events {
        let user = match &e.sudo_user {
            Some(s) => format!("{} ({s})", e.user),
            None => e.user.clone(),
        };
        let mut points: Vec<&str> = e
            .points
            .iter()
            .take(2)
            .map(|p| &p[..8.min(p.len())])
            .collect();
        let more = e.points.len().saturating_sub(2) as u64 + e.more_points;
        let more = if more > 0 {
            format!("+{more}")
        } else {
            String::new()
        };
        if points.is_empty() {
            points.push("-");
        }
        outln!(
            "{:<24} {:<16} {:<12} {:<10} {:<12} {:<17} {:<6} {}",
            local_time(&e.time),
            esc(&e.host),
            esc(&user),
            esc(&e.command),
            esc(e.app.as_deref().unwrap_or("-")),
            format!("{}{more}", points.join(",")),
            esc(&e.result),
            esc(&e.message)
        );
    }
    Ok(())
}
