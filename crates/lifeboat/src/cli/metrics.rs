use clap::Args;
use lifeboat_app::Config;
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;

pub const AFTER_HELP: &str = "Examples:
  lifeboat metrics
  lifeboat metrics --textfile /var/lib/prometheus/node-exporter/lifeboat.prom

The same metrics `lifeboat run` serves on /metrics (docs/METRICS.md lists them), for
those who run the schedules from systemd timers or cron instead: node_exporter's textfile
collector reads the file (written whole, then renamed into place). Run it from a timer a
few times an hour. The daemon's own counters (failures and requests since it started) are
not in it; the jobs' runs, last successes and failures in a row are (from the state file).

Exits 0 whether the apps are healthy or not (lifeboat_app_healthy says it); non-zero only
when the metrics could not be made.";

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Write the metrics to this file (atomically) instead of stdout
    #[arg(long, value_name = "PATH")]
    pub textfile: Option<std::path::PathBuf>,
}

pub fn run(ctx: &Context, a: MetricsArgs) -> Result<()> {
    let path = super::run::config_path(ctx)?;
    let config = Config::load(&path)?;
    let report = lifeboat_app::status(
        &ctx.setup,
        &config,
        None,
        &lifeboat_app::read_streams(&config),
    )?;
    let text = lifeboat_app::render_metrics(&report, None);
    match &a.textfile {
        Some(p) => lifeboat_app::write_textfile(p, &text),
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| Error::io("stdout", e).with_kind(ErrorKind::Io))
        }
    }
}
