//! `lifeboat run` (issue 13): a real daemon process on short schedules (seconds), real SQLite
//! databases with a writer, real repositories; driven by real signals.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{count_lines, make_db, read_log, Env, PASSWORD};

/// A running `lifeboat -c CONFIG run`, its log (stderr) in a file.
pub(crate) struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// The nice value of each of the daemon's threads, by thread name (`/proc/PID/task`).
    pub(crate) fn thread_nices(&self) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        let dir = format!("/proc/{}/task", self.child.id());
        for t in std::fs::read_dir(dir).unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ..." : nice is field 19, the 17th after the comm's ")".
            let (head, rest) = stat.rsplit_once(") ").unwrap();
            let name = head.split_once(" (").unwrap().1.to_string();
            let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
            out.push((name, nice));
        }
        out
    }

    pub(crate) fn start(env: &Env, config: &Path, name: &str) -> Daemon {
        // A free port: daemons of parallel tests would fight over the default one.
        Daemon::start_listening(env, config, name, "127.0.0.1:0")
    }

    /// [`Daemon::start`] serving /metrics on `listen`.
    pub(crate) fn start_listening(env: &Env, config: &Path, name: &str, listen: &str) -> Daemon {
        let log = env.path(&format!("{name}.log"));
        let child = Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
            .env("LIFEBOAT_PASSWORD", PASSWORD)
            .env_remove("LIFEBOAT_CONFIG")
            .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
            .envs(env.envs.iter().map(|(k, v)| (k, v)))
            .env_remove("RUST_LOG")
            .current_dir(env.dir.path())
            .arg("-c")
            .arg(config)
            .arg("run")
            .args(["--listen", listen])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    pub(crate) fn log(&self) -> String {
        read_log(&self.log)
    }

    /// Lines of the log containing every one of `needles`.
    pub(crate) fn count(&self, needles: &[&str]) -> usize {
        count_lines(&self.log(), needles)
    }

    /// Waits until `cond(log)` holds; panics with the log after `secs`.
    pub(crate) fn wait_for(&mut self, what: &str, secs: u64, cond: impl Fn(&Daemon) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if cond(self) {
                return;
            }
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "daemon exited ({st}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}:\n{}\n{}",
            self.log(),
            self.threads()
        );
    }

    /// Where each of the daemon's threads is, for a timeout's message: a wait that never ends
    /// under a loaded CI machine is otherwise a log that just stops. gdb's backtraces when the
    /// machine has gdb, else each thread's kernel wait channel and stack (`/proc`).
    pub(crate) fn threads(&self) -> String {
        let pid = self.child.id().to_string();
        if let Ok(out) = Command::new("gdb")
            .args(["-p", &pid, "-batch", "-ex", "thread apply all bt"])
            .stdin(Stdio::null())
            .output()
        {
            let bt = String::from_utf8_lossy(&out.stdout);
            // (gdb exits 0 after a failed attach too: no permission to trace.)
            if out.status.success() && bt.contains("Thread ") {
                return format!("threads (gdb):\n{bt}");
            }
        }
        let mut s = String::from("threads (/proc):\n");
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return s;
        };
        for t in tasks.flatten() {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            s.push_str(&format!(
                "{} {} wchan={}\n{}",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                read("wchan"),
                read("stack")
            ));
        }
        s
    }

    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Sends SIGTERM and waits for the exit; returns its status code.
    pub(crate) fn stop(mut self, secs: u64) -> (i32, String) {
        self.signal(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st.code().unwrap_or(-1), self.log());
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("daemon did not stop within {secs} s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lifeboat --repo REPO` with the test's password and state directory.
fn lb(env: &Env, repo: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("lifeboat").unwrap();
    c.env("LIFEBOAT_PASSWORD", PASSWORD)
        .env_remove("LIFEBOAT_CONFIG")
        .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
        .current_dir(env.dir.path())
        .arg("--repo")
        .arg(repo);
    c
}

fn init(env: &Env, repo: &Path) {
    lb(env, repo)
        .args(["init", "--kdf-memory-mib", "8"])
        .assert()
        .success();
}

fn points_of(env: &Env, repo: &Path, app: &str) -> usize {
    let out = lb(env, repo)
        .args(["points", app, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().len()
}

/// A writer committing to `db` until the returned flag is set.
fn writer(
    db: PathBuf,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            c.execute("UPDATE counter SET n = n + 1 WHERE id = 1", ())
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (stop, h)
}

#[test]
fn two_apps_back_up_copy_and_forget_on_schedule_and_a_broken_reload_changes_nothing() {
    let env = Env::new();
    let (main, off) = (env.path("main"), env.path("off"));
    init(&env, &main);
    lb(&env, &off)
        .args(["init", "--from"])
        .arg(&main)
        .assert()
        .success();
    let db = env.path("chat/chat.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    make_db(&db, 500, 200);
    std::fs::create_dir_all(env.path("blog/uploads")).unwrap();
    std::fs::write(env.path("blog/uploads/a.txt"), "hello").unwrap();
    let good = format!(
        r#"[repository.main]
path = "{main}"
[repository.off]
path = "{off}"
[app.chat]
repository = "main"
copy_to = ["off"]
sqlite = ["{db}"]
schedule = "every 2s"
copy_schedule = "every 3s"
forget_schedule = "every 3s"
[app.chat.keep]
last = 2
[app.blog]
repository = "main"
files = ["{up}"]
schedule = "every 2s"
[daemon]
state_file = "{state}"
retry = "1s"
max_jobs = 2
"#,
        main = main.display(),
        off = off.display(),
        db = db.display(),
        up = env.path("blog/uploads").display(),
        state = env.path("state.json").display(),
    );
    let cfg = env.path("lifeboat.toml");
    std::fs::write(&cfg, &good).unwrap();
    let (stop_writer, w) = writer(db.clone());
    let mut d = Daemon::start(&env, &cfg, "run");
    d.wait_for("backups, a copy and a forget of both apps", 120, |d| {
        d.count(&["job ok", "app=chat", "job=backup"]) >= 3
            && d.count(&["job ok", "app=blog", "job=backup"]) >= 2
            && d.count(&["job ok", "app=chat", "job=copy"]) >= 1
            && d.log().lines().any(|l| {
                l.contains("job ok")
                    && l.contains("job=forget")
                    && l.split(" forgotten").any(|before| {
                        before
                            .rsplit(' ')
                            .next()
                            .and_then(|n| n.parse::<u32>().ok())
                            .is_some_and(|n| n > 0)
                    })
            })
    });

    // A broken config on SIGHUP: logged, the running one stays in force.
    std::fs::write(&cfg, good.replace("\"every 2s\"", "\"every soon\"")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for("the refused reload", 30, |d| {
        d.count(&["config not reloaded", "every soon"]) == 1
    });
    let before = d.count(&["job ok", "app=blog", "job=backup"]);
    d.wait_for("backups after the refused reload", 60, |d| {
        d.count(&["job ok", "app=blog", "job=backup"]) > before
    });
    // A good one is taken: blog's backups stop.
    std::fs::write(
        &cfg,
        good.replacen("schedule = \"every 2s\"\n[daemon]", "[daemon]", 1),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for("the reload", 30, |d| d.count(&["config reloaded"]) == 1);
    assert!(d.count(&["config reloaded", "blog"]) == 0, "{}", d.log());

    let (code, log) = d.stop(120);
    stop_writer.store(true, std::sync::atomic::Ordering::Relaxed);
    w.join().unwrap();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("lifeboat run stopped"), "{log}");
    assert!(!log.contains("job failed"), "{log}");

    // Everything it wrote is sound and restorable; the replica got the chat's points.
    lb(&env, &main)
        .args(["check", "--read-data"])
        .assert()
        .success();
    assert!(points_of(&env, &off, "chat") >= 1);
    assert!(points_of(&env, &main, "blog") >= 2);
    let out = env.path("restored.db");
    lb(&env, &main)
        .args(["restore", "chat", "latest", "-o"])
        .arg(&out)
        .assert()
        .success();
    // `schedule --json` reads the state the daemon left.
    let o = Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
        .arg("-c")
        .arg(&cfg)
        .args(["schedule", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in rows {
        assert_eq!(r["app"], "chat");
        assert_eq!(r["outcome"], "ok", "{r}");
        assert!(r["runs"].as_u64().unwrap() >= 1);
    }
}

/// The times of the log's `job started` lines (each line starts with its RFC 3339 time).
fn start_times(log: &str) -> Vec<jiff::Timestamp> {
    log.lines()
        .filter(|l| l.contains("job started"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// Waits until the wall clock is just past a multiple of `period` seconds.
fn just_after_a_slot(period: u64) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let into = now.as_millis() as u64 % (period * 1000);
        if (100..400).contains(&into) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn after_downtime_across_two_slots_a_job_runs_once_at_start() {
    let env = Env::new();
    let main = env.path("main");
    init(&env, &main);
    let db = env.path("chat.db");
    make_db(&db, 100, 100);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = \"{}\"\n[app.chat]\nsqlite = [\"{}\"]\nschedule = \"every 6s\"\n",
            main.display(),
            db.display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&env, &cfg, "first");
    d.wait_for(
        "the first backup (a job never run runs at start)",
        60,
        |d| d.count(&["job ok", "job=backup"]) == 1,
    );
    let (code, log) = d.stop(60);
    assert_eq!(code, 0, "{log}");
    // (At least one: on a loaded machine the next slot may come before the stop.)
    let first_life = points_of(&env, &main, "chat");
    assert!(first_life >= 1);

    // Down across two slots.
    std::thread::sleep(Duration::from_secs(13));
    just_after_a_slot(6);
    let restarted = jiff::Timestamp::now();
    let mut d = Daemon::start(&env, &cfg, "second");
    d.wait_for("the catch-up backup", 60, |d| {
        d.count(&["job ok", "job=backup"]) == 1
    });
    // Judged on the log's own times, so a loaded machine cannot make it flaky: the catch-up
    // run started at once (not at the next slot, ~5.7 s after the restart), and no second
    // run started before the slot after it (one run for the missed slots, not one per slot;
    // a run that outlasts a slot is followed by one more, which is not what is tested).
    let starts = start_times(&d.log());
    let first = starts[0];
    assert!(
        first.duration_since(restarted) < jiff::SignedDuration::from_secs(5),
        "catch-up started {first}, restart {restarted}"
    );
    let next_slot = (first.as_second() / 6 + 1) * 6;
    std::thread::sleep(Duration::from_secs(
        (next_slot - jiff::Timestamp::now().as_second()).clamp(0, 10) as u64,
    ));
    let before_next = start_times(&d.log())
        .into_iter()
        .filter(|t| t.as_second() < next_slot)
        .count();
    assert_eq!(before_next, 1, "{}", d.log());
    let (code, log) = d.stop(60);
    assert_eq!(code, 0, "{log}");
    assert!(points_of(&env, &main, "chat") > first_life);
}

#[test]
fn sigterm_during_a_backup_stops_it_cleanly_and_leaves_no_partial_point() {
    let env = Env::new();
    let main = env.path("main");
    init(&env, &main);
    // Incompressible data, large enough that the backup is still running at SIGTERM.
    let big = env.path("big");
    std::fs::create_dir_all(&big).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..4 {
        let mut buf = vec![0u8; 32 << 20];
        for c in buf.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            c.copy_from_slice(&seed.to_le_bytes());
        }
        std::fs::write(big.join(format!("f{i}")), &buf).unwrap();
    }
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.main]\npath = \"{}\"\n[app.big]\nfiles = [\"{}\"]\nschedule = \"daily\"\n[daemon]\ngrace = \"0s\"\nstate_file = \"{}\"\n",
            main.display(),
            big.display(),
            env.path("state.json").display()
        ),
    )
    .unwrap();
    let mut d = Daemon::start(&env, &cfg, "run");
    d.wait_for("the backup to start", 60, |d| {
        d.count(&["job started", "app=big"]) == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let (code, log) = d.stop(90);
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("job interrupted"), "{log}");
    assert!(log.contains("lifeboat run stopped"), "{log}");
    assert_eq!(points_of(&env, &main, "big"), 0, "no partial point: {log}");
    lb(&env, &main)
        .args(["check", "--read-data"])
        .assert()
        .success();
    let leases: Vec<_> = std::fs::read_dir(main.join("leases"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(
        leases.is_empty(),
        "the backup's lease was released: {leases:?}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["jobs"]["big/backup"]["outcome"], "interrupted",
        "{state}"
    );
}

/// A scheduled drill (issue 15 item 1): `lifeboat run` drills the app on its `drill`
/// schedule and records each outcome; once a pack of the point is damaged the next drill
/// fails, the job is logged as failed and `points` shows the failed drill.
#[test]
fn scheduled_drills_prove_points_and_a_damaged_point_fails_its_next_drill() {
    let env = Env::new();
    let repo = env.path("repo");
    init(&env, &repo);
    let db = env.path("chat/chat.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    make_db(&db, 800, 200);
    let config = env.path("lifeboat.toml");
    std::fs::write(
        &config,
        format!(
            "[repository.main]\npath = \"{}\"\n[app.chat]\nsqlite = [\"{}\"]\ndrill = \"every 2s\"\n\
             [daemon]\nstate_file = \"{}\"\nretry = \"1s\"\nscratch_dir = \"{}\"\n",
            repo.display(),
            db.display(),
            env.path("state.json").display(),
            env.dir.path().display()
        ),
    )
    .unwrap();
    crate::common::lb_config(&config, env.dir.path())
        .args(["backup", "chat"])
        .assert()
        .success();
    let mut d = Daemon::start(&env, &config, "drills");
    d.wait_for("a passed drill", 60, |d| {
        d.count(&["job ok", "drilled: every check passed"]) >= 1
    });
    let last_drill = |env: &Env| {
        let out = lb(env, &repo)
            .args(["points", "chat", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array().unwrap().last().unwrap()["proofs"]["last_drill"].clone()
    };
    assert_eq!(last_drill(&env)["ok"], true);
    for p in std::fs::read_dir(repo.join("packs"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
    {
        let p = p.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x20;
        std::fs::write(&p, b).unwrap();
    }
    d.wait_for("a failed drill", 60, |d| {
        d.count(&["job failed", "drill of point", "authentication failed"]) >= 1
    });
    assert_eq!(last_drill(&env)["ok"], false);
    // (That a new backup clears it waits for issue 16's repair: backup deduplication trusts
    // the index, so the next point still rests on the damaged pack.)
    let (code, log) = d.stop(30);
    assert_eq!(code, 0, "{log}");
}
