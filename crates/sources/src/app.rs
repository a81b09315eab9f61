//! An app = the sources that form one recovery point. Backing it up and restoring a point.
//!
//! Nothing here knows a source kind: a backup validates and captures each [`Source`] in
//! order, a restore asks [`registry::kind`] for the [`SourceKind`](crate::SourceKind) of each
//! component.
use std::sync::Arc;
use std::time::Instant;

use globset::{Glob, GlobSet, GlobSetBuilder};
use lifeboat_core::{
    hostname, load_tree, ChunkReader, Component, ComponentKind, Error, ErrorKind, ObjectId, Point,
    PointStats, Progress, ProofRecord, Repository, Result,
};

pub use crate::postgres::PgRestoreSettings;
use crate::postgres::{PgSource, PostgresSource};
use crate::registry;
pub use crate::source::{target_path, RestoreOptions, RestoreTarget, RestoredComponent};
use crate::source::{Capture, Proofs, RestoreContext, Source};

/// One source of an app: a configured [`Source`] behind a cheap, cloneable handle.
///
/// `kind` and `path` are copies of the source's own, kept as fields for callers that sort or
/// name sources by them; [`backup_app`] refuses a spec whose fields no longer match its
/// source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// What it is ([`Source::kind`]).
    pub kind: ComponentKind,
    /// Absolute path ([`Source::path`]; empty for postgres).
    pub path: std::path::PathBuf,
    source: Arc<dyn Source>,
}

impl SourceSpec {
    /// A file, directory or SQLite source at `path`.
    pub fn path(kind: ComponentKind, path: impl Into<std::path::PathBuf>) -> SourceSpec {
        SourceSpec::new(registry::at_path(kind, path.into()))
    }

    /// A PostgreSQL database.
    pub fn postgres(source: PgSource) -> SourceSpec {
        SourceSpec::new(Box::new(PostgresSource::new(source)))
    }

    /// Any configured source.
    pub fn new(source: Box<dyn Source>) -> SourceSpec {
        SourceSpec {
            kind: source.kind(),
            path: source.path().map(|p| p.to_path_buf()).unwrap_or_default(),
            source: Arc::from(source),
        }
    }

    /// The configured source.
    pub fn source(&self) -> &dyn Source {
        &*self.source
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
    /// The app's definition to record in the point (`Point::definition`), if it has one.
    pub definition: Option<String>,
    /// The point whose files may be reused by metadata (size, times, inode: not read again):
    /// one this machine wrote, never simply the newest in the repository, which any key
    /// holder can write with other bytes under the same metadata. `None`: every file is read.
    pub previous: Option<ObjectId>,
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
        if s.kind != s.source.kind()
            || s.source.path().unwrap_or(std::path::Path::new("")) != s.path
        {
            return Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "internal: source {} was changed after it was made",
                    s.source.describe()
                ),
            ));
        }
        s.source.validate()?;
    }
    let excludes = build_excludes(&app.excludes)?;
    // The session takes the lease, then loads the index: the order a concurrent prune
    // relies on (core's `session.rs`).
    let mut session = repo.begin_backup()?;
    let previous = app
        .previous
        .and_then(|id| session.repository().read_point(&id).ok())
        .filter(|p| p.app == app.name);
    let mut components = Vec::new();
    for s in &app.sources {
        let prev = previous
            .as_ref()
            .and_then(|p| p.components.iter().find(|c| s.source.previous_match(c)));
        tracing::debug!(kind = s.kind.as_str(), source = %s.source.describe(), "capturing");
        let (writer, reader) = session.parts();
        let mut cx = Capture::new(writer, reader, &excludes);
        let c = s.source.capture(&mut cx, prev, progress)?;
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
        definition: app.definition.clone(),
    })
}

/// The components of `point` that `opts.only` selects, in the point's order except that one
/// beneath another's path comes after it.
fn select<'p>(point: &'p Point, opts: &RestoreOptions) -> Vec<&'p Component> {
    let mut selected: Vec<&Component> = point
        .components
        .iter()
        .filter(|c| opts.only.is_empty() || opts.only.contains(&c.kind))
        .collect();
    crate::source::parents_first(&mut selected);
    selected
}

/// Refuses early, before anything is written or a safety point is taken, when restoring the
/// point's databases to `opts.target` would replace one that is open or newer (unless `force`).
pub fn preflight(point: &Point, opts: &RestoreOptions) -> Result<()> {
    let selected = select(point, opts);
    let cx = RestoreContext {
        options: opts,
        point_time: point.timestamp()?,
        selected: &selected,
        components: &point.components,
        proofs: None,
    };
    for c in &selected {
        registry::kind(c.kind).check_selection(&cx)?;
    }
    for c in &selected {
        if c.kind != ComponentKind::Postgres {
            cx.check_parent(c)?;
        }
        registry::kind(c.kind).preflight(c, &cx)?;
    }
    Ok(())
}

/// How a point is named in errors when its id is not at hand.
fn point_label(point: &Point) -> String {
    format!("of {} at {}", point.app, point.time)
}

/// Refuses a point whose paths break the rules of `docs/FORMAT.md` ("Path rules"): every
/// component path absolute and normalized, every tree's entries relative, normalized and
/// never beneath a symlink or file of the same tree. Reads every tree of the point (through
/// the authenticating reader) and writes nothing; `label` names the point in the error
/// (its short id). A restore runs this before it writes anything, for every component of
/// the point (not only the selected ones: such a point was not written by lifeboat).
pub fn check_point_paths(reader: &mut ChunkReader<'_>, point: &Point, label: &str) -> Result<()> {
    for c in &point.components {
        lifeboat_core::check_component_path(label, c)?;
    }
    for c in &point.components {
        if let Some(t) = &c.tree {
            let entries = load_tree(reader, t)?;
            lifeboat_core::check_tree(label, c, &entries)?;
        }
    }
    Ok(())
}

/// Restores point `id`. Every component is authenticated chunk by chunk; databases are
/// verified (checksum, integrity_check, row counts) before they replace anything, unless a
/// proof record of the point says their exact bytes already passed (`docs/FORMAT.md` §16).
/// Databases whose `integrity_check` passed here get a proof record (best effort: a read-only
/// repository only warns).
pub fn restore_point(
    repo: &mut Repository,
    id: &ObjectId,
    point: &Point,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Vec<RestoredComponent>> {
    preflight(point, opts)?;
    let session = repo.begin_restore()?;
    let mut reader = session.reader();
    check_point_paths(&mut reader, point, &point_label(point))?;
    let selected = select(point, opts);
    let proofs = Proofs {
        known: if opts.recheck {
            Vec::new()
        } else {
            session.proofs(id)
        },
        ..Proofs::default()
    };
    let cx = RestoreContext {
        options: opts,
        point_time: point.timestamp()?,
        selected: &selected,
        components: &point.components,
        proofs: Some(&proofs),
    };
    if selected.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            "nothing to restore: no component of the point matches --only",
        ));
    }
    let mut out: Vec<RestoredComponent> = Vec::new();
    for c in &selected {
        let r = registry::kind(c.kind)
            .restore(c, &cx, &mut reader, progress)
            .map_err(|e| {
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
    let passed = proofs
        .passed
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if !passed.is_empty() && opts.write_proof {
        let record = ProofRecord::now(id, "restore", passed, None);
        if let Err(e) = session.record_proof(&record) {
            tracing::warn!("could not record the passed integrity check with the point (the next restore runs it again): {e}");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lifeboat_core::{KdfParams, NoProgress, Storage};
    use lifeboat_storage::MemoryStorage;

    use super::*;

    fn repo() -> Repository {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Repository::init(storage, b"pw", kdf).unwrap()
    }

    fn app(sources: Vec<SourceSpec>) -> AppSpec {
        AppSpec {
            definition: None,
            previous: None,
            name: "t".into(),
            sources,
            ..AppSpec::default()
        }
    }

    #[test]
    fn sources_are_validated_before_anything_is_written() {
        let mut r = repo();
        let mut err = |s: SourceSpec| {
            backup_app(&mut r, &app(vec![s]), &[], &NoProgress)
                .unwrap_err()
                .to_string()
        };
        let relative = err(SourceSpec::path(ComponentKind::Files, "srv/uploads"));
        assert!(
            relative.contains("source path srv/uploads is not absolute"),
            "{relative}"
        );
        let dotdot = err(SourceSpec::path(ComponentKind::Files, "/srv/../etc"));
        assert!(
            dotdot.contains("source path /srv/../etc has a \"..\" component"),
            "{dotdot}"
        );
        // Trailing and repeated slashes and `.` are dropped: the point's path obeys the rules
        // a restore checks.
        let spec = SourceSpec::path(ComponentKind::Files, "/srv//./uploads/");
        assert_eq!(spec.path, std::path::Path::new("/srv/uploads"));
        assert_eq!(
            spec.source.path().unwrap().display().to_string(),
            "/srv/uploads"
        );
        let pg = err(SourceSpec::path(ComponentKind::Postgres, "/x"));
        assert!(
            pg.contains("internal: a postgres source without connection settings"),
            "{pg}"
        );
        let mut changed = SourceSpec::path(ComponentKind::Files, "/srv/uploads");
        changed.kind = ComponentKind::Sqlite;
        let changed = err(changed);
        assert!(
            changed.contains("was changed after it was made"),
            "{changed}"
        );
        assert!(r.points().unwrap().is_empty());
    }

    fn pg_component(db: &str) -> Component {
        Component {
            kind: ComponentKind::Postgres,
            path: format!("postgresql:///{db}"),
            size: 0,
            sqlite: None,
            tree: None,
            postgres: Some(lifeboat_core::PostgresBody {
                database: db.into(),
                server_version: "15.0".into(),
                server_version_num: 150000,
                pg_dump_major: 15,
                database_size: 0,
                encoding: "UTF8".into(),
                collate: "C".into(),
                ctype: "C".into(),
                owner: "postgres".into(),
                schema_only: false,
                globals: false,
                row_counts: Default::default(),
            }),
        }
    }

    /// The selection-wide check runs before any component's preflight (which here would
    /// need a server), whatever the order of the components.
    #[test]
    fn pg_database_with_two_databases_is_refused_before_any_preflight() {
        let tree = Component {
            kind: ComponentKind::Config,
            path: "/nonexistent/app.toml".into(),
            size: 0,
            sqlite: None,
            tree: None,
            postgres: None,
        };
        let point = Point {
            app: "t".into(),
            time: "2025-01-01T00:00:00Z".into(),
            tags: Vec::new(),
            hostname: "h".into(),
            lifeboat_version: "0".into(),
            components: vec![tree, pg_component("a"), pg_component("b")],
            stats: PointStats::default(),
            definition: None,
        };
        let opts = RestoreOptions {
            target: RestoreTarget::InPlace,
            only: Vec::new(),
            force: false,
            replace_newer: false,
            app_stops_first: false,
            verify: crate::sqlite::Verify::Full,
            verify_replayed: crate::sqlite::Verify::Quick,
            postgres: PgRestoreSettings {
                database: Some("new".into()),
                ..PgRestoreSettings::default()
            },
            keep_setid: false,
            replayed: None,
            recheck: false,
            write_proof: true,
        };
        let e = preflight(&point, &opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        assert!(
            e.to_string()
                .contains("--pg-database names one database, the point has 2"),
            "{e}"
        );
    }
}
