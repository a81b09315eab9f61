//! An app = the sources that form one recovery point. Backing it up and restoring a point.
use std::path::{Path, PathBuf};
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use lifeboat_core::{
    hostname, Component, ComponentKind, Error, ErrorKind, ObjectId, Point, PointStats, Progress,
    Repository, Result,
};
use serde::Serialize;

use crate::postgres::{self, PgRestoreOptions, PgSource, PgTarget};
use crate::sqlite::{self, SqliteRestoreOptions};
use crate::tree::{self, TreeRestoreReport};

/// One source of an app.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// What it is.
    pub kind: ComponentKind,
    /// Absolute path (empty for postgres).
    pub path: PathBuf,
    /// Connection and options of a postgres source.
    pub postgres: Option<PgSource>,
}

impl SourceSpec {
    /// A file, directory or SQLite source at `path`.
    pub fn path(kind: ComponentKind, path: impl Into<PathBuf>) -> SourceSpec {
        SourceSpec {
            kind,
            path: path.into(),
            postgres: None,
        }
    }

    /// A PostgreSQL database.
    pub fn postgres(source: PgSource) -> SourceSpec {
        SourceSpec {
            kind: ComponentKind::Postgres,
            path: PathBuf::new(),
            postgres: Some(source),
        }
    }
}

/// What to back up.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    /// App name (points are grouped by it).
    pub name: String,
    /// Its sources, in capture order (databases first keeps the DB and files close in time).
    pub sources: Vec<SourceSpec>,
    /// Glob patterns excluded from `files` sources (matched against the relative path and
    /// the file name).
    pub excludes: Vec<String>,
    /// The time to record as the capture time instead of now. Only for tests and benchmarks
    /// that need a year of points quickly (`backup --point-time`, hidden).
    pub time: Option<jiff::Timestamp>,
}

/// Builds a glob set, with a clear error for a bad pattern.
pub fn build_excludes(patterns: &[String]) -> Result<GlobSet> {
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| {
            Error::new(ErrorKind::Usage, format!("bad exclude pattern {p:?}: {e}"))
        })?);
    }
    b.build()
        .map_err(|e| Error::new(ErrorKind::Usage, format!("bad exclude patterns: {e}")))
}

/// Backs up an app as one point and makes it visible last. Returns the point's id.
pub fn backup_app(
    repo: &mut Repository,
    app: &AppSpec,
    tags: &[String],
    progress: &dyn Progress,
) -> Result<(ObjectId, Point)> {
    let started = Instant::now();
    let time = app.time.unwrap_or_else(jiff::Timestamp::now);
    if app.sources.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("app {} has no sources to back up", app.name),
        ));
    }
    for s in &app.sources {
        if s.kind == ComponentKind::Postgres {
            if s.postgres.is_none() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "internal: a postgres source without connection settings",
                ));
            }
            continue;
        }
        if !s.path.is_absolute() {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("source path {} is not absolute", s.path.display()),
            ));
        }
        if s.kind == ComponentKind::Sqlite {
            sqlite::ensure_dbpage_available()?;
        }
    }
    let excludes = build_excludes(&app.excludes)?;
    // The session takes the lease, then loads the index: the order a concurrent prune
    // relies on (core's `session.rs`).
    let mut session = repo.begin_backup()?;
    let previous = session
        .repository()
        .points()?
        .into_iter()
        .rfind(|(_, p)| p.app == app.name)
        .map(|(_, p)| p);
    let find_prev = |kind: ComponentKind, path: &Path| -> Option<Component> {
        previous
            .as_ref()?
            .components
            .iter()
            .find(|c| c.kind == kind && Path::new(&c.path) == path)
            .cloned()
    };

    let mut components = Vec::new();
    let mut reader = session.reader();
    for s in &app.sources {
        let prev = find_prev(s.kind, &s.path);
        let writer = session.writer();
        let c = match s.kind {
            ComponentKind::Sqlite => sqlite::capture(
                writer,
                &mut reader,
                &s.path,
                prev.as_ref().and_then(|c| c.sqlite.as_ref()),
                progress,
            )?,
            ComponentKind::Postgres => postgres::capture(
                writer,
                s.postgres.as_ref().expect("checked above"),
                progress,
            )?,
            kind => tree::capture(
                writer,
                &mut reader,
                kind,
                &s.path,
                &excludes,
                prev.as_ref().and_then(|c| c.tree.as_ref()),
                progress,
            )?,
        };
        tracing::info!(kind = c.kind.as_str(), path = %c.path, size = c.size, "captured");
        components.push(c);
    }
    session.commit(|summary| Point {
        app: app.name.clone(),
        time: time.to_string(),
        tags: tags.to_vec(),
        hostname: hostname(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        components,
        stats: PointStats {
            duration_ms: started.elapsed().as_millis() as u64,
            bytes_read: summary.bytes_seen,
            chunks_new: summary.chunks_new,
            bytes_new: summary.bytes_new,
            bytes_stored: summary.bytes_stored,
        },
    })
}

/// Where a restore puts things.
#[derive(Debug, Clone)]
pub enum RestoreTarget {
    /// Back to the paths recorded in the point.
    InPlace,
    /// Under this directory: a source at `/srv/chat/chat.db` lands at `DIR/srv/chat/chat.db`.
    Into(PathBuf),
}

/// Restore options.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where.
    pub target: RestoreTarget,
    /// Only these kinds (empty = all).
    pub only: Vec<ComponentKind>,
    /// Replace databases that are open or newer than the point.
    pub force: bool,
    /// How thoroughly restored databases are checked.
    pub verify: sqlite::Verify,
    /// How PostgreSQL databases are restored.
    pub postgres: PgRestoreSettings,
}

/// PostgreSQL restore settings of a whole point.
#[derive(Debug, Clone)]
pub struct PgRestoreSettings {
    /// The app's configured databases (connection, wrapper, tools), matched to the point's
    /// databases by name. A database with no match uses the `PG*` environment.
    pub connections: Vec<PgSource>,
    /// Restore onto this server instead (a libpq URL); wrapper and tools still come from the
    /// matching connection.
    pub url: Option<String>,
    /// Name of the new database (only with one database in the point). Unset: in place for
    /// an in-place restore, else `<database>_restored_<point time>`.
    pub database: Option<String>,
    /// `pg_restore --jobs`.
    pub jobs: u32,
    /// Only these tables (new database only).
    pub tables: Vec<String>,
    /// Run the point's roles script first.
    pub globals: bool,
    /// Objects owned by the restoring user (`--no-owner --no-privileges`).
    pub no_owner: bool,
    /// End other sessions of a database being replaced instead of refusing.
    pub terminate: bool,
}

impl Default for PgRestoreSettings {
    fn default() -> Self {
        PgRestoreSettings {
            connections: Vec::new(),
            url: None,
            database: None,
            jobs: std::thread::available_parallelism()
                .map_or(2, |n| n.get() as u32)
                .min(4),
            tables: Vec::new(),
            globals: false,
            no_owner: false,
            terminate: false,
        }
    }
}

impl PgRestoreSettings {
    /// How to reach database `database`: its configured connection (else the `PG*`
    /// environment), on the `url` server when one is given.
    pub fn connection_for(&self, database: &str) -> PgSource {
        let mut conn = self
            .connections
            .iter()
            .find(|p| p.database == database)
            .cloned()
            .unwrap_or_else(|| PgSource {
                database: database.to_string(),
                ..PgSource::default()
            });
        if let Some(u) = &self.url {
            conn.url = Some(u.clone());
        }
        conn
    }
}

/// The connection and options used to restore postgres component `c` of a point.
fn pg_plan(
    c: &Component,
    opts: &RestoreOptions,
    point_time: jiff::Timestamp,
) -> Result<(PgSource, PgRestoreOptions)> {
    let body = c.postgres.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("postgres component {} has no body", c.path),
        )
    })?;
    let s = &opts.postgres;
    let conn = s.connection_for(&body.database);
    let target = match (&s.database, &opts.target) {
        (Some(name), _) => PgTarget::New(name.clone()),
        (None, RestoreTarget::InPlace) => PgTarget::Replace,
        (None, RestoreTarget::Into(_)) => {
            let t = point_time.strftime("%Y%m%d_%H%M%S");
            PgTarget::New(postgres::db_name_with_suffix(
                &body.database,
                &format!("_restored_{t}"),
            ))
        }
    };
    Ok((
        conn.clone(),
        PgRestoreOptions {
            target,
            jobs: s.jobs.max(1),
            tables: s.tables.clone(),
            globals: s.globals,
            no_owner: s.no_owner,
            terminate: s.terminate || conn.terminate_connections,
        },
    ))
}

/// What a restore did, per component.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredComponent {
    /// Kind.
    pub kind: ComponentKind,
    /// Where it was written.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// How it was verified.
    pub verified: String,
    /// What could not be restored exactly.
    pub warnings: Vec<String>,
}

/// Where a component lands for a given target.
pub fn target_path(target: &RestoreTarget, source: &str) -> PathBuf {
    match target {
        RestoreTarget::InPlace => PathBuf::from(source),
        RestoreTarget::Into(dir) => dir.join(source.trim_start_matches('/')),
    }
}

/// Refuses early, before anything is written or a safety point is taken, when restoring the
/// point's databases to `opts.target` would replace one that is open or newer (unless `force`).
pub fn preflight(point: &Point, opts: &RestoreOptions) -> Result<()> {
    let point_time = point.timestamp()?;
    let selected: Vec<&Component> = point
        .components
        .iter()
        .filter(|c| opts.only.is_empty() || opts.only.contains(&c.kind))
        .collect();
    let databases = selected
        .iter()
        .filter(|c| c.kind == ComponentKind::Postgres)
        .count();
    if opts.postgres.database.is_some() && databases > 1 {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("--pg-database names one database, the point has {databases}"),
        )
        .with_hint("restore them one at a time with --only postgres and a different --pg-database each, or use --to DIR for automatic names"));
    }
    for c in selected {
        if c.kind == ComponentKind::Postgres {
            let (conn, pg) = pg_plan(c, opts, point_time)?;
            postgres::preflight(&conn, c.postgres.as_ref().expect("planned"), &pg)?;
        }
        if c.kind == ComponentKind::Sqlite {
            sqlite::preflight(
                &target_path(&opts.target, &c.path),
                SqliteRestoreOptions {
                    force: opts.force,
                    point_time: Some(point_time),
                    verify: opts.verify,
                },
            )?;
        }
    }
    Ok(())
}

/// Restores a point. Every component is authenticated chunk by chunk; databases are verified
/// (checksum, integrity_check, row counts) before they replace anything.
pub fn restore_point(
    repo: &mut Repository,
    point: &Point,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Vec<RestoredComponent>> {
    preflight(point, opts)?;
    let session = repo.begin_restore()?;
    let point_time = point.timestamp()?;
    let selected: Vec<&Component> = point
        .components
        .iter()
        .filter(|c| opts.only.is_empty() || opts.only.contains(&c.kind))
        .collect();
    if selected.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            "nothing to restore: no component of the point matches --only",
        ));
    }
    let mut out: Vec<RestoredComponent> = Vec::new();
    let mut reader = session.reader();
    for c in selected {
        let r = restore_component(&mut reader, c, opts, point_time, progress).map_err(|e| {
            if out.is_empty() {
                e
            } else {
                // Say what was already replaced, so the operator knows the app's state.
                let done: Vec<_> = out.iter().map(|r| r.path.as_str()).collect();
                e.context(format!(
                    "restore stopped after replacing {}",
                    done.join(", ")
                ))
            }
        })?;
        out.push(r);
    }
    Ok(out)
}

fn restore_component(
    reader: &mut lifeboat_core::ChunkReader<'_>,
    c: &Component,
    opts: &RestoreOptions,
    point_time: jiff::Timestamp,
    progress: &dyn Progress,
) -> Result<RestoredComponent> {
    if c.kind == ComponentKind::Postgres {
        let (conn, pg) = pg_plan(c, opts, point_time)?;
        let r = postgres::restore(reader, c, &conn, &pg, progress)?;
        return Ok(RestoredComponent {
            kind: c.kind,
            path: PgSource {
                database: r.database.clone(),
                ..conn
            }
            .label(),
            bytes: r.bytes,
            verified: if c.postgres.as_ref().is_some_and(|b| b.schema_only) {
                format!(
                    "dump authenticated chunk by chunk, pg_restore --exit-on-error ok, schema only: {} tables present",
                    r.tables_checked
                )
            } else {
                format!(
                    "dump authenticated chunk by chunk, pg_restore --exit-on-error ok, row counts of {} tables match",
                    r.tables_checked
                )
            },
            warnings: r.warnings,
        });
    }
    let dest = target_path(&opts.target, &c.path);
    match (&c.sqlite, &c.tree) {
        (Some(body), _) => {
            let sqlite_opts = SqliteRestoreOptions {
                force: opts.force,
                point_time: Some(point_time),
                verify: opts.verify,
            };
            sqlite::restore(reader, body, &dest, sqlite_opts, progress)?;
            Ok(RestoredComponent {
                kind: c.kind,
                path: dest.display().to_string(),
                bytes: body.page_count as u64 * body.page_size as u64,
                verified: format!(
                    "checksum, {} ok, row counts of {} tables match",
                    match opts.verify {
                        sqlite::Verify::Full => "integrity_check",
                        sqlite::Verify::Quick => "quick_check",
                    },
                    body.row_counts.len()
                ),
                warnings: Vec::new(),
            })
        }
        (None, Some(body)) => {
            let TreeRestoreReport {
                files,
                bytes,
                warnings,
            } = tree::restore(reader, body, &dest, progress)?;
            Ok(RestoredComponent {
                kind: c.kind,
                path: dest.display().to_string(),
                bytes,
                verified: format!("{files} files authenticated chunk by chunk, sizes match"),
                warnings,
            })
        }
        (None, None) => Err(Error::new(
            ErrorKind::Corrupt,
            format!("component {} has no body", c.path),
        )),
    }
}
