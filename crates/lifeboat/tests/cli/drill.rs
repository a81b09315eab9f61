//! `lifeboat drill` (issue 15 item 1): a point restored into a scratch place and checked
//! (integrity, row counts, smoke queries, files and secrets read back), timed, recorded in
//! the repository; `points` shows it; a drill that passed proves the point for later
//! restores; a damaged point fails its drill loudly and the failure is recorded too.
use std::path::Path;

use crate::common::*;

/// An app with a SQLite database in WAL mode (an index to match), uploads with a symlink, and
/// a 0600 secret, in a config with a smoke query; backed up once.
pub(crate) fn app(env: &Env) -> std::path::PathBuf {
    let db = env.path("app/chat.db");
    std::fs::create_dir_all(env.path("app/uploads/2026")).unwrap();
    make_db(&db, 3000, 200);
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch("CREATE INDEX messages_body ON messages(body); PRAGMA user_version = 12;")
        .unwrap();
    drop(c);
    write(
        &env.path("app/uploads/2026/a.png"),
        &vec![7u8; 300_000],
        0o644,
    );
    write(&env.path("app/uploads/readme.txt"), b"hello", 0o640);
    std::os::unix::fs::symlink("2026/a.png", env.path("app/uploads/latest.png")).unwrap();
    write(&env.path("app/.env"), b"JWT_SECRET=s3cret\n", 0o600);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.r]\npath = \"{}\"\n\n[app.chat]\nsqlite = [\"{}\"]\nfiles = [\"{}\"]\nsecrets = [\"{}\"]\n\n[app.chat.checks]\nsql = [\"SELECT count(*) FROM messages\"]\n",
            env.repo.display(),
            db.display(),
            env.path("app/uploads").display(),
            env.path("app/.env").display()
        ),
    )
    .unwrap();
    env.init();
    lb_config(&cfg, env.dir.path())
        .args(["backup", "chat"])
        .assert()
        .success();
    cfg
}

fn drill_json(cfg: &Path, dir: &Path, code: i32) -> serde_json::Value {
    let o = lb_config(cfg, dir)
        .args(["drill", "chat", "--json", "--scratch"])
        .arg(dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn scratch_left(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lifeboat-drill-"))
        .collect()
}

#[test]
fn a_drill_proves_a_point_and_is_recorded() {
    let env = Env::new();
    let cfg = app(&env);
    let r = drill_json(&cfg, env.dir.path(), 0);
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["seconds"].as_f64().unwrap() > 0.0);
    assert!(r["bytes"].as_u64().unwrap() > 300_000);
    let checks: Vec<&str> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let has = |needle: &str| {
        assert!(
            checks.iter().any(|c| c.contains(needle)),
            "no check line with {needle:?}: {checks:#?}"
        )
    };
    has("integrity_check ok");
    has("row counts");
    has("schema user_version 12");
    has("entries and 293.0 KiB read back, equal to the point");
    has(".env: 1 entries");
    has("smoke query");
    // Lines name the app's paths, not the scratch copy.
    assert!(
        checks.iter().all(|c| !c.contains("lifeboat-drill-")),
        "{checks:#?}"
    );
    assert!(
        scratch_left(env.dir.path()).is_empty(),
        "scratch copy removed"
    );
    assert!(r["record"].is_string());
    // `points` shows it, human and JSON.
    let p = &env.points()[0];
    assert_eq!(p["proofs"]["last_drill"]["ok"], true, "{p}");
    assert_eq!(p["proofs"]["check"], "integrity_check");
    assert_eq!(p["proofs"]["drills"], 1);
    let (out, _) = env.ok(&[&"points"]);
    assert!(out.contains("drill ok"), "{out}");
    // A restore of the drilled point skips SQLite's check: the drill proved these bytes.
    let o = lb_config(&cfg, env.dir.path())
        .args(["restore", "chat", "--to"])
        .arg(env.path("out"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("integrity_check proven on") && stdout(&o).contains("by drill"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_damaged_point_fails_its_drill_and_the_failure_is_recorded() {
    let env = Env::new();
    let cfg = app(&env);
    for p in env.packs() {
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(&p, b).unwrap();
    }
    let r = drill_json(&cfg, env.dir.path(), 5);
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["failure"]
            .as_str()
            .unwrap()
            .contains("authentication failed"),
        "{r}"
    );
    assert!(
        scratch_left(env.dir.path()).is_empty(),
        "scratch copy removed"
    );
    let p = &env.points()[0];
    assert_eq!(p["proofs"]["last_drill"]["ok"], false, "{p}");
    assert_eq!(p["proofs"]["failed_drills"], 1);
    assert!(
        p["proofs"]["check"].is_null(),
        "a failed drill proves nothing: {p}"
    );
    let (out, _) = env.ok(&[&"points"]);
    assert!(
        out.contains("DRILL FAIL") && out.contains("failed drills"),
        "{out}"
    );
    // Human output: the failure, then the error with its exit code.
    let o = lb_config(&cfg, env.dir.path())
        .args(["drill", "chat"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stdout(&o).contains("FAILED"), "{}", stdout(&o));
    assert!(stderr(&o).contains("the drill of point"), "{}", stderr(&o));
}

/// `lifeboat status` (issue 15 item 2): healthy only when the app has a fresh point and a
/// passed drill where one is scheduled (none for two drill slots after the first point is
/// unhealthy); a failed drill makes it exit 12 naming it.
#[test]
fn status_is_a_probe_that_fails_on_a_missing_or_failed_drill() {
    let env = Env::new();
    let cfg = app(&env);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace(
        "[app.chat.checks]",
        "schedule = \"hourly\"\ndrill = \"daily\"\n\n[app.chat.checks]",
    );
    std::fs::write(&cfg, text).unwrap();
    let status = |code: i32| {
        let o = lb_config(&cfg, env.dir.path())
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{}{}", stdout(&o), stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    // A drill just configured is not overdue: the app gets two drill slots after its first
    // point (plus the grace).
    let r = status(0);
    let d = &r["apps"][0]["destinations"][0];
    assert_eq!(d["points"], 1, "{d}");
    assert!(d["newest"]["age_s"].as_i64().unwrap() < 600, "{d}");
    // Two slots passed and still no drill: unhealthy.
    let daily = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "{}\n[alerts]\ngrace = \"1s\"\n",
            daily.replace("drill = \"daily\"", "drill = \"every 1s\"")
        ),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(4));
    let r = status(12);
    assert_eq!(r["healthy"], false);
    let problems = r["apps"][0]["problems"].to_string();
    assert!(problems.contains("no drill has run yet"), "{problems}");
    assert_eq!(
        r["apps"][0]["problems"][0]["rule"], "drill_overdue",
        "{problems}"
    );
    std::fs::write(&cfg, daily).unwrap();
    drill_json(&cfg, env.dir.path(), 0);
    let r = status(0);
    assert_eq!(r["healthy"], true, "{r}");
    assert_eq!(r["apps"][0]["last_drill"]["ok"], true);
    // Human output too.
    let o = lb_config(&cfg, env.dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("chat healthy") && stdout(&o).contains("last drill: point"),
        "{}",
        stdout(&o)
    );
    // The point is damaged: the next drill fails, and status says so.
    for p in env.packs() {
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        std::fs::write(&p, b).unwrap();
    }
    drill_json(&cfg, env.dir.path(), 5);
    let r = status(12);
    let problems = r["apps"][0]["problems"].to_string();
    assert!(
        problems.contains("the newest drill") && problems.contains("failed"),
        "{problems}"
    );
    let o = lb_config(&cfg, env.dir.path())
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(12));
    assert!(
        stdout(&o).contains("UNHEALTHY") && stdout(&o).contains("PROBLEM"),
        "{}",
        stdout(&o)
    );
}
