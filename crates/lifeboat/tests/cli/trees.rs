use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::*;

#[test]
fn files_secrets_and_config_round_trip_exactly() {
    let env = Env::new();
    let up = env.path("app/uploads");
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    write(&up.join("a/big.bin"), &big, 0o640);
    write(&up.join("a/b/small.txt"), b"hello", 0o755);
    write(&up.join("dup.bin"), &big, 0o600);
    write(&up.join("skip.tmp"), b"excluded", 0o644);
    std::fs::create_dir_all(up.join("empty")).unwrap();
    std::fs::set_permissions(up.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("a/b/small.txt", up.join("link")).unwrap();
    let key = env.path("app/ssh_host_ed25519_key");
    write(
        &key,
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n",
        0o600,
    );
    let cfg = env.path("app/config.toml");
    write(&cfg, b"port = 2222\n", 0o644);
    if is_root() {
        std::os::unix::fs::chown(&key, Some(4242), Some(4343)).unwrap();
    }
    let mtime = std::fs::metadata(up.join("a/big.bin")).unwrap().mtime();

    env.init();
    let o = env
        .lb()
        .args(["backup", "--name", "chat", "--exclude", "*.tmp", "--secret"])
        .arg(&key)
        .arg(&up)
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The duplicated 3 MB file is stored once (compressed it is well under 2 x 3 MB).
    assert!(
        env.repo_size() < 4_000_000,
        "repo {} bytes",
        env.repo_size()
    );

    let out = env.path("out");
    let o = env
        .lb()
        .args(["restore", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = |p: &Path| out.join(p.strip_prefix("/").unwrap());
    let rup = r(&up);
    assert_eq!(std::fs::read(rup.join("a/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(rup.join("dup.bin")).unwrap(), big);
    assert_eq!(std::fs::read(rup.join("a/b/small.txt")).unwrap(), b"hello");
    assert!(
        !rup.join("skip.tmp").exists(),
        "excluded file must not be restored"
    );
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&rup.join("a/big.bin")), 0o640);
    assert_eq!(mode(&rup.join("a/b/small.txt")), 0o755);
    assert_eq!(mode(&rup.join("dup.bin")), 0o600);
    assert_eq!(mode(&rup.join("empty")), 0o700);
    assert!(rup.join("empty").is_dir());
    assert_eq!(
        std::fs::read_link(rup.join("link")).unwrap(),
        Path::new("a/b/small.txt")
    );
    assert_eq!(
        std::fs::metadata(rup.join("a/big.bin")).unwrap().mtime(),
        mtime
    );
    assert_eq!(
        std::fs::read(r(&key)).unwrap(),
        std::fs::read(&key).unwrap()
    );
    assert_eq!(mode(&r(&key)), 0o600);
    assert_eq!(std::fs::read(r(&cfg)).unwrap(), b"port = 2222\n");
    assert_eq!(mode(&r(&cfg)), 0o644);
    if is_root() {
        let md = std::fs::metadata(r(&key)).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (4242, 4343),
            "secret owner must be restored"
        );
    }

    // Secret contents never appear in output, not even with --json and -vv.
    for args in [
        vec!["points", "--json"],
        vec!["-vv", "points"],
        vec!["check", "--json"],
    ] {
        let o = env.lb().args(&args).output().unwrap();
        let all = format!("{}{}", stdout(&o), stderr(&o));
        assert!(!all.contains("BEGIN OPENSSH"), "{args:?} leaked the secret");
    }

    // --only secrets restores just the secret.
    let out2 = env.path("out2");
    env.lb()
        .args(["restore", "--only", "secrets", "--to"])
        .arg(&out2)
        .assert()
        .success();
    assert!(out2.join(key.strip_prefix("/").unwrap()).exists());
    assert!(!out2.join(up.strip_prefix("/").unwrap()).exists());
}

#[test]
fn unchanged_files_are_not_read_again_and_add_almost_nothing() {
    let env = Env::new();
    let up = env.path("uploads");
    for i in 0..50u32 {
        let data: Vec<u8> = (0..20_000u32)
            .map(|j| (j.wrapping_mul(i + 7) >> 3) as u8)
            .collect();
        write(&up.join(format!("f{i}.bin")), &data, 0o644);
    }
    env.init();
    env.lb().arg("backup").arg(&up).assert().success();
    let s1 = env.repo_size();
    env.lb().arg("backup").arg(&up).assert().success();
    let added = env.repo_size() - s1;
    assert!(
        added < 8_000,
        "second backup of unchanged files added {added} bytes"
    );
}

/// The restored database gets the mode it had, not the restoring user's default.
#[test]
fn database_mode_is_restored() {
    let env = Env::new();
    let db = env.path("a.db");
    make_db(&db, 100, 20);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    let out = env.path("r.db");
    env.lb()
        .args(["restore", "latest", "-o"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o7777,
        0o640
    );
}

/// In place, a symlink where the point has a directory is replaced, never followed: nothing is
/// written where the link points.
#[test]
fn restore_does_not_follow_a_symlink_planted_where_a_directory_was() {
    let env = Env::new();
    let up = env.path("uploads");
    write(&up.join("sub/file.txt"), b"data", 0o644);
    env.init();
    env.lb().arg("backup").arg(&up).assert().success();
    std::fs::remove_dir_all(up.join("sub")).unwrap();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, up.join("sub")).unwrap();
    let o = env
        .lb()
        .args(["restore", "latest", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_dir(&elsewhere).unwrap().next().is_none(),
        "wrote through the symlink"
    );
    assert_eq!(
        std::fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o7777,
        0o711
    );
    assert!(!std::fs::symlink_metadata(up.join("sub"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(up.join("sub/file.txt")).unwrap(), b"data");
}

/// In place, with the tree's root, a file, a secret and the database each replaced by a
/// symlink to a directory or file elsewhere (issue 12): every link is replaced, nothing is
/// written, chmod-ed or chown-ed where they point.
#[test]
fn restore_replaces_symlinked_roots_and_files_without_following_them() {
    let env = Env::new();
    let up = env.path("uploads");
    write(&up.join("sub/file.txt"), b"data", 0o640);
    write(&up.join("top.txt"), b"top", 0o600);
    std::fs::set_permissions(&up, std::fs::Permissions::from_mode(0o750)).unwrap();
    let key = env.path("etc/key");
    write(&key, b"secret", 0o600);
    let db = env.path("data/app.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    make_db(&db, 50, 20);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    env.init();
    env.lb()
        .args(["backup", "--name", "chat", "--secret"])
        .arg(&key)
        .arg(&up)
        .arg(&db)
        .assert()
        .success();

    let elsewhere = env.path("elsewhere");
    write(&elsewhere.join("f.txt"), b"not yours", 0o604);
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::rename(&up, env.path("uploads.old")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &up).unwrap();
    std::fs::remove_file(&key).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("f.txt"), &key).unwrap();
    std::fs::remove_file(&db).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("f.txt"), &db).unwrap();

    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--force", "--no-safety-point"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["f.txt"], "wrote through a symlink");
    assert_eq!(
        std::fs::metadata(&elsewhere).unwrap().permissions().mode() & 0o7777,
        0o711
    );
    let f = std::fs::metadata(elsewhere.join("f.txt")).unwrap();
    assert_eq!(f.permissions().mode() & 0o7777, 0o604);
    assert_eq!(
        std::fs::read(elsewhere.join("f.txt")).unwrap(),
        b"not yours"
    );
    for (p, mode) in [(&up, 0o750), (&key, 0o600), (&db, 0o666)] {
        let md = std::fs::symlink_metadata(p).unwrap();
        assert!(!md.file_type().is_symlink(), "{} still a link", p.display());
        assert_eq!(md.mode() & 0o7777, mode, "{}", p.display());
    }
    assert_eq!(std::fs::read(up.join("sub/file.txt")).unwrap(), b"data");
    assert_eq!(std::fs::read(&key).unwrap(), b"secret");
    assert_eq!(integrity(&db), "ok");
}

/// A symlink the operator has above the target (`/var/lib -> /data/lib`) is followed: only at
/// and below a component's root are links refused (SQLite's check of the restored file opens
/// it with SQLITE_OPEN_NOFOLLOW, through the directory's real path).
#[test]
fn restore_in_place_through_a_symlinked_parent_directory() {
    let env = Env::new();
    let real = env.path("real");
    std::fs::create_dir_all(&real).unwrap();
    let link = env.path("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let db = link.join("app.db");
    make_db(&db, 50, 20);
    write(&link.join("up/f.txt"), b"f", 0o640);
    env.init();
    env.lb()
        .args(["backup", "--name", "chat"])
        .arg(&db)
        .arg(link.join("up"))
        .assert()
        .success();
    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--force", "--no-safety-point"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(integrity(&real.join("app.db")), "ok");
    assert_eq!(std::fs::read(real.join("up/f.txt")).unwrap(), b"f");
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}
