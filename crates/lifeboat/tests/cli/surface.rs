use crate::common::*;

#[test]
fn several_passwords_open_one_repository() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 100, 20);
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    env.lb()
        .args(["key", "add", "--label", "laptop"])
        .env("LIFEBOAT_NEW_PASSWORD", "second password")
        .assert()
        .success();
    let o = env
        .lb()
        .env("LIFEBOAT_PASSWORD", "second password")
        .args(["key", "list", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(keys.len(), 2);
    let first = keys.iter().find(|k| k["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = keys.iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Cannot remove the slot you opened with.
    let o = env
        .lb()
        .env("LIFEBOAT_PASSWORD", "second password")
        .args(["key", "remove", &second[..8]])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6));
    // Remove the first password's slot using the second; the first then fails.
    env.lb()
        .env("LIFEBOAT_PASSWORD", "second password")
        .args(["key", "remove", &first[..8]])
        .assert()
        .success();
    assert_eq!(
        env.lb().arg("points").output().unwrap().status.code(),
        Some(4)
    );
    env.lb()
        .env("LIFEBOAT_PASSWORD", "second password")
        .arg("points")
        .assert()
        .success();
}

#[test]
fn password_file_and_command_work() {
    let env = Env::new();
    std::fs::write(env.path("pw"), format!("{PASSWORD}\n")).unwrap();
    env.init();
    env.lb()
        .env_remove("LIFEBOAT_PASSWORD")
        .args(["--password-file", "pw", "points"])
        .assert()
        .success();
    env.lb()
        .env_remove("LIFEBOAT_PASSWORD")
        .args([
            "--password-command",
            &format!("echo '{PASSWORD}'"),
            "points",
        ])
        .assert()
        .success();
}

#[test]
fn points_json_lists_points_with_tags_and_sizes() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 1000, 100);
    env.init();
    env.lb()
        .args(["backup", "--tag", "pre-deploy"])
        .arg(&db)
        .assert()
        .success();
    let p = env.points();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0]["app"], "a");
    assert_eq!(p[0]["tags"][0], "pre-deploy");
    assert!(p[0]["size"].as_u64().unwrap() > 0);
    assert!(p[0]["added"].as_u64().unwrap() > 0);
    assert_eq!(p[0]["components"][0]["row_counts"]["messages"], 1000);
    let o = env.lb().arg("points").output().unwrap();
    assert!(stdout(&o).contains("pre-deploy"));
}

#[test]
fn every_subcommand_help_explains_with_an_example() {
    for sub in [
        &[][..],
        &["init"],
        &["backup"],
        &["points"],
        &["restore"],
        &["check"],
        &["key"],
        &["demo"],
    ] {
        let o = assert_cmd::Command::cargo_bin("lifeboat")
            .unwrap()
            .args(sub)
            .arg("--help")
            .output()
            .unwrap();
        assert!(o.status.success());
        let s = stdout(&o);
        assert!(s.contains("Example"), "{sub:?} --help has no example:\n{s}");
    }
}

#[test]
fn demo_runs_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let o = assert_cmd::Command::cargo_bin("lifeboat")
        .unwrap()
        .args(["demo", "--messages", "3000", "--dir"])
        .arg(d.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("all succeeded"), "{}", stdout(&o));
}

#[test]
fn restore_verify_levels() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 2_000, 100);
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    for (level, says) in [("quick", "quick_check ok"), ("full", "integrity_check ok")] {
        let out = env.path(&format!("{level}.db"));
        let o = env
            .lb()
            .args(["restore", "latest", "--verify", level, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stdout(&o).contains(says), "{}", stdout(&o));
        assert_eq!(count(&out, "messages"), 2_000);
    }
    fails(
        env.lb()
            .args(["restore", "latest", "--verify", "none", "-o", "x.db"]),
        2,
        "not full or quick",
    );
}
