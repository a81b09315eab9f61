//! Review attacks (branch `review`): each test demonstrates a problem found by the attack
//! review of the atomic tree restore, hooks and rollback. They FAIL until fixed.
use std::sync::Arc;

use lifeboat_core::{ComponentKind, EntryKind, ObjectId, TreeEntry};

use crate::common::*;
use crate::handmade::*;

/// A point of app `app` (as any key holder can write), dated now, of `components` (kind, path,
/// tree entries): files hold `pwned`, symlinks point at `link_to`.
fn key_holder_point(
    env: &Env,
    app: &str,
    components: Vec<(ComponentKind, String, Vec<TreeEntry>)>,
    link_to: &str,
) -> ObjectId {
    let header = Header {
        app,
        time: None,
        hostname: "other-host",
        definition: None,
    };
    hand_made_point(env, header, components, link_to)
}

fn config(env: &Env, body: &str) {
    std::fs::write(
        env.path("lifeboat.toml"),
        format!("[repository.main]\npath = \"repo\"\n\n[app.web]\n{body}\n"),
    )
    .unwrap();
}

/// The local config lists a SQLite database; a key holder's point has a *config* component at
/// that path whose single entry is a symlink. `refuse_unlisted` matches by path only, so the
/// in-place restore replaces the database with a symlink to any file of this host; the next
/// backup (SQLite's capture follows symlinks: `fs::metadata` + `Connection::open` by path, as
/// root) then stores that file, here another app's root-only database, in the repository,
/// where the key holder reads it.
#[test]
fn a_point_cannot_turn_a_listed_database_into_a_symlink() {
    let env = Env::new();
    env.init();
    std::fs::create_dir_all(env.path("live/data")).unwrap();
    std::fs::create_dir_all(env.path("rootonly")).unwrap();
    let db = env.path("live/data/app.db");
    let secret = env.path("rootonly/secret.db");
    make_db(&db, 10, 10);
    {
        let c = rusqlite::Connection::open(&secret).unwrap();
        c.execute_batch("CREATE TABLE k(v TEXT); INSERT INTO k VALUES ('TOP-SECRET');")
            .unwrap();
    }
    config(&env, &format!("sqlite = [\"{}\"]", db.display()));
    env.ok(&[&"backup", &"web"]);
    let id = key_holder_point(
        &env,
        "web",
        vec![(
            ComponentKind::Config,
            db.display().to_string(),
            vec![entry("", EntryKind::Symlink)],
        )],
        &secret.display().to_string(),
    );
    let o = env
        .lb()
        .args(["restore", &id.to_hex(), "--yes"])
        .output()
        .unwrap();
    let replaced_by_link = std::fs::symlink_metadata(&db)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    // What the next backup does with it.
    let b = env.lb().args(["backup", "web"]).output().unwrap();
    let to = env.path("drill");
    let r = env
        .lb()
        .args(["restore", "web", "--to"])
        .arg(&to)
        .arg("--yes")
        .output()
        .unwrap();
    let drilled = to.join(db.strip_prefix("/").unwrap());
    let leaked = std::fs::read(&drilled)
        .map(|b| b.windows(10).any(|w| w == b"TOP-SECRET"))
        .unwrap_or(false);
    assert!(
        !replaced_by_link && !leaked,
        "restore exit {:?} ({}); app.db replaced by a symlink: {replaced_by_link}; \
         next backup exit {:?}; restore of it exit {:?}; the other database's secret is in the \
         repository: {leaked}",
        o.status.code(),
        stderr(&o),
        b.status.code(),
        r.status.code()
    );
}

/// A `files` component whose root entry is a symlink (or a file): the single-file branch of
/// `tree::restore` removes the whole existing directory (`remove_tree`) and leaves a symlink
/// to wherever the point says.
#[test]
fn a_files_point_with_a_symlink_root_does_not_replace_the_tree_with_a_link() {
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::write(up.join("keep.txt"), b"user data").unwrap();
    config(&env, &format!("files = [\"{}\"]", up.display()));
    env.ok(&[&"backup", &"web"]);
    let id = key_holder_point(
        &env,
        "web",
        vec![(
            ComponentKind::Files,
            up.display().to_string(),
            vec![entry("", EntryKind::Symlink)],
        )],
        "/etc",
    );
    let o = env
        .lb()
        .args(["restore", &id.to_hex(), "--yes"])
        .output()
        .unwrap();
    let md = std::fs::symlink_metadata(&up).unwrap();
    assert!(
        md.is_dir() && up.join("keep.txt").exists(),
        "restore exit {:?} ({}): {} is now a {:?} -> {:?}",
        o.status.code(),
        stderr(&o),
        up.display(),
        md.file_type(),
        std::fs::read_link(&up).ok()
    );
}

/// The app's user swaps a file of their upload tree with a symlink to a file only root can
/// read (`renameat2(RENAME_EXCHANGE)` in a loop). A backup's capture (`tree.rs` `Walk::visit`:
/// `symlink_metadata` by path, then `File::open` by path, which follows) records the metadata
/// of their file and the content of root's. Every capture does this: the scheduled backup and
/// the pre-restore point before an in-place restore, which the automatic rollback then writes
/// back into the app's directory, owned by the app's user (mode 0644). Restored here with
/// `--to` to look at it.
#[test]
fn a_backup_never_stores_a_file_the_app_user_cannot_read() {
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    let hidden = env.path("rootonly");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("shadow"), b"TOP-SECRET").unwrap();
    std::fs::write(up.join("f"), b"harmless").unwrap();
    std::os::unix::fs::symlink(hidden.join("shadow"), up.join("x")).unwrap();
    config(&env, &format!("files = [\"{}\"]", up.display()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let a = std::ffi::CString::new(up.join("f").into_os_string().into_encoded_bytes()).unwrap();
        let b = std::ffi::CString::new(up.join("x").into_os_string().into_encoded_bytes()).unwrap();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
            }
        })
    };
    let mut leaked = None;
    for i in 0..60 {
        if env
            .lb()
            .args(["backup", "web"])
            .output()
            .unwrap()
            .status
            .success()
        {
            let to = env.path(&format!("drill{i}"));
            let o = env
                .lb()
                .args(["restore", "web", "--to"])
                .arg(&to)
                .arg("--yes")
                .output()
                .unwrap();
            if o.status.success() {
                let d = to.join(up.strip_prefix("/").unwrap());
                for n in ["f", "x"] {
                    let p = d.join(n);
                    let is_file = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file());
                    if is_file && std::fs::read(&p).unwrap() == b"TOP-SECRET" {
                        leaked = Some((i, p));
                    }
                }
            }
        }
        if leaked.is_some() {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        leaked.is_none(),
        "backup {:?}: a root-only file was stored as the app's regular file {:?} (mode {:o})",
        leaked.as_ref().map(|l| l.0),
        leaked.as_ref().map(|l| &l.1),
        leaked
            .as_ref()
            .map(|l| std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&l.1).unwrap().permissions()
            ) & 0o7777)
            .unwrap_or(0)
    );
}

/// Storage attacker (no password): deletes the pack of the last backup. The pre-restore point
/// of the next in-place restore deduplicates the tree's unchanged files against the index
/// (which still lists that pack) and uploads nothing; the atomic tree restore then removes the
/// files absent from the restored point. They are now nowhere: the pre-restore point cannot
/// be read, `lifeboat rollback` fails. (Before the atomic restore, trees merged and those
/// files stayed.)
#[test]
fn a_tree_restore_never_removes_files_its_pre_restore_point_cannot_give_back() {
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::write(up.join("b.txt"), b"b").unwrap();
    config(&env, &format!("files = [\"{}\"]", up.display()));
    env.ok(&[&"backup", &"web"]);
    let p0 = env.points()[0]["id"].as_str().unwrap().to_string();
    let before = env.packs();
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(up.join("a.txt"), &data).unwrap();
    env.ok(&[&"backup", &"web"]);
    for p in env.packs() {
        if !before.contains(&p) {
            std::fs::remove_file(p).unwrap();
        }
    }
    let o = env.lb().args(["restore", &p0, "--yes"]).output().unwrap();
    let r = env
        .lb()
        .args(["rollback", "web", "--yes"])
        .output()
        .unwrap();
    assert!(
        up.join("a.txt").exists(),
        "restore exit {:?}: {}\nrollback exit {:?}: {}\na.txt is gone from the live tree and \
         from every readable point",
        o.status.code(),
        stderr(&o),
        r.status.code(),
        stderr(&r)
    );
}

/// The app's user owns the directory holding the tree (`/srv/app` holding `uploads`) and a
/// directory of root's in it (`cfg`, root's files they cannot delete). After the swap the old
/// tree sits under the staging name and `remove_tree` removes it *by name*: they rename it
/// away and `cfg` to the staging name in between, and root deletes `cfg` with everything in
/// it. (Shown as root here; the attacker's steps are two renames in a directory they own.)
#[test]
fn the_replaced_tree_is_removed_by_fd_not_by_name() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    env.init();
    let app = env.path("live/app");
    let up = app.join("up");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::create_dir_all(app.join("cfg")).unwrap();
    std::fs::write(app.join("cfg/important.conf"), b"root's").unwrap();
    for i in 0..200 {
        std::fs::write(up.join(format!("f{i}")), b"x").unwrap();
    }
    config(&env, &format!("files = [\"{}\"]", up.display()));
    env.ok(&[&"backup", &"web"]);
    let p = env.points()[0]["id"].as_str().unwrap().to_string();
    let mut tries = Vec::new();
    for _ in 0..10 {
        std::fs::write(up.join("new.txt"), b"new").unwrap();
        let old = std::fs::symlink_metadata(&up).unwrap().ino();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacker = {
            let app = app.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                // Until the restore has ended (then nothing is left to race).
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    for e in std::fs::read_dir(&app).unwrap().flatten() {
                        let n = e.file_name();
                        if n.to_string_lossy().starts_with(".up.lifeboat-")
                            && std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.ino() == old)
                            && std::fs::rename(e.path(), app.join("junk")).is_ok()
                        {
                            std::fs::rename(app.join("cfg"), e.path()).unwrap();
                            return true;
                        }
                    }
                }
                false
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        let o = env
            .lb()
            .args(["restore", &p, "--yes", "--force"])
            .output()
            .unwrap();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let raced = attacker.join().unwrap();
        tries.push((o.status.code(), stderr(&o).trim().to_string(), raced));
        if raced {
            break;
        }
    }
    // Wherever the attacker's renames left it, root's file must still exist.
    let survives = std::fs::read_dir(&app)
        .unwrap()
        .flatten()
        .any(|e| e.path().join("important.conf").exists());
    assert!(
        survives,
        "root's cfg/ was deleted by the removal of the replaced tree (restores: exit, \
         stderr, whether the attacker's renames happened: {tries:?})"
    );
}
