//! One conformance test body for every [`Storage`] (after Litestream's
//! `RunWithReplicaClient`): local directory, memory, the cache (`CachedStorage`) in front of a
//! local directory, S3 (the moto server `scripts/test.sh` starts) and SFTP (the private
//! OpenSSH sshd it starts).
use lifeboat_core::{ObjectId, ObjectKind, Storage, StorageError};
use lifeboat_storage::{
    CachedStorage, LocalStorage, MemoryStorage, S3Options, S3Storage, SftpOptions, SftpStorage,
};

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

    // Content-addressed objects of the kinds a cache keeps (key slots, indexes, points), as
    // the repository uses them: named by the hash of their bytes, read more than once.
    let body = b"an object named by its hash".to_vec();
    let id = ObjectId::of(&body).to_hex();
    for kind in [ObjectKind::Key, ObjectKind::Index, ObjectKind::Point] {
        let before = s.list(kind).unwrap().len();
        s.write(kind, &id, &body).unwrap();
        assert_eq!(s.read(kind, &id).unwrap(), body, "{kind}");
        assert_eq!(s.read(kind, &id).unwrap(), body, "{kind} read again");
        assert_eq!(
            s.read_range(kind, &id, 3, 5).unwrap(),
            &body[3..8],
            "{kind}"
        );
        assert_eq!(s.list(kind).unwrap().len(), before + 1, "{kind}");
        // Re-writing replaces it whole, even with bytes that are not what the name says: a
        // read returns what the store holds (which is how damage is detected), never an
        // older copy.
        s.write(kind, &id, b"other bytes").unwrap();
        assert_eq!(
            s.read(kind, &id).unwrap(),
            b"other bytes",
            "{kind} replaced"
        );
        s.write(kind, &id, &body).unwrap();
        assert_eq!(s.read(kind, &id).unwrap(), body, "{kind} replaced back");
        // The same through a streamed object.
        let mut w = s.create(kind).unwrap();
        w.write(b"streamed bytes").unwrap();
        w.finish(&id).unwrap();
        assert_eq!(
            s.read(kind, &id).unwrap(),
            b"streamed bytes",
            "{kind} streamed"
        );
        // Deleted is gone, for reads too.
        s.delete(kind, &id).unwrap();
        assert!(
            matches!(s.read(kind, &id), Err(StorageError::NotFound { .. })),
            "{kind} deleted"
        );
        assert_eq!(s.list(kind).unwrap().len(), before, "{kind}");
        s.write(kind, &id, &body).unwrap();
        assert_eq!(s.read(kind, &id).unwrap(), body, "{kind} written again");
        s.delete(kind, &id).unwrap();
    }
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

/// The cache in front of a local directory (how remote stores are used): it must keep the
/// same contract. A fresh cache directory per test, so nothing cached leaks between tests.
#[test]
fn cached_local_directory() {
    let d = tempfile::tempdir().unwrap();
    let inner = std::sync::Arc::new(LocalStorage::new(d.path().join("repo")));
    let s = CachedStorage::new(inner, d.path().join("cache"));
    conformance(&s);
    let leftovers = walk(d.path())
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .count();
    assert_eq!(leftovers, 0);
}

/// S3 options for a fresh prefix in the test bucket, or `None` when the run opted out of
/// services (`LIFEBOAT_TEST_NO_SERVICES=1`). Without either, the test fails: a test of a
/// real S3 server must not pass because the server was missing.
fn s3_options() -> Option<S3Options> {
    let Ok(endpoint) = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT") else {
        if std::env::var_os("LIFEBOAT_TEST_NO_SERVICES").is_some() {
            return None;
        }
        panic!("LIFEBOAT_TEST_S3_ENDPOINT is not set: run the suite with `bash scripts/test.sh` (it starts moto), or set LIFEBOAT_TEST_NO_SERVICES=1 to skip");
    };
    let bucket = std::env::var("LIFEBOAT_TEST_S3_BUCKET").expect("LIFEBOAT_TEST_S3_BUCKET");
    let mut o = S3Options::new(bucket, format!("conformance-{}", rand_hex()));
    o.endpoint = Some(endpoint);
    o.path_style = true;
    o.retries = 1;
    Some(o)
}

fn rand_hex() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

#[test]
fn s3() {
    let Some(o) = s3_options() else { return };
    let s = S3Storage::new(o).unwrap();
    conformance(&s);
    assert!(s.requests().total() > 0, "requests are counted");
}

#[test]
fn s3_multipart_upload_is_whole_and_counted() {
    let Some(mut o) = s3_options() else { return };
    o.multipart_threshold = 5 << 20;
    o.part_size = 5 << 20;
    let s = S3Storage::new(o).unwrap();
    let big: Vec<u8> = (0..11_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let mut w = s.create(ObjectKind::Pack).unwrap();
    for part in big.chunks(1 << 20) {
        w.write(part).unwrap();
    }
    assert!(
        s.list(ObjectKind::Pack).unwrap().is_empty(),
        "not visible before finish"
    );
    w.finish("ab0011").unwrap();
    // create + 3 parts + complete
    assert_eq!(s.requests().put, 5);
    assert_eq!(s.read(ObjectKind::Pack, "ab0011").unwrap(), big);
    let l = s.list(ObjectKind::Pack).unwrap();
    assert_eq!(
        (l[0].name.as_str(), l[0].size),
        ("ab0011", big.len() as u64)
    );
}

#[test]
fn s3_missing_bucket_is_a_clear_permanent_error() {
    let Some(mut o) = s3_options() else { return };
    o.bucket = format!("no-such-bucket-{}", rand_hex());
    let s = S3Storage::new(o).unwrap();
    for r in [
        s.list(ObjectKind::Point).map(|_| ()),
        s.read(ObjectKind::Config, "config").map(|_| ()),
        s.write(ObjectKind::Point, "aa", b"x"),
    ] {
        let e = r.unwrap_err();
        assert!(
            matches!(e, StorageError::Unavailable { .. }),
            "{e:?} should be Unavailable"
        );
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!e.is_retryable());
    }
}

#[test]
fn s3_unreachable_endpoint_is_retryable_and_names_the_object() {
    let Some(mut o) = s3_options() else { return };
    // Nothing listens on port 9 of 127.0.0.1.
    o.endpoint = Some("http://127.0.0.1:9".into());
    o.retries = 0;
    let s = S3Storage::new(o).unwrap();
    let e = s.read(ObjectKind::Point, "abcd").unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    assert!(e.to_string().contains("point abcd"), "{e}");
}

#[test]
fn cache_answers_reads_of_immutable_objects_and_checks_them() {
    let d = tempfile::tempdir().unwrap();
    let inner = std::sync::Arc::new(LocalStorage::new(d.path().join("repo")));
    let c = CachedStorage::new(inner.clone(), d.path().join("cache"));
    let data = b"a point manifest".to_vec();
    let name = lifeboat_core::ObjectId::of(&data).to_hex();
    c.write(ObjectKind::Point, &name, &data).unwrap();
    let before = inner.requests().get;
    assert_eq!(c.read(ObjectKind::Point, &name).unwrap(), data);
    assert_eq!(inner.requests().get, before, "served from the cache");
    // A damaged cache entry is not trusted: the store is asked again.
    let cached = d.path().join("cache").join("points").join(&name);
    std::fs::write(&cached, b"tampered").unwrap();
    assert_eq!(c.read(ObjectKind::Point, &name).unwrap(), data);
    assert_eq!(inner.requests().get, before + 1);
    assert_eq!(std::fs::read(&cached).unwrap(), data, "repaired");
    // Deleting removes the cached copy too.
    c.delete(ObjectKind::Point, &name).unwrap();
    assert!(matches!(
        c.read(ObjectKind::Point, &name),
        Err(StorageError::NotFound { .. })
    ));
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

/// SFTP options for a fresh directory on the test sshd, or `None` when the run opted out of
/// services; without either the test fails.
fn sftp_options() -> Option<SftpOptions> {
    let Ok(host) = std::env::var("LIFEBOAT_TEST_SFTP_HOST") else {
        if std::env::var_os("LIFEBOAT_TEST_NO_SERVICES").is_some() {
            return None;
        }
        panic!("LIFEBOAT_TEST_SFTP_HOST is not set: run the suite with `bash scripts/test.sh` (it starts sshd), or set LIFEBOAT_TEST_NO_SERVICES=1 to skip");
    };
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set"));
    let home = var("LIFEBOAT_TEST_SFTP_HOME");
    let mut o = SftpOptions::new(
        host,
        var("LIFEBOAT_TEST_SFTP_USER"),
        format!("{home}/conformance-{}", rand_hex()),
    );
    o.port = var("LIFEBOAT_TEST_SFTP_PORT").parse().unwrap();
    o.identity_file = Some(var("LIFEBOAT_TEST_SFTP_KEY").into());
    o.known_hosts = Some(var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS").into());
    o.retries = 1;
    Some(o)
}

#[test]
fn sftp() {
    let Some(o) = sftp_options() else { return };
    let root = o.root.clone();
    let s = SftpStorage::new(o).unwrap();
    conformance(&s);
    assert!(s.requests().total() > 0, "requests are counted");
    // No temp files are left behind.
    let leftovers: Vec<_> = walk(std::path::Path::new(&root))
        .into_iter()
        .filter(|p| p.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn refused(o: SftpOptions, needle: &str) {
    let s = SftpStorage::new(o).unwrap();
    let e = s.list(ObjectKind::Point).unwrap_err();
    assert!(matches!(e, StorageError::Unavailable { .. }), "{e:?}");
    assert!(e.to_string().contains(needle), "{e}");
    assert!(!e.is_retryable());
}

#[test]
fn sftp_changed_host_key_is_refused() {
    let Some(mut o) = sftp_options() else { return };
    // known_hosts pins another key (the client's public key) for this host and port.
    let d = tempfile::tempdir().unwrap();
    let key = o.identity_file.clone().unwrap();
    let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let kh = d.path().join("known_hosts");
    let other: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(
        &kh,
        format!("[{}]:{} {}\n", o.host, o.port, other.join(" ")),
    )
    .unwrap();
    o.known_hosts = Some(kh);
    refused(o, "HOST KEY MISMATCH");
}

#[test]
fn sftp_unknown_host_key_is_refused_not_trusted() {
    let Some(mut o) = sftp_options() else { return };
    let d = tempfile::tempdir().unwrap();
    let kh = d.path().join("known_hosts");
    std::fs::write(&kh, "").unwrap();
    o.known_hosts = Some(kh.clone());
    refused(o, "refusing to trust it on first use");
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap(),
        "",
        "known_hosts untouched"
    );
}

#[test]
fn sftp_pinned_fingerprint_is_enforced() {
    let Some(mut o) = sftp_options() else { return };
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(o.known_hosts.as_ref().unwrap())
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    let fp = listing.split_whitespace().nth(1).unwrap().to_string();
    assert!(fp.starts_with("SHA256:"), "{listing}");
    o.known_hosts = Some("/nonexistent/known_hosts".into());
    o.host_key_fingerprint = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    refused(o.clone(), "not the pinned");
    o.host_key_fingerprint = Some(fp);
    let s = SftpStorage::new(o).unwrap();
    assert!(s.list(ObjectKind::Point).unwrap().is_empty());
}

#[test]
fn sftp_missing_or_wrong_client_key_is_named() {
    let Some(mut o) = sftp_options() else { return };
    let key = o.identity_file.clone().unwrap();
    o.identity_file = Some("/nonexistent/id_ed25519".into());
    refused(o.clone(), "does not exist");
    // The server's own host key is a valid key that is not authorized.
    o.identity_file = Some(key.parent().unwrap().join("host_ed25519"));
    refused(o, "refused the login");
}
