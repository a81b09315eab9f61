//! An app's own post-restore checks, beyond SQLite's (`PRAGMA integrity_check`, checksum, row
//! counts): smoke queries on the restored SQLite databases and a health URL polled after the
//! start hook. `[app.NAME.checks]`:
//!
//! ```toml
//! [app.chat.checks]
//! sql = ["SELECT count(*) FROM users"]     # on the app's SQLite database (it has one)
//! health_url = "http://127.0.0.1:8080/health"
//! health_timeout = "60s"                   # default 60 s
//! [app.chat.checks.sql_on]                 # an app with several SQLite databases
//! "/srv/chat/jobs.db" = ["SELECT count(*) FROM jobs"]
//! ```
//!
//! A smoke query passes when its first row's first value is not zero, NULL, empty or `'0'`;
//! it runs on a connection with `PRAGMA query_only` (it cannot change the database).
//! PostgreSQL databases get no smoke queries yet (a config naming them is refused).
//!
//! The health check is a plain HTTP/1.0 GET (`http://` only; the endpoint is the app's own,
//! on this machine), written over `std::net::TcpStream` rather than pulling an HTTP client
//! into the app layer: only the status line is read (at most [`STATUS_BYTES`]), every connect
//! and read is bounded by the time left, and it is retried every [`POLL_EVERY`] until a 2xx
//! or `health_timeout`.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lifeboat_core::{Error, ErrorKind, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;

use crate::hooks::de_duration;

/// How long the health URL is polled when `health_timeout` is not set.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two health requests.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// The most of a health answer read (its status line must be in it).
pub const STATUS_BYTES: usize = 8192;

/// `[app.NAME.checks]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecksConfig {
    /// Smoke queries on the app's SQLite database (the app must have exactly one).
    #[serde(default)]
    pub sql: Vec<String>,
    /// Smoke queries per SQLite database (its path, as in `sqlite = [...]`).
    #[serde(default)]
    pub sql_on: BTreeMap<PathBuf, Vec<String>>,
    /// Polled after the start hook of an in-place restore until it answers 2xx.
    pub health_url: Option<String>,
    /// How long `health_url` may take to answer 2xx (default [`DEFAULT_HEALTH_TIMEOUT`]).
    #[serde(default, deserialize_with = "de_duration")]
    pub health_timeout: Option<Duration>,
}

impl ChecksConfig {
    /// The first problem of this table for an app with these SQLite databases, as
    /// `(key, message)`.
    pub(crate) fn problem(&self, sqlite: &[PathBuf]) -> Option<(&'static str, String)> {
        if !self.sql.is_empty() && sqlite.len() != 1 {
            return Some((
                "sql",
                if sqlite.is_empty() {
                    "smoke queries run on SQLite databases only, and the app has none (PostgreSQL is not supported yet)".into()
                } else {
                    format!(
                        "the app has {} SQLite databases: give each its queries in [app.NAME.checks.sql_on] instead",
                        sqlite.len()
                    )
                },
            ));
        }
        if let Some(p) = self.sql_on.keys().find(|p| !sqlite.contains(p)) {
            return Some((
                "sql_on",
                format!("{} is not one of the app's sqlite databases", p.display()),
            ));
        }
        if self
            .sql
            .iter()
            .chain(self.sql_on.values().flatten())
            .any(|q| q.trim().is_empty())
        {
            return Some(("sql", "a query is empty".into()));
        }
        if let Some(u) = &self.health_url {
            if let Err(m) = HealthUrl::parse(u) {
                return Some(("health_url", m));
            }
        }
        if self.health_timeout.is_some_and(|t| t.is_zero()) {
            return Some(("health_timeout", "must be more than zero".into()));
        }
        None
    }

    /// Makes `sql_on`'s relative paths relative to `base` (the config file's directory).
    pub(crate) fn absolutize(&mut self, base: &Path) {
        self.sql_on = std::mem::take(&mut self.sql_on)
            .into_iter()
            .map(|(p, q)| (if p.is_relative() { base.join(p) } else { p }, q))
            .collect();
    }

    /// What a restore checks, for an app with these SQLite databases (validated).
    pub(crate) fn plan(&self, sqlite: &[PathBuf]) -> Checks {
        let mut sql: Vec<(PathBuf, Vec<String>)> = self
            .sql_on
            .iter()
            .map(|(p, q)| (p.clone(), q.clone()))
            .collect();
        if !self.sql.is_empty() {
            if let Some(db) = sqlite.first() {
                sql.push((db.clone(), self.sql.clone()));
            }
        }
        Checks {
            sql,
            health: self.health_url.as_deref().and_then(|u| {
                HealthUrl::parse(u)
                    .ok()
                    .map(|h| (h, self.health_timeout.unwrap_or(DEFAULT_HEALTH_TIMEOUT)))
            }),
        }
    }
}

/// The checks a restore runs (from the local config only).
#[derive(Debug, Clone, Default)]
pub(crate) struct Checks {
    /// Smoke queries per database (its path in the point).
    pub sql: Vec<(PathBuf, Vec<String>)>,
    /// The health URL and how long it may take.
    pub health: Option<(HealthUrl, Duration)>,
}

/// Runs each smoke query on the database at `db` (where a restore wrote it): returns one line
/// per query that passed, or an error of kind `Verify` naming the query that did not.
pub(crate) fn smoke(db: &Path, queries: &[String]) -> Result<Vec<String>> {
    let fail = |m: String| {
        Error::new(
            ErrorKind::Verify,
            format!("smoke query on {}: {m}", db.display()),
        )
    };
    // Read-only and `immutable=1`: the app is stopped (or this is a copy), the restored file
    // has no side files, and the check must not create any (as root, a -shm owned by root
    // would lock the app out of its own database) nor write. No symlink is followed.
    let conn = Connection::open_with_flags(
        lifeboat_sources::sqlite::immutable_uri(db),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NOFOLLOW
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| fail(format!("cannot open: {e}")))?;
    conn.execute_batch("PRAGMA query_only = 1")
        .map_err(|e| fail(e.to_string()))?;
    let mut passed = Vec::new();
    for q in queries {
        let v: Value = conn.query_row(q, [], |r| r.get(0)).map_err(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => fail(format!(
                "`{q}` returned no row (a check must return a non-zero first value)"
            )),
            e => fail(format!("`{q}` failed: {e}")),
        })?;
        let (ok, shown) = match &v {
            Value::Null => (false, "NULL".to_string()),
            Value::Integer(i) => (*i != 0, i.to_string()),
            Value::Real(f) => (*f != 0.0, f.to_string()),
            Value::Text(t) => (!t.is_empty() && t != "0", format!("{t:?}")),
            Value::Blob(b) => (!b.is_empty(), format!("a blob of {} bytes", b.len())),
        };
        if !ok {
            return Err(fail(format!(
                "`{q}` returned {shown} (a check must return a non-zero first value)"
            )));
        }
        passed.push(format!("smoke query `{q}` on {}: {shown}", db.display()));
    }
    Ok(passed)
}

/// An `http://HOST[:PORT]/PATH` URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthUrl {
    text: String,
    host: String,
    port: u16,
    path: String,
}

impl HealthUrl {
    pub(crate) fn parse(s: &str) -> std::result::Result<HealthUrl, String> {
        let rest = if let Some(r) = s.strip_prefix("http://") {
            r
        } else if s.starts_with("https://") {
            return Err("https is not supported: the check speaks plain HTTP to the app on this machine (http://127.0.0.1:PORT/PATH)".into());
        } else {
            return Err(format!("{s:?} is not an http:// URL"));
        };
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{s:?} holds a space or a control character"));
        }
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.contains('@') {
            return Err("a user name or password in the URL is not supported".into());
        }
        let (host, port) = if let Some(r) = auth.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or("unclosed [ in the host")?;
            (h, after.strip_prefix(':'))
        } else {
            match auth.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (auth, None),
            }
        };
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{p:?} is not a port"))?,
            None => 80,
        };
        Ok(HealthUrl {
            text: s.to_string(),
            host: host.to_string(),
            port,
            path: path.split('#').next().unwrap_or("/").to_string(),
        })
    }

    /// The URL as configured.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// One GET within `deadline`: the status code, or why there is none.
    fn get(&self, deadline: Instant) -> std::result::Result<u16, String> {
        let left = || {
            deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| "no answer in time".to_string())
        };
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .collect();
        let mut last = format!("{} resolves to no address", self.host);
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, left()?) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = format!("connect to {a}: {e}"),
            }
        }
        let mut stream = stream.ok_or(last)?;
        let host = if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let req = format!(
            "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: lifeboat/{}\r\nConnection: close\r\n\r\n",
            self.path,
            env!("CARGO_PKG_VERSION")
        );
        stream
            .set_write_timeout(Some(left()?))
            .and_then(|_| stream.write_all(req.as_bytes()))
            .map_err(|e| format!("send the request: {e}"))?;
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(2).any(|w| w == b"\r\n") && got.len() < STATUS_BYTES {
            stream
                .set_read_timeout(Some(left()?))
                .map_err(|e| e.to_string())?;
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n.min(STATUS_BYTES - got.len())]),
                Err(e) => return Err(format!("read the answer: {e}")),
            }
        }
        let line = String::from_utf8_lossy(&got);
        let line = line.lines().next().unwrap_or("");
        let mut parts = line.split_whitespace();
        match (
            parts.next(),
            parts.next().and_then(|c| c.parse::<u16>().ok()),
        ) {
            (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
            _ => Err(format!(
                "not an HTTP answer: {:?}",
                line.chars().take(80).collect::<String>()
            )),
        }
    }
}

/// Polls `url` until it answers 2xx (returns a line saying so) or `timeout` has passed (an
/// error of kind `Verify` with the last answer or failure).
pub(crate) fn wait_healthy(url: &HealthUrl, timeout: Duration) -> Result<String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let last = match url.get(deadline) {
            Ok(code) if (200..300).contains(&code) => {
                return Ok(format!(
                    "health {}: HTTP {code} after {}",
                    url.as_str(),
                    crate::duration_ms(started.elapsed().as_millis() as u64)
                ))
            }
            Ok(code) => format!("HTTP {code}"),
            Err(e) => e,
        };
        tracing::info!("health {} (try {tries}): {last}", url.as_str());
        if Instant::now() + POLL_EVERY >= deadline {
            return Err(Error::new(
                ErrorKind::Verify,
                format!(
                    "health check {} did not answer 2xx within {} ({tries} tries; the last: {last})",
                    url.as_str(),
                    crate::duration_ms(timeout.as_millis() as u64)
                ),
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_urls() {
        let u = HealthUrl::parse("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        let u = HealthUrl::parse("http://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        let u = HealthUrl::parse("http://localhost").unwrap();
        assert_eq!(u.path, "/");
        for bad in [
            "https://x/",
            "ftp://x/",
            "http://u:p@x/",
            "http://x:port/",
            "http:///p",
            "http://x/a b",
            "http://x/\r\nX: y",
        ] {
            assert!(HealthUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn smoke_queries_need_a_non_zero_first_value() {
        let d = tempfile::tempdir().unwrap();
        let db = d.path().join("a.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE users(id INTEGER PRIMARY KEY); CREATE TABLE empty(x);")
            .unwrap();
        c.execute("INSERT INTO users VALUES (1)", []).unwrap();
        drop(c);
        let ok = smoke(
            &db,
            &["SELECT count(*) FROM users".into(), "SELECT 'yes'".into()],
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        for (q, want) in [
            ("SELECT count(*) FROM empty", "returned 0"),
            ("SELECT NULL", "returned NULL"),
            ("SELECT '0'", "returned \"0\""),
            ("SELECT x FROM empty", "returned no row"),
            ("SELECT * FROM nope", "no such table"),
            ("DELETE FROM users", "failed"),
        ] {
            let e = smoke(&db, &[q.to_string()]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Verify);
            assert!(e.to_string().contains(want), "{q}: {e}");
        }
        // No side file was created, and the DELETE changed nothing.
        for side in ["a.db-wal", "a.db-shm", "a.db-journal"] {
            assert!(!d.path().join(side).exists(), "{side}");
        }
        let c = Connection::open(&db).unwrap();
        let n: i64 = c
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }
}
