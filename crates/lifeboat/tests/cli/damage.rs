use std::path::{Path, PathBuf};

use crate::common::*;

/// A repository with one backup of a ~6 MB database.
fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 20_000, 300);
    env.init();
    env.lb()
        .args(["backup", "--name", "chat"])
        .arg(&db)
        .assert()
        .success();
    env.lb().args(["check", "--read-data"]).assert().success();
    (env, db)
}

fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                v.extend(files_under(&e.path()));
            } else {
                v.push(e.path());
            }
        }
    }
    v
}

/// `check --read-data` exits 5 naming `object`; `restore` refuses and writes no file.
fn assert_detected_and_refused(env: &Env, object: &str) {
    let o = env.lb().args(["check", "--read-data"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(5),
        "check must fail: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).contains(object),
        "check must name {object}: {}",
        stdout(&o)
    );
    let out = env.path("restored");
    let o = env
        .lb()
        .args(["restore", "latest", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success(), "restore must refuse");
    assert!(
        matches!(o.status.code(), Some(3 | 5)),
        "exit {:?}: {}",
        o.status.code(),
        stderr(&o)
    );
    assert!(
        files_under(&out).is_empty(),
        "restore left files: {:?}",
        files_under(&out)
    );
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn flipped_byte_in_a_pack() {
    let (env, _) = setup();
    let pack = largest_pack(&env);
    let mut b = std::fs::read(&pack).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&pack, b).unwrap();
    assert_detected_and_refused(&env, &format!("pack/{}", name_of(&pack)));
}

#[test]
fn truncated_pack() {
    let (env, _) = setup();
    let pack = largest_pack(&env);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // Even the structure check (no data read) sees it.
    let o = env.lb().arg("check").output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(stdout(&o).contains("truncated"), "{}", stdout(&o));
    assert_detected_and_refused(&env, &format!("pack/{}", name_of(&pack)));
}

#[test]
fn missing_pack() {
    let (env, _) = setup();
    let pack = env.packs().into_iter().next().unwrap();
    std::fs::remove_file(&pack).unwrap();
    assert_detected_and_refused(&env, &format!("pack/{}", name_of(&pack)));
}

#[test]
fn damaged_index_and_point_are_named() {
    let (env, _) = setup();
    for dir in ["index", "points"] {
        let f = std::fs::read_dir(env.repo.join(dir))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut b = std::fs::read(&f).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&f, b).unwrap();
        let o = env.lb().arg("check").output().unwrap();
        assert_eq!(o.status.code(), Some(5));
        let kind = if dir == "index" { "index" } else { "point" };
        assert!(
            stdout(&o).contains(&format!("{kind}/{}", name_of(&f))),
            "{}",
            stdout(&o)
        );
    }
}

#[test]
fn wrong_password_is_refused_with_exit_4() {
    let (env, _) = setup();
    fails(
        env.lb().env("LIFEBOAT_PASSWORD", "wrong").arg("points"),
        4,
        "wrong password",
    );
    fails(
        env.lb().env_remove("LIFEBOAT_PASSWORD").arg("points"),
        4,
        "no repository password",
    );
}

#[test]
fn newer_format_version_is_refused_clearly() {
    let (env, _) = setup();
    let cfg = env.repo.join("config");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"version\": 1", "\"version\": 2");
    std::fs::write(&cfg, text).unwrap();
    fails(env.lb().arg("points"), 3, "newer lifeboat");
}

#[test]
fn not_a_repository() {
    let env = Env::new();
    std::fs::create_dir_all(&env.repo).unwrap();
    fails(env.lb().arg("points"), 3, "no lifeboat repository");
}

/// One damaged point must not stop later backups or the restore of the other points.
#[test]
fn a_damaged_point_does_not_block_the_others() {
    let (env, db) = setup();
    let victim = std::fs::read_dir(env.repo.join("points"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&victim, b"garbage").unwrap();
    env.lb()
        .args(["backup", "--name", "chat"])
        .arg(&db)
        .assert()
        .success();
    let pts = env.points();
    assert_eq!(
        pts.len(),
        1,
        "the damaged point is skipped, the new one listed"
    );
    let out = env.path("r.db");
    env.lb()
        .args(["restore", "latest", "-o"])
        .arg(&out)
        .assert()
        .success();
    assert_eq!(integrity(&out), "ok");
    assert_eq!(
        env.lb().arg("check").output().unwrap().status.code(),
        Some(5),
        "check still names it"
    );
}

/// Issue 12 item 5: objects were read whole into memory before any size check, so a planted
/// huge key slot or lease (here sparse files of 64 GiB, which cost no disk) made every
/// command that opens the repository or lists leases fail or exhaust memory. They are refused
/// as damaged from their size, without being read: the repository opens with the good slot,
/// and prune counts the lease as unreadable.
#[test]
fn oversized_key_slot_and_lease_are_damaged_not_read() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, 200, 50);
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    let huge = |p: PathBuf| {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        f.set_len(64 << 30).unwrap();
    };
    huge(env.repo.join("keys").join("ff".repeat(32)));
    huge(env.repo.join("leases").join("0123456789abcdef"));
    let (out, _) = env.ok(&[&"points"]);
    assert!(out.contains(" app "), "{out}");
    // check reads every slot: the huge one is named damaged, from its size.
    let o = fails(env.lb().arg("check"), 5, "problems");
    let text = stdout(&o) + &stderr(&o);
    let slot = format!("key/{}", "ff".repeat(32));
    assert!(text.contains(&slot) && text.contains("not read"), "{text}");
    // `key list` lists it as damaged (the others still listed) and it can be removed.
    let (out, _) = env.ok(&[&"key", &"list"]);
    assert!(
        out.contains("ffffffff  DAMAGED") && out.contains('*'),
        "{out}"
    );
    env.ok(&[&"key", &"remove", &"ffffffff"]);
    // prune reads every lease: the huge one counts as unreadable, nothing fails.
    env.ok(&[&"prune"]);
    env.lb().arg("backup").arg(&db).assert().success();
}
