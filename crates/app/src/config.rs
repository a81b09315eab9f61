//! `lifeboat.toml`: repositories and apps. Errors name the file, the line and the key.
//!
//! ```toml
//! [repository.local]
//! path = "/var/backups/lifeboat"
//! password_file = "/etc/lifeboat/password"   # or password_command = "pass show lifeboat"
//!
//! [repository.offsite]
//! url = "s3://my-bucket/chat"                # an S3-compatible store
//! endpoint = "https://s3.eu-central-003.backblazeb2.com"   # omit for AWS
//! region = "eu-central-003"
//! access_key_id = "003abc..."                # or AWS_ACCESS_KEY_ID
//! secret_access_key_file = "/etc/lifeboat/s3-secret"       # or AWS_SECRET_ACCESS_KEY
//! password_file = "/etc/lifeboat/password"
//!
//! [repository.nas]
//! url = "sftp://lifeboat@nas.lan:22/volume1/backups/chat"
//! identity_file = "/etc/lifeboat/id_ed25519"  # else ssh-agent, else ~/.ssh/id_*
//! known_hosts = "/etc/lifeboat/known_hosts"   # else ~/.ssh/known_hosts
//! # host_key_fingerprint = "SHA256:..."       # pin instead of known_hosts
//! password_file = "/etc/lifeboat/password"
//!
//! [app.chat]
//! repository = "local"                       # optional when there is one repository
//! copy_to = ["offsite", "nas"]               # replicas `lifeboat copy chat` fills
//! sqlite  = ["/srv/chat/chat.db"]
//! files   = ["/srv/chat/uploads"]
//! secrets = ["/srv/chat/ssh_host_key", "/srv/chat/.env"]
//! config  = ["/srv/chat/config.toml"]
//! exclude = ["*.tmp", "cache/**"]
//!
//! [app.chat.hooks]                           # see hooks.rs; from this file only, never a point
//! stop  = "systemctl stop chat"              # a string runs through /bin/sh -c
//! start = ["systemctl", "start", "chat"]     # an array is the argv
//! # before_backup = "..."  after_backup = "..."   (a cold backup)
//! timeout = "60s"                            # per hook (default 60 s)
//!
//! [app.chat.checks]                          # see checks.rs; after an in-place restore
//! sql = ["SELECT count(*) FROM users"]       # non-zero first value; the app's one SQLite db
//! health_url = "http://127.0.0.1:8080/health"   # polled after `start` until 2xx
//! health_timeout = "60s"
//!
//! # Scheduled jobs of `lifeboat run` (see schedule.rs):
//! schedule = "hourly"                        # backups; also "every 15m", "0 3 * * *"
//! copy_schedule = "daily"                    # copy to copy_to
//! forget_schedule = "daily"                  # forget by [app.chat.keep], then prune
//! drill = "weekly"                           # restore into a scratch place and check it all
//! random_delay = "5m"                        # start up to 5 min after the slot
//! # timezone = "Europe/Berlin"                # of cron fields (default: [daemon] or system)
//! continuous = "1s"                          # lifeboat run captures the SQLite dbs' changes
//! # continuous_keep = "24h"                   # deltas kept this long (forget drops older)
//! # continuous_fine = "1h"                    # every interval's delta this long, then one a minute
//! # continuous_rebase = "1h"                  # a new point of the whole app at least this often
//!
//! [app.chatalot]
//! files   = ["/srv/chatalot/uploads"]
//! secrets = ["/srv/chatalot/jwt_private.pem", "/srv/chatalot/.env"]
//! [[app.chatalot.postgres]]                  # one table per server; repeatable
//! url = "postgresql://chatalot@127.0.0.1:5432/chatalot"   # or the PG* environment
//! # databases = ["chatalot", "chatalot_jobs"] # several databases on that server
//! # password_file = "/etc/lifeboat/pg-password"            # else PGPASSWORD / ~/.pgpass
//! # command = ["docker", "exec", "-i", "chatalot-db"]     # run pg_dump etc. in a container
//! # bin_dir = "/usr/lib/postgresql/16/bin"   # client programs (else PATH)
//! # globals = true                           # roles too (pg_dumpall --globals-only)
//! # schema_only = false
//! # terminate_connections = false            # in-place restore: end sessions, or refuse
//!
//! [daemon]                                   # `lifeboat run`; every key optional
//! max_jobs = 2                               # jobs of different apps at once
//! grace = "5m"                               # SIGTERM: how long a running job may finish
//! retry = "1m"                               # first retry of a failed job; doubles up to 1 h
//! # state_file = "/var/lib/lifeboat/daemon-state.json"
//! # timezone = "UTC"                         # default of the apps' schedules (else system)
//! ```
//! Relative paths are relative to the directory of the config file.
//!
//! A config can run commands (`password_command`, a PostgreSQL `command`), so when lifeboat
//! runs as root it refuses a config file that is not owned by root or that group or others may
//! write ([`Config::load`]).
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use lifeboat_core::{ComponentKind, Error, ErrorKind, Policy, Result};
use lifeboat_sources::postgres::{url_database, PgSource};
use lifeboat_sources::{AppSpec, SourceSpec};
use serde::Deserialize;

use crate::checks::ChecksConfig;
use crate::hooks::HooksConfig;
use crate::password::PasswordSource;
use crate::schedule::Schedule;
use crate::trust::{check_ancestors, effective_uid};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named repositories.
    #[serde(default)]
    pub repository: BTreeMap<String, RepositoryConfig>,
    /// Named apps.
    #[serde(default)]
    pub app: BTreeMap<String, AppConfig>,
    /// Settings of `lifeboat run`.
    #[serde(default)]
    pub daemon: DaemonConfig,
    /// Heartbeat, webhooks and the anomaly rules (`[alerts]`).
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    #[serde(skip)]
    file: PathBuf,
    #[serde(skip)]
    text: String,
}

/// One repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Where: a directory, or `s3://BUCKET/PREFIX` (`url` is accepted as another name).
    #[serde(alias = "url")]
    pub path: String,
    /// S3: endpoint URL of a non-AWS store (MinIO, Garage, R2, B2).
    pub endpoint: Option<String>,
    /// S3: region (`us-east-1` when unset).
    pub region: Option<String>,
    /// S3: path-style addressing (default: on when `endpoint` is set).
    pub path_style: Option<bool>,
    /// S3: access key id (else `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// S3: file holding the secret access key (else `AWS_SECRET_ACCESS_KEY`); the secret
    /// itself never goes in this file.
    pub secret_access_key_file: Option<PathBuf>,
    /// SFTP: private key file (else ssh-agent, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa).
    pub identity_file: Option<PathBuf>,
    /// SFTP: known_hosts file (else ~/.ssh/known_hosts).
    pub known_hosts: Option<PathBuf>,
    /// SFTP: accept exactly the host key with this fingerprint (`SHA256:...`).
    pub host_key_fingerprint: Option<String>,
    /// File with the password (first line).
    pub password_file: Option<String>,
    /// Command printing the password.
    pub password_command: Option<String>,
}

/// One app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Repository name (optional when only one is defined).
    pub repository: Option<String>,
    /// Replicas that `lifeboat copy APP` keeps up to date (names of [repository.NAME]).
    #[serde(default)]
    pub copy_to: Vec<String>,
    /// SQLite databases.
    #[serde(default)]
    pub sqlite: Vec<PathBuf>,
    /// Directory trees.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Secret files.
    #[serde(default)]
    pub secrets: Vec<PathBuf>,
    /// Config files.
    #[serde(default)]
    pub config: Vec<PathBuf>,
    /// Exclude globs for `files`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// PostgreSQL servers and their databases.
    #[serde(default)]
    pub postgres: Vec<PostgresConfig>,
    /// Retention policy of this app's points (every destination): `[app.NAME.keep]`, read
    /// straight into core's [`Policy`].
    pub keep: Option<Policy>,
    /// Retention per destination (`[app.X.keep_in.offsite]`), replacing `keep` there.
    #[serde(default)]
    pub keep_in: BTreeMap<String, Policy>,
    /// Commands run around in-place restores and cold backups (`[app.NAME.hooks]`).
    #[serde(default)]
    pub hooks: HooksConfig,
    /// Post-restore checks: smoke queries, health URL (`[app.NAME.checks]`).
    #[serde(default)]
    pub checks: ChecksConfig,
    /// When `lifeboat run` backs the app up.
    pub schedule: Option<Schedule>,
    /// When `lifeboat run` copies the app's repository to its `copy_to` replicas.
    pub copy_schedule: Option<Schedule>,
    /// When `lifeboat run` forgets points by the app's `[keep]` policies and prunes.
    pub forget_schedule: Option<Schedule>,
    /// When `lifeboat run` drills the app: its newest point, and every fourth drill a random
    /// older one (old points rot too), restored into a scratch place and checked
    /// (`lifeboat drill`). Also spelled `drill`.
    #[serde(alias = "drill")]
    pub drill_schedule: Option<Schedule>,
    /// Each scheduled run starts up to this long after its slot (spreads many hosts' runs).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub random_delay: Option<std::time::Duration>,
    /// Time zone of the schedules (IANA name; default `[daemon] timezone`, else the system's).
    pub timezone: Option<String>,
    /// Continuous capture of the app's SQLite databases by `lifeboat run`: `true` (every
    /// second) or an interval (`"1s"`, `"10s"`). Off when absent or `false`.
    #[serde(default)]
    pub continuous: Option<Continuous>,
    /// How long continuous deltas are kept (default 24 h); older chains are dropped by
    /// `forget`, the points they started from stay under `keep`.
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub continuous_keep: Option<std::time::Duration>,
    /// How long every interval's delta is kept (default 1 h); after that one a minute (60
    /// intervals) is kept, up to `continuous_keep`. Thinned by `forget`.
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub continuous_fine: Option<std::time::Duration>,
    /// How often continuous capture starts a new chain from a new point of the whole app
    /// (default 1 h; a scheduled backup in between starts one too).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub continuous_rebase: Option<std::time::Duration>,
    /// This app's heartbeat and anomaly rules (`[app.NAME.alerts]`, over `[alerts]`).
    #[serde(default)]
    pub alerts: crate::alerts::AppAlerts,
}

/// `continuous = true | false | "1s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continuous {
    /// Time between two polls of the WAL (at most one delta per interval).
    pub interval: std::time::Duration,
}

impl Continuous {
    /// The default interval (`continuous = true`).
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
}

impl<'de> Deserialize<'de> for Continuous {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            On(bool),
            Every(String),
        }
        let interval = match Raw::deserialize(d)? {
            Raw::On(true) => Continuous::DEFAULT_INTERVAL,
            Raw::On(false) => std::time::Duration::ZERO,
            Raw::Every(s) => {
                let sd: jiff::SignedDuration = s.parse().map_err(|e| {
                    serde::de::Error::custom(format!(
                        "continuous = {s:?} is not an interval ({e}); write true or e.g. \"1s\""
                    ))
                })?;
                let i = std::time::Duration::try_from(sd).unwrap_or_default();
                if i < std::time::Duration::from_millis(100)
                    || i > std::time::Duration::from_secs(3600)
                {
                    return Err(serde::de::Error::custom(format!(
                        "continuous = {s:?}: the interval must be between 100ms and 1h"
                    )));
                }
                i
            }
        };
        Ok(Continuous { interval })
    }
}

/// `[daemon]`: how `lifeboat run` runs the scheduled jobs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Jobs of different apps running at once (default 2; one job per app at any time).
    pub max_jobs: Option<usize>,
    /// After SIGTERM, how long running jobs may go on before they are stopped (default 5 min).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub grace: Option<std::time::Duration>,
    /// Delay before the first retry of a failed job; it doubles with each failure up to an
    /// hour (default 1 min).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub retry: Option<std::time::Duration>,
    /// Where the daemon keeps what ran when (default: the state directory's
    /// `daemon-state.json`).
    pub state_file: Option<PathBuf>,
    /// Default time zone of every app's schedules (IANA name; else the system's).
    pub timezone: Option<String>,
    /// Where scheduled drills make their scratch copies (default: `$TMPDIR`, else `/tmp`).
    /// It needs room for the largest point; a RAM-backed `/tmp` holds it in memory.
    pub scratch_dir: Option<PathBuf>,
    /// Where `lifeboat run` serves `/metrics` (Prometheus): `"127.0.0.1:9186"` by default;
    /// `"off"` serves nothing. An address other than loopback needs `metrics_token_file`.
    pub listen: Option<String>,
    /// A file holding the bearer token every request must carry (`Authorization: Bearer
    /// TOKEN`; Prometheus's `authorization.credentials_file`). Required off loopback.
    pub metrics_token_file: Option<PathBuf>,
}

/// `[[app.NAME.postgres]]`: databases on one PostgreSQL server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq URL or `key=value` string (else the `PG*` environment).
    pub url: Option<String>,
    /// The database (else the URL's, else `PGDATABASE`).
    pub database: Option<String>,
    /// Several databases on this server.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Command prefix for the client programs, e.g. `["docker", "exec", "-i", "db"]`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Directory of pg_dump, pg_restore, psql.
    pub bin_dir: Option<PathBuf>,
    /// File with the password (first line).
    pub password_file: Option<PathBuf>,
    /// Dump roles and tablespaces too.
    #[serde(default)]
    pub globals: bool,
    /// Schema only, no data.
    #[serde(default)]
    pub schema_only: bool,
    /// In-place restore ends other sessions instead of refusing.
    #[serde(default)]
    pub terminate_connections: bool,
}

impl PostgresConfig {
    /// One source per database.
    pub fn sources(&self) -> std::result::Result<Vec<PgSource>, String> {
        let mut dbs = self.databases.clone();
        dbs.extend(self.database.clone());
        if dbs.is_empty() {
            let from_url = self.url.as_deref().and_then(url_database);
            let from_env = std::env::var("PGDATABASE").ok().filter(|s| !s.is_empty());
            match from_url.or(from_env) {
                Some(d) => dbs.push(d),
                None => {
                    return Err(
                        "names no database: set `database`, `databases`, a URL ending in /NAME, or PGDATABASE"
                            .into(),
                    )
                }
            }
        }
        Ok(dbs
            .into_iter()
            .map(|database| PgSource {
                url: self.url.clone(),
                database,
                wrapper: self.command.clone(),
                bin_dir: self.bin_dir.clone(),
                password_file: self.password_file.clone(),
                globals: self.globals,
                schema_only: self.schema_only,
                terminate_connections: self.terminate_connections,
            })
            .collect())
    }
}

impl Config {
    /// Reads and validates a config file. The file is opened once and its owner and mode are
    /// checked on the open file: running as root, a file that is not owned by root or that
    /// group or others may write is refused (its `password_command` would run as root).
    ///
    /// As root, the file is also found where it really is (symlinks resolved) and opened
    /// there, no directory above it may be changeable by another user (who could swap the
    /// file, or a symlink to it, for theirs), and its relative paths are relative to that
    /// real directory (a symlink in a directory a user controls cannot point them there).
    pub fn load(path: &Path) -> Result<Config> {
        let read_err = |e: std::io::Error| {
            Error::io(format!("read config {}", path.display()), e).with_kind(ErrorKind::Usage)
        };
        let euid = effective_uid();
        let real;
        let path = if euid == 0 {
            real = std::fs::canonicalize(path).map_err(read_err)?;
            if let Some(c) = real
                .parent()
                .map(|d| check_ancestors(d, 0))
                .transpose()?
                .flatten()
            {
                let p = real.display();
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "refusing config {p}: {} (owner uid {}, mode {:o}) can be changed by another user, who could swap the config (its password_command runs as root)",
                        c.dir.display(),
                        c.uid,
                        c.mode
                    ),
                )
                .with_hint("keep lifeboat.toml in a directory only root can change, e.g. /etc/lifeboat, and pass it with -c"));
            }
            real.as_path()
        } else {
            path
        };
        let mut file = std::fs::File::open(path).map_err(read_err)?;
        let md = file.metadata().map_err(read_err)?;
        refuse_unsafe_owner(path, &md, euid)?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_err)?;
        Config::parse(path, text)
    }

    /// Validates the text of a config file without reading anything: `path` names the file in
    /// errors, and relative paths are relative to its directory. For callers that wrote the
    /// text themselves (the demo), so nothing on disk can be swapped in between.
    pub fn parse(path: &Path, text: String) -> Result<Config> {
        let mut cfg: Config = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            let at = line.map_or(String::new(), |l| format!(" line {l}"));
            let src = line
                .and_then(|l| text.lines().nth(l - 1))
                .map_or(String::new(), |s| format!(" (in `{}`)", s.trim()));
            // A retention table's errors name the table, as its validation errors do.
            let table = line
                .and_then(|l| table_at(&text, l))
                .filter(|t| {
                    t.ends_with(".keep")
                        || t.contains(".keep_in.")
                        || t.ends_with(".hooks")
                        || t.contains(".checks")
                })
                .map_or(String::new(), |t| format!("{t}: "));
            Error::new(
                ErrorKind::Usage,
                format!("{}{at}: {table}{}{src}", path.display(), e.message().trim()),
            )
        })?;
        cfg.file = path.to_path_buf();
        cfg.text = text;
        // `-c lifeboat.toml` has the parent "": paths are relative to the absolute directory.
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for r in cfg.repository.values_mut() {
            if !r.path.contains("://") {
                let mut p = PathBuf::from(&r.path);
                abs(&mut p);
                r.path = p.display().to_string();
            }
            for f in [
                &mut r.secret_access_key_file,
                &mut r.identity_file,
                &mut r.known_hosts,
            ]
            .into_iter()
            .flatten()
            {
                abs(f);
            }
        }
        for a in cfg.app.values_mut() {
            for pg in &mut a.postgres {
                for f in [&mut pg.bin_dir, &mut pg.password_file]
                    .into_iter()
                    .flatten()
                {
                    abs(f);
                }
            }
            a.checks.absolutize(&base);
            a.hooks.dir = Some(base.clone());
            a.sqlite
                .iter_mut()
                .chain(&mut a.files)
                .chain(&mut a.secrets)
                .chain(&mut a.config)
                .for_each(abs);
        }
        // A control character (a newline above all) in a name or a path is a mistake, and
        // would let the value start a line of its own in a generated systemd unit or
        // crontab (`lifeboat install`), or in a log.
        let control = |s: &str| s.chars().any(char::is_control);
        for (name, r) in &cfg.repository {
            if control(name) || control(&r.path) {
                return Err(cfg.key_error(
                    &format!("repository.{}", name.escape_debug()),
                    "path",
                    "a control character (such as a newline) in a repository name or path",
                ));
            }
        }
        if cfg
            .daemon
            .state_file
            .as_ref()
            .is_some_and(|p| control(&p.to_string_lossy()))
        {
            return Err(cfg.key_error(
                "daemon",
                "state_file",
                "a control character (such as a newline) in the path",
            ));
        }
        for (name, a) in &cfg.app {
            let paths = a
                .sqlite
                .iter()
                .chain(&a.files)
                .chain(&a.secrets)
                .chain(&a.config);
            if control(name) || paths.clone().any(|p| control(&p.to_string_lossy())) {
                return Err(cfg.key_error(
                    &format!("app.{}", name.escape_debug()),
                    "",
                    "a control character (such as a newline) in the app's name or one of its paths",
                ));
            }
            for r in a.repository.iter().chain(&a.copy_to) {
                if !cfg.repository.contains_key(r) {
                    return Err(cfg.key_error(
                        &format!("app.{name}"),
                        if a.repository.as_ref() == Some(r) {
                            "repository"
                        } else {
                            "copy_to"
                        },
                        &format!("no repository named {r:?} is defined"),
                    ));
                }
            }
            if a.sqlite.is_empty()
                && a.files.is_empty()
                && a.secrets.is_empty()
                && a.config.is_empty()
                && a.postgres.is_empty()
            {
                return Err(cfg.key_error(
                    &format!("app.{name}"),
                    "",
                    "the app lists no sources (sqlite, postgres, files, secrets, config)",
                ));
            }
            for (dest, k) in a
                .keep
                .iter()
                .map(|k| ("keep".to_string(), k))
                .chain(a.keep_in.iter().map(|(d, k)| (format!("keep_in.{d}"), k)))
            {
                if let Err(e) = k.validate() {
                    return Err(cfg.key_error(&format!("app.{name}.{dest}"), "", e.message()));
                }
            }
            for d in a.keep_in.keys() {
                if !cfg.repository.contains_key(d) {
                    return Err(cfg.key_error(
                        &format!("app.{name}.keep_in.{d}"),
                        "",
                        &format!("no repository named {d:?} is defined"),
                    ));
                }
            }
            if a.copy_schedule.is_some() && a.copy_to.is_empty() {
                return Err(cfg.key_error(
                    &format!("app.{name}"),
                    "copy_schedule",
                    "the app has no copy_to replicas to copy to",
                ));
            }
            if a.forget_schedule.is_some() && a.keep.is_none() && a.keep_in.is_empty() {
                return Err(cfg.key_error(
                    &format!("app.{name}"),
                    "forget_schedule",
                    "the app has no [keep] policy to forget by",
                ));
            }
            if let Some(tz) = &a.timezone {
                if let Err(e) = jiff::tz::TimeZone::get(tz) {
                    return Err(cfg.key_error(
                        &format!("app.{name}"),
                        "timezone",
                        &format!("{tz:?} is not a known time zone ({e})"),
                    ));
                }
            }
            if let Some((key, msg)) = a.hooks.problem() {
                return Err(cfg.key_error(&format!("app.{name}.hooks"), key, &msg));
            }
            if let Some((key, msg)) = a.checks.problem(&a.sqlite) {
                return Err(cfg.key_error(&format!("app.{name}.checks"), key, &msg));
            }
            for pg in &a.postgres {
                if let Err(msg) = pg.sources() {
                    return Err(cfg.key_error(&format!("app.{name}.postgres"), "", &msg));
                }
                if pg.command.first().is_some_and(|c| c.is_empty()) {
                    return Err(cfg.key_error(
                        &format!("app.{name}.postgres"),
                        "command",
                        "the wrapper command is empty",
                    ));
                }
            }
        }
        if let Some(tz) = &cfg.daemon.timezone {
            if let Err(e) = jiff::tz::TimeZone::get(tz) {
                return Err(cfg.key_error(
                    "daemon",
                    "timezone",
                    &format!("{tz:?} is not a known time zone ({e})"),
                ));
            }
        }
        if cfg
            .daemon
            .retry
            .is_some_and(|r| r < std::time::Duration::from_secs(1))
        {
            return Err(cfg.key_error(
                "daemon",
                "retry",
                "must be at least 1s (a job failing at once would run back to back)",
            ));
        }
        if cfg.daemon.max_jobs == Some(0) {
            return Err(cfg.key_error("daemon", "max_jobs", "must be at least 1"));
        }
        if let Some(f) = &mut cfg.daemon.state_file {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
        Ok(cfg)
    }

    /// The path of the file this config was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    fn key_error(&self, table: &str, key: &str, msg: &str) -> Error {
        let header = format!("[{table}]");
        let line = self
            .text
            .lines()
            .position(|l| l.trim() == header)
            .map(|i| i + 1);
        let line = line.map_or(String::new(), |l| format!(" line {l}"));
        let key = if key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{key}")
        };
        Error::new(
            ErrorKind::Usage,
            format!("{}{line}: {key}: {msg}", self.file.display()),
        )
    }

    /// The text the config was parsed from.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// The app spec for `name`.
    pub fn app_spec(&self, name: &str) -> Result<AppSpec> {
        let a = self.app.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Usage,
                format!("no app named {name:?} in {}", self.file.display()),
            )
            .with_hint(format!(
                "defined apps: {}",
                self.app.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let mut sources = Vec::new();
        // Databases first: they are what must match the files' moment most closely.
        sources.extend(
            a.sqlite
                .iter()
                .map(|p| SourceSpec::path(ComponentKind::Sqlite, p.clone())),
        );
        sources.extend(self.pg_sources(name).into_iter().map(SourceSpec::postgres));
        let mut add = |kind, paths: &[PathBuf]| {
            sources.extend(paths.iter().map(|p| SourceSpec::path(kind, p.clone())));
        };
        add(ComponentKind::Files, &a.files);
        add(ComponentKind::Secret, &a.secrets);
        add(ComponentKind::Config, &a.config);
        Ok(AppSpec {
            definition: crate::definition::of_app(self, name),
            previous: None,
            name: name.to_string(),
            sources,
            excludes: a.exclude.clone(),
            time: None,
        })
    }

    /// The repository an app uses (or the only one).
    pub fn repository_for(&self, app: Option<&str>) -> Result<(String, RepositoryConfig)> {
        let named = app
            .and_then(|a| self.app.get(a))
            .and_then(|a| a.repository.clone());
        if let Some(n) = named {
            return Ok((n.clone(), self.repository[&n].clone()));
        }
        match self.repository.len() {
            1 => {
                let (n, r) = self.repository.iter().next().expect("one");
                Ok((n.clone(), r.clone()))
            }
            0 => Err(Error::new(
                ErrorKind::Usage,
                format!("{} defines no [repository.NAME]", self.file.display()),
            )
            .with_hint("add a repository, or pass --repo PATH")),
            _ => Err(Error::new(
                ErrorKind::Usage,
                format!(
                    "{} defines several repositories and none was chosen",
                    self.file.display()
                ),
            )
            .with_hint("set `repository = \"NAME\"` in the app, or pass --repo PATH")),
        }
    }

    /// The app's PostgreSQL databases (empty for an unknown app).
    pub fn pg_sources(&self, app: &str) -> Vec<PgSource> {
        self.app
            .get(app)
            .map(|a| {
                a.postgres
                    .iter()
                    .flat_map(|p| p.sources().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The retention settings of `app` in repository `repo` (a `[repository.NAME]` name):
    /// `keep_in.NAME` if set, else `keep`.
    pub fn keep_for(&self, app: &str, repo: Option<&str>) -> Option<&Policy> {
        let a = self.app.get(app)?;
        repo.and_then(|r| a.keep_in.get(r)).or(a.keep.as_ref())
    }

    /// The name of the `[repository.NAME]` whose location is `location`.
    pub fn repository_name(&self, location: &str) -> Option<&str> {
        self.repository
            .iter()
            .find(|(n, r)| r.path == location || n.as_str() == location)
            .map(|(n, _)| n.as_str())
    }

    /// Whether an app of this name exists.
    pub fn has_app(&self, name: &str) -> bool {
        self.app.contains_key(name)
    }

    /// The only app, if exactly one is defined.
    pub fn only_app(&self) -> Option<&str> {
        (self.app.len() == 1).then(|| self.app.keys().next().expect("one").as_str())
    }
}

/// Refuses, when `euid` is root, a config file (`md`: the open file's metadata) that is not
/// owned by root or is writable by group or others: whoever can write it chooses the commands
/// root runs (`password_command`). Other users are not affected.
fn refuse_unsafe_owner(path: &Path, md: &std::fs::Metadata, euid: u32) -> Result<()> {
    let (uid, mode) = (md.uid(), md.mode() & 0o7777);
    if euid != 0 || (uid == 0 && mode & 0o022 == 0) {
        return Ok(());
    }
    let why = if uid != 0 {
        format!("it is owned by uid {uid}, not root")
    } else {
        "it is writable by group or others".to_string()
    };
    let p = path.display();
    Err(Error::new(
        ErrorKind::Refused,
        format!(
            "refusing config {p} (owner uid {uid}, mode {mode:o}): {why}; running as root, a config's password_command runs as root, so the file must be root's and not writable by others"
        ),
    )
    .with_hint(format!(
        "check its contents, then `chown root {p}` and `chmod go-w {p}`"
    )))
}

/// The `[table]` header in force at 1-based `line` of `text`, without brackets.
fn table_at(text: &str, line: usize) -> Option<String> {
    text.lines()
        .take(line)
        .map(str::trim)
        .filter(|l| l.starts_with('[') && !l.starts_with("[["))
        .last()
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
}

impl RepositoryConfig {
    /// Password settings of this repository.
    pub fn password(&self) -> PasswordSource {
        PasswordSource {
            command: self.password_command.clone(),
            file: self.password_file.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn load(text: &str) -> Result<Config> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lifeboat.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p)
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = load("[repository.r]\npath = \"/x\"\n\n[app.chat]\nsqlite = 5\n").unwrap_err();
        let m = e.to_string();
        assert!(m.contains("lifeboat.toml line 5"), "{m}");
        assert!(m.contains("sqlite = 5"), "{m}");

        let e = load("[repository.r]\npath = \"/x\"\nbogus = 1\n").unwrap_err();
        assert!(e.to_string().contains("line 3"), "{e}");
        assert!(e.to_string().contains("bogus"), "{e}");

        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nrepository = \"nope\"\nsqlite = [\"a.db\"]\n").unwrap_err();
        assert!(e.to_string().contains("line 3: app.chat.repository"), "{e}");
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lifeboat.toml");
        std::fs::write(
            &p,
            "[repository.r]\npath = \"repo\"\n[app.chat]\nsqlite = [\"chat.db\"]\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(
            c.repository["r"].path,
            d.path().join("repo").display().to_string()
        );
        let spec = c.app_spec("chat").unwrap();
        assert_eq!(spec.sources[0].path, d.path().join("chat.db"));
        assert_eq!(c.repository_for(Some("chat")).unwrap().0, "r");
    }

    #[test]
    fn retention_per_app_and_per_destination() {
        let c = load(
            "[repository.local]\npath = \"/l\"\n[repository.offsite]\npath = \"s3://b/p\"\n\
             [app.chat]\nsqlite = [\"/c.db\"]\n\
             [app.chat.keep]\ndaily = 7\nweekly = 4\ntags = [\"pinned\"]\ntagged = { pre-migration = 2 }\ntimezone = \"Europe/Berlin\"\n\
             [app.chat.keep_in.offsite]\nmonthly = 24\nwithin = \"30d\"\n",
        )
        .unwrap();
        let p = c.keep_for("chat", Some("local")).unwrap();
        let tz = p.time_zone().unwrap();
        assert_eq!((p.daily, p.weekly, p.monthly), (7, 4, 0));
        assert_eq!(p.tagged["pre-migration"], 2);
        assert_eq!(tz.iana_name(), Some("Europe/Berlin"));
        let p = c.keep_for("chat", Some("offsite")).unwrap();
        assert_eq!((p.daily, p.monthly), (0, 24));
        assert!(p.within.is_some());
        assert_eq!(c.repository_name("s3://b/p"), Some("offsite"));
        // Errors name the table.
        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nsqlite = [\"/c.db\"]\n[app.chat.keep]\nwithin = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("app.chat.keep"), "{e}");
        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nsqlite = [\"/c.db\"]\n[app.chat.keep_in.nas]\ndaily = 1\n").unwrap_err();
        assert!(e.to_string().contains("no repository named \"nas\""), "{e}");
        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nsqlite = [\"/c.db\"]\n[app.chat.keep]\ntimezone = \"Mars/Olympus\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 5: app.chat.keep: unknown time zone"),
            "{e}"
        );
        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nsqlite = [\"/c.db\"]\n[app.chat.keep]\nhourlyy = 1\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("line 6: app.chat.keep: unknown field `hourlyy`"),
            "{e}"
        );
    }

    #[test]
    fn hooks_and_checks() {
        let base = "[repository.r]\npath = \"/x\"\n[app.chat]\nsqlite = [\"/c.db\"]\n";
        let c = load(&format!(
            "{base}[app.chat.hooks]\nstop = \"systemctl stop chat\"\nstart = [\"systemctl\", \"start\", \"chat\"]\ntimeout = \"1m 30s\"\n\
             [app.chat.checks]\nsql = [\"SELECT count(*) FROM users\"]\nhealth_url = \"http://127.0.0.1:8080/health\"\nhealth_timeout = \"5s\"\n"
        ))
        .unwrap();
        let a = &c.app["chat"];
        assert_eq!(
            a.hooks.stop,
            Some(crate::HookCommand::Shell("systemctl stop chat".into()))
        );
        assert!(matches!(&a.hooks.start, Some(crate::HookCommand::Argv(v)) if v.len() == 3));
        assert_eq!(a.hooks.timeout(), std::time::Duration::from_secs(90));
        let plan = a.checks.plan(&a.sqlite);
        assert_eq!(
            plan.sql,
            vec![(PathBuf::from("/c.db"), a.checks.sql.clone())]
        );
        assert_eq!(plan.health.unwrap().1, std::time::Duration::from_secs(5));
        // Unknown keys, bad values: file, line, table.
        for (text, want) in [
            (
                "[app.chat.hooks]\nstopp = \"x\"\n",
                "line 6: app.chat.hooks: unknown field `stopp`",
            ),
            (
                "[app.chat.hooks]\ntimeout = \"soon\"\n",
                "line 6: app.chat.hooks: \"soon\" is not a duration",
            ),
            (
                "[app.chat.hooks]\nstop = \"\"\n",
                "line 5: app.chat.hooks.stop: the command is empty",
            ),
            ("[app.chat.hooks]\nstop = 5\n", "line 6"),
            (
                "[app.chat.checks]\nsqll = []\n",
                "line 6: app.chat.checks: unknown field `sqll`",
            ),
            (
                "[app.chat.checks]\nhealth_url = \"https://x/\"\n",
                "line 5: app.chat.checks.health_url: https is not supported",
            ),
            (
                "[app.chat.checks.sql_on]\n\"/other.db\" = [\"SELECT 1\"]\n",
                "app.chat.checks.sql_on: /other.db is not one of the app's sqlite databases",
            ),
        ] {
            let e = load(&format!("{base}{text}")).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nsqlite = [\"/a.db\", \"/b.db\"]\n[app.chat.checks]\nsql = [\"SELECT 1\"]\n").unwrap_err();
        assert!(e.to_string().contains("has 2 SQLite databases"), "{e}");
        let e = load("[repository.r]\npath = \"/x\"\n[app.chat]\nfiles = [\"/f\"]\n[app.chat.checks]\nsql = [\"SELECT 1\"]\n").unwrap_err();
        assert!(e.to_string().contains("SQLite databases only"), "{e}");
    }

    const MINIMAL: &str = "[repository.r]\npath = \"/x\"\npassword_command = \"true\"\n";

    /// Running as root, a config owned by another user is refused: its password_command
    /// would run as root.
    #[test]
    fn as_root_a_config_owned_by_another_user_is_refused() {
        if effective_uid() != 0 {
            println!("note: not root, skipping the root-only config owner check");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lifeboat.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        Config::load(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        let e = Config::load(&p).unwrap_err();
        let m = e.to_string();
        assert_eq!(e.kind(), ErrorKind::Refused, "{m}");
        assert!(m.contains(&p.display().to_string()), "{m}");
        assert!(m.contains("owner uid 65534, mode 644"), "{m}");
        assert!(e.hint().unwrap().contains("chown root"), "{:?}", e.hint());
    }

    #[test]
    fn as_root_a_group_or_world_writable_config_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lifeboat.toml");
        std::fs::write(&p, MINIMAL).unwrap();
        for (mode, refused) in [(0o644, false), (0o600, false), (0o664, true), (0o646, true)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let md = std::fs::metadata(&p).unwrap();
            // What root would see (the file is root's when the tests run as root).
            let uid = md.uid();
            let r = refuse_unsafe_owner(&p, &md, 0);
            assert_eq!(r.is_err(), refused || uid != 0, "mode {mode:o}");
            if refused {
                let e = r.unwrap_err();
                assert!(e.to_string().contains(&format!("mode {mode:o}")), "{e}");
                assert!(
                    e.to_string().contains("writable by group or others") || uid != 0,
                    "{e}"
                );
                assert!(e.hint().unwrap().contains("chmod go-w"), "{:?}", e.hint());
            }
            // Other users are not affected.
            refuse_unsafe_owner(&p, &md, 1000).unwrap();
            if effective_uid() == 0 {
                assert_eq!(Config::load(&p).is_err(), refused, "mode {mode:o}");
            }
        }
    }

    /// Running as root, a config in a directory another user can change is refused (they
    /// could swap it, or a symlink to it); a symlink there to a safe config is followed to
    /// the real file, and its relative paths are relative to where that file really is.
    #[test]
    fn as_root_a_config_must_sit_where_no_other_user_can_swap_it() {
        if effective_uid() != 0 {
            println!("note: not root, skipping the root-only config directory check");
            return;
        }
        let safe = tempfile::tempdir().unwrap();
        let real = safe.path().join("lifeboat.toml");
        std::fs::write(&real, "[repository.r]\npath = \"repo\"\n").unwrap();
        let open = tempfile::tempdir().unwrap();
        std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        // A file in a world-writable (not sticky) directory: refused, naming the directory.
        let there = open.path().join("lifeboat.toml");
        std::fs::write(&there, MINIMAL).unwrap();
        let e = Config::load(&there).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
        assert!(
            e.to_string().contains("can be changed by another user"),
            "{e}"
        );
        assert!(e.to_string().contains("mode 777"), "{e}");
        // A symlink there to a root-owned config in a safe place: the real file counts, and
        // `repo` is relative to the real file's directory, not the symlink's.
        let link = open.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let c = Config::load(&link).unwrap();
        let want = std::fs::canonicalize(safe.path()).unwrap().join("repo");
        assert_eq!(c.repository["r"].path, want.display().to_string());
    }

    #[test]
    fn parse_reads_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("never-written.toml");
        let c = Config::parse(&p, MINIMAL.to_string()).unwrap();
        assert_eq!(c.repository["r"].password_command.as_deref(), Some("true"));
        assert!(!p.exists());
    }
}
