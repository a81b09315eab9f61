use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use lifeboat_core::{Component, ComponentKind, Error, ErrorKind, Result};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{
    backup_app, restore_point, sqlite::is_sqlite_file, AppSpec, PgRestoreSettings, RestoreOptions,
    RestoreTarget, SourceSpec,
};

use super::Context;
use crate::output::{json, size};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat restore chat latest --to /tmp/scratch     everything under /tmp/scratch/<original path>
  lifeboat restore chat 1a2b3c4d --only db -o /tmp/chat.db
  lifeboat restore chat latest --yes                 in place (takes a pre-restore point first)
  lifeboat restore chatalot --only db --pg-database chatalot_drill   PostgreSQL into a new database
  lifeboat restore chatalot --to /tmp/scratch        files under /tmp/scratch, each PostgreSQL
                                                     database into <name>_restored_<point time>

Every chunk is authenticated before it is written. A database is written to a temporary file
beside its target, checked (checksum, PRAGMA integrity_check, row counts against the point) and
only then renamed over the target, after stale -wal/-shm files are removed; on any failure the old
database stays as it was. In place, lifeboat refuses to replace a database that another process
has open or that changed after the point was taken, unless --force.

PostgreSQL: the dump is fetched and authenticated into a private temporary file ($TMPDIR), then
pg_restore --exit-on-error loads a new database created with the recorded encoding and locale,
and its row counts are compared with the point (counted in the dump's own snapshot). In place,
that new database is built under a temporary name and swapped in by renames only after it
verified; other sessions of the original make the restore refuse, unless --pg-terminate.";

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// [APP] [POINT]: app name from lifeboat.toml, and a point id prefix or `latest` (default)
    #[arg(num_args = 0..=2)]
    pub args: Vec<String>,
    /// Restore under this directory instead of in place
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub to: Option<PathBuf>,
    /// Restore the one selected component to exactly this path (use with --only if the point has several)
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Only these parts: db (every database), postgres, files, secrets, config (repeatable)
    #[arg(long, value_parser = parse_kind)]
    pub only: Vec<ComponentKind>,
    /// PostgreSQL: restore into this new database (refused if it exists) instead of in place
    #[arg(long, value_name = "NAME")]
    pub pg_database: Option<String>,
    /// PostgreSQL: restore onto this server (libpq URL) instead of the configured one
    #[arg(long, value_name = "URL")]
    pub pg_url: Option<String>,
    /// PostgreSQL: parallel pg_restore jobs (default: cores, at most 4)
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// PostgreSQL: restore only this table (`name` or `schema.name`; repeatable; new database only)
    #[arg(long, value_name = "NAME")]
    pub table: Vec<String>,
    /// PostgreSQL: run the point's roles/tablespaces script first (point made with globals = true)
    #[arg(long)]
    pub pg_globals: bool,
    /// PostgreSQL: objects owned by the restoring user; no GRANTs (for a server without the roles)
    #[arg(long)]
    pub pg_no_owner: bool,
    /// PostgreSQL: end other sessions of a database replaced in place (default: refuse)
    #[arg(long)]
    pub pg_terminate: bool,
    /// Replace a database even if it is open by another process or newer than the point
    #[arg(long)]
    pub force: bool,
    /// Do not ask before an in-place restore (for scripts)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Skip the automatic pre-restore point of the current state (in-place only)
    #[arg(long)]
    pub no_safety_point: bool,
    /// How SQLite checks a restored database before it replaces anything: `full` runs
    /// PRAGMA integrity_check (every index entry against its row; ~10 s per GiB), `quick` runs
    /// PRAGMA quick_check (~1.5 s per GiB). Both also check the whole-database checksum (every
    /// page equal to what was backed up) and the row counts.
    #[arg(long, value_parser = parse_verify, default_value = "full")]
    pub verify: Verify,
    /// Print what was restored as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

fn parse_verify(s: &str) -> std::result::Result<Verify, String> {
    match s {
        "full" => Ok(Verify::Full),
        "quick" => Ok(Verify::Quick),
        _ => Err(format!("{s:?} is not full or quick")),
    }
}

fn parse_kind(s: &str) -> std::result::Result<ComponentKind, String> {
    match s {
        "db" | "database" | "databases" | "sqlite" => Ok(ComponentKind::Sqlite),
        "postgres" | "pg" | "postgresql" => Ok(ComponentKind::Postgres),
        "files" | "uploads" => Ok(ComponentKind::Files),
        "secret" | "secrets" => Ok(ComponentKind::Secret),
        "config" => Ok(ComponentKind::Config),
        _ => Err(format!(
            "{s:?} is not one of db, postgres, files, secrets, config"
        )),
    }
}

pub fn run(ctx: &Context, a: RestoreArgs) -> Result<()> {
    let config = ctx.setup.config()?;
    let is_app = |s: &str| config.as_ref().is_some_and(|c| c.has_app(s));
    let (app, spec) = match a.args.as_slice() {
        [] => (
            config
                .as_ref()
                .and_then(|c| c.only_app())
                .map(str::to_string),
            "latest".to_string(),
        ),
        [x] if is_app(x) => (Some(x.clone()), "latest".to_string()),
        [x] => (None, x.clone()),
        [app, p] => (Some(app.clone()), p.clone()),
        _ => unreachable!("clap limits to 2"),
    };
    let mut repo = ctx.setup.open(app.as_deref())?;
    let (id, mut point) = repo.find_point(app.as_deref(), &spec)?;
    let mut only = a.only.clone();
    if only.contains(&ComponentKind::Sqlite) {
        // `db` means every database of the point.
        only.push(ComponentKind::Postgres);
    }
    if !only.is_empty() {
        point.components.retain(|c| only.contains(&c.kind));
    }
    if point.components.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("point {} has no component matching --only", id.short()),
        ));
    }
    let target = match (&a.to, &a.output) {
        (Some(dir), _) => RestoreTarget::Into(dir.clone()),
        (None, Some(out)) => {
            if point.components[0].kind == ComponentKind::Postgres {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "a PostgreSQL database restores into a database, not a file",
                )
                .with_hint("use --pg-database NAME"));
            }
            if point.components.len() != 1 {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!(
                        "--output needs exactly one component, point {} has {}",
                        id.short(),
                        point.components.len()
                    ),
                )
                .with_hint("choose one with --only db|files|secrets|config, or use --to DIR"));
            }
            if out.exists() && !a.force {
                return Err(
                    Error::new(ErrorKind::Refused, format!("{} exists", out.display()))
                        .with_hint("choose a new path, or pass --force to overwrite it"),
                );
            }
            point.components[0].path = std::path::absolute(out)
                .map_err(|e| Error::io(out.display(), e))?
                .display()
                .to_string();
            RestoreTarget::InPlace
        }
        (None, None) => RestoreTarget::InPlace,
    };
    let mut pg = PgRestoreSettings {
        connections: match (&config, &app) {
            (Some(c), Some(app)) => c.pg_sources(app),
            _ => Vec::new(),
        },
        url: a.pg_url.clone(),
        database: a.pg_database.clone(),
        tables: a.table.clone(),
        globals: a.pg_globals,
        no_owner: a.pg_no_owner,
        terminate: a.pg_terminate,
        ..PgRestoreSettings::default()
    };
    if let Some(j) = a.jobs {
        pg.jobs = j.max(1);
    }
    // What an in-place restore replaces: everything, except databases sent to a new name.
    let replaced: Vec<Component> = if a.to.is_none() && a.output.is_none() {
        point
            .components
            .iter()
            .filter(|c| c.kind != ComponentKind::Postgres || a.pg_database.is_none())
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let opts = RestoreOptions {
        target,
        only: Vec::new(),
        force: a.force,
        verify: a.verify,
        postgres: pg,
    };
    // Refusals (open or newer database, name taken) come before the question and the safety point.
    lifeboat_sources::app::preflight(&point, &opts)?;
    if !replaced.is_empty() {
        confirm_in_place(&replaced, &point.time, a.yes)?;
        if !a.no_safety_point {
            safety_point(ctx, &mut repo, &point.app, &replaced, &opts.postgres)?;
        }
    }
    let restored = restore_point(&mut repo, &point, &opts, &ctx.progress)?;
    if a.json {
        json(&serde_json::json!({ "point": id.to_hex(), "restored": restored }));
        return Ok(());
    }
    println!(
        "restored point {} of app {} ({})",
        id.short(),
        point.app,
        crate::output::local_time(&point.time)
    );
    for r in &restored {
        let kind = if r.kind.is_database() {
            "db"
        } else {
            r.kind.as_str()
        };
        println!("  {kind:<7} {} ({}): {}", r.path, size(r.bytes), r.verified);
        for w in &r.warnings {
            println!("          warning: {w}");
        }
    }
    Ok(())
}

fn confirm_in_place(replaced: &[Component], time: &str, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let list: Vec<_> = replaced.iter().map(|c| c.path.as_str()).collect();
    if !std::io::stdin().is_terminal() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("an in-place restore replaces {}", list.join(", ")),
        )
        .with_hint("pass --yes to confirm (a pre-restore point is taken first), or restore elsewhere with --to DIR"));
    }
    eprint!(
        "Replace {} with the point from {}? [y/N] ",
        list.join(", "),
        time
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Refused,
            "restore cancelled; nothing was changed",
        ))
    }
}

/// Backs up what is there now, before it is replaced, as a `pre-restore` point.
fn safety_point(
    ctx: &Context,
    repo: &mut lifeboat_core::Repository,
    app: &str,
    replaced: &[Component],
    pg: &PgRestoreSettings,
) -> Result<()> {
    let mut sources = Vec::new();
    for c in replaced {
        if let Some(body) = &c.postgres {
            let mut conn = pg.connection_for(&body.database);
            // Only what exists can be saved; a database that is gone has nothing to lose.
            if lifeboat_sources::postgres::database_exists(&conn, &body.database)? {
                conn.globals = false;
                conn.schema_only = false;
                sources.push(SourceSpec::postgres(conn));
            }
            continue;
        }
        let p = Path::new(&c.path);
        let Ok(md) = std::fs::metadata(p) else {
            continue;
        };
        let kind = if md.is_dir() {
            ComponentKind::Files
        } else if c.kind == ComponentKind::Sqlite && is_sqlite_file(p).unwrap_or(false) {
            ComponentKind::Sqlite
        } else if c.kind == ComponentKind::Secret {
            ComponentKind::Secret
        } else {
            // Includes a damaged database: keep its bytes as a plain file.
            ComponentKind::Config
        };
        sources.push(SourceSpec::path(kind, p.to_path_buf()));
    }
    if sources.is_empty() {
        return Ok(());
    }
    let mut spec = AppSpec {
        name: app.to_string(),
        sources,
        excludes: Vec::new(),
        time: None,
    };
    let tags = ["pre-restore".to_string()];
    let id = match backup_app(repo, &spec, &tags, &ctx.progress) {
        Ok((id, _)) => id,
        Err(e) if spec.sources.iter().any(|s| s.kind == ComponentKind::Sqlite) => {
            // A damaged database may not be readable through SQLite: keep its bytes (and its
            // -wal) as plain files instead, so the state being replaced is never lost.
            tracing::warn!("pre-restore point through SQLite failed ({e}); saving the raw database files instead");
            let mut raw = Vec::new();
            for s in spec.sources.drain(..) {
                if s.kind == ComponentKind::Sqlite {
                    for side in ["-wal", "-journal"] {
                        let mut p = s.path.as_os_str().to_owned();
                        p.push(side);
                        let p = std::path::PathBuf::from(p);
                        if p.is_file() {
                            raw.push(SourceSpec::path(ComponentKind::Config, p));
                        }
                    }
                    raw.push(SourceSpec::path(ComponentKind::Config, s.path));
                } else {
                    raw.push(s);
                }
            }
            spec.sources = raw;
            backup_app(repo, &spec, &tags, &ctx.progress)
                .map_err(|e| {
                    e.context("take the pre-restore point").with_hint(
                        "the current state could not be saved first; fix the error or pass --no-safety-point",
                    )
                })?
                .0
        }
        Err(e) => return Err(e.context("take the pre-restore point").with_hint(
            "the current state could not be saved first; fix the error or pass --no-safety-point",
        )),
    };
    eprintln!(
        "saved the current state as pre-restore point {}",
        id.short()
    );
    Ok(())
}
