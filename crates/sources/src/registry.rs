//! The one place that maps a [`ComponentKind`] to the code that handles it.
//!
//! A new kind adds its arm here (the match is exhaustive, so a new `ComponentKind` variant
//! does not compile until it has one) and its implementation file; nothing else in this
//! crate branches on the kind.
use std::path::{Path, PathBuf};

use lifeboat_core::{Component, ComponentKind, Error, ErrorKind, Progress, Result};

use crate::postgres::PostgresKind;
use crate::source::{Capture, Source, SourceKind};
use crate::sqlite::SqliteKind;
use crate::tree::TreeKind;

/// The implementation that restores components of `kind` (and configures sources of it).
pub fn kind(kind: ComponentKind) -> &'static dyn SourceKind {
    match kind {
        ComponentKind::Sqlite => &SqliteKind,
        ComponentKind::Files | ComponentKind::Secret | ComponentKind::Config => &TreeKind,
        ComponentKind::Postgres => &PostgresKind,
    }
}

/// A configured source of `kind` at `path`. A kind that a path cannot name (PostgreSQL)
/// gives a source whose [`Source::validate`] fails.
///
/// The path is normalized lexically first (repeated and trailing `/` and `.` components
/// dropped; `..` kept, and refused by `validate`), so that the component it records obeys the
/// path rules a restore checks (`docs/FORMAT.md` §11).
pub(crate) fn at_path(kind: ComponentKind, path: PathBuf) -> Box<dyn Source> {
    let path: PathBuf = path.components().collect();
    self::kind(kind)
        .at_path(kind, path.clone())
        .unwrap_or_else(|| Box::new(Unconfigured { kind, path }))
}

/// A source of a kind that needs settings a path cannot give (`SourceSpec::path` with
/// [`ComponentKind::Postgres`]): refused by [`Source::validate`], before any backup starts.
#[derive(Debug)]
struct Unconfigured {
    kind: ComponentKind,
    path: PathBuf,
}

impl Source for Unconfigured {
    fn kind(&self) -> ComponentKind {
        self.kind
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn validate(&self) -> Result<()> {
        Err(Error::new(
            ErrorKind::Usage,
            format!(
                "internal: a {} source without connection settings",
                self.kind.as_str()
            ),
        ))
    }

    fn capture(
        &self,
        _cx: &mut Capture<'_, '_>,
        _previous: Option<&Component>,
        _progress: &dyn Progress,
    ) -> Result<Component> {
        Err(self.validate().expect_err("never valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, in declaration order. The match below makes this fail to compile when a
    /// variant is added, until it is listed here (and therefore checked).
    const ALL: [ComponentKind; 5] = [
        ComponentKind::Sqlite,
        ComponentKind::Files,
        ComponentKind::Secret,
        ComponentKind::Config,
        ComponentKind::Postgres,
    ];

    fn position(k: ComponentKind) -> usize {
        match k {
            ComponentKind::Sqlite => 0,
            ComponentKind::Files => 1,
            ComponentKind::Secret => 2,
            ComponentKind::Config => 3,
            ComponentKind::Postgres => 4,
        }
    }

    #[test]
    fn every_kind_has_a_registered_implementation_that_claims_it() {
        for (i, k) in ALL.into_iter().enumerate() {
            assert_eq!(position(k), i, "ALL lists {k:?} out of place");
            assert!(
                kind(k).kinds().contains(&k),
                "registry maps {k:?} to an implementation that does not restore it"
            );
        }
    }

    #[test]
    fn path_sources_keep_kind_and_path() {
        for k in ALL {
            let s = at_path(k, PathBuf::from("/srv/app/x"));
            assert_eq!(s.kind(), k);
            assert_eq!(s.path(), Some(Path::new("/srv/app/x")));
            // Only PostgreSQL cannot be named by a path.
            assert_eq!(
                s.validate()
                    .is_err_and(|e| e.to_string().contains("internal")),
                k == ComponentKind::Postgres
            );
        }
    }
}
