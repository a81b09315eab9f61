use std::path::PathBuf;

use clap::Args;
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat run                          in the foreground, config from ./lifeboat.toml or /etc/lifeboat
  lifeboat -c /etc/lifeboat/lifeboat.toml run --log-json
  lifeboat schedule                     what runs next, and how each job last ended

Each app's jobs come from lifeboat.toml:
  [app.chat]
  schedule = \"hourly\"          # backups: hourly, daily, weekly, monthly, \"every 15m\", cron \"0 3 * * *\"
  copy_schedule = \"daily\"      # copy to copy_to
  forget_schedule = \"daily\"    # forget by [app.chat.keep], then prune
  random_delay = \"5m\"
  [daemon]
  max_jobs = 2                 # jobs of different apps at once (one per app)
  grace = \"5m\"                 # after SIGTERM, time a running job gets to finish
  retry = \"1m\"                 # first retry of a failed job, doubling up to 1 h
  listen = \"127.0.0.1:9186\"     # /metrics (Prometheus); \"off\"; off loopback with metrics_token_file
  [alerts]
  heartbeat = \"https://hc-ping.com/UUID\"   # after each job; URL/fail after a failed one
  [[alerts.webhook]]
  url = \"https://ntfy.sh/topic\"     # each problem once, and its recovery (docs/METRICS.md)
  format = \"ntfy\"                 # json (default), slack, discord, ntfy

A job that never ran runs at start; after downtime a missed job runs once. SIGHUP reloads the
config (a broken one is logged and the running one kept); SIGTERM/SIGINT stop: no new jobs,
running ones get the grace period, then stop at a safe point (no partial point is ever
visible); a second signal skips the grace. State (last runs) is kept in
/var/lib/lifeboat/daemon-state.json as root ([daemon] state_file).";

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Log one JSON object per line (for journald, Docker and log shippers) instead of text
    #[arg(long)]
    pub log_json: bool,
    /// Serve /metrics on this address instead of [daemon] listen (default 127.0.0.1:9186;
    /// `off` serves nothing; port 0 takes a free port, logged at start)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

pub fn run(ctx: &Context, a: RunArgs) -> Result<()> {
    let config = config_path(ctx)?;
    lifeboat_daemon::run(lifeboat_daemon::RunOptions {
        config,
        password: ctx.setup_password(),
        listen: a.listen,
    })
}

/// The config file the daemon reads (and re-reads on SIGHUP): `-c`, else the first of the
/// usual places that exists.
pub fn config_path(ctx: &Context) -> Result<PathBuf> {
    if let Some(p) = &ctx.global.config {
        return Ok(p.clone());
    }
    lifeboat_app::CONFIG_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                "no lifeboat.toml found (./lifeboat.toml, /etc/lifeboat/lifeboat.toml)",
            )
            .with_hint("pass -c FILE; the daemon runs the schedules of the apps it defines")
        })
}
