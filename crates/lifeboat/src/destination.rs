//! Where a repository lives: a local path or an `s3://BUCKET/PREFIX` URL, with the options a
//! `[repository.NAME]` table adds (endpoint, region, addressing, credentials).
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_core::{Error, ErrorKind, Result, Storage};
use lifeboat_storage::{CachedStorage, LocalStorage, S3Options, S3Storage};

use crate::config::RepositoryConfig;

/// A parsed repository location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory.
    Local(PathBuf),
    /// A bucket and key prefix.
    S3 {
        /// bucket name
        bucket: String,
        /// key prefix (may be empty)
        prefix: String,
    },
}

impl Location {
    /// Parses `s3://bucket/prefix` or a path. `sftp://` is recognised and refused plainly
    /// until it is built.
    pub fn parse(s: &str) -> Result<Location> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(Error::new(
                    ErrorKind::Usage,
                    format!("repository {s:?} names no bucket"),
                )
                .with_hint("write it as s3://BUCKET/PREFIX"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if s.starts_with("sftp://") {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("repository {s:?}: SFTP destinations are not built yet"),
            )
            .with_hint("use a local path or an s3:// URL; SFTP is tracked in issue 5"));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("repository {s:?}: unknown scheme {scheme}://"),
            )
            .with_hint("use a local path or s3://BUCKET/PREFIX"));
        }
        Ok(Location::Local(PathBuf::from(s)))
    }

    /// Opens the storage. `cfg` adds the options of a `[repository.NAME]` table.
    pub fn open(&self, cfg: Option<&RepositoryConfig>) -> Result<Arc<dyn Storage>> {
        match self {
            Location::Local(p) => Ok(Arc::new(LocalStorage::new(p))),
            Location::S3 { bucket, prefix } => {
                let mut o = S3Options::new(bucket, prefix);
                o.endpoint = cfg
                    .and_then(|c| c.endpoint.clone())
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok());
                o.region = cfg.and_then(|c| c.region.clone());
                // Self-hosted stores (an endpoint is set) nearly all need path-style
                // addressing; AWS itself prefers virtual-hosted.
                o.path_style = cfg
                    .and_then(|c| c.path_style)
                    .unwrap_or(o.endpoint.is_some());
                if let Some(c) = cfg {
                    o.access_key_id = c.access_key_id.clone();
                    if let Some(f) = &c.secret_access_key_file {
                        o.secret_access_key = Some(read_secret(f)?);
                    }
                }
                if let Ok(n) = std::env::var("LIFEBOAT_S3_RETRIES") {
                    o.retries = n.parse().map_err(|_| {
                        Error::new(
                            ErrorKind::Usage,
                            format!("LIFEBOAT_S3_RETRIES={n:?} is not a number"),
                        )
                    })?;
                }
                Ok(cached(Arc::new(S3Storage::new(o)?)))
            }
        }
    }
}

/// Remote stores get the local cache of keys, indexes and points (see [`CachedStorage`]).
fn cached(s: Arc<dyn Storage>) -> Arc<dyn Storage> {
    match CachedStorage::default_dir(&s.location()) {
        Some(dir) => Arc::new(CachedStorage::new(s, dir)),
        None => s,
    }
}

fn read_secret(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::io(format!("read secret_access_key_file {}", path.display()), e)
            .with_kind(ErrorKind::Usage)
    })?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("s3://b/a/b/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            Location::parse("s3://b").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            Location::parse("/var/lb").unwrap(),
            Location::Local("/var/lb".into())
        );
        assert!(Location::parse("s3:///x").is_err());
        assert!(Location::parse("ftp://x").is_err());
        assert!(Location::parse("sftp://u@h/p").is_err());
    }
}
