use std::path::PathBuf;

use crate::common::*;

/// A repository with two points of app `chat`: the older and the newer id (full hex).
fn two_points() -> (Env, String, String) {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 2_000, 100);
    env.init();
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    let older = env.points()[0]["id"].as_str().unwrap().to_string();
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    let pts = env.points();
    assert_eq!(pts.len(), 2);
    let newer = pts[1]["id"].as_str().unwrap().to_string();
    assert_ne!(older, newer);
    (env, older, newer)
}

/// The file of point `id` in the local repository.
fn point_file(env: &Env, id: &str) -> PathBuf {
    let p = env.repo.join("points").join(id);
    assert!(p.is_file(), "no {}", p.display());
    p
}

fn flip_byte(p: &std::path::Path) {
    let mut b = std::fs::read(p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(p, b).unwrap();
}

fn restore_latest(env: &Env, extra: &[&str]) -> std::process::Output {
    let out = env.path("restored");
    let _ = std::fs::remove_dir_all(&out);
    env.lb()
        .args(["restore", "latest", "--to"])
        .arg(&out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn newest_point_deleted_makes_latest_an_error() {
    let (env, older, newer) = two_points();
    std::fs::remove_file(point_file(&env, &newer)).unwrap();
    let o = restore_latest(&env, &[]);
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(&newer), "must name it: {}", stderr(&o));
    assert!(stderr(&o).contains("--allow-older"), "{}", stderr(&o));
    assert!(!env.path("restored").exists(), "nothing may be restored");

    let o = restore_latest(&env, &["--allow-older"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("restored point {}", &older[..8])),
        "{}",
        stdout(&o)
    );
    // Deleted by hand, not by this machine: still an error without the flag.
    assert_eq!(restore_latest(&env, &[]).status.code(), Some(5));
}

#[test]
fn newest_point_damaged_makes_latest_an_error() {
    let (env, _, newer) = two_points();
    flip_byte(&point_file(&env, &newer));
    let o = restore_latest(&env, &[]);
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(&newer), "must name it: {}", stderr(&o));
    assert!(!env.path("restored").exists(), "nothing may be restored");
}

#[test]
fn restored_point_is_remembered_too() {
    let (env, _, newer) = two_points();
    // Another machine (its own state) restores the newest point, which is then deleted.
    let other = env.path("other-state");
    let run = |extra: &[&str]| {
        let out = env.path("restored");
        let _ = std::fs::remove_dir_all(&out);
        env.lb()
            .env("LIFEBOAT_STATE_DIR", &other)
            .args(["restore", "chat", "latest", "--to"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(point_file(&env, &newer)).unwrap();
    let o = run(&[]);
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(&newer), "{}", stderr(&o));
}

#[test]
fn damaged_point_named_by_id_is_reported_as_damaged() {
    let (env, _, newer) = two_points();
    flip_byte(&point_file(&env, &newer));
    let out = env.path("restored");
    let o = env
        .lb()
        .args(["restore", &newer[..8], "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("damaged"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&newer), "{}", stderr(&o));
    // A prefix matching nothing is still a usage error.
    let o = env
        .lb()
        .args(["restore", "ffffffff", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        matches!(o.status.code(), Some(2)) || newer.starts_with("ffffffff"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn future_point_is_marked_and_not_latest() {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 2_000, 100);
    env.init();
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    env.ok(&[
        &"backup",
        &"--name",
        &"chat",
        &db,
        &"--point-time",
        &"2099-01-01T00:00:00Z",
    ]);
    let pts = env.points();
    assert_eq!(pts.len(), 2);
    let (now, future) = (&pts[0], &pts[1]);
    assert_eq!(now["future"], serde_json::Value::Bool(false), "{now}");
    assert_eq!(future["future"], serde_json::Value::Bool(true), "{future}");
    let (human, _) = env.ok(&[&"points"]);
    let marked: Vec<_> = human.lines().filter(|l| l.contains('*')).collect();
    assert!(
        marked
            .iter()
            .any(|l| l.contains("2099") || l.contains("2098")),
        "{human}"
    );
    assert!(
        !human
            .lines()
            .any(|l| l.contains(&now["id"].as_str().unwrap()[..8]) && l.contains('*')),
        "{human}"
    );
    assert!(human.contains("dated in the future"), "{human}");

    let o = restore_latest(&env, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let now_id = now["id"].as_str().unwrap();
    assert!(
        stdout(&o).contains(&format!("restored point {}", &now_id[..8])),
        "{}",
        stdout(&o)
    );
    let o = restore_latest(&env, &["--allow-future"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let future_id = future["id"].as_str().unwrap();
    assert!(
        stdout(&o).contains(&format!("restored point {}", &future_id[..8])),
        "{}",
        stdout(&o)
    );
}

#[test]
fn state_file_is_private_and_names_the_newest_point() {
    use std::os::unix::fs::PermissionsExt;
    let (env, older, newer) = two_points();
    let dir = env.path(".lifeboat-state").join("known-points");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&env.path(".lifeboat-state")), 0o700);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(state["apps"]["chat"]["id"], newer.as_str(), "{state}");
    // Restoring the older point by id does not make it the newest known.
    let out = env.path("restored");
    env.ok(&[&"restore", &&older[..8], &"--to", &out]);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert_eq!(state["apps"]["chat"]["id"], newer.as_str(), "{state}");
    // No temp file is left behind.
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "the file and its lock"
    );
}

/// Deletes `key` of the test bucket on the S3 server (this moto does not check signatures).
fn s3_delete(key: &str) {
    use std::io::{Read, Write};
    let endpoint = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    let bucket = std::env::var("LIFEBOAT_TEST_S3_BUCKET").unwrap();
    let host = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    write!(
        s,
        "DELETE /{bucket}/{key} HTTP/1.1\r\nHost: {host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
}

/// On S3 the local cache still holds a point deleted from the store: the store's listing
/// decides, so `latest` is still refused.
#[test]
fn s3_newest_point_deleted_from_the_store_is_refused_despite_the_cache() {
    let Some(env) = Env::s3() else { return };
    let db = env.path("chat.db");
    make_db(&db, 500, 50);
    env.init();
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    let pts = env.points();
    let newer = pts[1]["id"].as_str().unwrap().to_string();
    let prefix = env
        .repo
        .to_string_lossy()
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .unwrap()
        .1
        .to_string();
    s3_delete(&format!("{prefix}/points/{newer}"));
    assert_eq!(env.points().len(), 1, "the point is gone from the store");
    let o = restore_latest(&env, &[]);
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains(&newer), "{}", stderr(&o));
    let o = restore_latest(&env, &["--allow-older"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The known newest point removed, but a newer one written elsewhere is there: `latest` is
/// that newer point (retention elsewhere may have forgotten the known one).
#[test]
fn known_point_gone_but_a_newer_one_exists_is_fine() {
    let (env, older, _) = two_points();
    // This machine knows only `older`: forget what the backups recorded, restore it.
    std::fs::remove_dir_all(env.path(".lifeboat-state")).unwrap();
    let out = env.path("restored");
    env.ok(&[&"restore", &&older[..8], &"--to", &out]);
    std::fs::remove_file(point_file(&env, &older)).unwrap();
    let o = restore_latest(&env, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // With no point left at all, it is the known point that is named (exit 5).
    let newer = env.points()[0]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(point_file(&env, &newer)).unwrap();
    let o = restore_latest(&env, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains(&newer), "{}", stderr(&o));
}
