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
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use std::io::Write;

use lifeboat_core::{CheckOptions, Error, ErrorKind, Progress, Result};

use crate::human::{duration_ms, size};
use crate::trust::{check_ancestors, effective_uid};
use crate::{BackupRequest, Config, PasswordSource, RestoreRequest, Setup};

/// How to run the demo.
#[derive(Debug, Clone, Default)]
pub struct DemoRequest {
    /// Work in this directory: a new one (created 0700), or an empty one of yours that only
    /// you can write to (default: a new private temporary directory).
    pub dir: Option<PathBuf>,
    /// Keep the directory afterwards (a temporary one stays private, 0700).
    pub keep: bool,
    /// Messages in the demo database before the backup starts.
    pub messages: u32,
    /// Run the Chatalot-shaped demo instead (PostgreSQL + uploads + secrets) against this
    /// server (a libpq URL; empty: the `PG*` environment).
    pub postgres: Option<String>,
    /// Directory of psql, pg_dump and pg_restore for the PostgreSQL demo (else PATH).
    pub pg_bin: Option<PathBuf>,
}

/// Writes one line of the demo's narration.
macro_rules! say {
    ($out:expr, $($t:tt)*) => {
        writeln!($out, $($t)*).map_err(io("demo output"))?
    };
}
pub(crate) use say;

fn e(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |err| Error::new(ErrorKind::Other, format!("demo: {what}: {err}"))
}

/// Maps an I/O error on `what`.
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

/// `lifeboat demo`: makes an app, backs it up while it writes, destroys it, restores it
/// and verifies it, through this crate's operations like any user; each step is narrated to
/// `out`.
pub fn demo(a: &DemoRequest, progress: &dyn Progress, out: &mut dyn Write) -> Result<()> {
    // A new temporary directory, private (0700: tempfile's default would be 0777 & umask);
    // kept, it is that same directory (never deleted and made again under its name, which
    // another user watching the temp dir could win).
    let mut _tmp = None;
    let root = match &a.dir {
        Some(d) => demo_dir(d)?,
        None => {
            // As root, the temp dir ($TMPDIR) must not be one another user can change: they
            // could rename the demo's directory away and put theirs in its place.
            let tmp = std::env::temp_dir();
            if effective_uid() == 0 {
                let canon = std::fs::canonicalize(&tmp).map_err(io(tmp.display()))?;
                if let Some(c) = check_ancestors(&canon, 0)? {
                    return Err(Error::new(
                        ErrorKind::Refused,
                        format!(
                            "refusing the temporary directory {}: {} (owner uid {}, mode {:o}) can be changed by another user, who could swap the demo's files",
                            tmp.display(),
                            c.dir.display(),
                            c.uid,
                            c.mode
                        ),
                    )
                    .with_hint("set TMPDIR to a directory only root can change (e.g. /tmp), or pass --dir"));
                }
            }
            let t = tempfile::Builder::new()
                .prefix("lifeboat-demo-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .map_err(io("temp dir"))?;
            if a.keep {
                t.keep()
            } else {
                let p = t.path().to_path_buf();
                _tmp = Some(t);
                p
            }
        }
    };
    if let Some(url) = &a.postgres {
        return crate::demo_postgres::run(
            &root,
            Some(url.clone()),
            a.pg_bin.clone(),
            a.messages,
            a.keep,
            progress,
            out,
        );
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
    say!(out, "lifeboat demo in {}", root.display());

    make_app(&d, a.messages)?;
    let before = snapshot_files(&d)?;
    say!(
        out,
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

    let app = format!(
        "[app.chat]\nsqlite = [{}]\nfiles = [{}]\nsecrets = [{}, {}]\nconfig = [{}]\nexclude = [\"*.tmp\"]\n",
        toml_str(&d.db),
        toml_str(&d.uploads),
        toml_str(&d.host_key),
        toml_str(&d.env),
        toml_str(&d.config)
    );
    let (setup, repo_dir) = demo_setup(&root, &app)?;
    say!(
        out,
        "2. created an encrypted repository at {}",
        repo_dir.display()
    );

    let (id, point, during) =
        backup_while_writing(&setup, "chat", &commits, &stop, writer, progress)?;
    let db_body = point.components[0]
        .sqlite
        .as_ref()
        .expect("sqlite component");
    say!(
        out,
        "3. backed up the app as point {} in {} while the writer committed {} transactions; the point holds {} messages, {} stored",
        id.short(),
        duration_ms(point.stats.duration_ms),
        during,
        db_body.row_counts.get("messages").copied().unwrap_or(0),
        size(point.stats.bytes_stored),
    );
    let second = crate::backup(
        &setup,
        &BackupRequest {
            targets: vec!["chat".into()],
            ..BackupRequest::default()
        },
        progress,
    )?;
    say!(
        out,
        "   a second backup (point {}) of the unchanged app added {}",
        second.id.short(),
        size(second.point.stats.bytes_stored)
    );

    destroy(&d)?;
    say!(out, "4. destroyed the app: deleted the database (+ -wal/-shm), the uploads and the SSH host key, scribbled over config.toml");

    let t = Instant::now();
    let restore = RestoreRequest {
        app: Some("chat".into()),
        point: Some(id.to_hex()),
        force: true,
        safety_point: false,
        ..RestoreRequest::default()
    };
    let restored = crate::restore_plan(&setup, &restore)?
        .run(true, progress, &mut |_| {})?
        .restored;
    say!(
        out,
        "5. restored point {} in place in {}:",
        id.short(),
        duration_ms(t.elapsed().as_millis() as u64)
    );
    for r in &restored {
        say!(
            out,
            "     {:<7} {}: {}",
            r.kind.as_str(),
            r.path,
            r.verified
        );
    }

    let after = snapshot_files(&d)?;
    compare_files(&before, &after)?;
    let key_mode = std::fs::metadata(&d.host_key)
        .map_err(io(d.host_key.display()))?
        .permissions()
        .mode()
        & 0o7777;
    say!(
        out,
        "6. verified: {} files byte-equal with their modes (SSH host key {:o}); database integrity_check ok, {} tables with the row counts the point recorded",
        before.len(),
        key_mode,
        db_body.row_counts.len()
    );

    check_everything(&setup, 7, progress, out)?;
    say!(
        out,
        "demo finished in {}: backup, disaster, restore and verification all succeeded",
        duration_ms(started.elapsed().as_millis() as u64)
    );
    if a.keep || a.dir.is_some() {
        say!(
            out,
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

/// A setup as an operator would write it: `root/lifeboat.toml` with a repository at
/// `root/repo` (password in `root/password`) and the app table `app`; the repository is
/// created. Returns the setup and the repository's path.
///
/// `lifeboat.toml` is written for the operator to look at, never read back: the setup holds
/// the config parsed from the text written, so nothing in the directory can change what runs.
pub(crate) fn demo_setup(root: &Path, app: &str) -> Result<(Setup, PathBuf)> {
    let dir = root.join("repo");
    let password = root.join("password");
    write_file(&password, DEMO_PASSWORD, 0o600)?;
    let path = root.join("lifeboat.toml");
    let text = format!(
        "[repository.demo]\npath = {}\npassword_file = {}\n\n{app}",
        toml_str(&dir),
        toml_str(&password)
    );
    write_file(&path, text.as_bytes(), 0o644)?;
    let config = Config::parse(&path, text)?;
    // A throwaway repository: nothing of it is worth remembering on this machine.
    let setup =
        Setup::with_config(config, None, PasswordSource::default()).without_remembering_points();
    crate::init(&setup, 64)?;
    Ok((setup, dir))
}

/// The demo's directory `--dir d`, made safe to work in (as root too): it is created here
/// (0700), or it is an empty directory of this user that group and others cannot write; and
/// no directory above it can be changed by another user (who could swap it for their own).
fn demo_dir(d: &Path) -> Result<PathBuf> {
    let hint = "pass a new path (lifeboat creates it, 0700) or an empty directory of yours that only you can write to, or leave out --dir for a private temporary directory";
    let refuse = |msg: String| Error::new(ErrorKind::Refused, msg).with_hint(hint);
    let d = std::path::absolute(d).map_err(io(d.display()))?;
    let (Some(parent), Some(name)) = (d.parent(), d.file_name()) else {
        return Err(refuse(format!(
            "demo directory {} is not a directory below another",
            d.display()
        )));
    };
    std::fs::create_dir_all(parent).map_err(io(parent.display()))?;
    let parent = std::fs::canonicalize(parent).map_err(io(parent.display()))?;
    let euid = effective_uid();
    if let Some(c) = check_ancestors(&parent, euid)? {
        return Err(refuse(format!(
            "refusing demo directory {}: {} (owner uid {}, mode {:o}) can be changed by another user, who could swap the demo's files",
            d.display(),
            c.dir.display(),
            c.uid,
            c.mode
        )));
    }
    let d = parent.join(name);
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => return Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(d.display(), e)),
    }
    let md = std::fs::symlink_metadata(&d).map_err(io(d.display()))?;
    let (uid, mode) = (md.uid(), md.mode() & 0o7777);
    if !md.is_dir() {
        return Err(refuse(format!(
            "refusing demo directory {}: it exists and is not a directory (a symlink is not followed)",
            d.display()
        )));
    }
    if uid != euid || mode & 0o022 != 0 {
        return Err(refuse(format!(
            "refusing demo directory {}: it exists with owner uid {uid}, mode {mode:o}; it must be yours (uid {euid}) and not writable by group or others",
            d.display()
        )));
    }
    if std::fs::read_dir(&d)
        .map_err(io(d.display()))?
        .next()
        .is_some()
    {
        return Err(refuse(format!(
            "refusing demo directory {}: it is not empty",
            d.display()
        )));
    }
    Ok(d)
}

/// Backs up `app` while the demo's writer thread keeps committing, then stops the writer.
/// Returns the point and how many of the writer's commits fell within the backup.
pub(crate) fn backup_while_writing(
    setup: &Setup,
    app: &str,
    commits: &AtomicU64,
    stop: &AtomicBool,
    writer: std::thread::JoinHandle<Result<()>>,
    progress: &dyn Progress,
) -> Result<(lifeboat_core::ObjectId, lifeboat_core::Point, u64)> {
    let backup = BackupRequest {
        targets: vec![app.into()],
        ..BackupRequest::default()
    };
    let c0 = commits.load(Ordering::Relaxed);
    let backed_up = crate::backup(setup, &backup, progress);
    let c1 = commits.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    writer
        .join()
        .map_err(|_| Error::new(ErrorKind::Other, "demo writer panicked"))??;
    let r = backed_up?;
    Ok((r.id, r.point, c1 - c0))
}

/// A path as a TOML string.
pub(crate) fn toml_str(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}

/// `check --read-data`; step `n` of the demo's printout.
pub(crate) fn check_everything(
    setup: &Setup,
    n: u32,
    progress: &dyn Progress,
    out: &mut dyn Write,
) -> Result<()> {
    let report = crate::check(setup, CheckOptions { read_data: true }, progress)?;
    if !report.problems.is_empty() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("demo: check found {:?}", report.problems),
        ));
    }
    say!(
        out,
        "{n}. check --read-data: {} points, {} packs, {} authenticated, no problems",
        report.points,
        report.packs,
        size(report.bytes_read)
    );
    Ok(())
}

/// Writes a new file with `mode`, creating its directory. The file must not exist (O_EXCL)
/// and a symlink in its place is not followed; the mode is set on the open file.
pub(crate) fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .map_err(io(p.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io(p.display()))?;
    f.write_all(data).map_err(io(p.display()))
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
    // Scribbled over in place (the restore must bring back its bytes and mode); a symlink in
    // its place is not followed.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&d.config)
        .and_then(|mut f| f.write_all(b"garbage"))
        .map_err(io(d.config.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's writes never follow a symlink or reuse a file someone put in their place.
    #[test]
    fn write_file_neither_follows_symlinks_nor_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = d.path().join("lifeboat.toml");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_file(&link, b"owned", 0o644).unwrap_err();
        write_file(&victim, b"owned", 0o644).unwrap_err();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let mode = std::fs::metadata(&victim).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        // A new file gets exactly its mode, whatever the umask.
        let new = d.path().join("sub/new");
        write_file(&new, b"x", 0o640).unwrap();
        let mode = std::fs::metadata(&new).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o640);
    }
}
