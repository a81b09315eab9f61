//! What the user sees besides results: logs (tracing, quiet by default), errors with hints,
//! human sizes and durations.
use std::io::IsTerminal;

use lifeboat_core::{Error, ErrorKind, Result};

/// Logs go to stderr; warnings only by default, `-v` info, `-vv` debug; `RUST_LOG` overrides.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
}

/// Logging of `lifeboat run`: info by default (one line per job start and end), with times
/// (the daemon's lines are read later, in a journal), as text or one JSON object per line.
pub fn init_daemon_logging(verbose: u8, json: bool) {
    // The daemon's own lines at info; the operations' (one per captured component) only
    // with -v.
    let level = match verbose {
        0 => "warn,lifeboat_daemon=info,lifeboat_app::continuous=info",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// A stored or user-controlled string made safe for a terminal: every control character (C0
/// including tab and newline, DEL, C1) becomes its Rust escape `\u{1b}`, so a key-slot label,
/// a lease's hostname, a point's tags or paths cannot move the cursor, retitle the window or
/// write the clipboard (OSC 52) of whoever reads the output. So do the invisible characters
/// that reorder or hide text (bidirectional overrides and isolates, U+202A-202E and
/// U+2066-2069, and the marks U+200E/U+200F/U+061C: a path `/srv/\u{202e}gnp.exe` would
/// display as `/srv/exe.png`). Everything else, including backslashes and non-ASCII text, is
/// shown as it is. Every human-readable print of such a string goes through this; JSON output
/// is escaped by serde.
pub fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    // C0, DEL and C1 (Unicode category Cc), and the bidirectional formatting characters.
    let is_control = |c: char| {
        c.is_control()
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
    };
    if !s.chars().any(is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_control(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `error: <what happened>` and, when known, `hint: <what to do>` on stderr (escaped: messages
/// quote paths, labels and names).
pub fn print_error(e: &Error) {
    crate::output::errln!("error: {}", esc(e.message()));
    if let Some(h) = e.hint() {
        crate::output::errln!("hint: {}", esc(h));
    }
    if e.is_retryable() {
        crate::output::errln!("note: this may be temporary; running the command again can help");
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        tracing::debug!("caused by: {s}");
        src = s.source();
    }
}

pub use lifeboat_app::{duration_ms, size};

/// An RFC 3339 timestamp shown in local time, to the second (a stored time that does not
/// parse is shown escaped).
pub fn local_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| esc(rfc3339).into_owned())
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) -> Result<()> {
    out_line(format_args!(
        "{}",
        serde_json::to_string_pretty(v).expect("serialisable")
    ))
}

/// The reason of the error a write to a closed standard output gives (`lifeboat points |
/// head`): `main` ends quietly with exit 0 on it, as `head` asked for no more (ripgrep does
/// the same). Only writes through [`Stdout`] carry it, so a broken pipe to a child program
/// (psql, pg_restore) stays an error.
#[derive(Debug)]
pub struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Standard output for everything lifeboat prints as a result (never `println!`, which panics
/// when the write fails): a broken pipe becomes an error carrying [`StdoutClosed`].
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(buf).map_err(closed)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush().map_err(closed)
    }
}

fn closed(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

/// Writes one line to stdout. A failed write (a full disk behind `> file`, `> /dev/full`) is
/// an `Io` error of one line (exit 1); a closed pipe, [`StdoutClosed`].
pub fn out_line(args: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    let mut o = Stdout;
    o.write_fmt(args)
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush())
        .map_err(|e| {
            Error::new(ErrorKind::Io, format!("write to standard output: {e}")).with_source(e)
        })
}

/// `println!` for results: through [`out_line`], returning its error with `?`.
macro_rules! outln {
    ($($t:tt)*) => {
        $crate::output::out_line(format_args!($($t)*))?
    };
}
pub(crate) use outln;

/// `eprintln!` that never panics: a closed or full standard error (`2>&-`, a full disk) loses
/// the message, never the operation (`eprintln!` panics on a write error).
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
pub(crate) use errln;

/// `eprint!` that never panics (see [`errln!`]).
macro_rules! err_print {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}
pub(crate) use err_print;

/// Whether `e` comes from a write to a closed standard output ([`StdoutClosed`]).
pub fn stdout_closed(e: &Error) -> bool {
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if s.is::<StdoutClosed>() {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.get_ref().is_some_and(|i| i.is::<StdoutClosed>()) {
                return true;
            }
        }
        src = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(esc("laptop é/ü \\ x"), "laptop é/ü \\ x");
        assert!(matches!(esc("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            esc("\x1b]52;c;aGk=\x07 a\tb\nc\r\x7f\u{9b}\0"),
            r"\u{1b}]52;c;aGk=\u{7} a\u{9}b\u{a}c\u{d}\u{7f}\u{9b}\u{0}"
        );
        assert_eq!(esc("/srv/\u{202e}gnp.exe"), r"/srv/\u{202e}gnp.exe");
        assert_eq!(esc("a\u{2066}b\u{200f}"), r"a\u{2066}b\u{200f}");
    }

    /// Only a broken pipe on stdout ends quietly; one to a child (psql) stays an error.
    #[test]
    fn only_stdout_broken_pipes_are_quiet() {
        use std::io::ErrorKind::BrokenPipe;
        let child = lifeboat_core::Error::io("write to psql", std::io::Error::from(BrokenPipe));
        assert!(!super::stdout_closed(&child));
        let out = super::closed(std::io::Error::from(BrokenPipe));
        let e = lifeboat_core::Error::io("demo output", out);
        assert!(super::stdout_closed(&e));
        let full = super::closed(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert!(!super::stdout_closed(&lifeboat_core::Error::io("x", full)));
    }
}
