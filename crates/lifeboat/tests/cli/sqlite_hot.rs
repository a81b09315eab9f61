use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use crate::common::*;

/// A writer commits transactions (insert one message + set counter = its id) as fast as it can
/// for the whole backup. The restored database must be exactly one state the writer committed:
/// integrity_check ok, messages 1..=k with the exact bodies, counter = k, and k between what
/// was committed before and after the backup.
#[test]
fn backup_while_writer_commits_restores_a_committed_state() {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 30_000, 200);
    env.init();

    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicI64::new(0));
    let writer = {
        let (db, stop, last) = (db.clone(), Arc::clone(&stop), Arc::clone(&last));
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let tx = c.unchecked_transaction().unwrap();
                tx.execute("INSERT INTO messages(body) VALUES ('')", [])
                    .unwrap();
                let id = tx.last_insert_rowid();
                tx.execute(
                    "UPDATE messages SET body = ?1 WHERE id = ?2",
                    (body_of(id, 200), id),
                )
                .unwrap();
                tx.execute("UPDATE counter SET n = ?1", (id,)).unwrap();
                tx.commit().unwrap();
                last.store(id, Ordering::Relaxed);
            }
        })
    };
    while last.load(Ordering::Relaxed) < 30_050 {
        std::thread::yield_now();
    }
    let before = last.load(Ordering::Relaxed);
    env.lb()
        .args(["backup", "--name", "chat"])
        .arg(&db)
        .assert()
        .success();
    let after = last.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        after > before,
        "the writer must have committed during the backup"
    );

    let out = env.path("restore");
    let o = env
        .lb()
        .args(["restore", "latest", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let restored = out.join(db.strip_prefix("/").unwrap());
    assert_eq!(integrity(&restored), "ok");
    let c = rusqlite::Connection::open(&restored).unwrap();
    let k: i64 = c
        .query_row("SELECT n FROM counter", [], |r| r.get(0))
        .unwrap();
    let rows: i64 = c
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    let max: i64 = c
        .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert!(
        k >= before && k <= after,
        "restored state {k} not in [{before}, {after}]"
    );
    assert_eq!(
        rows, k,
        "row count must match the counter committed in the same transaction"
    );
    assert_eq!(max, k);
    // Content: every body equals what the writer (or make_db) wrote.
    let mut st = c
        .prepare("SELECT id, body FROM messages ORDER BY id")
        .unwrap();
    let mut n = 0;
    for r in st
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (id, body) = r.unwrap();
        let want = if id <= 30_000 {
            body_of(id - 1, 200)
        } else {
            body_of(id, 200)
        };
        assert_eq!(body, want, "message {id}");
        n += 1;
    }
    assert_eq!(n, k);

    // The point recorded the row counts and the schema_migrations version of that state.
    let p = &env.points()[0];
    let comp = &p["components"][0];
    assert_eq!(comp["kind"], "sqlite");
    assert_eq!(comp["row_counts"]["messages"], serde_json::json!(k));
    assert_eq!(comp["schema_version"], "20260202");
    assert_eq!(comp["page_size"], 4096);
}

/// In-place restore over a live path: temp file + verify + rename; stale -wal/-shm removed.
#[test]
fn in_place_restore_replaces_db_and_removes_stale_wal() {
    let env = Env::new();
    let db = env.path("app.db");
    make_db(&db, 2_000, 100);
    env.init();
    env.lb().arg("backup").arg(&db).assert().success();
    let point_id = env.points()[0]["id"].as_str().unwrap().to_string();

    // Damage the live DB after the point: add rows (newer than the point) and leave a WAL.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA wal_autocheckpoint=0; INSERT INTO messages(body) VALUES ('after the point');",
    )
    .unwrap();
    // Keep the connection open: to lifeboat this test is "another process" using the DB.
    std::mem::forget(c);
    fails(
        env.lb().args(["restore", "latest", "--yes"]),
        6,
        "open by another process",
    );
    assert_eq!(
        count(&db, "messages"),
        2_001,
        "refused restore must not touch the DB"
    );

    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--force"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("pre-restore point"), "{}", stderr(&o));
    // The stale -wal/-shm are gone, so nothing can replay old frames onto the new file.
    assert!(!env.path("app.db-wal").exists() && !env.path("app.db-shm").exists());
    // The file in place is byte-equal to a clean restore of the same point. (Opening it from
    // this process would mix in the leaked connection's in-process WAL state, so compare bytes.)
    let clean = env.path("clean.db");
    env.lb()
        .args(["restore", &point_id[..12], "-o"])
        .arg(&clean)
        .assert()
        .success();
    let (a, b) = (std::fs::read(&db).unwrap(), std::fs::read(&clean).unwrap());
    let first_diff = a.iter().zip(&b).position(|(x, y)| x != y);
    assert!(
        a.len() == b.len() && first_diff.is_none(),
        "sizes {} {}, first difference at {first_diff:?}",
        a.len(),
        b.len()
    );
    assert_eq!(count(&clean, "messages"), 2_000);
    assert_eq!(integrity(&clean), "ok");
    // A pre-restore point of the state we replaced exists, so nothing is lost.
    let pts = env.points();
    assert_eq!(pts.len(), 2);
    assert!(pts.iter().any(|p| p["tags"][0] == "pre-restore"));
}
