//! On-disk structures, one file each, exactly as `docs/FORMAT.md` draws them.
//! Only encoding and decoding lives here; no I/O.
pub mod audit;
pub mod config;
pub mod delta;
pub mod index;
pub mod key;
pub mod lease;
pub mod object;
pub mod pack;
pub mod pagetable;
pub mod patch;
pub mod point;
pub mod proof;
pub mod prune;
pub mod tree;
