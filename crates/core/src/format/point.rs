//! Point manifests (`points/<id>`): one recovery point of one app (`docs/FORMAT.md` §8).
//! Framed by [`super::object`] with magic `LBPT`; the payload is UTF-8 JSON of [`Point`].
//! Manifests stay small: large lists (page tables, file trees) are stored as chunks and only
//! their chunk ids appear here. A point is written last, after every chunk it references is
//! durable in a pack and listed in an index, so a visible point is always complete.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{err, Result};
use crate::id::ChunkId;

/// Point magic.
pub const POINT_MAGIC: &[u8; 4] = b"LBPT";

/// One recovery point.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// The app this point belongs to (`"adhoc"` for `backup --repo ... PATH`).
    pub app: String,
    /// When capture started, RFC 3339 UTC. Every component reflects this moment or later
    /// (each database is read in one transaction).
    pub time: String,
    /// Tags: `manual`, `scheduled`, `pre-migration`, `pre-deploy`, `pre-restore`, or any word.
    pub tags: Vec<String>,
    /// Host that made it.
    pub hostname: String,
    /// lifeboat version that wrote it.
    pub lifeboat_version: String,
    /// What was captured.
    pub components: Vec<Component>,
    /// Numbers about the backup that made it.
    pub stats: PointStats,
    /// The app's definition (its `[app.NAME]` table of `lifeboat.toml`, as TOML, paths
    /// absolute, passwords removed), so that a new machine can be set up from the repository
    /// alone (`lifeboat recover`). Written by another host: untrusted, never run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

/// Numbers recorded for each point.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PointStats {
    /// Wall time of the backup, milliseconds.
    pub duration_ms: u64,
    /// Bytes read from the sources.
    pub bytes_read: u64,
    /// Chunks not already in the repository.
    pub chunks_new: u64,
    /// Bytes those new chunks had before compression.
    pub bytes_new: u64,
    /// Bytes added to storage (packs + index), after compression and encryption.
    pub bytes_stored: u64,
}

/// What kind of thing a component is; decides how it is captured and restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// A SQLite database, captured page by page in one read transaction.
    Sqlite,
    /// A directory tree (uploads).
    Files,
    /// One secret file (key, `.env`): exact mode and owner; content never printed.
    Secret,
    /// One config file: versioned, readable.
    Config,
    /// A PostgreSQL database, captured by `pg_dump --format=custom` in one snapshot. Its dump
    /// (and the roles, when asked for) is stored as a tree (`dump`, `globals.sql`).
    Postgres,
}

impl ComponentKind {
    /// Lower-case name as used in the CLI (`--only db|files|secrets|config`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Sqlite => "sqlite",
            ComponentKind::Files => "files",
            ComponentKind::Secret => "secret",
            ComponentKind::Config => "config",
            ComponentKind::Postgres => "postgres",
        }
    }

    /// Whether this is a database (`--only db` selects both kinds).
    pub fn is_database(self) -> bool {
        matches!(self, ComponentKind::Sqlite | ComponentKind::Postgres)
    }
}

/// One captured source.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Component {
    /// Kind.
    pub kind: ComponentKind,
    /// Absolute path of the source at backup time; where an in-place restore puts it back.
    pub path: String,
    /// Logical size in bytes (database size, sum of file sizes).
    pub size: u64,
    /// Present for [`ComponentKind::Sqlite`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteBody>,
    /// Present for files, secret and config; for postgres, the dump files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<TreeBody>,
    /// Present for [`ComponentKind::Postgres`]: what the server said at capture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresBody>,
}

/// A PostgreSQL database: facts recorded in the dump's snapshot. The dump itself is the
/// component's tree (file `dump`, and `globals.sql` when roles were dumped).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostgresBody {
    /// Database name.
    pub database: String,
    /// `server_version` (e.g. `15.18`).
    pub server_version: String,
    /// `server_version_num` (e.g. 150018).
    pub server_version_num: u32,
    /// Major version of the `pg_dump` that wrote the dump (a `pg_restore` at least this new
    /// reads it).
    pub pg_dump_major: u32,
    /// `pg_database_size` at capture, bytes.
    pub database_size: u64,
    /// Database encoding (`UTF8`), collation and ctype, recreated on restore.
    pub encoding: String,
    /// `datcollate`.
    pub collate: String,
    /// `datctype`.
    pub ctype: String,
    /// Owner role of the database.
    pub owner: String,
    /// The dump holds the schema only (no table data).
    pub schema_only: bool,
    /// The tree holds `globals.sql` (`pg_dumpall --globals-only`: roles, tablespaces).
    pub globals: bool,
    /// Rows per table (`schema.table`, quoted where SQL needs it), counted in the dump's
    /// snapshot, so a restore must match exactly.
    pub row_counts: BTreeMap<String, u64>,
}

/// A SQLite database as pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SqliteBody {
    /// Page size in bytes.
    pub page_size: u32,
    /// Number of pages (database size = page_size * page_count).
    pub page_count: u32,
    /// Rolling checksum of the whole database (`docs/FORMAT.md` §9.2), 32 hex characters.
    pub checksum: String,
    /// Segments of the base page table.
    pub base: Vec<ChunkId>,
    /// Number of pages the base table lists.
    pub base_pages: u32,
    /// Segments of the cumulative delta against the base (may be empty).
    pub delta: Vec<ChunkId>,
    /// Journal mode at capture (`wal`, `delete`, ...).
    pub journal_mode: String,
    /// `PRAGMA user_version`.
    pub user_version: i64,
    /// Largest `version` in `schema_migrations`, when that table exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    /// Rows per table at capture.
    pub row_counts: BTreeMap<String, u64>,
    /// Permission bits of the database file (restored onto the new file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Owner uid of the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Owner gid of the database file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

/// A file tree stored as a chunked list of entries (see [`super::tree`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TreeBody {
    /// Chunks of the encoded entry list.
    pub entries: Vec<ChunkId>,
    /// Number of regular files.
    pub files: u64,
    /// Number of directories.
    pub dirs: u64,
    /// Number of symlinks.
    pub symlinks: u64,
}

impl Point {
    /// Encodes the JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("point serialises")
    }
    /// Decodes a JSON payload.
    pub fn decode(b: &[u8], what: &str) -> Result<Point> {
        serde_json::from_slice(b).map_err(|e| err!(Corrupt, "{what}: bad manifest: {e}"))
    }
    /// The capture time.
    pub fn timestamp(&self) -> Result<jiff::Timestamp> {
        self.time
            .parse()
            .map_err(|e| err!(Corrupt, "point time {:?} is not valid: {e}", self.time))
    }
}
