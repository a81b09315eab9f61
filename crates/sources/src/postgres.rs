//! PostgreSQL databases: `pg_dump --format=custom` in one exported snapshot, streamed into the
//! repository; restore into a new database or in place by a swap, verified by row counts.
//!
//! Capture (`docs/FORMAT.md` §8, PostgresBody):
//! 1. `psql` opens a `REPEATABLE READ` transaction and exports its snapshot; in that same
//!    snapshot it reads the server version, database size, encoding, owner, and the exact row
//!    count of every table;
//! 2. `pg_dump --snapshot=<that snapshot> --format=custom --compress=0` streams to stdout,
//!    which the content-defined chunker cuts and deduplicates (uncompressed, so an unchanged
//!    table gives the same bytes, hence the same chunks, every day; lifeboat compresses);
//! 3. a dump that exits non-zero, is killed, or does not start with `PGDMP` is an error and
//!    never becomes a point.
//!
//! The row counts come from the dump's own snapshot, so a restore must match them exactly,
//! however much the app wrote during the backup.
//!
//! Restore: the whole dump is fetched and authenticated into a private temporary file first
//! (nothing reaches PostgreSQL before every chunk is authenticated), then `pg_restore
//! --exit-on-error [--jobs N]` loads a new database, whose row counts are compared with the
//! point. In place, the new database is built beside the original under a temporary name and
//! swapped in by two renames only after it verified; the original is dropped last.
mod client;
mod script;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use client::{ident, literal, spawn, tool_error, Session, StderrTail};
pub use client::{url_database, url_without_password, PgSource};
use lifeboat_core::{
    load_tree, ChunkReader, ChunkWriter, Component, ComponentKind, EntryKind, Error, ErrorKind,
    PostgresBody, Progress, Result, TreeBody, TreeEntry,
};

use crate::app::SourceSpec;
use crate::source::{
    no_body, Capture, RestoreContext, RestoreTarget, RestoredComponent, Source, SourceKind,
};

/// Name of the dump file in a postgres component's tree.
pub const DUMP_FILE: &str = "dump";
/// Name of the roles/tablespaces script in a postgres component's tree.
pub const GLOBALS_FILE: &str = "globals.sql";

/// Row counts of every ordinary table outside the system schemas that belongs to no
/// extension (pg_dump skips extension tables' data), as `SELECT 'name', count(*)` lines run
/// by `\gexec`.
const COUNT_TABLES: &str = r"SELECT format('SELECT %L, count(*) FROM %I.%I', format('%I.%I', n.nspname, c.relname), n.nspname, c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                   AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1 \gexec";

fn parse_counts(rows: client::Rows) -> Result<BTreeMap<String, u64>> {
    rows.into_iter()
        .filter(|r| !(r.len() == 1 && r[0].is_empty()))
        .map(|r| match r.as_slice() {
            [name, n] => n
                .parse()
                .map(|n| (name.clone(), n))
                .map_err(|_| Error::new(ErrorKind::Source, format!("bad row count {n:?}"))),
            _ => Err(Error::new(
                ErrorKind::Source,
                format!("psql printed an unexpected row {r:?}"),
            )),
        })
        .collect()
}

fn field<T: std::str::FromStr>(row: &[String], i: usize, what: &str) -> Result<T> {
    row.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| {
        Error::new(
            ErrorKind::Source,
            format!("psql did not print the {what} (row {row:?})"),
        )
    })
}

/// Counts bytes, checks the archive magic and reports progress while the chunker reads.
struct DumpStream<'a, R> {
    inner: R,
    bytes: u64,
    head: Vec<u8>,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for DumpStream<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.head.len() < 5 {
            let take = (5 - self.head.len()).min(n);
            self.head.extend_from_slice(&buf[..take]);
        }
        self.bytes += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// Kills a child process if it is still running when the capture gives up.
struct ChildGuard(Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn file_entry(path: &str, size: u64, chunks: Vec<lifeboat_core::ChunkId>) -> TreeEntry {
    TreeEntry {
        path: path.to_string(),
        kind: EntryKind::File,
        mode: 0o600,
        uid: 0,
        gid: 0,
        mtime_ns: jiff::Timestamp::now().as_nanosecond() as i64,
        size,
        chunks,
        target: None,
        ctime_ns: None,
        inode: None,
    }
}

/// Dumps database `src.database` into the repository. Fails, leaving no component, if
/// `pg_dump` is older than the server, fails, or is killed.
pub fn capture(
    writer: &mut ChunkWriter<'_>,
    src: &PgSource,
    progress: &dyn Progress,
) -> Result<Component> {
    if src.database.is_empty() {
        return Err(
            Error::new(ErrorKind::Usage, "a postgres source names no database").with_hint(
                "set `database = \"NAME\"` (or `databases = [...]`), or put it in the URL",
            ),
        );
    }
    let dump_major = src.tool_major("pg_dump")?;
    let mut session = Session::open(src, &src.database)?;
    // The session stays idle in its transaction while pg_dump runs: no idle or statement
    // timeout may end it; its row counts wait at most 10 minutes for a lock (an ALTER TABLE
    // queued between them and pg_dump's locks must not hang the backup for ever).
    let rows = session.query(
        "SET idle_in_transaction_session_timeout = 0; SET statement_timeout = 0;
         SET lock_timeout = '10min';
         BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
         SELECT pg_export_snapshot(), current_setting('server_version'),
                current_setting('server_version_num'), pg_database_size(d.oid),
                pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
                pg_get_userbyid(d.datdba)
           FROM pg_database d WHERE d.datname = current_database();",
    )?;
    let row = rows.first().cloned().unwrap_or_default();
    let snapshot: String = field(&row, 0, "snapshot")?;
    let server_version: String = field(&row, 1, "server version")?;
    let server_version_num: u32 = field(&row, 2, "server version number")?;
    let server_major = server_version_num / 10_000;
    if dump_major < server_major {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "pg_dump {dump_major} is older than the server of {} (PostgreSQL {server_version}); an older pg_dump cannot dump a newer server",
                src.label()
            ),
        )
        .with_hint(format!(
            "install pg_dump {server_major} or newer (Debian: postgresql-client-{server_major}) and set bin_dir to it, or run the container's own pg_dump through `command`"
        )));
    }
    let mut body = PostgresBody {
        database: src.database.clone(),
        server_version,
        server_version_num,
        pg_dump_major: dump_major,
        database_size: field(&row, 3, "database size")?,
        encoding: field(&row, 4, "encoding")?,
        collate: field(&row, 5, "collation")?,
        ctype: field(&row, 6, "ctype")?,
        owner: field(&row, 7, "owner")?,
        schema_only: src.schema_only,
        globals: false,
        row_counts: BTreeMap::new(),
    };
    body.row_counts = parse_counts(session.query(COUNT_TABLES)?)?;

    progress.start(&format!("pg_dump {}", src.database), 0);
    let mut cmd = src.command("pg_dump")?;
    cmd.args([
        "--no-password",
        "--format=custom",
        "--compress=0",
        "--lock-wait-timeout=10min",
    ])
    .arg(format!("--snapshot={snapshot}"))
    .arg(format!("--dbname={}", src.conninfo(&src.database)));
    if src.schema_only {
        cmd.arg("--schema-only");
    }
    let mut child = spawn(cmd, "pg_dump", src, Stdio::null())?;
    let err = StderrTail::start(&mut child);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut guard = ChildGuard(Some(child));
    let mut stream = DumpStream {
        inner: stdout,
        bytes: 0,
        head: Vec::new(),
        progress,
    };
    let (chunks, _) = writer
        .store_stream(&mut stream)
        .map_err(|e| e.context(format!("store the dump of {}", src.label())))?;
    let status = guard
        .0
        .take()
        .expect("child")
        .wait()
        .map_err(|e| Error::io("wait for pg_dump", e))?;
    let stderr = err.finish();
    progress.finish();
    if !status.success() {
        return Err(tool_error(src, "pg_dump", &status.to_string(), &stderr)
            .context("the dump did not complete; no point was written"));
    }
    if stream.head != b"PGDMP" {
        return Err(Error::new(
            ErrorKind::Source,
            format!(
                "pg_dump for {} printed {} bytes that are not a custom-format archive",
                src.label(),
                stream.bytes
            ),
        )
        .with_hint("check the wrapper command: it must pass pg_dump's output through unchanged"));
    }
    let dump_bytes = stream.bytes;
    session.query("COMMIT;")?;
    session.close()?;
    let mut entries = vec![
        TreeEntry {
            kind: EntryKind::Dir,
            mode: 0o700,
            size: 0,
            ..file_entry("", 0, Vec::new())
        },
        file_entry(DUMP_FILE, dump_bytes, chunks),
    ];
    if src.globals {
        let mut cmd = src.command("pg_dumpall")?;
        cmd.args(["--no-password", "--globals-only"])
            .arg(format!("--dbname={}", src.conninfo(&src.database)))
            .arg(format!("--database={}", src.database));
        let out = spawn(cmd, "pg_dumpall", src, Stdio::null())?
            .wait_with_output()
            .map_err(|e| Error::io("run pg_dumpall", e))?;
        if !out.status.success() {
            return Err(tool_error(
                src,
                "pg_dumpall --globals-only",
                &out.status.to_string(),
                &String::from_utf8_lossy(&out.stderr),
            ));
        }
        let ids = writer.store_bytes(&out.stdout)?;
        entries.push(file_entry(GLOBALS_FILE, out.stdout.len() as u64, ids));
        body.globals = true;
    }
    let files = entries.len() as u64 - 1;
    let encoded = serde_json::to_vec(&entries).expect("tree serialises");
    let ids = writer.store_bytes(&encoded)?;
    tracing::info!(database = %src.database, dump_bytes, tables = body.row_counts.len(), "dumped");
    Ok(Component {
        kind: ComponentKind::Postgres,
        path: src.label(),
        size: dump_bytes,
        sqlite: None,
        tree: Some(TreeBody {
            entries: ids,
            files,
            dirs: 1,
            symlinks: 0,
        }),
        postgres: Some(body),
    })
}

/// Where a restored database goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTarget {
    /// A new database of this name (refused if it exists).
    New(String),
    /// Replace the original database (by a swap after verification).
    Replace,
}

/// How to restore a database.
#[derive(Debug, Clone)]
pub struct PgRestoreOptions {
    /// New database or in place.
    pub target: PgTarget,
    /// `pg_restore --jobs` (1 = no parallelism; always 1 through a wrapper, which reads stdin).
    pub jobs: u32,
    /// Only these tables (`name` or `schema.name`); only into a new database.
    pub tables: Vec<String>,
    /// Run the point's `globals.sql` (roles, tablespaces) first; "already exists" is a warning.
    pub globals: bool,
    /// `pg_restore --no-owner --no-privileges`: objects owned by the restoring user.
    pub no_owner: bool,
    /// End other sessions of the original database before the swap (else refuse).
    pub terminate: bool,
}

/// What a database restore did.
#[derive(Debug, Clone)]
pub struct PgRestoreReport {
    /// Database written.
    pub database: String,
    /// Dump bytes restored.
    pub bytes: u64,
    /// Tables whose row counts were compared.
    pub tables_checked: usize,
    /// Things worth knowing (owner role missing, globals already present).
    pub warnings: Vec<String>,
}

fn maintenance_db(db: &str) -> &'static str {
    if db == "postgres" {
        "template1"
    } else {
        "postgres"
    }
}

/// Whether database `db` exists on `conn`'s server.
pub fn database_exists(conn: &PgSource, db: &str) -> Result<bool> {
    let rows = conn.psql(
        maintenance_db(db),
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {};",
            literal(db)
        ),
    )?;
    Ok(rows.first().and_then(|r| r.first()).map(String::as_str) == Some("1"))
}

/// Drops database `db` on `conn`'s server if it exists (a drill's scratch database).
pub fn drop_database(conn: &PgSource, db: &str) -> Result<()> {
    conn.psql(
        maintenance_db(db),
        &format!("DROP DATABASE IF EXISTS {};", ident(db)),
    )
    .map(|_| ())
    .map_err(|e| e.context(format!("drop database {db}")))
}

/// Client sessions of `db` other than ours. Autovacuum workers are not counted: the server
/// cancels them itself when a database is renamed or dropped (they once made an in-place
/// restore refuse for no reason).
fn other_sessions(conn: &PgSource, db: &str) -> Result<u64> {
    let rows = conn.psql(
        maintenance_db(db),
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid() AND backend_type = 'client backend';",
            literal(db)
        ),
    )?;
    field(
        rows.first().map_or(&[][..], |r| r.as_slice()),
        0,
        "session count",
    )
}

/// The name a restore writes to; refusals (name taken, sessions open, pg_restore too old)
/// before anything is fetched or created.
pub fn preflight(conn: &PgSource, body: &PostgresBody, opts: &PgRestoreOptions) -> Result<()> {
    if let Some(t) = opts
        .tables
        .iter()
        .find(|t| !body.row_counts.keys().any(|name| table_matches(name, t)))
    {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "--table {t}: database {} has no such table in this point",
                body.database
            ),
        )
        .with_hint(format!(
            "its tables: {}",
            body.row_counts
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let restore_major = conn.tool_major("pg_restore")?;
    if restore_major < body.pg_dump_major {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "pg_restore {restore_major} cannot read a dump written by pg_dump {}",
                body.pg_dump_major
            ),
        )
        .with_hint(format!(
            "install PostgreSQL {} client programs or newer and set bin_dir",
            body.pg_dump_major
        )));
    }
    match &opts.target {
        PgTarget::New(name) => {
            if name.is_empty() || name.len() > 63 {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("{name:?} is not a usable database name (1 to 63 bytes)"),
                ));
            }
            if database_exists(conn, name)? {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!("database {name} already exists on {}", conn.label()),
                )
                .with_hint("choose another name with --pg-database, or drop it first"));
            }
        }
        PgTarget::Replace => {
            if !opts.tables.is_empty() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    "--table restores into a new database only",
                )
                .with_hint("add --pg-database NAME (or --to DIR), then copy the rows you need"));
            }
            if !opts.terminate && database_exists(conn, &body.database)? {
                let n = other_sessions(conn, &body.database)?;
                if n > 0 {
                    return Err(refuse_sessions(&body.database, n));
                }
            }
        }
    }
    Ok(())
}

fn refuse_sessions(db: &str, n: u64) -> Error {
    Error::new(
        ErrorKind::Refused,
        format!("{n} other session(s) are connected to database {db}; nothing was changed"),
    )
    .with_hint("stop the app first, or pass --pg-terminate (or set terminate_connections = true) to end them")
}

/// Deletes the temporary dump file however the restore ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A private temporary file in `$TMPDIR`, created 0600.
fn temp_file(stem: &str) -> Result<(File, TempFile)> {
    let dir = std::env::temp_dir();
    for _ in 0..16 {
        let path = crate::util::temp_path(&dir.join(format!("lifeboat-{stem}.dump")));
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => return Ok((f, TempFile(path))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::io(path.display(), e)
                    .with_hint("set TMPDIR to a directory with room for the dump"))
            }
        }
    }
    Err(Error::new(ErrorKind::Io, "no free temporary file name"))
}

/// Restores a postgres component. See the module docs for the order of steps.
pub fn restore(
    reader: &mut ChunkReader<'_>,
    component: &Component,
    conn: &PgSource,
    opts: &PgRestoreOptions,
    progress: &dyn Progress,
) -> Result<PgRestoreReport> {
    let (body, tree) = match (&component.postgres, &component.tree) {
        (Some(b), Some(t)) => (b, t),
        _ => {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("postgres component {} has no dump", component.path),
            ))
        }
    };
    let entries = load_tree(reader, tree)?;
    let find = |name: &str| entries.iter().find(|e| e.path == name);
    let globals = match find(GLOBALS_FILE) {
        Some(g) if opts.globals => Some(reader.read_bytes(&g.chunks)?),
        _ => None,
    };
    if let Some((line, text)) = globals.as_deref().and_then(script::meta_command) {
        // Before psql sees it: psql would run it (`\!` runs a shell).
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "postgres component {}: {GLOBALS_FILE} line {line} holds a psql meta-command \
                 or what could hide one from this check (a backslash outside quotes and comments, a NUL \
                 byte, bytes that are not UTF-8, a client_encoding change): {text}; refusing to run it",
                component.path
            ),
        )
        .with_hint("pg_dumpall --globals-only writes no such command: this point was written by hand or by a hostile host; restore without --pg-globals"));
    }
    preflight(conn, body, opts)?;
    let dump = find(DUMP_FILE).ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("postgres component {} lists no dump file", component.path),
        )
    })?;

    // 1. Every chunk authenticated into a private file before PostgreSQL sees a byte.
    progress.start(&format!("fetching dump of {}", body.database), dump.size);
    let (file, temp) = temp_file(&body.database)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let n = reader.read_stream(&dump.chunks, &mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(temp.0.display(), e.into_error()))?;
    drop(file);
    progress.inc(n);
    progress.finish();
    if n != dump.size {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "dump of {}: restored {n} bytes, the point recorded {}",
                body.database, dump.size
            ),
        ));
    }
    let mut warnings = Vec::new();
    let work = match &opts.target {
        PgTarget::New(name) => name.clone(),
        PgTarget::Replace => temp_db_name(&body.database, "lbnew"),
    };
    let maint = maintenance_db(&body.database);
    if let Some(sql) = globals {
        warnings.extend(run_globals(conn, maint, &sql)?);
    }
    conn.psql(
        maint,
        &format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {};",
            ident(&work),
            literal(&body.encoding),
            literal(&body.collate),
            literal(&body.ctype)
        ),
    )
    .map_err(|e| e.context(format!("create database {work}")))?;
    let drop_work = |why: &str| {
        let dropped = conn
            .psql(maint, &format!("DROP DATABASE IF EXISTS {};", ident(&work)))
            .is_ok();
        if dropped {
            format!("{why}; the new database {work} was dropped, nothing else was changed")
        } else {
            format!("{why}; the new database {work} could not be dropped, drop it by hand")
        }
    };
    let loaded = (|| -> Result<usize> {
        if !opts.no_owner {
            let has_owner = conn.psql(
                maint,
                &format!(
                    "SELECT count(*) FROM pg_roles WHERE rolname = {};",
                    literal(&body.owner)
                ),
            )?;
            if has_owner
                .first()
                .and_then(|r| r.first())
                .map(String::as_str)
                == Some("1")
            {
                conn.psql(
                    maint,
                    &format!(
                        "ALTER DATABASE {} OWNER TO {};",
                        ident(&work),
                        ident(&body.owner)
                    ),
                )?;
            } else {
                warnings.push(format!(
                    "role {} (owner of {}) does not exist here; the database is owned by the restoring user",
                    body.owner, body.database
                ));
            }
        }
        progress.start(&format!("pg_restore into {work}"), 0);
        run_pg_restore(conn, &work, &temp.0, opts)?;
        progress.finish();
        verify_counts(conn, &work, body, &opts.tables)
    })();
    let tables_checked = match loaded {
        Ok(n) => n,
        Err(e) => {
            let msg = drop_work("restore failed");
            return Err(e.context(msg));
        }
    };
    let database = match &opts.target {
        PgTarget::New(name) => name.clone(),
        PgTarget::Replace => {
            if let Err(e) = swap_in(conn, &work, &body.database, opts.terminate, &mut warnings) {
                // Drop the new copy only if the original is back under its name.
                if database_exists(conn, &body.database).unwrap_or(false) {
                    let msg = drop_work("the verified database could not be swapped in");
                    return Err(e.context(msg));
                }
                return Err(e);
            }
            body.database.clone()
        }
    };
    Ok(PgRestoreReport {
        database,
        bytes: n,
        tables_checked,
        warnings,
    })
}

fn run_globals(conn: &PgSource, maint: &str, sql: &[u8]) -> Result<Vec<String>> {
    let mut cmd = conn.command("psql")?;
    cmd.args(["-X", "-q", "--no-password", "-f", "-"])
        .arg(format!("--dbname={}", conn.conninfo(maint)))
        // The script was checked as UTF-8 (`script::meta_command`): psql must read it so.
        .env("PGCLIENTENCODING", "UTF8");
    let mut child = spawn(cmd, "psql", conn, Stdio::piped())?;
    let err = StderrTail::start(&mut child);
    let mut stdin = child.stdin.take().expect("piped stdin");
    let wrote = stdin.write_all(sql);
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("run psql for globals", e))?;
    wrote.map_err(|e| Error::io("send globals.sql to psql", e))?;
    let stderr = err.finish();
    if !out.status.success() {
        return Err(tool_error(
            conn,
            "psql (globals.sql)",
            &out.status.to_string(),
            &stderr,
        ));
    }
    Ok(stderr
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(|l| format!("globals.sql: {}", l.trim()))
        .collect())
}

fn run_pg_restore(conn: &PgSource, db: &str, dump: &Path, opts: &PgRestoreOptions) -> Result<()> {
    let mut cmd = conn.command("pg_restore")?;
    cmd.args(["--no-password", "--exit-on-error"])
        .arg(format!("--dbname={}", conn.conninfo(db)));
    if opts.no_owner {
        cmd.args(["--no-owner", "--no-privileges"]);
    }
    for t in &opts.tables {
        match t.split_once('.') {
            Some((schema, table)) => cmd
                .arg(format!("--schema={schema}"))
                .arg(format!("--table={table}")),
            None => cmd.arg(format!("--table={t}")),
        };
    }
    // A wrapped pg_restore (in a container) cannot open our file: it reads stdin, which
    // rules out --jobs. Unwrapped, it reads the file, in parallel.
    let stdin = if conn.wrapper.is_empty() {
        if opts.jobs > 1 {
            cmd.arg(format!("--jobs={}", opts.jobs));
        }
        cmd.arg(dump);
        Stdio::null()
    } else {
        if opts.jobs > 1 {
            tracing::warn!("pg_restore runs through a wrapper and reads stdin: --jobs is ignored");
        }
        Stdio::from(File::open(dump).map_err(|e| Error::io(dump.display(), e))?)
    };
    let child = spawn(cmd, "pg_restore", conn, stdin)?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io("wait for pg_restore", e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let e = tool_error(conn, "pg_restore", &out.status.to_string(), &stderr)
            .with_kind(ErrorKind::Other);
        let e = if stderr.contains("role") && stderr.contains("does not exist") {
            e.with_hint("a role the dump names is missing here: restore with --pg-globals (roles from the point), or --pg-no-owner")
        } else {
            e
        };
        return Err(e);
    }
    Ok(())
}

/// Whether recorded table `name` (`schema.table`, quoted where needed) is the one `--table t`
/// names (`table` or `schema.table`).
fn table_matches(name: &str, t: &str) -> bool {
    let bare = |s: &str| s.replace('"', "");
    let n = bare(name);
    n == bare(t) || n.rsplit_once('.').is_some_and(|(_, tbl)| tbl == bare(t))
}

/// Compares row counts of the restored database with the point; returns the tables checked.
fn verify_counts(conn: &PgSource, db: &str, body: &PostgresBody, only: &[String]) -> Result<usize> {
    let selected = |name: &str| only.is_empty() || only.iter().any(|t| table_matches(name, t));
    let expected: BTreeMap<&String, &u64> = body
        .row_counts
        .iter()
        .filter(|(name, _)| selected(name))
        .collect();
    if expected.is_empty() {
        return Ok(0);
    }
    let sql: String = expected
        .keys()
        .map(|name| format!("SELECT {}, count(*) FROM {name};\n", literal(name)))
        .collect();
    let got = parse_counts(conn.psql(db, &sql).map_err(|e| {
        e.with_kind(ErrorKind::Verify)
            .context("count rows of the restored database (a table of the point is missing?)")
    })?)?;
    let mut diffs = Vec::new();
    for (name, want) in &expected {
        let have = got.get(*name).copied();
        if !body.schema_only && have != Some(**want) {
            diffs.push(format!(
                "{name}: {} rows, the point recorded {want}",
                have.map_or("no".to_string(), |h| h.to_string())
            ));
        }
    }
    if !diffs.is_empty() {
        return Err(Error::new(
            ErrorKind::Verify,
            format!(
                "restored database {db} differs from the point: {}",
                diffs.join("; ")
            ),
        ));
    }
    Ok(expected.len())
}

/// `<db>_<tag>` within PostgreSQL's 63-byte identifier limit (the name is cut on a character
/// boundary, never the suffix).
pub fn db_name_with_suffix(db: &str, suffix: &str) -> String {
    let mut end = db.len().min(63usize.saturating_sub(suffix.len()));
    while !db.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &db[..end])
}

/// `<db>_<tag>_<8 hex>` within PostgreSQL's 63-byte identifier limit (it would silently cut a
/// longer name, and two cut names could collide).
fn temp_db_name(db: &str, tag: &str) -> String {
    db_name_with_suffix(db, &format!("_{tag}_{}", crate::util::random_hex(4)))
}

/// Puts the verified database `work` in place of `original`: no new sessions on either, other
/// sessions of the original ended (or refused), rename original away, rename work in, drop
/// the original. Every failure path reopens the original under its own name, or says exactly
/// where both databases are.
fn swap_in(
    conn: &PgSource,
    work: &str,
    original: &str,
    terminate: bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let maint = maintenance_db(original);
    let sql = |q: String| conn.psql(maint, &q).map(|_| ());
    let allow = |db: &str, yes: bool| {
        sql(format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {yes};",
            ident(db)
        ))
    };
    // Nobody may connect to the new database before it has its final name (a session on it
    // would make the rename fail after the original was moved away).
    allow(work, false)?;
    if !database_exists(conn, original)? {
        sql(format!(
            "ALTER DATABASE {} RENAME TO {};",
            ident(work),
            ident(original)
        ))?;
        return allow(original, true);
    }
    let old = temp_db_name(original, "lbold");
    allow(original, false)?;
    // From here on, any early return must give the original back its connections.
    let moved_away = (|| -> Result<()> {
        for attempt in 0..50 {
            if terminate {
                sql(format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {} AND pid <> pg_backend_pid() AND backend_type = 'client backend';",
                    literal(original)
                ))?;
            } else {
                let n = other_sessions(conn, original)?;
                if n > 0 {
                    return Err(refuse_sessions(original, n));
                }
            }
            match sql(format!(
                "ALTER DATABASE {} RENAME TO {};",
                ident(original),
                ident(&old)
            )) {
                Ok(()) => return Ok(()),
                // Ended sessions take a moment to go away.
                Err(e) if attempt < 49 && e.to_string().contains("being accessed") => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::new(
            ErrorKind::Refused,
            format!("sessions of {original} did not end within 5 s"),
        ))
    })();
    if let Err(e) = moved_away {
        return Err(match allow(original, true) {
            Ok(()) => e,
            Err(re) => e.context(format!(
                "DATABASE {original} IS CLOSED TO CONNECTIONS (reopening failed: {re}); run ALTER DATABASE \"{original}\" WITH ALLOW_CONNECTIONS true"
            )),
        });
    }
    if let Err(e) = sql(format!(
        "ALTER DATABASE {} RENAME TO {};",
        ident(work),
        ident(original)
    )) {
        // Put the original back under its name before reporting.
        let back = sql(format!(
            "ALTER DATABASE {} RENAME TO {};",
            ident(&old),
            ident(original)
        ))
        .and_then(|_| allow(original, true));
        return Err(match back {
            Ok(()) => e,
            Err(be) => Error::new(
                ErrorKind::Other,
                format!(
                    "swap failed half way: the original database is now named {old} (closed to connections) and the verified restore is {work}; {e}; putting the original back failed: {be}"
                ),
            )
            .with_hint(format!(
                "rename one of them to {original} by hand and run ALTER DATABASE ... WITH ALLOW_CONNECTIONS true on it; nothing was dropped"
            )),
        });
    }
    allow(original, true)?;
    if let Err(e) = sql(format!("DROP DATABASE {};", ident(&old))) {
        warnings.push(format!(
            "the replaced database was kept as {old} (drop failed: {e}); drop it when you no longer need it"
        ));
    }
    Ok(())
}

// ---- The `Source` and `SourceKind` implementations ----------------------------------------

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
    /// Suffix of the new databases of a restore elsewhere (`--to`), instead of
    /// `_restored_<point time>`: a drill's own names, which it drops afterwards.
    pub new_suffix: Option<String>,
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
            new_suffix: None,
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
fn pg_plan(c: &Component, cx: &RestoreContext<'_>) -> Result<(PgSource, PgRestoreOptions)> {
    let (opts, point_time) = (cx.options, cx.point_time);
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
        (None, RestoreTarget::Into(_)) => PgTarget::New(db_name_with_suffix(
            &body.database,
            &s.new_suffix
                .clone()
                .unwrap_or_else(|| format!("_restored_{}", point_time.strftime("%Y%m%d_%H%M%S"))),
        )),
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

/// A configured PostgreSQL database: one database of a `[[app.NAME.postgres]]` table.
#[derive(Clone)]
pub struct PostgresSource {
    conn: PgSource,
}

/// Written by hand: the URL may hold a password, the label never does.
impl std::fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSource")
            .field("label", &self.conn.label())
            .finish_non_exhaustive()
    }
}

impl PostgresSource {
    /// The database `conn.database` reached through `conn`.
    pub fn new(conn: PgSource) -> PostgresSource {
        PostgresSource { conn }
    }
}

impl Source for PostgresSource {
    fn kind(&self) -> ComponentKind {
        ComponentKind::Postgres
    }

    fn describe(&self) -> String {
        self.conn.label()
    }

    /// A dump is always whole: no previous component is used.
    fn previous_match(&self, _c: &Component) -> bool {
        false
    }

    fn capture(
        &self,
        cx: &mut Capture<'_, '_>,
        _previous: Option<&Component>,
        progress: &dyn Progress,
    ) -> Result<Component> {
        capture(cx.writer, &self.conn, progress)
    }
}

/// Restores [`ComponentKind::Postgres`] components (see the module docs).
pub struct PostgresKind;

impl SourceKind for PostgresKind {
    fn kinds(&self) -> &'static [ComponentKind] {
        &[ComponentKind::Postgres]
    }

    fn check_selection(&self, cx: &RestoreContext<'_>) -> Result<()> {
        let databases = cx
            .selected
            .iter()
            .filter(|c| c.kind == ComponentKind::Postgres)
            .count();
        if cx.options.postgres.database.is_some() && databases > 1 {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("--pg-database names one database, the point has {databases}"),
            )
            .with_hint("restore them one at a time with --only postgres and a different --pg-database each, or use --to DIR for automatic names"));
        }
        Ok(())
    }

    fn preflight(&self, c: &Component, cx: &RestoreContext<'_>) -> Result<()> {
        let (conn, pg) = pg_plan(c, cx)?;
        preflight(&conn, c.postgres.as_ref().expect("planned"), &pg)
    }

    /// The live database, dumped whole (no roles, not schema-only) if it exists; a database
    /// that is gone has nothing to lose.
    fn current_state(&self, c: &Component, cx: &RestoreContext<'_>) -> Result<Vec<SourceSpec>> {
        let body = c.postgres.as_ref().ok_or_else(|| no_body(c))?;
        let mut conn = cx.options.postgres.connection_for(&body.database);
        if !database_exists(&conn, &body.database)? {
            return Ok(Vec::new());
        }
        conn.globals = false;
        conn.schema_only = false;
        Ok(vec![SourceSpec::postgres(conn)])
    }

    fn restore(
        &self,
        c: &Component,
        cx: &RestoreContext<'_>,
        reader: &mut ChunkReader<'_>,
        progress: &dyn Progress,
    ) -> Result<RestoredComponent> {
        let (conn, pg) = pg_plan(c, cx)?;
        let r = restore(reader, c, &conn, &pg, progress)?;
        Ok(RestoredComponent {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lifeboat_core::{KdfParams, NoProgress, Repository, Storage};
    use lifeboat_storage::MemoryStorage;

    use super::*;

    /// A point's `globals.sql` with `\!` is refused before psql runs (the server named is not
    /// reachable: before the fix the error came from psql failing to connect).
    #[test]
    fn hostile_globals_never_reach_psql() {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let mut repo = Repository::init(storage, b"pw", kdf).unwrap();
        let marker = tempfile::tempdir().unwrap();
        let touched = marker.path().join("pwned");
        let sql = format!("SET x = 1;\n\\! touch {}\n", touched.display());
        let mut s = repo.begin_backup().unwrap();
        let w = s.writer();
        let dump = b"PGDMP not really".to_vec();
        let entries = vec![
            file_entry(DUMP_FILE, dump.len() as u64, w.store_bytes(&dump).unwrap()),
            file_entry(
                GLOBALS_FILE,
                sql.len() as u64,
                w.store_bytes(sql.as_bytes()).unwrap(),
            ),
        ];
        let tree = TreeBody {
            entries: w
                .store_bytes(&serde_json::to_vec(&entries).unwrap())
                .unwrap(),
            files: 2,
            dirs: 0,
            symlinks: 0,
        };
        let component = Component {
            kind: ComponentKind::Postgres,
            path: "postgresql://nobody@127.0.0.1:1/app".into(),
            size: 0,
            sqlite: None,
            tree: Some(tree),
            postgres: Some(PostgresBody {
                database: "app".into(),
                server_version: "15.0".into(),
                server_version_num: 150000,
                pg_dump_major: 9,
                database_size: 0,
                encoding: "UTF8".into(),
                collate: "C".into(),
                ctype: "C".into(),
                owner: "app".into(),
                schema_only: false,
                globals: true,
                row_counts: Default::default(),
            }),
        };
        let point = |_: &lifeboat_core::WriteSummary| lifeboat_core::Point {
            app: "t".into(),
            time: "2026-01-01T00:00:00Z".into(),
            tags: Vec::new(),
            hostname: "evil".into(),
            lifeboat_version: "0".into(),
            components: vec![component.clone()],
            stats: Default::default(),
            definition: None,
        };
        s.commit(point).unwrap();
        let conn = PgSource {
            url: Some("postgresql://nobody@127.0.0.1:1/app".into()),
            ..PgSource::default()
        };
        let opts = PgRestoreOptions {
            target: PgTarget::New("restored".into()),
            jobs: 1,
            tables: Vec::new(),
            globals: true,
            no_owner: false,
            terminate: false,
        };
        let session = repo.begin_restore().unwrap();
        let mut reader = session.reader();
        let e = restore(&mut reader, &component, &conn, &opts, &NoProgress).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(
            e.to_string()
                .contains("globals.sql line 2 holds a psql meta-command"),
            "{e}"
        );
        assert!(!touched.exists());
    }
}
