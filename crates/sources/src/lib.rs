//! # lifeboat-sources
//!
//! What lifeboat backs up and how it puts it back:
//! - [`sqlite`]: hot, consistent capture of a live SQLite database page by page, and a
//!   restore that is verified (`integrity_check`, row counts, checksum) before it replaces
//!   anything;
//! - [`tree`]: directory trees (uploads), single secret files and single config files, with
//!   modes, owners, mtimes and symlinks;
//! - [`postgres`]: PostgreSQL databases through `pg_dump --format=custom` in one exported
//!   snapshot (row counts read in the same snapshot), restored into a new database or swapped
//!   in place, verified by row counts;
//! - [`app`]: an app's sources as one recovery point ([`backup_app`], [`restore_point`]).
#![deny(missing_docs)]

pub mod app;
pub mod postgres;
pub mod sqlite;
pub mod tree;
mod util;

pub use app::{
    backup_app, build_excludes, restore_point, target_path, AppSpec, PgRestoreSettings,
    RestoreOptions, RestoreTarget, RestoredComponent, SourceSpec,
};
pub use util::open_by_other_process;
