//! SQLite databases: hot, consistent capture page by page, and verified restore.
//!
//! # Capture
//! One connection opens the live database (never a raw copy of the file), starts a read
//! transaction and reads every page through `sqlite_dbpage`, which goes through the pager and
//! therefore sees exactly the snapshot of that transaction, WAL content included. Writers are
//! never blocked; checkpoints cannot pass the snapshot while it is open, so the transaction is
//! kept as short as reading the file. Row counts, `user_version` and the `schema_migrations`
//! version are read in the same transaction, so they describe the same moment as the pages.
//!
//! Each page is one chunk (deduplicated by content); the writer groups new pages into 4 MiB
//! blocks (before compression) and blocks into ~16 MiB packs. The page table is stored as a
//! base plus a cumulative delta against the previous point's base (`docs/FORMAT.md` §9), so a
//! day that changes 7% of pages stores those pages and a small delta, not a new
//! 16-bytes-per-page table.
//!
//! # Restore
//! The page table's rolling checksum is compared with the point's, then pages are written,
//! each authenticated against its keyed id, to a temporary file beside the target (blocks
//! decoded on all cores), and the file is fsynced and checked by SQLite on all cores
//! ([`check`]): `integrity_check` must say `ok` and every table's row count must match the
//! point, unless a proof record says these exact bytes already passed (`docs/FORMAT.md`
//! §16). Only then are stale `-wal`/`-shm` files removed and the file renamed over the
//! target. Any failure removes the temporary file and leaves the old database untouched.
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use lifeboat_core::{
    encode_base, encode_delta, load_page_table, ChunkId, ChunkReader, ChunkWriter, Component,
    ComponentKind, DbChecksum, Error, ErrorKind, PageTable, PageTableBuilder, Progress,
    ProvenDatabase, Result, SqliteBody, CHECK_INTEGRITY, CHECK_QUICK, SEGMENT_PAGES,
};
use rusqlite::{Connection, OpenFlags};

use crate::app::SourceSpec;
use crate::dirfd::{self, SafeDir};
use crate::source::{
    no_body, require_absolute, target_path, Capture, RestoreContext, RestoredComponent, Source,
    SourceKind,
};
use crate::util::temp_name;

mod bases;
mod check;
pub mod continuous;
mod held;
pub mod wal;
pub use check::immutable_uri;
use check::{check_db, Open};

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Ordinary tables of the main schema (no virtual tables, whose modules may be missing here;
/// no `sqlite_*` internals). `_` must be escaped in LIKE.
const TABLES_SQL: &str =
    "SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' \
     AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name";
/// A delta larger than this fraction of the base table starts a new base.
const REBASE_FRACTION: f64 = 0.25;

fn src_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Source, format!("{}: {msg}", path.display()))
}

/// Whether the file at `path` starts with SQLite's header. Errors if it cannot be read or is
/// not a regular file. The descriptor it reads through is kept open for the life of the
/// process (`held.rs`: closing it would drop the locks SQLite's connections in this process
/// hold on the file).
pub fn is_sqlite_file(path: &Path) -> Result<bool> {
    has_sqlite_header(path, false)
}

/// [`is_sqlite_file`], with or without following a symlink at `path`.
pub(crate) fn has_sqlite_header(path: &Path, nofollow: bool) -> Result<bool> {
    let io = |e| Error::io(path.display(), e).with_kind(ErrorKind::Source);
    let f = held::open_held(path, nofollow)
        .map_err(io)?
        .ok_or_else(|| io(std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    let mut head = [0u8; 16];
    match std::os::unix::fs::FileExt::read_exact_at(&*f, &mut head, 0) {
        Ok(()) => Ok(&head == SQLITE_MAGIC),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io(e)),
    }
}

/// Fails unless this build's SQLite has the `sqlite_dbpage` virtual table.
pub fn ensure_dbpage_available() -> Result<()> {
    let c =
        Connection::open_in_memory().map_err(|e| Error::new(ErrorKind::Other, e.to_string()))?;
    c.query_row("SELECT count(*) FROM sqlite_dbpage", [], |r| r.get::<_, i64>(0))
        .map(|_| ())
        .map_err(|e| {
            Error::new(
                ErrorKind::Other,
                format!("this lifeboat was built without SQLite's sqlite_dbpage table ({e})"),
            )
            .with_hint("lifeboat compiles its own SQLite with it (crates/sqlite) unless libsqlite3-sys links a system SQLite (LIBSQLITE3_SYS_USE_PKG_CONFIG, SQLITE3_LIB_DIR): build without those, or give it a SQLite compiled with SQLITE_ENABLE_DBPAGE_VTAB")
        })
}

fn sql_err(path: &Path, what: &str, e: rusqlite::Error) -> Error {
    let busy = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    let notadb = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    );
    let mut err = src_err(path, format!("{what}: {e}"));
    if busy {
        err = err
            .retryable()
            .with_hint("the database stayed locked; run the backup again");
    } else if notadb {
        err = err.with_hint("the file is not a SQLite database or it is encrypted/damaged");
    }
    err
}

/// What [`capture`] read, besides the pages.
struct Snapshot {
    page_size: u32,
    journal_mode: String,
    user_version: i64,
    schema_version: Option<String>,
    row_counts: BTreeMap<String, u64>,
    page_count: u32,
    table: PageTable,
    checksum: DbChecksum,
    bytes: u64,
}

/// Captures the database at `path` (which must be absolute) into `writer`.
/// `previous` is this database's body in the app's previous point, used for the delta table.
pub fn capture(
    writer: &mut ChunkWriter<'_>,
    reader: &mut ChunkReader<'_>,
    path: &Path,
    previous: Option<&SqliteBody>,
    progress: &dyn Progress,
) -> Result<Component> {
    // Never through a symlink at the database's own name (SQLite opens it by path, as root;
    // whoever can replace it with a link would choose which database is stored). The open
    // below uses `SQLITE_OPEN_NOFOLLOW` too, for a link swapped in after this check.
    let md = fs::symlink_metadata(path)
        .map_err(|e| Error::io(path.display(), e).with_kind(ErrorKind::Source))?;
    if md.file_type().is_symlink() {
        return Err(src_err(
            path,
            "is a symlink; lifeboat reads a database only by its real path",
        )
        .with_hint("name the file the link points to in lifeboat.toml"));
    }
    if !md.is_file() {
        return Err(src_err(
            path,
            "is not a regular file, so it cannot be a SQLite database",
        ));
    }
    if !is_sqlite_file(path)? {
        return Err(src_err(
            path,
            "is not a SQLite database (its header is not \"SQLite format 3\")",
        )
        .with_hint("check the path; list it under `files` or `config` if it is an ordinary file"));
    }
    // The previous point's base is reused (with a cumulative delta) only if it is intact.
    let previous = previous.filter(|prev| {
        prev.base.iter().all(|s| writer.has(s))
            && PageTableBuilder::usable_base(reader, prev)
                .inspect_err(|e| {
                    tracing::warn!("previous page table unreadable, writing a full one: {e}")
                })
                .is_ok()
    });
    let snap = read_snapshot(writer, reader, path, previous, progress)?;
    let (base, base_pages, delta) = store_table(writer, snap.table, previous)?;
    Ok(Component {
        kind: ComponentKind::Sqlite,
        path: path.display().to_string(),
        size: snap.bytes,
        sqlite: Some(SqliteBody {
            page_size: snap.page_size,
            page_count: snap.page_count,
            checksum: snap.checksum.to_hex(),
            base,
            base_pages,
            delta,
            journal_mode: snap.journal_mode,
            user_version: snap.user_version,
            schema_version: snap.schema_version,
            row_counts: snap.row_counts,
            mode: Some(md.mode() & 0o7777),
            uid: Some(md.uid()),
            gid: Some(md.gid()),
        }),
        tree: None,
        postgres: None,
    })
}

fn read_snapshot(
    writer: &mut ChunkWriter<'_>,
    reader: &mut ChunkReader<'_>,
    path: &Path,
    previous: Option<&SqliteBody>,
    progress: &dyn Progress,
) -> Result<Snapshot> {
    let key = &writer.checksum_key();
    // Opened by its real path (the directories' symlinks resolved now) with
    // `SQLITE_OPEN_NOFOLLOW`, which refuses a symlink anywhere in the path: a link swapped in
    // since `capture` looked is refused, never followed.
    let real = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map_err(|e| Error::io(dir.display(), e).with_kind(ErrorKind::Source))?
            .join(name),
        _ => path.to_path_buf(),
    };
    let conn = Connection::open_with_flags(
        &real,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| sql_err(path, "open", e))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(|e| sql_err(path, "set busy timeout", e))?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| sql_err(path, "read journal mode", e))?;
    conn.execute_batch("BEGIN DEFERRED")
        .map_err(|e| sql_err(path, "begin read transaction", e))?;
    // The first read fixes the snapshot; everything below sees the same moment.
    let tables: Vec<String> = {
        let mut st = conn
            .prepare(TABLES_SQL)
            .map_err(|e| sql_err(path, "read schema", e))?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| sql_err(path, "read schema", e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| sql_err(path, "read schema", e))?
    };
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| sql_err(path, "read page size", e))?;
    let page_count: u32 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| sql_err(path, "read page count", e))?;
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| sql_err(path, "read user_version", e))?;
    let schema_version = if tables.iter().any(|t| t == "schema_migrations") {
        conn.query_row(
            "SELECT CAST(max(version) AS TEXT) FROM schema_migrations",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .ok()
        .flatten()
    } else {
        None
    };
    let mut row_counts = BTreeMap::new();
    for t in &tables {
        let n: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM \"{}\"", t.replace('"', "\"\"")),
                [],
                |r| r.get(0),
            )
            .map_err(|e| sql_err(path, &format!("count rows of {t}"), e))?;
        row_counts.insert(t.clone(), n as u64);
    }

    progress.start("database pages", page_count as u64 * page_size as u64);
    let limit = previous.map_or(0, |p| (p.base_pages as f64 * REBASE_FRACTION) as usize);
    let mut table = PageTableBuilder::new(page_count, previous, limit);
    let mut pages = 0u32;
    let mut checksum = DbChecksum::default();
    let mut bytes = 0u64;
    {
        let mut st = conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")
            .map_err(|e| sql_err(path, "read pages (sqlite_dbpage)", e))?;
        let mut rows = st.query([]).map_err(|e| sql_err(path, "read pages", e))?;
        while let Some(row) = rows.next().map_err(|e| sql_err(path, "read pages", e))? {
            let pgno: u32 = row
                .get(0)
                .map_err(|e| sql_err(path, "read page number", e))?;
            let data = row
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(|e| sql_err(path, "read page", e))?;
            if pgno != pages + 1 || data.len() != page_size as usize {
                return Err(src_err(
                    path,
                    format!(
                        "unexpected page {pgno} of {} bytes while reading pages",
                        data.len()
                    ),
                ));
            }
            let id = writer.store_page(data)?;
            checksum.toggle(key, pgno, &id);
            table.push(reader, id)?;
            pages += 1;
            bytes += data.len() as u64;
            progress.inc(data.len() as u64);
        }
    }
    conn.execute_batch("COMMIT")
        .map_err(|e| sql_err(path, "end read transaction", e))?;
    progress.finish();
    if pages != page_count {
        return Err(src_err(
            path,
            format!("read {pages} pages, expected {page_count}"),
        ));
    }
    Ok(Snapshot {
        page_size,
        journal_mode,
        user_version,
        schema_version,
        row_counts,
        page_count,
        table: table.finish(),
        checksum,
        bytes,
    })
}

/// Stores the page table: the previous base with a cumulative delta, or a new base.
/// Returns (base segments, base pages, delta segments).
fn store_table(
    writer: &mut ChunkWriter<'_>,
    table: PageTable,
    previous: Option<&SqliteBody>,
) -> Result<(Vec<ChunkId>, u32, Vec<ChunkId>)> {
    match (table, previous) {
        (PageTable::Delta(delta), Some(prev)) => {
            let mut segs = Vec::new();
            for part in delta.chunks(SEGMENT_PAGES) {
                segs.push(writer.store_chunk(&encode_delta(part))?);
            }
            Ok((prev.base.clone(), prev.base_pages, segs))
        }
        (PageTable::Full(table), _) => {
            let mut segs = Vec::new();
            for part in table.chunks(SEGMENT_PAGES) {
                segs.push(writer.store_chunk(&encode_base(part))?);
            }
            Ok((segs, table.len() as u32, Vec::new()))
        }
        (PageTable::Delta(_), None) => {
            unreachable!("a delta is only built against a previous base")
        }
    }
}

/// How to restore a database.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteRestoreOptions {
    /// Replace a database that is open by another process or newer than the point.
    pub force: bool,
    /// Replace a database newer than the point, but not one open by another process.
    pub replace_newer: bool,
    /// Do not refuse a database open by another process in [`preflight`] (a stop hook runs
    /// before the restore, whose own check still refuses it).
    pub skip_open_check: bool,
    /// The point's capture time (to refuse overwriting newer data).
    pub point_time: Option<jiff::Timestamp>,
    /// How thoroughly SQLite checks the restored file (the checksum and the row counts are
    /// always checked).
    pub verify: Verify,
    /// A proof record (`docs/FORMAT.md` §16) says these exact bytes (this point, this
    /// checksum and page count) already passed `integrity_check` and the row counts: SQLite's
    /// check is not run again. Every page is still authenticated and the whole-database
    /// checksum still compared, so a forged record skips a check, never admits a byte.
    pub proven: bool,
}

/// How a restored database is checked by SQLite before it replaces anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Verify {
    /// `PRAGMA integrity_check`: every b-tree, every index entry against its table row.
    /// O(N log N): about 10 s per GiB of CPU on the 2-core reference machine, spread over the
    /// cores table by table. Not run again for bytes a proof record says already passed it
    /// (the output says so); a passed run writes that record.
    #[default]
    Full,
    /// `PRAGMA quick_check`: every b-tree page and the page accounting, without matching index
    /// entries to rows. O(N): about 1.5 s per GiB. Together with the checksum (every page
    /// authenticated and equal to what was backed up) it catches any damage since backup; it
    /// does not re-prove that the source's indexes were consistent when it was captured.
    Quick,
}

impl Verify {
    /// The word a proof record (`docs/FORMAT.md` §16) gives this check.
    pub fn proof_word(self) -> &'static str {
        match self {
            Verify::Full => CHECK_INTEGRITY,
            Verify::Quick => CHECK_QUICK,
        }
    }

    /// The recorded checks that make running this one again unnecessary.
    pub fn accepted_proofs(self) -> &'static [&'static str] {
        match self {
            Verify::Full => &[CHECK_INTEGRITY],
            Verify::Quick => &[CHECK_INTEGRITY, CHECK_QUICK],
        }
    }
}

/// Restores `body` to `target`, verified, atomically (see the module docs).
///
/// Through directory fds (`crate::dirfd`): the target's directory is opened normally, the
/// pages go to a file created in a private 0700 directory `.NAME.lifeboat-*` made in it (SQLite
/// must open the file by path to verify it, and no other user can put a symlink in there), its
/// owner and mode are set on the open file, and it is moved over the target with `renameat`.
pub(crate) fn restore(
    reader: &mut ChunkReader<'_>,
    body: &SqliteBody,
    target: &Path,
    (dir, name): (SafeDir, OsString),
    opts: SqliteRestoreOptions,
    replayed: Option<&[ChunkId]>,
    progress: &dyn Progress,
) -> Result<()> {
    preflight(target, opts)?;
    let table = match replayed {
        Some(t) => t.to_vec(),
        None => load_page_table(reader, body)?,
    };
    let stage_name = temp_name(&name);
    let stage = dir.private_dir(&stage_name)?;
    let verify = (!opts.proven).then_some(opts.verify);
    let result = write_and_verify(reader, body, &table, &stage, &name, verify, progress);
    if let Err(e) = result {
        remove_stage(&dir, &stage_name, &stage, &name);
        return Err(e);
    }
    // Stale -wal/-shm/-journal of the old database must not sit beside the new file, or SQLite
    // would replay old frames onto it. They are renamed aside first (not deleted), so a crash
    // before the new file is in place loses nothing: the old database and its side files are
    // all still there under `*.lifeboat-old`.
    let mut aside: Vec<(OsString, OsString)> = Vec::new();
    for side in sidecar_names(&name) {
        if dir.stat(&side).is_none() {
            continue;
        }
        let mut old = side.clone();
        old.push(".lifeboat-old");
        if let Err(e) = dir.rename_to(&side, &dir, &old) {
            for (from, to) in &aside {
                let _ = dir.rename_to(to, &dir, from);
            }
            remove_stage(&dir, &stage_name, &stage, &name);
            return Err(Error::io(
                format!("move stale {} aside", dir.join(&side).display()),
                e,
            ));
        }
        aside.push((side, old));
    }
    if let Err(e) = stage.rename_to(&name, &dir, &name) {
        for (from, to) in &aside {
            let _ = dir.rename_to(to, &dir, from);
        }
        remove_stage(&dir, &stage_name, &stage, &name);
        return Err(Error::io(
            format!("rename restored database onto {}", target.display()),
            e,
        ));
    }
    dir.sync()?;
    for (_, old) in aside {
        let _ = dir.remove_file(&old);
    }
    remove_stage(&dir, &stage_name, &stage, &name);
    Ok(())
}

/// The names of a database's side files in its directory.
fn sidecar_names(name: &OsStr) -> [OsString; 3] {
    ["-wal", "-shm", "-journal"].map(|s| {
        let mut n = name.to_os_string();
        n.push(s);
        n
    })
}

/// Removes the private directory (what is left in it first), if it is still ours at its name.
fn remove_stage(dir: &SafeDir, stage_name: &OsStr, stage: &SafeDir, name: &OsStr) {
    let _ = stage.remove_file(name);
    for s in sidecar_names(name) {
        let _ = stage.remove_file(&s);
    }
    if let (Ok(ours), Some(there)) = (stage.fstat(), dir.stat(stage_name)) {
        if (ours.st_dev, ours.st_ino) == (there.st_dev, there.st_ino) {
            let _ = dir.remove_dir(stage_name);
        }
    }
}

fn write_and_verify(
    reader: &mut ChunkReader<'_>,
    body: &SqliteBody,
    table: &[ChunkId],
    stage: &SafeDir,
    name: &OsStr,
    verify: Option<Verify>,
    progress: &dyn Progress,
) -> Result<()> {
    let tmp = stage.join(name);
    let tmp = tmp.as_path();
    // The table must match the point's checksum before any page is fetched: a wrong table
    // (mixed-up base and delta) fails here, not after gigabytes were written.
    let checksum = DbChecksum::of_table(&reader.checksum_key(), table);
    if checksum.to_hex() != body.checksum {
        return Err(Error::new(
            ErrorKind::Verify,
            format!(
                "page table of the point does not match its checksum ({} vs {})",
                checksum.to_hex(),
                body.checksum
            ),
        ));
    }
    let file = stage
        .create_file(name, 0o600)
        .map_err(|e| Error::io(tmp.display(), e))?;
    let page = body.page_size as u64;
    file.set_len(table.len() as u64 * page)
        .map_err(|e| Error::io(tmp.display(), e))?;
    // `O_DIRECT` only when SQLite will not read the file next: its check reads pages in b-tree
    // order, and from a cold cache that is a small random read per page (16 s instead of
    // 1.5 s for 1 GiB on the reference machine); the page cache holds them when it just
    // wrote them.
    // And only where every page is whole memory pages of 4 KiB: then the runs that go through
    // the page cache (pages of a block that also holds other chunks, at unaligned addresses)
    // never share a cache page with an `O_DIRECT` run (on a kernel with 64 KiB pages they
    // could, and correctness would rest on the kernel's handling of the overlap).
    let direct = match verify {
        None if page.is_multiple_of(DIRECT_ALIGN as u64) && memory_page_size() == DIRECT_ALIGN => {
            stage.reopen_direct(name, &file).ok()
        }
        _ => None,
    };
    // The whole file is allocated first: a full disk fails here, before any block is fetched,
    // and the `O_DIRECT` writes below then overwrite allocated blocks, which ext4 lets several
    // threads do at once (writes that allocate take the file's lock one at a time; that cost
    // 0.2 s of 1.4 s on 1 GiB).
    preallocate(&file, table.len() as u64 * page).map_err(|e| {
        Error::io(
            format!(
                "allocate {} bytes for {}",
                table.len() as u64 * page,
                tmp.display()
            ),
            e,
        )
    })?;
    let out = PageWriter::new(&file, direct, tmp, page);
    progress.start("restoring pages", table.len() as u64 * page);
    // Blocks are fetched, authenticated and decoded on all cores; each page is written at its
    // own offset, so old (base) and new (delta) blocks need not arrive in page order.
    // The table is read in windows of WINDOW_PAGES pages so the reader's per-page work list
    // stays under 8 MiB whatever the database size (a block that straddles two windows, or
    // holds changed pages from all over the file, is read once per window it serves).
    // With `O_DIRECT` a thread waits for its write to reach the disk, so there are twice as
    // many threads as cores: while some wait, the others decode.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // (At most 16: each holds a decoded block, up to 64 MiB.)
    let threads = if out.direct.is_some() {
        (2 * cores).min(16)
    } else {
        cores
    };
    for (w, part) in table.chunks(WINDOW_PAGES).enumerate() {
        let first = w * WINDOW_PAGES;
        reader.read_parallel(part, threads, &|batch| {
            out.write_pages(first, batch, progress)
        })?;
    }

    progress.finish();
    let Some(verify) = verify else {
        // A proof record (which any key holder can write) skips SQLite's check, not this one:
        // the file must at least be a SQLite database of the recorded page size.
        let mut head = [0u8; 18];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(tmp.display(), e))?;
        let size = match u16::from_be_bytes([head[16], head[17]]) {
            1 => 65536,
            n => u32::from(n),
        };
        if &head[..16] != b"SQLite format 3\0" || size != body.page_size {
            return Err(Error::new(
                ErrorKind::Verify,
                format!(
                    "restored database {}: not a SQLite database of page size {} (a proof record claimed it was checked)",
                    tmp.display(),
                    body.page_size
                ),
            ));
        }
        file.sync_all().map_err(|e| Error::io(tmp.display(), e))?;
        return apply_owner_mode(&file, tmp, body);
    };
    // The fsync runs beside SQLite's check (both only read the finished file): the disk writes
    // while the cores check.
    let (synced, checked) = std::thread::scope(|s| {
        let sync = s.spawn(|| file.sync_all());
        let checked = check_staged(stage, name, body, verify);
        (sync.join(), checked)
    });
    synced
        .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
        .map_err(|e| Error::io(tmp.display(), e))?;
    checked?;
    apply_owner_mode(&file, tmp, body)
}

/// SQLite's check of the staged file `name` in the private directory `stage`.
fn check_staged(stage: &SafeDir, name: &OsStr, body: &SqliteBody, verify: Verify) -> Result<()> {
    // SQLite opens the file by path: the real path of the private directory (symlinks the
    // operator has above it resolved), checked to be still ours right before and after, opened
    // with SQLITE_OPEN_NOFOLLOW (a symlink anywhere in the path is refused).
    let real = stage.real_path().join(name);
    let res = stage_is_at(stage, &real).and_then(|()| {
        // Read-only and `immutable=1`: SQLite creates no -shm/-wal/-journal and writes
        // nothing, so even if the private directory were swapped between `stage_is_at` and
        // this open (the race left in Known gaps), the file opened is only read, never
        // changed and nothing is created beside it.
        let res = check_db(&real, body, verify, Open::ImmutableNoFollow);
        for s in sidecar_names(name) {
            let _ = stage.remove_file(&s);
        }
        res
    });
    res.and_then(|()| stage_is_at(stage, &real))
}

/// Refuses unless `tmp`'s directory, looked up by path, is the private directory `stage`.
fn stage_is_at(stage: &SafeDir, tmp: &Path) -> Result<()> {
    let ours = stage.fstat()?;
    let there = tmp.parent().and_then(|p| fs::symlink_metadata(p).ok());
    if there.is_some_and(|m| (m.dev(), m.ino()) == (ours.st_dev, ours.st_ino)) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Refused,
            format!(
                "{}: the restore's private directory was moved or replaced by another process",
                stage.shown().display()
            ),
        ))
    }
}

/// Pages per [`ChunkReader::read_parallel`] call in a restore (2 GiB of 4 KiB pages).
const WINDOW_PAGES: usize = 1 << 19;
/// Largest single `pwritev` of consecutive pages (and the most buffers in one call, below
/// Linux's `IOV_MAX` of 1024).
const RUN_BYTES: usize = 4 << 20;
const RUN_SLICES: usize = 1024;

/// Writes a restore's pages into its staged file: runs of pages at 4 KiB-aligned addresses
/// and offsets (a database of 4 KiB or larger pages, decoded into aligned blocks by the
/// reader) go through an `O_DIRECT` descriptor of the same file, straight from the decoded
/// block to the disk: the profile of a 1 GiB restore showed the kernel's copy of every page
/// into the page cache, and two threads contending for the file's lock around it, as the
/// largest cost of the write path. Anything else, and everything once the filesystem refuses
/// an `O_DIRECT` write, goes through the page cache.
struct PageWriter<'a> {
    file: &'a File,
    direct: Option<File>,
    direct_ok: std::sync::atomic::AtomicBool,
    tmp: &'a Path,
    page: u64,
}

/// Runs shorter than this go through the page cache even when they could go direct: an
/// `O_DIRECT` write is one synchronous disk request, and the scattered pages of an incremental
/// point (a few here and there between the base's) made thousands of them: a 1 GiB restore of
/// a point one day after its base took 2.0 s; 1.5 s with runs under 1 MiB through the page
/// cache (1.7 s with 256 KiB or 2 MiB as the limit).
const DIRECT_MIN_RUN: usize = 1 << 20;

/// The system's memory page size.
fn memory_page_size() -> usize {
    rustix::param::page_size()
}

/// Alignment of memory, offset and length that `O_DIRECT` writes get (the largest logical
/// block size in common use; smaller ones accept it too).
const DIRECT_ALIGN: usize = 4096;

impl<'a> PageWriter<'a> {
    fn new(file: &'a File, direct: Option<File>, tmp: &'a Path, page: u64) -> Self {
        let direct_ok = std::sync::atomic::AtomicBool::new(direct.is_some());
        PageWriter {
            file,
            direct,
            direct_ok,
            tmp,
            page,
        }
    }

    /// Writes one block's pages (positions relative to `first`) at their offsets.
    fn write_pages(
        &self,
        first: usize,
        batch: &[(usize, &[u8])],
        progress: &dyn Progress,
    ) -> Result<()> {
        // Consecutive pages (most of a block) go out in one `pwritev` straight from the decoded
        // block: no copy into a run buffer.
        let page = self.page;
        let mut run: Vec<&[u8]> = Vec::with_capacity(RUN_SLICES.min(batch.len()));
        let mut run_start = 0usize;
        let flush = |run: &mut Vec<&[u8]>, start: usize| -> Result<()> {
            if !run.is_empty() {
                let off = start as u64 * page;
                let len = self.write_run(run, off)?;
                progress.inc(len);
                run.clear();
            }
            Ok(())
        };
        for &(i, d) in batch {
            let i = first + i;
            if d.len() as u64 != page {
                return Err(Error::new(
                    ErrorKind::Corrupt,
                    format!("page {} has {} bytes, expected {page}", i + 1, d.len()),
                ));
            }
            if !run.is_empty() && run_start + run.len() != i {
                flush(&mut run, run_start)?;
            }
            if run.is_empty() {
                run_start = i;
            }
            run.push(d);
            if run.len() >= RUN_SLICES || run.len() * page as usize >= RUN_BYTES {
                flush(&mut run, run_start)?;
            }
        }
        flush(&mut run, run_start)
    }

    /// Writes `run` back to back at `off`, directly when it can.
    fn write_run(&self, run: &[&[u8]], off: u64) -> Result<u64> {
        use std::sync::atomic::Ordering;
        let aligned = |b: &&[u8]| {
            (b.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
                && b.len().is_multiple_of(DIRECT_ALIGN)
        };
        let bytes: usize = run.iter().map(|b| b.len()).sum();
        if let Some(direct) = &self.direct {
            if self.direct_ok.load(Ordering::Relaxed)
                && bytes >= DIRECT_MIN_RUN
                && off.is_multiple_of(DIRECT_ALIGN as u64)
                && run.iter().all(aligned)
            {
                match pwrite_all(direct, run, off) {
                    Ok(n) => return Ok(n),
                    // The filesystem (or its block size) does not take these writes: the page
                    // cache from now on.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::debug!(
                            "O_DIRECT write refused ({e}); writing through the page cache"
                        );
                        self.direct_ok.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(Error::io(self.tmp.display(), e)),
                }
            }
        }
        let n = pwrite_all(self.file, run, off).map_err(|e| Error::io(self.tmp.display(), e))?;
        start_writeback(self.file, off, n);
        Ok(n)
    }
}

/// Allocates `len` bytes of `file` on disk. A filesystem without `fallocate` is not an error
/// (the writes allocate as they go); a full one is.
fn preallocate(file: &File, len: u64) -> std::io::Result<()> {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(()),
        Err(e) => Err(std::io::Error::from_raw_os_error(e.raw_os_error())),
    }
}

/// Writes `bufs` back to back at `off`; returns the bytes written (all of them).
fn pwrite_all(file: &File, bufs: &[&[u8]], off: u64) -> std::io::Result<u64> {
    let slices: Vec<std::io::IoSlice<'_>> = bufs.iter().map(|b| std::io::IoSlice::new(b)).collect();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut done = rustix::io::pwritev(file, &slices, off)?;
    if done < total {
        // A short write (rare for a regular file): the rest buffer by buffer.
        let mut pos = off;
        for b in bufs {
            if done >= b.len() {
                done -= b.len();
            } else {
                file.write_all_at(&b[done..], pos + done as u64)?;
                done = 0;
            }
            pos += b.len() as u64;
        }
    }
    Ok(total as u64)
}

/// Asks the kernel to start writing `len` bytes at `off` to disk now, without waiting, so the
/// fsync before the rename finds most of the file already written instead of starting 1 GiB of
/// writeback at the end (dirty pages otherwise sit in memory for up to 30 s). Advisory: an
/// error changes nothing, the fsync still makes the file durable.
fn start_writeback(file: &File, off: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the fd is open for the call.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            off as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Gives the restored file the database's recorded owner and mode (so the app, often running
/// as another user than lifeboat, can open it). Owner changes need root; without it the file
/// keeps the restoring user and a warning says so.
fn apply_owner_mode(file: &File, tmp: &Path, body: &SqliteBody) -> Result<()> {
    if let (Some(uid), Some(gid)) = (body.uid, body.gid) {
        let st = dirfd::fstat(file).map_err(|e| Error::io(tmp.display(), e))?;
        if (st.st_uid, st.st_gid) != (uid, gid) {
            if let Err(e) = dirfd::fchown(file, uid, gid) {
                tracing::warn!("restored database keeps owner {}:{}, not {uid}:{gid} ({e}); run the restore as root to set it", st.st_uid, st.st_gid);
            }
        }
    }
    if let Some(mode) = body.mode {
        dirfd::fchmod(file, mode).map_err(|e| Error::io(tmp.display(), e))?;
    }
    Ok(())
}

/// `PRAGMA integrity_check` (or `quick_check`) and row counts against the point's record, on
/// parallel connections ([`check`]).
pub fn verify_db(path: &Path, body: &SqliteBody, level: Verify) -> Result<()> {
    let res = check_db(path, body, level, Open::ReadWrite);
    // Opening a WAL-mode image creates -wal/-shm beside it; they are empty after a clean close.
    for s in sidecars(path) {
        let _ = fs::remove_file(s);
    }
    res
}

fn sidecars(db: &Path) -> [PathBuf; 3] {
    let s = db.as_os_str().to_owned();
    let with = |suffix: &str| {
        let mut p = s.clone();
        p.push(suffix);
        PathBuf::from(p)
    };
    [with("-wal"), with("-shm"), with("-journal")]
}

/// Checks, before anything is written, that replacing `target` is safe: refuses a database
/// that another process has open, or that changed after the point was taken (restoring would
/// silently throw those changes away). `force` skips the checks; a missing target passes.
pub fn preflight(target: &Path, opts: SqliteRestoreOptions) -> Result<()> {
    if opts.force || !target.exists() {
        return Ok(());
    }
    let newer_than = opts.point_time.filter(|_| !opts.replace_newer);
    refuse_if_unsafe(target, newer_than, !opts.skip_open_check)
}

fn refuse_if_unsafe(
    target: &Path,
    point_time: Option<jiff::Timestamp>,
    open_check: bool,
) -> Result<()> {
    if let Some(pid) = open_check
        .then(|| crate::util::open_by_other_process(target))
        .flatten()
    {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} is open by another process (pid {pid})", target.display()),
        )
        .with_hint("stop the app first (or configure stop/start hooks), or pass --force to replace it anyway"));
    }
    if let Some(pt) = point_time {
        let newest = std::iter::once(target.to_path_buf())
            .chain(sidecars(target))
            .filter_map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
            .max();
        if let Some(m) = newest {
            let m = jiff::Timestamp::try_from(m).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            if m > pt {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "{} was modified at {} , after this point was taken ({pt}); restoring would discard those changes",
                        target.display(),
                        m.round(jiff::Unit::Second).unwrap_or(m)
                    ),
                )
                .with_hint("pass --force to replace it (a pre-restore point of the current state is taken first), or restore with --to DIR to look at it beside"));
            }
        }
    }
    Ok(())
}

// ---- The `Source` and `SourceKind` implementations ----------------------------------------

/// A configured SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    path: PathBuf,
}

impl SqliteSource {
    /// The database at `path` (checked to be absolute by [`Source::validate`]).
    pub fn new(path: PathBuf) -> SqliteSource {
        SqliteSource { path }
    }
}

impl Source for SqliteSource {
    fn kind(&self) -> ComponentKind {
        ComponentKind::Sqlite
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn validate(&self) -> Result<()> {
        require_absolute(&self.path)?;
        ensure_dbpage_available()
    }

    fn capture(
        &self,
        cx: &mut Capture<'_, '_>,
        previous: Option<&Component>,
        progress: &dyn Progress,
    ) -> Result<Component> {
        capture(
            cx.writer,
            cx.reader,
            &self.path,
            previous.and_then(|c| c.sqlite.as_ref()),
            progress,
        )
    }
}

/// Restores [`ComponentKind::Sqlite`] components (see the module docs).
pub struct SqliteKind;

impl SqliteKind {
    fn options(cx: &RestoreContext<'_>) -> SqliteRestoreOptions {
        SqliteRestoreOptions {
            force: cx.options.force,
            replace_newer: cx.options.replace_newer,
            skip_open_check: cx.options.app_stops_first,
            point_time: Some(cx.point_time),
            verify: cx.options.verify,
            proven: false,
        }
    }
}

/// A database file and its `-wal`/`-journal` (those that exist), as plain files.
fn raw_files(db: &Path) -> Vec<SourceSpec> {
    let mut raw = Vec::new();
    for side in ["-wal", "-journal"] {
        let mut s = db.as_os_str().to_owned();
        s.push(side);
        let s = PathBuf::from(s);
        if s.is_file() {
            raw.push(SourceSpec::path(ComponentKind::Config, s));
        }
    }
    raw.push(SourceSpec::path(ComponentKind::Config, db.to_path_buf()));
    raw
}

impl SourceKind for SqliteKind {
    fn kinds(&self) -> &'static [ComponentKind] {
        &[ComponentKind::Sqlite]
    }

    fn at_path(&self, _kind: ComponentKind, path: PathBuf) -> Option<Box<dyn Source>> {
        Some(Box::new(SqliteSource::new(path)))
    }

    fn current_state(&self, c: &Component, _cx: &RestoreContext<'_>) -> Result<Vec<SourceSpec>> {
        let p = Path::new(&c.path);
        let Ok(md) = fs::metadata(p) else {
            return Ok(Vec::new());
        };
        if md.is_dir() {
            return Ok(vec![SourceSpec::path(
                ComponentKind::Files,
                p.to_path_buf(),
            )]);
        }
        if is_sqlite_file(p).unwrap_or(false) {
            return Ok(vec![SourceSpec::path(
                ComponentKind::Sqlite,
                p.to_path_buf(),
            )]);
        }
        // A database whose header is damaged: its bytes as a plain file, and its -wal and
        // -journal too (the restore removes them, and they may hold its last transactions).
        Ok(raw_files(p))
    }

    /// A database SQLite cannot read is saved as its raw bytes (and its `-wal`/`-journal`),
    /// so the state being replaced is never lost.
    fn current_state_raw(&self, c: &Component) -> Option<Vec<SourceSpec>> {
        let p = Path::new(&c.path);
        if !fs::metadata(p).is_ok_and(|m| m.is_file()) || !is_sqlite_file(p).unwrap_or(false) {
            return None;
        }
        Some(raw_files(p))
    }

    fn preflight(&self, c: &Component, cx: &RestoreContext<'_>) -> Result<()> {
        preflight(
            &target_path(&cx.options.target, &c.path),
            SqliteKind::options(cx),
        )
    }

    fn restore(
        &self,
        c: &Component,
        cx: &RestoreContext<'_>,
        reader: &mut ChunkReader<'_>,
        progress: &dyn Progress,
    ) -> Result<RestoredComponent> {
        let body = c.sqlite.as_ref().ok_or_else(|| no_body(c))?;
        let dest = cx.dest(c);
        let parent = cx.parent_dir(c)?;
        let replayed = cx
            .options
            .replayed
            .as_ref()
            .and_then(|r| r.get(&c.path))
            .map(Vec::as_slice);
        let proof = cx
            .proofs
            .filter(|_| replayed.is_none())
            .and_then(|p| p.find(&body.checksum, body.page_count, cx.options.verify));
        let verify = match replayed {
            Some(_) => cx.options.verify_replayed,
            None => cx.options.verify,
        };
        let opts = SqliteRestoreOptions {
            proven: proof.is_some(),
            verify,
            ..SqliteKind::options(cx)
        };
        restore(reader, body, &dest, parent, opts, replayed, progress)?;
        let level = verify.proof_word();
        if replayed.is_some() {
            return Ok(RestoredComponent {
                kind: c.kind,
                path: dest.display().to_string(),
                bytes: body.page_count as u64 * body.page_size as u64,
                verified: format!(
                    "continuous deltas replayed, checksum and {level} ok (no row counts are recorded between points)"
                ),
                warnings: Vec::new(),
            });
        }
        let verified = match proof {
            Some((p, check)) => format!(
                "checksum ok; {check} proven on {} by {} on host {} for these exact bytes ({level} and row counts not run again)",
                p.time, p.by, p.hostname
            ),
            None => {
                if let Some(p) = cx.proofs {
                    p.passed(ProvenDatabase {
                        path: dest.display().to_string(),
                        checksum: body.checksum.clone(),
                        page_count: body.page_count,
                        check: level.to_string(),
                    });
                }
                format!(
                    "checksum, {level} ok, row counts of {} tables match",
                    body.row_counts.len()
                )
            }
        };
        Ok(RestoredComponent {
            kind: c.kind,
            path: dest.display().to_string(),
            bytes: body.page_count as u64 * body.page_size as u64,
            verified,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn immutable_uri_encodes_what_could_add_parameters() {
        assert_eq!(
            super::check::immutable_uri(std::path::Path::new("/srv/a b/x?mode=rw#%.db")),
            "file:/srv/a%20b/x%3Fmode%3Drw%23%25.db?immutable=1"
        );
    }

    /// Pages land at their offsets whichever way they go: aligned runs through `O_DIRECT`,
    /// unaligned memory or a small page size through the page cache.
    #[test]
    fn page_writer_writes_aligned_and_unaligned_pages_at_their_offsets() {
        use super::{PageWriter, SafeDir, DIRECT_MIN_RUN};
        use lifeboat_core::NoProgress;
        let dir = tempfile::tempdir().unwrap();
        let safe = SafeDir::open_root(dir.path()).unwrap();
        for page in [4096usize, 1024] {
            // A long aligned run (long enough to go direct), a short one, and pages at an odd
            // address, with gaps between them.
            let long = DIRECT_MIN_RUN / page + 3;
            let total = long + 6;
            let name = std::ffi::OsString::from(format!("db{page}"));
            let file = safe.create_file(&name, 0o600).unwrap();
            file.set_len((total * page) as u64).unwrap();
            let direct = safe.reopen_direct(&name, &file).ok();
            let tmp = dir.path().join(&name);
            let out = PageWriter::new(&file, direct, &tmp, page as u64);
            let mut raw = vec![0u8; (long + 1) * page + 4096];
            let pad = raw.as_ptr().align_offset(4096);
            for (i, b) in raw[pad..pad + (long + 1) * page].iter_mut().enumerate() {
                *b = (i / page % 200) as u8 + 1;
            }
            let aligned = &raw[pad..pad + (long + 1) * page];
            let odd: Vec<u8> = std::iter::once(0).chain(vec![250u8; 2 * page]).collect();
            let mut batch: Vec<(usize, &[u8])> = (0..long)
                .map(|i| (i, &aligned[i * page..(i + 1) * page]))
                .collect();
            batch.push((long + 3, &odd[1..page + 1]));
            batch.push((long + 4, &odd[page + 1..]));
            batch.push((long + 5, &aligned[long * page..]));
            out.write_pages(0, &batch, &NoProgress).unwrap();
            drop(out);
            let got = std::fs::read(&tmp).unwrap();
            let mut want: Vec<u8> = (0..long)
                .flat_map(|i| vec![(i % 200) as u8 + 1; page])
                .collect();
            want.extend(vec![0u8; 3 * page]);
            want.extend(vec![250u8; 2 * page]);
            want.extend(vec![(long % 200) as u8 + 1; page]);
            assert!(got == want, "page size {page}: wrong bytes");
        }
        let file = safe.create_file("x".as_ref(), 0o600).unwrap();
        let other = safe.create_file("y".as_ref(), 0o600).unwrap();
        assert!(
            safe.reopen_direct("x".as_ref(), &other).is_err(),
            "a name that is another file is refused"
        );
        drop(file);
    }
}
