use clap::Args;
use lifeboat_app::{Config, StatusReport};
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;
use crate::output::{esc, json, local_time, outln, size};

pub const AFTER_HELP: &str = "Examples:
  lifeboat status
  lifeboat status chat --json

For each app of lifeboat.toml and each destination (its repository, then each copy_to
replica): the newest point and its age, the sizes of the last points, the newest drill, and
the scheduled jobs with their last outcome, and the lag of continuous capture (as the
running `lifeboat run` reports it). Unhealthy: a destination that cannot be read, a newest
point older than two periods of its schedule, a failed or overdue drill, a job whose last
runs failed, a failing continuous capture, and the anomalies of the newest point: smaller
than 50% of the average of the ones before, a table with at least 100 rows lost more than
half of them, a secret's content changed ([alerts] and [app.NAME.alerts] set or turn off
each rule). `lifeboat run` sends these problems to the [alerts] webhooks, once when they
appear and once when they clear.

With --notify, new and cleared problems also go to the [alerts] webhooks (each once; the
state is kept beside the daemon's state file).

Exits 0 when everything is healthy, 12 when anything is not (after printing the report):
a monitoring probe by itself.";

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this app
    pub app: Option<String>,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Also announce new and cleared problems to the [alerts] webhooks, as `lifeboat run`
    /// does (for schedules run by systemd timers or cron; not beside a running daemon, which
    /// announces them itself). Waits up to 30 s for the messages to go out
    #[arg(long)]
    pub notify: bool,
}

pub fn run(ctx: &Context, a: StatusArgs) -> Result<()> {
    let path = super::run::config_path(ctx)?;
    let config = Config::load(&path)?;
    if let Some(app) = &a.app {
        if !config.has_app(app) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("no app {app:?} in {}", path.display()),
            ));
        }
    }
    let report = lifeboat_app::status(
        &ctx.setup,
        &config,
        a.app.as_deref(),
        &lifeboat_app::read_streams(&config),
    )?;
    if a.notify {
        let notifier = lifeboat_app::Notifier::start(&config.alerts)?;
        lifeboat_app::announce(&config, &report, &notifier)?;
        if !notifier.flush(std::time::Duration::from_secs(30)) {
            tracing::warn!("some alerts were not delivered within 30 s");
        }
    }
    if a.json {
        json(&report)?;
    } else {
        print(&report)?;
    }
    if report.healthy {
        return Ok(());
    }
    let n: usize = report.apps.iter().map(|a| a.problems.len()).sum();
    Err(Error::new(
        ErrorKind::Unhealthy,
        format!("{n} problem(s) found"),
    ))
}

fn print(r: &StatusReport) -> Result<()> {
    let now = r.time.parse::<jiff::Timestamp>().ok();
    for a in &r.apps {
        outln!(
            "{} {}",
            esc(&a.app),
            if a.healthy { "healthy" } else { "UNHEALTHY" }
        );
        for d in &a.destinations {
            match (&d.error, &d.newest) {
                (Some(e), _) => outln!(
                    "  {} ({}): cannot be read: {}",
                    esc(&d.repository),
                    d.role,
                    esc(e)
                ),
                (None, None) => outln!("  {} ({}): no point", esc(&d.repository), d.role),
                (None, Some(n)) => outln!(
                    "  {} ({}): {} points, newest {} ({} ago, {}, added {}); last sizes {}",
                    esc(&d.repository),
                    d.role,
                    d.points,
                    &n.id[..8],
                    lifeboat_app::age(jiff::SignedDuration::from_secs(n.age_s)),
                    size(n.size),
                    size(n.added),
                    d.sizes
                        .iter()
                        .map(|s| size(*s))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            }
        }
        match &a.last_drill {
            Some(l) => outln!(
                "  last drill: point {} on {} by {}: {} in {:.1} s",
                &l.point[..8.min(l.point.len())],
                local_time(&l.drill.time),
                esc(&l.drill.hostname),
                if l.drill.ok { "passed" } else { "FAILED" },
                l.drill.seconds
            ),
            None => outln!("  last drill: none"),
        }
        for c in &a.continuous {
            outln!(
                "  continuous {}: {}, {} deltas, {} stored{}",
                esc(&c.database),
                match c.lag_s {
                    Some(l) => format!("{l:.1} s behind"),
                    None => "no link yet".into(),
                },
                c.deltas,
                size(c.bytes_stored),
                if c.failing.is_some() { ", FAILING" } else { "" }
            );
        }
        for j in &a.jobs {
            let next = match now {
                Some(t) if j.next <= t => "due now".to_string(),
                _ => local_time(&j.next.to_string()),
            };
            outln!(
                "  job {:<7} {:<14} next {}{}",
                j.job.as_str(),
                j.schedule.to_string(),
                next,
                if j.last.failures > 0 {
                    format!(", failed {} time(s) in a row", j.last.failures)
                } else {
                    String::new()
                }
            );
        }
        for p in &a.problems {
            outln!("  PROBLEM: {}", esc(&p.message));
        }
    }
    Ok(())
}
