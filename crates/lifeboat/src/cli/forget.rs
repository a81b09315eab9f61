use std::collections::BTreeMap;

use clap::Args;
use lifeboat_app::ForgetRequest;
use lifeboat_core::{parse_span, Error, ErrorKind, Policy, PruneOptions, Result};

use super::Context;
use crate::output::{esc, json, local_time, outln};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat forget chat --dry-run                       what the app's [app.chat.keep] policy removes, and why
  lifeboat forget chat --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --prune
  lifeboat forget chat --keep-last 5 --keep-tag pinned --keep-tagged pre-migration=2

Policy (in lifeboat.toml: [app.NAME.keep], or [app.NAME.keep_in.REPOSITORY] for one destination):
  last N           the N newest points
  hourly/daily/weekly/monthly/yearly N
                   the newest point of each of the N most recent hours/days/ISO weeks/months/
                   years that have points, in `timezone` (default: the system's)
  within 30d       every point within 30 days of the NEWEST point (not of now)
  tags [..]        every point with one of these tags, e.g. pinned
  tagged {t = N}   the N newest points tagged t
The newest point is always kept; a policy with no rule is refused. Forget removes point
manifests only; `lifeboat prune` (or --prune) then deletes the data no point needs.";

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// App name (default: the only app in lifeboat.toml)
    pub app: Option<String>,
    /// Show every point with keep/remove and the rule that decided; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    /// Keep the N newest points
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest point of each of the N most recent hours
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// ... days
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// ... ISO weeks
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// ... months
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// ... years
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every point within this duration of the newest (30d, 12h, 2w)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep every point with this tag (repeatable)
    #[arg(long, value_name = "TAG")]
    pub keep_tag: Vec<String>,
    /// Keep the N newest points with a tag: TAG=N (repeatable)
    #[arg(long, value_name = "TAG=N")]
    pub keep_tagged: Vec<String>,
    /// Time zone of the calendar rules (e.g. Europe/Berlin; default: lifeboat.toml's, else the system's)
    #[arg(long, value_name = "TZ")]
    pub timezone: Option<String>,
    /// Print the plan as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// With --prune: repack packs with less than this percentage of live data
    #[arg(long, value_name = "PCT", default_value_t = 50)]
    pub repack_below: u8,
}

impl ForgetArgs {
    fn cli_policy(&self) -> Result<Option<Policy>> {
        let given = self.keep_last.is_some()
            || self.keep_hourly.is_some()
            || self.keep_daily.is_some()
            || self.keep_weekly.is_some()
            || self.keep_monthly.is_some()
            || self.keep_yearly.is_some()
            || self.keep_within.is_some()
            || !self.keep_tag.is_empty()
            || !self.keep_tagged.is_empty();
        if !given {
            return Ok(None);
        }
        let mut tagged = BTreeMap::new();
        for t in &self.keep_tagged {
            let (tag, n) = Policy::parse_tagged(t).map_err(|e| {
                Error::new(ErrorKind::Usage, format!("--keep-tagged {}", e.message()))
            })?;
            tagged.insert(tag, n);
        }
        Ok(Some(Policy {
            last: self.keep_last.unwrap_or(0),
            hourly: self.keep_hourly.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
            yearly: self.keep_yearly.unwrap_or(0),
            within: self.keep_within.as_deref().map(parse_span).transpose()?,
            tags: self.keep_tag.clone(),
            tagged,
            timezone: self.timezone.clone(),
        }))
    }
}

pub fn run(ctx: &Context, a: ForgetArgs) -> Result<()> {
    let req = ForgetRequest {
        app: a.app.clone(),
        policy: a.cli_policy()?,
        timezone: a.timezone.clone(),
    };
    let plan = lifeboat_app::forget_plan(&ctx.setup, &req)?;
    let removed = plan.removed();
    let (app, decisions) = (&plan.app, &plan.points);
    // The plan is printed before it is applied. A plan that cannot be printed (the reader of
    // stdout went away, `forget ... | head`; a full disk) is still applied, as asked; the
    // print error is the result afterwards.
    let printed = (|| -> Result<()> {
        if a.json {
            json(&serde_json::json!({
                "app": app,
                "policy": plan.policy.describe(),
                "dry_run": a.dry_run,
                "points": decisions,
                "continuous_keep_secs": plan.continuous_keep.as_secs(),
                "deltas": plan.deltas,
                "deltas_thinned": plan.deltas_thinned,
            }))?;
        } else {
            outln!(
                "{:<9} {:<24} {:<24} {:<7} WHY",
                "ID",
                "TIME",
                "TAGS",
                "ACTION"
            );
            for d in decisions {
                outln!(
                    "{:<9} {:<24} {:<24} {:<7} {}",
                    &d.id[..8],
                    local_time(&d.time),
                    esc(&d.tags.join(",")),
                    if d.keep { "keep" } else { "remove" },
                    if d.keep {
                        esc(&d.reasons.join(", ")).into_owned()
                    } else {
                        "no rule keeps it".into()
                    }
                );
            }
            outln!(
                "app {}: {} points, {} kept, {removed} {} (policy: {}{})",
                esc(app),
                decisions.len(),
                decisions.len() - removed,
                if a.dry_run {
                    "would be removed"
                } else {
                    "removed"
                },
                esc(&plan.policy.describe()),
                plan.repository
                    .as_ref()
                    .map_or(String::new(), |r| format!(", repository {}", esc(r)))
            );
            let d = &plan.deltas;
            if d.deltas + d.kept_deltas > 0 {
                outln!(
                    "continuous deltas: {} in {} chains {} ({} of removed points, the rest older than {}), {} in {} chains kept",
                    d.deltas,
                    d.chains,
                    if a.dry_run {
                        "would be removed"
                    } else {
                        "removed"
                    },
                    d.chains_of_gone_points,
                    span(plan.continuous_keep),
                    d.kept_deltas,
                    d.kept_chains
                );
            }
            if plan.deltas_thinned > 0 {
                outln!(
                    "continuous deltas: {} interval links older than an hour {} (a minute link covers each)",
                    plan.deltas_thinned,
                    if a.dry_run { "would be thinned" } else { "thinned" }
                );
            }
        }
        Ok(())
    })();
    if a.dry_run {
        return printed;
    }
    let prune = a.prune.then(|| PruneOptions {
        repack_below: a.repack_below as f64 / 100.0,
        dry_run: false,
    });
    if let Some(report) = plan.apply(prune.as_ref(), &ctx.progress)? {
        if !a.json && printed.is_ok() {
            super::prune::print(&report)?;
        }
    }
    printed
}

/// `continuous_keep` as people write it: `24h`, `90m`, `45s`.
fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s > 0 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s > 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        forget: ForgetArgs,
    }

    /// `[app.X.keep]` and the `--keep-*` flags build one and the same policy.
    #[test]
    fn config_and_flags_give_equal_policies() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lifeboat.toml");
        std::fs::write(
            &p,
            "[repository.r]\npath = \"/r\"\n[app.chat]\nsqlite = [\"/c.db\"]\n\
             [app.chat.keep]\nlast = 3\ndaily = 7\nweekly = 4\nmonthly = 12\nyearly = 2\nhourly = 24\n\
             within = \"30d\"\ntags = [\"pinned\"]\ntagged = { pre-migration = 2 }\ntimezone = \"Europe/Berlin\"\n",
        )
        .unwrap();
        let config = lifeboat_app::Config::load(&p).unwrap();
        let from_config = config.keep_for("chat", None).unwrap();
        let args = Cmd::parse_from([
            "forget",
            "--keep-last",
            "3",
            "--keep-daily",
            "7",
            "--keep-weekly",
            "4",
            "--keep-monthly",
            "12",
            "--keep-yearly",
            "2",
            "--keep-hourly",
            "24",
            "--keep-within",
            "30d",
            "--keep-tag",
            "pinned",
            "--keep-tagged",
            "pre-migration=2",
            "--timezone",
            "Europe/Berlin",
        ]);
        let from_flags = args.forget.cli_policy().unwrap().unwrap();
        assert_eq!(&from_flags, from_config);
        assert!(from_flags.validate().is_ok());
        assert_eq!(
            from_flags.describe(),
            "last 3, hourly 24, daily 7, weekly 4, monthly 12, yearly 2, within 30d, tags pinned, tagged pre-migration=2"
        );
        // No flag: the config's policy applies.
        let none = Cmd::parse_from(["forget", "--timezone", "UTC"]);
        assert!(none.forget.cli_policy().unwrap().is_none());
        // A bad TAG=N names the flag.
        let bad = Cmd::parse_from(["forget", "--keep-tagged", "pre-migration"]);
        let e = bad.forget.cli_policy().unwrap_err();
        assert_eq!(
            e.message(),
            "--keep-tagged \"pre-migration\": expected TAG=N, e.g. pre-migration=2"
        );
    }
}
