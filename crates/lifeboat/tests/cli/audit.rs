//! The audit log (issue 15 item 6): every backup, restore, drill, forget, prune and key change
//! appended to `audit.log` in the state directory and written into the repository as an
//! audit record (`docs/FORMAT.md` §18); `lifeboat log` reads them back, from the repository
//! even when the machine's state is gone; failures are recorded as failed; damaged records
//! are skipped by `log` and named by `check`; a symlinked `audit.log` is never followed; no
//! password or secret content reaches either.
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::drill::app;

const NEW_PASSWORD: &str = "another long password for the laptop";

fn state(env: &Env) -> std::path::PathBuf {
    env.path(".lifeboat-state")
}

/// `lifeboat log --json` (extra args appended); asserts exit 0.
fn log_json(cfg: &Path, dir: &Path, extra: &[&str]) -> (Value, String) {
    let o = lb_config(cfg, dir)
        .args(["log", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    (serde_json::from_slice(&o.stdout).unwrap(), stderr(&o))
}

/// The local file's events, one JSON object a line.
fn local_events(env: &Env) -> Vec<Value> {
    std::fs::read_to_string(state(env).join("audit.log"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn commands(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["command"].as_str().unwrap(),
                e["result"].as_str().unwrap()
            )
        })
        .collect()
}

fn audit_objects(env: &Env) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(env.repo.join("audit")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn every_operation_is_logged_locally_and_in_the_repository_and_survives_the_machine() {
    let env = Env::new();
    let cfg = app(&env); // init + backup chat
    let dir = env.dir.path();
    let ok = |args: &[&str]| {
        let o = lb_config(&cfg, dir)
            .env("LIFEBOAT_NEW_PASSWORD", NEW_PASSWORD)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let out = env.path("out");
    ok(&["restore", "chat", "latest", "--to", out.to_str().unwrap()]);
    ok(&["key", "add", "--label", "laptop"]);
    ok(&["drill", "chat", "--scratch", dir.to_str().unwrap()]);
    ok(&["backup", "chat"]);
    ok(&["forget", "chat", "--keep-last", "1"]);
    ok(&["prune"]);

    let want = [
        "backup ok",
        "restore ok",
        "key add ok",
        "drill ok",
        "backup ok",
        "forget ok",
        "prune ok",
    ];
    let local = local_events(&env);
    assert_eq!(commands(&local), want);
    let (log, _) = log_json(&cfg, dir, &[]);
    let events = log["events"].as_array().unwrap().clone();
    assert_eq!(commands(&events), want, "repository, oldest first");
    assert_eq!(audit_objects(&env).len(), want.len());

    // The facts: who, where, which points.
    let points: Vec<String> = env_points(&cfg, dir);
    assert_eq!(points.len(), 1, "forget kept the newest");
    for e in &events {
        assert_eq!(e["host"], lifeboat_core::hostname());
        assert!(e["uid"].is_u64() && !e["user"].as_str().unwrap().is_empty());
        assert_eq!(e["destination"], env.repo.display().to_string());
        assert!(e["time"].as_str().unwrap().ends_with('Z'));
    }
    let second_backup = &events[4];
    assert_eq!(second_backup["app"], "chat");
    assert_eq!(second_backup["points"][0], points[0]);
    let first_point = events[0]["points"][0].as_str().unwrap();
    assert_eq!(
        events[1]["points"][0], first_point,
        "the restore names its point"
    );
    assert_eq!(events[3]["points"][0], first_point, "the drill too");
    assert_eq!(
        events[5]["points"],
        serde_json::json!([first_point]),
        "the forget names what it removed"
    );
    assert!(events[1]["bytes"].as_u64().unwrap() > 300_000);

    // The human table names each operation.
    let table = ok(&["log", "chat", "--limit", "3"]);
    assert!(table.contains("COMMAND"), "{table}");
    assert_eq!(table.lines().count(), 4, "header + the newest 3: {table}");
    assert!(
        table.contains("forget") && table.contains(&points[0][..8]),
        "{table}"
    );

    // No secret anywhere: neither password, nor the .env's content.
    let text = std::fs::read_to_string(state(&env).join("audit.log")).unwrap();
    let plain = log.to_string();
    for secret in [PASSWORD, NEW_PASSWORD, "s3cret"] {
        assert!(!text.contains(secret), "{secret} in audit.log");
        assert!(!plain.contains(secret), "{secret} in the records");
    }
    for o in audit_objects(&env) {
        let bytes = std::fs::read(&o).unwrap();
        assert_eq!(&bytes[..5], b"LBAU\x01", "framed, version 1");
        assert!(
            !String::from_utf8_lossy(&bytes).contains("chat"),
            "encrypted"
        );
    }

    // The machine is gone: the history is still in the repository.
    std::fs::remove_dir_all(state(&env)).unwrap();
    let (again, _) = log_json(&cfg, dir, &["--since", "-1h"]);
    assert_eq!(commands(again["events"].as_array().unwrap()), want);
    let (local, _) = log_json(&cfg, dir, &["--local"]);
    assert!(local["events"].as_array().unwrap().is_empty());

    // A replica carries the history too.
    let replica = env.path("replica");
    ok(&[
        "init",
        "--repo",
        replica.to_str().unwrap(),
        "--from",
        env.repo.to_str().unwrap(),
    ]);
    ok(&["copy", "chat", "--to", replica.to_str().unwrap()]);
    let (copied, _) = log_json(&cfg, dir, &["--repo", replica.to_str().unwrap()]);
    assert_eq!(commands(copied["events"].as_array().unwrap()), want);
    assert_eq!(commands(&local_events(&env)), ["copy ok"]);
}

fn env_points(cfg: &Path, dir: &Path) -> Vec<String> {
    let o = lb_config(cfg, dir)
        .args(["points", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// A restore of a point that does not exist fails, and is recorded as failed in both places
/// (the repository opened); a wrong password fails before the repository opens: recorded in
/// the local file only.
#[test]
fn failed_operations_are_recorded_as_failed() {
    let env = Env::new();
    let cfg = app(&env);
    let dir = env.dir.path();
    let o = lb_config(&cfg, dir)
        .args(["restore", "chat", "deadbeef", "--to"])
        .arg(env.path("out"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = lb_config(&cfg, dir)
        .env("LIFEBOAT_PASSWORD", "not-the-password-4711")
        .args(["backup", "chat"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));

    let local = local_events(&env);
    assert_eq!(
        commands(&local),
        ["backup ok", "restore failed", "backup failed"]
    );
    assert!(
        local[1]["message"].as_str().unwrap().contains("deadbeef"),
        "{}",
        local[1]
    );
    assert_eq!(local[1]["app"], "chat");
    assert!(!local[2]["message"].as_str().unwrap().is_empty());
    assert!(local[2].get("destination").is_none(), "never opened");
    let (log, _) = log_json(&cfg, dir, &[]);
    assert_eq!(
        commands(log["events"].as_array().unwrap()),
        ["backup ok", "restore failed"]
    );
    let text = std::fs::read_to_string(state(&env).join("audit.log")).unwrap();
    assert!(!text.contains("not-the-password-4711") && !text.contains(PASSWORD));
}

/// A record whose bytes changed is skipped by `log` with a warning naming it (the others are
/// shown) and reported by `check` (exit 5).
#[test]
fn a_damaged_audit_record_is_skipped_by_log_and_reported_by_check() {
    let env = Env::new();
    let cfg = app(&env);
    let dir = env.dir.path();
    lb_config(&cfg, dir)
        .args(["backup", "chat"])
        .assert()
        .success();
    let objects = audit_objects(&env);
    assert_eq!(objects.len(), 2);
    let victim = &objects[0];
    let mut bytes = std::fs::read(victim).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x40;
    std::fs::write(victim, &bytes).unwrap();
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();

    let (log, err) = log_json(&cfg, dir, &[]);
    assert_eq!(commands(log["events"].as_array().unwrap()), ["backup ok"]);
    assert!(err.contains(&format!("skipped audit/{name}")), "{err}");
    assert_eq!(log["damaged"][0]["what"], format!("audit/{name}"));

    let o = lb_config(&cfg, dir).args(["check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("DAMAGED audit/{name}")),
        "{}",
        stdout(&o)
    );
}

/// `audit.log` replaced by a symlink to a file of someone else's choosing: the operation
/// succeeds, warns, and the link's target is not written (nor the link replaced); the
/// record still goes to the repository.
#[test]
fn a_symlinked_audit_log_is_refused_without_following_it() {
    let env = Env::new();
    let cfg = app(&env);
    let dir = env.dir.path();
    let log = state(&env).join("audit.log");
    std::fs::remove_file(&log).unwrap();
    let target = env.path("elsewhere.txt");
    std::fs::write(&target, "untouched\n").unwrap();
    std::os::unix::fs::symlink(&target, &log).unwrap();
    let o = lb_config(&cfg, dir)
        .args(["backup", "chat"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("symlink"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched\n");
    assert!(std::fs::symlink_metadata(&log)
        .unwrap()
        .file_type()
        .is_symlink());
    let (events, _) = log_json(&cfg, dir, &[]);
    assert_eq!(
        commands(events["events"].as_array().unwrap()),
        ["backup ok", "backup ok"]
    );
}
