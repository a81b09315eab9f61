//! # lifeboat-core
//!
//! The repository of lifeboat: format, crypto, chunking, packs, index, points, and the
//! repository-level operations. No CLI, no cloud SDKs, no knowledge of SQLite.
//!
//! ## Overview
//! - A [`Storage`] holds objects by ([`ObjectKind`], name); destinations implement it
//!   (`lifeboat-storage`).
//! - [`Repository::init`] / [`Repository::open`] unlock the master key from a password
//!   (argon2id key slots) and read the config; [`Repository::load_index`] reads the index.
//! - [`Repository::writer`] gives a [`ChunkWriter`]: chunks are identified by keyed BLAKE3,
//!   deduplicated, grouped into ~1 MiB blocks, zstd-compressed, sealed with
//!   XChaCha20-Poly1305 on all cores and packed; [`ChunkWriter::finish`] writes the index.
//! - [`Repository::write_point`] makes a [`Point`] visible, last.
//! - [`Repository::reader`] gives a [`ChunkReader`] that only returns authenticated data.
//! - [`check()`] verifies structure and, with `read_data`, every byte.
//!
//! The byte-level format is specified in `docs/FORMAT.md`; the layering in
//! `docs/ARCHITECTURE.md`.
#![deny(missing_docs)]

mod components;
mod crypto;
mod error;
mod format;
mod id;
mod index;
mod lease;
mod ops;
mod progress;
mod reader;
mod repository;
mod retention;
mod storage;
mod writer;

pub use components::{load_page_table, load_tree, DbChecksum, PageTable, PageTableBuilder};
pub use crypto::MasterKey;
pub use error::{Error, ErrorKind, Result};
pub use format::config::{ChunkerParams, RepoConfig, REPO_VERSION};
pub use format::key::{hostname, KdfParams};
pub use format::pagetable::{encode_base, encode_delta, SEGMENT_PAGES};
pub use format::point::{
    Component, ComponentKind, Point, PointStats, PostgresBody, SqliteBody, TreeBody,
};
pub use format::tree::{EntryKind, TreeEntry};
pub use id::{ChunkId, ObjectId};
pub use index::{Index, Location};
pub use lease::{lease_ttl, list_leases, LeaseGuard, LeaseInfo};
pub use ops::check::{check, CheckOptions, CheckReport, Problem};
pub use ops::copy::{copy, init_replica, CopyReport};
pub use ops::forget::forget;
pub use ops::keys::{add_key, list_keys, remove_key, KeyInfo};
pub use ops::prune::{prune, PruneOptions, PruneReport};
pub use progress::{NoProgress, Progress};
pub use reader::{BatchSink, ChunkReader};
pub use repository::{read_config, Repository};
pub use retention::{parse_span, plan as plan_retention, Decision, Policy};
pub use storage::{
    ListEntry, ObjectKind, ObjectWriter, RequestCounter, RequestStats, Storage, StorageError,
    StorageResult,
};
pub use writer::{ChunkWriter, WriteSummary};
