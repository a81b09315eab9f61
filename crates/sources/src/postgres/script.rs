//! Keeps a point's SQL scripts (`globals.sql`) away from psql's meta-commands.
//!
//! `globals.sql` is piped to `psql`, which runs any backslash command it finds outside
//! quotes and comments: `\! id` runs a shell, `\o FILE` and `\w FILE` write files, a
//! backtick in a meta-command's argument runs a shell. A point comes from anyone with the
//! password, so before the script reaches psql it is lexed as psql lexes it and refused if a
//! backslash appears where psql would read a meta-command.
//!
//! Allowed: `\restrict KEY` and `\unrestrict KEY` alone on their line with an alphanumeric
//! key: `pg_dumpall --globals-only` from PostgreSQL 13.22/14.19/15.14/16.10/17.6 on writes
//! them (they only disable meta-commands until the matching `\unrestrict`). Nothing else:
//! pg_dumpall's globals contain no other meta-command.
//!
//! A backslash inside an ordinary `'...'` string is refused too: whether it escapes the next
//! quote depends on `standard_conforming_strings`, which the script itself can turn off, so
//! psql and this lexer could disagree about where the string ends. pg_dumpall writes such a
//! value as `E'...'` when it matters and never with standard strings off.

/// Where the first forbidden backslash is, or the first byte that could make psql read the
/// script differently from this lexer: its 1-based line and that line (shortened).
pub(crate) fn meta_command(sql: &[u8]) -> Option<(usize, String)> {
    let at = match (unsafe_bytes(sql), first_backslash(sql)) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let line = sql[..at].iter().filter(|b| **b == b'\n').count() + 1;
    let start = sql[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let end = sql[at..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(sql.len(), |i| at + i);
    let text: String = String::from_utf8_lossy(&sql[start..end])
        .chars()
        .take(80)
        .collect();
    Some((line, text.escape_default().to_string()))
}

/// The offset of the first thing that would let psql split the script differently from
/// [`first_backslash`]: a NUL byte (psql drops the rest of that line, so a quote or `$$` this
/// lexer saw never reaches it), bytes that are not UTF-8, or a `client_encoding` change (in
/// SJIS, BIG5, GBK, GB18030, UHC or JOHAB a backslash byte can be the second half of a
/// character, which psql skips and this lexer would take as an escape). With only UTF-8 and
/// the client encoding pinned to UTF8 (`PGCLIENTENCODING` for this psql), both read the same.
fn unsafe_bytes(sql: &[u8]) -> Option<usize> {
    if let Some(i) = sql.iter().position(|b| *b == 0) {
        return Some(i);
    }
    if let Err(e) = std::str::from_utf8(sql) {
        return Some(e.valid_up_to());
    }
    // pg_dumpall writes exactly `SET client_encoding = 'UTF8';`: that line is the one allowed.
    let mut offset = 0;
    for line in sql.split(|b| *b == b'\n') {
        let lower = line.to_ascii_lowercase();
        if let Some(i) = lower
            .windows(b"client_encoding".len())
            .position(|w| w == b"client_encoding")
        {
            if lower.trim_ascii() != b"set client_encoding = 'utf8';" {
                return Some(offset + i);
            }
        }
        offset += line.len() + 1;
    }
    None
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// `\restrict KEY` or `\unrestrict KEY` starting at `at` (a backslash at the start of a line),
/// alone on its line: the length to skip.
fn allowed_meta(sql: &[u8], at: usize) -> Option<usize> {
    if at > 0 && sql[at - 1] != b'\n' {
        return None;
    }
    let end = sql[at..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(sql.len(), |i| at + i);
    let line = std::str::from_utf8(&sql[at..end]).ok()?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = line
        .strip_prefix("\\restrict ")
        .or_else(|| line.strip_prefix("\\unrestrict "))?;
    (!rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(end - at)
}

/// The offset of the first backslash psql would read as (part of) a meta-command, or inside
/// an ordinary string (see the module doc).
fn first_backslash(sql: &[u8]) -> Option<usize> {
    let n = sql.len();
    let mut i = 0;
    while i < n {
        let b = sql[i];
        let prev_ident = i > 0 && is_ident(sql[i - 1]);
        match b {
            b'\\' => match allowed_meta(sql, i) {
                Some(len) => i += len,
                None => return Some(i),
            },
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                i = sql[i..]
                    .iter()
                    .position(|c| *c == b'\n')
                    .map_or(n, |p| i + p);
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                // Nested, as in PostgreSQL.
                let mut depth = 1;
                i += 2;
                while i < n && depth > 0 {
                    if sql[i] == b'/' && sql.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if sql[i] == b'*' && sql.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let extended =
                    i > 0 && matches!(sql[i - 1], b'E' | b'e') && !(i > 1 && is_ident(sql[i - 2]));
                i += 1;
                loop {
                    match sql.get(i) {
                        None => return None,
                        Some(b'\\') if extended => i += 2,
                        Some(b'\\') => return Some(i),
                        Some(b'\'') if sql.get(i + 1) == Some(&b'\'') => i += 2,
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'"' => {
                i += 1;
                loop {
                    match sql.get(i) {
                        None => return None,
                        Some(b'"') if sql.get(i + 1) == Some(&b'"') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'$' if !prev_ident => {
                // `$tag$` (tag: an identifier not starting with a digit, or empty); `$1` is a
                // parameter.
                let tag_end = sql[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c >= 0x80))
                    .map_or(n, |p| i + 1 + p);
                let starts_digit = sql.get(i + 1).is_some_and(|c| c.is_ascii_digit());
                if sql.get(tag_end) == Some(&b'$') && !starts_digit {
                    let delim = &sql[i..=tag_end];
                    let body = tag_end + 1;
                    match sql[body..].windows(delim.len()).position(|w| w == delim) {
                        Some(p) => i = body + p + delim.len(),
                        None => return None,
                    }
                } else {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {

    #[test]
    fn nul_non_utf8_and_encoding_changes_are_refused() {
        // psql drops the rest of a line after a NUL: the `$$` would never reach it.
        assert_eq!(
            super::meta_command(b"SELECT 1;\0$$\n\\! id\n$$\n")
                .unwrap()
                .0,
            1
        );
        // SJIS: 0x81 0x5C is one character to psql, an escaped quote to a byte lexer.
        assert!(super::meta_command(b"SELECT E'\x81\x5C'; \\! id #'\n").is_some());
        let e = super::meta_command(b"SET client_encoding = 'SJIS';\nSELECT 1;\n").unwrap();
        assert_eq!(e.0, 1);
        assert!(super::meta_command(b"set CLIENT_ENCODING to 'BIG5';\n").is_some());
        assert_eq!(
            super::meta_command(b"CREATE ROLE r;\nSELECT 'caf\xc3\xa9';\n"),
            None
        );
        // What pg_dumpall itself writes stays allowed.
        assert_eq!(
            super::meta_command(b"SET client_encoding = 'UTF8';\nCREATE ROLE r;\n"),
            None
        );
    }
    use super::meta_command;

    fn bad(sql: &str) -> usize {
        meta_command(sql.as_bytes())
            .unwrap_or_else(|| panic!("not refused: {sql:?}"))
            .0
    }

    fn ok(sql: &str) {
        assert_eq!(meta_command(sql.as_bytes()), None, "{sql:?}");
    }

    #[test]
    fn meta_commands_are_found() {
        assert_eq!(bad("\\! id"), 1);
        assert_eq!(bad("select 1; \\! id"), 1);
        assert_eq!(bad("select 1;\nselect 2; \\o /etc/x\n"), 2);
        assert_eq!(bad("select 1 \\g"), 1);
        assert_eq!(bad("select 'a' \\! id"), 1);
        assert_eq!(bad("select $1 \\! id"), 1);
        assert_eq!(bad("select a$b$ \\! id $b$"), 1, "a$b$ is an identifier");
        assert_eq!(bad("select xe'a' \\! id"), 1);
        // Unterminated quotes or comments are not needed to hide one.
        assert_eq!(bad("\\restrict abc; \\! id"), 1);
        assert_eq!(bad("\\restrict `id`"), 1);
        assert_eq!(bad(" \\restrict abc"), 1);
        assert_eq!(bad("\\connect postgres"), 1);
    }

    #[test]
    fn quoted_and_commented_backslashes_are_not() {
        ok("select E'a\\\\b';");
        ok("select E'it\\'s \\! id';");
        ok("select e'\\n';");
        ok("select $$ \\! id $$;");
        ok("select $f$ $$ \\! id $$ $f$;");
        ok("select \"a\\b\" from t;");
        ok("select \"a\"\"\\\" from t;");
        ok("-- \\! id\nselect 1;");
        ok("/* \\! id /* nested */ \\! id */ select 1;");
        ok("select 'it''s';");
        ok("\\restrict abc123\n\nSET x = 1;\n\n\\unrestrict abc123\n");
        ok("\\restrict abc123\r\nselect 1;\r\n");
    }

    #[test]
    fn backslash_in_an_ordinary_string_is_refused() {
        // With standard_conforming_strings off (which the script may set), `'x\' '` is one
        // string and the `\!` after it is a meta-command.
        assert_eq!(
            bad("SET standard_conforming_strings = off;\nselect 'x\\' ' \\! id ';"),
            2
        );
        assert_eq!(bad("select 'a\\b';"), 1);
    }

    /// What `pg_dumpall --globals-only` 15.18 wrote for a role with a commented backslash
    /// (the test cluster's version): `\restrict`/`\unrestrict`, and the value as `E'...'`.
    #[test]
    fn pg_dumpall_globals_pass() {
        let sql = r#"--
-- PostgreSQL database cluster dump
--

\restrict PcRAhKT5czqj5UYErbFZnVsMVRo7G7ZNGAHbfdbUU3ykQmaJTRPHa0p5shady1Q

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$4096:nEFbAHa64WC0q+sfCQTDrw==$nnocaRVy7ZIph24ywa4ngf+ylb1f8zZ6vHH4AValCyI=:ua4kAOeTLTfyzFaLZ9TTosEZKfrSBNjbJ68iqyDvHeQ=';
COMMENT ON ROLE app IS E'it''s a\\b';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;

--
-- User Configurations
--








\unrestrict PcRAhKT5czqj5UYErbFZnVsMVRo7G7ZNGAHbfdbUU3ykQmaJTRPHa0p5shady1Q

--
-- PostgreSQL database cluster dump complete
--

"#;
        assert!(sql.contains("\\restrict ") && sql.contains("E'it''s a\\\\b'"));
        ok(sql);
    }
}
