//! A repository on an SFTP server (any OpenSSH `sshd`), through `russh` + `russh-sftp`: pure
//! Rust, no `ssh` binary needed.
//!
//! - **Layout:** the local one (`config`, `keys/<id>`, `index/<id>`, `points/<id>`,
//!   `packs/<2 hex>/<id>`) under the repository's directory on the server.
//! - **Host key:** checked before anything is sent. With `host_key_fingerprint` set
//!   (`SHA256:...`, as `ssh-keygen -lf` prints it) the key must have that fingerprint;
//!   otherwise it must be listed for this host and port in the known_hosts file
//!   (`~/.ssh/known_hosts` unless configured). An unknown key is refused (never
//!   trust-on-first-use), a different key is refused as a possible attack; both errors print
//!   the presented fingerprint and how to pin it.
//! - **Login:** public key only: the configured identity file, else the keys the ssh-agent
//!   holds (`SSH_AUTH_SOCK`), else `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
//! - **Atomic writes:** bytes go to `<dir>/.tmp-<pid>-<random>`, are fsynced
//!   (`fsync@openssh.com`), then renamed over the final name with
//!   `posix-rename@openssh.com` (rename(2) on the server: atomic, replaces). A dropped
//!   connection leaves only a `.tmp-` file, which `list` ignores. A server without that
//!   extension gets the plain SFTP rename, which OpenSSH does by `link` + `unlink` (also
//!   atomic) but which will not replace a name: the existing object, whose name is the hash
//!   of the same content, is then kept.
//! - **Network faults:** a failed connection or request is retried on a fresh connection with
//!   exponential backoff and jitter ([`SftpOptions::retries`] times); refusals (host key,
//!   login, permissions) are permanent and reported at once. So that a whole object can be
//!   sent again, an object being created is held in memory until `finish` (the default
//!   [`Storage::create`]): one pack, about 21 MiB, as for S3.
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeboat_core::{
    ListEntry, ObjectKind, RequestCounter, RequestStats, Storage, StorageError, StorageResult,
};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// Where an SFTP repository is and how to log in.
#[derive(Debug, Clone)]
pub struct SftpOptions {
    /// Server host name or address.
    pub host: String,
    /// Server port (22).
    pub port: u16,
    /// Login user.
    pub user: String,
    /// Repository directory on the server (absolute, or relative to the login directory).
    pub root: String,
    /// Private key file; `None`: ssh-agent, then `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub identity_file: Option<PathBuf>,
    /// known_hosts file; `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Accept exactly the host key with this fingerprint (`SHA256:...`) instead of known_hosts.
    pub host_key_fingerprint: Option<String>,
    /// Retries of a failed connection or request, each on a fresh connection.
    pub retries: usize,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl SftpOptions {
    /// Options with the defaults: port 22, 5 retries, 60 s requests.
    pub fn new(host: impl Into<String>, user: impl Into<String>, root: impl Into<String>) -> Self {
        SftpOptions {
            host: host.into(),
            port: 22,
            user: user.into(),
            root: root.into(),
            identity_file: None,
            known_hosts: None,
            host_key_fingerprint: None,
            retries: 5,
            timeout: Duration::from_secs(60),
        }
    }

    fn known_hosts_path(&self) -> PathBuf {
        self.known_hosts
            .clone()
            .unwrap_or_else(|| home().join(".ssh").join("known_hosts"))
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/".into())
}

/// What `check_server_key` decided, kept for the error message (russh only reports
/// "unknown key").
#[derive(Default)]
struct HostKeyVerdict(Mutex<Option<String>>);

struct Client {
    opts: Arc<SftpOptions>,
    verdict: Arc<HostKeyVerdict>,
}

impl russh::client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.verdict.0.lock().expect("verdict") = Some(
                "the server presented a certificate; lifeboat checks plain host keys only".into(),
            );
            return Ok(false);
        };
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        let o = &self.opts;
        let refuse = |msg: String| {
            *self.verdict.0.lock().expect("verdict") = Some(msg);
            Ok(false)
        };
        if let Some(want) = &o.host_key_fingerprint {
            if want.trim() == fp {
                return Ok(true);
            }
            return refuse(format!(
                "host key of {}:{} has fingerprint {fp}, not the pinned {want}: refusing to connect (a changed server or an attack); if the server's key really changed, check it out of band and update host_key_fingerprint",
                o.host, o.port
            ));
        }
        let path = o.known_hosts_path();
        match russh::keys::check_known_hosts_path(&o.host, o.port, key, &path) {
            Ok(true) => Ok(true),
            Ok(false) => refuse(format!(
                "host key of {}:{} ({fp}) is not in {}: refusing to trust it on first use; check the fingerprint out of band, then add it (ssh-keyscan -p {} {} >> {}) or set host_key_fingerprint = \"{fp}\"",
                o.host, o.port, path.display(), o.port, o.host, path.display()
            )),
            Err(russh::keys::Error::KeyChanged { line }) => refuse(format!(
                "HOST KEY MISMATCH for {}:{}: the server presented {fp}, {} line {line} lists another key; refusing to connect (possible man-in-the-middle); if the key really changed, fix that line",
                o.host, o.port, path.display()
            )),
            Err(e) => refuse(format!("cannot check the host key against {}: {e}", path.display())),
        }
    }
}

struct Conn {
    // Kept so the SSH session lives as long as the SFTP channels.
    _ssh: russh::client::Handle<Client>,
    sftp: SftpSession,
    /// A second SFTP channel at the protocol level, for `posix-rename@openssh.com` (an
    /// atomic rename that replaces the target, which the plain SFTP rename refuses to do);
    /// `None` when the server lacks that extension.
    raw: Option<russh_sftp::client::RawSftpSession>,
}

/// A repository on an SFTP server. See the module documentation.
pub struct SftpStorage {
    opts: Arc<SftpOptions>,
    rt: tokio::runtime::Runtime,
    conn: Mutex<Option<Arc<Conn>>>,
    counter: RequestCounter,
}

impl std::fmt::Debug for SftpStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStorage")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

/// A failure: permanent (report it) or transient (reconnect and retry).
enum Failure {
    Permanent(StorageError),
    Transient(String),
}

impl SftpStorage {
    /// Connects lazily: the first request connects, checks the host key and logs in.
    pub fn new(opts: SftpOptions) -> StorageResult<SftpStorage> {
        let rt = crate::client_runtime("sftp")?;
        Ok(SftpStorage {
            opts: Arc::new(opts),
            rt,
            conn: Mutex::new(None),
            counter: RequestCounter::default(),
        })
    }

    fn server(&self) -> String {
        format!("{}@{}:{}", self.opts.user, self.opts.host, self.opts.port)
    }

    /// `rel` (a `/`-separated path from [`ObjectKind`]) under the repository directory.
    fn under_root(&self, rel: &str) -> String {
        let root = self.opts.root.trim_end_matches('/');
        if rel.is_empty() {
            root.to_string()
        } else {
            format!("{root}/{rel}")
        }
    }

    /// The directory that holds the object (FORMAT.md §1 layout).
    fn dir(&self, kind: ObjectKind, name: &str) -> String {
        self.under_root(&kind.object_dir(name))
    }

    fn path(&self, kind: ObjectKind, name: &str) -> String {
        self.under_root(&kind.object_path(name))
    }

    fn describe(&self, kind: ObjectKind, name: &str) -> String {
        let url = format!("sftp://{}{}", self.server(), self.path(kind, name));
        match kind {
            ObjectKind::Config => format!("config ({url})"),
            _ => format!("{kind} {name} ({url})"),
        }
    }

    /// Opens an SSH connection and an SFTP channel: host key check, then public-key login.
    async fn connect(opts: Arc<SftpOptions>) -> Result<Conn, Failure> {
        let verdict = Arc::new(HostKeyVerdict::default());
        let config = Arc::new(russh::client::Config {
            inactivity_timeout: Some(Duration::from_secs(300)),
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        });
        let client = Client {
            opts: Arc::clone(&opts),
            verdict: Arc::clone(&verdict),
        };
        let server = format!("{}@{}:{}", opts.user, opts.host, opts.port);
        let connect = russh::client::connect(config, (opts.host.as_str(), opts.port), client);
        let mut ssh = match tokio::time::timeout(opts.timeout, connect).await {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "connect to {server}: timed out"
                )))
            }
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                if let Some(msg) = verdict.0.lock().expect("verdict").take() {
                    return Err(Failure::Permanent(StorageError::Unavailable {
                        message: msg,
                    }));
                }
                return Err(Failure::Transient(format!("connect to {server}: {e}")));
            }
        };
        login(&mut ssh, &opts, &server).await?;
        let channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| Failure::Transient(format!("{server}: open a session: {e}")))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| Failure::Transient(format!("{server}: start the sftp subsystem: {e}")))?;
        let sftp = SftpSession::new(channel.into_stream()).await.map_err(|e| {
            Failure::Permanent(StorageError::Unavailable {
                message: format!("{server} does not offer SFTP: {e}"),
            })
        })?;
        sftp.set_timeout(opts.timeout.as_secs().max(1));
        let raw = async {
            let ch = ssh.channel_open_session().await.ok()?;
            ch.request_subsystem(true, "sftp").await.ok()?;
            let raw = russh_sftp::client::RawSftpSession::new(ch.into_stream());
            raw.set_timeout(opts.timeout.as_secs().max(1));
            let v = raw.init().await.ok()?;
            v.extensions.contains_key(POSIX_RENAME).then_some(raw)
        }
        .await;
        Ok(Conn {
            _ssh: ssh,
            sftp,
            raw,
        })
    }

    fn current(&self) -> Result<Arc<Conn>, Failure> {
        let mut slot = self.conn.lock().expect("sftp connection");
        if let Some(c) = slot.as_ref() {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(self.rt.block_on(Self::connect(Arc::clone(&self.opts)))?);
        *slot = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Runs `op` on the connection, reconnecting and retrying transient failures with
    /// exponential backoff and jitter.
    fn run<T, F, Fut>(&self, what: &str, op: F) -> StorageResult<T>
    where
        F: Fn(Arc<Conn>) -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut attempt = 0usize;
        loop {
            let res = self.current().and_then(|c| self.rt.block_on(op(c)));
            match res {
                Ok(v) => return Ok(v),
                Err(Failure::Permanent(e)) => return Err(e),
                Err(Failure::Transient(msg)) => {
                    *self.conn.lock().expect("sftp connection") = None;
                    if attempt >= self.opts.retries {
                        return Err(StorageError::Remote {
                            what: what.to_string(),
                            message: if attempt > 0 {
                                format!("{msg} (after {attempt} retries)")
                            } else {
                                msg
                            },
                            retryable: true,
                        });
                    }
                    attempt += 1;
                    let base = 200u64 << attempt.min(6);
                    let jitter = {
                        let mut b = [0u8; 2];
                        let _ = getrandom::fill(&mut b);
                        u64::from(u16::from_le_bytes(b)) % base.max(1)
                    };
                    tracing::debug!("{what}: {msg}; retry {attempt} in {} ms", base + jitter);
                    std::thread::sleep(Duration::from_millis(base + jitter));
                }
            }
        }
    }

    /// `mkdir -p` of `dir` (each missing level; an existing one is fine).
    async fn mkdirs(c: &Conn, dir: &str) -> Result<(), SftpError> {
        if c.sftp.try_exists(dir).await? {
            return Ok(());
        }
        let mut path = String::new();
        for part in dir.split('/') {
            if part.is_empty() {
                path.push('/');
                continue;
            }
            if !path.is_empty() && !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(part);
            // Owner-only where the protocol-level channel lets us pass the mode at creation
            // (the server applies its umask on top, which only removes bits).
            let made = match &c.raw {
                Some(raw) => raw
                    .mkdir(path.clone(), private_attrs(crate::local::DIR_MODE))
                    .await
                    .map(|_| ()),
                None => c.sftp.create_dir(path.clone()).await,
            };
            if let Err(e) = made {
                if !c.sftp.try_exists(path.clone()).await.unwrap_or(false) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn tmp_name(dir: &str) -> StorageResult<String> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| StorageError::Io {
            what: "random temp name".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(format!(
            "{dir}/.tmp-{}-{}",
            std::process::id(),
            hex::encode(b)
        ))
    }
}

/// Public-key login: identity file, else agent, else the default key files.
async fn login(
    ssh: &mut russh::client::Handle<Client>,
    opts: &SftpOptions,
    server: &str,
) -> Result<(), Failure> {
    let denied = |tried: &str| {
        Failure::Permanent(StorageError::Unavailable {
            message: format!(
                "{server} refused the login of {} with {tried}; add the public key to the server's authorized_keys or set identity_file",
                opts.user
            ),
        })
    };
    let rsa_hash = ssh.best_supported_rsa_hash().await.ok().flatten().flatten();
    let try_key = |path: PathBuf| async move {
        let key = russh::keys::load_secret_key(&path, None).map_err(|e| {
            let hint = match e {
                russh::keys::Error::KeyIsEncrypted => {
                    "it is passphrase-protected: load it into ssh-agent instead".to_string()
                }
                e => e.to_string(),
            };
            Failure::Permanent(StorageError::Unavailable {
                message: format!("identity file {}: {hint}", path.display()),
            })
        })?;
        Ok::<_, Failure>(PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash))
    };
    if let Some(path) = &opts.identity_file {
        if !path.exists() {
            return Err(Failure::Permanent(StorageError::Unavailable {
                message: format!(
                    "identity file {} does not exist (the private key to log in to {server})",
                    path.display()
                ),
            }));
        }
        let key = try_key(path.clone()).await?;
        let r = ssh
            .authenticate_publickey(opts.user.clone(), key)
            .await
            .map_err(|e| Failure::Transient(format!("{server}: login: {e}")))?;
        return if r.success() {
            Ok(())
        } else {
            Err(denied(&format!("key {}", path.display())))
        };
    }
    let mut tried = Vec::new();
    if let Ok(mut agent) = russh::keys::agent::client::AgentClient::connect_env().await {
        if let Ok(ids) = agent.request_identities().await {
            for id in ids {
                let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = id else {
                    continue;
                };
                tried.push("an ssh-agent key".to_string());
                if let Ok(r) = ssh
                    .authenticate_publickey_with(opts.user.clone(), key, rsa_hash, &mut agent)
                    .await
                {
                    if r.success() {
                        return Ok(());
                    }
                }
            }
        }
    }
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let path = home().join(".ssh").join(name);
        if !path.exists() {
            continue;
        }
        tried.push(path.display().to_string());
        let Ok(key) = try_key(path).await else {
            continue;
        };
        let r = ssh
            .authenticate_publickey(opts.user.clone(), key)
            .await
            .map_err(|e| Failure::Transient(format!("{server}: login: {e}")))?;
        if r.success() {
            return Ok(());
        }
    }
    if tried.is_empty() {
        return Err(Failure::Permanent(StorageError::Unavailable {
            message: format!(
                "no key to log in to {server}: set identity_file, start ssh-agent, or create ~/.ssh/id_ed25519"
            ),
        }));
    }
    Err(denied(&tried.join(", ")))
}

/// Classifies an SFTP error: status answers are permanent (NotFound is its own error), the
/// rest (channel closed, timeout, I/O) is transient.
fn classify(what: &str, e: SftpError) -> Failure {
    match e {
        SftpError::Status(s) => match s.status_code {
            StatusCode::NoSuchFile => Failure::Permanent(StorageError::NotFound {
                what: what.to_string(),
            }),
            StatusCode::PermissionDenied => Failure::Permanent(StorageError::Unavailable {
                message: format!(
                    "{what}: permission denied by the server; check the repository directory's owner and mode"
                ),
            }),
            StatusCode::NoConnection | StatusCode::ConnectionLost => {
                Failure::Transient(format!("{what}: {}", s.error_message))
            }
            _ => Failure::Permanent(StorageError::Remote {
                what: what.to_string(),
                message: format!("{}: {}", s.status_code, s.error_message),
                retryable: false,
            }),
        },
        e => Failure::Transient(format!("{what}: {e}")),
    }
}

/// Attributes that carry only a permission mode, for SFTP open and mkdir.
fn private_attrs(mode: u32) -> russh_sftp::protocol::FileAttributes {
    russh_sftp::protocol::FileAttributes {
        permissions: Some(mode),
        ..Default::default()
    }
}

const POSIX_RENAME: &str = "posix-rename@openssh.com";

/// Renames `tmp` to `path`, replacing `path` atomically (`posix-rename@openssh.com`, i.e.
/// rename(2) on the server). Without that extension the plain SFTP rename is used; it will
/// not replace an existing name, and then the existing object, which has the same
/// content-addressed name, is kept.
async fn publish(c: &Conn, tmp: &str, path: &str) -> Result<(), Failure> {
    if let Some(raw) = &c.raw {
        let mut data = Vec::with_capacity(tmp.len() + path.len() + 8);
        for s in [tmp, path] {
            data.extend_from_slice(&(s.len() as u32).to_be_bytes());
            data.extend_from_slice(s.as_bytes());
        }
        return match raw.extended(POSIX_RENAME, data).await {
            Ok(russh_sftp::protocol::Packet::Status(st)) if st.status_code == StatusCode::Ok => {
                Ok(())
            }
            Ok(russh_sftp::protocol::Packet::Status(st)) => {
                let _ = c.sftp.remove_file(tmp).await;
                Err(classify(path, SftpError::Status(st)))
            }
            Ok(_) => Err(Failure::Transient(format!(
                "{path}: unexpected answer to {POSIX_RENAME}"
            ))),
            Err(e) => {
                let _ = c.sftp.remove_file(tmp).await;
                Err(classify(path, e))
            }
        };
    }
    match c.sftp.rename(tmp, path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            if c.sftp.try_exists(path).await.unwrap_or(false) {
                let _ = c.sftp.remove_file(tmp).await;
                Ok(())
            } else {
                let _ = c.sftp.remove_file(tmp).await;
                Err(classify(path, e))
            }
        }
    }
}

impl Storage for SftpStorage {
    fn location(&self) -> String {
        format!("sftp://{}{}", self.server(), self.opts.root)
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        let root = self.under_root("");
        let what = format!("{kind} listing of sftp://{}{root}", self.server());
        let dirs: Vec<String> = match kind {
            _ if kind.fanned_out() => {
                self.counter.list(1);
                let packs = self.under_root(kind.dir());
                self.run(&what, |c| {
                    let packs = packs.clone();
                    async move {
                        match c.sftp.read_dir(packs.clone()).await {
                            Ok(rd) => Ok(rd
                                .filter(|e| {
                                    e.file_type().is_dir() && !e.file_name().starts_with('.')
                                })
                                .map(|e| format!("{packs}/{}", e.file_name()))
                                .collect()),
                            Err(e) => match classify(&packs, e) {
                                Failure::Permanent(StorageError::NotFound { .. }) => Ok(Vec::new()),
                                f => Err(f),
                            },
                        }
                    }
                })?
            }
            // `config` lists the repository directory itself (its `dir()` is empty).
            _ => vec![self.under_root(kind.dir())],
        };
        let mut out = Vec::new();
        for dir in dirs {
            self.counter.list(1);
            let entries = self.run(&what, |c| {
                let dir = dir.clone();
                async move {
                    match c.sftp.read_dir(dir.clone()).await {
                        Ok(rd) => Ok(rd
                            .filter(|e| e.file_type().is_file())
                            .map(|e| (e.file_name(), e.metadata().size.unwrap_or(0)))
                            .collect::<Vec<_>>()),
                        Err(e) => match classify(&dir, e) {
                            Failure::Permanent(StorageError::NotFound { .. }) => Ok(Vec::new()),
                            f => Err(f),
                        },
                    }
                }
            })?;
            for (name, size) in entries {
                let keep = match kind {
                    ObjectKind::Config => name == "config",
                    _ => !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric()),
                };
                if keep {
                    out.push(ListEntry { name, size });
                }
            }
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let what = self.describe(kind, name);
        let path = self.path(kind, name);
        self.counter.get(1);
        self.run(&what, |c| {
            let (path, what) = (path.clone(), what.clone());
            async move {
                // Refused from the open file's size, before its bytes are read.
                let mut f = c.sftp.open(path).await.map_err(|e| classify(&what, e))?;
                let size = f
                    .metadata()
                    .await
                    .map_err(|e| classify(&what, e))?
                    .size
                    .unwrap_or(0);
                kind.check_size(&what, size).map_err(Failure::Permanent)?;
                let mut buf = Vec::with_capacity(size as usize);
                (&mut f)
                    .take(kind.max_size() + 1)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| Failure::Transient(format!("{what}: {e}")))?;
                kind.check_size(&what, buf.len() as u64)
                    .map_err(Failure::Permanent)?;
                Ok(buf)
            }
        })
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        let what = self.describe(kind, name);
        let path = self.path(kind, name);
        self.counter.get(1);
        self.run(&what, |c| {
            let (path, what) = (path.clone(), what.clone());
            async move {
                let mut f = c.sftp.open(path).await.map_err(|e| classify(&what, e))?;
                let size = f
                    .metadata()
                    .await
                    .map_err(|e| classify(&what, e))?
                    .size
                    .unwrap_or(0);
                if offset.saturating_add(len) > size {
                    return Err(Failure::Permanent(StorageError::Truncated {
                        what: what.clone(),
                        size,
                        wanted_end: offset + len,
                    }));
                }
                f.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| Failure::Transient(format!("{what}: {e}")))?;
                let mut buf = vec![0u8; len as usize];
                f.read_exact(&mut buf)
                    .await
                    .map_err(|e| Failure::Transient(format!("{what}: {e}")))?;
                let _ = f.close().await;
                Ok(buf)
            }
        })
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        let what = self.describe(kind, name);
        let (dir, path) = (self.dir(kind, name), self.path(kind, name));
        self.counter.put(1);
        self.run(&what, |c| {
            let (dir, path) = (dir.clone(), path.clone());
            async move {
                SftpStorage::mkdirs(&c, &dir)
                    .await
                    .map_err(|e| classify(&dir, e))?;
                let tmp = SftpStorage::tmp_name(&dir).map_err(Failure::Permanent)?;
                let res = async {
                    let mut f = c
                        .sftp
                        .open_with_flags_and_attributes(
                            tmp.clone(),
                            OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
                            private_attrs(crate::local::FILE_MODE),
                        )
                        .await
                        .map_err(|e| classify(&tmp, e))?;
                    f.write_all(data)
                        .await
                        .map_err(|e| Failure::Transient(format!("{tmp}: {e}")))?;
                    f.sync_all().await.map_err(|e| classify(&tmp, e))?;
                    f.shutdown()
                        .await
                        .map_err(|e| Failure::Transient(format!("{tmp}: {e}")))?;
                    Ok(())
                }
                .await;
                if let Err(e) = res {
                    let _ = c.sftp.remove_file(tmp).await;
                    return Err(e);
                }
                publish(&c, &tmp, &path).await
            }
        })
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        let what = self.describe(kind, name);
        let path = self.path(kind, name);
        self.counter.delete(1);
        self.run(&what, |c| {
            let (path, what) = (path.clone(), what.clone());
            async move {
                c.sftp
                    .remove_file(path)
                    .await
                    .map_err(|e| classify(&what, e))
            }
        })
    }

    fn requests(&self) -> RequestStats {
        self.counter.stats()
    }
}
