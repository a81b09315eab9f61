//! Comparing a restored copy of a files, secret or config component with its point: what a
//! drill does after restoring, so that a point is called proven only when the bytes on disk
//! are the bytes backed up (the restore authenticated every chunk before writing it; this
//! reads back what was written).
//!
//! The copy must lie where nobody but lifeboat can change it (a drill's private scratch
//! directory): names are opened with `O_NOFOLLOW` from their directory's path, so a symlink
//! where the point has a file is a difference, never followed.
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use lifeboat_core::{
    load_tree, ChunkReader, Component, EntryKind, Error, ErrorKind, Repository, Result,
};

/// What [`compare_tree`] found equal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeComparison {
    /// Entries (files, directories, symlinks) compared.
    pub entries: u64,
    /// Bytes of file content read back and compared.
    pub bytes: u64,
}

fn differs(at: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Verify,
        format!(
            "{}: {what} (the restored copy differs from the point)",
            at.display()
        ),
    )
}

/// Compares the copy of component `c` restored at `at` with the point's tree: every entry
/// present with its kind, every file's size, permission bits (setuid/setgid aside: a restore
/// clears them by default), owner (when run as root, as a restore sets owners only then) and
/// content (cut again with the repository's keyed chunker and the
/// chunk ids compared), every symlink's target. The first difference is a
/// [`ErrorKind::Verify`] error naming the path. Entries the point does not have are not
/// looked for (a restore builds the tree from the point alone).
pub fn compare_tree(
    repo: &Repository,
    reader: &mut ChunkReader<'_>,
    c: &Component,
    at: &Path,
) -> Result<TreeComparison> {
    let body = c.tree.as_ref().ok_or_else(|| {
        Error::new(
            ErrorKind::Corrupt,
            format!("{} component {} has no tree", c.kind.as_str(), c.path),
        )
    })?;
    let entries = load_tree(reader, body)?;
    let mut out = TreeComparison::default();
    for e in &entries {
        if let Some(why) = lifeboat_core::entry_path_problem(&e.path) {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("tree entry {:?} {why}", e.path),
            ));
        }
        let path = if e.path.is_empty() {
            at.to_path_buf()
        } else {
            at.join(&e.path)
        };
        let io = |err: std::io::Error| Error::io(path.display(), err).with_kind(ErrorKind::Verify);
        let md = std::fs::symlink_metadata(&path).map_err(io)?;
        let kind = if md.file_type().is_symlink() {
            EntryKind::Symlink
        } else if md.is_dir() {
            EntryKind::Dir
        } else if md.is_file() {
            EntryKind::File
        } else {
            return Err(differs(&path, "not a file, directory or symlink"));
        };
        if kind != e.kind {
            return Err(differs(
                &path,
                format_args!("a {kind:?} where the point has a {:?}", e.kind),
            ));
        }
        // Owners as root only (a restore sets them only as root); a secret left owned by
        // root instead of the app's user is a difference.
        if kind != EntryKind::Symlink && crate::tree::is_root() {
            let (uid, gid) = (md.uid(), md.gid());
            if (uid, gid) != (e.uid, e.gid) {
                return Err(differs(
                    &path,
                    format_args!("owner {uid}:{gid} where the point has {}:{}", e.uid, e.gid),
                ));
            }
        }
        if kind != EntryKind::Symlink {
            let (mode, want) = (md.permissions().mode() & 0o1777, e.mode & 0o1777);
            if mode != want {
                return Err(differs(
                    &path,
                    format_args!("mode {mode:o} where the point has {want:o}"),
                ));
            }
        }
        match kind {
            EntryKind::Symlink => {
                let target = std::fs::read_link(&path).map_err(io)?;
                if Some(target.to_string_lossy().as_ref()) != e.target.as_deref() {
                    return Err(differs(&path, "a symlink to another target"));
                }
            }
            EntryKind::File => {
                if md.size() != e.size {
                    return Err(differs(
                        &path,
                        format_args!("{} bytes where the point has {}", md.size(), e.size),
                    ));
                }
                let file = File::options()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
                    .map_err(io)?;
                let (ids, n) = repo.chunk_ids(file)?;
                if n != e.size || ids != e.chunks {
                    return Err(differs(&path, "its content is not the point's"));
                }
                out.bytes += n;
            }
            EntryKind::Dir => {}
        }
        out.entries += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use lifeboat_core::{ComponentKind, KdfParams, NoProgress, Storage};
    use lifeboat_storage::MemoryStorage;

    use super::*;
    use crate::{backup_app, restore_point, AppSpec, RestoreOptions, RestoreTarget, SourceSpec};

    /// The tree at `src` backed up into a new in-memory repository and restored under `out`:
    /// the repository, the point and where its copy is.
    fn backed_up_and_restored(
        src: &Path,
        out: &Path,
    ) -> (Repository, lifeboat_core::Point, std::path::PathBuf) {
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let mut repo = Repository::init(storage, b"pw", kdf).unwrap();
        let app = AppSpec {
            name: "t".into(),
            sources: vec![SourceSpec::path(ComponentKind::Files, src)],
            ..AppSpec::default()
        };
        let (id, point) = backup_app(&mut repo, &app, &[], &NoProgress).unwrap();
        let opts = RestoreOptions {
            target: RestoreTarget::Into(out.to_path_buf()),
            only: Vec::new(),
            force: false,
            replace_newer: false,
            app_stops_first: false,
            verify: crate::sqlite::Verify::Full,
            verify_replayed: crate::sqlite::Verify::Full,
            postgres: crate::PgRestoreSettings::default(),
            keep_setid: false,
            replayed: None,
            recheck: false,
            write_proof: true,
        };
        restore_point(&mut repo, &id, &point, &opts, &NoProgress).unwrap();
        let at = crate::target_path(&opts.target, &point.components[0].path);
        (repo, point, at)
    }

    /// A copy that differs from its point in any way the point records is refused, naming
    /// the path: content of the same size, a mode, a symlink for a file, a missing file.
    #[test]
    fn a_restored_copy_that_differs_from_its_point_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("uploads");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/x.bin"), vec![1u8; 200_000]).unwrap();
        std::fs::write(src.join("b.txt"), b"bee").unwrap();
        std::os::unix::fs::symlink("a/x.bin", src.join("link")).unwrap();
        let (mut repo, point, at) = backed_up_and_restored(&src, &dir.path().join("out"));
        let compare = |repo: &mut Repository| {
            let s = repo.begin_restore().unwrap();
            let mut reader = s.reader();
            compare_tree(s.repository(), &mut reader, &point.components[0], &at)
        };
        let same = compare(&mut repo).unwrap();
        assert_eq!(same.entries, 5, "root, a, a/x.bin, b.txt, link");
        assert_eq!(same.bytes, 200_003);
        let refused = |repo: &mut Repository, needle: &str| {
            let e = compare(repo).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Verify, "{e}");
            assert!(e.to_string().contains(needle), "{e}");
        };
        // One byte changed, same size.
        let mut b = std::fs::read(at.join("a/x.bin")).unwrap();
        b[100_000] ^= 1;
        std::fs::write(at.join("a/x.bin"), &b).unwrap();
        refused(&mut repo, "a/x.bin: its content is not the point's");
        b[100_000] ^= 1;
        std::fs::write(at.join("a/x.bin"), &b).unwrap();
        compare(&mut repo).unwrap();
        // A mode.
        std::fs::set_permissions(at.join("b.txt"), std::fs::Permissions::from_mode(0o666)).unwrap();
        refused(&mut repo, "b.txt: mode 666");
        let mode = point_mode(&mut repo, &point, "b.txt");
        std::fs::set_permissions(at.join("b.txt"), std::fs::Permissions::from_mode(mode)).unwrap();
        // A symlink where the point has a file (never followed).
        std::fs::remove_file(at.join("b.txt")).unwrap();
        std::os::unix::fs::symlink("a/x.bin", at.join("b.txt")).unwrap();
        refused(&mut repo, "b.txt: a Symlink where the point has a File");
        // Gone.
        std::fs::remove_file(at.join("b.txt")).unwrap();
        refused(&mut repo, "b.txt");
    }

    /// Review: the comparison ignores owners. As root a restore sets every entry's owner
    /// from the point (an app whose secret comes back root-owned cannot read it), yet a copy
    /// whose owner differs from the point's passes the drill as "equal to the point".
    #[test]
    fn review_a_restored_copy_with_another_owner_is_named() {
        if unsafe { libc::geteuid() } != 0 {
            println!("note: not root; skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("uploads");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("b.txt"), b"bee").unwrap();
        std::os::unix::fs::chown(src.join("b.txt"), Some(4242), Some(4242)).unwrap();
        let (mut repo, point, at) = backed_up_and_restored(&src, &dir.path().join("out"));
        let compare = |repo: &mut Repository| {
            let s = repo.begin_restore().unwrap();
            let mut reader = s.reader();
            compare_tree(s.repository(), &mut reader, &point.components[0], &at)
        };
        compare(&mut repo).unwrap();
        std::os::unix::fs::chown(at.join("b.txt"), Some(0), Some(0)).unwrap();
        let e = compare(&mut repo)
            .expect_err("a copy owned by root where the point has uid 4242 was called equal");
        assert_eq!(e.kind(), ErrorKind::Verify, "{e}");
        assert!(e.to_string().contains("b.txt"), "{e}");
    }

    fn point_mode(repo: &mut Repository, point: &lifeboat_core::Point, path: &str) -> u32 {
        let s = repo.begin_restore().unwrap();
        let mut reader = s.reader();
        let entries = load_tree(&mut reader, point.components[0].tree.as_ref().unwrap()).unwrap();
        entries.iter().find(|e| e.path == path).unwrap().mode & 0o7777
    }
}
