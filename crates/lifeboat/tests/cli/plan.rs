//! `restore --dry-run` (issue 12 item 6): the plan, and nothing changed.
use std::path::Path;

use crate::common::*;

/// Every file under `dir` with its bytes (symlinks not followed), sorted.
fn contents(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dry_run_shows_the_plan_and_changes_nothing() {
    let env = Env::new();
    let live = env.path("srv");
    let db = live.join("chat.db");
    let up = live.join("uploads");
    let key = live.join("jwt.key");
    std::fs::create_dir_all(&live).unwrap();
    make_db(&db, 200, 50);
    write(&up.join("a.png"), &[7u8; 5000], 0o644);
    write(&key, b"k1", 0o600);
    env.init();
    let o = env
        .lb()
        .args(["backup", "--name", "app"])
        .arg(&db)
        .arg(&up)
        .args(["--secret"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // The live app moves on; an intruder plants a file.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO messages(body) VALUES ('new')", [])
        .unwrap();
    write(&up.join("shell.php"), b"<?php", 0o644);
    write(&key, b"k2", 0o600);
    let before = contents(&live);
    let points = env.points().len();

    // Without --force the newer database refuses, as the real restore would.
    fails(
        env.lb().args(["restore", "latest", "--dry-run"]),
        6,
        "after this point was taken",
    );

    let o = env
        .lb()
        .args(["restore", "latest", "--dry-run", "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("dry run: nothing was changed"), "{out}");
    assert!(
        out.contains("removes 1 not in the point: shell.php"),
        "{out}"
    );
    assert!(
        out.contains(&db.display().to_string()) && out.contains("replaces"),
        "{out}"
    );
    assert!(out.contains("pre-restore point"), "{out}");
    assert!(out.contains("estimated time"), "{out}");

    let o = env
        .lb()
        .args(["restore", "latest", "--dry-run", "--force", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["safety_point"], true);
    let comps = v["components"].as_array().unwrap();
    assert_eq!(comps.len(), 3, "{v}");
    let files = comps.iter().find(|c| c["kind"] == "files").unwrap();
    assert_eq!(files["removed_count"], 1);
    assert_eq!(files["files_now"], 2);
    assert_eq!(files["files_after"], 1);
    let sec = comps.iter().find(|c| c["kind"] == "secret").unwrap();
    assert_eq!(sec["size_now"], 2);

    // Under --to DIR nothing is replaced.
    let o = env
        .lb()
        .args(["restore", "latest", "--dry-run", "--json", "--to"])
        .arg(env.path("elsewhere"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["safety_point"], false);
    assert!(v["components"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["replaces"] == false));

    assert_eq!(contents(&live), before, "no live file changed");
    assert_eq!(env.points().len(), points, "no pre-restore point was taken");
    assert!(!env.path("elsewhere").exists());
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (std::fs::File, std::fs::File) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    (std::fs::File::from(master), slave)
}

/// On a terminal, with no point named: recent points are listed, the operator picks one by
/// number, sees the plan and confirms; that point is restored.
#[test]
fn on_a_terminal_the_operator_picks_a_point_and_confirms() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let env = Env::new();
    let up = env.path("srv/up");
    env.init();
    for v in ["one", "two"] {
        write(&up.join("v"), v.as_bytes(), 0o644);
        let o = env
            .lb()
            .args(["backup", "--name", "app", "--tag", v])
            .arg(&up)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    write(&up.join("v"), b"three", 0o644);

    let (mut master, slave) = pty();
    let mut cmd = env.lb_std();
    cmd.arg("restore")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut reader = master.try_clone().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let wait_for = |what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
            if text.contains(what) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what:?} on the terminal: {text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    let listing = wait_for("Point to restore");
    assert!(
        listing.contains("[two]") && listing.contains("[one]"),
        "{listing}"
    );
    assert!(
        listing.find("[two]").unwrap() < listing.find("[one]").unwrap(),
        "newest first: {listing}"
    );
    master.write_all(b"2\n").unwrap();
    let plan = wait_for("[y/N]");
    assert!(plan.contains("replaces"), "the plan is shown: {plan}");
    master.write_all(b"y\n").unwrap();
    let status = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(status.success(), "{text}");
    assert_eq!(std::fs::read(up.join("v")).unwrap(), b"one", "{text}");
}
