//! The repository's `config` object: plaintext JSON, readable without the password, so that
//! a newer format is refused with a clear message before any key is tried (`docs/FORMAT.md` §4).
use serde::{Deserialize, Serialize};

use super::object::newer_version;
use crate::error::{err, Result};

/// The value of `format` in every lifeboat repository's config.
pub const FORMAT_NAME: &str = "lifeboat-repository";
/// The repository format version this build writes and reads.
pub const REPO_VERSION: u32 = 1;

/// Parameters of the content-defined chunker for files and dumps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkerParams {
    /// Smallest chunk, bytes.
    pub min: u32,
    /// Target average, bytes.
    pub avg: u32,
    /// Largest chunk, bytes.
    pub max: u32,
}

impl ChunkerParams {
    /// Checks the bounds FastCDC 2020 accepts (min 64 B..1 MiB, avg 256 B..4 MiB,
    /// max 1 KiB..16 MiB, min <= avg <= max).
    pub fn validate(&self, location: &str) -> Result<()> {
        let ok = (64..=1 << 20).contains(&self.min)
            && (256..=4 << 20).contains(&self.avg)
            && (1024..=16 << 20).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(err!(
                Corrupt,
                "repository config at {location} has invalid chunker sizes {self:?}"
            ))
        }
    }
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 64 * 1024,
            avg: 256 * 1024,
            max: 1024 * 1024,
        }
    }
}

/// The `config` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Format version; readers refuse larger values.
    pub version: u32,
    /// Random repository id (32 hex characters); bound into every key slot.
    pub id: String,
    /// When the repository was created (RFC 3339).
    pub created: String,
    /// Content-defined chunking parameters for files and dumps.
    pub chunker: ChunkerParams,
}

impl RepoConfig {
    /// Parses and validates a config object.
    pub fn parse(bytes: &[u8], location: &str) -> Result<RepoConfig> {
        #[derive(Deserialize)]
        struct Probe {
            format: Option<String>,
            version: Option<u32>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|_| not_a_repo(location))?;
        if probe.format.as_deref() != Some(FORMAT_NAME) {
            return Err(not_a_repo(location));
        }
        let version = probe.version.unwrap_or(0);
        if version > REPO_VERSION {
            return Err(newer_version(
                &format!("repository {location}"),
                version,
                REPO_VERSION,
            ));
        }
        if version == 0 {
            return Err(err!(
                Corrupt,
                "repository config at {location} has no valid version"
            ));
        }
        let c: RepoConfig = serde_json::from_slice(bytes)
            .map_err(|e| err!(Corrupt, "repository config at {location} is damaged: {e}"))?;
        c.chunker.validate(location)?;
        Ok(c)
    }

    /// Serialises for storage.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("config serialises");
        v.push(b'\n');
        v
    }
}

fn not_a_repo(location: &str) -> crate::Error {
    err!(
        Repository,
        "{location} is not a lifeboat repository (its config file is not lifeboat's)"
    )
    .with_hint("check the repository path; `lifeboat init` creates a new repository")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn newer_version_is_refused_clearly() {
        let c = RepoConfig {
            format: FORMAT_NAME.into(),
            version: 7,
            id: "00".into(),
            created: "x".into(),
            chunker: ChunkerParams::default(),
        };
        let e = RepoConfig::parse(&c.to_bytes(), "/r").unwrap_err();
        assert!(e.to_string().contains("format version 7"), "{e}");
        assert!(RepoConfig::parse(b"{\"format\":\"restic\"}", "/r").is_err());
    }
}
