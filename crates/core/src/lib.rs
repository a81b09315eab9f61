//! # lifeboat-core
//!
//! The repository of lifeboat: format, crypto, chunking, packs, index, points, and the
//! repository-level operations. No CLI, no cloud SDKs, no knowledge of SQLite.
//!
//! ## Overview
//! - A [`Storage`] holds objects by ([`ObjectKind`], name); destinations implement it
//!   (`lifeboat-storage`).
//! - [`Repository::init`] / [`Repository::open`] unlock the master key from a password
//!   (argon2id key slots) and read the config. The master key never leaves this crate.
//! - [`Repository::begin_backup`] opens a [`BackupSession`]: it takes a lease, then loads the
//!   index (the order a concurrent prune relies on). Its [`ChunkWriter`] identifies chunks by
//!   keyed BLAKE3, deduplicates, groups them into 4 MiB blocks, compresses (zstd) and seals
//!   (XChaCha20-Poly1305) on all cores and packs them (~16 MiB packs);
//!   [`BackupSession::commit`] writes the index objects, checks the lease and makes the
//!   [`Point`] visible, last. Nothing else writes a point.
//! - [`Repository::begin_restore`] opens a [`RestoreSession`] whose [`ChunkReader`] only
//!   returns authenticated data.
//! - [`check()`], [`copy()`], [`forget()`], [`prune()`] are the repository-level operations;
//!   the mutating ones hold a lease and publish nothing once it lapsed.
//!
//! The byte-level format is specified in `docs/FORMAT.md`; the layering in
//! `docs/ARCHITECTURE.md`.
#![deny(missing_docs)]

mod audit;
pub mod cancel;
mod components;
mod crypto;
mod deltas;
mod error;
mod format;
mod id;
mod index;
mod lease;
mod ops;
mod paths;
mod progress;
mod proofs;
pub use proofs::{drill_order, DrillSeen, PointProofs};
mod reader;
mod repository;
mod retention;
mod session;
mod storage;
#[cfg(test)]
mod test_chain;
#[cfg(test)]
mod test_patches;
#[cfg(test)]
mod test_store;
mod writer;

pub use audit::{AuditListing, MAX_AUDIT_BYTES, MAX_AUDIT_RECORDS};
pub use components::{
    load_page_table, load_tree, ChecksumKey, DbChecksum, PageTable, PageTableBuilder,
};
pub use deltas::{chain_to, links_to, replay, DeltaListing};
pub use error::{Error, ErrorKind, Result};
pub use format::audit::{AuditEvent, RESULT_FAILED, RESULT_OK};
pub use format::config::{ChunkerParams, RepoConfig, REPO_VERSION};
pub use format::delta::{Delta, WalMark, MAX_CHAIN};
pub use format::key::{hostname, KdfParams};
pub use format::pagetable::{decode_delta, encode_base, encode_delta, SEGMENT_PAGES};
pub use format::patch as page_patch;
pub use format::point::{
    Component, ComponentKind, Point, PointStats, PostgresBody, SqliteBody, TreeBody,
};
pub use format::proof::{DrillOutcome, ProofRecord, ProvenDatabase, CHECK_INTEGRITY, CHECK_QUICK};
pub use format::tree::{EntryKind, TreeEntry};
pub use id::{ChunkId, ObjectId};
pub use ops::check::{check, CheckOptions, CheckReport, Problem};
pub use ops::copy::{copy, init_replica, CopyReport};
pub use ops::forget::{forget, forget_deltas, thin_deltas, DeltaForgetReport};
pub use ops::keys::{add_key, list_keys, remove_key, KeyInfo};
pub use ops::missing::missing_packs;
pub use ops::prune::{prune, PruneOptions, PruneReport};
pub use paths::{
    check_component_path, check_tree, component_path_problem, entry_path_problem, tree_problem,
};
pub use progress::{NoProgress, Progress};
pub use reader::{BatchSink, ChunkReader};
pub use repository::{is_future, read_config, DamagedListing, Repository, FUTURE_SKEW};
pub use retention::{parse_span, plan as plan_retention, Decision, Policy};
pub use session::{BackupSession, RestoreSession};
pub use storage::{
    ListEntry, ObjectKind, ObjectWriter, RequestCounter, RequestStats, Storage, StorageError,
    StorageResult,
};
pub use writer::{ChunkWriter, PageStored, WriteSummary, PATCH_MAX_FRACTION};
