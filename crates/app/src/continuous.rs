//! Continuous capture of an app's SQLite databases (`continuous = "1s"`), run by `lifeboat
//! run` on one thread per database. Each interval in which something was committed becomes
//! one delta record (`docs/FORMAT.md` §17) chained to the app's newest point; an idle
//! database costs no request. The follower (`lifeboat_sources::sqlite::continuous`) knows
//! which pages changed; this module owns the chain and the repository side:
//!
//! - **Start**: the chain of the app's newest point holding the database is resumed at its
//!   tip (its WAL position lets the follower go on without reading every page); with no
//!   chain yet, or one that cannot be resumed, the follower compares every page once and
//!   that becomes the first link. With no point at all, a backup of the whole app is taken
//!   first (tag `continuous`).
//! - **Sessions**: a backup session (lease, index) is opened when there is something to
//!   write and kept across intervals, but closed after [`SESSION_IDLE`] without changes and
//!   at most every [`SESSION_MAX`], so a prune elsewhere never waits long for it.
//! - **New chains**: after `continuous_rebase` (default 1 h), or when another point of the
//!   app appeared (a scheduled backup: [`ContinuousHandle::new_point`]), the next link starts
//!   a new chain from the newest point: its pages are the difference between that point's
//!   table and the database now, so no page is read again.
//! - **Failures**: a delta that cannot be written is undone in the follower (its pages are
//!   read again next interval, from the database, which is the buffer); the error is logged
//!   once per run of failures and the capture goes on.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat_core::{
    decode_delta, encode_delta, hostname, links_to, load_page_table, replay, BackupSession,
    ChunkId, ComponentKind, Delta, Error, ErrorKind, ObjectId, Point, Repository, Result,
    SqliteBody, SEGMENT_PAGES,
};
use lifeboat_sources::sqlite::continuous::Follower;
use serde::Serialize;

use crate::backup::{backup, BackupRequest};
use crate::config::{Config, Continuous};
use crate::password::PasswordSource;
use crate::setup::Setup;

/// A session with nothing to write for this long is closed (its lease released).
pub const SESSION_IDLE: Duration = Duration::from_secs(60);
/// A session is closed and a new one opened at least this often.
pub const SESSION_MAX: Duration = Duration::from_secs(300);
/// Default `continuous_rebase`.
pub const DEFAULT_REBASE: Duration = Duration::from_secs(3600);
/// Default `continuous_keep`.
pub const DEFAULT_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Shared between the daemon and one app's capture threads.
#[derive(Debug, Default)]
pub struct ContinuousHandle {
    /// Shared with the followers, whose waits end at a stop.
    stop: Arc<AtomicBool>,
    new_point: AtomicBool,
    status: Mutex<HashMap<PathBuf, StreamStatus>>,
}

/// What one database's capture is doing, for logs, `status` and metrics.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct StreamStatus {
    /// The point the current chain starts from (hex).
    pub base: Option<String>,
    /// Links in the current chain.
    pub seq: u64,
    /// Time of the newest link (or of the base when none), RFC 3339.
    pub last_capture: Option<String>,
    /// Deltas written since the capture started.
    pub deltas: u64,
    /// Full comparisons of every page.
    pub heals: u64,
    /// Bytes stored (packs + index) since the capture started.
    pub bytes_stored: u64,
    /// Requests to the repository since the capture started.
    pub requests: u64,
    /// The last error, while failures go on.
    pub failing: Option<String>,
}

impl ContinuousHandle {
    /// Asks every capture thread using this handle to stop at its next interval.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Whether [`ContinuousHandle::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Tells the captures a new point of the app exists (a scheduled backup): their next link
    /// starts a chain from it.
    pub fn new_point(&self) {
        self.new_point.store(true, Ordering::SeqCst);
    }

    /// Status per database.
    pub fn status(&self) -> HashMap<PathBuf, StreamStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn set_status(&self, db: &Path, f: impl FnOnce(&mut StreamStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(s.entry(db.to_path_buf()).or_default());
        }
    }
}

/// The databases of `app` that continuous capture follows, with the interval; `None` when
/// the app has none or `continuous` is off.
pub fn continuous_of(config: &Config, app: &str) -> Option<(Vec<PathBuf>, Duration)> {
    let a = config.app.get(app)?;
    let Continuous { interval } = a.continuous?;
    if interval.is_zero() || a.sqlite.is_empty() {
        return None;
    }
    Some((a.sqlite.clone(), interval))
}

/// The chain being extended: its base point, its tip, and the minute link being built.
struct Chain {
    base: ObjectId,
    base_time: jiff::Timestamp,
    tip: Option<ObjectId>,
    seq: u64,
    minute: Minute,
}

/// The next level-1 (minute) link: the union of the interval links since the last one.
struct Minute {
    /// Checksum before it: the last minute link's after, or the base point's.
    before: String,
    /// (page, final id) of every page the interval links since changed.
    pairs: BTreeMap<u32, ChunkId>,
    /// The last interval link folded in: id, page count, checksum after, time.
    last: Option<(ObjectId, u32, String, String)>,
    since: Instant,
    /// The last minute link and its seq.
    tip: Option<ObjectId>,
    seq: u64,
}

impl Minute {
    fn new(before: String) -> Minute {
        Minute {
            before,
            pairs: BTreeMap::new(),
            last: None,
            since: Instant::now(),
            tip: None,
            seq: 0,
        }
    }

    /// Folds in an interval link.
    fn fold(&mut self, id: ObjectId, d: &Delta, pairs: &[(u32, ChunkId)]) {
        self.pairs.retain(|p, _| *p <= d.page_count);
        self.pairs.extend(pairs.iter().copied());
        self.last = Some((id, d.page_count, d.checksum_after.clone(), d.time.clone()));
    }
}

/// A minute link is written every this many intervals (one a minute at 1 s), while they have
/// changes.
const INTERVALS_PER_MINUTE: u32 = 60;

/// Follows database `db` of `app` until the handle says stop. Errors that end the capture
/// (the database is gone or not in WAL mode, the repository cannot be opened) are returned;
/// the daemon logs them and starts the capture again later.
pub fn run_capture(
    config: &Config,
    password: &PasswordSource,
    app: &str,
    db: &Path,
    interval: Duration,
    handle: &ContinuousHandle,
) -> Result<()> {
    lower_priority();
    let a = config
        .app
        .get(app)
        .ok_or_else(|| Error::new(ErrorKind::Usage, format!("no app {app:?} in the config")))?;
    let rebase = a.continuous_rebase.unwrap_or(DEFAULT_REBASE);
    let setup = Setup::with_config(config.clone(), None, password.clone());
    let db_str = db.display().to_string();
    let mut repo = setup.open(Some(app))?;
    let (mut chain, mut follower) = start(&setup, &mut repo, app, db)?;
    follower.stop_on(handle.stop.clone());
    handle.set_status(db, |s| {
        s.base = Some(chain.base.to_hex());
        s.seq = chain.seq;
    });
    tracing::info!(
        "continuous {app} {db_str}: following from point {} (link {})",
        chain.base.short(),
        chain.seq
    );
    let mut failing = false;
    'sessions: while !handle.stopping() {
        follower.wait(interval);
        if handle.stopping() {
            break;
        }
        if !follower.has_news()? {
            continue;
        }
        // Something to write: a session, kept while changes keep coming.
        let opened = Instant::now();
        let mut last_news = Instant::now();
        let mut session = match repo.begin_backup() {
            Ok(s) => s,
            Err(e) => {
                report_failure(handle, db, &mut failing, &e);
                continue;
            }
        };
        loop {
            let due_rebase = handle.new_point.swap(false, Ordering::SeqCst)
                || jiff::Timestamp::now()
                    .duration_since(chain.base_time)
                    .unsigned_abs()
                    > rebase
                || chain.seq >= lifeboat_core::MAX_CHAIN - 1;
            if due_rebase {
                // The minute being built goes out before the chain ends: else the chain's
                // last interval links (up to a minute of them) are covered by no minute link
                // and forget never thins them (one such tail per chain, 24 a day).
                if chain.minute.last.is_some() {
                    if let Err(e) =
                        write_minute(&mut session, &mut chain, app, &db_str, follower.page_size())
                    {
                        tracing::warn!(
                            "continuous {app} {db_str}: the last minute link of the chain could not be written ({e})"
                        );
                    }
                }
                drop(session);
                if let Some(c) =
                    new_chain(&setup, &mut repo, app, db, &mut follower, rebase, &chain)?
                {
                    chain = c;
                    handle.set_status(db, |s| {
                        s.base = Some(chain.base.to_hex());
                        s.seq = 0;
                    });
                }
                continue 'sessions;
            }
            match capture_once(
                &mut session,
                &mut follower,
                &mut chain,
                app,
                &db_str,
                interval * INTERVALS_PER_MINUTE,
            ) {
                Ok(Some(bytes)) => {
                    if failing {
                        tracing::info!("continuous {app} {db_str}: writing deltas again");
                        failing = false;
                    }
                    let st = follower.stats().clone();
                    handle.set_status(db, |s| {
                        s.seq = chain.seq;
                        s.deltas += 1;
                        s.heals = st.heals;
                        s.bytes_stored += bytes;
                        s.last_capture = Some(jiff::Timestamp::now().to_string());
                        s.failing = None;
                    });
                    last_news = Instant::now();
                }
                Ok(None) => {}
                Err(e) => {
                    report_failure(handle, db, &mut failing, &e);
                    // The session is spent after a failed commit; a follower error leaves the
                    // follower unusable: start again from the repository.
                    if e.kind() == ErrorKind::Source {
                        drop(session);
                        let (c, f) = start(&setup, &mut repo, app, db)?;
                        chain = c;
                        follower = f;
                        follower.stop_on(handle.stop.clone());
                    }
                    continue 'sessions;
                }
            }
            if handle.stopping()
                || opened.elapsed() > SESSION_MAX
                || last_news.elapsed() > SESSION_IDLE
            {
                continue 'sessions;
            }
            follower.wait(interval);
            if !follower.has_news()? {
                continue;
            }
            last_news = Instant::now();
        }
    }
    final_capture(&mut repo, &mut follower, &mut chain, app, &db_str, interval);
    let mut r = lifeboat_core::RequestStats::default();
    for (_, s) in setup.opened() {
        r.list += s.list;
        r.get += s.get;
        r.head += s.head;
        r.put += s.put;
        r.delete += s.delete;
    }
    handle.set_status(db, |s| s.requests = r.total());
    let st = handle.status().remove(db).unwrap_or_default();
    let f = follower.stats();
    tracing::info!(
        "continuous {app} {db_str}: stopped after {} deltas ({} compared every page, {} handovers of the WAL, {} for a checkpoint), {} pages stored as patches ({} before compression), {} stored, {} requests ({} PUT, {} GET, {} LIST, {} DELETE)",
        st.deltas,
        f.heals,
        f.handovers,
        f.checkpoint_yields,
        f.patches,
        crate::human::size(f.patch_bytes),
        crate::human::size(st.bytes_stored),
        r.total(),
        r.put,
        r.get,
        r.list,
        r.delete
    );
    Ok(())
}

/// On a stop: what was committed since the last capture goes out as one more interval link
/// (a stop is often a deploy, when the last seconds matter). The minute being built is not
/// written: a start folds the links after the last minute link into its first minute.
fn final_capture(
    repo: &mut lifeboat_core::Repository,
    follower: &mut Follower,
    chain: &mut Chain,
    app: &str,
    db: &str,
    interval: Duration,
) {
    let res = (|| -> Result<()> {
        if !follower.has_news()? {
            return Ok(());
        }
        let mut session = repo.begin_backup()?;
        capture_once(
            &mut session,
            follower,
            chain,
            app,
            db,
            interval * INTERVALS_PER_MINUTE,
        )?;
        Ok(())
    })();
    if let Err(e) = res {
        tracing::warn!(
            "continuous {app} {db}: the last capture before stopping failed ({e}); the next start reads those changes from the database"
        );
    }
}

fn report_failure(handle: &ContinuousHandle, db: &Path, failing: &mut bool, e: &Error) {
    if !*failing {
        tracing::error!(
            "continuous {}: cannot write deltas ({e}); the changes wait in the database and are written once the repository is back",
            db.display()
        );
    }
    *failing = true;
    handle.set_status(db, |s| s.failing = Some(e.to_string()));
}

/// One poll and, when something changed, one link. Returns the bytes stored.
fn capture_once(
    session: &mut BackupSession<'_>,
    follower: &mut Follower,
    chain: &mut Chain,
    app: &str,
    db: &str,
    minute: Duration,
) -> Result<Option<u64>> {
    let key = session.writer().checksum_key();
    let Some(change) = follower.poll(session.writer(), &key)? else {
        return Ok(None);
    };
    let (pairs, before) = (change.pairs.clone(), change.checksum_before.to_hex());
    // Any error from here on undoes the change in the follower: its table must stay what the
    // chain's last link says (else the pages are never captured and the next link's checksum
    // does not follow the last one).
    let segments = match store_segments(session, &pairs) {
        Ok(s) => s,
        Err(e) => {
            follower.rollback(change);
            return Err(e);
        }
    };
    let delta = Delta {
        app: app.to_string(),
        path: db.to_string(),
        base: chain.base.to_hex(),
        parent: chain.tip.map(|t| t.to_hex()),
        seq: chain.seq + 1,
        time: change.time.to_string(),
        hostname: hostname(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        page_size: follower.page_size(),
        page_count: change.page_count,
        checksum_before: before,
        checksum_after: change.checksum_after.to_hex(),
        pages: segments,
        changed: pairs.len() as u32,
        healed: change.healed.is_some(),
        wal: change.wal,
        level: 0,
        until: None,
    };
    let mut stored = 0;
    match session.commit_delta(|summary| {
        stored = summary.bytes_stored;
        delta
    }) {
        Ok((id, d)) => {
            tracing::debug!(
                "continuous {app} {db}: delta {} seq {} ({} pages{})",
                id.short(),
                d.seq,
                d.changed,
                if d.healed { ", healed" } else { "" }
            );
            chain.tip = Some(id);
            chain.seq = d.seq;
            chain.minute.fold(id, &d, &pairs);
            if chain.minute.since.elapsed() >= minute {
                stored += write_minute(session, chain, app, db, follower.page_size())?;
            }
            Ok(Some(stored))
        }
        Err(e) => {
            follower.rollback(change);
            Err(e)
        }
    }
}

/// Stores (page, id) pairs as §9.1 delta segments, one chunk per `SEGMENT_PAGES` pairs.
fn store_segments(
    session: &mut BackupSession<'_>,
    pairs: &[(u32, ChunkId)],
) -> Result<Vec<ChunkId>> {
    pairs
        .chunks(SEGMENT_PAGES)
        .map(|part| session.writer().store_chunk(&encode_delta(part)))
        .collect()
}

/// Writes the minute link (level 1) of the interval links folded since the last one. On an
/// error the minute stays as it is and is written with a later interval.
fn write_minute(
    session: &mut BackupSession<'_>,
    chain: &mut Chain,
    app: &str,
    db: &str,
    page_size: u32,
) -> Result<u64> {
    let m = &chain.minute;
    let Some((until, page_count, after, time)) = m.last.clone() else {
        return Ok(0);
    };
    let pairs: Vec<(u32, ChunkId)> = m.pairs.iter().map(|(p, id)| (*p, *id)).collect();
    let segments = store_segments(session, &pairs)?;
    let delta = Delta {
        app: app.to_string(),
        path: db.to_string(),
        base: chain.base.to_hex(),
        parent: m.tip.map(|t| t.to_hex()),
        seq: m.seq + 1,
        time,
        hostname: hostname(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        page_size,
        page_count,
        checksum_before: m.before.clone(),
        checksum_after: after.clone(),
        pages: segments,
        changed: pairs.len() as u32,
        healed: false,
        wal: None,
        level: 1,
        until: Some(until.to_hex()),
    };
    let mut stored = 0;
    let (id, d) = session.commit_delta(|summary| {
        stored = summary.bytes_stored;
        delta
    })?;
    tracing::debug!(
        "continuous {app} {db}: minute link {} seq {} ({} pages)",
        id.short(),
        d.seq,
        d.changed
    );
    let m = &mut chain.minute;
    m.tip = Some(id);
    m.seq = d.seq;
    m.before = after;
    m.pairs.clear();
    m.last = None;
    m.since = Instant::now();
    Ok(stored)
}

/// A point of the whole app (tag `continuous`): the base of a new chain.
fn backup_now(setup: &Setup, app: &str) -> Result<()> {
    backup(
        setup,
        &BackupRequest {
            targets: vec![app.to_string()],
            tags: vec!["continuous".into()],
            ..BackupRequest::default()
        },
        &lifeboat_core::NoProgress,
    )?;
    Ok(())
}

/// The app's newest point from this host that holds `db`, and that component's body.
fn newest_point(
    repo: &Repository,
    app: &str,
    db: &str,
) -> Result<Option<(ObjectId, Point, SqliteBody)>> {
    let mut points = repo.points()?;
    // This host's points only: another host backing up an app of the same name into the
    // repository has its own database at that path, and a chain must start from this one's.
    let host = hostname();
    points.retain(|(_, p)| {
        p.app == app && p.hostname == host && !p.tags.iter().any(|t| t == "pre-restore")
    });
    Ok(points.into_iter().rev().find_map(|(id, p)| {
        let body = p
            .components
            .iter()
            .find(|c| c.kind == ComponentKind::Sqlite && c.path == db)?
            .sqlite
            .clone()?;
        Some((id, p, body))
    }))
}

/// Opens the chain to extend (and the follower) for `db`: the newest point's chain resumed
/// at its tip, else a new chain whose first link the follower's full comparison makes.
fn start(setup: &Setup, repo: &mut Repository, app: &str, db: &Path) -> Result<(Chain, Follower)> {
    let db_str = db.display().to_string();
    let found = match newest_point(repo, app, &db_str)? {
        Some(f) => f,
        None => {
            tracing::info!("continuous {app} {db_str}: no point yet; backing up the app first");
            backup_now(setup, app)?;
            *repo = setup.open(Some(app))?;
            newest_point(repo, app, &db_str)?.ok_or_else(|| {
                Error::new(
                    ErrorKind::Other,
                    format!("the backup of {app} holds no {db_str}"),
                )
            })?
        }
    };
    let (base, point, body) = found;
    let base_time = point.timestamp()?;
    let hex = base.to_hex();
    let links: HashMap<ObjectId, Delta> = repo
        .deltas()?
        .into_iter()
        .filter(|(_, d)| d.base == hex && d.path == db_str && d.app == app)
        .collect();
    let session = repo.begin_restore()?;
    let mut reader = session.reader();
    // The tip: the interval link with the highest seq whose chain replays (minute links
    // standing in for interval links forget dropped).
    let mut tips: Vec<(&ObjectId, &Delta)> = links.iter().filter(|(_, d)| d.level == 0).collect();
    tips.sort_by_key(|(_, d)| std::cmp::Reverse(d.seq));
    let mut resumed = None;
    if let Some((id, d)) = tips.first() {
        let res = links_to(&links, id).and_then(|c| {
            let (table, sum) = replay(&mut reader, &body, &c)?;
            // The minute being built: the interval links after the last minute link.
            let last_minute = c.iter().rposition(|(_, x)| x.level == 1);
            let mut minute = Minute::new(match last_minute {
                Some(i) => c[i].1.checksum_after.clone(),
                None => body.checksum.clone(),
            });
            if let Some(i) = last_minute {
                minute.tip = Some(c[i].0);
                minute.seq = c[i].1.seq;
            }
            for (lid, x) in &c[last_minute.map_or(0, |i| i + 1)..] {
                let mut pairs = Vec::new();
                for seg in &x.pages {
                    pairs.extend(decode_delta(&reader.read(seg)?)?);
                }
                minute.fold(*lid, x, &pairs);
            }
            Ok((table, sum, minute))
        });
        match res {
            Ok((table, sum, minute)) => resumed = Some((**id, d.seq, table, sum, d.wal, minute)),
            Err(e) => tracing::error!(
                "continuous {app} {db_str}: the chain from point {} cannot be extended ({e}); starting a new chain from a new point",
                base.short()
            ),
        }
    }
    let (chain, follower) = match resumed {
        Some((tip, seq, table, sum, mark, minute)) => {
            let f = Follower::open(db, table, sum, body.page_size, mark.as_ref())?;
            (
                Chain {
                    base,
                    base_time,
                    tip: Some(tip),
                    seq,
                    minute,
                },
                f,
            )
        }
        None if tips.is_empty() => {
            let table = load_page_table(&mut reader, &body)?;
            let sum = lifeboat_core::DbChecksum::of_table(&reader.checksum_key(), &table);
            let f = Follower::open(db, table, sum, body.page_size, None)?;
            (
                Chain {
                    base,
                    base_time,
                    tip: None,
                    seq: 0,
                    minute: Minute::new(body.checksum.clone()),
                },
                f,
            )
        }
        None => {
            drop(reader);
            drop(session);
            // A broken chain cannot be extended (links after a gap are unreachable): a new
            // point starts a new one.
            backup_now(setup, app)?;
            *repo = setup.open(Some(app))?;
            return start(setup, repo, app, db);
        }
    };
    Ok((chain, follower))
}

/// Starts a new chain from a new point: a backup of the whole app (tag `continuous`) when the
/// chain is older than `rebase`, else the newest point another job wrote. The follower then
/// compares every page with that point's table: the first link is what differs, and
/// whatever the follower may have missed before cannot outlive the chain.
fn new_chain(
    setup: &Setup,
    repo: &mut Repository,
    app: &str,
    db: &Path,
    follower: &mut Follower,
    rebase: Duration,
    current: &Chain,
) -> Result<Option<Chain>> {
    let db_str = db.display().to_string();
    let newest = newest_point(repo, app, &db_str)?;
    let fresh = newest.as_ref().is_some_and(|(_, p, _)| {
        p.timestamp()
            .is_ok_and(|t| jiff::Timestamp::now().duration_since(t).unsigned_abs() < rebase)
    });
    let is_current = newest
        .as_ref()
        .is_some_and(|(id, _, _)| *id == current.base);
    if fresh && is_current && current.seq < lifeboat_core::MAX_CHAIN / 2 {
        // The newest point is the one this chain already starts from (the scheduled backup
        // that woke us was the capture's own first point): go on with it.
        return Ok(None);
    }
    if !fresh || is_current {
        backup_now(setup, app)?;
    }
    *repo = setup.open(Some(app))?;
    let (base, point, body) = newest_point(repo, app, &db_str)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Other,
            format!("no point of {app} holds {db_str}"),
        )
    })?;
    if body.page_size != follower.page_size() {
        return Err(Error::new(
            ErrorKind::Source,
            format!("{db_str}: the page size changed; continuous capture starts again"),
        ));
    }
    let session = repo.begin_restore()?;
    let mut reader = session.reader();
    let table = load_page_table(&mut reader, &body)?;
    let sum = lifeboat_core::DbChecksum::of_table(&reader.checksum_key(), &table);
    tracing::info!(
        "continuous {app} {db_str}: new chain from point {}",
        base.short()
    );
    follower.restart_from(
        table,
        sum,
        format!("a new chain starts from point {}", base.short()),
    );
    Ok(Some(Chain {
        base,
        base_time: point.timestamp()?,
        tip: None,
        seq: 0,
        minute: Minute::new(body.checksum.clone()),
    }))
}

/// How much lower than the daemon's the capture threads' CPU priority is (nice): this thread
/// and the writer threads it starts each interval, which inherit it. The app's transaction
/// that wants a core while the capture compresses or seals gets it first: the app's write
/// latency is what continuous capture must not cost (issue 14), and the capture needs 3-6%
/// of a core, so it still keeps up unless the machine is saturated (then its lag grows and
/// `status` shows it, rather than the app slowing down).
const CAPTURE_NICENESS: i32 = 10;

/// Lowers this thread's CPU priority by [`CAPTURE_NICENESS`] (nice is per thread on Linux),
/// once per thread (a capture restarted on the same thread does not lower it again).
fn lower_priority() {
    thread_local!(static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if LOWERED.with(|l| l.replace(true)) {
        return;
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as libc::id_t;
    // SAFETY: get/setpriority on this thread's own id; errno is reset first because -1 is
    // also a valid nice value.
    unsafe {
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return;
        }
        let to = (now + CAPTURE_NICENESS).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, tid, to) != 0 {
            tracing::debug!(
                "continuous capture: could not lower its CPU priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}
