//! SQLite with `sqlite_dbpage`, whatever the build's configuration.
//!
//! libsqlite3-sys (through rusqlite's `bundled` feature) compiles SQLite without
//! `SQLITE_ENABLE_DBPAGE_VTAB`, and it offers no Cargo feature for it: only the
//! `LIBSQLITE3_FLAGS` environment variable, which `cargo install`, a build from another
//! directory or from a crate archive do not see. This crate's build script compiles the same
//! amalgamation (found through `DEP_SQLITE3_INCLUDE`) with the same options plus
//! `SQLITE_ENABLE_DBPAGE_VTAB`, and links it as a whole archive: every `sqlite3_*` symbol is
//! then defined before the linker reaches libsqlite3-sys's copy, so that copy's object is never
//! pulled in and the program has exactly one SQLite, this one. See docs/ARCHITECTURE.md
//! ("Decisions", "SQLite is built with sqlite_dbpage by our own build script").
//!
//! Any crate that opens SQLite must depend on this one and name it (`use lifeboat_sqlite as _;`),
//! so that it is linked.

/// Whether the build script compiled SQLite itself (false when libsqlite3-sys is not built
/// from its bundled sources, e.g. `LIBSQLITE3_SYS_USE_PKG_CONFIG=1`: then the system's SQLite
/// is used and must have `sqlite_dbpage` itself).
pub const BUILT_WITH_DBPAGE: bool = cfg!(lifeboat_sqlite_dbpage);

// Named so that rustc orders this crate (and its whole archive) before libsqlite3-sys on the
// link line.
use libsqlite3_sys as _;
