use std::path::Path;

use rand::{Rng, SeedableRng};

use crate::common::*;

fn backup(env: &Env, db: &Path) {
    let o = env
        .lb()
        .args(["backup", "--name", "chat"])
        .arg(db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Rewrites `frac` of the messages at random (spread over the whole file).
fn mutate(db: &Path, frac: f64, seed: u64) {
    let c = rusqlite::Connection::open(db).unwrap();
    let n: i64 = c
        .query_row("SELECT max(id) FROM messages", [], |r| r.get(0))
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let tx = c.unchecked_transaction().unwrap();
    for _ in 0..((n as f64 * frac) as i64) {
        let id = rng.random_range(1..=n);
        tx.execute(
            "UPDATE messages SET body = ?1 WHERE id = ?2",
            (body_of(id + 1_000_000 * seed as i64, 300), id),
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
}

#[test]
fn unchanged_db_adds_under_1_percent_and_light_change_under_5_percent() {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 40_000, 300); // ~13 MB
    let db_size = std::fs::metadata(&db).unwrap().len();
    env.init();
    backup(&env, &db);
    let s1 = env.repo_size();
    backup(&env, &db);
    let unchanged = env.repo_size() - s1;
    assert!(
        (unchanged as f64) < 0.01 * db_size as f64,
        "unchanged backup added {unchanged} bytes of a {db_size}-byte DB"
    );
    // ~1% of rows rewritten at random touches ~1% of pages.
    mutate(&db, 0.01, 1);
    let s2 = env.repo_size();
    backup(&env, &db);
    let changed = env.repo_size() - s2;
    assert!(
        (changed as f64) < 0.05 * db_size as f64,
        "1% change added {changed} bytes of a {db_size}-byte DB"
    );
}

/// Restoring point N after N incremental backups equals the source at N, for every N.
#[test]
fn every_point_of_an_incremental_chain_restores_exactly() {
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 8_000, 300);
    env.init();
    let mut expected = Vec::new();
    for round in 0..5u64 {
        if round > 0 {
            mutate(&db, if round == 3 { 0.6 } else { 0.05 }, round); // round 3 forces a new base
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute(
                "INSERT INTO messages(body) VALUES (?1)",
                (format!("round {round}"),),
            )
            .unwrap();
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        }
        backup(&env, &db);
        expected.push(std::fs::read(&db).unwrap());
    }
    let points = env.points();
    assert_eq!(points.len(), 5);
    for (i, p) in points.iter().enumerate() {
        let id = p["id"].as_str().unwrap();
        let out = env.path(&format!("r{i}.db"));
        let o = env
            .lb()
            .args(["restore", &id[..12], "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            expected[i],
            "point {i} differs from the source at {i}"
        );
    }
}
