use std::path::PathBuf;

use clap::Args;
use lifeboat_app::RecoverRequest;
use lifeboat_core::{Error, ErrorKind, Result};
use lifeboat_sources::sqlite::Verify;

use super::Context;
use crate::output::{esc, json, local_time, outln};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat recover --repo s3://backups/chat --yes              on a new machine, as root
  lifeboat recover --repo sftp://lb@nas/srv/lb chat --root /mnt/newroot --yes
  lifeboat recover --repo /mnt/usb/lb --dry-run                the plan and the config it writes

For a new machine with nothing but the repository: its URL, the store's credentials (AWS_* or
the SFTP identity) and the password. The app's latest point is restored at the paths it was
backed up from (or under --root DIR, a new root file system), verified as `lifeboat restore`
verifies, databases, files, secrets and config with their modes and owners. Then a lifeboat.toml
is written from the app's definition that every point carries (to ROOT/etc/lifeboat/lifeboat.toml,
or --config-out): the repository as given, the paths of what was restored, the app's excludes
and checks. Everything else the point asks for (hooks, PostgreSQL connections and commands,
retention) is written commented out, to review first: a point may come from any host holding
the password, and those run commands as root or decide where a password goes.";

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The app (default: the repository's only app)
    pub app: Option<String>,
    /// Restore under this directory (a new root file system) instead of at the original paths
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Where to write the new lifeboat.toml (default: ROOT/etc/lifeboat/lifeboat.toml)
    #[arg(long, value_name = "PATH")]
    pub config_out: Option<PathBuf>,
    /// How SQLite checks the restored databases: full (integrity_check) or quick (quick_check)
    #[arg(long, value_parser = super::restore::parse_verify, default_value = "full")]
    pub verify: Verify,
    /// PostgreSQL: restore onto this server (libpq URL)
    #[arg(long, value_name = "URL")]
    pub pg_url: Option<String>,
    /// Show the plan and the config it would write; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Do not ask (for scripts)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print what was recovered as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: RecoverArgs) -> Result<()> {
    let Some(repo) = ctx.global.repo.clone() else {
        return Err(
            Error::new(ErrorKind::Usage, "recover needs the repository").with_hint(
                "pass --repo URL (s3://BUCKET/PREFIX, sftp://USER@HOST/PATH or a directory)",
            ),
        );
    };
    let req = RecoverRequest {
        app: a.app,
        root: a.root,
        config_out: a.config_out,
        repo,
        verify: a.verify,
        pg_url: a.pg_url,
    };
    let mut plan = lifeboat_app::recover_plan(&ctx.setup, &req)?;
    if a.dry_run {
        let preview = plan.restore.preview()?;
        if a.json {
            return json(&serde_json::json!({ "restore": preview, "config": plan.config }));
        }
        for line in super::restore::preview_lines(&preview) {
            outln!("{line}");
        }
        outln!("config it would write:");
        for line in plan.config.lines() {
            outln!("  | {}", esc(line));
        }
        outln!("dry run: nothing was changed");
        return Ok(());
    }
    if !plan.restore.replaced().is_empty() {
        super::restore::confirm_in_place(&mut plan.restore, a.yes)?;
    }
    let time = plan.restore.point().time.clone();
    let report = plan.run(true, &ctx.progress, &mut |saved| {
        crate::output::errln!(
            "saved what was already there as pre-restore point {}",
            saved.short()
        );
    })?;
    if a.json {
        return json(&report);
    }
    outln!(
        "recovered app {} from point {} ({})",
        esc(&report.app),
        &report.point[..8],
        local_time(&time)
    );
    super::restore::print_restored(&report.restored)?;
    outln!(
        "wrote {} (review it: what the point asks beyond its paths and checks is commented out)",
        esc(&report.config)
    );
    Ok(())
}
