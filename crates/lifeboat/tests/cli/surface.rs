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

/// Stored strings (a key slot's label, a point's tags) reach the terminal escaped: a label
/// carrying an OSC 52 clipboard write or a colour change prints as `\u{1b}...`, never raw.
#[test]
fn stored_strings_are_printed_without_control_characters() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 10, 20);
    env.init();
    let osc52 = "\x1b]52;c;ZWNobyBwd25lZA==\x07laptop\u{9b}2J";
    env.lb()
        .args(["key", "add", "--label", osc52])
        .env("LIFEBOAT_NEW_PASSWORD", "second password")
        .assert()
        .success();
    env.lb()
        .arg("backup")
        .arg(&db)
        .args(["--tag", "\x1b[31mred\x7f"])
        .assert()
        .success();
    let clean = |out: &[u8]| {
        let s = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            !s.chars().any(|c| c.is_control() && c != '\n'),
            "raw control character in {s:?}"
        );
        s
    };
    let o = env.lb().args(["key", "list"]).output().unwrap();
    assert!(o.status.success());
    let s = clean(&o.stdout);
    assert!(
        s.contains(r"\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}laptop\u{9b}2J"),
        "{s}"
    );
    let o = env.lb().arg("points").output().unwrap();
    assert!(o.status.success());
    let s = clean(&o.stdout);
    assert!(s.contains(r"\u{1b}[31mred\u{7f}"), "{s}");
    // JSON keeps the exact label (serde escapes it).
    let o = env.lb().args(["key", "list", "--json"]).output().unwrap();
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert!(keys.iter().any(|k| k["label"] == osc52));
}

#[test]
fn password_file_and_command_work() {
    let env = Env::new();
    write(&env.path("pw"), format!("{PASSWORD}\n").as_bytes(), 0o644);
    env.init();
    // Readable by every local user: refused, with how to fix it.
    let o = fails(
        env.lb()
            .env_remove("LIFEBOAT_PASSWORD")
            .args(["--password-file", "pw", "points"]),
        6,
        "can be read or changed by other users",
    );
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    write(&env.path("pw"), format!("{PASSWORD}\n").as_bytes(), 0o600);
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

/// `lifeboat points | head` (the reader gone) ends quietly with exit 0; `> /dev/full` is a
/// one-line error with exit 1. Neither panics (exit 101 with a backtrace before).
#[test]
fn closed_or_full_stdout_ends_without_a_panic() {
    let env = Env::new();
    env.init();
    for args in [
        &["points"][..],
        &["key", "list"],
        &["key", "list", "--json"],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = env.lb_std().args(args).stdout(full).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim_end(),
            "error: write to standard output: No space left on device (os error 28)",
            "{args:?}"
        );

        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = env.lb_std().args(args).stdout(writer).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        assert_eq!(err, "", "{args:?}");
    }
}

/// A forget whose plan cannot be printed (`forget ... | head` gone) is still applied.
#[test]
fn forget_with_a_closed_stdout_still_forgets() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 10, 20);
    env.init();
    for _ in 0..3 {
        env.lb().arg("backup").arg(&db).assert().success();
    }
    assert_eq!(env.points().len(), 3);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = env
        .lb_std()
        .args(["forget", "a", "--keep-last", "1"])
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(env.points().len(), 1);
}

/// A password command sees none of lifeboat's secrets (the passwords, the S3 secret key).
#[test]
fn password_command_inherits_no_secret() {
    let env = Env::new();
    env.init();
    let dump = env.path("env.txt");
    env.lb()
        .env("LIFEBOAT_NEW_PASSWORD", "the new one")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
        .env("AWS_SESSION_TOKEN", "aws-token-value")
        .env("SOME_OTHER_VARIABLE", "kept")
        .args([
            "--password-command",
            &format!("env > '{}'; echo '{PASSWORD}'", dump.display()),
            "points",
        ])
        .assert()
        .success();
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("SOME_OTHER_VARIABLE=kept"), "{seen}");
    for secret in [
        PASSWORD,
        "the new one",
        "aws-secret-value",
        "aws-token-value",
    ] {
        assert!(!seen.contains(secret), "{secret:?} leaked:\n{seen}");
    }
    for k in [
        "LIFEBOAT_PASSWORD=",
        "LIFEBOAT_NEW_PASSWORD=",
        "AWS_SECRET_ACCESS_KEY=",
    ] {
        assert!(!seen.contains(k), "{k} leaked:\n{seen}");
    }
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

/// `--keep` keeps tempfile's private directory itself (0700), not a directory deleted and
/// made again under the same name (which another user watching the temp dir could win).
#[test]
fn demo_keep_leaves_a_private_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let o = assert_cmd::Command::cargo_bin("lifeboat")
        .unwrap()
        .args(["demo", "--messages", "200", "--keep"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let kept: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let dir = &kept[0];
    assert!(dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("lifeboat-demo-"));
    assert!(
        stdout(&o).contains(&format!("are in {}", dir.display())),
        "{}",
        stdout(&o)
    );
    let mode = std::fs::symlink_metadata(dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o700, "{mode:o}");
    assert!(dir.join("lifeboat.toml").is_file());
    assert!(dir.join("repo").is_dir());
}

/// `--dir` is created by the demo (0700), or an empty directory of this user that nobody
/// else can write to; anything else is refused before anything is written.
#[test]
fn demo_refuses_an_unsafe_dir() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let demo = |dir: &std::path::Path| {
        let mut c = assert_cmd::Command::cargo_bin("lifeboat").unwrap();
        c.args(["demo", "--messages", "10", "--dir"]).arg(dir);
        c
    };
    // Not empty.
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("lifeboat.toml"), "").unwrap();
    fails(&mut demo(&full), 6, "is not empty");
    // Writable by others.
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let o = fails(&mut demo(&open), 6, "mode 777");
    assert!(stderr(&o).contains("hint:"), "{}", stderr(&o));
    // A symlink is not followed.
    let link = tmp.path().join("link");
    let target = tmp.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    fails(&mut demo(&link), 6, "not a directory");
    // Below a directory another user can change.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    fails(
        &mut demo(&shared.join("demo")),
        6,
        "can be changed by another user",
    );
    assert!(!shared.join("demo").exists());
    if unsafe { libc::geteuid() } == 0 {
        // Owned by another user.
        let theirs = tmp.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        fails(&mut demo(&theirs), 6, "owner uid 65534");
    } else {
        println!("note: not root, skipping the demo directory owned by another user");
    }
    // Nothing was written into the refused directories.
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
    assert_eq!(std::fs::read_dir(&open).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

/// Running as root, a `lifeboat.toml` another user owns (or may write) is refused: its
/// `password_command` would run as root.
#[test]
fn as_root_a_config_of_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    if unsafe { libc::geteuid() } != 0 {
        println!("note: not root, skipping the root-only config owner check");
        return;
    }
    let env = Env::new();
    let marker = env.path("ran");
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.r]\npath = {:?}\npassword_command = \"touch {}; echo pw\"\n",
            env.repo.display().to_string(),
            marker.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&cfg, Some(65534), Some(65534)).unwrap();
    let o = fails(
        assert_cmd::Command::cargo_bin("lifeboat")
            .unwrap()
            .arg("-c")
            .arg(&cfg)
            .arg("points"),
        6,
        "owner uid 65534",
    );
    assert!(stderr(&o).contains("chown root"), "{}", stderr(&o));
    std::os::unix::fs::chown(&cfg, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = fails(
        assert_cmd::Command::cargo_bin("lifeboat")
            .unwrap()
            .arg("-c")
            .arg(&cfg)
            .arg("points"),
        6,
        "mode 666",
    );
    assert!(stderr(&o).contains("chmod go-w"), "{}", stderr(&o));
    assert!(!marker.exists(), "the password command ran");
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

/// A full standard error loses messages, never the exit code: no panic (exit 101), on an error
/// and on a success that prints a note there (the pre-restore point).
#[test]
fn full_stderr_keeps_the_exit_code() {
    let env = Env::new();
    env.init();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let o = env
        .lb_std()
        .args(["restore", "0123abcd"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let f = env.path("f.txt");
    write(&f, b"one", 0o644);
    let o = env
        .lb_std()
        .args(["backup", "--secret"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success());
    write(&f, b"two", 0o644);
    let o = env
        .lb_std()
        .args(["restore", "latest", "--yes"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(std::fs::read(&f).unwrap(), b"one");
}
