//! The two traits every source kind implements, and what a restore is told and reports.
//!
//! - [`Source`] is a *configured* source: what one config line or one command-line path
//!   names (a database file, an upload directory, a PostgreSQL database on a server). It
//!   checks itself before a backup starts and captures itself into a backup session.
//! - [`SourceKind`] is a *kind* of source, independent of any configuration: it puts a stored
//!   [`Component`] back. A restore needs no config (the point says what it holds), so this
//!   side works from the component alone plus the [`RestoreContext`].
//!
//! `app.rs` only iterates sources and components and calls these traits; the one mapping from
//! [`ComponentKind`] to an implementation is [`crate::registry`]. Adding a kind means one
//! file implementing both traits and one line there (plus its body in core's
//! `format/point.rs` and `FORMAT.md`, if none of the existing bodies fits).
use std::ffi::OsString;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use globset::GlobSet;
use std::sync::Mutex;

use lifeboat_core::{
    ChunkReader, ChunkWriter, Component, ComponentKind, Error, ErrorKind, Progress, ProofRecord,
    ProvenDatabase, Result,
};
use serde::Serialize;

use crate::app::{PgRestoreSettings, SourceSpec};
use crate::dirfd::SafeDir;
use crate::sqlite;

/// A configured source: one thing an app backs up.
///
/// Contract:
/// - [`Source::validate`] runs for every source of an app before the backup takes its lease
///   and before any source is read; it reads nothing from the repository and writes nothing.
///   Cheap checks that would otherwise fail halfway through a backup belong here.
/// - [`Source::capture`] stores bytes only through the writer of the session it is given
///   ([`Capture::writer`]), and returns the component that describes them; it never writes a
///   point, an index or a pack itself (it cannot: only the session can). An error leaves no
///   component (the session is dropped and no point is written). It must not change the
///   source.
/// - [`Source::previous_match`] picks this source's component from the app's previous point;
///   `capture` then receives it and may reuse its chunks (only after checking
///   [`ChunkWriter::has`]: an index can lose chunks to a prune).
/// - [`Source::kind`] is the kind of every component `capture` returns, so that
///   [`crate::registry::kind`] finds the implementation that restores it.
///
/// `Send + Sync`: a [`crate::SourceSpec`] shares one source behind an `Arc` (a daemon may
/// hold an app's sources across runs). `Debug` output must not print secrets it can avoid.
pub trait Source: Send + Sync + Debug {
    /// The kind of the components this source captures.
    fn kind(&self) -> ComponentKind;

    /// How the source is named in messages and listings: its path, or
    /// `postgresql://user@host/db`.
    fn describe(&self) -> String;

    /// The file or directory, for a source that is one.
    fn path(&self) -> Option<&Path> {
        None
    }

    /// Checks that need no repository, before the backup starts (absolute path, a SQLite
    /// built with `sqlite_dbpage`, connection settings present). Writes nothing.
    fn validate(&self) -> Result<()> {
        Ok(())
    }

    /// Whether `c`, a component of the app's previous point, is this source's previous
    /// capture. By default: same kind and same path.
    fn previous_match(&self, c: &Component) -> bool {
        c.kind == self.kind() && self.path().is_some_and(|p| Path::new(&c.path) == p)
    }

    /// Captures the source into the session behind `cx`. `previous` is this source's
    /// component in the app's previous point (see [`Source::previous_match`]), if any.
    fn capture(
        &self,
        cx: &mut Capture<'_, '_>,
        previous: Option<&Component>,
        progress: &dyn Progress,
    ) -> Result<Component>;
}

/// What a capture may use: the backup session's writer and a reader of the repository, and
/// the app's exclude patterns. Only [`crate::backup_app`] makes one, from a
/// `BackupSession`.
#[non_exhaustive]
pub struct Capture<'a, 'r> {
    /// The session's writer: the only way a capture stores anything.
    pub writer: &'a mut ChunkWriter<'r>,
    /// Reads (authenticated) chunks of earlier points: previous page tables and trees.
    pub reader: &'a mut ChunkReader<'r>,
    /// The app's exclude patterns (for file trees).
    pub excludes: &'a GlobSet,
}

impl<'a, 'r> Capture<'a, 'r> {
    pub(crate) fn new(
        writer: &'a mut ChunkWriter<'r>,
        reader: &'a mut ChunkReader<'r>,
        excludes: &'a GlobSet,
    ) -> Self {
        Capture {
            writer,
            reader,
            excludes,
        }
    }
}

/// A kind of source: how its stored components are put back. Needs no configuration.
///
/// Contract:
/// - [`SourceKind::check_selection`] and [`SourceKind::preflight`] only refuse: they write
///   nothing, create nothing and read nothing from the repository (they get no reader). A
///   restore runs every component's `check_selection`, then every component's `preflight`,
///   before the CLI takes a pre-restore point and before anything is fetched; so a refusal
///   leaves everything as it was.
/// - [`SourceKind::restore`] never lets an unauthenticated byte reach the target: every chunk
///   comes from the reader, which authenticates it, and what the point records (checksums,
///   sizes, row counts) is checked before the result replaces anything it would destroy. On
///   error the target is as it was, or (trees, which merge) holds only complete,
///   authenticated files. It refuses again what its preflight refuses, checked at the time
///   of writing (time passes between the two, and a confirmation prompt may sit between).
/// - It reads only the component it is given; components are restored one after the other,
///   in the point's order, and a failure stops the restore.
/// - The [`RestoredComponent`] it returns says where the component went and how it was
///   verified; its text is what the CLI prints and `--json` reports.
pub trait SourceKind: Send + Sync {
    /// The component kinds this implementation restores.
    fn kinds(&self) -> &'static [ComponentKind];

    /// A configured source of `kind` (one of [`SourceKind::kinds`]) at `path`, for a config
    /// line or a command-line path. `None` when a path alone cannot name one (PostgreSQL).
    fn at_path(&self, kind: ComponentKind, path: PathBuf) -> Option<Box<dyn Source>> {
        let _ = (kind, path);
        None
    }

    /// Refusals about the restore options and the selection as a whole (an option that names
    /// one component when several are selected). Called once per selected component of this
    /// kind with the same context, so it must give the same answer each time.
    fn check_selection(&self, cx: &RestoreContext<'_>) -> Result<()> {
        let _ = cx;
        Ok(())
    }

    /// Refuses, before anything is written, when restoring `c` as `cx` says is unsafe or
    /// impossible (a database open by another process or newer than the point, a target
    /// name taken, tools too old).
    fn preflight(&self, c: &Component, cx: &RestoreContext<'_>) -> Result<()> {
        let _ = (c, cx);
        Ok(())
    }

    /// What restoring `c` in place would replace, as the sources a `pre-restore` point
    /// captures first; empty when nothing is there (nothing to lose). Looks at the target,
    /// writes nothing. Every kind must say: an in-place restore never destroys a state it
    /// did not offer to save.
    fn current_state(&self, c: &Component, cx: &RestoreContext<'_>) -> Result<Vec<SourceSpec>>;

    /// The same state as plain bytes, for when capturing [`SourceKind::current_state`]
    /// failed (a damaged database that SQLite cannot read is kept as its raw files). `None`:
    /// this kind has no such fallback and is saved as `current_state` says.
    fn current_state_raw(&self, c: &Component) -> Option<Vec<SourceSpec>> {
        let _ = c;
        None
    }

    /// Restores `c`, verified (see the trait's contract).
    fn restore(
        &self,
        c: &Component,
        cx: &RestoreContext<'_>,
        reader: &mut ChunkReader<'_>,
        progress: &dyn Progress,
    ) -> Result<RestoredComponent>;
}

/// What a restore of a point knows, for every component of it.
#[derive(Debug, Clone, Copy)]
pub struct RestoreContext<'a> {
    /// Target, verification level, force, PostgreSQL settings.
    pub options: &'a RestoreOptions,
    /// When the point was taken (refuse to replace newer data; names of restored databases).
    pub point_time: jiff::Timestamp,
    /// Every component being restored, in order (a component beneath another's path comes
    /// after it).
    pub selected: &'a [&'a Component],
    /// Every component of the point, selected or not (a tree restore keeps what lies beneath
    /// it at another component's path: see `tree.rs`).
    pub components: &'a [Component],
    /// Checks that already passed on this point's restored bytes, and those passing now
    /// (`None`: nothing known, nothing recorded).
    pub proofs: Option<&'a Proofs>,
}

impl RestoreContext<'_> {
    /// Where `c` lands.
    pub fn dest(&self, c: &Component) -> PathBuf {
        target_path(&self.options.target, &c.path)
    }

    /// The directory that holds `c`'s destination, opened safely, and `c`'s name in it.
    ///
    /// Down to an *anchor* the path is the operator's, walked by [`SafeDir::open_trusted`]
    /// (symlinks followed only where only root can have put them); below the anchor nothing
    /// leads outside it ([`SafeDir::open_beneath`]). The anchor is `DIR` for `--to DIR`; in
    /// place it is the root of the deepest file tree being restored that holds `c` (a
    /// secret inside an uploads directory: the tree, restored just before, may hold any
    /// symlink the point or a local user put there), and otherwise `c`'s own directory.
    pub(crate) fn parent_dir(&self, c: &Component) -> Result<(SafeDir, OsString)> {
        let path = Path::new(&c.path);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("component path {} has no parent directory", c.path),
            ));
        };
        let dir = match &self.options.target {
            RestoreTarget::Into(dir) => {
                let rel = parent.strip_prefix("/").unwrap_or(parent);
                SafeDir::open_trusted(dir)?
                    .open_beneath(rel, true)
                    .map_err(|e| e.context(format!("restore {}", self.dest(c).display())))?
            }
            RestoreTarget::InPlace => {
                let anchor = self.anchor_of(c);
                match anchor {
                    None => SafeDir::open_trusted(parent)?,
                    Some(a) => {
                        let rel = parent.strip_prefix(a).unwrap_or(Path::new(""));
                        SafeDir::open_root(a)?
                            .open_beneath(rel, true)
                            .map_err(|e| e.context(format!("restore {}", c.path)))?
                    }
                }
            }
        };
        Ok((dir, name.to_os_string()))
    }
}

impl RestoreContext<'_> {
    /// In place: the root of the deepest file tree being restored that holds `c`.
    fn anchor_of(&self, c: &Component) -> Option<&Path> {
        let path = Path::new(&c.path);
        self.selected
            .iter()
            .filter(|o| o.kind == ComponentKind::Files && o.path != c.path)
            .map(|o| Path::new(&o.path))
            .filter(|a| path.starts_with(a))
            .max_by_key(|a| a.as_os_str().len())
    }

    /// Refuses now what [`RestoreContext::parent_dir`] would refuse at restore time on the
    /// operator's part of the path (a symlink in a directory another user can write), without
    /// creating anything: called by the preflight, before any pre-restore point.
    pub(crate) fn check_parent(&self, c: &Component) -> Result<()> {
        let path = Path::new(&c.path);
        match &self.options.target {
            RestoreTarget::Into(dir) => SafeDir::check_trusted(dir),
            RestoreTarget::InPlace => {
                let anchor = self.anchor_of(c);
                match anchor.unwrap_or(path).parent() {
                    Some(p) => SafeDir::check_trusted(p),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Orders `selected` so that a component whose path lies beneath another selected
/// component's path comes after it (a tree restore replaces its whole directory, so what is
/// inside it goes in afterwards); otherwise the point's order is kept.
pub(crate) fn parents_first(selected: &mut [&Component]) {
    let all: Vec<String> = selected.iter().map(|c| c.path.clone()).collect();
    let depth = |c: &Component| {
        all.iter()
            .filter(|p| **p != c.path && Path::new(&c.path).starts_with(p))
            .count()
    };
    selected.sort_by_key(|c| depth(c));
}

/// What a restore knows and learns about SQLite checks that passed on a point's exact bytes
/// (`docs/FORMAT.md` §16). A known record only lets a database skip re-running the check;
/// its bytes are authenticated and its whole-database checksum compared all the same.
#[derive(Debug, Default)]
pub struct Proofs {
    /// The point's readable records.
    pub known: Vec<ProofRecord>,
    /// Databases whose check (the restore's level) and row counts passed in this restore.
    pub passed: Mutex<Vec<ProvenDatabase>>,
}

impl Proofs {
    /// The record proving that the point's database with `checksum` and `page_count` passed
    /// a check at least as thorough as `level`, if any (the oldest, so the output names when
    /// it was first proven), and the check it records.
    pub fn find(
        &self,
        checksum: &str,
        page_count: u32,
        level: crate::sqlite::Verify,
    ) -> Option<(&ProofRecord, &str)> {
        let accepted = level.accepted_proofs();
        self.known
            .iter()
            .filter_map(|r| {
                r.proves(checksum, page_count, accepted)
                    .map(|d| (r, d.check.as_str()))
            })
            .min_by_key(|(r, _)| r.time.parse::<jiff::Timestamp>().ok())
    }

    /// Notes a database whose check passed now.
    pub fn passed(&self, db: ProvenDatabase) {
        self.passed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(db);
    }
}

/// Where a restore puts things.
#[derive(Debug, Clone)]
pub enum RestoreTarget {
    /// Back to the paths recorded in the point.
    InPlace,
    /// Under this directory: a source at `/srv/chat/chat.db` lands at `DIR/srv/chat/chat.db`.
    Into(PathBuf),
}

/// Restore options.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where.
    pub target: RestoreTarget,
    /// Only these kinds (empty = all).
    pub only: Vec<ComponentKind>,
    /// Replace databases that are open or newer than the point.
    pub force: bool,
    /// Replace a database modified after the point was taken (still refusing one another
    /// process has open): a rollback puts back the state saved before a restore, which is
    /// older than what that restore wrote.
    pub replace_newer: bool,
    /// A stop hook runs between this preflight and the restore: the preflight does not refuse
    /// a database another process (the app) has open; the restore's own check, after the
    /// hook, still does.
    pub app_stops_first: bool,
    /// How thoroughly restored databases are checked.
    pub verify: sqlite::Verify,
    /// How a database rebuilt from continuous deltas (`replayed`) is checked (the app layer
    /// passes `verify`: ARCHITECTURE.md, Decisions, "`restore --at` keeps `integrity_check`
    /// as its default").
    pub verify_replayed: sqlite::Verify,
    /// Run SQLite's checks even where a proof record of the point says they passed
    /// (`docs/FORMAT.md` §16): a drill, or `restore --recheck`.
    pub recheck: bool,
    /// Write a proof record for the databases whose check passed (a drill writes its own,
    /// with what else it checked).
    pub write_proof: bool,
    /// How PostgreSQL databases are restored.
    pub postgres: PgRestoreSettings,
    /// Restore setuid and setgid bits as the point records them. Off by default: a point may
    /// come from another key holder, and a setuid file it plants in an app's directory would
    /// give whoever can run it the owner's rights (root's, for a file the point says root
    /// owns). Without it they are cleared and the restore says so.
    pub keep_setid: bool,
    /// Page tables replayed from continuous deltas (`restore --at`), by the component's path
    /// as restored: such a database is written from this table (its body carries the
    /// replay's checksum and page count, and no row counts), and no proof record is used or
    /// written for it (proofs name points, and these bytes are no point's).
    pub replayed:
        Option<std::sync::Arc<std::collections::HashMap<String, Vec<lifeboat_core::ChunkId>>>>,
}

/// What a restore did, per component.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredComponent {
    /// Kind.
    pub kind: ComponentKind,
    /// Where it was written.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// How it was verified.
    pub verified: String,
    /// What could not be restored exactly.
    pub warnings: Vec<String>,
}

/// Where a component lands for a given target.
pub fn target_path(target: &RestoreTarget, source: &str) -> PathBuf {
    match target {
        RestoreTarget::InPlace => PathBuf::from(source),
        RestoreTarget::Into(dir) => dir.join(source.trim_start_matches('/')),
    }
}

/// Fails unless `path` is absolute and normalized, as a restore requires of the component it
/// records (what a path source's [`Source::validate`] checks first).
pub(crate) fn require_absolute(path: &Path) -> Result<()> {
    if !path.is_absolute() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("source path {} is not absolute", path.display()),
        ));
    }
    match lifeboat_core::component_path_problem(&path.display().to_string()) {
        None => Ok(()),
        Some(why) => Err(Error::new(
            ErrorKind::Usage,
            format!("source path {} {why}", path.display()),
        )
        .with_hint("name the source by a path without `..`")),
    }
}

/// The error for a component whose kind's body is missing.
pub(crate) fn no_body(c: &Component) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("component {} has no body", c.path),
    )
}
