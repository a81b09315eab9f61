//! Key slots (`keys/<id>`): the master secret wrapped by a key derived from a password with
//! argon2id (`docs/FORMAT.md` §5). Plaintext JSON; the wrapped secret is sealed with
//! XChaCha20-Poly1305 under the argon2id output, with the repository id in the associated data
//! so a key slot cannot be moved to another repository.
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::object::newer_version;
use crate::crypto::{open_with, random_array, seal_with, MasterKey};
use crate::error::{err, Result};

/// Key slot format version.
pub const KEY_VERSION: u32 = 1;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// Upper bounds on a key slot's cost, checked when a slot is parsed (and before any argon2id
/// run). A slot's `params` are not authenticated: anyone who can write `keys/` could otherwise
/// make every unlock allocate terabytes or run for days (`iterations = u32::MAX` hung the
/// unlock). The bounds sit far above the default (64 MiB, 3 passes, 1 lane) and any sane
/// setting: `init --kdf-memory-mib` allows at most 4096 MiB, and OWASP / RFC 9106 settings use
/// 1-10 passes and a few lanes. The worst slot within bounds (4 GiB x 64 passes) costs minutes,
/// not days; a slot outside them is damaged and skipped (`docs/FORMAT.md` §5).
pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
/// See [`MAX_MEMORY_KIB`].
pub const MAX_ITERATIONS: u32 = 64;
/// See [`MAX_MEMORY_KIB`].
pub const MAX_PARALLELISM: u32 = 64;

impl KdfParams {
    /// `Corrupt` when a cost is above [`MAX_MEMORY_KIB`], [`MAX_ITERATIONS`] or
    /// [`MAX_PARALLELISM`] (or zero).
    pub fn check(&self) -> Result<()> {
        let bad = |what: &str, v: u32, max: u32| {
            err!(
                Corrupt,
                "argon2id {what} {v} is outside 1..={max} (key slot parameters are not authenticated)"
            )
        };
        if self.memory_kib == 0 || self.memory_kib > MAX_MEMORY_KIB {
            return Err(bad("memory_kib", self.memory_kib, MAX_MEMORY_KIB));
        }
        if self.iterations == 0 || self.iterations > MAX_ITERATIONS {
            return Err(bad("iterations", self.iterations, MAX_ITERATIONS));
        }
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(bad("parallelism", self.parallelism, MAX_PARALLELISM));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about 0.2-0.4 s on the 2-core reference machine.
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

/// One key slot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// [`KEY_VERSION`].
    pub version: u32,
    /// Always "argon2id".
    pub kdf: String,
    /// Cost parameters.
    pub params: KdfParams,
    /// 32 random bytes, hex.
    pub salt: String,
    /// `nonce || ciphertext || tag` of the 32-byte master secret, hex.
    pub wrapped: String,
    /// When the slot was added (RFC 3339).
    pub created: String,
    /// Host that added it.
    pub hostname: String,
    /// A label given by the operator (`key add --label`).
    #[serde(default)]
    pub label: String,
}

fn aad(repo_id: &str) -> Vec<u8> {
    let mut v = b"lifeboat key v1 ".to_vec();
    v.extend_from_slice(repo_id.as_bytes());
    v
}

fn kek(password: &[u8], salt: &[u8], p: KdfParams) -> Result<XChaCha20Poly1305> {
    p.check()?;
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32))
        .map_err(|e| err!(Usage, "invalid argon2 parameters: {e}"))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| {
            out.zeroize();
            err!(Other, "argon2id failed: {e}")
        })?;
    let cipher = XChaCha20Poly1305::new(&out.into());
    out.zeroize();
    Ok(cipher)
}

impl KeyFile {
    /// Wraps `key` with `password` for the repository `repo_id`.
    pub fn wrap(
        key: &MasterKey,
        password: &[u8],
        repo_id: &str,
        params: KdfParams,
        label: &str,
    ) -> Result<KeyFile> {
        let salt: [u8; 32] = random_array()?;
        let cipher = kek(password, &salt, params)?;
        let wrapped = seal_with(&cipher, &aad(repo_id), key.secret())?;
        Ok(KeyFile {
            version: KEY_VERSION,
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            wrapped: hex::encode(wrapped),
            created: jiff::Timestamp::now().to_string(),
            hostname: hostname(),
            label: label.to_string(),
        })
    }

    /// Unwraps with `password`. `Ok(None)` means the password does not open this slot.
    pub fn unwrap_key(&self, password: &[u8], repo_id: &str) -> Result<Option<MasterKey>> {
        if self.version > KEY_VERSION {
            return Err(newer_version("key slot", self.version, KEY_VERSION));
        }
        if self.version == 0 {
            return Err(err!(Corrupt, "key slot has version 0"));
        }
        if self.kdf != "argon2id" {
            return Err(err!(Corrupt, "key slot uses unknown kdf {:?}", self.kdf));
        }
        let salt =
            hex::decode(&self.salt).map_err(|_| err!(Corrupt, "key slot salt is not hex"))?;
        let wrapped =
            hex::decode(&self.wrapped).map_err(|_| err!(Corrupt, "key slot is not hex"))?;
        let cipher = kek(password, &salt, self.params)?;
        match open_with(&cipher, &aad(repo_id), &wrapped) {
            Ok(secret) => {
                let secret = zeroize::Zeroizing::new(secret);
                let mut arr = zeroize::Zeroizing::new([0u8; 32]);
                if secret.len() != arr.len() {
                    return Err(err!(Corrupt, "wrapped master key has the wrong length"));
                }
                arr.copy_from_slice(&secret);
                Ok(Some(MasterKey::from_secret(*arr)))
            }
            Err(_) => Ok(None),
        }
    }

    /// Parses a stored key slot. A slot whose cost is out of bounds ([`KdfParams::check`]) is
    /// damaged: no argon2id run is ever started with it.
    pub fn parse(bytes: &[u8], name: &str) -> Result<KeyFile> {
        let f: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| err!(Corrupt, "key slot {name} is damaged: {e}"))?;
        f.params
            .check()
            .map_err(|e| err!(Corrupt, "key slot {name} is damaged: {}", e.message()))?;
        Ok(f)
    }

    /// Serialises for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("key serialises")
    }
}

/// This machine's host name, for labels and point metadata: `LIFEBOAT_HOSTNAME` when set (a
/// container whose host name changes with every start, or several lifeboat instances on one
/// machine that should show as different hosts), else the kernel's. A lease is only taken for
/// dead early when both its host name and its boot id and pid namespace are this process's,
/// so a wrong name can only make a dead lease wait for its TTL, never end a live one.
pub fn hostname() -> String {
    if let Some(h) = std::env::var("LIFEBOAT_HOSTNAME")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wrap_unwrap() {
        let p = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let k = MasterKey::generate().unwrap();
        let f = KeyFile::wrap(&k, b"pw", "repo1", p, "").unwrap();
        let f = KeyFile::parse(&f.to_bytes(), "x").unwrap();
        let k2 = f.unwrap_key(b"pw", "repo1").unwrap().unwrap();
        assert_eq!(k.chunk_id(b"a"), k2.chunk_id(b"a"));
        assert!(f.unwrap_key(b"wrong", "repo1").unwrap().is_none());
        assert!(
            f.unwrap_key(b"pw", "repo2").unwrap().is_none(),
            "bound to the repository"
        );
    }

    fn slot_with(p: KdfParams) -> Vec<u8> {
        let ok = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        let k = MasterKey::generate().unwrap();
        let mut f = KeyFile::wrap(&k, b"pw", "repo1", ok, "").unwrap();
        f.params = p;
        f.to_bytes()
    }

    #[test]
    fn cost_out_of_bounds_is_damaged() {
        let base = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        };
        for p in [
            KdfParams {
                iterations: u32::MAX,
                ..base
            },
            KdfParams {
                iterations: MAX_ITERATIONS + 1,
                ..base
            },
            KdfParams {
                memory_kib: MAX_MEMORY_KIB + 1,
                ..base
            },
            KdfParams {
                memory_kib: u32::MAX,
                ..base
            },
            KdfParams {
                parallelism: MAX_PARALLELISM + 1,
                ..base
            },
            KdfParams {
                iterations: 0,
                ..base
            },
        ] {
            let e = KeyFile::parse(&slot_with(p), "x").unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{p:?}: {e}");
            assert!(e.to_string().contains("damaged"), "{e}");
        }
        // The bounds themselves and the defaults parse.
        for p in [
            KdfParams::default(),
            KdfParams {
                memory_kib: MAX_MEMORY_KIB,
                iterations: MAX_ITERATIONS,
                parallelism: MAX_PARALLELISM,
            },
        ] {
            KeyFile::parse(&slot_with(p), "x").unwrap();
        }
    }
}
