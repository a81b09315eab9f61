//! [`Setup`]: what an operator's invocation gives (a config file or none, a repository override,
//! password sources), resolved lazily into repositories and storages.
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lifeboat_core::{Error, ErrorKind, Repository, RequestStats, Result, Storage};

use crate::config::{Config, RepositoryConfig};
use crate::destination::Location;
use crate::password::PasswordSource;

/// The places lifeboat looks for a config file when none is given, in order.
pub const CONFIG_PATHS: [&str; 2] = ["lifeboat.toml", "/etc/lifeboat/lifeboat.toml"];

/// The settings every operation starts from: the config file (given, or found at
/// [`CONFIG_PATHS`]), a repository that overrides the config's (`--repo`), and the password
/// sources given besides the config's. Nothing is read until an operation needs it, so a
/// command that needs no config does not fail on a broken one.
///
/// Every storage opened through a `Setup` is remembered, for request statistics
/// ([`Setup::opened`]).
pub struct Setup {
    config: ConfigSource,
    repo: Option<String>,
    password: PasswordSource,
    /// Every storage opened, for `--stats`.
    opened: Arc<Mutex<Opened>>,
    /// Whether backups and restores update this machine's newest known points.
    remember_points: bool,
    /// Each repository unlocked through this setup, by location: opened again with its key
    /// ([`Repository::reopen`]) instead of deriving the key again (64 MiB and ~0.4 s each at
    /// the default cost; a capture thread opens its repository at every new chain).
    unlocked: Arc<Mutex<std::collections::HashMap<String, Repository>>>,
    /// The key in `unlocked` of the repository [`Setup::open`] returned last (the audit log
    /// writes an operation's record there, `audit.rs`).
    last_unlocked: Mutex<Option<String>>,
}

/// Storages opened, by location.
type Opened = Vec<(String, Arc<dyn Storage>)>;

/// Where a setup's config comes from.
#[derive(Clone)]
enum ConfigSource {
    /// A file (given, else [`CONFIG_PATHS`]), read by each operation that needs it.
    File(Option<PathBuf>),
    /// A config parsed by the caller; no file is read.
    Given(Box<Config>),
}

impl Setup {
    /// A setup from an explicit config file (else [`CONFIG_PATHS`]), a repository override
    /// (a `[repository.NAME]`, a path or a URL) and password sources that come before the
    /// config's.
    pub fn new(config: Option<PathBuf>, repo: Option<String>, password: PasswordSource) -> Setup {
        Setup {
            config: ConfigSource::File(config),
            repo,
            password,
            opened: Arc::default(),
            remember_points: true,
            unlocked: Arc::default(),
            last_unlocked: Mutex::default(),
        }
    }

    /// A setup from a config the caller has already parsed (e.g. with [`Config::parse`]):
    /// nothing is read from disk for it, so no file can be swapped between operations. For
    /// callers that write their own config (the demo), which must not read back a file that
    /// someone else might replace.
    pub fn with_config(config: Config, repo: Option<String>, password: PasswordSource) -> Setup {
        Setup {
            config: ConfigSource::Given(Box::new(config)),
            repo,
            password,
            opened: Arc::default(),
            remember_points: true,
            unlocked: Arc::default(),
            last_unlocked: Mutex::default(),
        }
    }

    /// The same setup with another repository override (`None`: each app's own), sharing
    /// this one's unlocked repositories and request counts: `status` looks at every
    /// destination through one long-lived setup in the daemon, so no key is derived twice.
    pub fn with_repo(&self, repo: Option<String>) -> Setup {
        Setup {
            config: self.config.clone(),
            repo,
            password: self.password.clone(),
            opened: Arc::clone(&self.opened),
            remember_points: self.remember_points,
            unlocked: Arc::clone(&self.unlocked),
            last_unlocked: Mutex::default(),
        }
    }

    /// Backups and restores through this setup do not update this machine's newest known
    /// points (`known_points.rs`): for throwaway repositories (the demo's). `latest` is still
    /// checked against what is known.
    pub fn without_remembering_points(mut self) -> Setup {
        self.remember_points = false;
        self
    }

    /// Whether backups and restores update this machine's newest known points.
    pub fn remembers_points(&self) -> bool {
        self.remember_points
    }

    /// Requests sent so far to each storage opened, by location.
    pub fn opened(&self) -> Vec<(String, RequestStats)> {
        self.opened
            .lock()
            .expect("stats")
            .iter()
            .map(|(loc, s)| (loc.clone(), s.requests()))
            .collect()
    }

    /// Where passwords come from.
    pub fn password(&self) -> &PasswordSource {
        &self.password
    }

    /// The config: the one given to [`Setup::with_config`], else the file, if one is given or
    /// found.
    pub fn config(&self) -> Result<Option<Config>> {
        match &self.config {
            ConfigSource::Given(c) => return Ok(Some(Config::clone(c))),
            ConfigSource::File(Some(p)) => return Config::load(p).map(Some),
            ConfigSource::File(None) => {}
        }
        for p in CONFIG_PATHS {
            let p = PathBuf::from(p);
            if p.exists() {
                return Config::load(&p).map(Some);
            }
        }
        Ok(None)
    }

    /// The location of `app`'s repository (or the only one, or the override) and its table
    /// in the config file, if any.
    pub fn location_for(&self, app: Option<&str>) -> Result<(String, Option<RepositoryConfig>)> {
        let config = self.config()?;
        match (&self.repo, &config) {
            (Some(p), c) => Ok(resolve(p, c.as_ref())),
            (None, Some(c)) => {
                let (_, r) = c.repository_for(app)?;
                Ok((r.path.clone(), Some(r.clone())))
            }
            (None, None) => Err(Error::new(ErrorKind::Usage, "no repository given")
                .with_hint(
                "pass --repo PATH|s3://BUCKET/PREFIX|sftp://USER@HOST/PATH (or set LIFEBOAT_REPO), or write a lifeboat.toml (see README)",
            )),
        }
    }

    /// Opens the storage of a location (no password needed: replicas are copied as ciphertext).
    fn open_storage(
        &self,
        location: &str,
        cfg: Option<&RepositoryConfig>,
    ) -> Result<Arc<dyn Storage>> {
        let storage = Location::parse(location)?.open(cfg)?;
        #[cfg(feature = "fault-injection")]
        let storage = fault_injection(storage);
        self.opened
            .lock()
            .expect("stats")
            .push((storage.location(), Arc::clone(&storage)));
        Ok(storage)
    }

    /// The storage of `app`'s repository, without asking for a password.
    pub fn storage_only(&self, app: Option<&str>) -> Result<Arc<dyn Storage>> {
        let (location, cfg) = self.location_for(app)?;
        self.open_storage(&location, cfg.as_ref())
    }

    /// The storage of a repository named in the config or given by path or URL.
    pub fn storage_named(&self, s: &str) -> Result<Arc<dyn Storage>> {
        let config = self.config()?;
        let (location, cfg) = resolve(s, config.as_ref());
        self.open_storage(&location, cfg.as_ref())
    }

    /// The storage and password for `app` (or the only repository).
    pub fn storage_for(&self, app: Option<&str>) -> Result<(Arc<dyn Storage>, Password)> {
        let (location, repo_cfg) = self.location_for(app)?;
        let pw_cfg = repo_cfg.as_ref().map(|r| r.password()).unwrap_or_default();
        let storage = self.open_storage(&location, repo_cfg.as_ref())?;
        let password = self.password.resolve(&pw_cfg, "LIFEBOAT_PASSWORD")?;
        Ok((storage, password))
    }

    /// Opens the repository for `app`.
    pub fn open(&self, app: Option<&str>) -> Result<Repository> {
        // Resolved once (a config file edited meanwhile cannot file one repository's key
        // under another's name), and keyed by everything that tells two stores or two
        // passwords apart, not by the path alone (two tables may share a path with other
        // endpoints or passwords).
        let (location, cfg) = self.location_for(app)?;
        let key = format!(
            "{location}\0{:?}\0{:?}\0{:?}\0{:?}",
            cfg.as_ref().and_then(|c| c.endpoint.as_deref()),
            cfg.as_ref().and_then(|c| c.region.as_deref()),
            cfg.as_ref().and_then(|c| c.password_file.as_deref()),
            cfg.as_ref().and_then(|c| c.password_command.as_deref()),
        );
        let cached = self
            .unlocked
            .lock()
            .expect("unlocked")
            .get(&key)
            .map(Repository::reopen);
        if let Some(r) = cached {
            *self.last_unlocked.lock().expect("last") = Some(key);
            return r;
        }
        let pw_cfg = cfg.as_ref().map(|r| r.password()).unwrap_or_default();
        let storage = self.open_storage(&location, cfg.as_ref())?;
        let password = self.password.resolve(&pw_cfg, "LIFEBOAT_PASSWORD")?;
        let repo = Repository::open(storage, &password)?;
        self.unlocked
            .lock()
            .expect("unlocked")
            .insert(key.clone(), repo.reopen()?);
        *self.last_unlocked.lock().expect("last") = Some(key);
        Ok(repo)
    }

    /// Forgets which repository was opened last (an audited operation starts).
    pub(crate) fn forget_last_unlocked(&self) {
        *self.last_unlocked.lock().expect("last") = None;
    }

    /// Runs `f` on the repository [`Setup::open`] returned last since
    /// [`Setup::forget_last_unlocked`], if any (the same key and storage; no request).
    pub(crate) fn with_last_unlocked<R>(&self, f: impl FnOnce(&Repository) -> R) -> Option<R> {
        let key = self.last_unlocked.lock().expect("last").clone()?;
        let unlocked = self.unlocked.lock().expect("unlocked");
        unlocked.get(&key).map(f)
    }
}

/// A resolved password: wiped (with its spare capacity) when dropped.
pub type Password = zeroize::Zeroizing<Vec<u8>>;

/// A repository given by the name of a `[repository.NAME]` table, or by a path or URL
/// (which a table may describe further).
fn resolve(s: &str, config: Option<&Config>) -> (String, Option<RepositoryConfig>) {
    if let Some(r) = config.and_then(|c| c.repository.get(s)) {
        return (r.path.clone(), Some(r.clone()));
    }
    let cfg = config
        .and_then(|c| c.repository.values().find(|r| r.path == s))
        .cloned();
    (s.to_string(), cfg)
}

/// Test builds only (feature `fault-injection`, which `scripts/test.sh` turns on through
/// `lifeboat/fault-injection`): wraps a storage so `LIFEBOAT_CRASH_BEFORE_MUTATION=N` aborts
/// before its N-th write or delete (the kill-point tests). The shipped binary has no such
/// switch; `.ci/run` checks it.
#[cfg(feature = "fault-injection")]
fn fault_injection(storage: Arc<dyn Storage>) -> Arc<dyn Storage> {
    lifeboat_storage::CrashBefore::from_env(storage)
}
