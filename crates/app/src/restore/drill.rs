//! `lifeboat drill`: proof that a point comes back. The point is restored into a private
//! scratch directory, never in place and with no hook, with every check a restore has at its
//! strictest, plus the ones only a drill can afford:
//!
//! - every chunk authenticated as it is read (as in any restore);
//! - each SQLite database: its whole-database checksum, `integrity_check` and the row counts
//!   against the point's, even where a proof record says they passed (`recheck`: a record can
//!   be written by anyone with the password); its schema version is reported;
//! - each PostgreSQL database restored into a new database of the same server (named
//!   `<db>_drill_<id>`), dropped afterwards whatever happened;
//! - files, secrets and config read back from the disk and compared with the point (cut again
//!   with the repository's keyed chunker, the chunk ids compared: `lifeboat_sources::compare`);
//! - the app's smoke queries, on the restored databases.
//!
//! The whole of it is timed, from opening the repository to the last check: the recovery time
//! (RTO) this point would take. The outcome is stored in the repository as a proof record with
//! `by = "drill"` (`docs/FORMAT.md` §16): a drill that passed proves the point's databases for
//! later restores (which then skip SQLite's check), a failed one proves nothing and is kept so
//! that `points` (and the alerts) show the failure. The scratch directory is removed.
use std::path::{Path, PathBuf};
use std::time::Instant;

use lifeboat_core::{
    ComponentKind, DrillOutcome, Error, ErrorKind, ObjectId, Progress, ProofRecord, ProvenDatabase,
    Repository, Result, CHECK_INTEGRITY,
};
use lifeboat_sources::postgres::{db_name_with_suffix, drop_database};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{compare_tree, target_path, RestoreTarget};
use serde::Serialize;

use super::{plan_with, RestorePlan, RestoreRequest};
use crate::setup::Setup;

/// Which point to drill, and where.
#[derive(Debug, Clone, Default)]
pub struct DrillRequest {
    /// The app (default: the config's only app).
    pub app: Option<String>,
    /// A point id prefix or `latest` (default).
    pub point: Option<String>,
    /// Where the scratch directory is made (default: the system's temporary directory). It
    /// needs room for the point's files and databases.
    pub scratch: Option<PathBuf>,
}

/// What a drill found. A drill that ran and failed is a report with `ok = false`, not an
/// error: an error is a drill that could not run (no such point, repository unreachable).
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    /// The app.
    pub app: String,
    /// The point drilled (hex id).
    pub point: String,
    /// When the point was taken (RFC 3339).
    pub point_time: String,
    /// Every check passed.
    pub ok: bool,
    /// From opening the repository to the last check, in seconds: the recovery time.
    pub seconds: f64,
    /// Bytes restored.
    pub bytes: u64,
    /// What was checked and passed, one line each.
    pub checks: Vec<String>,
    /// The first failure, when `ok` is false.
    pub failure: Option<String>,
    /// Its kind (for the exit code).
    #[serde(skip)]
    pub failure_kind: Option<ErrorKind>,
    /// The drill record written to the repository (hex id); `None` when the store refused it
    /// (then a warning says so).
    pub record: Option<String>,
}

/// Drills a point: restores it into a scratch directory, checks everything, records the
/// outcome in the repository (and in the audit log) and removes the scratch copy.
pub fn drill(setup: &Setup, req: &DrillRequest, progress: &dyn Progress) -> Result<DrillReport> {
    crate::audit::audited(setup, "drill", req.app.as_deref(), || {
        run(setup, req, progress)
    })
}

impl crate::audit::Audited for DrillReport {
    fn facts(&self, ev: &mut lifeboat_core::AuditEvent) {
        ev.app = Some(self.app.clone());
        ev.points = vec![self.point.clone()];
        ev.bytes = Some(self.bytes);
        match &self.failure {
            Some(f) if !self.ok => {
                ev.result = lifeboat_core::RESULT_FAILED.into();
                ev.message = f.clone();
            }
            _ => {
                ev.message = format!(
                    "{} checks passed in {:.1} s",
                    self.checks.len(),
                    self.seconds
                )
            }
        }
    }
}

fn run(setup: &Setup, req: &DrillRequest, progress: &dyn Progress) -> Result<DrillReport> {
    let started = Instant::now();
    let scratch = Scratch::make(req.scratch.clone().unwrap_or_else(std::env::temp_dir))?;
    // Unique per drill (two drills of apps sharing a database, started in the same
    // millisecond in one daemon, must not share a name: each drops its own).
    static DRILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let suffix = format!(
        "_drill_{}",
        &blake3::hash(
            format!(
                "{}|{}|{}",
                std::process::id(),
                jiff::Timestamp::now().as_nanosecond(),
                DRILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
            .as_bytes()
        )
        .to_hex()[..10]
    );
    let restore = RestoreRequest {
        app: req.app.clone(),
        point: req.point.clone(),
        to: Some(scratch.path().to_path_buf()),
        verify: Some(Verify::Full),
        safety_point: false,
        recheck: true,
        write_proof: false,
        pg_suffix: Some(suffix.clone()),
        ..RestoreRequest::default()
    };
    let mut plan = match plan_with(setup, &restore, None) {
        Ok(p) => p,
        // The point's trees could not be read (damaged or missing in the store): a failed
        // drill of that point, recorded as any other.
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Verify) => {
            return unplanned(setup, req, e, started);
        }
        Err(e) => return Err(e),
    };
    let id = plan.id();
    let point = plan.point().clone();
    let mut done = Done::default();
    let outcome = run_checks(&mut plan, &suffix, progress, &mut done);
    let seconds = started.elapsed().as_secs_f64();
    // The PostgreSQL databases it made go, whatever happened (each was checked not to exist
    // before: the plan refuses a name that is taken).
    for c in point
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Postgres)
    {
        let Some(body) = &c.postgres else { continue };
        let name = db_name_with_suffix(&body.database, &suffix);
        let conn = plan.opts.postgres.connection_for(&body.database);
        if let Err(e) = drop_database(&conn, &name) {
            tracing::warn!("drill of point {}: {e}; drop it by hand", id.short());
        }
    }
    // A failed drill proves nothing, not even the databases checked before the failure.
    let proven = if outcome.is_ok() {
        done.proven
    } else {
        Vec::new()
    };
    let report = finish(
        &mut plan.repo,
        (&id, &point),
        proven,
        DrillOutcome {
            ok: outcome.is_ok(),
            seconds,
            bytes: done.bytes,
            checks: done.checks,
            failure: outcome.as_ref().err().map(describe),
        },
        outcome.err().map(|e| e.kind()),
    );
    scratch.remove();
    Ok(report)
}

/// Records the drill of `point` (best effort) and makes its report.
fn finish(
    repo: &mut Repository,
    (id, point): (&ObjectId, &lifeboat_core::Point),
    proven: Vec<ProvenDatabase>,
    outcome: DrillOutcome,
    failure_kind: Option<ErrorKind>,
) -> DrillReport {
    let record = record(repo, id, proven, outcome.clone());
    DrillReport {
        app: point.app.clone(),
        point: id.to_hex(),
        point_time: point.time.clone(),
        ok: outcome.ok,
        seconds: outcome.seconds,
        bytes: outcome.bytes,
        checks: outcome.checks,
        failure: outcome.failure,
        failure_kind,
        record,
    }
}

/// A drill's scratch directory: private (0700), made by this process in a directory no other
/// user can change (else another user could rename it away and put theirs at its name, and
/// the restore, which opens its targets by path below it, would write the app's data into a
/// directory they own), removed afterwards, read-only directories of the copy included.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn make(base: PathBuf) -> Result<Scratch> {
        let base = std::fs::canonicalize(&base).map_err(|e| {
            Error::io(format!("scratch directory {}", base.display()), e)
                .with_hint("pass --scratch DIR (or set [daemon] scratch_dir) to an existing directory with room for the point")
        })?;
        if let Some(c) = crate::trust::check_ancestors(&base, crate::trust::effective_uid())? {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "refusing scratch directory {}: {} (owner uid {}, mode {:o}) can be changed by another user, who could swap the drill's copy for a directory of theirs",
                    base.display(),
                    c.dir.display(),
                    c.uid,
                    c.mode
                ),
            )
            .with_hint("pass --scratch DIR (or set [daemon] scratch_dir) to a directory only root can change, or a sticky one like /tmp"));
        }
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-drill-")
            .tempdir_in(&base)
            .map_err(|e| {
                Error::io(format!("make a scratch directory in {}", base.display()), e)
                    .with_hint("pass --scratch DIR on a filesystem with room for the point")
            })?;
        Ok(Scratch { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Removes the copy; what cannot be removed is said (a warning), not left silently.
    fn remove(self) {
        let path = self.dir.keep();
        // Directories the point has read-only (0555) cannot be emptied by a user who is not
        // root: made writable first (the copy is lifeboat's own; nothing is followed).
        fn writable(dir: &Path) {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        writable(&e.path());
                    }
                }
            }
        }
        writable(&path);
        if let Err(e) = std::fs::remove_dir_all(&path) {
            tracing::warn!(
                "the drill's scratch copy {} could not be removed ({e}); remove it by hand",
                path.display()
            );
        }
    }
}

/// Writes the drill record of point `id` (best effort: a store that refuses it costs a
/// warning); its id.
fn record(
    repo: &mut Repository,
    id: &ObjectId,
    proven: Vec<ProvenDatabase>,
    outcome: DrillOutcome,
) -> Option<String> {
    let record = ProofRecord::now(id, "drill", proven, Some(outcome));
    match repo.begin_restore().and_then(|s| s.record_proof(&record)) {
        Ok(rid) => Some(rid.to_hex()),
        Err(e) => {
            tracing::warn!(
                "drill of point {}: the outcome could not be recorded in the repository: {e}",
                id.short()
            );
            None
        }
    }
}

/// A drill whose restore could not even be planned because the point's data is damaged:
/// recorded as failed when the point itself can still be named (else the error is the
/// drill's).
fn unplanned(
    setup: &Setup,
    req: &DrillRequest,
    failure: Error,
    started: Instant,
) -> Result<DrillReport> {
    let config = setup.config()?;
    let app = req.app.clone().or_else(|| {
        config
            .as_ref()
            .and_then(|c| c.only_app())
            .map(str::to_string)
    });
    let spec = req.point.clone().unwrap_or_else(|| "latest".into());
    let found = setup.open(app.as_deref()).and_then(|repo| {
        let (id, point) = repo.find_point_with(app.as_deref(), &spec, false)?;
        // `latest` that is not the newest point this machine knows (that one is missing or
        // damaged): the failure is that point's, which cannot be named; the point `latest`
        // names now was not drilled.
        if spec == "latest" {
            crate::known_points::check_latest(
                &repo,
                app.as_deref(),
                point.timestamp().ok(),
                false,
            )?;
        }
        Ok((repo, (id, point)))
    });
    let Ok((mut repo, (id, point))) = found else {
        return Err(failure);
    };
    let outcome = DrillOutcome {
        ok: false,
        seconds: started.elapsed().as_secs_f64(),
        bytes: 0,
        checks: Vec::new(),
        failure: Some(describe(&failure)),
    };
    Ok(finish(
        &mut repo,
        (&id, &point),
        Vec::new(),
        outcome,
        Some(failure.kind()),
    ))
}

/// An error as one line of a drill record: its message and hint.
fn describe(e: &Error) -> String {
    match e.hint() {
        Some(h) => format!("{} (hint: {h})", e.message()),
        None => e.message().to_string(),
    }
}

/// What the checks got through.
#[derive(Default)]
struct Done {
    checks: Vec<String>,
    bytes: u64,
    proven: Vec<ProvenDatabase>,
}

/// The restore and every check, in order; on a failure, what passed before it.
fn run_checks(
    plan: &mut RestorePlan,
    suffix: &str,
    progress: &dyn Progress,
    done: &mut Done,
) -> Result<()> {
    let restored = plan.restore(progress)?;
    let point = plan.point.clone();
    let target = plan.opts.target.clone();
    // Lines name what the point holds, not the scratch copy (gone when they are read).
    let shown = |p: &str| match &target {
        RestoreTarget::Into(dir) => Path::new(p)
            .strip_prefix(dir)
            .map_or_else(|_| p.to_string(), |rest| format!("/{}", rest.display())),
        RestoreTarget::InPlace => p.to_string(),
    };
    for r in &restored {
        done.bytes += r.bytes;
        let verified = r.verified.replace(&r.path, &shown(&r.path));
        done.checks.push(format!(
            "{} {}: {verified}",
            r.kind.as_str(),
            shown(&r.path)
        ));
    }
    for c in &point.components {
        let at = target_path(&target, &c.path);
        match c.kind {
            ComponentKind::Sqlite => {
                let Some(body) = &c.sqlite else { continue };
                done.proven.push(ProvenDatabase {
                    path: at.display().to_string(),
                    checksum: body.checksum.clone(),
                    page_count: body.page_count,
                    check: CHECK_INTEGRITY.into(),
                });
                if let Some(v) = schema_version(&at) {
                    done.checks.push(format!("db {}: schema {v}", c.path));
                }
            }
            ComponentKind::Files | ComponentKind::Secret | ComponentKind::Config => {
                let compared = plan.repo.begin_restore().and_then(|s| {
                    let mut reader = s.reader();
                    compare_tree(s.repository(), &mut reader, c, &at)
                });
                let t = compared?;
                done.checks.push(format!(
                    "{} {}: {} entries and {} read back, equal to the point",
                    c.kind.as_str(),
                    c.path,
                    t.entries,
                    crate::human::size(t.bytes)
                ));
            }
            ComponentKind::Postgres => {
                if let Some(body) = &c.postgres {
                    done.checks.push(format!(
                        "postgres {}: restored into {} and checked, dropped after the drill",
                        body.database,
                        db_name_with_suffix(&body.database, suffix)
                    ));
                }
            }
        }
    }
    let lines = plan.smoke()?;
    done.checks.extend(lines.iter().map(|l| match &target {
        RestoreTarget::Into(dir) => l.replace(&dir.display().to_string(), ""),
        RestoreTarget::InPlace => l.clone(),
    }));
    Ok(())
}

/// The schema version a restored SQLite database says it has: `PRAGMA user_version` and, where
/// the app's migration tool keeps one, its newest migration (Prisma, sqlx, Rails-style
/// `schema_migrations`). `None` when the file cannot be opened (the checks before would have
/// failed).
fn schema_version(path: &Path) -> Option<String> {
    use rusqlite::{Connection, OpenFlags};
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .ok()?;
    let user: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).ok()?;
    let mut out = format!("user_version {user}");
    for (table, column) in [
        ("_prisma_migrations", "migration_name"),
        ("_sqlx_migrations", "version"),
        ("schema_migrations", "version"),
    ] {
        let exists: bool = c
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap_or(false);
        if exists {
            let newest: Option<String> = c
                .query_row(
                    &format!("SELECT CAST(max(\"{column}\") AS TEXT) FROM \"{table}\""),
                    [],
                    |r| r.get(0),
                )
                .ok()
                .flatten();
            if let Some(v) = newest {
                out.push_str(&format!(", {table} {}", crate::human::one_line(&v)));
            }
        }
    }
    Some(out)
}
