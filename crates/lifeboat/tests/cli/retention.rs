//! Retention and prune: forget plans with reasons, prune frees space and every kept point
//! restores; prune killed before each of its writes and deletes in turn; backups and prunes
//! running at the same time.
use std::path::Path;
use std::process::Command as StdCommand;

use crate::common::*;

/// Rewrites a third of the messages (a day of edits spread over the whole file).
fn churn(db: &Path, day: u32) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c.execute(
        "UPDATE messages SET body = printf('%s edited on day %d', substr(body, 1, 200), ?1) WHERE id % 3 = ?1 % 3",
        (day,),
    )
    .unwrap();
}

/// An app `chat` with `days` daily points (synthetic times from 2026-01-01, 03:00 UTC).
fn daily_points(env: &Env, days: u32) -> std::path::PathBuf {
    let db = env.path("chat.db");
    make_db(&db, 3000, 300);
    for d in 0..days {
        churn(&db, d);
        let t = format!("2026-01-{:02}T03:00:00Z", d + 1);
        env.ok(&[&"backup", &"--name", &"chat", &db, &"--point-time", &t]);
    }
    db
}

fn point_ids(env: &Env) -> Vec<String> {
    env.points()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every point restores (checksum, integrity_check and row counts are verified by restore).
fn all_restore(env: &Env, tag: &str) {
    for (i, id) in point_ids(env).iter().enumerate() {
        let out = env.path(&format!("restored-{tag}-{i}"));
        env.ok(&[&"restore", &id[..12].to_string(), &"--to", &out]);
    }
}

#[test]
fn forget_shows_why_and_prune_frees_space_while_kept_points_restore() {
    let env = Env::new();
    env.init();
    daily_points(&env, 30);
    // Days 28-30 daily, ISO weeks 5 and 4 (Jan 25), January monthly (day 30).
    let forget = |last: &str| {
        env.ok(&[
            &"forget",
            &"chat",
            &"--keep-daily",
            &"3",
            &"--keep-weekly",
            &"2",
            &"--keep-monthly",
            &"1",
            &"--timezone",
            &"UTC",
            &last,
        ])
        .0
    };
    let plan = forget("--dry-run");
    let rows: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains(" keep ") || l.contains(" remove "))
        .collect();
    assert_eq!(rows.len(), 30, "{plan}");
    assert!(plan.contains("daily 2026-01-30"), "{plan}");
    assert!(plan.contains("weekly 2026-W05"), "{plan}");
    assert!(plan.contains("monthly 2026-01"), "{plan}");
    assert!(plan.contains("no rule keeps it"), "{plan}");
    let kept = rows.iter().filter(|l| l.contains(" keep ")).count();
    // Days 28-30, the newest of ISO week 4 (Jan 25, a Sunday) on top of week 5's, month = day 30.
    assert_eq!(kept, 4, "{plan}");
    assert_eq!(point_ids(&env).len(), 30, "a dry run changes nothing");

    let before = env.repo_size();
    let out = forget("--prune");
    assert!(out.contains("26 removed"), "{out}");
    let after = env.repo_size();
    assert!(
        after * 10 < before * 7,
        "prune freed too little: {before} -> {after}\n{out}"
    );
    assert_eq!(point_ids(&env).len(), 4);
    env.ok(&[&"check", &"--read-data"]);
    all_restore(&env, "a");
    // A second prune finds nothing left to do.
    let (out, _) = env.ok(&[&"prune"]);
    assert!(out.contains("deleted 0 packs"), "{out}");
    // A policy with no rule is refused; so is an app without one.
    fails(env.lb().args(["forget", "chat"]), 2, "no retention policy");
}

/// The kill-point tests below need `LIFEBOAT_CRASH_BEFORE_MUTATION`, which only a binary built
/// with the `fault-injection` feature obeys (the shipped one ignores it). Without the feature
/// they are not compiled, and this fails instead, so they can never pass by not running.
#[cfg(not(feature = "fault-injection"))]
#[test]
fn kill_point_tests_need_the_fault_injection_feature() {
    panic!(
        "the kill-point tests (prune/backup/forget killed before each write or delete) need the \
         `fault-injection` feature: run `bash scripts/test.sh`, or pass \
         `--features lifeboat/fault-injection` to cargo nextest/test"
    );
}

/// Runs prune with a crash injected before its `k`-th write or delete; true if it crashed.
#[cfg(feature = "fault-injection")]
fn prune_crashing_at(env: &Env, k: u32) -> bool {
    let o = env
        .lb()
        .env("LIFEBOAT_CRASH_BEFORE_MUTATION", k.to_string())
        .args(["prune", "--repack-below", "60"])
        .output()
        .unwrap();
    if o.status.success() {
        return false;
    }
    assert!(
        stderr(&o).contains("crash injected"),
        "prune failed without the injected crash: {}",
        stderr(&o)
    );
    true
}

#[cfg(feature = "fault-injection")]
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let st = StdCommand::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

#[cfg(feature = "fault-injection")]
#[test]
fn prune_killed_before_each_of_its_writes_and_deletes_loses_nothing() {
    let env = Env::new();
    env.init();
    daily_points(&env, 8);
    env.ok(&[&"forget", &"chat", &"--keep-last", &"2"]);
    let kept = point_ids(&env);
    assert_eq!(kept.len(), 2);
    let template = env.path("template");
    copy_dir(&env.repo, &template);

    let mut k = 1;
    loop {
        copy_dir(&template, &env.repo);
        if !prune_crashing_at(&env, k) {
            break;
        }
        // Killed at this step: the repository is whole and every kept point restores...
        let (checked, _) = env.ok(&[&"check", &"--read-data"]);
        let pending =
            std::fs::read_dir(env.repo.join("prune")).is_ok_and(|mut d| d.next().is_some());
        assert_eq!(
            pending,
            checked.contains("prune record(s) wait"),
            "check must say when a prune record is pending: {checked}"
        );
        let id = &kept[(k as usize) % 2];
        env.ok(&[
            &"restore",
            &id[..12].to_string(),
            &"--to",
            &env.path(&format!("k{k}")),
        ]);
        // ...and the next prune finishes the job.
        let (out, _) = env.ok(&[&"prune", &"--repack-below", &"60"]);
        assert!(
            !out.contains("deferred"),
            "a dead prune's lease blocked: {out}"
        );
        env.ok(&[&"check", &"--read-data"]);
        assert!(
            !env.repo.join("prune").exists()
                || std::fs::read_dir(env.repo.join("prune"))
                    .unwrap()
                    .next()
                    .is_none(),
            "a prune record was left after a complete prune"
        );
        k += 1;
    }
    assert!(k > 10, "only {k} kill points: prune did not work");
    eprintln!("prune was killed at {} different steps", k - 1);
    all_restore(&env, "end");
    assert_eq!(point_ids(&env), kept);
}

#[test]
fn backups_and_prunes_at_the_same_time_lose_nothing() {
    let env = Env::new();
    env.init();
    let db = env.path("chat.db");
    make_db(&db, 3000, 300);
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let stop = std::sync::Arc::clone(&stop);
        let repo = env.repo.clone();
        let dir = env.dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut runs = 0;
            let lb = |args: &[&str]| {
                let o = StdCommand::new(assert_cmd::cargo::cargo_bin("lifeboat"))
                    .env("LIFEBOAT_PASSWORD", PASSWORD)
                    .env_remove("LIFEBOAT_CONFIG")
                    .env("LIFEBOAT_STATE_DIR", dir.join(".lifeboat-state"))
                    .current_dir(&dir)
                    .arg("--repo")
                    .arg(&repo)
                    .args(args)
                    .output()
                    .unwrap();
                assert!(
                    o.status.success(),
                    "{args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            };
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || runs < 3 {
                lb(&["forget", "chat", "--keep-last", "2"]);
                lb(&["prune", "--repack-below", "60"]);
                runs += 1;
            }
            runs
        })
    };
    for day in 0..12 {
        churn(&db, day);
        env.ok(&[&"backup", &"--name", &"chat", &db]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = pruner.join().unwrap();
    assert!(runs >= 3);
    // Whatever the interleaving, every point left is whole; a last prune finishes any
    // deletion that had to wait.
    env.ok(&[&"prune"]);
    env.ok(&[&"check", &"--read-data"]);
    all_restore(&env, "c");
    assert!(point_ids(&env).len() >= 2);
}

#[cfg(feature = "fault-injection")]
#[test]
fn backup_and_forget_killed_before_each_write_or_delete_lose_nothing() {
    let env = Env::new();
    env.init();
    let db = daily_points(&env, 3);
    let before = point_ids(&env);
    let template = env.path("template");
    copy_dir(&env.repo, &template);
    for (what, args) in [
        ("backup", vec!["backup", "--name", "chat"]),
        ("forget", vec!["forget", "chat", "--keep-last", "1"]),
    ] {
        let mut k = 1;
        loop {
            copy_dir(&template, &env.repo);
            churn(&db, 100 + k);
            let mut cmd = env.lb();
            cmd.env("LIFEBOAT_CRASH_BEFORE_MUTATION", k.to_string())
                .args(&args);
            if what == "backup" {
                cmd.arg(&db);
            }
            let o = cmd.output().unwrap();
            if o.status.success() {
                break;
            }
            assert!(stderr(&o).contains("crash injected"), "{}", stderr(&o));
            env.ok(&[&"check", &"--read-data"]);
            // At most the one new point appeared (killed after writing it), and every point
            // there restores: none is half-made.
            let now = point_ids(&env);
            let new = now.iter().filter(|p| !before.contains(p)).count();
            assert!(new <= 1, "{what} killed at {k} left {new} new points");
            all_restore(&env, &format!("{what}{k}"));
            k += 1;
        }
        assert!(k > 2, "{what}: only {k} kill points");
        eprintln!("{what} was killed at {} different steps", k - 1);
    }
}

#[test]
fn each_destination_keeps_by_its_own_policy() {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 2000, 200);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.local]\npath = \"local\"\n[repository.offsite]\npath = \"offsite\"\n\
             [app.chat]\nrepository = \"local\"\ncopy_to = [\"offsite\"]\nsqlite = [\"{}\"]\n\
             [app.chat.keep]\nlast = 1\n[app.chat.keep_in.offsite]\nlast = 3\n",
            db.display()
        ),
    )
    .unwrap();
    let lb = || lb_config(&cfg, env.dir.path());
    lb().args(["init", "--kdf-memory-mib", "8", "--repo", "local"])
        .assert()
        .success();
    lb().args(["init", "--repo", "offsite", "--from", "local"])
        .assert()
        .success();
    for day in 0..4 {
        churn(&db, day);
        lb().args(["backup", "chat"]).assert().success();
    }
    lb().args(["copy", "chat"]).assert().success();
    let count = |repo: &str| {
        let o = lb()
            .args(["points", "--repo", repo, "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout)
            .unwrap()
            .len()
    };
    assert_eq!((count("local"), count("offsite")), (4, 4));
    let o = lb().args(["forget", "chat", "--prune"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("repository local"), "{}", stdout(&o));
    let o = lb()
        .args(["forget", "chat", "--repo", "offsite", "--prune"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("policy: last 3, repository offsite"),
        "{}",
        stdout(&o)
    );
    assert_eq!((count("local"), count("offsite")), (1, 3));
    for repo in ["local", "offsite"] {
        lb().args(["check", "--repo", repo, "--read-data"])
            .assert()
            .success();
    }
}
