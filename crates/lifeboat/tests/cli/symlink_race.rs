use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::common::*;

/// Every entry below `root` (not following symlinks): kind, mode, owner and content.
fn snapshot(root: &Path) -> Snapshot {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let (kind, data) = if md.is_dir() {
            for c in std::fs::read_dir(&p).unwrap() {
                todo.push(c.unwrap().path());
            }
            ("dir", Vec::new())
        } else if md.file_type().is_symlink() {
            (
                "symlink",
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else {
            ("file", std::fs::read(&p).unwrap())
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_path_buf(),
            (
                kind.to_string(),
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                data,
            ),
        );
    }
    out
}

type Snapshot = BTreeMap<PathBuf, (String, u32, u32, u32, Vec<u8>)>;

/// What differs between two snapshots, one line per path.
fn diff(before: &Snapshot, after: &Snapshot) -> String {
    let show = |v: Option<&(String, u32, u32, u32, Vec<u8>)>| match v {
        None => "absent".to_string(),
        Some((k, m, u, g, d)) => format!(
            "{k} {m:o} {u}:{g} {:?}",
            String::from_utf8_lossy(&d[..d.len().min(40)])
        ),
    };
    let mut keys: Vec<_> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{}: {} -> {}\n",
                k.display(),
                show(before.get(k)),
                show(after.get(k))
            )
        })
        .collect()
}

/// One round of the attacker: every temporary name (`.NAME.lifeboat-*`), component file and
/// subdirectory under `app` (the roots `uploads` and `data/app.db` included) is replaced by a symlink to the victim (a file by renaming the
/// link over it, a directory by moving it aside first).
fn attack_once(app: &Path, victim: &Path, n: &AtomicU64, pick: &AtomicU64, aim_at_files: bool) {
    let mut todo = vec![app.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for c in rd.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            // `data` holds the database: the parent of a component's root, which the operator
            // named and is opened normally (see crates/sources/src/dirfd.rs); it is not attacked.
            if name.starts_with("moved-") || name.starts_with("evil-") {
                continue;
            }
            let p = c.path();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let is_temp = name.contains(".lifeboat-");
            // Half of the files and directories (alternating) in rounds that aim at them.
            let aim = aim_at_files
                && name != "data"
                && pick.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
            // Temporary names: one sighting in three, so that some restores get through.
            let aim = aim || is_temp && pick.fetch_add(1, Ordering::Relaxed).is_multiple_of(3);
            if !aim {
                // Not attacked this round: looked into (a directory the attacker replaced is
                // not, or its walk would go where the link points).
                if md.is_dir() {
                    todo.push(p.clone());
                }
                continue;
            }
            let i = n.fetch_add(1, Ordering::Relaxed);
            // A link aims where the name's kind leads: a directory (or a link to one) at the
            // victim's directory, anything else at a victim file.
            let dir_like = md.is_dir() || std::fs::metadata(&p).is_ok_and(|m| m.is_dir());
            let to = if dir_like {
                victim.join("d")
            } else if name.contains(".db") {
                victim.join("v.db")
            } else {
                victim.join("v1.txt")
            };
            let evil = dir.join(format!("evil-{i}"));
            if std::os::unix::fs::symlink(&to, &evil).is_err() {
                continue;
            }
            if md.is_dir() {
                let _ = std::fs::rename(&p, dir.join(format!("moved-{i}")));
            }
            if std::fs::rename(&evil, &p).is_err() {
                let _ = std::fs::remove_file(&evil);
            }
        }
    }
}

#[test]
fn swapped_symlinks_during_in_place_restores_never_touch_files_outside_the_target() {
    let env = Env::new();
    let app = env.path("app");
    let up = app.join("uploads");
    let blob: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    write(&up.join("top.txt"), &blob, 0o644);
    write(&up.join("a/x.txt"), &blob[..1000], 0o664);
    write(&up.join("a/b/y.txt"), b"deep", 0o644);
    write(&up.join("secret.key"), b"-----BEGIN KEY-----\n", 0o600);
    std::fs::set_permissions(up.join("a"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let db = app.join("data/app.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    make_db(&db, 2000, 200);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    if is_root() {
        for p in [&up, &up.join("a"), &up.join("top.txt"), &up.join("a/x.txt")] {
            std::os::unix::fs::chown(p, Some(1234), Some(1234)).unwrap();
        }
        std::os::unix::fs::chown(&db, Some(1234), Some(1234)).unwrap();
    }
    env.init();
    env.lb()
        .args(["backup", "--name", "chat"])
        .arg(&up)
        .arg(&db)
        .assert()
        .success();

    // Outside the target: files of known content, mode and owner.
    let victim = env.path("victim");
    write(&victim.join("v1.txt"), b"victim one", 0o640);
    write(&victim.join("v.db"), b"not a database", 0o604);
    write(&victim.join("d/inner.txt"), b"victim inner", 0o640);
    std::fs::set_permissions(victim.join("d"), std::fs::Permissions::from_mode(0o751)).unwrap();
    if is_root() {
        for p in ["v1.txt", "v.db", "d", "d/inner.txt"] {
            std::os::unix::fs::chown(victim.join(p), Some(4242), Some(4343)).unwrap();
        }
    }
    let before = snapshot(&victim);

    let rounds: usize = std::env::var("LIFEBOAT_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let (stop, app, victim) = (stop.clone(), app.clone(), victim.clone());
        std::thread::spawn(move || {
            let (n, pick) = (AtomicU64::new(0), AtomicU64::new(0));
            let mut round = 0u64;
            let t0 = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                // Active 200 ms, then quiet 100 ms: some restores get through, so every step
                // of a tree and a database restore is raced, not only the first.
                if t0.elapsed().as_millis() % 300 >= 200 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                // Temporary names every round; files, directories and the roots now and then.
                attack_once(&app, &victim, &n, &pick, round.is_multiple_of(64));
                round += 1;
            }
            n.load(Ordering::Relaxed)
        })
    };
    let mut ok = 0;
    let mut errors = Vec::new();
    for _ in 0..rounds {
        let o = env
            .lb()
            .args(["restore", "latest", "--yes", "--force", "--no-safety-point"])
            .output()
            .unwrap();
        if o.status.success() {
            ok += 1;
        } else {
            // One example per kind of error (the part after the path).
            let e = stderr(&o);
            let kind = e.rsplit(": ").next().unwrap_or_default().to_string();
            if !errors.iter().any(|(k, _)| *k == kind) {
                errors.push((kind, e));
            }
        }
        if snapshot(&victim) != before {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = attacker.join().unwrap();
    let after = snapshot(&victim);
    assert!(
        after == before,
        "files outside the target changed ({ok} of {rounds} restores succeeded, {swaps} swaps):\n{}",
        diff(&before, &after)
    );
    eprintln!(
        "{ok} of {rounds} restores succeeded during {swaps} symlink swaps; errors:\n{}",
        errors.iter().map(|(_, e)| e.as_str()).collect::<String>()
    );

    // With the attacker gone, a restore replaces every symlink it left (never follows one)
    // and puts back exactly the point.
    let o = env
        .lb()
        .args(["restore", "latest", "--yes", "--force", "--no-safety-point"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(snapshot(&victim), before);
    assert_eq!(std::fs::read(up.join("top.txt")).unwrap(), blob);
    assert_eq!(std::fs::read(up.join("a/b/y.txt")).unwrap(), b"deep");
    let md = std::fs::symlink_metadata(up.join("secret.key")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o600);
    let md = std::fs::symlink_metadata(up.join("a")).unwrap();
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o750);
    let md = std::fs::symlink_metadata(&db).unwrap();
    assert!(md.is_file());
    assert_eq!(md.mode() & 0o7777, 0o666);
    if is_root() {
        assert_eq!((md.uid(), md.gid()), (1234, 1234));
    }
    assert_eq!(integrity(&db), "ok");
}
