//! Running PostgreSQL's own client programs (`psql`, `pg_dump`, `pg_restore`, `pg_dumpall`)
//! for a [`PgSource`]: where they are, how they connect, and what their failures mean.
//!
//! lifeboat talks to PostgreSQL only through these programs, never through a driver of its
//! own: they are what the operator already has, they work through a wrapper (`docker exec -i
//! db ...`) when the server is only reachable inside a container, and `pg_dump` is the only
//! tool whose output every PostgreSQL version promises to restore.
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use lifeboat_core::{Error, ErrorKind, Result};

/// Where a database is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct PgSource {
    /// libpq connection URI (`postgresql://user@host:5432/db`) or `key=value` string; unset =
    /// the usual `PG*` environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, ...). Its
    /// database part is replaced by [`PgSource::database`].
    pub url: Option<String>,
    /// Database to dump (or, on restore, the original database).
    pub database: String,
    /// Command prefix the client programs run under, e.g. `["docker", "exec", "-i", "db"]`.
    pub wrapper: Vec<String>,
    /// Directory of the client programs (else found on `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// File whose first line is the password (passed as `PGPASSWORD`, never on a command line).
    pub password_file: Option<PathBuf>,
    /// Also dump roles and tablespaces (`pg_dumpall --globals-only`; needs a superuser).
    pub globals: bool,
    /// Dump the schema only, no table data.
    pub schema_only: bool,
    /// On an in-place restore, terminate other sessions of the database instead of refusing.
    pub terminate_connections: bool,
}

/// Rows of a query: fields split on the unit separator.
pub(crate) type Rows = Vec<Vec<String>>;

const SEP: char = '\u{1f}';
const END: &str = "__lifeboat_end_of_reply__";

impl PgSource {
    /// A connection string for `db` on this source's server (the URL's database replaced).
    pub fn conninfo(&self, db: &str) -> String {
        match &self.url {
            None => {
                if db.contains(['=', ' ', '\'']) {
                    format!("dbname={}", quote_conninfo(db))
                } else {
                    db.to_string()
                }
            }
            Some(u) if u.contains("://") => {
                let (base, query) = match u.split_once('?') {
                    Some((b, q)) => (b, Some(q)),
                    None => (u.as_str(), None),
                };
                let start = base.find("://").map_or(0, |i| i + 3);
                let end = base[start..].find('/').map_or(base.len(), |i| start + i);
                // A password in the URL goes to the child as PGPASSWORD (see `command`), never
                // on its command line, where every local user could read it in /proc.
                let authority = match url_password(u) {
                    Some(_) => {
                        let auth = &base[start..end];
                        let (user, host) = auth.rsplit_once('@').expect("password implies @");
                        let user = user.split(':').next().unwrap_or(user);
                        format!("{}{user}@{host}", &base[..start])
                    }
                    None => base[..end].to_string(),
                };
                let mut out = format!("{authority}/{}", percent_encode(db));
                // `password=` goes to PGPASSWORD too; `dbname=` would override the database.
                let kept: Vec<&str> = query
                    .unwrap_or("")
                    .split('&')
                    .filter(|kv| {
                        !kv.is_empty() && !kv.starts_with("password=") && !kv.starts_with("dbname=")
                    })
                    .collect();
                if !kept.is_empty() {
                    out.push('?');
                    out.push_str(&kept.join("&"));
                }
                out
            }
            // In key=value strings a later keyword overrides an earlier one. The string is
            // parsed as libpq does (quoted values, escapes, spaces around `=`) and written
            // back without `password` (it goes to PGPASSWORD) and `dbname`. A string libpq
            // would refuse keeps what parsed and gets a keyword libpq refuses by name, so no
            // part of a password is ever passed on along a command line.
            Some(kv) => {
                let (pairs, ok) = parse_conninfo(kv);
                let mut out: Vec<String> = pairs
                    .iter()
                    .filter(|(k, _)| k != "password" && k != "dbname")
                    .map(|(k, v)| format!("{k}={}", quote_conninfo(v)))
                    .collect();
                if !ok {
                    out.push("lifeboat_unparsable_url=1".into());
                }
                out.push(format!("dbname={}", quote_conninfo(db)));
                out.join(" ")
            }
        }
    }

    /// How the database is named in points and messages: the connection without password or
    /// options (`postgresql://user@host:5432/db`).
    pub fn label(&self) -> String {
        let host = match &self.url {
            Some(u) if u.contains("://") => {
                let base = u.split('?').next().unwrap_or(u);
                let start = base.find("://").map_or(0, |i| i + 3);
                let end = base[start..].find('/').map_or(base.len(), |i| start + i);
                let auth = &base[start..end];
                match auth.rsplit_once('@') {
                    Some((user, host)) => {
                        format!("{}@{host}", user.split(':').next().unwrap_or(user))
                    }
                    None => auth.to_string(),
                }
            }
            Some(_) => String::new(),
            None => {
                let v = |k: &str| std::env::var(k).ok().filter(|s| !s.is_empty());
                let mut h = v("PGUSER").map(|u| format!("{u}@")).unwrap_or_default();
                h.push_str(&v("PGHOST").unwrap_or_default());
                if let Some(p) = v("PGPORT") {
                    h.push_str(&format!(":{p}"));
                }
                h
            }
        };
        format!("postgresql://{host}/{}", self.database)
    }

    /// A command running client program `tool` (through the wrapper, with the password).
    pub(crate) fn command(&self, tool: &str) -> Result<Command> {
        let program = match &self.bin_dir {
            Some(d) => d.join(tool).display().to_string(),
            None => tool.to_string(),
        };
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // lifeboat's own secrets stay with lifeboat; PGPASSWORD below is set on purpose.
        crate::util::scrub_child_env(&mut cmd);
        if let Some(f) = &self.password_file {
            let text = std::fs::read_to_string(f).map_err(|e| {
                Error::io(format!("read password_file {}", f.display()), e)
                    .with_kind(ErrorKind::Usage)
            })?;
            cmd.env("PGPASSWORD", text.lines().next().unwrap_or_default());
        } else if let Some(pw) = self.url.as_deref().and_then(url_password) {
            cmd.env("PGPASSWORD", pw);
        }
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            cmd.env("PGCONNECT_TIMEOUT", "15");
        }
        cmd.env("PGAPPNAME", "lifeboat");
        Ok(cmd)
    }

    /// The major version of client program `tool` (`pg_dump --version`).
    pub(crate) fn tool_major(&self, tool: &str) -> Result<u32> {
        let mut cmd = self.command(tool)?;
        cmd.arg("--version");
        let out = spawn(cmd, tool, self, Stdio::null())?
            .wait_with_output()
            .map_err(|e| Error::io(format!("run {tool} --version"), e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        text.split(')')
            .nth(1)
            .and_then(|rest| rest.trim().split(['.', ' ']).next())
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Source,
                    format!(
                        "{tool} --version printed {:?}, not a PostgreSQL version",
                        text.trim()
                    ),
                )
                .with_hint("set bin_dir (or the wrapper) to PostgreSQL's client programs")
            })
    }

    /// Runs a SQL script with `psql` on database `db` and returns its rows. Statements run one
    /// by one (so `CREATE DATABASE` works); the first error stops the script.
    pub fn psql(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut s = Session::open(self, db)?;
        let rows = s.query(sql)?;
        s.close()?;
        Ok(rows)
    }
}

/// Starts `cmd`, with a clear error when the program is missing.
/// stdout and stderr are pipes; stdin is `stdin`.
pub(crate) fn spawn(mut cmd: Command, tool: &str, src: &PgSource, stdin: Stdio) -> Result<Child> {
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().map_err(|e| {
        let what = if src.wrapper.is_empty() {
            tool.to_string()
        } else {
            format!("{} ({})", src.wrapper.join(" "), tool)
        };
        let err = Error::io(format!("start {what}"), e).with_kind(ErrorKind::Source);
        if src.wrapper.is_empty() {
            err.with_hint(format!(
                "install PostgreSQL's client programs (postgresql-client) or set bin_dir to the directory holding {tool}"
            ))
        } else {
            err.with_hint("check the wrapper command (`command = [...]`)")
        }
    })
}

/// Collects a child's stderr on a thread (so a chatty child never blocks on a full pipe);
/// keeps the last 64 KiB.
pub(crate) struct StderrTail {
    text: Arc<Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl StderrTail {
    pub(crate) fn start(child: &mut Child) -> StderrTail {
        let text = Arc::new(Mutex::new(String::new()));
        let thread = child.stderr.take().map(|mut e| {
            let text = Arc::clone(&text);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = e.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut t = text.lock().expect("stderr lock");
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if t.len() > 64 << 10 {
                        let cut = t.len() - (48 << 10);
                        let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                        t.replace_range(..cut, "...");
                    }
                }
            })
        });
        StderrTail { text, thread }
    }

    /// Everything collected, after the child closed its stderr.
    pub(crate) fn finish(mut self) -> String {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let t = self.text.lock().expect("stderr lock");
        t.trim().to_string()
    }
}

/// Turns a failed client program's stderr into an error that says what to do.
pub(crate) fn tool_error(src: &PgSource, tool: &str, status: &str, stderr: &str) -> Error {
    let first = stderr
        .lines()
        .find(|l| l.contains("error:") || l.contains("FATAL") || l.contains("ERROR"))
        .or_else(|| stderr.lines().next())
        .unwrap_or("")
        .trim();
    let msg = format!(
        "{tool} for {} failed ({status}){}",
        src.label(),
        if first.is_empty() {
            String::new()
        } else {
            format!(": {first}")
        }
    );
    let lower = stderr.to_lowercase();
    let (kind, hint): (ErrorKind, &str) = if lower.contains("password authentication failed")
        || lower.contains("no password supplied")
    {
        (
            ErrorKind::Source,
            "check the password (password_file, PGPASSWORD or ~/.pgpass) and the user",
        )
    } else if lower.contains("does not exist") && lower.contains("database") {
        (
            ErrorKind::Source,
            "check the database name (database/databases, the URL's path or PGDATABASE)",
        )
    } else if lower.contains("connection refused")
        || lower.contains("could not connect")
        || lower.contains("could not translate host name")
        || lower.contains("timeout expired")
    {
        (
            ErrorKind::Source,
            "is the server running and reachable? check url / PGHOST / PGPORT",
        )
    } else if lower.contains("server version mismatch") {
        (
            ErrorKind::Refused,
            "pg_dump must be at least as new as the server: install the newer client or set bin_dir",
        )
    } else if lower.contains("permission denied") {
        (
            ErrorKind::Source,
            "the user lacks a privilege the dump needs (globals need a superuser); use a role that owns the database",
        )
    } else {
        (
            ErrorKind::Source,
            "see the message above from PostgreSQL's tool",
        )
    };
    let mut e = Error::new(kind, msg).with_hint(hint);
    if lower.contains("connection refused") || lower.contains("timeout expired") {
        e = e.retryable();
    }
    if stderr.lines().count() > 1 {
        tracing::warn!(tool, "full output of the failed {tool}:\n{stderr}");
    }
    e
}

/// One `psql` process kept open for a conversation: used to hold the snapshot a dump reads.
/// Every client program runs with `--no-password`: an unattended backup must fail with "no
/// password supplied", never wait at a prompt.
pub(crate) struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    err: Option<StderrTail>,
    src: PgSource,
}

impl Session {
    pub(crate) fn open(src: &PgSource, db: &str) -> Result<Session> {
        let mut cmd = src.command("psql")?;
        cmd.args([
            "-X",
            "-q",
            "--no-password",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
        ])
        .arg(SEP.to_string())
        .arg(format!("--dbname={}", src.conninfo(db)));
        let mut child = spawn(cmd, "psql", src, Stdio::piped())?;
        let err = StderrTail::start(&mut child);
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Session {
            child,
            stdin,
            out,
            err: Some(err),
            src: src.clone(),
        })
    }

    /// Sends `sql` and reads every row it prints, up to an end marker. The script is written
    /// from a thread while the rows are read: a long script (a count per table for thousands
    /// of tables) would otherwise fill both pipes and hang.
    pub(crate) fn query(&mut self, sql: &str) -> Result<Rows> {
        let mut stdin = self.stdin.take().expect("open session");
        let script = format!("{sql}\n\\echo {END}\n");
        let writer = std::thread::spawn(move || {
            let r = stdin
                .write_all(script.as_bytes())
                .and_then(|_| stdin.flush());
            (stdin, r)
        });
        let rows = self.read_reply();
        let (stdin, sent) = writer.join().expect("psql writer thread");
        self.stdin = Some(stdin);
        match (rows, sent) {
            (Some(rows), Ok(())) => Ok(rows),
            _ => Err(self.failed()),
        }
    }

    /// Rows up to the end marker; None if psql stopped first.
    fn read_reply(&mut self) -> Option<Rows> {
        let mut rows = Vec::new();
        {
            let mut line = String::new();
            loop {
                line.clear();
                match self.out.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let l = line.trim_end_matches('\n');
                if l == END {
                    return Some(rows);
                }
                rows.push(l.split(SEP).map(str::to_string).collect());
            }
        }
        None
    }

    fn failed(&mut self) -> Error {
        drop(self.stdin.take());
        let status = self
            .child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let stderr = self.err.take().map(StderrTail::finish).unwrap_or_default();
        tool_error(&self.src, "psql", &status, &stderr)
    }

    /// Ends the session (`\q`) and checks that psql exited cleanly.
    pub(crate) fn close(mut self) -> Result<()> {
        if let Some(mut s) = self.stdin.take() {
            let _ = writeln!(s, "\\q");
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io("wait for psql", e))?;
        let stderr = self.err.take().map(StderrTail::finish).unwrap_or_default();
        if !status.success() {
            return Err(tool_error(&self.src, "psql", &status.to_string(), &stderr));
        }
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The database a `postgresql://.../NAME` URL names (percent-decoded), if any.
pub fn url_database(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1.split('?').next()?;
    let db = rest.split_once('/')?.1;
    (!db.is_empty()).then(|| percent_decode(db))
}

/// `url` without any password it carries (what may be stored in a point): a URL keeps its
/// database, a key=value string its other keywords. Unchanged when it has none.
pub fn url_without_password(url: &str) -> String {
    if url_password(url).is_none() {
        return url.to_string();
    }
    let database = if url.contains("://") {
        url_database(url).unwrap_or_default()
    } else {
        parse_conninfo(url)
            .0
            .into_iter()
            .rev()
            .find(|(k, _)| k == "dbname")
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    let src = PgSource {
        url: Some(url.to_string()),
        database,
        wrapper: Vec::new(),
        bin_dir: None,
        password_file: None,
        globals: false,
        schema_only: false,
        terminate_connections: false,
    };
    src.conninfo(&src.database)
}

/// The password a connection string carries: `user:password@` or `?password=` of a URL
/// (percent-decoded), or a `password=` word of a key=value string.
fn url_password(url: &str) -> Option<String> {
    if !url.contains("://") {
        // A later keyword overrides an earlier one, as in libpq.
        return parse_conninfo(url)
            .0
            .into_iter()
            .rev()
            .find(|(k, _)| k == "password")
            .map(|(_, v)| v);
    }
    if let Some(q) = url.split_once('?').map(|(_, q)| q) {
        if let Some(p) = q.split('&').find_map(|kv| kv.strip_prefix("password=")) {
            return Some(percent_decode(p));
        }
    }
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, pw) = userinfo.split_once(':')?;
    Some(percent_decode(pw))
}

/// Undoes `%XX` escapes (invalid ones are kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `'...'` quoting for key=value connection strings.
/// The `keyword = value` pairs of a libpq key=value connection string, parsed as libpq's
/// `conninfo_parse` does: whitespace around `=` is allowed; a value is either single-quoted
/// (ends at the first unescaped `'`) or runs to the next whitespace; in both, a backslash
/// takes the next character literally. `false` with the pairs parsed so far when libpq would
/// refuse the string (a keyword without `=`, an unterminated quote).
fn parse_conninfo(s: &str) -> (Vec<(String, String)>, bool) {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    let skip_ws = |it: &mut std::iter::Peekable<std::str::Chars>| {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
    };
    loop {
        skip_ws(&mut it);
        if it.peek().is_none() {
            return (out, true);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c.is_whitespace() || c == '=' {
                break;
            }
            key.push(c);
            it.next();
        }
        skip_ws(&mut it);
        if it.next() != Some('=') {
            return (out, false);
        }
        skip_ws(&mut it);
        let mut val = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => return (out, false),
                    Some('\'') => break,
                    Some('\\') => match it.next() {
                        Some(c) => val.push(c),
                        None => return (out, false),
                    },
                    Some(c) => val.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = it.next() {
                        val.push(n);
                    }
                } else {
                    val.push(c);
                }
            }
        }
        out.push((key, val));
    }
}

fn quote_conninfo(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SQL identifier in double quotes.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's programs (and a wrapper) never inherit lifeboat's secrets; the password
    /// lifeboat means to pass (`PGPASSWORD`) is still set.
    #[test]
    fn client_programs_inherit_no_lifeboat_secret() {
        let s = PgSource {
            url: Some("postgresql://u:pw@db.lan/app".into()),
            database: "app".into(),
            wrapper: vec!["docker".into(), "exec".into(), "-i".into(), "db".into()],
            ..Default::default()
        };
        for tool in ["pg_dump", "psql", "pg_restore"] {
            let cmd = s.command(tool).unwrap();
            let env: Vec<_> = cmd.get_envs().collect();
            for k in [
                "LIFEBOAT_PASSWORD",
                "LIFEBOAT_NEW_PASSWORD",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
            ] {
                assert!(
                    env.contains(&(std::ffi::OsStr::new(k), None)),
                    "{tool}: {k} is not removed: {env:?}"
                );
            }
            assert!(env.contains(&(
                std::ffi::OsStr::new("PGPASSWORD"),
                Some(std::ffi::OsStr::new("pw"))
            )));
        }
    }

    #[test]
    fn url_without_password_keeps_everything_else() {
        use super::url_without_password as strip;
        let u = strip("postgresql://app:s3cr%40t@db.local:5433/chat?sslmode=require&password=x");
        assert!(!u.contains("s3cr") && !u.contains("password"), "{u}");
        assert!(
            u.contains("app@db.local:5433/chat") && u.contains("sslmode=require"),
            "{u}"
        );
        let kv = strip("host=db password='a b' dbname=chat user=app");
        assert!(!kv.contains("a b") && !kv.contains("password"), "{kv}");
        assert!(
            kv.contains("host=") && kv.contains("chat") && kv.contains("app"),
            "{kv}"
        );
        assert_eq!(
            strip("postgresql://app@db/chat"),
            "postgresql://app@db/chat"
        );
    }

    #[test]
    fn conninfo_replaces_the_database_and_keeps_the_rest() {
        let s = PgSource {
            url: Some("postgresql://u:pw@db.lan:5433/app?sslmode=require".into()),
            database: "app".into(),
            ..Default::default()
        };
        // The password never goes on a command line.
        assert_eq!(
            s.conninfo("app_new"),
            "postgresql://u@db.lan:5433/app_new?sslmode=require"
        );
        assert_eq!(
            s.conninfo("a b"),
            "postgresql://u@db.lan:5433/a%20b?sslmode=require"
        );
        let cmd = s.command("psql").unwrap();
        let env: Vec<_> = cmd.get_envs().collect();
        assert!(env.contains(&(
            std::ffi::OsStr::new("PGPASSWORD"),
            Some(std::ffi::OsStr::new("pw"))
        )));
        assert_eq!(
            url_password("postgresql://u:p%40ss@h/d").as_deref(),
            Some("p@ss")
        );
        assert_eq!(url_password("postgresql://u@h/d"), None);
        // Passwords in the query or in key=value strings never reach a command line either.
        let q = PgSource {
            url: Some("postgresql://u@h/d?sslmode=require&password=s%3Dcret&dbname=other".into()),
            database: "d".into(),
            ..Default::default()
        };
        assert_eq!(q.conninfo("x"), "postgresql://u@h/x?sslmode=require");
        assert_eq!(
            url_password(q.url.as_deref().unwrap()).as_deref(),
            Some("s=cret")
        );
        let kv = PgSource {
            url: Some("host=h user=u password=pw".into()),
            database: "d".into(),
            ..Default::default()
        };
        assert_eq!(kv.conninfo("x"), "host='h' user='u' dbname='x'");
        assert_eq!(url_password("host=h password=pw").as_deref(), Some("pw"));
        assert_eq!(
            url_database("postgresql://h:1/my%20db?x=1").as_deref(),
            Some("my db")
        );
        assert_eq!(url_database("postgresql://h:1"), None);
        assert_eq!(s.label(), "postgresql://u@db.lan:5433/app");
        let s = PgSource {
            url: Some("postgresql://h".into()),
            database: "x".into(),
            ..Default::default()
        };
        assert_eq!(s.conninfo("x"), "postgresql://h/x");
        let s = PgSource {
            url: Some("host=h user=u".into()),
            database: "x".into(),
            ..Default::default()
        };
        assert_eq!(s.conninfo("it's"), "host='h' user='u' dbname='it\\'s'");
        let s = PgSource::default();
        assert_eq!(s.conninfo("plain"), "plain");
        assert_eq!(s.conninfo("a=b"), "dbname='a=b'");
    }

    /// Issue 12 item 5: `password='a b'` in a key=value string left `b'` on pg_dump's argv.
    /// The whole password goes to PGPASSWORD and no part of it stays in the conninfo.
    #[test]
    fn key_value_passwords_are_parsed_as_libpq_does() {
        for (url, pw) in [
            ("host=h password='a b' user=u", "a b"),
            ("host=h password = 'it\\'s' user=u", "it's"),
            ("host=h password=plain user=u", "plain"),
            ("host=h password=back\\ slash user=u", "back slash"),
        ] {
            let s = PgSource {
                url: Some(url.into()),
                database: "d".into(),
                ..Default::default()
            };
            assert_eq!(url_password(url).as_deref(), Some(pw), "{url}");
            let c = s.conninfo("x");
            assert_eq!(c, "host='h' user='u' dbname='x'", "{url}");
            let cmd = s.command("pg_dump").unwrap();
            assert!(cmd
                .get_envs()
                .any(|(k, v)| k == "PGPASSWORD" && v == Some(std::ffi::OsStr::new(pw))));
        }
        // Later keywords win, as in libpq; a string libpq refuses stays refused.
        assert_eq!(
            url_password("password=a password='b c'").as_deref(),
            Some("b c")
        );
        let bad = PgSource {
            url: Some("host=h password='a b".into()),
            database: "d".into(),
            ..Default::default()
        };
        assert_eq!(
            bad.conninfo("x"),
            "host='h' lifeboat_unparsable_url=1 dbname='x'"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
