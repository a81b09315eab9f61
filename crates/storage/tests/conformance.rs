//! One conformance test body for every [`Storage`] (after Litestream's
//! `RunWithReplicaClient`): local directory and memory now; S3 and SFTP join in issue 5.
use lifeboat_core::{ObjectKind, Storage, StorageError};
use lifeboat_storage::{LocalStorage, MemoryStorage};

fn conformance(s: &dyn Storage) {
    // Empty listings, not errors.
    for k in ObjectKind::ALL {
        assert!(s.list(k).unwrap().is_empty(), "{k} should list empty");
    }
    // NotFound is its own error.
    assert!(matches!(
        s.read(ObjectKind::Pack, "ab12"),
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        s.read_range(ObjectKind::Index, "ab12", 0, 1),
        Err(StorageError::NotFound { .. })
    ));

    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    s.write(ObjectKind::Pack, "ab01", &big).unwrap();
    s.write(ObjectKind::Pack, "cd02", b"small").unwrap();
    s.write(ObjectKind::Point, "ef03", b"point").unwrap();
    s.write(ObjectKind::Config, "config", b"{}").unwrap();

    let mut packs = s.list(ObjectKind::Pack).unwrap();
    packs.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(packs.len(), 2);
    assert_eq!(
        (packs[0].name.as_str(), packs[0].size),
        ("ab01", big.len() as u64)
    );
    assert_eq!((packs[1].name.as_str(), packs[1].size), ("cd02", 5));
    assert_eq!(s.list(ObjectKind::Point).unwrap().len(), 1);
    assert_eq!(s.list(ObjectKind::Config).unwrap().len(), 1);
    assert!(s.list(ObjectKind::Index).unwrap().is_empty());

    assert_eq!(s.read(ObjectKind::Pack, "ab01").unwrap(), big);
    assert_eq!(
        s.read_range(ObjectKind::Pack, "ab01", 1000, 2000).unwrap(),
        &big[1000..3000]
    );
    assert_eq!(s.read_range(ObjectKind::Pack, "cd02", 5, 0).unwrap(), b"");
    // A range past the end is an error, never a short read.
    assert!(matches!(
        s.read_range(ObjectKind::Pack, "cd02", 3, 5),
        Err(StorageError::Truncated { .. })
    ));

    // Re-writing a name replaces it whole.
    s.write(ObjectKind::Pack, "cd02", b"other").unwrap();
    assert_eq!(s.read(ObjectKind::Pack, "cd02").unwrap(), b"other");

    // Streamed objects: invisible until finished, whole afterwards; dropped ones leave nothing.
    let mut w = s.create(ObjectKind::Pack).unwrap();
    w.write(b"part one, ").unwrap();
    w.write(b"part two").unwrap();
    assert_eq!(
        s.list(ObjectKind::Pack).unwrap().len(),
        2,
        "not visible before finish"
    );
    w.finish("ee04").unwrap();
    assert_eq!(
        s.read(ObjectKind::Pack, "ee04").unwrap(),
        b"part one, part two"
    );
    let mut w = s.create(ObjectKind::Pack).unwrap();
    w.write(b"abandoned").unwrap();
    drop(w);
    assert_eq!(
        s.list(ObjectKind::Pack).unwrap().len(),
        3,
        "an abandoned object leaves nothing"
    );
    s.delete(ObjectKind::Pack, "ee04").unwrap();

    s.delete(ObjectKind::Pack, "cd02").unwrap();
    assert!(matches!(
        s.read(ObjectKind::Pack, "cd02"),
        Err(StorageError::NotFound { .. })
    ));
    assert_eq!(s.list(ObjectKind::Pack).unwrap().len(), 1);
}

#[test]
fn local_directory() {
    let d = tempfile::tempdir().unwrap();
    let s = LocalStorage::new(d.path().join("repo"));
    conformance(&s);
    // No temp files are left behind by successful writes.
    let leftovers = walk(d.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn memory() {
    conformance(&MemoryStorage::new());
}

#[test]
fn local_write_into_unwritable_dir_fails_without_leaving_the_name() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("repo");
    std::fs::create_dir_all(root.join("points")).unwrap();
    std::fs::write(root.join("points").join("ff"), b"x").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("points"), std::fs::Permissions::from_mode(0o500)).unwrap();
    let s = LocalStorage::new(&root);
    let r = s.write(ObjectKind::Point, "aa", b"data");
    std::fs::set_permissions(root.join("points"), std::fs::Permissions::from_mode(0o700)).unwrap();
    if nix_is_root() {
        // root ignores directory permissions; nothing to assert about the failure.
        return;
    }
    assert!(r.is_err());
    assert!(matches!(
        s.read(ObjectKind::Point, "aa"),
        Err(StorageError::NotFound { .. })
    ));
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn walk(p: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path().display().to_string());
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            }
        }
    }
    out
}
