//! Leases held by running operations (`docs/FORMAT.md` §14, the argument in
//! `docs/ARCHITECTURE.md` "Prune beside running backups").
//!
//! A [`LeaseGuard`] writes `leases/<random>` when an operation starts, rewrites it under a new
//! name every `ttl / 6` from a background thread (so a live operation's lease is never older
//! than that), and deletes it when dropped. A process that is killed leaves its lease behind;
//! after `ttl` without a refresh every other process treats it as dead, so nothing ever waits
//! for a human. A holder whose refreshes have failed for `ttl / 2` must not publish anything
//! that relies on it ([`LeaseGuard::check_alive`]): prune may already consider it dead.
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::crypto::random_array;
use crate::error::{err, Error, Result};
use crate::format::key::hostname;
use crate::format::lease::Lease;
use crate::storage::{ObjectKind, Storage, StorageError};

/// Lease lifetime: `LIFEBOAT_LEASE_TTL_SECS` (tests), else 30 minutes.
pub fn lease_ttl() -> Duration {
    std::env::var("LIFEBOAT_LEASE_TTL_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &u64| *s > 0)
        .map_or(Duration::from_secs(30 * 60), Duration::from_secs)
}

struct State {
    name: String,
    /// The name before `name`: kept until the next refresh, so a prune that listed it just
    /// before a refresh can still read it (deleting it at once let a live lease vanish
    /// between a listing and a read).
    previous: String,
    lease: Lease,
    last_ok: Instant,
    last_ok_wall: std::time::SystemTime,
    /// Set for good once refreshes failed for `ttl / 2` (by the monotonic or the wall
    /// clock, which also counts suspend): a prune may have judged this lease dead meanwhile.
    lapsed: bool,
    last_error: Option<String>,
}

impl State {
    fn gap(&self) -> Duration {
        let wall = self.last_ok_wall.elapsed().unwrap_or_default();
        self.last_ok.elapsed().max(wall)
    }
}

struct Shared {
    storage: Arc<dyn Storage>,
    ttl: Duration,
    state: Mutex<State>,
}

impl Shared {
    /// Writes the lease under a new name, then deletes the old one.
    fn rewrite(&self) -> Result<()> {
        let mut st = self.state.lock().expect("lease lock");
        st.lease.refreshed = jiff::Timestamp::now().to_string();
        let bytes = st.lease.to_bytes();
        let name = hex::encode(random_array::<8>()?);
        match self.storage.write(ObjectKind::Lease, &name, &bytes) {
            Ok(()) => {
                if !st.name.is_empty() && st.gap() > self.ttl / 2 {
                    st.lapsed = true;
                }
                let old = std::mem::replace(&mut st.name, name);
                let before_last = std::mem::replace(&mut st.previous, old);
                st.last_ok = Instant::now();
                st.last_ok_wall = std::time::SystemTime::now();
                st.last_error = None;
                drop(st);
                if !before_last.is_empty() {
                    let _ = self.storage.delete(ObjectKind::Lease, &before_last);
                }
                Ok(())
            }
            Err(e) => {
                let e = Error::from(e).context("write lease");
                st.last_error = Some(e.to_string());
                Err(e)
            }
        }
    }
}

/// A lease held for as long as this value lives.
pub(crate) struct LeaseGuard {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseGuard {
    /// Takes a lease for `operation` (`backup`, `prune`, ...).
    /// Needs no key: `copy` (which has no password) takes leases on replicas too.
    /// `ttl` is [`lease_ttl`] except in tests.
    pub(crate) fn acquire(
        storage: Arc<dyn Storage>,
        operation: &str,
        ttl: Duration,
    ) -> Result<Self> {
        let now = jiff::Timestamp::now().to_string();
        let shared = Arc::new(Shared {
            storage,
            ttl,
            state: Mutex::new(State {
                name: String::new(),
                previous: String::new(),
                last_ok_wall: std::time::SystemTime::now(),
                lapsed: false,
                lease: Lease {
                    operation: operation.to_string(),
                    hostname: hostname(),
                    pid: std::process::id(),
                    process_space: crate::format::lease::process_space(),
                    started: now.clone(),
                    refreshed: now,
                    ttl_secs: ttl.as_secs(),
                    seen_prunes: Vec::new(),
                },
                last_ok: Instant::now(),
                last_error: None,
            }),
        });
        shared.rewrite().map_err(|e| {
            e.context(format!("take a lease for {operation}"))
                .with_hint("the repository must be writable for this operation")
        })?;
        let (tx, rx) = channel::<()>();
        let every = (ttl / 6).max(Duration::from_millis(200));
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lifeboat-lease".into())
            .spawn(move || loop {
                match rx.recv_timeout(every) {
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = s.rewrite() {
                            tracing::warn!("lease refresh failed (will retry): {e}");
                        }
                    }
                    _ => return,
                }
            })
            .map_err(|e| err!(Other, "spawn lease thread: {e}"))?;
        Ok(LeaseGuard {
            shared,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Records the prune records this operation has seen (and whose condemned packs it
    /// skips), and rewrites the lease now so a prune can tell.
    pub(crate) fn set_seen_prunes(&self, names: Vec<String>) -> Result<()> {
        {
            let mut st = self.shared.state.lock().expect("lease lock");
            if st.lease.seen_prunes == names {
                return Ok(());
            }
            st.lease.seen_prunes = names;
        }
        self.shared.rewrite()
    }

    /// Whether `lease` (as listed) is this one, under any of the names it had: a refresh
    /// renames it, possibly between a `name()` and a listing.
    pub(crate) fn is_mine(&self, lease: &Lease) -> bool {
        let st = self.shared.state.lock().expect("lease lock");
        lease.pid == st.lease.pid
            && lease.hostname == st.lease.hostname
            && lease.started == st.lease.started
            && lease.operation == st.lease.operation
    }

    /// Fails if the lease has not been refreshed for half its lifetime: a prune elsewhere
    /// may soon treat this operation as dead, so it must not publish a point.
    pub(crate) fn check_alive(&self) -> Result<()> {
        let st = self.shared.state.lock().expect("lease lock");
        let age = st.gap();
        if st.lapsed || age > self.shared.ttl / 2 {
            return Err(err!(
                Io,
                "the lease of this {} was not refreshed for {} s at some point (last error: {}); nothing was published",
                st.lease.operation,
                age.as_secs(),
                st.last_error.as_deref().unwrap_or("none")
            )
            .retryable()
            .with_hint("the repository was unreachable for too long; run the operation again"));
        }
        Ok(())
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (name, previous) = {
            let st = self.shared.state.lock().expect("lease lock");
            (st.name.clone(), st.previous.clone())
        };
        for n in [name, previous] {
            if !n.is_empty() {
                let _ = self.shared.storage.delete(ObjectKind::Lease, &n);
            }
        }
    }
}

/// A lease found in the repository.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    /// Its content.
    pub lease: Lease,
}

/// Every readable lease (expired ones included). Unreadable lease objects are returned as
/// errors in the second list (a prune treats them as live: it cannot tell).
pub fn list_leases(storage: &dyn Storage) -> Result<(Vec<LeaseInfo>, Vec<String>)> {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in storage.list(ObjectKind::Lease)? {
        let what = format!("lease {}", e.name);
        let bytes = match storage.read(ObjectKind::Lease, &e.name) {
            Ok(b) => b,
            // Gone between list and read: it was refreshed or released.
            Err(StorageError::NotFound { .. }) => continue,
            // Damaged (larger than any lease): unreadable, which a prune treats as live.
            Err(err @ StorageError::TooLarge { .. }) => {
                bad.push(format!("{what}: {err}"));
                continue;
            }
            Err(err) => return Err(Error::from(err).context("read leases")),
        };
        match Lease::from_bytes(&bytes, &what) {
            Ok(lease) => ok.push(LeaseInfo { lease }),
            Err(err) => bad.push(format!("{what}: {err}")),
        }
    }
    Ok((ok, bad))
}
