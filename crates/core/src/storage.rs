//! The storage interface every destination implements (local directory, S3; SFTP next).
//!
//! It is deliberately small, like redb's `StorageBackend` and Litestream's `ReplicaClient`:
//! list with sizes, read whole or a range, write, delete. Encryption, compression, caching,
//! retries and request counting are layered on top by the repository, never inside it.
//!
//! # Contract (every implementation must pass the conformance test in `lifeboat-storage`)
//! - **Names.** An object is addressed by ([`ObjectKind`], name). Names are lower-case hex
//!   (or `"config"`), so every destination can hold them. The layout (e.g. `packs/ab/abcd...`)
//!   is derived in one place, [`ObjectKind::object_path`] (FORMAT.md §1); a destination only
//!   decides what the path is relative to (a directory, an S3 prefix).
//! - **Atomic writes.** After [`Storage::write`] returns `Ok`, the whole object is durable
//!   under its name; if it fails or the process dies, the name holds either nothing or a
//!   previous complete object, never a prefix (temp name + fsync + rename locally and over
//!   SFTP; a single whole-object PUT on S3).
//! - **Idempotent content-addressed writes.** Writing a name that exists replaces it;
//!   because names are hashes of content, this is a no-op in effect. Safety never depends
//!   on create-only semantics (Garage ignores `If-None-Match`).
//! - **Not found is its own error.** Reading, ranging or deleting a missing object fails
//!   with [`StorageError::NotFound`]; deleting a missing object may instead succeed.
//! - **Ranges past the end fail.** `read_range` returning fewer bytes than asked is an
//!   error ([`StorageError::Truncated`]), never a short read.
//! - **Retry is the caller's decision.** Errors say whether a retry can help
//!   ([`StorageError::is_retryable`]).
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What kind of object a name refers to. Each kind has its own namespace (directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The repository's `config` file (one object, named `config`).
    Config,
    /// Key slots: the master key wrapped by a password.
    Key,
    /// Packs of encrypted, compressed chunk blocks.
    Pack,
    /// Index files: where each chunk is in which pack.
    Index,
    /// Point manifests: one recovery point each.
    Point,
    /// `leases/<random>`: an operation in progress (not content-addressed, rewritten to refresh).
    Lease,
    /// `prune/<id>`: what a prune condemned and has yet to delete.
    Prune,
    /// `proofs/<id>`: a SQLite check that a restore (or a drill) ran on a point's databases
    /// and that passed, so a later restore of the same bytes need not repeat it.
    Proof,
    /// `deltas/<id>`: the pages of one database that changed in one interval of continuous
    /// capture, one link of a chain that starts from a point.
    Delta,
    /// `audit/<id>`: one operation (backup, restore, forget, prune, key change, drill...),
    /// who ran it and how it ended: the audit log's copy in the repository.
    Audit,
}

impl ObjectKind {
    /// Every kind, in the order `check` visits them.
    pub const ALL: [ObjectKind; 10] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Index,
        ObjectKind::Point,
        ObjectKind::Delta,
        ObjectKind::Pack,
        ObjectKind::Lease,
        ObjectKind::Prune,
        ObjectKind::Proof,
        ObjectKind::Audit,
    ];

    /// The top directory (prefix) of this kind in a repository, `""` for `config` (which sits
    /// at the root). FORMAT.md §1 is the reference; every destination derives its layout from
    /// this and [`ObjectKind::object_path`], none keeps its own copy.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "",
            ObjectKind::Key => "keys",
            ObjectKind::Pack => "packs",
            ObjectKind::Index => "index",
            ObjectKind::Point => "points",
            ObjectKind::Lease => "leases",
            ObjectKind::Prune => "prune",
            ObjectKind::Proof => "proofs",
            ObjectKind::Delta => "deltas",
            ObjectKind::Audit => "audit",
        }
    }

    /// Whether objects of this kind sit one level below [`ObjectKind::dir`], in a fan-out
    /// directory named by the first 2 characters of their name (packs: `packs/<id[0..2]>/<id>`),
    /// so a listing must scan every subdirectory.
    pub fn fanned_out(self) -> bool {
        self == ObjectKind::Pack
    }

    /// The directory that holds object `name`, relative to the repository root, `/`-separated:
    /// `""` for `config`, `packs/ab` for pack `ab12...`, `points` for a point. A name shorter
    /// than 2 characters (never a real id) fans out to `00`.
    pub fn object_dir(self, name: &str) -> String {
        if self.fanned_out() {
            format!("{}/{}", self.dir(), name.get(..2).unwrap_or("00"))
        } else {
            self.dir().to_string()
        }
    }

    /// The largest object of this kind a [`Storage::read`] returns (FORMAT.md §1). Every
    /// backend refuses a larger object as damaged ([`StorageError::TooLarge`]) before reading
    /// its bytes (from the file's or the response's size), so a planted huge key slot or lease
    /// cannot exhaust memory. Packs are read by range; their bound is the format's (u32
    /// offsets), for `check --read-data` and `copy`, which read them whole.
    pub fn max_size(self) -> u64 {
        const MIB: u64 = 1 << 20;
        match self {
            ObjectKind::Config
            | ObjectKind::Key
            | ObjectKind::Lease
            | ObjectKind::Proof
            | ObjectKind::Delta => MIB,
            ObjectKind::Index | ObjectKind::Point | ObjectKind::Prune => 256 * MIB,
            ObjectKind::Pack => u32::MAX as u64,
            ObjectKind::Audit => crate::format::audit::MAX_AUDIT_PAYLOAD as u64,
        }
    }

    /// [`StorageError::TooLarge`] when an object of `size` bytes exceeds
    /// [`ObjectKind::max_size`]; `what` names it.
    pub fn check_size(self, what: impl fmt::Display, size: u64) -> StorageResult<()> {
        if size > self.max_size() {
            return Err(StorageError::TooLarge {
                what: what.to_string(),
                size,
                max: self.max_size(),
            });
        }
        Ok(())
    }

    /// The path of object `name` relative to the repository root, `/`-separated (FORMAT.md
    /// §1): `config` (whatever the name), `keys/<id>`, `packs/<id[0..2]>/<id>`, `index/<id>`,
    /// `points/<id>`, `leases/<name>`, `prune/<id>`, `audit/<id>`. Local and SFTP directories put it under
    /// the repository directory, S3 under `PREFIX/`. The name is not validated here.
    pub fn object_path(self, name: &str) -> String {
        match self {
            ObjectKind::Config => "config".to_string(),
            _ => format!("{}/{name}", self.object_dir(name)),
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key",
            ObjectKind::Pack => "pack",
            ObjectKind::Index => "index",
            ObjectKind::Point => "point",
            ObjectKind::Lease => "lease",
            ObjectKind::Prune => "prune record",
            ObjectKind::Proof => "proof",
            ObjectKind::Delta => "delta",
            ObjectKind::Audit => "audit",
        })
    }
}

/// One entry of [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The object's name (hex id, or `config`).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Errors a storage returns. Each says whether retrying can help.
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    NotFound {
        /// kind/name of the missing object
        what: String,
    },
    /// The object is shorter than the range asked for.
    Truncated {
        /// kind/name of the object
        what: String,
        /// its actual size
        size: u64,
        /// the end of the asked range
        wanted_end: u64,
    },
    /// The object is larger than its kind may be ([`ObjectKind::max_size`]); it was not read.
    TooLarge {
        /// kind/name of the object
        what: String,
        /// its size
        size: u64,
        /// the bound of its kind
        max: u64,
    },
    /// The destination itself is missing or unusable (no such directory, bucket, host).
    Unavailable {
        /// what is missing and how to fix it
        message: String,
    },
    /// A remote store failed a request (after its own retries, if any).
    Remote {
        /// kind/name of the object, or the listing, concerned
        what: String,
        /// what the store or the network said, on one line (no secrets)
        message: String,
        /// whether trying again later may succeed (5xx, reset, timeout)
        retryable: bool,
    },
    /// Any other I/O error.
    Io {
        /// kind/name or path concerned
        what: String,
        /// the underlying error
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether the same request may succeed later (timeouts, resets, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Remote { retryable, .. } => *retryable,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ),
            _ => false,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound { what } => write!(f, "{what} is missing"),
            StorageError::Truncated {
                what,
                size,
                wanted_end,
            } => write!(
                f,
                "{what} is truncated: {size} bytes, needed at least {wanted_end}"
            ),
            StorageError::TooLarge { what, size, max } => write!(
                f,
                "{what} is damaged: {size} bytes, more than the {max} an object of its kind may have (not read)"
            ),
            StorageError::Unavailable { message } => f.write_str(message),
            StorageError::Remote { what, message, .. } => write!(f, "{what}: {message}"),
            StorageError::Io { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for StorageError {}

impl From<StorageError> for crate::Error {
    fn from(e: StorageError) -> crate::Error {
        use crate::ErrorKind;
        match e {
            StorageError::NotFound { .. }
            | StorageError::Truncated { .. }
            | StorageError::TooLarge { .. } => {
                crate::Error::new(ErrorKind::Corrupt, e.to_string()).with_hint(
                    "the repository is damaged: run `lifeboat check --read-data` to see everything affected, and restore from another copy of the repository if you have one",
                )
            }
            StorageError::Unavailable { message } => crate::Error::new(ErrorKind::Repository, message),
            StorageError::Remote { retryable, .. } => {
                let e = crate::Error::new(ErrorKind::Io, e.to_string());
                if retryable {
                    e.retryable().with_hint("the store or the network failed after several retries; run the command again (nothing incomplete became visible)")
                } else {
                    e
                }
            }
            StorageError::Io { what, source } => crate::Error::io(what, source),
        }
    }
}

/// Result of storage operations.
pub type StorageResult<T> = std::result::Result<T, StorageError>;

/// A place that holds a repository's objects. See the module documentation for the contract.
pub trait Storage: Send + Sync {
    /// Where this is, for messages (a path or URL, never a secret).
    fn location(&self) -> String;

    /// All objects of `kind` with their sizes, in no particular order. An empty or missing
    /// namespace lists as empty.
    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>>;

    /// The whole object; [`StorageError::TooLarge`], before reading it, when it is larger than
    /// [`ObjectKind::max_size`].
    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>>;

    /// Exactly `len` bytes starting at `offset`; fewer is [`StorageError::Truncated`].
    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>>;

    /// Stores `data` under the name, atomically and durably (see the contract).
    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()>;

    /// Removes the object.
    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()>;

    /// Starts a new object of `kind` whose name is only known once all its bytes are written
    /// (packs are named by the hash of their content). Nothing is visible under any name until
    /// [`ObjectWriter::finish`] returns `Ok`; dropping the writer without finishing discards
    /// it. The default buffers in memory and calls [`Storage::write`]; destinations that can
    /// stream (a local file, an SFTP temp file) override it so a pack is never held in memory.
    fn create(&self, kind: ObjectKind) -> StorageResult<Box<dyn ObjectWriter + '_>> {
        Ok(Box::new(BufferedWriter {
            storage: self,
            kind,
            buf: Vec::new(),
        }))
    }

    /// Requests sent so far, by type (what `--stats` shows). Remote stores count real
    /// requests (a listing counts one per page, a multipart upload one per part plus two);
    /// a local directory counts operations.
    fn requests(&self) -> RequestStats {
        RequestStats::default()
    }
}

/// Requests a storage has sent, by type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestStats {
    /// Listings (pages).
    pub list: u64,
    /// Reads, whole or ranged.
    pub get: u64,
    /// Size queries.
    pub head: u64,
    /// Writes (and multipart parts).
    pub put: u64,
    /// Deletions.
    pub delete: u64,
}

impl std::ops::AddAssign for RequestStats {
    fn add_assign(&mut self, o: RequestStats) {
        self.list += o.list;
        self.get += o.get;
        self.head += o.head;
        self.put += o.put;
        self.delete += o.delete;
    }
}

impl RequestStats {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.list + self.get + self.head + self.put + self.delete
    }
}

/// Thread-safe counters behind [`Storage::requests`], for implementations.
#[derive(Debug, Default)]
pub struct RequestCounter {
    list: AtomicU64,
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    delete: AtomicU64,
}

impl RequestCounter {
    /// Counts `n` listing pages.
    pub fn list(&self, n: u64) {
        self.list.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts `n` reads.
    pub fn get(&self, n: u64) {
        self.get.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts `n` size queries.
    pub fn head(&self, n: u64) {
        self.head.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts `n` writes.
    pub fn put(&self, n: u64) {
        self.put.fetch_add(n, Ordering::Relaxed);
    }
    /// Counts `n` deletions.
    pub fn delete(&self, n: u64) {
        self.delete.fetch_add(n, Ordering::Relaxed);
    }
    /// The counts so far.
    pub fn stats(&self) -> RequestStats {
        RequestStats {
            list: self.list.load(Ordering::Relaxed),
            get: self.get.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
        }
    }
}

/// An object being written; see [`Storage::create`].
pub trait ObjectWriter {
    /// Appends bytes.
    fn write(&mut self, data: &[u8]) -> StorageResult<()>;
    /// Makes the object durable and visible under `name`, atomically (the same contract as
    /// [`Storage::write`]).
    fn finish(self: Box<Self>, name: &str) -> StorageResult<()>;
}

struct BufferedWriter<'s, S: Storage + ?Sized> {
    storage: &'s S,
    kind: ObjectKind,
    buf: Vec<u8>,
}

impl<S: Storage + ?Sized> ObjectWriter for BufferedWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> StorageResult<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>, name: &str) -> StorageResult<()> {
        self.storage.write(self.kind, name, &self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk layout of FORMAT.md §1: changing any of these paths breaks every existing
    /// repository (local, S3 and SFTP alike).
    #[test]
    fn object_paths_are_the_documented_layout() {
        let id = "ab12cd34";
        let expected = [
            (ObjectKind::Config, "", "", "config"),
            (ObjectKind::Key, "keys", "keys", "keys/ab12cd34"),
            (ObjectKind::Pack, "packs", "packs/ab", "packs/ab/ab12cd34"),
            (ObjectKind::Index, "index", "index", "index/ab12cd34"),
            (ObjectKind::Point, "points", "points", "points/ab12cd34"),
            (ObjectKind::Lease, "leases", "leases", "leases/ab12cd34"),
            (ObjectKind::Prune, "prune", "prune", "prune/ab12cd34"),
            (ObjectKind::Proof, "proofs", "proofs", "proofs/ab12cd34"),
            (ObjectKind::Delta, "deltas", "deltas", "deltas/ab12cd34"),
            (ObjectKind::Audit, "audit", "audit", "audit/ab12cd34"),
        ];
        assert_eq!(
            expected.len(),
            ObjectKind::ALL.len(),
            "every kind is pinned"
        );
        for (kind, dir, object_dir, path) in expected {
            assert_eq!(kind.dir(), dir, "{kind}");
            assert_eq!(kind.object_dir(id), object_dir, "{kind}");
            assert_eq!(kind.object_path(id), path, "{kind}");
            assert_eq!(kind.fanned_out(), kind == ObjectKind::Pack, "{kind}");
        }
        // `config` has one fixed name; a pack name too short to fan out goes to `00`.
        assert_eq!(ObjectKind::Config.object_path("anything"), "config");
        assert_eq!(ObjectKind::Pack.object_path("a"), "packs/00/a");
    }
}
