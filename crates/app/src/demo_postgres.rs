//! `lifeboat demo --postgres[=URL]`: the Chatalot-shaped demo. A PostgreSQL database
//! (users, channels, messages), uploads and two 0600 secrets are backed up as one point while
//! a writer keeps inserting; the app is broken (messages dropped, uploads and a key deleted);
//! the database is restored into a new database and the files in place; then row counts,
//! per-table content checksums, file bytes and modes are compared, and the repository is
//! checked. Needs a PostgreSQL server (`URL`, or the `PG*` environment) and its client
//! programs; it creates and drops databases `lifeboat_demo_<pid>` and `..._restored`.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use std::io::Write;

use lifeboat_core::{Error, ErrorKind, Progress, Result};
use lifeboat_sources::postgres::PgSource;

use crate::demo::{
    backup_while_writing, check_everything, compare_files, demo_setup, io, say, snapshot_paths,
    toml_str, write_file, write_uploads,
};
use crate::human::{duration_ms, size};
use crate::{BackupRequest, RestoreRequest};

fn one(conn: &PgSource, db: &str, sql: &str) -> Result<String> {
    Ok(conn
        .psql(db, sql)?
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .unwrap_or_default())
}

/// md5 of a table's rows in id order, up to `upto`.
fn table_sum(conn: &PgSource, db: &str, table: &str, upto: i64) -> Result<String> {
    one(
        conn,
        db,
        &format!("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM {table} t WHERE id <= {upto};"),
    )
}

/// Drops the demo databases however the demo ends (unless kept).
struct Cleanup {
    conn: PgSource,
    dbs: Vec<String>,
    keep: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for db in &self.dbs {
            let _ = self.conn.psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE);"),
            );
        }
    }
}

pub fn run(
    root: &Path,
    url: Option<String>,
    bin_dir: Option<PathBuf>,
    messages: u32,
    keep: bool,
    progress: &dyn Progress,
    out: &mut dyn Write,
) -> Result<()> {
    let started = Instant::now();
    let db = format!("lifeboat_demo_{}", std::process::id());
    let restored_db = format!("{db}_restored");
    let conn = PgSource {
        url: url.filter(|u| !u.is_empty()),
        database: db.clone(),
        bin_dir,
        ..PgSource::default()
    };
    let uploads = root.join("chatalot/uploads");
    let jwt = root.join("chatalot/secrets/jwt_private.pem");
    let env = root.join("chatalot/.env");
    say!(out, "lifeboat demo (PostgreSQL) in {}", root.display());

    // 1. The app.
    one(&conn, "postgres", &format!("CREATE DATABASE \"{db}\";"))
        .map_err(|e| e.context("create the demo database").with_hint("pass --postgres=postgresql://USER@HOST:PORT/postgres, or set PGHOST/PGPORT/PGUSER; the user must be allowed to create databases"))?;
    let _cleanup = Cleanup {
        conn: conn.clone(),
        dbs: vec![db.clone(), restored_db.clone()],
        keep,
    };
    conn.psql(
        &db,
        &format!(
            "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, password_hash text NOT NULL);
             INSERT INTO users (name, password_hash) SELECT 'user' || g, md5('pw' || g) FROM generate_series(1, 50) g;
             CREATE TABLE channels (id serial PRIMARY KEY, name text NOT NULL);
             INSERT INTO channels (name) SELECT 'channel-' || g FROM generate_series(1, 8) g;
             CREATE TABLE messages (id bigserial PRIMARY KEY, channel_id int NOT NULL REFERENCES channels(id),
                                    user_id int NOT NULL REFERENCES users(id), body text NOT NULL,
                                    created_at timestamptz NOT NULL DEFAULT '2026-01-01');
             CREATE INDEX ON messages (channel_id, created_at);
             INSERT INTO messages (channel_id, user_id, body)
               SELECT 1 + g % 8, 1 + g % 50, 'message ' || g || ': ' || repeat('ship it ', 1 + g % 12)
               FROM generate_series(1, {messages}) g;"
        ),
    )?;
    write_uploads(&uploads)?;
    write_file(
        &jwt,
        b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIDemoOnlyNotARealKeyAtAll0000000000\n-----END PRIVATE KEY-----\n",
        0o600,
    )?;
    write_file(
        &env,
        format!("DATABASE_URL=postgresql:///{db}\nJWT_PRIVATE_KEY_PATH=secrets/jwt_private.pem\n")
            .as_bytes(),
        0o600,
    )?;
    let before = snapshot_paths(&[&uploads, &jwt, &env])?;
    say!(
        out,
        "1. made a Chatalot-like app: database {} ({messages} messages), {} upload files, jwt_private.pem and .env (0600)",
        conn.label(),
        before.len() - 2
    );

    // 2. A writer that keeps inserting while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (conn, db, stop, commits) = (
            conn.clone(),
            db.clone(),
            Arc::clone(&stop),
            Arc::clone(&commits),
        );
        std::thread::spawn(move || -> Result<()> {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                conn.psql(
                    &db,
                    &format!("INSERT INTO messages (channel_id, user_id, body) VALUES (1, 1, 'live message {i}');"),
                )?;
                i += 1;
                commits.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    while commits.load(Ordering::Relaxed) < 3 && !writer.is_finished() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    let mut app = format!(
        "[app.chatalot]\nfiles = [{}]\nsecrets = [{}, {}]\nexclude = [\"*.tmp\"]\n[[app.chatalot.postgres]]\ndatabase = {}\n",
        toml_str(&uploads),
        toml_str(&jwt),
        toml_str(&env),
        toml_str(Path::new(&db)),
    );
    if let Some(url) = &conn.url {
        app.push_str(&format!("url = {}\n", toml_str(Path::new(url))));
    }
    if let Some(bin) = &conn.bin_dir {
        app.push_str(&format!("bin_dir = {}\n", toml_str(bin)));
    }
    let (setup, repo_dir) = demo_setup(root, &app)?;
    let (id, point, during) =
        backup_while_writing(&setup, "chatalot", &commits, &stop, writer, progress)?;
    let body = point.components[0]
        .postgres
        .as_ref()
        .expect("postgres component");
    let in_point = body.row_counts.get("public.messages").copied().unwrap_or(0);
    say!(
        out,
        "2. backed up the app as point {} to {} in {} while a writer inserted {} messages; the dump's snapshot holds {in_point} messages, {} stored",
        id.short(),
        repo_dir.display(),
        duration_ms(point.stats.duration_ms),
        during,
        size(point.stats.bytes_stored),
    );
    let p2 = crate::backup(
        &setup,
        &BackupRequest {
            targets: vec!["chatalot".into()],
            ..BackupRequest::default()
        },
        progress,
    )?
    .point;
    say!(
        out,
        "   a second backup of the app added {} (dump of {})",
        size(p2.stats.bytes_stored),
        size(p2.components[0].size)
    );

    // The source's content as the point holds it: one writer, so ids 1..=count are exactly
    // the rows of the snapshot.
    let sums: Vec<(&str, String)> = [
        ("users", i64::MAX),
        ("channels", i64::MAX),
        ("messages", in_point as i64),
    ]
    .into_iter()
    .map(|(t, upto)| Ok((t, table_sum(&conn, &db, t, upto)?)))
    .collect::<Result<_>>()?;

    // 3. Disaster.
    conn.psql(&db, "DROP TABLE messages;")?;
    std::fs::remove_dir_all(&uploads).map_err(io(uploads.display()))?;
    std::fs::remove_file(&jwt).map_err(io(jwt.display()))?;
    say!(
        out,
        "3. broke the app: dropped table messages, deleted the uploads and jwt_private.pem"
    );

    // 4. Restore: the database into a new database, files in place.
    let restore = RestoreRequest {
        app: Some("chatalot".into()),
        point: Some(id.to_hex()),
        pg_database: Some(restored_db.clone()),
        force: true,
        safety_point: false,
        ..RestoreRequest::default()
    };
    let t = Instant::now();
    let restored = crate::restore_plan(&setup, &restore)?
        .run(true, progress, &mut |_| {})?
        .restored;
    say!(
        out,
        "4. restored point {} in {}:",
        id.short(),
        duration_ms(t.elapsed().as_millis() as u64)
    );
    for r in &restored {
        say!(
            out,
            "     {:<8} {}: {}",
            r.kind.as_str(),
            r.path,
            r.verified
        );
    }

    // 5. Verify independently of the restore's own checks.
    for (table, want) in &sums {
        let got = table_sum(&conn, &restored_db, table, i64::MAX)?;
        if &got != want {
            return Err(Error::new(
                ErrorKind::Verify,
                format!("demo: table {table} differs after restore (md5 {got}, source {want})"),
            ));
        }
    }
    let after = snapshot_paths(&[&uploads, &jwt, &env])?;
    compare_files(&before, &after)?;
    say!(
        out,
        "5. verified: {restored_db} has the {in_point} messages of the snapshot, users and channels, each table's md5 equal to the source's; {} files byte-equal with their modes (jwt_private.pem 600)",
        before.len()
    );
    check_everything(&setup, 6, progress, out)?;
    say!(
        out,
        "demo finished in {}: backup, disaster, restore and verification all succeeded{}",
        duration_ms(started.elapsed().as_millis() as u64),
        if keep {
            format!(" (databases {db} and {restored_db} kept)")
        } else {
            String::new()
        }
    );
    Ok(())
}
