//! Continuous capture (issue 14) on real processes: a writer committing through SQLite's WAL
//! (autocheckpoint every 10 pages, PASSIVE/FULL/RESTART/TRUNCATE checkpoints in a loop), a
//! real `lifeboat run` (killed with SIGKILL and started again), then `restore --at` at many
//! moments, each compared with what the writer had committed by then.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::Env;
use crate::daemon::Daemon;

/// One commit of the writer: its id, and when it began and returned (seconds since the epoch).
#[derive(Clone, Copy, Debug)]
struct Commit {
    id: i64,
    began: f64,
    returned: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A writer thread: each commit appends a row to `t` and sets `counter.n` to its id (two
/// pages apart, so a torn capture shows), every 40th commit runs a checkpoint of the next
/// mode.
struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Commit>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(db: &Path, pause: Duration) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l, db) = (Arc::clone(&stop), Arc::clone(&log), db.to_path_buf());
        let thread = std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            c.execute_batch("PRAGMA wal_autocheckpoint = 10").unwrap();
            let mut id: i64 = c
                .query_row("SELECT coalesce(max(id), 0) FROM t", [], |r| r.get(0))
                .unwrap();
            let modes = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"];
            while !s.load(Ordering::SeqCst) {
                id += 1;
                let began = now();
                c.execute_batch("BEGIN IMMEDIATE").unwrap();
                c.execute(
                    "INSERT INTO t(id, v) VALUES (?1, ?2)",
                    (id, format!("{id:08}{}", "x".repeat(300))),
                )
                .unwrap();
                c.execute("UPDATE counter SET n = ?1", (id,)).unwrap();
                c.execute_batch("COMMIT").unwrap();
                l.lock().unwrap().push(Commit {
                    id,
                    began,
                    returned: now(),
                });
                if id % 40 == 0 {
                    let mode = modes[(id as usize / 40) % modes.len()];
                    // Busy is fine (a reader held it); the writer goes on.
                    let _ = c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()));
                }
                std::thread::sleep(pause);
            }
        });
        Writer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Commit> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.log.lock().unwrap().clone()
    }
}

fn setup(env: &Env, interval: &str) -> (PathBuf, PathBuf) {
    let db = env.path("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);
         CREATE TABLE counter(n INTEGER NOT NULL);
         INSERT INTO counter VALUES (0);",
    )
    .unwrap();
    drop(c);
    let config = env.path("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[repository.main]\npath = {:?}\n[daemon]\nstate_file = {:?}\nretry = \"1s\"\n[app.chat]\nsqlite = [{:?}]\ncontinuous = {interval:?}\n",
            env.repo,
            env.path("state.json"),
            db
        ),
    )
    .unwrap();
    env.init();
    (db, config)
}

/// `restore chat --at T --only db -o OUT --json`: the restored file and the time of the
/// database it holds (the delta's, or the point's).
fn restore_at(env: &Env, config: &Path, at: f64, out: &Path) -> (PathBuf, f64) {
    let _ = std::fs::remove_file(out);
    let t = jiff::Timestamp::from_microsecond((at * 1e6) as i64).unwrap();
    let (stdout, _) = env.ok(&[
        &"-c",
        &config,
        &"restore",
        &"chat",
        &"--at",
        &t.to_string(),
        &"--only",
        &"db",
        &"-o",
        &out,
        &"--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let at = &v["at"];
    let time = match at["databases"].as_array().and_then(|d| d.first()) {
        Some(d) => {
            // A database rebuilt from deltas gets SQLite's full check unless told otherwise.
            let verified = v["restored"][0]["verified"].as_str().unwrap();
            assert!(
                verified.contains("replayed") && verified.contains("integrity_check ok"),
                "{verified}"
            );
            d["time"].as_str().unwrap().to_string()
        }
        None => at["point_time"].as_str().unwrap().to_string(),
    };
    let ts: jiff::Timestamp = time.parse().unwrap();
    (out.to_path_buf(), ts.as_microsecond() as f64 / 1e6)
}

/// The restored database holds exactly the commits 1..=k (no hole, nothing torn: the counter
/// row agrees), every commit that returned before `taken` and none that began after it.
fn assert_consistent_at(db: &Path, log: &[Commit], taken: f64, what: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    let ids: Vec<i64> = c
        .prepare("SELECT id FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let k = ids.len() as i64;
    if let Some(i) = ids
        .iter()
        .enumerate()
        .position(|(i, id)| *id != i as i64 + 1)
    {
        panic!(
            "{what}: rows are not the commits 1..={k}: row {i} is commit {} (around: {:?})",
            ids[i],
            &ids[i.saturating_sub(3)..(i + 3).min(ids.len())]
        );
    }
    let n: i64 = c
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        n, k,
        "{what}: the counter row and the rows disagree (a torn capture)"
    );
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok", "{what}");
    // The delta's time is read right before its snapshot begins, so every commit that
    // returned before it is in; one that began after it may be too if the capture thread was
    // descheduled in between (allow half a second on a loaded test machine).
    let returned_before = log
        .iter()
        .filter(|x| x.returned < taken - 0.05)
        .map(|x| x.id)
        .max()
        .unwrap_or(0);
    let began_before = log
        .iter()
        .filter(|x| x.began < taken + 0.5)
        .map(|x| x.id)
        .max()
        .unwrap_or(0);
    assert!(
        k >= returned_before,
        "{what}: {k} rows, but commit {returned_before} had returned before the capture"
    );
    assert!(
        k <= began_before,
        "{what}: {k} rows, but only {began_before} commits had begun by the capture"
    );
    k
}

/// The delta records in the repository (not the temp files of one being written).
fn deltas(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(env.repo.join("deltas"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn continuous_capture_loses_no_commit_through_checkpoints_restarts_and_kill_9() {
    let env = Env::new();
    let (db, config) = setup(&env, "300ms");
    let mut d = Daemon::start(&env, &config, "run1");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    let writer = Writer::start(&db, Duration::from_millis(3));
    std::thread::sleep(Duration::from_secs(4));
    // Killed at some moment: at most the interval in progress is lost, and the next start
    // goes on from the chain's tip.
    d.signal(libc::SIGKILL);
    let _ = d.stop(10);
    std::thread::sleep(Duration::from_secs(1));
    let mut d = Daemon::start(&env, &config, "run2");
    d.wait_for("the capture to resume", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    // A prune beside the capture (its sessions hold leases as any backup's do): nothing a
    // delta needs may go.
    env.ok(&[&"-c", &config, &"prune"]);
    std::thread::sleep(Duration::from_secs(2));
    let log = writer.finish();
    let last = log.last().unwrap().id;
    std::thread::sleep(Duration::from_secs(2));
    let (code, run2) = d.stop(30);
    assert_eq!(code, 0, "{run2}");
    assert!(
        !run2.contains("ERROR"),
        "the capture reported an error:\n{run2}"
    );
    // It went on from the chain the first run left (link > 0), not from a new point.
    assert!(
        run2.contains("(link ") && !run2.contains("(link 0)"),
        "{run2}"
    );
    assert!(deltas(&env).len() >= 10, "{} deltas", deltas(&env).len());
    // Hot pages went as patches against their last whole version (the restores below read
    // them back, and check rebuilds and authenticates every one).
    let patches: u64 = run2
        .split(" pages stored as patches")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no patch count in the log:\n{run2}"));
    assert!(patches > 0, "{run2}");

    // Many moments across the run, each a consistent prefix matching the writer's log.
    let (first, end) = (log[0].began, log.last().unwrap().returned);
    let out = env.path("at.db");
    let mut seen = Vec::new();
    for i in 0..=12 {
        let at = first + (end - first) * i as f64 / 12.0;
        let (file, taken) = restore_at(&env, &config, at, &out);
        assert!(
            taken <= at + 1e-3,
            "a database from after the moment asked for"
        );
        seen.push(assert_consistent_at(
            &file,
            &log,
            taken,
            &format!("--at +{:.2}s", at - first),
        ));
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(
        seen.iter().filter(|k| **k > 0 && **k < last).count() >= 6,
        "restores at different moments give different databases: {seen:?}"
    );
    // After the writer stopped and the capture caught up: every commit.
    let (file, taken) = restore_at(&env, &config, now(), &out);
    assert_eq!(assert_consistent_at(&file, &log, taken, "now"), last);
    // `points` shows the window the deltas cover.
    let (w, _) = env.ok(&[&"-c", &config, &"points", &"chat", &"--json", &"--windows"]);
    let w: serde_json::Value = serde_json::from_str(&w).unwrap();
    let links: u64 = w
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["links"].as_u64().unwrap())
        .sum();
    assert_eq!(links as usize, deltas(&env).len(), "{w}");
    let (out, _) = env.ok(&[&"-c", &config, &"check", &"--read-data"]);
    assert!(out.contains("no problems found"), "{out}");
}

/// A stop (a deploy, say) right after a commit, in the middle of a long interval: the commit
/// goes out before the daemon exits, not at its next start.
#[test]
fn a_stop_captures_what_was_committed_since_the_last_interval() {
    let env = Env::new();
    let (db, config) = setup(&env, "5s");
    let mut d = Daemon::start(&env, &config, "run");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute("INSERT INTO t(id, v) VALUES (1, 'the last words')", [])
        .unwrap();
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
    assert_eq!(deltas(&env).len(), 1, "{log}");
    let (file, _) = restore_at(&env, &config, now(), &env.path("at.db"));
    let v: String = rusqlite::Connection::open(&file)
        .unwrap()
        .query_row("SELECT v FROM t WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, "the last words");
}

#[test]
fn the_wal_stays_bounded_while_the_capture_holds_its_snapshot() {
    let env = Env::new();
    let (db, config) = setup(&env, "200ms");
    let mut d = Daemon::start(&env, &config, "run");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    d.wait_for("the first link", 30, |_| !deltas(&env).is_empty());
    // The app's default autocheckpoint (1000 pages) and page-sized rows: without the
    // follower's handovers its snapshot would keep the log from ever restarting.
    let c = rusqlite::Connection::open(&db).unwrap();
    let wal = env.path("app.db-wal");
    let mut max = 0u64;
    let row = "y".repeat(3000);
    for i in 1..=12_000i64 {
        c.execute("INSERT INTO t(id, v) VALUES (?1, ?2)", (i, &row))
            .unwrap();
        if i % 50 == 0 {
            max = max.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
    }
    let frame = 4096 + 24;
    // A stop captures what was committed since the last interval.
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
    // 4,096 frames before a handover, plus what the app writes while the follower captures,
    // anchors again after the handover (comparing every page when it cannot prove nothing was
    // missed) and the app's checkpoint
    // restarts the log (generous: a debug build on a loaded 2-core machine), never the 24,000
    // frames of these 12,000 commits that a snapshot held all along would keep.
    assert!(
        max < 18_000 * frame,
        "the WAL grew to {} frames",
        max / frame
    );
    let out = env.path("now.db");
    let (file, _) = restore_at(&env, &config, now(), &out);
    assert_eq!(crate::common::count(&file, "t"), 12_000, "{log}");
}

#[test]
fn a_restarted_daemon_resumes_without_comparing_pages_and_an_idle_database_writes_nothing() {
    let env = Env::new();
    let (db, config) = setup(&env, "200ms");
    let mut d = Daemon::start(&env, &config, "run1");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    // The capture runs below the daemon's CPU priority, so the app's writers come first.
    let nices = d.thread_nices();
    assert!(
        nices.iter().any(|(_, n)| *n >= 10) && nices.iter().any(|(_, n)| *n == 0),
        "{nices:?}"
    );
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA wal_autocheckpoint = 0").unwrap();
    for i in 1..=20 {
        c.execute("INSERT INTO t(id, v) VALUES (?1, 'x')", (i,))
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    d.wait_for("a delta with row 20", 30, |_| deltas(&env).len() >= 2);
    std::thread::sleep(Duration::from_secs(1));
    let (code, log1) = d.stop(30);
    assert_eq!(code, 0, "{log1}");
    let heals_before = log1.matches("comparing every page").count();
    assert_eq!(
        heals_before, 1,
        "only the first link compares every page:\n{log1}"
    );

    // Started again with the WAL where the last delta left it: no comparison.
    let before = deltas(&env).len();
    let mut d = Daemon::start(&env, &config, "run2");
    d.wait_for("the capture to resume", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        deltas(&env).len(),
        before,
        "an idle database writes nothing"
    );
    c.execute("INSERT INTO t(id, v) VALUES (21, 'y')", ())
        .unwrap();
    d.wait_for("the delta of row 21", 30, |_| deltas(&env).len() > before);
    let (code, log2) = d.stop(30);
    assert_eq!(code, 0, "{log2}");
    assert_eq!(log2.matches("comparing every page").count(), 0, "{log2}");

    // Stopped, the log restarted twice behind its back: the next start compares once.
    c.execute("INSERT INTO t(id, v) VALUES (22, 'z')", ())
        .unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    c.execute("INSERT INTO t(id, v) VALUES (23, 'z')", ())
        .unwrap();
    c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        .unwrap();
    c.execute("INSERT INTO t(id, v) VALUES (24, 'z')", ())
        .unwrap();
    let mut d = Daemon::start(&env, &config, "run3");
    d.wait_for("the capture to resume", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    d.wait_for("the comparison", 30, |d| {
        d.count(&["comparing every page"]) == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    let (code, log3) = d.stop(30);
    assert_eq!(code, 0, "{log3}");
    assert_eq!(log3.matches("comparing every page").count(), 1, "{log3}");
    let out = env.path("now.db");
    let (file, _) = restore_at(&env, &config, now(), &out);
    assert_eq!(crate::common::count(&file, "t"), 24);
}

#[test]
fn a_gap_in_a_chain_is_an_error_naming_it_and_check_reports_it() {
    let env = Env::new();
    let (db, config) = setup(&env, "200ms");
    let mut d = Daemon::start(&env, &config, "run");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    // The first link records where the WAL is (it compared every page once).
    d.wait_for("the first link", 30, |_| !deltas(&env).is_empty());
    let c = rusqlite::Connection::open(&db).unwrap();
    let mut times = Vec::new();
    for i in 1..=6 {
        c.execute("INSERT INTO t(id, v) VALUES (?1, 'x')", (i,))
            .unwrap();
        let n = deltas(&env).len();
        d.wait_for("a delta", 30, |_| deltas(&env).len() > n);
        times.push(now());
    }
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
    let full_log = log.clone();
    // Delta names are hashes: find a middle link by removing one file at a time until the
    // restore at the end reports a gap (removing the tip just restores an earlier moment).
    let out = env.path("x.db");
    let files = deltas(&env);
    let mut named = None;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        std::fs::remove_file(f).unwrap();
        let res = env
            .lb()
            .args(["-c"])
            .arg(&config)
            .args(["restore", "chat", "--at"])
            .arg(jiff::Timestamp::now().to_string())
            .args(["--only", "db", "-o"])
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&res.stderr).into_owned();
        // A gap after the link of row 1 (seq 1 compares every page, seq 2 holds row 1).
        let late = ["seq 3 ", "seq 4 ", "seq 5 ", "seq 6 "]
            .iter()
            .any(|s| err.contains(&format!("delta {s}(")));
        if res.status.code() == Some(5) && err.contains("has a gap") && late {
            named = Some((f.clone(), bytes, err));
            break;
        }
        std::fs::write(f, &bytes).unwrap();
        let _ = std::fs::remove_file(&out);
    }
    let (file, bytes, err) = named.expect("removing a middle link makes a gap");
    assert!(err.contains("is missing"), "{err}");
    assert!(
        err.contains("newest moment restorable before the gap"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written on a gap");
    // check names it too.
    let res = env
        .lb()
        .args(["-c"])
        .arg(&config)
        .arg("check")
        .output()
        .unwrap();
    assert_ne!(res.status.code(), Some(0));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    assert!(report.contains("gap"), "{report}");
    // A moment before the gap still restores.
    let (f, taken) = restore_at(&env, &config, times[0], &out);
    assert_eq!(
        crate::common::count(&f, "t"),
        1,
        "restored as of {taken} for {}; removed link: {err}\n{full_log}",
        times[0]
    );
    assert!(taken <= times[0]);
    std::fs::write(&file, bytes).unwrap();
    let (f, _) = restore_at(&env, &config, now(), &out);
    assert_eq!(crate::common::count(&f, "t"), 6);
}

/// The store goes away for a few seconds while the app writes: the capture says so once, goes
/// on following the database (the WAL stays bounded, nothing is spooled), and when the store is
/// back it writes what changed meanwhile; every commit is restorable at the end.
///
/// Only the daemon goes through the proxy. The test's moto is shared by every S3 test of the
/// suite and, under that load, answers some requests 500 by itself (its in-memory listing races
/// with deletes of other tests: `KeyError` in `list_objects` in its log). So the daemon keeps the
/// suite's one retry (with none, such a 500 before the outage was a second report, and its
/// recovery satisfied the wait for this one's), the reports and recoveries counted are the ones
/// after the proxy went down, and the restore at the end goes to moto directly with its retry
/// (with none, a 500 on a listing failed the test after everything had worked).
#[test]
fn an_outage_of_the_store_loses_nothing_and_is_reported_once() {
    use crate::fault_proxy::{FaultProxy, Faults};
    let Some(mut env) = Env::s3() else { return };
    let (db, config) = setup(&env, "300ms");
    let upstream: std::net::SocketAddr = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT")
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let none = Faults {
        drop: 0.0,
        slow_down: 0.0,
        delay: 0.0,
        cut: 0.0,
    };
    let proxy = FaultProxy::start(upstream, none, 1);
    let direct = env.envs.clone();
    for (k, v) in env.envs.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = format!("http://{}", proxy.addr);
        }
    }
    let mut d = Daemon::start(&env, &config, "run");
    env.envs = direct;
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    let writer = Writer::start(&db, Duration::from_millis(5));
    std::thread::sleep(Duration::from_secs(2));
    let reported = d.count(&["cannot write deltas"]);
    let recovered = d.count(&["writing deltas again"]);
    proxy.set_down(true);
    d.wait_for("the outage to be reported", 60, |d| {
        d.count(&["cannot write deltas"]) > reported
    });
    std::thread::sleep(Duration::from_secs(3));
    proxy.set_down(false);
    // Up to 3 minutes: in full-suite runs on 2 cores the capture has twice stayed silent for
    // more than 60 s after the store came back (never reproduced alone or under synthetic
    // load; ARCHITECTURE "Known gaps"). A timeout prints the daemon's thread stacks.
    d.wait_for("the capture to recover", 180, |d| {
        d.count(&["writing deltas again"]) > recovered
    });
    let log = writer.finish();
    std::thread::sleep(Duration::from_secs(2));
    let (code, out) = d.stop(30);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.matches("cannot write deltas").count(),
        reported + 1,
        "one report per outage:\n{out}"
    );
    let at = env.path("now.db");
    let (file, taken) = restore_at(&env, &config, now(), &at);
    assert_eq!(
        assert_consistent_at(&file, &log, taken, "after the outage"),
        log.last().unwrap().id
    );
}

/// A scheduled backup of the app starts a new chain from its point (the follower compares
/// every page with it once); moments on both sides of it restore consistently.
#[test]
fn a_scheduled_backup_starts_a_new_chain_and_moments_on_both_sides_restore() {
    let env = Env::new();
    let (db, config) = setup(&env, "300ms");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("schedule = \"every 4s\"\n");
    std::fs::write(&config, text).unwrap();
    let mut d = Daemon::start(&env, &config, "run");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    let writer = Writer::start(&db, Duration::from_millis(5));
    // Two chains with links: the first scheduled backup may come before the first chain has
    // any (a loaded machine starts the capture late), the next one comes 4 s later.
    let chains_with_links = || {
        let (w, _) = env.ok(&[&"-c", &config, &"points", &"chat", &"--json", &"--windows"]);
        let w: serde_json::Value = serde_json::from_str(&w).unwrap();
        w.as_array().map_or(0, Vec::len)
    };
    d.wait_for("a new chain after a scheduled backup", 60, |d| {
        d.count(&["new chain from point"]) >= 1 && chains_with_links() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    let log = writer.finish();
    std::thread::sleep(Duration::from_secs(1));
    let (code, out) = d.stop(30);
    assert_eq!(code, 0, "{out}");
    let (w, _) = env.ok(&[&"-c", &config, &"points", &"chat", &"--json", &"--windows"]);
    let w: serde_json::Value = serde_json::from_str(&w).unwrap();
    assert!(w.as_array().unwrap().len() >= 2, "two chains: {w}");
    let (first, end) = (log[0].began, log.last().unwrap().returned);
    let at = env.path("at.db");
    for i in 0..=8 {
        let t = first + (end - first) * i as f64 / 8.0;
        let (file, taken) = restore_at(&env, &config, t, &at);
        assert_consistent_at(&file, &log, taken, &format!("--at +{:.2}s", t - first));
    }
    let (file, taken) = restore_at(&env, &config, now(), &at);
    assert_eq!(
        assert_consistent_at(&file, &log, taken, "now"),
        log.last().unwrap().id
    );
    // Both chains are whole and replay (check exits non-zero on any problem).
    env.ok(&[&"-c", &config, &"check"]);
}

/// A minute link every 60 intervals; `forget` then keeps every interval's link only for
/// `continuous_fine` and one a minute before: moments in the thinned part restore as of the
/// minute link before them, moments after as before, and check sees whole chains.
#[test]
fn forget_thins_old_interval_links_to_one_a_minute_and_every_moment_still_restores() {
    let env = Env::new();
    let (db, config) = setup(&env, "100ms");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("continuous_fine = \"2s\"\n");
    std::fs::write(&config, text).unwrap();
    let mut d = Daemon::start(&env, &config, "run");
    d.wait_for("the capture to start", 60, |d| {
        d.count(&["following from point"]) == 1
    });
    let writer = Writer::start(&db, Duration::from_millis(5));
    // A minute here is 60 intervals of 100 ms.
    std::thread::sleep(Duration::from_secs(14));
    let log = writer.finish();
    std::thread::sleep(Duration::from_secs(1));
    let (code, out) = d.stop(30);
    assert_eq!(code, 0, "{out}");
    let before = deltas(&env).len();
    std::thread::sleep(Duration::from_secs(3));
    let (fo, _) = env.ok(&[&"-c", &config, &"forget", &"chat", &"--keep-last", &"10"]);
    assert!(fo.contains("thinned"), "{fo}");
    let after = deltas(&env).len();
    assert!(
        after < before / 2,
        "{before} links before, {after} after thinning:\n{fo}"
    );
    env.ok(&[&"-c", &config, &"check"]);
    let (first, end) = (log[0].began, log.last().unwrap().returned);
    let at = env.path("at.db");
    let mut seen = Vec::new();
    for i in 0..=10 {
        let t = first + (end - first) * i as f64 / 10.0;
        let (file, taken) = restore_at(&env, &config, t, &at);
        seen.push(assert_consistent_at(
            &file,
            &log,
            taken,
            &format!(
                "--at +{:.2}s (link +{:.2}s)\n{out}",
                t - first,
                taken - first
            ),
        ));
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let (file, taken) = restore_at(&env, &config, now(), &at);
    assert_eq!(
        assert_consistent_at(&file, &log, taken, "now"),
        log.last().unwrap().id
    );
    // Asked for, only quick_check runs on the replayed database.
    let _ = std::fs::remove_file(&at);
    let (out, _) = env.ok(&[
        &"-c",
        &config,
        &"restore",
        &"chat",
        &"--at",
        &"-0s",
        &"--only",
        &"db",
        &"-o",
        &at,
        &"--verify",
        &"quick",
    ]);
    assert!(out.contains("quick_check ok"), "{out}");
}
