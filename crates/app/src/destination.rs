//! Where a repository lives: a local path, an `s3://BUCKET/PREFIX` URL or an
//! `sftp://USER@HOST[:PORT]/PATH` URL, with the options a `[repository.NAME]` table adds
//! (S3: endpoint, region, addressing, credentials; SFTP: identity file, known_hosts, pinned
//! host key fingerprint).
//!
//! SFTP paths: `sftp://u@h/srv/backups` is the absolute `/srv/backups`;
//! `sftp://u@h/~/backups` is `backups` in the login directory.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lifeboat_core::{Error, ErrorKind, Result, Storage};
use lifeboat_storage::{
    CachedStorage, LocalStorage, S3Options, S3Storage, SftpOptions, SftpStorage,
};

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
    /// A directory on an SFTP server.
    Sftp {
        /// login user
        user: String,
        /// host name or address
        host: String,
        /// port
        port: u16,
        /// directory (absolute, or relative to the login directory)
        path: String,
    },
}

impl Location {
    /// Parses `s3://bucket/prefix`, `sftp://user@host[:port]/path` or a path.
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
        if let Some(rest) = s.strip_prefix("sftp://") {
            let bad = |why: &str| {
                Error::new(ErrorKind::Usage, format!("repository {s:?}: {why}"))
                    .with_hint("write it as sftp://USER@HOST[:PORT]/PATH (PATH absolute, or ~/PATH in the login directory)")
            };
            let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no path"))?;
            let (user, hostport) = authority
                .split_once('@')
                .ok_or_else(|| bad("no user (USER@HOST)"))?;
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
                None => (hostport, 22),
            };
            if user.is_empty() || host.is_empty() || path.is_empty() {
                return Err(bad("user, host and path are all needed"));
            }
            let path = match path.strip_prefix("~/") {
                Some(rel) => rel.to_string(),
                None => format!("/{path}"),
            };
            return Ok(Location::Sftp {
                user: user.to_string(),
                host: host.to_string(),
                port,
                path: path.trim_end_matches('/').to_string(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("repository {s:?}: unknown scheme {scheme}://"),
            )
            .with_hint("use a local path, s3://BUCKET/PREFIX or sftp://USER@HOST/PATH"));
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
                if let Some(n) = retries_from_env("LIFEBOAT_S3_RETRIES")? {
                    o.retries = n;
                }
                Ok(cached(Arc::new(S3Storage::new(o)?)))
            }
            Location::Sftp {
                user,
                host,
                port,
                path,
            } => {
                let mut o = SftpOptions::new(host, user, path);
                o.port = *port;
                let env_path = |k: &str| std::env::var_os(k).map(std::path::PathBuf::from);
                o.identity_file = cfg
                    .and_then(|c| c.identity_file.clone())
                    .or_else(|| env_path("LIFEBOAT_SFTP_IDENTITY_FILE"));
                o.known_hosts = cfg
                    .and_then(|c| c.known_hosts.clone())
                    .or_else(|| env_path("LIFEBOAT_SFTP_KNOWN_HOSTS"));
                o.host_key_fingerprint = cfg
                    .and_then(|c| c.host_key_fingerprint.clone())
                    .or_else(|| std::env::var("LIFEBOAT_SFTP_HOST_KEY_FINGERPRINT").ok());
                if let Some(n) = retries_from_env("LIFEBOAT_SFTP_RETRIES")? {
                    o.retries = n;
                }
                Ok(cached(Arc::new(SftpStorage::new(o)?)))
            }
        }
    }
}

fn retries_from_env(var: &str) -> Result<Option<usize>> {
    match std::env::var(var) {
        Ok(n) => n
            .parse()
            .map(Some)
            .map_err(|_| Error::new(ErrorKind::Usage, format!("{var}={n:?} is not a number"))),
        Err(_) => Ok(None),
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
        assert_eq!(
            Location::parse("sftp://lb@backup.example:2222/srv/lb/").unwrap(),
            Location::Sftp {
                user: "lb".into(),
                host: "backup.example".into(),
                port: 2222,
                path: "/srv/lb".into()
            }
        );
        assert_eq!(
            Location::parse("sftp://lb@h/~/backups").unwrap(),
            Location::Sftp {
                user: "lb".into(),
                host: "h".into(),
                port: 22,
                path: "backups".into()
            }
        );
        assert!(Location::parse("sftp://h/p").is_err());
        assert!(Location::parse("sftp://u@h:x/p").is_err());
    }
}
