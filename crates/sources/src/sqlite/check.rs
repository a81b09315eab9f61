//! SQLite's own check of a restored database, spread over the cores.
//!
//! `PRAGMA integrity_check` runs on one thread and costs ~10 s per GiB on the reference
//! machine, most of it matching every index entry to its row. SQLite can check one table at a
//! time (`PRAGMA integrity_check(T)`: T's b-tree and its indexes, every row against every
//! index, the entry count of each index), so the tables are checked on parallel read-only
//! connections. A per-table check is *partial*: SQLite skips the freelist, the "every page is
//! used" accounting and the auto-vacuum pointer map, and each partial run only sees its own
//! trees, so a page claimed by two tables would pass. One more connection runs `PRAGMA
//! quick_check` over the whole file, which does exactly those whole-file checks (every b-tree,
//! page accounting, freelist, pointer map, row constraints) but no index matching. Together
//! they are `integrity_check`: the whole-file structure from `quick_check`, the index content
//! from the per-table runs (`docs/ARCHITECTURE.md`, "Restore verification").
//!
//! A restore's staged file is opened with `immutable=1`, so
//! no connection creates a side file or takes a lock, and they share nothing but the OS page
//! cache.
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use lifeboat_core::{Error, ErrorKind, Result, SqliteBody};
use rusqlite::{Connection, InterruptHandle, OpenFlags};

use super::Verify;

/// How [`check_db`] opens the database.
#[derive(Clone, Copy)]
pub(crate) enum Open {
    /// By path, read-write (a database the operator names; SQLite may create its `-wal`/`-shm`).
    ReadWrite,
    /// A restore's staged file: read-only, `immutable=1` (no locks, no side files created),
    /// and no symlink followed anywhere in the path.
    ImmutableNoFollow,
}

/// One unit of work on one connection.
#[derive(Debug)]
enum Task {
    /// `PRAGMA quick_check` of the whole file.
    WholeFile,
    /// `PRAGMA integrity_check(name)` (when `index_check`) and the row count against
    /// `rows` (when the point recorded one).
    Table {
        name: String,
        index_check: bool,
        rows: Option<u64>,
    },
}

impl Task {
    fn what(&self) -> String {
        match self {
            Task::WholeFile => "quick_check".into(),
            Task::Table { name, .. } => format!("table {name}"),
        }
    }
}

/// `file:` URI of `path` with `immutable=1`: every byte outside the unreserved set and `/` is
/// percent-encoded, so a `?`, `#` or `%` in a directory name cannot add URI parameters.
pub fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

fn open_conn(path: &Path, open: Open) -> rusqlite::Result<Connection> {
    let conn = match open {
        Open::ReadWrite => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        Open::ImmutableNoFollow => Connection::open_with_flags(
            immutable_uri(path),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NOFOLLOW
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
    }?;
    // A 16 MiB page cache per connection instead of the default 2 MiB: integrity_check
    // revisits pages, and re-reading them from the OS costs more than the check itself (29 s
    // -> 10 s per GiB measured). A larger cache or mmap gained nothing measurable.
    conn.execute_batch("PRAGMA cache_size = -16384")?;
    Ok(conn)
}

/// SQL string literal (the argument of `integrity_check(...)`; a table name that is all
/// digits is read by SQLite as an error limit and checks the whole file: slower, not weaker).
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Runs one pragma that answers `ok` or rows of problems.
fn pragma_ok(conn: &Connection, sql: &str) -> rusqlite::Result<Option<String>> {
    let mut st = conn.prepare(sql)?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows != ["ok"]).then(|| rows.join("; ")))
}

/// The plan: one whole-file task and one task per table (every table of `main` that has a
/// b-tree: ordinary, `WITHOUT ROWID`, shadow tables and `sqlite_schema`), biggest first (by
/// the point's row counts times one plus the number of indexes) so the longest runs start
/// first. `Quick` has no index matching: one `quick_check` and the row counts.
fn plan(conn: &Connection, body: &SqliteBody, level: Verify) -> rusqlite::Result<Vec<Task>> {
    let mut tables: Vec<(u64, Task)> = Vec::new();
    let mut all_rows = 0u64;
    let mut st = conn.prepare(
        "SELECT name, (SELECT count(*) FROM pragma_index_list(t.name)) \
         FROM pragma_table_list AS t WHERE schema = 'main' AND type IN ('table', 'shadow')",
    )?;
    let listed = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (name, indexes) in listed {
        let rows = body.row_counts.get(&name).copied();
        let cost = rows.unwrap_or(0).saturating_mul(1 + indexes.max(0) as u64);
        all_rows = all_rows.saturating_add(rows.unwrap_or(0));
        if level == Verify::Full || rows.is_some() {
            tables.push((
                cost,
                Task::Table {
                    index_check: level == Verify::Full,
                    name,
                    rows,
                },
            ));
        }
    }
    // A recorded table the file does not have: its count fails with "no such table".
    for (name, rows) in &body.row_counts {
        let covered = tables
            .iter()
            .any(|(_, t)| matches!(t, Task::Table { name: n, .. } if n == name));
        if !covered {
            tables.push((
                0,
                Task::Table {
                    name: name.clone(),
                    index_check: false,
                    rows: Some(*rows),
                },
            ));
        }
    }
    tables.push((all_rows, Task::WholeFile));
    tables.sort_by_key(|t| std::cmp::Reverse(t.0));
    Ok(tables.into_iter().map(|(_, t)| t).collect())
}

/// Runs one task; `Ok(Some(problem))` when the database failed it.
fn run(conn: &Connection, task: &Task) -> rusqlite::Result<Option<String>> {
    match task {
        Task::WholeFile => {
            Ok(pragma_ok(conn, "PRAGMA quick_check")?.map(|p| format!("quick_check failed: {p}")))
        }
        Task::Table {
            name,
            index_check,
            rows,
        } => {
            if *index_check {
                let sql = format!("PRAGMA integrity_check({})", literal(name));
                if let Some(p) = pragma_ok(conn, &sql)? {
                    return Ok(Some(format!("integrity_check of table {name} failed: {p}")));
                }
            }
            if let Some(want) = rows {
                let got: i64 =
                    conn.query_row(&format!("SELECT count(*) FROM {}", ident(name)), [], |r| {
                        r.get(0)
                    })?;
                if got as u64 != *want {
                    return Ok(Some(format!(
                        "table {name} has {got} rows, the point recorded {want}"
                    )));
                }
            }
            Ok(None)
        }
    }
}

/// Checks `path` at `level` and its row counts against the point's record, on up to
/// `available_parallelism` read-only connections. The first problem stops the other
/// connections (interrupted) and is returned as a `Verify` error.
pub(crate) fn check_db(path: &Path, body: &SqliteBody, level: Verify, open: Open) -> Result<()> {
    let verr = |m: String| {
        Error::new(
            ErrorKind::Verify,
            format!("restored database {}: {m}", path.display()),
        )
    };
    let first = open_conn(path, open).map_err(|e| verr(format!("cannot open: {e}")))?;
    let tasks = plan(&first, body, level).map_err(|e| verr(format!("read schema: {e}")))?;
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, tasks.len().max(1));

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let interrupts: Mutex<Vec<InterruptHandle>> = Mutex::new(Vec::new());
    let fail = |m: String| {
        let mut slot = failure.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(m);
        }
        stop.store(true, Ordering::SeqCst);
        for h in interrupts.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h.interrupt();
        }
    };
    let work = |conn: Connection| {
        interrupts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn.get_interrupt_handle());
        // A failure may have come before this connection's handle was registered.
        while !stop.load(Ordering::SeqCst) {
            let Some(task) = tasks.get(next.fetch_add(1, Ordering::SeqCst)) else {
                return;
            };
            match run(&conn, task) {
                Ok(None) => {}
                Ok(Some(problem)) => return fail(problem),
                Err(e) => return fail(format!("{}: {e}", task.what())),
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(|| match open_conn(path, open) {
                Ok(conn) => work(conn),
                Err(e) => fail(format!("cannot open: {e}")),
            });
        }
        work(first);
    });
    match failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(m) => Err(verr(m)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::FileExt;

    use super::*;

    /// A WAL-mode database with two indexed tables, checkpointed and closed (so the main file
    /// holds everything), and its point-like body (row counts).
    fn make_db(dir: &Path) -> (std::path::PathBuf, SqliteBody) {
        let path = dir.join("app.db");
        let c = Connection::open(&path).unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        c.execute_batch(
            "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL);
             CREATE INDEX users_name ON users(name);
             CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE INDEX notes_body ON notes(body);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100)
               INSERT INTO users(name) SELECT printf('user%04d', i) FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100)
               INSERT INTO notes(body) SELECT printf('note%04d', i) FROM n;",
        )
        .unwrap();
        drop(c);
        let mut row_counts = BTreeMap::new();
        row_counts.insert("notes".to_string(), 100);
        row_counts.insert("users".to_string(), 100);
        let body = SqliteBody {
            page_size: 4096,
            page_count: 0,
            checksum: String::new(),
            base: Vec::new(),
            base_pages: 0,
            delta: Vec::new(),
            journal_mode: "wal".into(),
            user_version: 0,
            schema_version: None,
            row_counts,
            mode: None,
            uid: None,
            gid: None,
        };
        (path, body)
    }

    fn root_page(path: &Path, name: &str) -> u64 {
        let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        c.query_row(
            "SELECT rootpage FROM sqlite_schema WHERE name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .unwrap() as u64
    }

    /// Replaces `from` by `to` (same length) in page `pgno` of the file.
    fn patch_page(path: &Path, pgno: u64, from: &[u8], to: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap();
        let mut page = vec![0u8; 4096];
        f.read_exact_at(&mut page, (pgno - 1) * 4096).unwrap();
        let at = page
            .windows(from.len())
            .position(|w| w == from)
            .expect("bytes to patch are on the page");
        page[at..at + to.len()].copy_from_slice(to);
        f.write_all_at(&page, (pgno - 1) * 4096).unwrap();
    }

    fn check(path: &Path, body: &SqliteBody, level: Verify) -> Result<()> {
        check_db(path, body, level, Open::ImmutableNoFollow)
    }

    #[test]
    fn an_intact_database_passes_both_levels() {
        let dir = tempfile::tempdir().unwrap();
        let (path, body) = make_db(dir.path());
        check(&path, &body, Verify::Full).unwrap();
        check(&path, &body, Verify::Quick).unwrap();
    }

    #[test]
    fn an_index_entry_that_no_longer_matches_its_row_is_found_in_its_table() {
        let dir = tempfile::tempdir().unwrap();
        let (path, body) = make_db(dir.path());
        // The largest key of the notes index, changed to a larger one: the index stays in
        // order, so only matching index entries to rows (the per-table check) sees it.
        patch_page(
            &path,
            root_page(&path, "notes_body"),
            b"note0100",
            b"notz0100",
        );
        let e = check(&path, &body, Verify::Full).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Verify);
        let msg = e.to_string();
        assert!(
            msg.contains("integrity_check of table notes failed"),
            "{msg}"
        );
        assert!(msg.contains("notes_body"), "{msg}");
        // quick_check does not match index entries to rows: the damage needs the full level.
        check(&path, &body, Verify::Quick).unwrap();
    }

    #[test]
    fn a_page_no_tree_uses_is_found_by_the_whole_file_check() {
        let dir = tempfile::tempdir().unwrap();
        let (path, body) = make_db(dir.path());
        // One more page at the end, counted in the header but in no b-tree and not free:
        // every per-table check passes; only the whole-file page accounting sees it.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len + 4096).unwrap();
        let pages = (len / 4096 + 1) as u32;
        f.write_all_at(&pages.to_be_bytes(), 28).unwrap();
        drop(f);
        let msg = check(&path, &body, Verify::Full).unwrap_err().to_string();
        assert!(
            msg.contains("quick_check failed") && msg.contains("never used"),
            "{msg}"
        );
    }

    #[test]
    fn a_row_count_other_than_the_points_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (path, mut body) = make_db(dir.path());
        body.row_counts.insert("users".into(), 99);
        let msg = check(&path, &body, Verify::Full).unwrap_err().to_string();
        assert!(
            msg.contains("table users has 100 rows, the point recorded 99"),
            "{msg}"
        );
        body.row_counts.insert("users".into(), 100);
        body.row_counts.insert("gone".into(), 1);
        let msg = check(&path, &body, Verify::Quick).unwrap_err().to_string();
        assert!(msg.contains("gone"), "{msg}");
    }
}
