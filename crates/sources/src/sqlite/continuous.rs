//! Continuous capture of one SQLite database (issue 14): which pages changed since the last
//! look, read consistently, as one [`Change`] per interval. The design and the argument why no
//! committed transaction can be missed are in `docs/ARCHITECTURE.md`, "Continuous capture";
//! in short:
//!
//! - **Page numbers** come from the WAL's frame headers ([`WalCursor`]); **page contents**
//!   from `sqlite_dbpage` inside a read transaction, never from the WAL's raw bytes.
//! - **The anchor**: one of two connections always holds a read transaction (a snapshot).
//!   While it does, SQLite cannot restart the log past frames this follower has not read (a
//!   reader on `READ(i>=1)` forbids the restart; one on `READ(0)` forbids backfilling, so at
//!   most one restart, after which every later change is in the new generation).
//! - **Each poll** reads the frames committed since the last one under the anchor, opens a
//!   new snapshot on the other connection, reads the frames again up to the end (so every
//!   frame of the new snapshot is known), reads the named pages in the new snapshot, then lets
//!   the old anchor go. Frames read after the new snapshot began are read again next time.
//! - **The bound on the WAL**: after [`HANDOVER_FRAMES`] frames, and whenever another process
//!   waits for a FULL/RESTART/TRUNCATE checkpoint (it holds the WAL's WRITE and CKPT locks),
//!   the follower captures and then holds no snapshot, so the app's checkpoint completes and
//!   the log restarts. Re-anchoring afterwards proves nothing was missed when the log was
//!   restarted exactly once (salt-1 + 1) and the old generation's tail past the read position
//!   is intact; otherwise it **heals**: compares every page with its table (counted, logged).
use std::collections::BTreeSet;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lifeboat_core::{
    page_patch, ChecksumKey, ChunkId, ChunkWriter, DbChecksum, Error, ErrorKind, PageStored,
    Result, WalMark,
};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use super::bases::Bases;
use super::wal::{
    frames_in, read_frame_header, read_header, read_published, FrameHeader, Poll, Published,
    WalCursor, WalFrame,
};
use super::{sql_err, src_err};

/// Frames after which the follower lets the app's checkpoint restart the log (16 MiB of WAL
/// at 4 KiB pages): the WAL stays below this plus one interval's frames.
pub const HANDOVER_FRAMES: u32 = 4096;
/// How long a handover waits for the app to restart the log before anchoring again.
const RESTART_WAIT: Duration = Duration::from_secs(1);
/// How long a poll waits for the app to publish (in `-shm`) a transaction whose commit frame
/// the follower already read in `-wal`, before reading those pages again next poll instead.
const PUBLISH_WAIT: Duration = Duration::from_millis(50);
/// How often [`Follower::wait`] looks for a waiting checkpointer.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// The WAL's lock bytes in the `-shm` file (unix VFS): WRITE at 120, CKPT at 121.
const SHM_WRITE_LOCK: i64 = 120;

/// One interval's changes, as the follower's table now has them.
#[derive(Debug, Clone)]
pub struct Change {
    /// (page number, new id) of every page whose content changed, ascending.
    pub pairs: Vec<(u32, ChunkId)>,
    /// Pages after the change.
    pub page_count: u32,
    /// §9.2 checksum before and after.
    pub checksum_before: DbChecksum,
    /// §9.2 checksum after.
    pub checksum_after: DbChecksum,
    /// Read just before the snapshot was taken: every transaction that returned before this
    /// moment is in it (one committed in between may be too).
    pub time: jiff::Timestamp,
    /// Why every page was compared (`None`: page numbers came from the WAL).
    pub healed: Option<String>,
    /// The WAL position after it (`None` when no log was read).
    pub wal: Option<WalMark>,
    /// The table entries it replaced or removed, to undo it if it cannot be published.
    undo: Vec<(u32, ChunkId)>,
    undo_pages: usize,
}

/// Counters of a follower's life, for logs and metrics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowerStats {
    /// Polls.
    pub polls: u64,
    /// Committed WAL frames read.
    pub frames: u64,
    /// Pages read from the database.
    pub pages_read: u64,
    /// Full comparisons.
    pub heals: u64,
    /// Times the follower let go of its snapshot so the log could restart.
    pub handovers: u64,
    /// Of those, for a FULL/RESTART/TRUNCATE checkpoint another process was waiting on.
    pub checkpoint_yields: u64,
    /// Polls whose snapshot could not be shown to hold every commit read (the app had not
    /// published one yet): their pages were read again the next poll.
    pub unpublished: u64,
    /// Times the log was read again from its first frame because its checksum chain broke
    /// before what SQLite had published (an orphaned commit frame of a writer that died).
    pub rewinds: u64,
    /// Pages stored as patches against an earlier version (`bases.rs`).
    pub patches: u64,
    /// Bytes of those patches before compression.
    pub patch_bytes: u64,
}

/// The follower of one live database: its page table as last captured and the WAL position.
pub struct Follower {
    path: PathBuf,
    anchor: Connection,
    spare: Connection,
    /// The anchor connection holds a read transaction.
    anchored: bool,
    /// The anchor has been held since the cursor read past its snapshot: a restart seen now
    /// was the only one and the new generation holds everything since.
    safe: bool,
    wal_path: PathBuf,
    shm_path: PathBuf,
    wal: Option<File>,
    /// Kept open for the process's life (`held.rs`): closing it would drop the `-shm` locks
    /// of every SQLite connection in this process (this follower's snapshot among them).
    shm: Option<std::sync::Arc<File>>,
    cursor: Option<WalCursor>,
    /// Largest size of the WAL seen in the cursor's generation.
    wal_len_max: u64,
    /// Pages named by frames read after the last snapshot began: read again next poll.
    carry: BTreeSet<u32>,
    table: Vec<ChunkId>,
    sum: DbChecksum,
    page_size: u32,
    must_heal: Option<String>,
    /// Let go of the snapshot (handover) at this moment, to anchor again after the restart.
    released: Option<Instant>,
    /// A blocking checkpointer was seen waiting for our snapshot.
    yield_now: bool,
    /// The last handover was for a checkpointer still waiting after the release: anchor again
    /// as soon as it is done (timing only; never a proof that nothing was missed).
    yielded: bool,
    stats: FollowerStats,
    /// Candidate bases for page patches (`bases.rs`).
    bases: Bases,
    /// Set when the caller stops: waits end early ([`Follower::stop_on`]).
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// A generation of the log whose checksum chain breaks before SQLite's published end.
    unchained: Option<Unchained>,
    /// A published end (`-shm`) that the log, read again from its first frame, showed to be
    /// wrong: not acted on again while it stays the same.
    disbelieved: Option<Published>,
}

/// A generation of the log whose checksum chain breaks before the end SQLite published (a
/// damaged log; or frames written by someone who can write it, the app's user). Every page
/// is compared once (a heal); after that, until the log restarts, its frames are followed by
/// their headers alone: those up to SQLite's published end, of this generation, name the pages
/// committed since. So a damaged log costs one comparison, not one at every poll. What a
/// damaged header could hide (a wrong page number) is found by the next rebase's comparison.
struct Unchained {
    salts: (u32, u32),
    /// The next slot to read; 0 until the heal has compared every page.
    next: u32,
    /// The header of the last frame read (slot `next - 1`), as read: SQLite rebuilding its
    /// wal-index from a damaged log (a writer killed while writing the index, or the index's
    /// two copies made to differ) stops at the damage, drops every commit after it and
    /// writes new ones over those slots, in the same generation. Seen as the published end
    /// going back before `next` or this header changing: then every page is compared again.
    last: Option<FrameHeader>,
}

fn begin(conn: &Connection, path: &Path) -> Result<()> {
    conn.execute_batch("BEGIN DEFERRED")
        .map_err(|e| sql_err(path, "begin read transaction", e))?;
    // The first read fixes the snapshot.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| sql_err(path, "read schema", e))?;
    Ok(())
}

fn end(conn: &Connection) {
    let _ = conn.execute_batch("COMMIT");
}

/// [`super::is_sqlite_file`] without following a symlink or blocking on a FIFO: the app's user may
/// swap the name between the `lstat` above and this open.
fn is_sqlite_file_nofollow(path: &Path) -> Result<bool> {
    super::has_sqlite_header(path, true)
}

fn open_conn(real: &Path, path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(
        real,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(|e| sql_err(path, "open", e))?;
    c.busy_timeout(Duration::from_secs(5))
        .map_err(|e| sql_err(path, "set busy timeout", e))?;
    // Never write to the app's database: no writes, and no checkpoint when this connection
    // happens to be the last one to close (that would also delete the WAL under the app).
    c.execute_batch("PRAGMA query_only = 1")
        .map_err(|e| sql_err(path, "set query_only", e))?;
    c.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|e| sql_err(path, "disable checkpoint on close", e))?;
    Ok(c)
}

/// Opens the `-wal` or `-shm` beside the database, as root, in a directory the app's user
/// controls: no symlink followed, and never blocking (a FIFO swapped in for the file would
/// block `open` until someone writes to it, hanging the capture thread with its session's
/// lease, and the daemon joining it). `Ok(None)` when there is no such file; anything but a
/// regular file is an error.
fn open_ro(path: &Path) -> std::io::Result<Option<File>> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(Some(f))
}

impl Follower {
    /// Follows the database at `path` whose pages are `table` (checksum `sum`, page size
    /// `page_size`) as of the chain's tip, which ended at WAL position `mark` (if known).
    /// Takes the anchor at once. When the log can be shown to be where `mark` says, the next
    /// poll reads only what was committed since; otherwise it compares every page (a heal).
    pub fn open(
        path: &Path,
        table: Vec<ChunkId>,
        sum: DbChecksum,
        page_size: u32,
        mark: Option<&WalMark>,
    ) -> Result<Follower> {
        let md = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(path.display(), e).with_kind(ErrorKind::Source))?;
        if md.file_type().is_symlink() || !md.is_file() || !is_sqlite_file_nofollow(path)? {
            return Err(src_err(
                path,
                "is not a SQLite database file (or is a symlink): continuous capture follows a database only by its real path",
            ));
        }
        let real = match (path.parent(), path.file_name()) {
            (Some(dir), Some(name)) => dir
                .canonicalize()
                .map_err(|e| Error::io(dir.display(), e).with_kind(ErrorKind::Source))?
                .join(name),
            _ => path.to_path_buf(),
        };
        let anchor = open_conn(&real, path)?;
        let spare = open_conn(&real, path)?;
        let mode: String = anchor
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sql_err(path, "read journal mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(src_err(
                path,
                format!("is in journal mode {mode:?}; continuous capture follows the write-ahead log"),
            )
            .with_hint("switch the app's database to WAL (PRAGMA journal_mode=WAL), or drop `continuous` for this app and rely on scheduled backups"));
        }
        let ps: u32 = anchor
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(|e| sql_err(path, "read page size", e))?;
        let mut wal_path = real.clone().into_os_string();
        wal_path.push("-wal");
        let mut shm_path = real.clone().into_os_string();
        shm_path.push("-shm");
        let mut f = Follower {
            path: path.to_path_buf(),
            anchor,
            spare,
            anchored: false,
            safe: false,
            wal_path: wal_path.into(),
            shm_path: shm_path.into(),
            wal: None,
            shm: None,
            cursor: None,
            wal_len_max: 0,
            carry: BTreeSet::new(),
            table,
            sum,
            page_size,
            must_heal: None,
            released: None,
            yield_now: false,
            yielded: false,
            stats: FollowerStats::default(),
            bases: Bases::default(),
            stop: None,
            unchained: None,
            disbelieved: None,
        };
        if ps != page_size {
            f.must_heal = Some(format!("the page size changed from {page_size} to {ps}"));
            f.page_size = ps;
        }
        begin(&f.anchor, path)?;
        f.anchored = true;
        f.open_wal()?;
        // The anchor first, then the log: everything committed after the anchor's snapshot
        // is in frames read from here on.
        let resumed = match (mark, f.wal.as_ref()) {
            (Some(m), Some(w)) => WalCursor::resume(w, m)?,
            _ => None,
        };
        match resumed {
            Some(c) => {
                f.cursor = Some(c);
                let mut carry = BTreeSet::new();
                f.scan(&mut carry)?;
                f.carry = carry;
                // As after a handover: the read counts only if no restart began meanwhile.
                let same = match (&f.wal, &f.cursor) {
                    (Some(w), Some(c)) => still_generation(w, c)?,
                    _ => false,
                };
                if !same && f.must_heal.is_none() {
                    f.must_heal = Some("the WAL restarted while the capture caught up".into());
                }
                f.safe = f.must_heal.is_none();
            }
            None if f.must_heal.is_none() => {
                f.must_heal = Some(match mark {
                    Some(_) => {
                        "the WAL moved on since the last delta (restarted or replaced)".into()
                    }
                    None => "no WAL position recorded for this chain".into(),
                })
            }
            None => {}
        }
        Ok(f)
    }

    /// The page table as last captured.
    pub fn table(&self) -> &[ChunkId] {
        &self.table
    }

    /// Its checksum.
    pub fn checksum(&self) -> DbChecksum {
        self.sum
    }

    /// Page size.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// Counters.
    pub fn stats(&self) -> &FollowerStats {
        &self.stats
    }

    fn open_wal(&mut self) -> Result<()> {
        if self.wal.is_none() {
            self.wal = open_ro(&self.wal_path)
                .map_err(|e| Error::io(self.wal_path.display(), e).with_kind(ErrorKind::Source))?;
        }
        Ok(())
    }

    /// Ends [`Follower::wait`] and the wait for a checkpointer to finish early once `stop` is
    /// set, so a stopping daemon is not held for up to an interval (or the 30 s a stuck
    /// checkpointer may take): the final capture runs at once.
    pub fn stop_on(&mut self, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.stop = Some(stop);
    }

    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Sleeps up to `dur`, looking every 20 ms for another process waiting on a FULL, RESTART
    /// or TRUNCATE checkpoint (our snapshot holds it, and it holds the app's writers). Returns
    /// early when one waits; the next [`Follower::poll`] captures and lets go.
    pub fn wait(&mut self, dur: Duration) {
        let until = Instant::now() + dur;
        if self.released.is_some() {
            // Right after a handover: anchor again as soon as the checkpoint is done, not at
            // the next interval (by then the log may have restarted more than once).
            let mut dirty = std::mem::take(&mut self.carry);
            if let Err(e) = self.reanchor(&mut dirty) {
                self.must_heal = Some(format!("anchoring again failed: {e}"));
            }
            self.carry = dirty;
        }
        loop {
            let now = Instant::now();
            if now >= until || self.stopping() {
                return;
            }
            if self.anchored && self.checkpointer_waiting() {
                self.yield_now = true;
                return;
            }
            if self.anchored && self.must_heal.is_none() {
                // Read the new frame headers as they come (each is read once either way): when
                // the log reaches the handover size, capture now and let go rather than at the
                // end of the interval (an app may write thousands of frames a second).
                // (Only when this scan read on: a log still long after a handover, the app
                // quiet, stays long until the app's next write restarts it, and returning
                // at once every time would spin.)
                let before = self.log_position();
                let mut carry = std::mem::take(&mut self.carry);
                let res = self.scan(&mut carry);
                self.carry = carry;
                let position = self.log_position();
                if res.is_err() || (position > HANDOVER_FRAMES && position != before) {
                    return;
                }
            }
            std::thread::sleep(PROBE_EVERY.min(until - now));
        }
    }

    /// How far into the log's current generation the follower has read (the next frame).
    fn log_position(&self) -> u32 {
        let chained = self.cursor.as_ref().map_or(0, WalCursor::position);
        let unchained = self.unchained.as_ref().map_or(0, |u| u.next);
        chained.max(unchained)
    }

    /// The `-shm` file, opened (and held, `held.rs`) the first time it is a regular file.
    fn shm_file(&mut self) -> Option<&std::sync::Arc<File>> {
        if self.shm.is_none() {
            self.shm = super::held::open_held(&self.shm_path, true).ok().flatten();
        }
        self.shm.as_ref()
    }

    /// Whether another process holds both the WAL's WRITE and CKPT locks: a checkpoint that
    /// blocks writers (FULL, RESTART, TRUNCATE) is running or waiting for readers.
    fn checkpointer_waiting(&mut self) -> bool {
        // Not a regular file: no checkpointer can be seen (the app's blocking checkpoints
        // then wait for the handover).
        let Some(shm) = self.shm_file() else {
            return false;
        };
        let holder = |start: i64| {
            // SAFETY: a zeroed flock is a valid argument; F_GETLK only writes into it.
            let mut fl: libc::flock = unsafe { std::mem::zeroed() };
            fl.l_type = libc::F_WRLCK as _;
            fl.l_whence = libc::SEEK_SET as _;
            fl.l_start = start as _;
            fl.l_len = 1;
            // SAFETY: valid fd and pointer to a flock for the call's duration.
            let r = unsafe { libc::fcntl(shm.as_raw_fd(), libc::F_GETLK, &mut fl) };
            (r == 0 && fl.l_type != libc::F_UNLCK as libc::c_short).then_some(fl.l_pid)
        };
        // Both held by one process: its checkpoint (a writer in one process beside a PASSIVE
        // checkpoint in another holds them too, and waits for nothing).
        match (holder(SHM_WRITE_LOCK), holder(SHM_WRITE_LOCK + 1)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// Reads the frames committed since the last scan into `pages`. A restarted log is
    /// followed into its new generation when the anchor makes that safe; otherwise the next
    /// capture heals.
    fn scan(&mut self, pages: &mut BTreeSet<u32>) -> Result<()> {
        self.open_wal()?;
        if self.wal.is_none() {
            return Ok(());
        }
        // What SQLite had published before the frames are read (see the divergence check
        // below); read first, so a transaction published after it is not taken as unread.
        let published = self
            .shm_file()
            .and_then(|s| read_published(s).ok().flatten());
        let Some(wal) = &self.wal else {
            return Ok(());
        };
        if let Some(u) = self.unchained.as_ref().filter(|u| u.next > 0) {
            if read_header(wal)?.is_some_and(|h| (h.salt1, h.salt2) == u.salts) {
                return self.scan_unchained(pages, published);
            }
        }
        let len = wal
            .metadata()
            .map_err(|e| Error::io(self.wal_path.display(), e))?
            .len();
        let Some(cursor) = &mut self.cursor else {
            // No log yet (or none readable): every frame that appears is new, if the anchor
            // was held since; else nothing is known about what came and went.
            if let Some(c) = WalCursor::open(wal)? {
                if !self.safe {
                    self.must_heal = Some("no WAL position to start from".into());
                }
                self.cursor = Some(c);
                self.wal_len_max = 0;
                return self.scan(pages);
            }
            return Ok(());
        };
        self.wal_len_max = self.wal_len_max.max(len);
        match cursor.poll(wal)? {
            Poll::Committed(frames) => {
                add(pages, &frames, &mut self.stats);
                // A writer that died between writing a commit frame and publishing it left
                // an orphan: the cursor read it (and chained its checksum), then the next
                // writer overwrote it from SQLite's published end with frames chained from
                // there, which the cursor's chain rejects: it would stop there for good,
                // every later commit unseen. Seen as SQLite having published a commit frame
                // of this generation that the read did not reach. The generation is then
                // read again from its first frame (the pages of at most one handover's worth
                // of frames, compared in the next snapshot), which needs no anchor: nothing
                // of this generation was overwritten by another.
                // (Also when SQLite published a commit in the very slot of the cursor's last
                // one, with another checksum: a transaction as long as the orphan replaced it.)
                // (Not a published end the log was already read again against and showed to
                // be wrong: the disagreement is then in `-shm`, which a local user can write,
                // and reading the generation again at every scan would change nothing.)
                let disbelieved = self.disbelieved;
                let short = |cur: &WalCursor| {
                    let mark = cur.mark();
                    published.is_some_and(|p| {
                        (p.salt1, p.salt2) == (cur.header().salt1, cur.header().salt2)
                            && Some(p) != disbelieved
                            && (p.max_frame > mark.frame
                                || (p.max_frame == mark.frame
                                    && mark.frame > 0
                                    && p.frame_cksum != (mark.cksum[0], mark.cksum[1])))
                    })
                };
                let cur = self.cursor.as_mut().expect("cursor");
                if short(cur) && cur.in_transaction() {
                    // First the cheap case: the open transaction the cursor had read part of
                    // was rolled back and a shorter one committed over it (the cursor waits
                    // past its end): read again from the last commit.
                    cur.rewind();
                    if let Poll::Committed(frames) = cur.poll(wal)? {
                        add(pages, &frames, &mut self.stats);
                    }
                }
                let cur = self.cursor.as_ref().expect("cursor");
                if !short(cur) {
                    return Ok(());
                }
                let salts = (cur.header().salt1, cur.header().salt2);
                let stopped = cur.position();
                let was = cur.mark();
                let mut again =
                    WalCursor::open(wal)?.filter(|c| (c.header().salt1, c.header().salt2) == salts);
                let reached = match &mut again {
                    Some(c) => match c.poll(wal)? {
                        Poll::Committed(frames) => {
                            add(pages, &frames, &mut self.stats);
                            c.mark().frame
                        }
                        Poll::Restarted => 0,
                    },
                    None => 0,
                };
                self.stats.rewinds += 1;
                let max = published.map_or(0, |p| p.max_frame);
                tracing::warn!(
                    "{}: the WAL's checksum chain broke at frame {stopped}, before the last \
                     published commit (frame {max}; a writer died mid-commit?): read its \
                     generation again from the start",
                    self.path.display()
                );
                match again {
                    Some(c) if reached >= max => {
                        let same = c.mark();
                        if (same.frame, same.cksum) == (was.frame, was.cksum) {
                            self.disbelieved = published;
                        }
                        self.cursor = Some(c);
                        Ok(())
                    }
                    // Restarted meanwhile, or the log itself breaks before what SQLite
                    // published (damaged): compare every page, then follow the frames by
                    // their headers.
                    _ => {
                        self.unchained = Some(Unchained {
                            salts,
                            next: 0,
                            last: None,
                        });
                        self.must_heal = Some(format!(
                            "the WAL's checksum chain breaks before its last published commit (frame {max}, read to {reached})"
                        ));
                        Ok(())
                    }
                }
            }
            Poll::Restarted if self.safe => {
                tracing::debug!("{}: WAL restarted under the anchor", self.path.display());
                self.cursor = None;
                self.wal_len_max = 0;
                self.scan(pages)
            }
            Poll::Restarted => {
                self.must_heal = Some("the WAL was restarted while no snapshot was held".into());
                Ok(())
            }
        }
    }

    /// [`Follower::scan`] of a generation whose chain is broken ([`Unchained`]): the frame
    /// headers from the last one read up to SQLite's published end.
    fn scan_unchained(
        &mut self,
        pages: &mut BTreeSet<u32>,
        published: Option<Published>,
    ) -> Result<()> {
        let (Some(u), Some(wal)) = (self.unchained.as_mut(), self.wal.as_ref()) else {
            return Ok(());
        };
        let p = match published {
            Some(p) if (p.salt1, p.salt2) == u.salts => p,
            // The wal-index names the next generation (a checkpoint emptied this one) or
            // cannot be read: what was committed since the last read is not known.
            _ => {
                self.unchained = None;
                self.must_heal =
                    Some("a damaged WAL was checkpointed while its frames were followed".into());
                return Ok(());
            }
        };
        let went_back = match u.last {
            Some(last) => {
                p.max_frame < last.frame.index
                    || read_frame_header(wal, self.page_size, last.frame.index)? != Some(last)
            }
            None => p.max_frame.saturating_add(1) < u.next,
        };
        if went_back {
            self.unchained = None;
            self.must_heal = Some(
                "the frames of a damaged WAL already read were replaced (its wal-index was rebuilt)"
                    .into(),
            );
            return Ok(());
        }
        let mut frames = Vec::new();
        while u.next <= p.max_frame {
            // Published but not in the file: nothing more to read now.
            let Some(h) = read_frame_header(wal, self.page_size, u.next)? else {
                break;
            };
            if h.salts != u.salts {
                let why = format!(
                    "frame {} of a damaged WAL, before its published end, is not of its generation",
                    u.next
                );
                self.unchained = None;
                self.must_heal = Some(why);
                return Ok(());
            }
            frames.push(h.frame);
            u.last = Some(h);
            u.next += 1;
        }
        add(pages, &frames, &mut self.stats);
        Ok(())
    }

    /// Anchors again after a handover and learns what was committed meanwhile: the frames
    /// appended (same generation), or the old generation's tail plus the new generation when
    /// the log restarted exactly once and the tail is intact; else the next capture heals.
    fn reanchor(&mut self, pages: &mut BTreeSet<u32>) -> Result<()> {
        let since = self.released.take().expect("released");
        let old = self.cursor.clone();
        if self.yielded {
            // A FULL/RESTART/TRUNCATE checkpoint of another process was waiting for our
            // snapshot: anchor again the moment it is done (it holds the app's writers until
            // then, and it restarts the log itself).
            let busy_until = Instant::now() + Duration::from_secs(30);
            // (Not past a stop: the final capture anchors at once and lets go right after.)
            while self.checkpointer_waiting() && Instant::now() < busy_until && !self.stopping() {
                std::thread::sleep(Duration::from_millis(1));
            }
        } else {
            // Give the app's checkpoint its moment: it restarts the log at its next commit
            // once everything is backfilled and no reader holds it. Anchor again as soon as
            // the log shows a new generation (an emptied file counts), before a second
            // restart could follow.
            while since.elapsed() < RESTART_WAIT && !self.stopping() {
                let restarted = match (&self.wal, &old) {
                    (Some(w), Some(c)) => read_header(w)?
                        .is_none_or(|h| (h.salt1, h.salt2) != (c.header().salt1, c.header().salt2)),
                    _ => false,
                };
                if restarted {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        begin(&self.anchor, &self.path)?;
        self.anchored = true;
        let (Some(wal), Some(mut old)) = (self.wal.as_ref(), old) else {
            // There was no position to prove anything from. Only a log that still has no
            // valid header shows that nothing was committed meanwhile (a restart while no
            // snapshot was held could otherwise have come and gone unseen).
            let empty = match &self.wal {
                Some(w) => read_header(w)?.is_none(),
                None => true,
            };
            if !empty {
                self.must_heal =
                    Some("the snapshot was let go with no WAL position to prove from".into());
                return Ok(());
            }
            self.safe = true;
            return self.scan(pages);
        };
        let header = read_header(wal)?;
        let same =
            header.is_some_and(|h| (h.salt1, h.salt2) == (old.header().salt1, old.header().salt2));
        if same {
            // The log may restart between that look and this read: read the frames through
            // the cursor (which checks the header again) and only a read that found the same
            // generation proves the anchor covers what follows. A restart seen now was not
            // under the anchor: the rule below decides (an attack on this with a loaded test
            // machine lost the old tail: `scan` took the restart as one under the anchor).
            let mut cursor = old.clone();
            if let Poll::Committed(frames) = cursor.poll(wal)? {
                // And the header once more: a restart that began while the frames were read
                // overwrites slots from 1 up, and a read that met a new generation's frame
                // stopped there as if the log ended (the old tail lost). Only a header
                // unchanged after the read proves the read saw the whole old generation.
                if still_generation(wal, &cursor)? {
                    add(pages, &frames, &mut self.stats);
                    self.cursor = Some(cursor);
                    self.wal_len_max = self.wal_len_max.max(len_of(wal, &self.wal_path)?);
                    self.safe = true;
                    return Ok(());
                }
            }
        }
        // Restarted while no snapshot was held. Exactly one restart by a writer gives salt-1 +
        // 1; the new generation overwrote slots 1..=k; the old one's frames from slot q on
        // are intact if k < q; the tail ends at another generation's frame or at the end of a
        // file never shorter than seen before.
        // The first slot not read as committed: frames of a transaction still open when the
        // snapshot was let go are read again (the cursor rewinds to its last commit), so a
        // new generation that reached them destroyed part of the tail.
        let q = old.mark().frame + 1;
        let len = wal
            .metadata()
            .map_err(|e| Error::io(self.wal_path.display(), e))?
            .len();
        let tail = old.poll_tail(wal)?;
        let r = old.position();
        let end_ok = match old.slot_salts(wal, r)? {
            // The end of the file: the tail is whole unless the file was cut shorter than it
            // was seen. (A checkpointer seen waiting is never taken as proof that no frame
            // followed the last capture: two samples of its locks cannot show it held the
            // writers all along, and a local user can hold those lock bytes; so an emptied log
            // after a TRUNCATE checkpoint costs a comparison.)
            //
            // "Not shorter than seen" is not enough: frames appended after the last scan
            // (while no snapshot was held) may run past `journal_size_limit`, and the commit
            // that restarts the log truncates the file to that limit, cutting them off. So
            // the tail must also end on a commit frame (no frames of a transaction left
            // pending) exactly at the end of the file (no partial frame): a cut that falls
            // exactly on a frame boundary after a commit frame is the case left.
            None => len >= self.wal_len_max && !old.in_transaction() && old.end_offset() == len,
            // Another generation's frame (older than the one read): not ours, so the tail
            // ended before it. A frame of this generation that did not check out (its page
            // cut off by the truncation to `journal_size_limit`, whose header is still
            // there) proves nothing.
            Some(salts) => salts != (old.header().salt1, old.header().salt2),
        };
        let mut new = match WalCursor::open(wal)? {
            Some(c) => c,
            None => {
                self.must_heal = Some("the WAL was emptied while no snapshot was held".into());
                return Ok(());
            }
        };
        let newer = match new.poll(wal)? {
            Poll::Committed(f) => f,
            Poll::Restarted => Vec::new(),
        };
        // How far the new generation reaches: its frames read, and after them every slot
        // whose header already bears its salts (a frame of a transaction still being
        // written, or its header written before its page). Those overwrote the old tail
        // too, and the tail read above stopped at the first of them as if the old
        // generation ended there. Measured after the tail was read: the new generation
        // writes its slots in order from 1, so what it reaches now bounds what it had
        // reached then.
        let mut k = new.position() - 1;
        while new.slot_salts(wal, k + 1)? == Some((new.header().salt1, new.header().salt2)) {
            k += 1;
        }
        // And the header once more, as in the same-generation case: a second restart
        // while the new generation was read (possible when the anchor began with that
        // generation already backfilled, on `READ(0)`) overwrites its frames from slot 1
        // and the read stops there, its later commits unread. Only a header unchanged
        // after the reads proves they saw the whole new generation.
        let whole = still_generation(wal, &new)?;
        let once = new.header().salt1 == old.header().salt1.wrapping_add(1);
        if once && whole && k < q && end_ok {
            add(pages, &tail, &mut self.stats);
            add(pages, &newer, &mut self.stats);
            self.cursor = Some(new);
            self.wal_len_max = len;
            self.safe = true;
            Ok(())
        } else {
            self.must_heal = Some(format!(
                "the WAL restarted while no snapshot was held and its old tail cannot be shown complete (salt-1 {} -> {}, new frames {k}, read up to {q}, new generation read whole: {whole})",
                old.header().salt1,
                new.header().salt1
            ));
            self.cursor = Some(new);
            self.wal_len_max = len;
            self.safe = true;
            Ok(())
        }
    }

    /// Whether a snapshot taken now holds every transaction whose commit frame the cursor
    /// read: the wal-index header published them (or names a later generation, which SQLite
    /// starts only once every frame of this one is in the database file). Waits up to
    /// [`PUBLISH_WAIT`] for the app to publish a commit it has written.
    fn wait_published(&mut self) -> bool {
        let Some(mark) = self.cursor.as_ref().map(WalCursor::mark) else {
            return true;
        };
        if mark.frame == 0 {
            // Nothing of this generation read; earlier ones are in the database file.
            return true;
        }
        let Some(shm) = self.shm_file().cloned() else {
            return false;
        };
        let until = Instant::now() + PUBLISH_WAIT;
        loop {
            match read_published(&shm) {
                // Another generation counts only once the log itself has left the mark's
                // (SQLite starts one only when every frame of the last is in the database):
                // after a TRUNCATE checkpoint the wal-index names the next salts while a
                // writer that never restarted the log itself writes the new log under random
                // ones, so a commit under the mark's salts may still be unpublished.
                Ok(Some(p))
                    if (p.salt1, p.salt2) != (mark.salt1, mark.salt2)
                        && self.wal.as_ref().is_some_and(|w| {
                            // An emptied log (TRUNCATE) left it too.
                            read_header(w).is_ok_and(|h| {
                                h.is_none_or(|h| (h.salt1, h.salt2) != (mark.salt1, mark.salt2))
                            })
                        }) =>
                {
                    return true
                }
                // The mark's own slot counts only with the mark's checksum: else an orphan
                // (a killed writer's unpublished commit) was replaced there by a transaction
                // of the same length, and the next scan reads the generation again.
                Ok(Some(p))
                    if p.max_frame > mark.frame
                        || (p.max_frame == mark.frame
                            && p.frame_cksum == (mark.cksum[0], mark.cksum[1])) =>
                {
                    return true
                }
                Err(_) => return false,
                _ => {}
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lets go of every snapshot so the app's checkpoint can restart the log.
    fn release(&mut self, for_checkpoint: bool) {
        end(&self.anchor);
        end(&self.spare);
        self.anchored = false;
        self.safe = false;
        self.released = Some(Instant::now());
        // Still waiting now that nothing of ours holds it: anchor again the moment it is done.
        self.yielded = for_checkpoint && self.checkpointer_waiting();
        self.stats.handovers += 1;
        if for_checkpoint {
            self.stats.checkpoint_yields += 1;
        }
    }

    /// Whether anything was committed since the last poll (or the follower must compare
    /// every page): reads the WAL's new frame headers, nothing else, so the caller opens a
    /// repository session only when there is something to write. Anchors again first when a
    /// handover let go of the snapshot, and lets go now for a waiting checkpointer when there
    /// is nothing to capture.
    pub fn has_news(&mut self) -> Result<bool> {
        let mut dirty = std::mem::take(&mut self.carry);
        let res = self.news_into(&mut dirty);
        self.carry = dirty;
        res?;
        if self.carry.is_empty() && self.must_heal.is_none() && std::mem::take(&mut self.yield_now)
        {
            self.release(true);
        }
        Ok(!self.carry.is_empty() || self.must_heal.is_some())
    }

    fn news_into(&mut self, dirty: &mut BTreeSet<u32>) -> Result<()> {
        if self.released.is_some() {
            self.reanchor(dirty)?;
        }
        if !self.anchored {
            begin(&self.anchor, &self.path)?;
            self.anchored = true;
        }
        if self.must_heal.is_none() {
            self.scan(dirty)?;
        }
        Ok(())
    }

    /// One interval: the pages committed since the last poll, read in a new snapshot and
    /// stored through `writer` (only pages whose content changed end up in the change).
    /// `None` when nothing was committed (an idle database costs a header read). On an error
    /// the follower is left as before the call's changes; drop it and open a new one.
    pub fn poll(
        &mut self,
        writer: &mut ChunkWriter<'_>,
        key: &ChecksumKey,
    ) -> Result<Option<Change>> {
        self.stats.polls += 1;
        let mut dirty = std::mem::take(&mut self.carry);
        if let Err(e) = self.news_into(&mut dirty) {
            self.carry = dirty;
            return Err(e);
        }
        if let Some(why) = self.must_heal.take() {
            return self.heal(writer, key, why).map(Some);
        }
        let yield_now = std::mem::take(&mut self.yield_now);
        if dirty.is_empty() {
            if yield_now {
                self.release(true);
            }
            return Ok(None);
        }
        // Every frame read so far must be in the snapshot taken below, and SQLite publishes a
        // transaction to readers (the wal-index header in `-shm`) only after writing its
        // frames to the log: a commit read a moment ago may not be visible yet. Wait briefly
        // until it is; if it is not, these pages are read again next poll, and this change
        // names no WAL position (a restarted capture resuming from it would skip them).
        let covered = self.wait_published();
        // Where a restarted capture must start again: before the frames read below, whose
        // pages are read in the new snapshot but may have changed again after it.
        let mark = if covered {
            self.cursor.as_ref().map(WalCursor::mark)
        } else {
            None
        };
        // The time before the snapshot: every transaction that returned before it is in the
        // snapshot (taken after, a commit between the snapshot and the clock read would be
        // dated before `time` yet missing from it; restore --at would lose it).
        let time = jiff::Timestamp::now();
        begin(&self.spare, &self.path)?;
        let mut more = BTreeSet::new();
        if let Err(e) = self.scan(&mut more) {
            end(&self.spare);
            self.carry = dirty;
            return Err(e);
        }
        if let Some(why) = self.must_heal.take() {
            end(&self.spare);
            return self.heal(writer, key, why).map(Some);
        }
        dirty.extend(more.iter().copied());
        let db = Db {
            conn: &self.spare,
            prev_snapshot: self.anchored.then_some(&self.anchor),
            path: &self.path,
            page_size: self.page_size,
        };
        let st = State {
            table: &mut self.table,
            sum: &mut self.sum,
            stats: &mut self.stats,
            bases: &mut self.bases,
        };
        let change = match read_pages(db, st, Some(&dirty), writer, key, time, mark) {
            Ok(c) => c,
            Err(e) => {
                end(&self.spare);
                self.carry = dirty;
                return Err(e);
            }
        };
        end(&self.anchor);
        std::mem::swap(&mut self.anchor, &mut self.spare);
        self.safe = true;
        self.carry = more;
        if !covered {
            self.stats.unpublished += 1;
            self.carry.extend(dirty);
        }
        let too_long = self.log_position() > HANDOVER_FRAMES;
        if yield_now || too_long {
            self.release(yield_now);
        }
        Ok(change)
    }

    /// Compares every page with the table, in the anchor's snapshot, after reading the log
    /// to its end (so the next poll starts from there).
    fn heal(
        &mut self,
        writer: &mut ChunkWriter<'_>,
        key: &ChecksumKey,
        why: String,
    ) -> Result<Change> {
        self.stats.heals += 1;
        tracing::warn!(
            "{}: comparing every page with the last capture ({why})",
            self.path.display()
        );
        if self.anchored {
            end(&self.anchor);
        }
        self.released = None;
        // Before the snapshot, as in `poll`.
        let time = jiff::Timestamp::now();
        // Also before it: every frame published by then is in the snapshot compared below.
        let published = self
            .shm_file()
            .and_then(|s| read_published(s).ok().flatten());
        begin(&self.anchor, &self.path)?;
        self.anchored = true;
        // The log is read from the start of its current generation; those pages are read
        // again next poll, and a restarted capture starts from there too.
        self.open_wal()?;
        self.cursor = match &self.wal {
            Some(w) => WalCursor::open(w)?,
            None => None,
        };
        // A damaged generation is followed from the frame after what the snapshot holds.
        let generation = self
            .cursor
            .as_ref()
            .map(|c| (c.header().salt1, c.header().salt2));
        // (A published end past the file is not believed: frames not in the file are in no
        // snapshot, and a forged end would make the follower skip what comes.)
        let in_file = match &self.wal {
            Some(w) => frames_in(len_of(w, &self.wal_path)?, self.page_size),
            None => 0,
        };
        self.unchained = match (self.unchained.take(), published) {
            (Some(u), Some(p)) if Some(u.salts) == generation && (p.salt1, p.salt2) == u.salts => {
                let end = p.max_frame.min(in_file);
                let last = match &self.wal {
                    Some(w) if end > 0 => read_frame_header(w, self.page_size, end)?,
                    _ => None,
                };
                Some(Unchained {
                    salts: u.salts,
                    next: end.saturating_add(1),
                    last,
                })
            }
            _ => None,
        };
        self.wal_len_max = 0;
        let mark = self.cursor.as_ref().map(WalCursor::mark);
        self.safe = true;
        let mut carry = BTreeSet::new();
        self.scan(&mut carry)?;
        let db = Db {
            conn: &self.anchor,
            prev_snapshot: None,
            path: &self.path,
            page_size: self.page_size,
        };
        let st = State {
            table: &mut self.table,
            sum: &mut self.sum,
            stats: &mut self.stats,
            bases: &mut self.bases,
        };
        let change = read_pages(db, st, None, writer, key, time, mark)?;
        self.carry = carry;
        let mut change = change.unwrap_or_else(|| Change {
            pairs: Vec::new(),
            page_count: self.table.len() as u32,
            checksum_before: self.sum,
            checksum_after: self.sum,
            time,
            healed: None,
            wal: mark,
            undo: Vec::new(),
            undo_pages: self.table.len(),
        });
        change.healed = Some(why);
        Ok(change)
    }

    /// Starts over from another table (a new chain's base point): the next poll compares
    /// every page with it, so the new chain's first link holds exactly what differs from that
    /// point, whatever this follower saw before (an hourly check that nothing was missed).
    pub fn restart_from(&mut self, table: Vec<ChunkId>, sum: DbChecksum, why: String) {
        self.table = table;
        self.sum = sum;
        self.carry.clear();
        self.must_heal = Some(why);
    }

    /// Undoes `change` after it could not be published: the table and checksum go back, and
    /// its pages are read again at the next poll (their new content is only in the database).
    pub fn rollback(&mut self, change: Change) {
        self.table.resize(change.undo_pages, ChunkId::default());
        for (p, id) in &change.undo {
            if let Some(slot) = self.table.get_mut(*p as usize - 1) {
                *slot = *id;
            }
        }
        self.sum = change.checksum_before;
        self.carry.extend(change.pairs.iter().map(|(p, _)| *p));
        self.carry.extend(
            change
                .undo
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| *p as usize <= self.table.len()),
        );
        if change.healed.is_some() {
            self.must_heal = change.healed;
        }
    }
}

/// Whether the log's header still names the generation `cursor` reads.
fn still_generation(wal: &File, cursor: &WalCursor) -> Result<bool> {
    Ok(read_header(wal)?
        .is_some_and(|h| (h.salt1, h.salt2) == (cursor.header().salt1, cursor.header().salt2)))
}

/// The WAL file's size.
fn len_of(wal: &File, path: &Path) -> Result<u64> {
    Ok(wal
        .metadata()
        .map_err(|e| Error::io(path.display(), e))?
        .len())
}

fn add(pages: &mut BTreeSet<u32>, frames: &[WalFrame], stats: &mut FollowerStats) {
    stats.frames += frames.len() as u64;
    pages.extend(frames.iter().map(|f| f.pgno));
}

/// What [`read_pages`] reads from.
struct Db<'a> {
    conn: &'a Connection,
    /// The previous capture's snapshot (the anchor), for the earlier version of a page that
    /// has no candidate base: a patch against it when it is stored whole.
    prev_snapshot: Option<&'a Connection>,
    path: &'a Path,
    page_size: u32,
}

/// The follower's state a capture updates.
struct State<'a> {
    table: &'a mut Vec<ChunkId>,
    sum: &'a mut DbChecksum,
    stats: &'a mut FollowerStats,
    bases: &'a mut Bases,
}

/// Reads `only` (every page when `None`) in `db`'s snapshot, updates the table and checksum,
/// and returns the change (`None`: no page's content differs and the size is the same). On an
/// error nothing is updated.
fn read_pages(
    db: Db<'_>,
    st: State<'_>,
    only: Option<&BTreeSet<u32>>,
    writer: &mut ChunkWriter<'_>,
    key: &ChecksumKey,
    time: jiff::Timestamp,
    wal: Option<WalMark>,
) -> Result<Option<Change>> {
    let Db {
        conn,
        prev_snapshot,
        path,
        page_size,
    } = db;
    let page_count: u32 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .map_err(|e| sql_err(path, "read page count", e))?;
    let before = *st.sum;
    let old_len = st.table.len();
    let mut updates: Vec<(u32, ChunkId)> = Vec::new();
    let table: &Vec<ChunkId> = st.table;
    let bases: &mut Bases = st.bases;
    let (mut patches, mut patch_bytes) = (0u64, 0u64);
    let interval = only.is_some();
    let mut take = |p: u32, data: &[u8]| -> Result<()> {
        if data.len() != page_size as usize {
            return Err(src_err(
                path,
                format!("page {p} has {} bytes, not {page_size}", data.len()),
            ));
        }
        // An interval's pages go as patches against their base (`bases.rs`) when that pays;
        // a comparison of every page (rare) stores pages whole and keeps no way back.
        let id = if interval {
            let (id, how, base) =
                store_against_base(writer, bases, prev_snapshot, table, path, p, data)?;
            match how {
                PageStored::Patch => {
                    patches += 1;
                    patch_bytes += base.as_ref().map_or(0, |(_, _, n)| *n as u64);
                }
                PageStored::Whole | PageStored::Known => {}
            }
            // The way back from this version to its base: empty when it is its own base
            // (stored whole, or known: the writer decides next time whether it may serve).
            match (how, base) {
                (PageStored::Patch, Some((base_id, base, _))) => {
                    if let Some(back) = page_patch::encode(&id, data, &base, usize::MAX) {
                        bases.put(p, id, base_id, back);
                    }
                }
                _ => bases.put(p, id, id, Vec::new()),
            }
            id
        } else {
            writer.store_page(data)?
        };
        if table.get(p as usize - 1) != Some(&id) {
            updates.push((p, id));
        }
        Ok(())
    };
    let mut pages_read = 0u64;
    match only {
        Some(pages) => {
            let mut want: BTreeSet<u32> = pages
                .iter()
                .copied()
                .filter(|&p| p >= 1 && p <= page_count)
                .collect();
            want.extend((old_len as u32 + 1)..=page_count);
            let mut q = conn
                .prepare_cached("SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1")
                .map_err(|e| sql_err(path, "read pages (sqlite_dbpage)", e))?;
            for p in want {
                let mut rows = q.query([p]).map_err(|e| sql_err(path, "read page", e))?;
                let row = rows
                    .next()
                    .map_err(|e| sql_err(path, "read page", e))?
                    .ok_or_else(|| src_err(path, format!("page {p} of {page_count} is missing")))?;
                let data = row
                    .get_ref(0)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(|e| sql_err(path, "read page", e))?;
                take(p, data)?;
                pages_read += 1;
            }
        }
        None => {
            let mut q = conn
                .prepare("SELECT pgno, data FROM sqlite_dbpage('main')")
                .map_err(|e| sql_err(path, "read pages (sqlite_dbpage)", e))?;
            let mut rows = q.query([]).map_err(|e| sql_err(path, "read pages", e))?;
            let mut n = 0u32;
            while let Some(row) = rows.next().map_err(|e| sql_err(path, "read pages", e))? {
                let p: u32 = row
                    .get(0)
                    .map_err(|e| sql_err(path, "read page number", e))?;
                n += 1;
                if p != n {
                    return Err(src_err(
                        path,
                        format!("page {p} came where {n} was expected"),
                    ));
                }
                let data = row
                    .get_ref(1)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(|e| sql_err(path, "read page", e))?;
                take(p, data)?;
                pages_read += 1;
            }
            if n != page_count {
                return Err(src_err(
                    path,
                    format!("read {n} pages, expected {page_count}"),
                ));
            }
        }
    }
    st.stats.pages_read += pages_read;
    st.stats.patches += patches;
    st.stats.patch_bytes += patch_bytes;
    if (page_count as usize) < old_len {
        st.bases.truncate(page_count + 1);
    }
    // Apply: truncate, grow, replace; the checksum follows each step.
    let mut undo: Vec<(u32, ChunkId)> = Vec::new();
    let mut sum = before;
    while st.table.len() > page_count as usize {
        let p = st.table.len() as u32;
        let old = st.table.pop().expect("not empty");
        sum.toggle(key, p, &old);
        undo.push((p, old));
    }
    let kept = st.table.len();
    st.table.resize(page_count as usize, ChunkId::default());
    for (p, id) in &updates {
        let i = *p as usize - 1;
        if i < kept {
            sum.toggle(key, *p, &st.table[i]);
            undo.push((*p, st.table[i]));
        }
        st.table[i] = *id;
        sum.toggle(key, *p, id);
    }
    *st.sum = sum;
    if updates.is_empty() && page_count as usize == old_len {
        return Ok(None);
    }
    Ok(Some(Change {
        pairs: updates,
        page_count,
        checksum_before: before,
        checksum_after: sum,
        time,
        healed: None,
        wal,
        undo,
        undo_pages: old_len,
    }))
}

/// Stores page `p` (`data`) through `writer`, as a patch against its base when the way
/// back from its last captured version works out: that version as the previous snapshot
/// holds it, turned into the base by the cached reverse patch (or the version itself when
/// it is its own base, or nothing is cached). Returns how it was stored and the base offered
/// (id, bytes, and the patch's stored length when one was written).
#[allow(clippy::type_complexity)]
fn store_against_base(
    writer: &mut ChunkWriter<'_>,
    bases: &mut Bases,
    prev_snapshot: Option<&Connection>,
    table: &[ChunkId],
    path: &Path,
    p: u32,
    data: &[u8],
) -> Result<(ChunkId, PageStored, Option<(ChunkId, Vec<u8>, usize)>)> {
    let (Some(c), Some(old)) = (prev_snapshot, table.get(p as usize - 1)) else {
        let (id, how) = writer.store_page_against(data, None)?;
        return Ok((id, how, None));
    };
    let Some(prev) = page_in(c, path, p)? else {
        let (id, how) = writer.store_page_against(data, None)?;
        return Ok((id, how, None));
    };
    // The writer checks that the base's bytes hash to its id: a snapshot that moved on (after
    // a handover) or a stale entry gives other bytes, and the page goes whole.
    let base = match bases.get(p) {
        Some(w) if w.from == *old && !w.back.is_empty() => {
            let mut b = Vec::with_capacity(prev.len());
            page_patch::apply(&w.back, old, &prev, &mut b)
                .ok()
                .map(|()| (w.base, b))
        }
        _ => None,
    }
    .unwrap_or((*old, prev));
    let stored_before = writer.summary_bytes_new();
    let (id, how) = writer.store_page_against(data, Some((&base.0, &base.1)))?;
    let n = (writer.summary_bytes_new() - stored_before) as usize;
    Ok((id, how, Some((base.0, base.1, n))))
}

/// Page `p` as `conn`'s snapshot holds it (`None` past its end).
fn page_in(conn: &Connection, path: &Path, p: u32) -> Result<Option<Vec<u8>>> {
    let mut q = conn
        .prepare_cached("SELECT data FROM sqlite_dbpage('main') WHERE pgno = ?1")
        .map_err(|e| sql_err(path, "read pages (sqlite_dbpage)", e))?;
    let mut rows = q.query([p]).map_err(|e| sql_err(path, "read page", e))?;
    match rows.next().map_err(|e| sql_err(path, "read page", e))? {
        Some(row) => Ok(Some(
            row.get::<_, Vec<u8>>(0)
                .map_err(|e| sql_err(path, "read page", e))?,
        )),
        None => Ok(None),
    }
}

/// The size of the database file and its WAL, for logs.
pub fn wal_size(db: &Path) -> u64 {
    let mut p = db.as_os_str().to_os_string();
    p.push("-wal");
    std::fs::metadata(PathBuf::from(p)).map_or(0, |m| m.size())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    fn app_db(dir: &Path) -> (Connection, PathBuf) {
        let path = dir.join("app.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        (c, path)
    }

    /// Runs `f` on a thread; fails (after unblocking `fifo` by opening it for writing) when it
    /// does not return within 10 s.
    fn returns_soon<T: Send + 'static>(fifo: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(v) => v,
            Err(_) => {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(fifo);
                panic!("the follower blocked on a FIFO the app's user put in place");
            }
        }
    }

    /// The app's user owns the directory: it can swap `-shm` for a FIFO once SQLite has its
    /// descriptor of the real one. The follower opens `-shm` by path (to probe the locks)
    /// and must not block in `open`.
    #[test]
    fn a_fifo_in_place_of_the_shm_does_not_hang_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let (_app, path) = app_db(dir.path());
        let mut f = Follower::open(&path, Vec::new(), DbChecksum::default(), 4096, None).unwrap();
        let shm = dir.path().join("app.db-shm");
        std::fs::rename(&shm, dir.path().join("moved-shm")).unwrap();
        mkfifo(&shm);
        returns_soon(&shm, move || f.wait(Duration::from_millis(100)));
    }

    /// Likewise the database itself, checked before the follower opens it: a FIFO there is
    /// refused, never opened in blocking mode.
    #[test]
    fn a_fifo_at_the_database_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let (_app, path) = app_db(dir.path());
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        let r = returns_soon(&fifo, {
            let fifo = fifo.clone();
            move || is_sqlite_file_nofollow(&fifo)
        });
        assert!(!matches!(r, Ok(true)), "{r:?}");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(
            is_sqlite_file_nofollow(&link).is_err(),
            "a symlink is not followed"
        );
    }

    /// A FIFO (or anything but a regular file) at `-wal` is an error the capture reports,
    /// never a blocked thread and never "no log, nothing changed".
    #[test]
    fn a_fifo_in_place_of_the_wal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("x-wal");
        mkfifo(&fifo);
        let r = returns_soon(&fifo, {
            let fifo = fifo.clone();
            move || open_ro(&fifo).map(|f| f.is_some())
        });
        assert!(r.is_err(), "{r:?}");
        assert!(open_ro(&dir.path().join("none")).unwrap().is_none());
    }

    /// A child process, killed when dropped (a failing test leaves none running).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A follower of `$path` that made its first capture (comparing every page) into a
    /// repository in `$dir`: binds the repository, the backup session, its writer `$w`, the
    /// checksum key `$key` and the follower `$f` (a macro: the writer borrows the session,
    /// which borrows the repository).
    macro_rules! first_capture {
        ($dir:ident, $path:ident => $repo:ident, $s:ident, $w:ident, $key:ident, $f:ident) => {
            let mut $repo = test_repo($dir.path());
            let mut $s = $repo.begin_backup().unwrap();
            let $w = $s.writer();
            let $key = $w.checksum_key();
            let mut $f =
                Follower::open(&$path, Vec::new(), DbChecksum::default(), 4096, None).unwrap();
            $f.poll($w, &$key).unwrap();
        };
    }

    /// An app database in WAL mode that never checkpoints by itself, with a table
    /// `t(id INTEGER PRIMARY KEY, v TEXT)`.
    fn quiet_app(dir: &Path) -> (Connection, PathBuf) {
        let path = dir.join("app.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
        )
        .unwrap();
        (app, path)
    }

    /// Commits `n` rows of ~500 bytes into `t`, one transaction each.
    fn insert_rows(app: &Connection, n: i64) {
        for i in 0..n {
            app.execute(
                "INSERT INTO t(v) VALUES (?1)",
                (format!("{i}{}", "y".repeat(500)),),
            )
            .unwrap();
        }
    }

    /// Appends what a writer killed before publishing leaves in `dir/app.db-wal`: a commit
    /// frame for page 2 (any bytes: SQLite never reads it) of a database of `pages` pages,
    /// its checksum chained on the last frame's, where the log ends. Returns the log, open
    /// for reading and writing.
    fn append_orphan_commit(dir: &Path, pages: u32) -> File {
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("app.db-wal"))
            .unwrap();
        let mut cur = WalCursor::open(&wal).unwrap().unwrap();
        cur.poll(&wal).unwrap();
        let h = *cur.header();
        let end = cur.end_offset();
        assert_eq!(
            wal.metadata().unwrap().len(),
            end,
            "nothing past the last frame"
        );
        let mut last = [0u8; 8];
        std::os::unix::fs::FileExt::read_exact_at(&wal, &mut last, end - 4096 - 8).unwrap();
        let prev = (
            u32::from_be_bytes(last[..4].try_into().unwrap()),
            u32::from_be_bytes(last[4..].try_into().unwrap()),
        );
        let mut frame = vec![0u8; 24 + 4096];
        frame[..4].copy_from_slice(&2u32.to_be_bytes());
        frame[4..8].copy_from_slice(&pages.to_be_bytes());
        frame[8..12].copy_from_slice(&h.salt1.to_be_bytes());
        frame[12..16].copy_from_slice(&h.salt2.to_be_bytes());
        frame[24..].fill(0xab);
        let sum = super::super::wal::checksum(h.big_endian_sums, &frame[..8], prev);
        let sum = super::super::wal::checksum(h.big_endian_sums, &frame[24..], sum);
        frame[16..20].copy_from_slice(&sum.0.to_be_bytes());
        frame[20..24].copy_from_slice(&sum.1.to_be_bytes());
        std::os::unix::fs::FileExt::write_all_at(&wal, &frame, end).unwrap();
        wal
    }

    /// Every page of the database as SQLite reads it now, as chunk ids of `w`.
    fn pages_now(path: &Path, w: &mut ChunkWriter<'_>) -> Vec<ChunkId> {
        let c = Connection::open(path).unwrap();
        let mut q = c.prepare("SELECT data FROM sqlite_dbpage('main')").unwrap();
        let rows: Vec<Vec<u8>> = q
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        rows.iter().map(|p| w.store_page(p).unwrap()).collect()
    }

    impl Follower {
        /// Pages of the table that differ from the anchor's snapshot: none right after a
        /// poll (`None` when no snapshot is held).
        fn differing_from_anchor(&self, w: &mut ChunkWriter<'_>) -> Option<Vec<usize>> {
            if !self.anchored || self.released.is_some() {
                return None;
            }
            let mut q = self
                .anchor
                .prepare("SELECT data FROM sqlite_dbpage('main')")
                .unwrap();
            let now: Vec<ChunkId> = q
                .query_map([], |r| r.get::<_, Vec<u8>>(0))
                .unwrap()
                .map(|r| w.store_page(&r.unwrap()).unwrap())
                .collect();
            let t = &self.table;
            Some(
                (0..now.len().max(t.len()))
                    .filter(|&i| now.get(i) != t.get(i))
                    .collect(),
            )
        }
    }

    /// A repository in `dir/repo` with cheap key derivation.
    fn test_repo(dir: &Path) -> lifeboat_core::Repository {
        let storage: std::sync::Arc<dyn lifeboat_core::Storage> =
            std::sync::Arc::new(lifeboat_storage::LocalStorage::new(dir.join("repo")));
        let kdf = lifeboat_core::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        lifeboat_core::Repository::init(storage, b"pw", kdf).unwrap()
    }

    /// Pages of `table` that differ from the database now.
    fn differing(path: &Path, table: &[ChunkId], w: &mut ChunkWriter<'_>) -> usize {
        let now = pages_now(path, w);
        (0..now.len().max(table.len()))
            .filter(|&i| now.get(i) != table.get(i))
            .count()
    }

    /// The proof after a handover under the worst timing real SQLite gives: an app that
    /// commits every millisecond, checkpoints PASSIVE every 10 frames (so the log restarts
    /// every few commits) and FULL/RESTART/TRUNCATE every 40 commits (so the follower yields
    /// often), while the follower polls every 50 ms. After the writer stops and one more poll,
    /// the follower's table must be the database, page for page: a transaction missed after a
    /// handover leaves a leaf page of `t` that is never written again; after every poll that
    /// keeps its snapshot, the table must be that snapshot. Three holes were found this way
    /// beside busy loops (a commit read in `-wal` but not yet published in `-shm`, so absent
    /// from the snapshot its pages were read in; a second restart while the new generation was
    /// read; new-generation frames past its last readable one). `LIFEBOAT_STRESS_SECS` makes
    /// the run longer, for runs beside busy loops
    /// (`for i in 1 2 3; do sh -c 'while :; do :; done' & done`).
    #[test]
    fn a_writer_restarting_the_log_all_the_time_loses_nothing_to_handovers() {
        let secs: u64 = std::env::var("LIFEBOAT_STRESS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(4);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE counter(n INTEGER NOT NULL); INSERT INTO counter VALUES (0);",
        )
        .unwrap();
        drop(app);
        first_capture!(dir, path => repo, s, w, key, f);
        // The writer is another process, as an app is: SQLite coordinates connections of one
        // process without the `-shm` file locks the follower probes for a checkpointer.
        let stop = dir.path().join("stop");
        // Killed if the test fails: no writer left running after it.
        let mut child = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sqlite::continuous::tests::stress_writer",
                    "--nocapture",
                ])
                .env("LIFEBOAT_STRESS_WRITER", &path)
                .env("LIFEBOAT_STRESS_STOP", &stop)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let writer = &mut child.0;
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            let c = f.poll(w, &key).unwrap();
            if let Some(d) = f.differing_from_anchor(w) {
                assert!(
                    d.is_empty(),
                    "after poll {}: pages {d:?} differ ({:?})",
                    f.stats.polls,
                    c.map(|c| (c.healed, c.pairs.len()))
                );
            }
            f.wait(Duration::from_millis(50));
        }
        std::fs::write(&stop, b"").unwrap();
        // Go on following until the app is gone (its last checkpoint may wait for a yield).
        while writer.try_wait().unwrap().is_none() {
            f.poll(w, &key).unwrap();
            f.wait(Duration::from_millis(20));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(writer.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(writer.wait().unwrap().success(), "{out}");
        let commits = out
            .lines()
            .find_map(|l| l.strip_prefix("commits "))
            .unwrap_or_else(|| panic!("{out}"));
        f.wait(Duration::from_millis(10));
        f.poll(w, &key).unwrap();
        let stats = f.stats().clone();
        let wrong = differing(&path, f.table(), w);
        assert_eq!(
            wrong, 0,
            "{wrong} pages differ from the database after {commits} commits ({stats:?})"
        );
        assert!(stats.handovers > 0, "{stats:?}");
        eprintln!("{commits} commits, {stats:?}");
    }

    /// The app of the test above, run as a child process of this test binary; does nothing
    /// unless `LIFEBOAT_STRESS_WRITER` names its database.
    #[test]
    fn stress_writer() {
        let Some(path) = std::env::var_os("LIFEBOAT_STRESS_WRITER") else {
            return;
        };
        let stop = PathBuf::from(std::env::var_os("LIFEBOAT_STRESS_STOP").unwrap());
        let c = Connection::open(&path).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c.execute_batch("PRAGMA wal_autocheckpoint = 10").unwrap();
        // A second connection of the app that only checkpoints (PASSIVE), as a separate
        // maintenance thread or process would.
        let checkpointer = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let c = Connection::open(path).unwrap();
                c.busy_timeout(Duration::from_secs(10)).unwrap();
                while !stop.exists() {
                    let _ = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        let modes = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"];
        let mut id = 0i64;
        while !stop.exists() {
            id += 1;
            c.execute_batch("BEGIN IMMEDIATE").unwrap();
            // Mostly small rows, every 7th a page-sized one (a leaf of its own), and every
            // 13th commit rewrites an earlier row to another length (pages rebalanced).
            let len = if id % 7 == 0 { 3000 } else { 300 };
            c.execute(
                "INSERT INTO t(id, v) VALUES (?1, ?2)",
                (id, format!("{id:08}{}", "x".repeat(len))),
            )
            .unwrap();
            if id % 13 == 0 {
                c.execute(
                    "UPDATE t SET v = ?2 WHERE id = ?1",
                    (
                        id / 2,
                        format!("{:08}{}", id / 2, "y".repeat(50 + (id as usize % 900))),
                    ),
                )
                .unwrap();
            }
            c.execute("UPDATE counter SET n = ?1", (id,)).unwrap();
            c.execute_batch("COMMIT").unwrap();
            if id % 40 == 0 {
                let mode = modes[(id as usize / 40) % modes.len()];
                // Busy is fine (the follower held it); the app goes on.
                let _ = c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        checkpointer.join().unwrap();
        println!("commits {id}");
    }

    /// Reading a database's header (a scheduled backup checks it in the daemon while the
    /// follower runs) or opening another follower must not drop the follower's SQLite locks:
    /// POSIX locks go with *any* close of the file in this process. If they went, the app's
    /// closing connection would checkpoint past the follower's snapshot and delete the log
    /// under it, and captures would go on from stale handles.
    #[test]
    fn checking_the_header_keeps_the_followers_locks() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = app_db(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        app.execute("INSERT INTO t VALUES (1)", []).unwrap();
        drop(app);
        // The locks this process holds on a file, as the kernel has them (`/proc/locks`:
        // "... POSIX ADVISORY READ PID MAJ:MIN:INODE START END").
        let locks_on = |file: &Path| {
            let ino = std::fs::metadata(file).unwrap().ino();
            let me = std::process::id().to_string();
            std::fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .filter(|l| {
                    let w: Vec<&str> = l.split_whitespace().collect();
                    w.len() > 5
                        && w[4] == me
                        && w[5].rsplit(':').next() == Some(ino.to_string().as_str())
                })
                .count()
        };
        let shm = dir.path().join("app.db-shm");
        let (db_locks, shm_locks) = (locks_on(&path), locks_on(&shm));
        assert!(db_locks > 0 && shm_locks > 0, "{db_locks} {shm_locks}");
        // What the daemon's other threads do beside the follower: a backup reads the header,
        // a new chain opens another follower, the follower probes `-shm`.
        assert!(crate::sqlite::is_sqlite_file(&path).unwrap());
        assert!(is_sqlite_file_nofollow(&path).unwrap());
        drop(Follower::open(&path, Vec::new(), DbChecksum::default(), 4096, None).unwrap());
        f.checkpointer_waiting();
        assert_eq!(
            (locks_on(&path), locks_on(&shm)),
            (db_locks, shm_locks),
            "a close in this process dropped SQLite's locks"
        );
        f.wait(Duration::from_millis(10));
        let change = f
            .poll(w, &key)
            .unwrap()
            .expect("the app's commit is captured");
        assert!(change.healed.is_none(), "{:?}", change.healed);
        assert_eq!(differing(&path, f.table(), w), 0);
    }

    /// A correctness hole with real SQLite, no attacker: after a handover the follower holds no
    /// snapshot; the app commits a large transaction X (its frames run past
    /// `journal_size_limit`), checkpoints, and its next commit restarts the log, which
    /// truncates the file to the limit and cuts X's commit frame off. Re-anchoring then finds
    /// the old generation's tail "complete" (it ends at the end of a file no shorter than
    /// the follower saw) and learns nothing of X: X's pages are never captured, and no heal.
    #[test]
    fn a_transaction_cut_off_by_journal_size_limit_after_a_handover_is_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let app = Connection::open(&path).unwrap();
        app.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             PRAGMA journal_size_limit=33554432;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);",
        )
        .unwrap();
        first_capture!(dir, path => repo, s, w, key, f);
        let insert = |from: i64, n: i64| {
            app.execute(
                "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1 + ?2 - 1)
                 INSERT INTO t(id, v) SELECT i, randomblob(3900) FROM n",
                (from, n),
            )
            .unwrap();
        };
        // More than HANDOVER_FRAMES frames: the capture lets go of its snapshot.
        insert(1, 4200);
        f.poll(w, &key).unwrap().expect("a change");
        assert!(f.released.is_some(), "a handover");
        // X: ~20 MiB of frames, past the 32 MiB limit; then a checkpoint (nothing holds it)
        // and a small commit, which restarts the log and truncates it to the limit.
        insert(10_000, 5000);
        app.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        insert(20_000, 1);
        f.poll(w, &key).unwrap();
        let wrong = differing(&path, f.table(), w);
        assert_eq!(
            wrong,
            0,
            "{wrong} pages differ from the database (heals: {})",
            f.stats().heals
        );
    }

    /// A writer killed between writing a transaction's commit frame to `-wal` and publishing
    /// it in `-shm` leaves an orphan the follower reads (its checksum chains); the next
    /// writer overwrites it from SQLite's published end, chaining from there. The follower
    /// must not stop at the first of those frames for good: every later commit is captured.
    #[test]
    fn an_orphaned_commit_frame_of_a_killed_writer_does_not_stall_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        let insert = |n: i64| insert_rows(&app, n);
        insert(20);
        first_capture!(dir, path => repo, s, w, key, f);
        insert(5);
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap().expect("a change");
        assert_eq!(differing(&path, f.table(), w), 0);

        // The killed writer's frame.
        let pages: u32 = app
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        append_orphan_commit(dir.path(), pages);

        // The follower reads it; it is never published, so its page is read again next poll.
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        assert_eq!(f.stats().unpublished, 1, "{:?}", f.stats());
        // The app goes on: its frames overwrite the orphan.
        insert(30);
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        insert(3);
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        let stats = f.stats().clone();
        assert_eq!(differing(&path, f.table(), w), 0, "{stats:?}");
        assert_eq!(stats.rewinds, 1, "{stats:?}");
        assert_eq!(
            stats.heals, 1,
            "only the first capture compared every page: {stats:?}"
        );
    }

    /// Review of 729a5fd (review-patches). The orphan's slot is overwritten by a
    /// transaction of the same length (one frame: an in-place UPDATE of one row): SQLite then
    /// publishes `mxFrame` equal to the cursor's mark, so the divergence check (`max_frame >
    /// mark.frame`) does not fire, and the cursor, which believes it read that frame, never
    /// reads the new one. Its page is captured by nothing: the deltas say the database is at
    /// that commit while they lack it (until a later commit pushes `mxFrame` past the mark; a
    /// log restart first, and it is lost until the next heal). The wal-index header carries
    /// the checksum of frame `mxFrame` (`aFrameCksum`, bytes 24..32): comparing it with the
    /// cursor's `commit_sum` when `max_frame == mark.frame` tells the orphan from the commit.
    #[test]
    fn review_an_orphan_overwritten_by_a_commit_of_the_same_length_is_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        let insert = |n: i64| insert_rows(&app, n);
        insert(25);
        first_capture!(dir, path => repo, s, w, key, f);
        insert(5);
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap().expect("a change");
        assert_eq!(differing(&path, f.table(), w), 0);

        // The killed writer's orphan commit frame (as in the test above).
        let pages: u32 = app
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let wal = append_orphan_commit(dir.path(), pages);
        let with_orphan = wal.metadata().unwrap().len();
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        assert_eq!(f.stats().unpublished, 1, "{:?}", f.stats());

        // The app goes on with a one-frame transaction (a row of the last leaf, not page 2):
        // it lands exactly in the orphan's slot.
        app.execute(
            "UPDATE t SET v = ?1 WHERE id = 30",
            (format!("z{}", "q".repeat(500)),),
        )
        .unwrap();
        assert_eq!(
            wal.metadata().unwrap().len(),
            with_orphan,
            "one frame, in the orphan's slot"
        );
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        let stats = f.stats().clone();
        assert_eq!(
            differing(&path, f.table(), w),
            0,
            "a published commit was never captured: {stats:?}"
        );
    }

    /// A page changed again and again goes as patches against one version stored whole: the
    /// second change against the first (read back from the previous snapshot), the third
    /// against the same base, reached from the second through the cached way back.
    #[test]
    fn a_page_changed_in_every_interval_is_stored_as_patches_against_one_base() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        for i in 0..200 {
            app.execute(
                "INSERT INTO t(v) VALUES (?1)",
                (format!("{i:05}{}", "z".repeat(300)),),
            )
            .unwrap();
        }
        first_capture!(dir, path => repo, s, w, key, f);
        for (n, want) in [(1, 0), (2, 1), (3, 2), (4, 3)] {
            app.execute("UPDATE t SET v = ?1 WHERE id = 100", (format!("edit {n}"),))
                .unwrap();
            f.wait(Duration::from_millis(5));
            let c = f.poll(w, &key).unwrap().expect("a change");
            assert!(c.healed.is_none());
            assert_eq!(differing(&path, f.table(), w), 0);
            // The first edit's previous version came from the first capture (stored by
            // the comparison of every page, which keeps no base): it goes whole.
            assert_eq!(f.stats().patches, want, "after edit {n}: {:?}", f.stats());
        }
        assert!(f.stats().patch_bytes < 3 * 1024, "{:?}", f.stats());
    }

    /// A transaction the follower read part of (its cache spilled into the log) is rolled
    /// back, and a shorter one commits over its first frames, short of where the follower's
    /// read goes on: found by reading again from the last commit, quietly (not as a broken
    /// log read again from its start).
    #[test]
    fn a_rolled_back_transaction_overwritten_by_a_shorter_one_is_not_missed() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        app.execute_batch("PRAGMA cache_size = 5").unwrap();
        let tx = app.unchecked_transaction().unwrap();
        for i in 0..300 {
            tx.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                (i, format!("{i} {}", "r".repeat(3000))),
            )
            .unwrap();
        }
        f.wait(Duration::from_millis(30));
        assert!(f.cursor.as_ref().unwrap().in_transaction());
        tx.rollback().unwrap();
        app.execute("INSERT INTO t VALUES (1, 'after')", [])
            .unwrap();
        let change = f.poll(w, &key).unwrap().expect("the commit is captured");
        assert!(change.healed.is_none(), "{:?}", change.healed);
        assert_eq!(f.stats().rewinds, 0, "{:?}", f.stats());
        assert_eq!(differing(&path, f.table(), w), 0);
    }

    /// Two commits the follower has not read yet (`first`, then `second`), the checksum of the
    /// second one's first frame damaged in the log (SQLite itself reads it only when it
    /// recovers a log).
    fn damaged_commits(dir: &Path, first: impl FnOnce(), second: impl FnOnce()) {
        use std::os::unix::fs::FileExt;
        first();
        let wal_path = dir.join("app.db-wal");
        let frames_before = (std::fs::metadata(&wal_path).unwrap().len() - 32) / (24 + 4096);
        second();
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&wal_path)
            .unwrap();
        let at = 32 + frames_before * (24 + 4096) + 16;
        let mut sum = [0u8; 4];
        wal.read_exact_at(&mut sum, at).unwrap();
        sum[0] ^= 0x55;
        wal.write_all_at(&sum, at).unwrap();
    }

    /// Rewrites the wal-index header in `dir/app.db-shm` as its file's owner could: `change`
    /// edits the first copy, whose checksum is then made right, and both copies are written.
    fn forge_wal_index(dir: &Path, change: impl FnOnce(&mut [u8; 48])) {
        use std::os::unix::fs::FileExt;
        let shm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.join("app.db-shm"))
            .unwrap();
        let mut h = [0u8; 48];
        shm.read_exact_at(&mut h, 0).unwrap();
        change(&mut h);
        let sum = super::super::wal::checksum(cfg!(target_endian = "big"), &h[..40], (0, 0));
        h[40..44].copy_from_slice(&sum.0.to_ne_bytes());
        h[44..48].copy_from_slice(&sum.1.to_ne_bytes());
        shm.write_all_at(&h, 0).unwrap();
        shm.write_all_at(&h, 48).unwrap();
    }

    /// A log damaged before SQLite's published end (here a committed frame's checksum,
    /// which SQLite itself reads only when it recovers a log) costs one comparison of every
    /// page; the commits after it are captured as usual, not by a comparison at every poll.
    #[test]
    fn a_damaged_log_costs_one_comparison_not_one_per_poll() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        let heals = f.stats().heals;
        let put = |i: i64| {
            app.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                (i, format!("{i} {}", "d".repeat(1500))),
            )
            .unwrap();
        };
        put(1);
        f.poll(w, &key).unwrap().expect("captured");
        // Two commits the follower has not read; the first frame of the second one damaged.
        damaged_commits(dir.path(), || put(2), || put(3));
        let change = f.poll(w, &key).unwrap().expect("captured");
        assert!(change.healed.is_some(), "the damage is seen");
        assert_eq!(f.stats().heals, heals + 1);
        assert_eq!(differing(&path, f.table(), w), 0);
        for i in 4..10 {
            put(i);
            let change = f.poll(w, &key).unwrap().expect("captured");
            assert!(change.healed.is_none(), "{:?}", change.healed);
            assert_eq!(differing(&path, f.table(), w), 0, "after commit {i}");
        }
        assert_eq!(f.stats().heals, heals + 1, "{:?}", f.stats());
        assert!(f.poll(w, &key).unwrap().is_none(), "nothing new");
    }

    /// Run as a child by the test below: holds the WAL's WRITE and CKPT lock bytes of the
    /// `-shm` file named by `LIFEBOAT_LOCK_SHM` (what a FULL/RESTART/TRUNCATE checkpoint
    /// waiting for readers holds), says so on stdout, and keeps them until killed.
    #[test]
    fn lock_holder() {
        let Some(shm) = std::env::var_os("LIFEBOAT_LOCK_SHM") else {
            return;
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(shm)
            .unwrap();
        // SAFETY: a zeroed flock is a valid argument, filled in below.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = libc::F_WRLCK as _;
        fl.l_whence = libc::SEEK_SET as _;
        fl.l_start = SHM_WRITE_LOCK as _;
        fl.l_len = 2;
        // SAFETY: valid fd and pointer to a flock for the call's duration.
        let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        println!("held");
        std::thread::sleep(Duration::from_secs(120));
    }

    /// A checkpointer that keeps waiting after the follower let go for it (a stuck app, or a
    /// local user holding those lock bytes) must not hold a stopping daemon: the follower waits
    /// up to 30 s for it to finish before anchoring again, unless told to stop.
    #[test]
    fn a_stop_ends_the_wait_for_a_stuck_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        f.stop_on(stop.clone());
        // (Written first: the held WRITE lock keeps the app's writers out.)
        app.execute("INSERT INTO t VALUES (1, 'a')", []).unwrap();
        let mut holder = KillOnDrop(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "sqlite::continuous::tests::lock_holder",
                    "--nocapture",
                ])
                .env("LIFEBOAT_LOCK_SHM", dir.path().join("app.db-shm"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut out = std::io::BufReader::new(holder.0.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("held") {
            line.clear();
            assert!(
                std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
                "the lock holder ended"
            );
        }
        // The follower sees the checkpointer, captures, and lets go for it.
        f.wait(Duration::from_secs(5));
        assert!(f.poll(w, &key).unwrap().is_some());
        assert_eq!(f.stats().checkpoint_yields, 1, "{:?}", f.stats());
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let t = Instant::now();
        f.wait(Duration::from_secs(60));
        setter.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        // The final capture still works, and holds the last commit.
        drop(holder);
        app.execute("INSERT INTO t VALUES (2, 'b')", []).unwrap();
        let change = f
            .poll(w, &key)
            .unwrap()
            .expect("the last commit is captured");
        assert!(!change.pairs.is_empty());
        assert_eq!(differing(&path, f.table(), w), 0);
    }

    /// Review of d0391ca (pre-existing in `wait`). After a handover, an app that goes quiet
    /// never restarts the log (SQLite restarts it at its next write), so the follower's read
    /// position stays past HANDOVER_FRAMES: `wait` then returns at once every time (its scan
    /// finds `log_position() > HANDOVER_FRAMES`), `has_news` finds nothing, and the capture
    /// loop (`run_capture`: wait, has_news, continue) spins at full CPU until the app writes.
    #[test]
    fn review_an_idle_app_after_a_handover_does_not_make_wait_spin() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        app.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4200)
             INSERT INTO t(id, v) SELECT i, hex(randomblob(1950)) FROM n",
            [],
        )
        .unwrap();
        f.poll(w, &key).unwrap().expect("a change");
        assert!(f.released.is_some(), "a handover");
        // The app checkpoints (as its autocheckpoint would) and then writes nothing.
        app.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .unwrap();
        f.wait(Duration::from_millis(10)); // anchors again (waits up to 1 s for a restart)
        assert!(!f.has_news().unwrap());
        // The capture loop for 1 s with a 200 ms interval: about 5 rounds expected.
        let t = Instant::now();
        let mut rounds = 0u32;
        while t.elapsed() < Duration::from_secs(1) {
            f.wait(Duration::from_millis(200));
            assert!(!f.has_news().unwrap());
            rounds += 1;
        }
        assert!(
            rounds <= 10,
            "{rounds} rounds of wait + has_news in 1 s: wait does not wait ({:?})",
            f.stats()
        );
    }

    /// Review of fb48b24. While a damaged generation is followed by frame headers alone
    /// (`Unchained`), SQLite may rebuild its wal-index from the log (recovery: a writer
    /// killed while writing the wal-index header, or one whose two copies differ for any
    /// reason): recovery stops at the damaged frame, so SQLite's published end goes back to
    /// the last commit before the damage, and the app's next transactions are written from
    /// there, in the same generation, over slots the follower already read. `scan_unchained`
    /// reads only from its slot on, up to the published end: it reads nothing (the end is now
    /// below its slot), and when the end passes it again, skips the rewritten slots. The
    /// app's commits are never captured (no heal: nothing looks wrong).
    #[test]
    fn review_a_wal_index_recovered_while_unchained_does_not_hide_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        let put = |i: i64| {
            app.execute(
                "INSERT INTO t VALUES (?1, ?2)",
                (i, format!("{i} {}", "d".repeat(1500))),
            )
            .unwrap();
        };
        put(1);
        f.poll(w, &key).unwrap().expect("captured");
        damaged_commits(dir.path(), || put(2), || put(3));
        let change = f.poll(w, &key).unwrap().expect("captured");
        assert!(change.healed.is_some(), "the damage is seen");
        for i in 4..10 {
            put(i);
            f.poll(w, &key).unwrap().expect("captured");
        }
        assert!(f.unchained.as_ref().is_some_and(|u| u.next > 0));
        assert_eq!(differing(&path, f.table(), w), 0);
        // The wal-index header's two copies made to differ (as a writer killed while writing
        // it leaves them): the app's next transaction recovers the wal-index from the log.
        use std::os::unix::fs::FileExt;
        let shm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("app.db-shm"))
            .unwrap();
        let mut b = [0u8; 1];
        shm.read_exact_at(&mut b, 48 + 8).unwrap(); // iChange of the second copy
        b[0] ^= 1;
        shm.write_all_at(&b, 48 + 8).unwrap();
        let n: i64 = app
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2, "SQLite's recovery stopped at the damaged frame");
        put(100);
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        f.wait(Duration::from_millis(5));
        f.poll(w, &key).unwrap();
        let stats = f.stats().clone();
        assert_eq!(
            differing(&path, f.table(), w),
            0,
            "the app's commit after the recovery was not captured: {stats:?}"
        );
    }

    /// Review of fb48b24. The app's user writes `-shm`: a wal-index header (both copies, its
    /// checksum right) that publishes frame u32::MAX of the current generation, after a
    /// damaged frame. `heal` computes `p.max_frame + 1`: a panic in a debug build (the
    /// capture thread dies), and in release it wraps to 0, which means "heal not done yet",
    /// so the next scan breaks the chain again and every poll compares every page.
    #[test]
    fn review_a_forged_published_end_does_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        for i in 1..4 {
            app.execute("INSERT INTO t VALUES (?1, 'x')", (i,)).unwrap();
        }
        use std::os::unix::fs::FileExt;
        let wal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("app.db-wal"))
            .unwrap();
        // Damage the first frame's checksum.
        let mut b = [0u8; 1];
        wal.read_exact_at(&mut b, 32 + 16).unwrap();
        b[0] ^= 0x55;
        wal.write_all_at(&b, 32 + 16).unwrap();
        forge_wal_index(dir.path(), |h| {
            h[16..20].copy_from_slice(&u32::MAX.to_ne_bytes())
        });
        for _ in 0..3 {
            let _ = f.poll(w, &key);
        }
        assert!(f.stats().heals <= 2, "{:?}", f.stats());
    }

    /// Review (pre-existing since the `frame_cksum` check, not fixed by fb48b24). The app's
    /// user rewrites one field of `-shm`: the checksum of the last published frame
    /// (`aFrameCksum`), both copies, header checksum right. `short` then holds at every scan
    /// (`max_frame == mark.frame`, another checksum), the generation is read again from
    /// frame 1, reaches `max_frame`, and the cursor is replaced by an identical one: with an
    /// idle app this repeats at every scan of `wait` (every 20 ms), each time reading the
    /// whole generation (up to 16 MiB) and logging a warning. No heal ever ends it.
    #[test]
    fn review_a_forged_frame_checksum_in_shm_is_not_reread_every_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (app, path) = quiet_app(dir.path());
        first_capture!(dir, path => repo, s, w, key, f);
        app.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
             INSERT INTO t(id, v) SELECT i, hex(randomblob(1950)) FROM n",
            [],
        )
        .unwrap();
        f.poll(w, &key).unwrap().expect("a change");
        forge_wal_index(dir.path(), |h| h[24] ^= 1); // aFrameCksum[0]
        let before = f.stats().frames;
        f.wait(Duration::from_millis(500));
        let read = f.stats().frames - before;
        let st = f.stats().clone();
        assert!(
            st.rewinds <= 1 && st.heals <= 2,
            "one forged field in -shm: {} rewinds in 0.5 s, {read} frames read ({st:?})",
            st.rewinds
        );
    }
}
