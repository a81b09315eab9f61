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
//! - [`Source`] (a configured source: validate, capture) and [`SourceKind`] (a kind: preflight,
//!   restore), implemented once per kind in the modules above; [`registry`] maps each
//!   [`ComponentKind`](lifeboat_core::ComponentKind) to its implementation, in one place;
//! - [`app`]: an app's sources as one recovery point ([`backup_app`], [`restore_point`]);
//! - `dirfd` (private): how restores touch the file system, through directory fds and never by
//!   path, so that a symlink swapped in by the app's user is replaced, never followed.
#![deny(missing_docs)]

// Links SQLite with sqlite_dbpage in place of libsqlite3-sys's copy (see that crate).
use lifeboat_sqlite as _;

pub mod app;
mod compare;
mod dirfd;
pub mod postgres;
pub mod registry;
mod source;
pub mod sqlite;
pub mod tree;
mod util;

pub use app::{backup_app, build_excludes, restore_point, AppSpec, SourceSpec};
pub use compare::{compare_tree, TreeComparison};
pub use dirfd::create_new_file;
pub use postgres::PgRestoreSettings;
pub use source::{
    target_path, Capture, Proofs, RestoreContext, RestoreOptions, RestoreTarget, RestoredComponent,
    Source, SourceKind,
};
pub use util::{open_by_other_process, scrub_child_env, SECRET_ENV};
