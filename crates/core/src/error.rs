//! Errors of lifeboat's core.
//!
//! Rules (after rustic_core's `error.rs` and Litestream's `LTXError`):
//! - every public function returns [`Result`];
//! - an [`Error`] says *what* happened (`message`), *what to do* (`hint`), which broad
//!   [`ErrorKind`] it is (that decides the process exit code, see `docs/EXIT_CODES.md`),
//!   and whether retrying the same operation can help ([`Error::is_retryable`]);
//! - context is added with [`Error::context`] as lower-case verb phrases
//!   ("read pack 1a2b3c4d: ..."), never by re-wrapping into a new kind.
use std::fmt;

/// The broad class of an error. Each class has its own exit code, so scripts can tell a
/// wrong password from a corrupted repository without parsing text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Invalid arguments or configuration. Exit code 2.
    Usage,
    /// The repository does not exist, is not a lifeboat repository, or was written by a newer
    /// format version. Exit code 3.
    Repository,
    /// No key slot accepts the password (or no password was given). Exit code 4.
    Auth,
    /// Stored data failed authentication, is truncated or missing. Exit code 5.
    Corrupt,
    /// The operation was refused to protect data (`--force` overrides where documented). Exit code 6.
    Refused,
    /// A source (database, directory, file) could not be read or is not what it claims. Exit code 7.
    Source,
    /// A restored result did not verify (integrity_check, row counts, checksum). Exit code 8.
    Verify,
    /// An in-place restore failed after it changed something (the restore itself, a
    /// post-restore check or the app's start hook) and was undone: the pre-restore point is
    /// back in place and the app was started again. Exit code 9.
    RolledBack,
    /// An in-place restore failed and so did putting the pre-restore point back: the app's
    /// state is not known to be good. The message names the pre-restore point and the command
    /// to retry. Exit code 10.
    RollbackFailed,
    /// The process was asked to stop (the daemon's SIGTERM grace ran out) and the operation
    /// stopped at a safe point; nothing partial is visible. Exit code 11.
    Interrupted,
    /// `lifeboat status` found something unhealthy (a point too old, a failed or overdue
    /// drill, a failing job, a destination that cannot be read). Exit code 12.
    Unhealthy,
    /// An I/O error of the storage or the local system (disk full, permission). Exit code 1.
    Io,
    /// Anything else. Exit code 1.
    Other,
}

impl ErrorKind {
    /// The documented process exit code for this kind (`docs/EXIT_CODES.md`).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::Repository => 3,
            ErrorKind::Auth => 4,
            ErrorKind::Corrupt => 5,
            ErrorKind::Refused => 6,
            ErrorKind::Source => 7,
            ErrorKind::Verify => 8,
            ErrorKind::RolledBack => 9,
            ErrorKind::RollbackFailed => 10,
            ErrorKind::Interrupted => 11,
            ErrorKind::Unhealthy => 12,
            ErrorKind::Io | ErrorKind::Other => 1,
        }
    }
}

/// The error type of all of lifeboat's library crates.
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    retryable: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// Result with lifeboat's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message saying what happened.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            hint: None,
            retryable: false,
            source: None,
        }
    }

    /// Adds what the operator should do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Reclassifies the error (e.g. an I/O error on a source path becomes [`ErrorKind::Source`]).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Marks the error as one that may go away when the operation is retried.
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// Keeps the underlying error (shown with `-v`).
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message with what was being done: `"read pack 1a2b: " + message`.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// An I/O error with the path or object it concerns, classified (disk full, permission,
    /// not found) so that the hint says what to do.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let (kind, hint, retry) = match err.kind() {
            K::StorageFull | K::QuotaExceeded => (
                ErrorKind::Io,
                Some("the disk is full: free space (or point the repository elsewhere) and run the command again; nothing half-written was made visible"),
                false,
            ),
            K::PermissionDenied => (
                ErrorKind::Io,
                Some("check the permissions of this path for the user lifeboat runs as"),
                false,
            ),
            K::Interrupted | K::TimedOut | K::WouldBlock => (ErrorKind::Io, None, true),
            _ => (ErrorKind::Io, None, false),
        };
        let mut e = Error::new(kind, format!("{what}: {err}")).with_source(err);
        e.hint = hint.map(str::to_string);
        e.retryable = retry;
        e
    }

    /// The broad class of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// What happened.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// What to do about it, if lifeboat knows.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    /// Whether retrying the same operation may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        if let Some(s) = &self.source {
            write!(f, " [source: {s:?}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand constructors used across the crates.
macro_rules! err {
    ($kind:ident, $($arg:tt)*) => {
        $crate::Error::new($crate::ErrorKind::$kind, format!($($arg)*))
    };
}
pub(crate) use err;
