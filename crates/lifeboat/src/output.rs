//! What the user sees besides results: logs (tracing, quiet by default), errors with hints,
//! human sizes and durations.
use std::io::IsTerminal;

use lifeboat_core::Error;

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

/// `error: <what happened>` and, when known, `hint: <what to do>` on stderr.
pub fn print_error(e: &Error) {
    eprintln!("error: {}", e.message());
    if let Some(h) = e.hint() {
        eprintln!("hint: {h}");
    }
    if e.is_retryable() {
        eprintln!("note: this may be temporary; running the command again can help");
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        tracing::debug!("caused by: {s}");
        src = s.source();
    }
}

pub use lifeboat_app::{duration_ms, size};

/// An RFC 3339 timestamp shown in local time, to the second.
pub fn local_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        })
        .unwrap_or_else(|| rfc3339.to_string())
}

/// Prints a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}
