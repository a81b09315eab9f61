#![allow(dead_code)]
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub const PASSWORD: &str = "correct horse battery staple";

/// A temp dir with a repository path inside (or an S3 URL, see [`Env::s3`]).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    /// Extra environment for every `lifeboat` run.
    pub envs: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        Env {
            dir,
            repo,
            envs: Vec::new(),
        }
    }

    /// A repository in a fresh directory on the test sshd that `scripts/test.sh` starts, logged
    /// in with its client key and checked against its known_hosts. `None` only when the run
    /// opted out of services.
    pub fn sftp() -> Option<Env> {
        let host = service_var("LIFEBOAT_TEST_SFTP_HOST", "sshd")?;
        let var = |k: &str| std::env::var(k).unwrap();
        let mut env = Env::new();
        let dir = env.unique_name();
        env.repo = PathBuf::from(format!(
            "sftp://{}@{host}:{}{}/cli-{dir}",
            var("LIFEBOAT_TEST_SFTP_USER"),
            var("LIFEBOAT_TEST_SFTP_PORT"),
            var("LIFEBOAT_TEST_SFTP_HOME"),
        ));
        let cache = env.path("cache").display().to_string();
        for (k, v) in [
            ("LIFEBOAT_SFTP_IDENTITY_FILE", var("LIFEBOAT_TEST_SFTP_KEY")),
            (
                "LIFEBOAT_SFTP_KNOWN_HOSTS",
                var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS"),
            ),
            ("LIFEBOAT_SFTP_RETRIES", "1".into()),
            ("LIFEBOAT_CACHE_DIR", cache),
        ] {
            env.envs.push((k.into(), v));
        }
        Some(env)
    }

    /// A repository under a fresh prefix of the test bucket of the S3 server that
    /// `scripts/test.sh` starts (moto), with its own cache directory. `None` only when the run
    /// opted out of services (`LIFEBOAT_TEST_NO_SERVICES=1`); otherwise a missing server fails
    /// the test.
    pub fn s3() -> Option<Env> {
        let endpoint = service_var("LIFEBOAT_TEST_S3_ENDPOINT", "moto")?;
        let bucket = std::env::var("LIFEBOAT_TEST_S3_BUCKET").unwrap();
        let mut env = Env::new();
        let prefix = env.unique_name();
        env.repo = PathBuf::from(format!("s3://{bucket}/cli-{prefix}"));
        let cache = env.path("cache").display().to_string();
        for (k, v) in [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("LIFEBOAT_S3_RETRIES", "1"),
            ("LIFEBOAT_CACHE_DIR", cache.as_str()),
        ] {
            env.envs.push((k.into(), v.into()));
        }
        Some(env)
    }

    /// A name unique to this test (from its temp dir), for remote prefixes and directories.
    fn unique_name(&self) -> String {
        self.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    }

    /// Runs `lifeboat ARGS...` and asserts success; returns stdout and stderr.
    pub fn ok(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> (String, String) {
        let o = self
            .lb()
            .args(args.iter().map(|a| a.as_ref()))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        (stdout(&o), stderr(&o))
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `lifeboat --repo <repo>` with the password in the environment and no config lookup.
    pub fn lb(&self) -> Command {
        Command::from_std(self.lb_std())
    }

    /// [`Env::lb`] as a plain `std::process::Command`, for runs that must be spawned (and
    /// killed) rather than waited for.
    pub fn lb_std(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"));
        c.env("LIFEBOAT_PASSWORD", PASSWORD)
            .env_remove("LIFEBOAT_CONFIG")
            .env_remove("LIFEBOAT_PASSWORD_FILE")
            .env_remove("LIFEBOAT_PASSWORD_COMMAND")
            .env("LIFEBOAT_STATE_DIR", self.path(".lifeboat-state"))
            .current_dir(self.dir.path())
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .arg("--repo")
            .arg(&self.repo);
        c
    }

    /// Creates the repository (cheap KDF so tests stay fast).
    pub fn init(&self) {
        self.lb()
            .args(["init", "--kdf-memory-mib", "8"])
            .assert()
            .success();
    }

    /// Total bytes of the repository directory.
    pub fn repo_size(&self) -> u64 {
        dir_size(&self.repo)
    }

    /// Newest point id (full hex) via `points --json`.
    pub fn points(&self) -> Vec<serde_json::Value> {
        let out = self.lb().args(["points", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// All pack files.
    pub fn packs(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for d in std::fs::read_dir(self.repo.join("packs")).unwrap() {
            for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
                v.push(f.unwrap().path());
            }
        }
        v.sort();
        v
    }
}

pub fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let md = e.metadata().unwrap();
            n += if md.is_dir() {
                dir_size(&e.path())
            } else {
                md.len()
            };
        }
    }
    n
}

/// A WAL-mode chat-like database with `rows` messages of ~`body` bytes.
pub fn make_db(path: &Path, rows: u32, body: usize) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE messages(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
         INSERT INTO counter VALUES (1, 0);
         CREATE TABLE schema_migrations(version TEXT PRIMARY KEY);
         INSERT INTO schema_migrations VALUES ('20260101'), ('20260202');",
    )
    .unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO messages(body) VALUES (?1)",
            (body_of(i as i64, body),),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Deterministic, compressible-but-not-trivial message body.
pub fn body_of(i: i64, len: usize) -> String {
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    let mut s = format!("msg {i}:");
    let mut k = i as usize;
    while s.len() < len {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        s.push(' ');
        s.push_str(words[(k >> 33) % words.len()]);
    }
    s.truncate(len);
    s
}

pub fn count(db: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

pub fn integrity(db: &Path) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, asserts it exits with `code` and that stderr mentions `needle`.
pub fn fails(cmd: &mut assert_cmd::Command, code: i32, needle: &str) -> std::process::Output {
    let o = cmd.output().unwrap();
    assert_eq!(o.status.code(), Some(code), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains(needle),
        "stderr lacks {needle:?}: {}",
        stderr(&o)
    );
    o
}

/// `lifeboat` driven by config file `cfg` (no `--repo`), run in `dir`, with the password in
/// the environment.
pub fn lb_config(cfg: &Path, dir: &Path) -> Command {
    let mut c = Command::cargo_bin("lifeboat").unwrap();
    c.env("LIFEBOAT_PASSWORD", PASSWORD)
        .env("LIFEBOAT_CONFIG", cfg)
        .env("LIFEBOAT_STATE_DIR", dir.join(".lifeboat-state"))
        .current_dir(dir);
    c
}

/// The biggest pack of a local repository: the one holding the database pages.
pub fn largest_pack(env: &Env) -> PathBuf {
    env.packs()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap()
}

/// The value of a variable that `scripts/test.sh` sets when it starts `service`; `None` only
/// when the run opted out (`LIFEBOAT_TEST_NO_SERVICES=1`). A missing service fails the test: it
/// must never pass because the server was absent.
pub fn service_var(name: &str, service: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) => Some(v),
        Err(_) if std::env::var_os("LIFEBOAT_TEST_NO_SERVICES").is_some() => None,
        Err(_) => panic!("{name} is not set: run the suite with `bash scripts/test.sh` (it starts {service}), or set LIFEBOAT_TEST_NO_SERVICES=1 to skip"),
    }
}

/// Writes `data` to `p` (creating its directory) with `mode`.
pub fn write(p: &Path, data: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether the tests run as root (owners can then be set and checked).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The text of a log file a spawned `lifeboat run` writes (its stderr).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// How many lines of `log` contain every one of `needles`.
pub fn count_lines(log: &str, needles: &[&str]) -> usize {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

/// Runs `lifeboat -c lifeboat.toml ARGS` in `env`'s directory under `/usr/bin/time`, asserts
/// it succeeded and returns its peak resident memory in KiB.
pub fn max_rss_kib(env: &Env, args: &[&dyn AsRef<std::ffi::OsStr>]) -> u64 {
    let o = std::process::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("maxrss_kib=%M")
        .arg(assert_cmd::cargo::cargo_bin("lifeboat"))
        .env("LIFEBOAT_PASSWORD", PASSWORD)
        .env_remove("LIFEBOAT_CONFIG")
        .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
        .current_dir(env.dir.path())
        .args(["-c", "lifeboat.toml"])
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    err.lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
