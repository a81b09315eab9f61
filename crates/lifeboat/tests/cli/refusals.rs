use crate::common::*;

#[test]
fn a_file_that_is_not_sqlite_is_refused_as_a_database() {
    let env = Env::new();
    let fake = env.path("fake.db");
    std::fs::write(
        &fake,
        b"this is not a database, just text that is long enough for a header",
    )
    .unwrap();
    std::fs::write(
        env.path("lifeboat.toml"),
        format!(
            "[repository.main]\npath = \"repo\"\n\n[app.chat]\nsqlite = [\"{}\"]\n",
            fake.display()
        ),
    )
    .unwrap();
    env.init();
    fails(
        env.lb().args(["backup", "chat"]),
        7,
        "not a SQLite database",
    );
    assert!(
        env.points().is_empty(),
        "a failed backup must not leave a point"
    );
}

#[test]
fn missing_source_path_fails_without_a_point() {
    let env = Env::new();
    env.init();
    fails(
        env.lb().args(["backup", "/nonexistent/lifeboat/app.db"]),
        7,
        "/nonexistent/lifeboat/app.db",
    );

    std::fs::write(
        env.path("lifeboat.toml"),
        "[repository.main]\npath = \"repo\"\n\n[app.chat]\nfiles = [\"/nonexistent/uploads\"]\n",
    )
    .unwrap();
    fails(env.lb().args(["backup", "chat"]), 7, "/nonexistent/uploads");
    assert!(env.points().is_empty());
}

#[test]
fn config_errors_name_file_line_and_key() {
    let env = Env::new();
    std::fs::write(
        env.path("lifeboat.toml"),
        "[repository.main]\npath = \"repo\"\n\n[app.chat]\nsqlite = 5\n",
    )
    .unwrap();
    let mut c = env.lb();
    let o = c.args(["backup", "chat"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains("lifeboat.toml line 5") && e.contains("sqlite"),
        "{e}"
    );
}

#[test]
fn in_place_restore_needs_yes_and_refuses_a_newer_database() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, 500, 50);
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    let o = env.lb().args(["restore", "latest"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(6),
        "no terminal and no --yes: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));

    std::thread::sleep(std::time::Duration::from_millis(20));
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("INSERT INTO messages(body) VALUES ('newer')", [])
            .unwrap();
    }
    fails(
        env.lb().args(["restore", "latest", "--yes"]),
        6,
        "after this point was taken",
    );
    assert_eq!(
        count(&db, "messages"),
        501,
        "the newer database must be untouched"
    );
}

#[test]
fn init_refuses_an_existing_repository() {
    let env = Env::new();
    env.init();
    fails(
        env.lb().args(["init", "--kdf-memory-mib", "8"]),
        6,
        "already holds",
    );
}

#[test]
fn output_path_that_exists_is_not_overwritten_without_force() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 100, 20);
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    let out = env.path("existing.db");
    std::fs::write(&out, b"precious").unwrap();
    let o = env
        .lb()
        .args(["restore", "latest", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    env.lb()
        .args(["restore", "latest", "--force", "-o"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(count(&out, "messages"), 100);
}

/// The live database is damaged (unreadable through SQLite, header intact): the pre-restore
/// point falls back to its raw bytes, so even the broken state is kept, and the restore works.
#[test]
fn restoring_over_a_damaged_database_keeps_its_bytes_in_the_safety_point() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, 3_000, 100);
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0xAB; // page 1 after the header: the schema is gone
    }
    std::fs::write(&db, &bytes).unwrap();
    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(integrity(&db), "ok");
    assert_eq!(count(&db, "messages"), 3_000);
    let pre = env
        .points()
        .into_iter()
        .find(|p| p["tags"][0] == "pre-restore")
        .expect("safety point");
    assert_eq!(pre["components"][0]["kind"], "config", "kept as raw bytes");
    let id = pre["id"].as_str().unwrap();
    let out = env.path("broken-copy.db");
    env.lb()
        .args(["restore", &id[..12], "-o"])
        .arg(&out)
        .assert()
        .success();
    assert!(
        std::fs::read(&out).unwrap() == bytes,
        "the damaged bytes come back exactly"
    );
}

/// Every file and directory below `root` that is readable (files) or accessible
/// (directories) by group or others, with its mode.
fn open_to_others(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            out.push(format!("{} {mode:o}", p.display()));
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        }
    }
    out
}

/// Issue 12 item 5: key slots were 0644 under umask 022 (offline password guessing by any
/// local user). Every repository file is 0600 and every directory 0700, whatever the umask.
#[test]
fn repository_files_and_dirs_are_owner_only_under_umask_022() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, 200, 50);
    let run = |args: &[&std::ffi::OsStr]| {
        let mut c = env.lb_std();
        // SAFETY: umask is async-signal-safe; nothing else runs in the child before exec.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
        let o = c.args(args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run(&["init".as_ref(), "--kdf-memory-mib".as_ref(), "8".as_ref()]);
    run(&["backup".as_ref(), db.as_os_str()]);
    assert!(env.repo.join("keys").is_dir());
    let open = open_to_others(&env.repo);
    assert!(open.is_empty(), "open to group/others: {open:?}");
}
