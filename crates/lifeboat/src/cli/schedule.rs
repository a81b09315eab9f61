use clap::Args;
use lifeboat_app::{Config, JobsState, Outcome};
use lifeboat_core::Result;

use super::Context;
use crate::output::{esc, json, local_time, outln};

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: ScheduleArgs) -> Result<()> {
    let path = super::run::config_path(ctx)?;
    let config = Config::load(&path)?;
    let state = JobsState::load(&JobsState::path_for(&config)?);
    let now = jiff::Timestamp::now();
    let rows = lifeboat_app::schedule_report(&config, &state, now)?;
    if a.json {
        return json(&rows);
    }
    if rows.is_empty() {
        outln!("no scheduled jobs: add `schedule = \"hourly\"` (and copy_schedule, forget_schedule) to an app in {}", path.display());
        return Ok(());
    }
    outln!(
        "{:<12} {:<7} {:<16} {:<24} {:<24} {:<12} LAST RESULT",
        "APP",
        "JOB",
        "SCHEDULE",
        "NEXT",
        "LAST START",
        "OUTCOME"
    );
    for r in &rows {
        let next = if r.next <= now {
            "due now".to_string()
        } else {
            local_time(&r.next.to_string())
        };
        let last = r
            .last
            .last_start
            .map_or("never".to_string(), |t| local_time(&t.to_string()));
        let outcome = match (r.last.outcome, r.last.failures) {
            (None, _) => "-".to_string(),
            (Some(Outcome::Failed), n) => format!("failed x{n}"),
            (Some(o), _) => serde_json::to_value(o)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        };
        outln!(
            "{:<12} {:<7} {:<16} {:<24} {:<24} {:<12} {}",
            esc(&r.app),
            r.job.as_str(),
            r.schedule.to_string(),
            next,
            last,
            outcome,
            esc(r.last.message.as_deref().unwrap_or(""))
        );
    }
    Ok(())
}
