//! Issue 12 items 8-10: an app's hooks (stop/start around an in-place restore,
//! before/after_backup around a backup), its own checks (smoke queries, health URL) and the
//! rollback when one fails, on real processes: one shell script serves as every hook, logs
//! each run (phase, operation, the database file's inode, the point) and fails when a file
//! `fail-PHASE-OPERATION` exists; the "app" holding the database open is a real process; the
//! health endpoint is a `TcpListener` thread of the test.
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use crate::common::*;

/// An app `chat` (one SQLite database, one upload directory) in a config of its own, backed up
/// once (state A: 100 messages, upload "A"), then changed (state B: 150 messages, upload "B").
struct App {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    db: PathBuf,
    upload: PathBuf,
    log: PathBuf,
}

const HOOK: &str = r#"#!/bin/sh
d=$(dirname "$0")
ino=$(stat -c %i "$d/app/chat.db" 2>/dev/null || echo none)
echo "$LIFEBOAT_PHASE $LIFEBOAT_OPERATION $ino ${LIFEBOAT_POINT:-none} ${LIFEBOAT_RESULT:-none} $(pwd)" >> "$d/hooks.log"
if [ -e "$d/fail-$LIFEBOAT_PHASE-$LIFEBOAT_OPERATION" ]; then
    echo "failing $LIFEBOAT_PHASE on purpose" >&2
    exit 3
fi
if [ "$LIFEBOAT_PHASE" = stop ] && [ -e "$d/app.pid" ]; then
    pid=$(cat "$d/app.pid")
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm "$d/app.pid"
fi
exit 0
"#;

impl App {
    /// `extra` is appended to the config (more `[app.chat.*]` keys and tables).
    fn new(hooks: &str, checks: &str) -> App {
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s);
        let (db, upload, log) = (p("app/chat.db"), p("app/uploads/u.txt"), p("hooks.log"));
        std::fs::create_dir_all(p("app")).unwrap();
        write(&p("hook.sh"), HOOK.as_bytes(), 0o755);
        let hook = p("hook.sh").display().to_string();
        let cfg = p("lifeboat.toml");
        let text = format!(
            "[repository.r]\npath = \"{}\"\n\n[app.chat]\nsqlite = [\"{}\"]\nfiles = [\"{}\"]\n\n\
             [app.chat.hooks]\n{}\n\n[app.chat.checks]\n{}\n",
            p("repo").display(),
            db.display(),
            p("app/uploads").display(),
            hooks.replace("HOOK", &hook),
            checks
        );
        write(&cfg, text.as_bytes(), 0o600);
        let app = App {
            dir,
            cfg,
            db,
            upload,
            log,
        };
        app.lb()
            .args(["init", "--kdf-memory-mib", "8"])
            .assert()
            .success();
        make_db(&app.db, 100, 200);
        write(&app.upload, b"A", 0o644);
        app.lb().args(["backup", "chat"]).assert().success();
        add_rows(&app.db, 50);
        write(&app.upload, b"B", 0o644);
        app.age();
        std::fs::remove_file(&app.log).ok();
        app
    }

    fn lb(&self) -> assert_cmd::Command {
        lb_config(&self.cfg, self.dir.path())
    }

    fn path(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// Dates the database and its side files in 2000, so that the point is newer and an
    /// in-place restore needs no --force (which would also skip the "open by another
    /// process" check these tests rely on).
    fn age(&self) {
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(946_684_800);
        for s in ["", "-wal", "-shm"] {
            let mut p = self.db.as_os_str().to_owned();
            p.push(s);
            if let Ok(f) = std::fs::File::options().write(true).open(PathBuf::from(p)) {
                f.set_modified(old).unwrap();
            }
        }
    }

    /// Makes the hook fail in `phase` of `operation` (`restore`, `rollback`, `backup`).
    fn fail(&self, phase: &str, operation: &str) {
        write(&self.path(&format!("fail-{phase}-{operation}")), b"", 0o644);
    }

    /// The hook runs so far: `(phase, operation, inode of the database, point, result,
    /// working directory)`.
    fn log(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').map(str::to_string).collect())
            .collect()
    }

    fn phases(&self) -> Vec<String> {
        self.log()
            .iter()
            .map(|l| format!("{} {}", l[0], l[1]))
            .collect()
    }

    fn messages(&self) -> i64 {
        count(&self.db, "messages")
    }

    fn upload(&self) -> String {
        std::fs::read_to_string(&self.upload).unwrap()
    }

    fn point_ids(&self) -> Vec<(String, Vec<String>)> {
        let out = self.lb().args(["points", "--json"]).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        v.iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["tags"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    }

    /// The id of the one point that is not a pre-restore point.
    fn backed_up(&self) -> String {
        let ids: Vec<_> = self
            .point_ids()
            .into_iter()
            .filter(|(_, t)| !t.iter().any(|t| t == "pre-restore"))
            .collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        ids[0].0.clone()
    }
}

fn add_rows(db: &Path, n: u32) {
    let c = rusqlite::Connection::open(db).unwrap();
    for i in 0..n {
        c.execute(
            "INSERT INTO messages(body) VALUES (?1)",
            (body_of(1000 + i as i64, 200),),
        )
        .unwrap();
    }
}

fn inode(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino().to_string()
}

const STOP_START: &str = "stop = [\"HOOK\"]\nstart = [\"HOOK\"]";

/// The app's process holds the database open, so without a stop hook the restore refuses;
/// the stop hook ends it, then the restore replaces the database (new inode), then the start
/// hook runs: the order is read from the inode each hook saw.
#[test]
fn stop_and_start_hooks_run_around_an_in_place_restore() {
    let app = App::new(STOP_START, "");
    let before = inode(&app.db);
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .stdin(std::fs::File::open(&app.db).unwrap())
        .spawn()
        .unwrap();
    write(
        &app.path("app.pid"),
        holder.id().to_string().as_bytes(),
        0o644,
    );
    let reaper = std::thread::spawn(move || holder.wait().unwrap());
    // The plan names the hooks, and runs none.
    let plan = app
        .lb()
        .args(["restore", "chat", "latest", "--dry-run"])
        .output()
        .unwrap();
    assert!(plan.status.success(), "{}", stderr(&plan));
    let text = stdout(&plan);
    assert!(
        text.contains("hook    stop: ") && text.contains("hook    start: "),
        "{text}"
    );
    assert!(
        app.log().is_empty(),
        "a dry run runs no hook: {:?}",
        app.log()
    );
    let out = app
        .lb()
        .args(["restore", "chat", "latest", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let after = inode(&app.db);
    assert_ne!(before, after, "the database was replaced");
    let point = app.backed_up();
    let log = app.log();
    assert_eq!(app.phases(), ["stop restore", "start restore"], "{log:?}");
    assert_eq!(log[0][2], before, "stop ran before the restore");
    assert_eq!(log[1][2], after, "start ran after it");
    assert_eq!(log[0][3], point, "LIFEBOAT_POINT is the point restored");
    assert_eq!(
        Path::new(&log[0][5]),
        app.cfg.parent().unwrap(),
        "hooks run in the config's directory"
    );
    // The app's process was ended by the stop hook.
    let status = reaper.join().unwrap();
    assert!(!status.success(), "{status:?}");
    assert_eq!(app.messages(), 100);
    assert_eq!(app.upload(), "A");
    let text = stdout(&out);
    assert!(text.contains("hook    stop"), "{text}");
    assert!(text.contains("hook    start"), "{text}");
}

/// Without a stop hook, the same process makes the restore refuse (exit 6) before anything.
#[test]
fn without_a_stop_hook_an_open_database_is_refused() {
    let app = App::new("start = [\"HOOK\"]", "");
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .stdin(std::fs::File::open(&app.db).unwrap())
        .spawn()
        .unwrap();
    fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        6,
        "is open by another process",
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(app.log().is_empty(), "{:?}", app.log());
    assert_eq!(app.messages(), 150);
}

/// A stop hook that succeeds but leaves the database open: the restore refuses after it
/// (exit 6), nothing is written (so nothing is rolled back), the start hook runs again.
#[test]
fn a_stop_hook_that_leaves_the_database_open_changes_nothing() {
    let app = App::new(STOP_START, "");
    let before = inode(&app.db);
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .stdin(std::fs::File::open(&app.db).unwrap())
        .spawn()
        .unwrap();
    let o = fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        6,
        "is open by another process",
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    let err = stderr(&o);
    assert!(
        err.contains("nothing was restored; the start hook ran again"),
        "{err}"
    );
    assert_eq!(app.phases(), ["stop restore", "start restore"]);
    assert_eq!(inode(&app.db), before);
    assert_eq!(app.messages(), 150);
    assert_eq!(app.upload(), "B");
}

/// A stop hook that outlives its timeout is killed with everything it started (its process
/// group); the error names it; nothing is restored and the start hook runs again.
#[test]
fn a_hook_that_times_out_is_killed_with_its_process_group() {
    let app = App::new(
        "stop = \"sleep 600 & echo $! > \\\"$(dirname HOOK)/bg.pid\\\"; sleep 600\"\nstart = [\"HOOK\"]\ntimeout = \"1s\"",
        "",
    );
    let o = fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        1,
        "stop hook `sleep 600 &",
    );
    let err = stderr(&o);
    assert!(
        err.contains("timed out after 1.0 s and was killed"),
        "{err}"
    );
    assert!(err.contains("nothing was restored"), "{err}");
    assert!(err.contains("the start hook ran again"), "{err}");
    // The background child of the hook is gone too (or a zombie nobody reaped yet).
    let bg = std::fs::read_to_string(app.path("bg.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", bg.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z "),
        "the hook's child is alive: {stat}"
    );
    assert_eq!(app.phases(), ["start restore"]);
    assert_eq!(app.messages(), 150);
    assert_eq!(app.upload(), "B");
}

/// The start hook fails after the restore: the pre-restore point goes back in (the database
/// and the upload are state B again), the app is stopped and started again, exit 9.
#[test]
fn a_failing_start_hook_rolls_the_restore_back() {
    let app = App::new(STOP_START, "");
    app.fail("start", "restore");
    let o = fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        9,
        "start hook",
    );
    let err = stderr(&o);
    assert!(err.contains("failed with exit status 3"), "{err}");
    assert!(err.contains("failing start on purpose"), "{err}");
    assert!(err.contains("Rolled back: pre-restore point"), "{err}");
    assert!(err.contains("the app was started again"), "{err}");
    assert_eq!(
        app.phases(),
        [
            "stop restore",
            "start restore",
            "stop rollback",
            "start rollback"
        ]
    );
    assert_eq!(app.messages(), 150);
    assert_eq!(integrity(&app.db), "ok");
    assert_eq!(app.upload(), "B");
    // The rollback's hooks are told the pre-restore point.
    let pre: Vec<_> = app
        .point_ids()
        .into_iter()
        .filter(|(_, t)| t.iter().any(|t| t == "pre-restore"))
        .collect();
    assert_eq!(
        pre.len(),
        1,
        "no second pre-restore point of the failed state"
    );
    assert_eq!(app.log()[3][3], pre[0].0);
}

/// A smoke query whose first value is 0 on the restored database: rolled back before the
/// app starts (so the rollback needs no stop), exit 9 naming the query.
#[test]
fn a_smoke_query_returning_zero_rolls_the_restore_back() {
    let app = App::new(
        STOP_START,
        "sql = [\"SELECT count(*) FROM messages\", \"SELECT count(*) FROM messages WHERE id > 120\"]",
    );
    let o = fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        9,
        "`SELECT count(*) FROM messages WHERE id > 120` returned 0",
    );
    assert!(stderr(&o).contains("Rolled back"), "{}", stderr(&o));
    assert_eq!(app.phases(), ["stop restore", "start rollback"]);
    assert_eq!(app.messages(), 150);
    assert_eq!(app.upload(), "B");
    // On state B the same checks pass: --to DIR runs them on the restored copy of the
    // point (state A) and fails without touching anything in place.
    let scratch = app.path("scratch");
    let o = fails(
        app.lb()
            .args(["restore", "chat", "latest", "--to"])
            .arg(&scratch),
        8,
        "nothing in place was changed",
    );
    assert!(stderr(&o).contains("returned 0"), "{}", stderr(&o));
    assert_eq!(
        app.phases(),
        ["stop restore", "start rollback"],
        "no hook for --to"
    );
}

/// A health endpoint of the test: answers every GET with the status in `code`.
fn health_server(code: Arc<AtomicU16>) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 512];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let c = code.load(Ordering::SeqCst);
            let _ = write!(s, "HTTP/1.0 {c} Whatever\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

/// health_url answering 500 until health_timeout: rolled back (the app was started, so it is
/// stopped for the rollback and started again), exit 9; answering 200: the restore stands.
#[test]
fn health_url_500_rolls_back_and_200_succeeds() {
    let code = Arc::new(AtomicU16::new(500));
    let port = health_server(code.clone());
    let app = App::new(
        STOP_START,
        &format!("health_url = \"http://127.0.0.1:{port}/health\"\nhealth_timeout = \"2s\""),
    );
    let o = fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        9,
        &format!("health check http://127.0.0.1:{port}/health did not answer 2xx"),
    );
    assert!(stderr(&o).contains("HTTP 500"), "{}", stderr(&o));
    assert_eq!(
        app.phases(),
        [
            "stop restore",
            "start restore",
            "stop rollback",
            "start rollback"
        ]
    );
    assert_eq!(app.messages(), 150);
    assert_eq!(app.upload(), "B");

    code.store(200, Ordering::SeqCst);
    app.age();
    let out = app
        .lb()
        .args(["restore", "chat", "latest", "--yes", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert!(checks[0].as_str().unwrap().contains("HTTP 200"), "{report}");
    assert_eq!(report["hooks"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(app.messages(), 100);
    assert_eq!(app.upload(), "A");
}

/// The rollback fails too (the start hook fails every time): exit 10, the message names the
/// pre-restore point and the command to retry; the data put back is there.
#[test]
fn a_rollback_whose_start_hook_fails_says_so_loudly() {
    let app = App::new(STOP_START, "");
    app.fail("start", "restore");
    app.fail("start", "rollback");
    let o = fails(
        app.lb().args(["restore", "chat", "latest", "--yes"]),
        10,
        "ROLLBACK FAILED",
    );
    let err = stderr(&o);
    let pre: Vec<_> = app
        .point_ids()
        .into_iter()
        .filter(|(_, t)| t.iter().any(|t| t == "pre-restore"))
        .collect();
    assert!(
        err.contains(&pre[0].0),
        "names the pre-restore point in full: {err}"
    );
    assert!(err.contains("start the app by hand"), "{err}");
    assert_eq!(app.messages(), 150);
}

/// Without a pre-restore point (--no-safety-point) nothing can be rolled back: the error says
/// so, and the app is started again (here its start hook is what failed, so not again).
#[test]
fn without_a_safety_point_no_rollback_is_possible() {
    let app = App::new(
        STOP_START,
        "sql = [\"SELECT count(*) FROM messages WHERE id > 120\"]",
    );
    let o = fails(
        app.lb()
            .args(["restore", "chat", "latest", "--yes", "--no-safety-point"]),
        8,
        "no rollback is possible: no pre-restore point was taken (--no-safety-point)",
    );
    assert!(stderr(&o).contains("the start hook ran"), "{}", stderr(&o));
    assert_eq!(app.phases(), ["stop restore", "start restore"]);
    assert_eq!(app.messages(), 100, "what the restore wrote is in place");
}

/// `lifeboat rollback chat` puts back what the last in-place restore replaced (with the
/// hooks), and a second rollback undoes the first; with no restore remembered it refuses.
#[test]
fn rollback_undoes_the_last_in_place_restore() {
    let app = App::new(STOP_START, "sql = [\"SELECT count(*) FROM messages\"]");
    fails(
        app.lb().args(["rollback", "chat", "--yes"]),
        2,
        "no in-place restore of app chat",
    );
    app.lb()
        .args(["restore", "chat", "latest", "--yes"])
        .assert()
        .success();
    assert_eq!(app.messages(), 100);
    std::fs::remove_file(&app.log).unwrap();
    // Not confirmed (stdin is not a terminal): refused, nothing changed.
    fails(app.lb().args(["rollback", "chat"]), 6, "pass --yes");
    assert_eq!(app.messages(), 100);
    let out = app
        .lb()
        .args(["rollback", "chat", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("undoing the in-place restore of point"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("rolled back app chat"),
        "{}",
        stdout(&out)
    );
    assert_eq!(app.messages(), 150);
    assert_eq!(app.upload(), "B");
    assert_eq!(integrity(&app.db), "ok");
    assert_eq!(app.phases(), ["stop rollback", "start rollback"]);
    // The rollback took its own pre-restore point: rolling back again restores state A.
    app.lb()
        .args(["rollback", "chat", "--yes"])
        .assert()
        .success();
    assert_eq!(app.messages(), 100);
    assert_eq!(app.upload(), "A");
}

/// before_backup and after_backup wrap a backup; after_backup runs (told `failed`) when the
/// backup fails, and when before_backup fails (no point is written then).
#[test]
fn before_and_after_backup_hooks_wrap_a_backup() {
    let app = App::new("before_backup = [\"HOOK\"]\nafter_backup = [\"HOOK\"]", "");
    let out = app
        .lb()
        .args(["backup", "chat", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = app.log();
    assert_eq!(
        app.phases(),
        ["before_backup backup", "after_backup backup"]
    );
    assert_eq!(
        (log[0][3].as_str(), log[1][3].as_str()),
        ("none", id.as_str())
    );
    assert_eq!(log[1][4], "ok");
    let points = app.point_ids().len();

    // The backup fails (its database is gone): after_backup still runs, told so.
    std::fs::rename(&app.db, app.path("away.db")).unwrap();
    fails(app.lb().args(["backup", "chat"]), 7, "");
    let log = app.log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(log[3][..2], ["after_backup", "backup"]);
    assert_eq!(log[3][4], "failed");
    std::fs::rename(app.path("away.db"), &app.db).unwrap();

    // before_backup fails: no backup, after_backup runs, the error names the hook.
    app.fail("before_backup", "backup");
    fails(app.lb().args(["backup", "chat"]), 1, "before_backup hook");
    assert_eq!(app.log().len(), 6);
    assert_eq!(app.log()[5][..2], ["after_backup", "backup"]);
    assert_eq!(app.point_ids().len(), points, "no point was written");

    // after_backup fails after a good backup: an error, but the point is there.
    std::fs::remove_file(app.path("fail-before_backup-backup")).unwrap();
    app.fail("after_backup", "backup");
    let o = fails(app.lb().args(["backup", "chat"]), 1, "after_backup hook");
    assert!(stderr(&o).contains("was written, but"), "{}", stderr(&o));
    assert_eq!(app.point_ids().len(), points + 1);
}

/// The remembered pre-restore point was deleted from the repository (by hand here; retention
/// could do it): `rollback` refuses (exit 2) and changes nothing.
#[test]
fn rollback_refuses_when_the_pre_restore_point_is_gone() {
    let app = App::new(STOP_START, "");
    app.lb()
        .args(["restore", "chat", "latest", "--yes"])
        .assert()
        .success();
    let pre: Vec<_> = app
        .point_ids()
        .into_iter()
        .filter(|(_, t)| t.iter().any(|t| t == "pre-restore"))
        .collect();
    std::fs::remove_file(app.path("repo/points").join(&pre[0].0)).unwrap();
    std::fs::remove_file(&app.log).unwrap();
    fails(
        app.lb().args(["rollback", "chat", "--yes"]),
        2,
        "the pre-restore point of the last restore is gone from the repository",
    );
    assert!(app.log().is_empty(), "no hook ran: {:?}", app.log());
    assert_eq!(app.messages(), 100);
}
