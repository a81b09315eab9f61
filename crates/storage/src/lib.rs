//! # lifeboat-storage
//!
//! Destinations that implement [`lifeboat_core::Storage`]:
//! - [`LocalStorage`]: a directory (local disk, external drive, NFS mount);
//! - [`S3Storage`]: an S3-compatible object store (AWS, MinIO, Garage, R2, B2);
//! - [`SftpStorage`]: a directory on an SFTP server (OpenSSH), host key checked;
//! - [`MemoryStorage`]: in memory, for unit tests only;
//! - [`CachedStorage`]: a local cache of a remote store's keys, indexes and points;
//! - `CrashBefore` (feature `fault-injection`, test builds only): aborts the process before
//!   its N-th write or delete, for the kill-point tests.
//!
//! Every one passes the same conformance test (`tests/conformance.rs`).
#![deny(missing_docs)]

mod cache;
#[cfg(feature = "fault-injection")]
mod crash;
mod local;
mod memory;
mod s3;
mod sftp;

pub use cache::CachedStorage;
#[cfg(feature = "fault-injection")]
pub use crash::CrashBefore;
pub use local::LocalStorage;
pub use memory::MemoryStorage;
pub use s3::{S3Options, S3Storage};
pub use sftp::{SftpOptions, SftpStorage};

/// The private tokio runtime a remote storage blocks on (see `docs/ARCHITECTURE.md`,
/// execution model): two worker threads, named after the storage.
fn client_runtime(name: &str) -> lifeboat_core::StorageResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("lifeboat-{name}"))
        .enable_all()
        .build()
        .map_err(|e| lifeboat_core::StorageError::Io {
            what: format!("start the {name} client runtime"),
            source: e,
        })
}
