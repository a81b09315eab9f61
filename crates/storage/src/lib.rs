//! # lifeboat-storage
//!
//! Destinations that implement [`lifeboat_core::Storage`]:
//! - [`LocalStorage`]: a directory (local disk, external drive, NFS mount);
//! - [`MemoryStorage`]: in memory, for unit tests only.
//!
//! S3-compatible stores and SFTP come next (issue 5) and must pass the same conformance
//! test (`tests/conformance.rs`).
#![deny(missing_docs)]

mod local;
mod memory;

pub use local::LocalStorage;
pub use memory::MemoryStorage;
