//! Leases (`leases/<16 random hex>`): "an operation is using this repository" (`docs/FORMAT.md`
//! §14). Not encrypted (`copy` holds no key, and a lease says nothing secret): the bytes are
//! `LBLS`, version byte 1, then UTF-8 JSON of [`Lease`].
//! A lease is rewritten under a new name to refresh it and deleted when the operation ends; one
//! whose `refreshed` is older than `ttl_secs` is dead (its process was killed) and is ignored,
//! so no lock ever needs a human to clear it.
use serde::{Deserialize, Serialize};

use crate::error::{err, Result};

/// Lease magic.
pub const LEASE_MAGIC: &[u8; 4] = b"LBLS";

/// One lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    /// `backup`, `copy`, `restore`, `check`, `prune`.
    pub operation: String,
    /// Host running the operation.
    pub hostname: String,
    /// Its process id.
    pub pid: u32,
    /// Linux: boot id and pid namespace of the holder (`/proc/sys/kernel/random/boot_id`,
    /// `/proc/self/ns/pid`). Only a reader with the same value may judge the pid by looking
    /// at its own `/proc` (a container with the host's hostname has another pid namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_space: Option<String>,
    /// When the operation took its first lease (RFC 3339, the holder's clock).
    pub started: String,
    /// When this lease object was written (RFC 3339, the holder's clock).
    pub refreshed: String,
    /// Seconds after `refreshed` at which the lease is dead.
    pub ttl_secs: u64,
    /// Prune records (§15, by name) the holder had seen when it loaded the index: it skips
    /// their condemned packs, so their deletion cannot hurt it.
    #[serde(default)]
    pub seen_prunes: Vec<String>,
}

impl Lease {
    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = LEASE_MAGIC.to_vec();
        out.push(1);
        out.extend(serde_json::to_vec(self).expect("lease serialises"));
        out
    }
    /// Decodes stored bytes.
    pub fn from_bytes(b: &[u8], what: &str) -> Result<Lease> {
        if b.len() < 5 || &b[..4] != LEASE_MAGIC || b[4] != 1 {
            return Err(err!(Corrupt, "{what}: not a version-1 lease"));
        }
        serde_json::from_slice(&b[5..]).map_err(|e| err!(Corrupt, "{what}: bad lease: {e}"))
    }
    /// Whether the lease is dead at `now`: not refreshed for `ttl_secs`, or held by a process
    /// of this host that no longer exists (Linux `/proc`; a killed operation then blocks
    /// nothing on its own machine, not even for the TTL).
    pub fn expired(&self, now: jiff::Timestamp) -> bool {
        let here = process_space();
        if here.is_some()
            && self.process_space == here
            && self.hostname == crate::format::key::hostname()
            && !process_exists(self.pid)
        {
            return true;
        }
        match self.refreshed.parse::<jiff::Timestamp>() {
            Ok(t) => now.as_second() > t.as_second().saturating_add(self.ttl_secs as i64),
            Err(_) => true,
        }
    }
}

/// This process's boot id and pid namespace (Linux), see [`Lease::process_space`].
pub fn process_space() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{} {}", boot.trim(), ns.display()))
}

/// Whether a process with this pid exists here: `kill(pid, 0)` fails with ESRCH only when it
/// does not (EPERM means it exists but belongs to another user; `/proc` can hide such
/// processes with `hidepid`, so it is not asked).
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks for existence and permission; nothing is delivered.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
