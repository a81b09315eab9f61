use std::path::PathBuf;

use clap::Args;
use lifeboat_app::BackupRequest;
use lifeboat_core::Result;

use super::Context;
use crate::output::{duration_ms, esc, json, outln, size};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat backup chat                         app `chat` from lifeboat.toml
  lifeboat backup chat --tag pre-deploy        tag the point (manual, scheduled, pre-migration, ...)
  lifeboat backup --repo /backup/lb /srv/chat/chat.db /srv/chat/uploads --secret /srv/chat/ssh_host_key

Paths given directly are recognised: a SQLite file is captured hot and consistent (page by page in
one read transaction, writers keep going), a directory is backed up as a file tree, any other file
as a config file. Mark secrets with --secret: their mode and owner are restored exactly.

A cold backup: an app's [app.NAME.hooks] before_backup runs first (e.g. `systemctl stop chat`)
and after_backup last, also when the backup failed (the app must come back; LIFEBOAT_RESULT is
`ok` or `failed`). A failed before_backup means no backup; a failed after_backup is an error
even though the point was written.";

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// An app name from lifeboat.toml, or paths to back up as a one-off app
    pub targets: Vec<String>,
    /// Secret files (SSH host key, .env, JWT keys) to include in a one-off backup
    #[arg(long, value_name = "PATH")]
    pub secret: Vec<PathBuf>,
    /// App name for a one-off backup of paths (default: the first path's file stem)
    #[arg(long)]
    pub name: Option<String>,
    /// Tag the point (repeatable); default `manual`
    #[arg(long, short = 't')]
    pub tag: Vec<String>,
    /// Exclude glob for directories (repeatable), e.g. '*.tmp'
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Print the new point as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Record this time (RFC 3339) as the point's capture time instead of now: for tests and
    /// benchmarks of retention only
    #[arg(long, hide = true, value_name = "TIME")]
    pub point_time: Option<jiff::Timestamp>,
}

pub fn run(ctx: &Context, a: BackupArgs) -> Result<()> {
    let req = BackupRequest {
        targets: a.targets,
        secrets: a.secret,
        name: a.name,
        tags: a.tag,
        excludes: a.exclude,
        time: a.point_time,
    };
    let r = lifeboat_app::backup(&ctx.setup, &req, &ctx.progress)?;
    if a.json {
        json(&serde_json::to_value(&r).expect("serialisable"))?;
    } else {
        let (id, point, s) = (&r.id, &r.point, &r.point.stats);
        outln!(
            "point {} of app {}: {} components, {} read, {} new, {} added to the repository, in {}",
            id.short(),
            esc(&point.app),
            point.components.len(),
            size(s.bytes_read),
            size(s.bytes_new),
            size(s.bytes_stored),
            duration_ms(s.duration_ms)
        );
        for h in &r.hooks {
            outln!(
                "  hook {} `{}` ({})",
                h.phase.as_str(),
                esc(&h.command),
                duration_ms(h.ms)
            );
        }
    }
    Ok(())
}
