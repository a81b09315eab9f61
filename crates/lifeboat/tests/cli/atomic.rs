//! In-place tree restores (issue 12 item 4): built beside the target and swapped in, so the
//! result equals the point exactly (a planted file goes, and is in the pre-restore point), a
//! failure leaves the old tree as it was, and directory modes are the recorded ones. Also:
//! components inside a tree are kept, setuid bits are cleared unless asked for, and a symlink
//! in a directory another user controls is not followed on the way to a restore target.
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::*;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// Every path under `dir` (relative, sorted) with its content (files) or `<dir>`/`-> target`.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                out.push((rel, format!("<dir {:o}>", mode(&p))));
                walk(root, &p, out);
            } else if ft.is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                ));
            } else {
                let data = std::fs::read(&p).unwrap();
                out.push((rel, format!("{} bytes {:x}", data.len(), crc(&data))));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

fn crc(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Pseudo-random bytes (incompressible, so a flipped byte in a pack lands in file data).
fn noise(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Nothing of lifeboat's (staging directory, old tree) is left beside `tree`.
fn assert_no_leftovers(tree: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(tree.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("lifeboat"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "left beside {}: {leftovers:?}",
        tree.display()
    );
}

fn backup(env: &Env, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let o = env
        .lb()
        .args(["backup", "--name", "app"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn in_place_tree_restore_equals_the_point_and_keeps_the_rest_in_the_pre_restore_point() {
    let env = Env::new();
    let up = env.path("srv/uploads");
    write(&up.join("a.txt"), b"original a", 0o644);
    write(&up.join("private/key.pem"), b"private", 0o600);
    std::fs::set_permissions(up.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    env.init();
    backup(&env, &[&up]);
    let at_backup = snapshot(&up);

    // An intruder plants a file, changes one, and opens the private directory up.
    write(&up.join("shell.php"), b"<?php system($_GET['c']);", 0o644);
    write(&up.join("a.txt"), b"defaced", 0o644);
    write(&up.join("private/new/deep.txt"), b"deep", 0o644);
    std::fs::set_permissions(up.join("private"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before_restore = snapshot(&up);

    let o = env
        .lb()
        .args(["restore", "latest", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(snapshot(&up), at_backup, "the tree is exactly the point's");
    assert_eq!(mode(&up.join("private")), 0o700);
    assert_no_leftovers(&up);

    // The pre-restore point holds the intruder's state, shell.php included.
    let pre = env
        .points()
        .into_iter()
        .find(|p| {
            p["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "pre-restore")
        })
        .expect("a pre-restore point");
    let out = env.path("pre");
    let o = env
        .lb()
        .args(["restore", pre["id"].as_str().unwrap(), "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        snapshot(&out.join(up.strip_prefix("/").unwrap())),
        before_restore
    );
}

#[test]
fn a_failed_tree_restore_leaves_the_old_tree_as_it_was() {
    let env = Env::new();
    let up = env.path("srv/uploads");
    for i in 0..4u32 {
        write(&up.join(format!("f{i}.bin")), &noise(i + 1, 600_000), 0o644);
    }
    env.init();
    backup(&env, &[&up]);
    // The live tree changes, then the pack holding the files is damaged in its middle.
    write(&up.join("f0.bin"), b"new content", 0o644);
    write(&up.join("added.txt"), b"added", 0o644);
    let live = snapshot(&up);
    let pack = largest_pack(&env);
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&pack, &bytes).unwrap();

    let o = fails(
        env.lb()
            .args(["restore", "latest", "--yes", "--no-safety-point"]),
        5,
        "",
    );
    assert!(
        stderr(&o).to_lowercase().contains("authentic") || stderr(&o).contains("damaged"),
        "{}",
        stderr(&o)
    );
    assert_eq!(snapshot(&up), live, "the old tree is untouched");
    assert_no_leftovers(&up);
}

/// A secret configured inside an uploads directory is its own component: restoring only the
/// files keeps the live secret; restoring everything puts back the point's.
#[test]
fn components_inside_a_tree_are_kept_by_its_restore() {
    let env = Env::new();
    let app = env.path("srv/app");
    write(&app.join("index.html"), b"v1", 0o644);
    write(&app.join("conf/.env"), b"SECRET=one", 0o600);
    env.init();
    backup(&env, &[&app, &"--secret", &app.join("conf/.env")]);
    write(&app.join("index.html"), b"v2", 0o644);
    write(&app.join("conf/.env"), b"SECRET=rotated", 0o600);

    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--only", "files"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(app.join("index.html")).unwrap(), b"v1");
    assert_eq!(
        std::fs::read(app.join("conf/.env")).unwrap(),
        b"SECRET=rotated"
    );
    assert_eq!(mode(&app.join("conf/.env")), 0o600);

    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(app.join("conf/.env")).unwrap(), b"SECRET=one");
}

#[test]
fn setuid_bits_are_cleared_unless_asked_for() {
    let env = Env::new();
    let up = env.path("srv/bin");
    write(&up.join("tool"), b"#!/bin/sh\n", 0o4755);
    write(&up.join("group"), b"#!/bin/sh\n", 0o2750);
    write(&up.join("plain"), b"x", 0o640);
    env.init();
    backup(&env, &[&up]);

    let out = env.path("out");
    let o = env
        .lb()
        .args(["restore", "latest", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = out.join(up.strip_prefix("/").unwrap());
    assert_eq!(mode(&r.join("tool")), 0o755);
    assert_eq!(mode(&r.join("group")), 0o750);
    assert_eq!(mode(&r.join("plain")), 0o640);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("setuid/setgid bits of 2 files"), "{said}");

    let out = env.path("out2");
    let o = env
        .lb()
        .args(["restore", "latest", "--keep-setid", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = out.join(up.strip_prefix("/").unwrap());
    assert_eq!(mode(&r.join("tool")), 0o4755);
    assert_eq!(mode(&r.join("group")), 0o2750);

    // `check` notes them (not damage: exit 0).
    let o = env.lb().arg("check").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("2 setuid/setgid files") && stdout(&o).contains("tool"),
        "{}",
        stdout(&o)
    );
}

/// On the way to a restore target, a symlink is followed only where only root can have put
/// it: one in a directory the app's user owns could point anywhere.
#[test]
fn a_symlink_in_a_directory_another_user_owns_is_not_followed() {
    if !is_root() {
        eprintln!("skipped: needs root (chown)");
        return;
    }
    let env = Env::new();
    let home = env.path("home");
    let real = env.path("real");
    write(&real.join("key"), b"host key", 0o600);
    std::fs::create_dir(&home).unwrap();
    std::os::unix::fs::symlink(&real, home.join("data")).unwrap();
    let key = home.join("data/key");
    env.init();
    backup(&env, &[&"--secret", &key]);
    write(&real.join("key"), b"changed", 0o600);

    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let points = env.points().len();
    let o = fails(env.lb().args(["restore", "latest", "--yes"]), 6, "symlink");
    assert!(stderr(&o).contains("65534"), "{}", stderr(&o));
    assert_eq!(
        env.points().len(),
        points,
        "refused before any pre-restore point"
    );
    assert_eq!(std::fs::read(real.join("key")).unwrap(), b"changed");

    // Root's own directory: the operator's symlink is followed as before.
    std::os::unix::fs::chown(&home, Some(0), Some(0)).unwrap();
    let o = env
        .lb()
        .args(["restore", "latest", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(real.join("key")).unwrap(), b"host key");
}
