//! File tree entries (`docs/FORMAT.md` §10). A tree is the JSON array of [`TreeEntry`] in
//! depth-first, parent-before-child order, stored as content-defined chunks. Entry `""` is the
//! root itself (the directory, or the single file of a secret/config component).
use serde::{Deserialize, Serialize};

use crate::id::ChunkId;

/// Kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
}

/// One file, directory or symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path relative to the component root, `/`-separated; `""` is the root.
    pub path: String,
    /// Kind.
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky), as `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Size in bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Content chunks in order (files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkId>,
    /// Link target (symlinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Status change time, nanoseconds (files; only used to detect unchanged files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctime_ns: Option<i64>,
    /// Inode number (files; only used to detect unchanged files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
}
