//! The path rules of a point (`docs/FORMAT.md`, "Path rules"): what a component's path and a
//! tree's entry paths may be. A point comes from anyone who holds the password (every host
//! writing to a shared repository), so these are checked before a restore writes anything and
//! by `check`; a path that breaks them could place a restore outside `--to DIR` or beneath a
//! symlink.
use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::format::point::{Component, ComponentKind};
use crate::format::tree::{EntryKind, TreeEntry};

/// Why `path` is not a valid component path: it must be absolute, with no `..` component and
/// no NUL (`/` itself is allowed). Empty and `.` components (`//`, `/./`, a trailing `/`) are
/// harmless and accepted: lifeboat recorded such paths before it normalized them, and an
/// existing point must stay restorable. PostgreSQL components are named by a label, not a
/// path, and are not checked here.
pub fn component_path_problem(path: &str) -> Option<String> {
    if path.contains('\0') {
        return Some("contains a NUL byte".into());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Some("is not absolute".into());
    };
    if rest.split('/').any(|seg| seg == "..") {
        return Some("has a \"..\" component".into());
    }
    None
}

/// Why `rel` (a tree entry path other than the root `""`) is not relative and normalized.
fn segments_problem(rel: &str) -> Option<String> {
    for seg in rel.split('/') {
        match seg {
            "" => return Some("has an empty component".into()),
            "." | ".." => return Some(format!("has a {seg:?} component")),
            _ => {}
        }
    }
    None
}

/// Why a tree entry path is not valid: relative, normalized, no NUL (`""` is the root).
pub fn entry_path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        return None;
    }
    if path.contains('\0') {
        return Some("contains a NUL byte".into());
    }
    if path.starts_with('/') {
        return Some("is absolute".into());
    }
    segments_problem(path)
}

/// The first problem of a tree's entries: an invalid path, a path listed twice, or an entry
/// beneath an entry of the same tree that is not a directory (a symlink `a` then a file
/// `a/x`: a restore must never write beneath a symlink). Returns the entry's path and why.
pub fn tree_problem(entries: &[TreeEntry]) -> Option<(String, String)> {
    let mut kinds: HashMap<&str, EntryKind> = HashMap::with_capacity(entries.len());
    for e in entries {
        if let Some(why) = entry_path_problem(&e.path) {
            return Some((e.path.clone(), why));
        }
        if kinds.insert(&e.path, e.kind).is_some() {
            return Some((e.path.clone(), "is listed twice".into()));
        }
    }
    for e in entries {
        if e.path.is_empty() {
            continue;
        }
        // Every proper ancestor (the root `""` included) that the tree lists must be a
        // directory.
        let mut ancestors = vec![""];
        ancestors.extend(e.path.match_indices('/').map(|(i, _)| &e.path[..i]));
        for a in ancestors {
            if let Some(k) = kinds.get(a) {
                if *k != EntryKind::Dir {
                    let what = match k {
                        EntryKind::Symlink => "a symlink",
                        _ => "a file",
                    };
                    let shown = if a.is_empty() { "the root" } else { a };
                    return Some((
                        e.path.clone(),
                        format!("lies beneath {shown}, which is {what} in the same tree"),
                    ));
                }
            }
        }
    }
    None
}

/// Checks a component's path (not its tree, which needs a reader: see [`check_tree`]).
/// `point` names the point in the error.
pub fn check_component_path(point: &str, c: &Component) -> Result<()> {
    if c.kind == ComponentKind::Postgres {
        return Ok(());
    }
    match component_path_problem(&c.path) {
        None => Ok(()),
        Some(why) => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "point {point}: {} component path {:?} {why}; refusing it",
                c.kind.as_str(),
                c.path
            ),
        )
        .with_hint("a point's paths must be absolute and normalized; this point was written by hand or by a damaged or hostile lifeboat")),
    }
}

/// Checks the entries of component `c`'s tree. `point` names the point in the error.
pub fn check_tree(point: &str, c: &Component, entries: &[TreeEntry]) -> Result<()> {
    let root = entries
        .first()
        .filter(|e| e.path.is_empty())
        .map(|e| e.kind);
    let root_problem = match (c.kind, root) {
        (ComponentKind::Files, Some(EntryKind::Dir)) => None,
        (ComponentKind::Files, _) => Some("its root entry is not a directory"),
        (ComponentKind::Secret | ComponentKind::Config, Some(EntryKind::File))
            if entries.len() == 1 =>
        {
            None
        }
        (ComponentKind::Secret | ComponentKind::Config, _) => {
            Some("it is not exactly one regular file")
        }
        _ => None,
    };
    if let Some(why) = root_problem {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "point {point}: {} component {:?}: {why}; refusing it",
                c.kind.as_str(),
                c.path
            ),
        )
        .with_hint("lifeboat never writes such a point; it was written by hand or by a damaged or hostile lifeboat"));
    }
    match tree_problem(entries) {
        None => Ok(()),
        Some((path, why)) => Err(Error::new(
            ErrorKind::Corrupt,
            format!(
                "point {point}: {} component {:?}: tree entry {path:?} {why}; refusing it",
                c.kind.as_str(),
                c.path
            ),
        )
        .with_hint("a tree's entry paths must be relative, normalized and never beneath a symlink or file of the same tree; this point was written by hand or by a damaged or hostile lifeboat")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            size: 0,
            chunks: Vec::new(),
            target: None,
            ctime_ns: None,
            inode: None,
        }
    }

    #[test]
    fn component_paths() {
        for ok in [
            "/",
            "/srv",
            "/srv/chat/chat.db",
            "/srv/a..b",
            "/srv/.hidden",
            // Recorded by lifeboat before it normalized paths: harmless, still restorable.
            "/srv/./x",
            "//srv",
            "/srv//x",
            "/srv/",
        ] {
            assert_eq!(component_path_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "srv",
            "../etc",
            "/srv/../etc",
            "/a\0b",
            "/..",
            "/srv/..",
        ] {
            assert!(component_path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn entry_paths() {
        for ok in ["", "a", "a/b", "a..", ".x/y"] {
            assert_eq!(entry_path_problem(ok), None, "{ok}");
        }
        for bad in ["/a", "..", "a/../b", "./a", "a//b", "a/", "a\0"] {
            assert!(entry_path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn nothing_beneath_a_symlink_or_file() {
        use EntryKind::*;
        let ok = [e("", Dir), e("a", Dir), e("a/x", File), e("l", Symlink)];
        assert_eq!(tree_problem(&ok), None);
        let link = [e("", Dir), e("a", Symlink), e("a/x", File)];
        assert!(tree_problem(&link).unwrap().1.contains("symlink"));
        let deep = [e("", Dir), e("a", Symlink), e("a/b/c", File)];
        assert_eq!(tree_problem(&deep).unwrap().0, "a/b/c");
        let file = [e("", Dir), e("f", File), e("f/x", Dir)];
        assert!(tree_problem(&file).unwrap().1.contains("a file"));
        let root_file = [e("", File), e("x", File)];
        assert!(tree_problem(&root_file).is_some());
        let twice = [e("", Dir), e("a", Dir), e("a", Symlink)];
        assert!(tree_problem(&twice).unwrap().1.contains("twice"));
    }
}
