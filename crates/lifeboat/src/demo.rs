//! `lifeboat demo`: the whole job on an embedded app, with no services and no setup.
//!
//! 1. make a chat-server-like app: a SQLite DB in WAL mode, uploads (nested dirs, an empty
//!    dir, a symlink), an SSH host key and `.env` (0600), a config file;
//! 2. start a writer thread that keeps committing messages;
//! 3. init a repository and back the app up while the writer runs;
//! 4. destroy the app's data;
//! 5. restore the point in place and verify: the DB passes integrity_check and has exactly
//!    the rows the point recorded; uploads, secrets and config are byte-equal with their modes;
//! 6. `check --read-data` on the repository.
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use lifeboat_core::{
    check, CheckOptions, ComponentKind, Error, ErrorKind, KdfParams, Repository, Result,
};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::{
    backup_app, restore_point, AppSpec, RestoreOptions, RestoreTarget, SourceSpec,
};
use lifeboat_storage::LocalStorage;

use crate::cli::Context;
use crate::output::{duration_ms, size};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work in this directory (default: a new temporary directory)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the directory afterwards
    #[arg(long)]
    pub keep: bool,
    /// Messages in the demo database before the backup starts
    #[arg(long, default_value_t = 20_000)]
    pub messages: u32,
    /// Run the Chatalot-shaped demo instead: PostgreSQL + uploads + secrets, the database
    /// restored into a new database. Needs a server: `--postgres=postgresql://USER@HOST:PORT/postgres`,
    /// or `--postgres` alone to use the PG* environment
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub postgres: Option<String>,
    /// Directory of psql, pg_dump and pg_restore for --postgres (else PATH)
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

fn e(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |err| Error::new(ErrorKind::Other, format!("demo: {what}: {err}"))
}

pub(crate) fn io(what: impl std::fmt::Display) -> impl Fn(std::io::Error) -> Error {
    move |err| Error::io(&what, err)
}

struct Demo {
    root: PathBuf,
    db: PathBuf,
    uploads: PathBuf,
    host_key: PathBuf,
    env: PathBuf,
    config: PathBuf,
}

pub fn run(ctx: &Context, a: DemoArgs) -> Result<()> {
    let _tmp;
    let root = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(io(d.display()))?;
            std::path::absolute(d).map_err(io(d.display()))?
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("lifeboat-demo-")
                .tempdir()
                .map_err(io("temp dir"))?;
            let p = t.path().to_path_buf();
            _tmp = if a.keep { None } else { Some(t) };
            if a.keep {
                std::mem::forget(_tmp);
            }
            p
        }
    };
    if let Some(url) = a.postgres {
        return crate::demo_postgres::run(ctx, &root, Some(url), a.pg_bin, a.messages, a.keep);
    }
    let started = Instant::now();
    let d = Demo {
        db: root.join("app/data/chat.db"),
        uploads: root.join("app/data/uploads"),
        host_key: root.join("app/secrets/ssh_host_ed25519_key"),
        env: root.join("app/.env"),
        config: root.join("app/config.toml"),
        root: root.clone(),
    };
    println!("lifeboat demo in {}", root.display());

    make_app(&d, a.messages)?;
    let before = snapshot_files(&d)?;
    println!(
        "1. made a chat app: {} (WAL, {} messages), {} upload files, SSH host key and .env (0600), config.toml",
        d.db.display(),
        a.messages,
        before.len() - 3
    );

    // A writer that keeps committing while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, commits) = (d.db.clone(), Arc::clone(&stop), Arc::clone(&commits));
        std::thread::spawn(move || -> Result<()> {
            let c = rusqlite::Connection::open(&db).map_err(e("writer open"))?;
            c.busy_timeout(std::time::Duration::from_secs(5))
                .map_err(e("busy"))?;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                c.execute_batch(&format!(
                    "BEGIN; INSERT INTO messages(channel_id, user_id, body, created_at) VALUES (1, 1, 'live message {i} while the backup runs', {i}); UPDATE channels SET last_message_at = {i} WHERE id = 1; COMMIT;"
                ))
                .map_err(e("writer commit"))?;
                i += 1;
                commits.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Ok(())
        })
    };
    while commits.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    let (mut repo, repo_dir) = demo_repository(&root)?;
    println!(
        "2. created an encrypted repository at {}",
        repo_dir.display()
    );

    let spec = AppSpec {
        name: "chat".into(),
        sources: vec![
            SourceSpec::path(ComponentKind::Sqlite, d.db.clone()),
            SourceSpec::path(ComponentKind::Files, d.uploads.clone()),
            SourceSpec::path(ComponentKind::Secret, d.host_key.clone()),
            SourceSpec::path(ComponentKind::Secret, d.env.clone()),
            SourceSpec::path(ComponentKind::Config, d.config.clone()),
        ],
        excludes: vec!["*.tmp".into()],
        time: None,
    };
    let c0 = commits.load(Ordering::Relaxed);
    let (id, point) = backup_app(&mut repo, &spec, &["manual".into()], &ctx.progress)?;
    let c1 = commits.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer
        .join()
        .map_err(|_| Error::new(ErrorKind::Other, "demo writer panicked"))??;
    let db_body = point.components[0]
        .sqlite
        .as_ref()
        .expect("sqlite component");
    println!(
        "3. backed up the app as point {} in {} while the writer committed {} transactions; the point holds {} messages, {} stored",
        id.short(),
        duration_ms(point.stats.duration_ms),
        c1 - c0,
        db_body.row_counts.get("messages").copied().unwrap_or(0),
        size(point.stats.bytes_stored),
    );
    let (id2, p2) = backup_app(&mut repo, &spec, &["manual".into()], &ctx.progress)?;
    println!(
        "   a second backup (point {}) of the unchanged app added {}",
        id2.short(),
        size(p2.stats.bytes_stored)
    );

    destroy(&d)?;
    println!("4. destroyed the app: deleted the database (+ -wal/-shm), the uploads and the SSH host key, scribbled over config.toml");

    let opts = RestoreOptions {
        target: RestoreTarget::InPlace,
        only: Vec::new(),
        force: true,
        verify: Verify::Full,
        postgres: Default::default(),
    };
    let t = Instant::now();
    let restored = restore_point(&mut repo, &point, &opts, &ctx.progress)?;
    println!(
        "5. restored point {} in place in {}:",
        id.short(),
        duration_ms(t.elapsed().as_millis() as u64)
    );
    for r in &restored {
        println!("     {:<7} {}: {}", r.kind.as_str(), r.path, r.verified);
    }

    let after = snapshot_files(&d)?;
    compare_files(&before, &after)?;
    let key_mode = std::fs::metadata(&d.host_key)
        .map_err(io(d.host_key.display()))?
        .permissions()
        .mode()
        & 0o7777;
    println!(
        "6. verified: {} files byte-equal with their modes (SSH host key {:o}); database integrity_check ok, {} tables with the row counts the point recorded",
        before.len(),
        key_mode,
        db_body.row_counts.len()
    );

    check_everything(ctx, &mut repo, 7)?;
    println!(
        "demo finished in {}: backup, disaster, restore and verification all succeeded",
        duration_ms(started.elapsed().as_millis() as u64)
    );
    if a.keep || a.dir.is_some() {
        println!(
            "the demo app and repository are in {} (password: {})",
            d.root.display(),
            String::from_utf8_lossy(DEMO_PASSWORD)
        );
    }
    Ok(())
}

fn make_app(d: &Demo, messages: u32) -> Result<()> {
    for p in [
        d.db.parent().expect("parent"),
        &d.uploads,
        d.host_key.parent().expect("parent"),
    ] {
        std::fs::create_dir_all(p).map_err(io(p.display()))?;
    }
    let c = rusqlite::Connection::open(&d.db).map_err(e("create db"))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, pubkey TEXT);
         CREATE TABLE channels(id INTEGER PRIMARY KEY, name TEXT NOT NULL, last_message_at INTEGER);
         CREATE TABLE messages(id INTEGER PRIMARY KEY, channel_id INTEGER NOT NULL, user_id INTEGER NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL);
         CREATE INDEX messages_by_channel ON messages(channel_id, created_at);
         CREATE TABLE schema_migrations(version TEXT PRIMARY KEY);
         INSERT INTO schema_migrations VALUES ('20260101000000'), ('20260315120000');",
    )
    .map_err(e("schema"))?;
    let tx = c.unchecked_transaction().map_err(e("begin"))?;
    for u in 1..=50 {
        tx.execute(
            "INSERT INTO users(name, pubkey) VALUES (?1, ?2)",
            (format!("user{u}"), format!("ssh-ed25519 AAAA{u:040}")),
        )
        .map_err(e("users"))?;
    }
    for ch in 1..=8 {
        tx.execute(
            "INSERT INTO channels(name, last_message_at) VALUES (?1, 0)",
            (format!("channel-{ch}"),),
        )
        .map_err(e("channels"))?;
    }
    let words = [
        "hello", "deploy", "backup", "restore", "sqlite", "works", "again", "lunch", "ship", "it",
    ];
    for m in 0..messages {
        let body: Vec<&str> = (0..(5 + m % 20))
            .map(|k| words[((m * 7 + k * 3) % 10) as usize])
            .collect();
        tx.execute(
            "INSERT INTO messages(channel_id, user_id, body, created_at) VALUES (?1, ?2, ?3, ?4)",
            (1 + m % 8, 1 + m % 50, body.join(" "), m as i64),
        )
        .map_err(e("messages"))?;
    }
    tx.commit().map_err(e("commit"))?;

    write_uploads(&d.uploads)?;
    let key: String = (0..280)
        .map(|i| (b'A' + ((i * 13 + 5) % 26) as u8) as char)
        .collect();
    write_file(
        &d.host_key,
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{key}\n-----END OPENSSH PRIVATE KEY-----\n")
            .as_bytes(),
        0o600,
    )?;
    write_file(
        &d.env,
        b"JWT_SECRET=demo-not-secret\nDATABASE=data/chat.db\n",
        0o600,
    )?;
    write_file(
        &d.config,
        b"[server]\nport = 2222\nname = \"demo chat\"\n",
        0o644,
    )?;
    Ok(())
}

/// The demos' repository password (printed when the directory is kept).
pub(crate) const DEMO_PASSWORD: &[u8] = b"demo-password-not-for-real-use";

/// A new repository at `root/repo` (returned with its path).
pub(crate) fn demo_repository(root: &Path) -> Result<(Repository, PathBuf)> {
    let dir = root.join("repo");
    let repo = Repository::init(
        Arc::new(LocalStorage::new(&dir)),
        DEMO_PASSWORD,
        KdfParams::default(),
    )?;
    Ok((repo, dir))
}

/// `check --read-data`; step `n` of the demo's printout.
pub(crate) fn check_everything(ctx: &Context, repo: &mut Repository, n: u32) -> Result<()> {
    let report = check(repo, CheckOptions { read_data: true }, &ctx.progress)?;
    if !report.problems.is_empty() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("demo: check found {:?}", report.problems),
        ));
    }
    println!(
        "{n}. check --read-data: {} points, {} packs, {} authenticated, no problems",
        report.points,
        report.packs,
        size(report.bytes_read)
    );
    Ok(())
}

/// Writes a file with `mode`, creating its directory.
pub(crate) fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent.display()))?;
    }
    std::fs::write(p, data).map_err(io(p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).map_err(io(p.display()))
}

/// An uploads directory: nested files, a 0640 avatar, an excluded temp file, an empty dir
/// and a symlink.
pub(crate) fn write_uploads(uploads: &Path) -> Result<()> {
    for i in 0..12u32 {
        let data: Vec<u8> = (0..(3000 + i * 9000))
            .map(|j| ((j * 31 + i * 7) % 251) as u8)
            .collect();
        write_file(
            &uploads.join(format!("{:02}/upload-{i}.bin", i % 3)),
            &data,
            0o644,
        )?;
    }
    write_file(
        &uploads.join("avatars/user1.png"),
        b"\x89PNG fake avatar",
        0o640,
    )?;
    write_file(&uploads.join("scratch.tmp"), b"excluded temp file", 0o644)?;
    std::fs::create_dir_all(uploads.join("empty")).map_err(io("empty dir"))?;
    let link = uploads.join("latest-avatar");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("avatars/user1.png", &link).map_err(io(link.display()))?;
    Ok(())
}

/// Every file of `before` is in `after` with the same content and mode.
pub(crate) fn compare_files(
    before: &BTreeMap<String, (String, u32)>,
    after: &BTreeMap<String, (String, u32)>,
) -> Result<()> {
    for (path, (hash, mode)) in before {
        match after.get(path) {
            Some((h, m)) if h == hash && m == mode => {}
            Some((_, m)) => {
                return Err(Error::new(
                    ErrorKind::Verify,
                    format!("demo: {path} differs after restore (mode {m:o})"),
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Verify,
                    format!("demo: {path} is missing after restore"),
                ))
            }
        }
    }
    Ok(())
}

/// Hash and mode of every file that must come back (not the DB, which is checked by SQLite).
fn snapshot_files(d: &Demo) -> Result<BTreeMap<String, (String, u32)>> {
    snapshot_paths(&[&d.uploads, &d.host_key, &d.env, &d.config])
}

/// Hash (or link target) and mode of every file under `roots` (`*.tmp` skipped).
pub(crate) fn snapshot_paths(roots: &[&Path]) -> Result<BTreeMap<String, (String, u32)>> {
    let mut out = BTreeMap::new();
    let mut add = |p: &Path| -> Result<()> {
        let md = std::fs::symlink_metadata(p).map_err(io(p.display()))?;
        let h = if md.file_type().is_symlink() {
            std::fs::read_link(p)
                .map_err(io(p.display()))?
                .display()
                .to_string()
        } else {
            blake3::hash(&std::fs::read(p).map_err(io(p.display()))?)
                .to_hex()
                .to_string()
        };
        out.insert(
            p.display().to_string(),
            (h, md.permissions().mode() & 0o7777),
        );
        Ok(())
    };
    fn walk(dir: &Path, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
        for ent in std::fs::read_dir(dir).map_err(io(dir.display()))? {
            let p = ent.map_err(io(dir.display()))?.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                continue;
            }
            if p.is_dir() && !p.is_symlink() {
                walk(&p, f)?;
            } else {
                f(&p)?;
            }
        }
        Ok(())
    }
    for r in roots {
        if r.is_dir() {
            walk(r, &mut add)?;
        } else {
            add(r)?;
        }
    }
    Ok(out)
}

fn destroy(d: &Demo) -> Result<()> {
    for p in [&d.db, &d.host_key] {
        std::fs::remove_file(p).map_err(io(p.display()))?;
    }
    for s in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", d.db.display()));
    }
    std::fs::remove_dir_all(&d.uploads).map_err(io(d.uploads.display()))?;
    std::fs::write(&d.config, b"garbage").map_err(io(d.config.display()))?;
    Ok(())
}
