use std::path::{Path, PathBuf};

use clap::Args;
use lifeboat_core::{ComponentKind, Error, ErrorKind, Result};
use lifeboat_sources::{backup_app, sqlite::is_sqlite_file, AppSpec, SourceSpec};

use super::Context;
use crate::output::{duration_ms, json, size};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat backup chat                         app `chat` from lifeboat.toml
  lifeboat backup chat --tag pre-deploy        tag the point (manual, scheduled, pre-migration, ...)
  lifeboat backup --repo /backup/lb /srv/chat/chat.db /srv/chat/uploads --secret /srv/chat/ssh_host_key

Paths given directly are recognised: a SQLite file is captured hot and consistent (page by page in
one read transaction, writers keep going), a directory is backed up as a file tree, any other file
as a config file. Mark secrets with --secret: their mode and owner are restored exactly.";

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

fn abs(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p.display(), e).with_kind(ErrorKind::Usage))
}

fn classify(p: &Path) -> Result<ComponentKind> {
    let md = std::fs::metadata(p).map_err(|e| {
        Error::io(format!("source {}", p.display()), e).with_kind(ErrorKind::Source)
    })?;
    if md.is_dir() {
        Ok(ComponentKind::Files)
    } else if is_sqlite_file(p)? {
        Ok(ComponentKind::Sqlite)
    } else {
        Ok(ComponentKind::Config)
    }
}

pub fn run(ctx: &Context, a: BackupArgs) -> Result<()> {
    let config = ctx.setup.config()?;
    let app_name = match (a.targets.as_slice(), &config) {
        ([one], Some(c)) if c.has_app(one) => Some(one.clone()),
        ([], Some(c)) if a.secret.is_empty() => Some(
            c.only_app()
                .ok_or_else(|| {
                    Error::new(ErrorKind::Usage, "which app? the config defines several")
                        .with_hint("name it: lifeboat backup APP")
                })?
                .to_string(),
        ),
        _ => None,
    };
    let spec = match (&app_name, &config) {
        (Some(n), Some(c)) => {
            let mut s = c.app_spec(n)?;
            s.excludes.extend(a.exclude.iter().cloned());
            s
        }
        _ => {
            if a.targets.is_empty() && a.secret.is_empty() {
                return Err(Error::new(ErrorKind::Usage, "nothing to back up").with_hint(
                    "name an app from lifeboat.toml, or give paths: lifeboat backup --repo DIR /path/app.db /path/uploads",
                ));
            }
            let mut sources = Vec::new();
            for t in &a.targets {
                let p = abs(Path::new(t))?;
                sources.push(SourceSpec::path(classify(&p)?, p));
            }
            for s in &a.secret {
                sources.push(SourceSpec::path(ComponentKind::Secret, abs(s)?));
            }
            // Databases first: they are the part that moves; files follow right after.
            sources.sort_by_key(|s| s.kind != ComponentKind::Sqlite);
            let name = a.name.clone().unwrap_or_else(|| {
                sources[0]
                    .path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "adhoc".into())
            });
            AppSpec {
                name,
                sources,
                excludes: a.exclude.clone(),
                time: None,
            }
        }
    };
    let mut spec = spec;
    spec.time = a.point_time;
    let mut repo = ctx.setup.open(app_name.as_deref())?;
    let tags = if a.tag.is_empty() {
        vec!["manual".to_string()]
    } else {
        a.tag.clone()
    };
    let (id, point) = backup_app(&mut repo, &spec, &tags, &ctx.progress)?;
    if a.json {
        json(
            &serde_json::json!({ "id": id.to_hex(), "point": super::points::summary(&id, &point) }),
        );
    } else {
        let s = &point.stats;
        println!(
            "point {} of app {}: {} components, {} read, {} new, {} added to the repository, in {}",
            id.short(),
            point.app,
            point.components.len(),
            size(s.bytes_read),
            size(s.bytes_new),
            size(s.bytes_stored),
            duration_ms(s.duration_ms)
        );
    }
    Ok(())
}
