//! Review attacks, second round (branch `review2`): each test demonstrates a problem found by
//! the attack review of point definitions / `lifeboat recover`, proof records and the fd-based
//! capture. They FAIL until fixed.
use std::sync::Arc;

use lifeboat_core::{ComponentKind, EntryKind, ObjectId, TreeEntry};

use crate::common::*;
use crate::handmade::*;

/// A point of app `app` as any key holder can write it, dated now, with `definition`: one
/// `files` component per `(path, entries)`; files hold `pwned`, symlinks point at `link_to`.
fn key_holder_point(
    env: &Env,
    app: &str,
    components: Vec<(String, Vec<TreeEntry>)>,
    link_to: &str,
    definition: Option<String>,
) -> ObjectId {
    let header = Header {
        app,
        time: None,
        hostname: "other-host",
        definition,
    };
    let components = components
        .into_iter()
        .map(|(p, e)| (ComponentKind::Files, p, e))
        .collect();
    hand_made_point(env, header, components, link_to)
}

/// `lifeboat` as on a new machine: no config, a fresh cache and state directory.
fn bare(env: &Env, name: &str) -> assert_cmd::Command {
    let mut c = env.lb();
    c.env("LIFEBOAT_CACHE_DIR", env.path(&format!("{name}/cache")))
        .env("LIFEBOAT_STATE_DIR", env.path(&format!("{name}/state")))
        .current_dir(env.path(name));
    std::fs::create_dir_all(env.path(name)).unwrap();
    c
}

/// A key holder writes the app's latest point with a definition whose
/// `[[app.web.postgres]]` has `command = ["sh", "-c", ...]` (a "wrapper" for pg_dump).
/// `definition::config_text` only comments out `hooks`; `command` (and `bin_dir`,
/// `password_file`, `url`) are written live into the new lifeboat.toml, and the next
/// `lifeboat backup` (as root, typically from a timer) runs the key holder's command.
#[test]
fn a_recovered_config_never_runs_a_command_the_point_chose() {
    let env = Env::new();
    env.init();
    let srv = env.path("srv/web");
    std::fs::create_dir_all(&srv).unwrap();
    let marker = env.path("PWNED-by-point");
    let def = format!(
        "files = [\"{}\"]\n\n[[postgres]]\nurl = \"host=/nonexistent\"\ndatabase = \"x\"\n\
         command = [\"sh\", \"-c\", \"touch {}; exit 3\"]\n",
        srv.display(),
        marker.display()
    );
    key_holder_point(
        &env,
        "web",
        vec![(
            srv.display().to_string(),
            vec![entry("", EntryKind::Dir), entry("a", EntryKind::File)],
        )],
        "/",
        Some(def),
    );
    let root = env.path("newroot");
    let cfg = env.path("b/lifeboat.toml");
    let o = bare(&env, "b")
        .args(["recover", "web", "--yes", "--root"])
        .arg(&root)
        .arg("--config-out")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&cfg).unwrap();
    let _ = bare(&env, "b")
        .env_remove("LIFEBOAT_CONFIG")
        .arg("-c")
        .arg(&cfg)
        .args(["backup", "web"])
        .output()
        .unwrap();
    assert!(
        !marker.exists(),
        "`lifeboat backup` ran a command from the key holder's point definition; the \
         recovered config:\n{text}"
    );
}

/// `recover --root R`: the point's tree at `/etc` holds a symlink `lifeboat -> DIR` (DIR
/// anywhere on this machine). The restore puts it at R/etc/lifeboat, then the config is
/// written to R/etc/lifeboat/lifeboat.toml by path (`create_dir_all` + `open`), through the
/// link: root writes a file outside R, in a directory the point chose.
#[test]
fn recover_under_a_root_never_writes_the_config_outside_it() {
    let env = Env::new();
    env.init();
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    key_holder_point(
        &env,
        "web",
        vec![(
            "/etc".into(),
            vec![
                entry("", EntryKind::Dir),
                entry("lifeboat", EntryKind::Symlink),
            ],
        )],
        &outside.display().to_string(),
        None,
    );
    let root = env.path("newroot");
    let o = bare(&env, "c")
        .args(["recover", "web", "--yes", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        !outside.join("lifeboat.toml").exists(),
        "recover (exit {:?}, {}) wrote its config outside --root: {}",
        o.status.code(),
        stderr(&o),
        outside.join("lifeboat.toml").display()
    );
}

/// The point's `definition` and its components are independent: a key holder writes a point
/// whose components are the app's ordinary data (what the recover plan shows and restores)
/// but whose definition adds `secrets = ["/etc/shadow", "/root/.ssh/id_ed25519", ...]` (here
/// a 0600 root-only file outside the app). Recover writes those paths into the new
/// lifeboat.toml without a word; the next scheduled backup stores the file in the repository,
/// where the key holder restores it.
#[test]
fn a_recovered_config_backs_up_only_what_the_point_restored() {
    let env = Env::new();
    env.init();
    let srv = env.path("srv/web");
    std::fs::create_dir_all(&srv).unwrap();
    let hidden = env.path("rootonly/ssh_host_ed25519_key");
    write(&hidden, b"TOP-SECRET host key", 0o600);
    let def = format!(
        "files = [\"{}\"]\nsecrets = [\"{}\"]\n",
        srv.display(),
        hidden.display()
    );
    key_holder_point(
        &env,
        "web",
        vec![(
            srv.display().to_string(),
            vec![entry("", EntryKind::Dir), entry("a", EntryKind::File)],
        )],
        "/",
        Some(def),
    );
    let cfg = env.path("b/lifeboat.toml");
    let o = bare(&env, "b")
        .args(["recover", "web", "--yes", "--root"])
        .arg(env.path("newroot"))
        .arg("--config-out")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = format!("{}{}", stdout(&o), stderr(&o));
    let o = bare(&env, "b")
        .env_remove("LIFEBOAT_CONFIG")
        .arg("-c")
        .arg(&cfg)
        .args(["backup", "web"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The key holder, on their host: restore the latest point somewhere and read it.
    let drill = env.path("drill");
    env.ok(&[&"restore", &"latest", &"--to", &drill, &"--yes"]);
    let leaked = drill.join(hidden.strip_prefix("/").unwrap());
    assert!(
        !leaked.exists(),
        "the key holder's definition made this machine back up {} (recover said: {shown})",
        hidden.display()
    );
}

/// A backup takes the newest point of the app, whoever wrote it, as `previous`, and a file
/// whose size, mtime, ctime and inode equal that point's entry at the same path is not read:
/// its chunks are copied from that entry (`tree.rs` `Walk::visit`, `reuse`). A key holder
/// copies this host's latest point (every field is readable to them), swaps the chunks of one
/// file for their own bytes of the same size and publishes it. The next scheduled backup on
/// this host records the key holder's bytes as the file's content, in a point written by
/// this host, and so does every later one while the file is unchanged: the real content is
/// never backed up again, and a restore of any of these points writes the forged bytes.
#[test]
fn a_backup_never_takes_a_files_content_from_another_writers_point() {
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::write(up.join("settings.php"), b"honest-data").unwrap();
    std::fs::write(
        env.path("lifeboat.toml"),
        format!(
            "[repository.main]\npath = \"repo\"\n\n[app.web]\nfiles = [\"{}\"]\n",
            up.display()
        ),
    )
    .unwrap();
    let cfg = ["-c", "lifeboat.toml"];
    let o = env.lb().args(cfg).args(["backup", "web"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // The key holder: the host's latest point, with settings.php's chunks replaced.
    {
        let mut repo = open_repo(&env);
        let (_, honest) = repo.points().unwrap().pop().unwrap();
        let mut s = repo.begin_backup().unwrap();
        let (w, r) = s.parts();
        let mut forged = honest.clone();
        for c in forged.components.iter_mut() {
            let body = c.tree.as_mut().unwrap();
            let mut entries = lifeboat_core::load_tree(r, body).unwrap();
            for e in entries.iter_mut() {
                if e.path == "settings.php" {
                    e.chunks = w.store_bytes(b"EVIL-bytes!").unwrap();
                }
            }
            body.entries = w
                .store_bytes(&serde_json::to_vec(&entries).unwrap())
                .unwrap();
        }
        forged.time = jiff::Timestamp::now().to_string();
        s.commit(|_| forged).unwrap();
    }

    // The next scheduled backup on this host, nothing changed locally.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let o = env.lb().args(cfg).args(["backup", "web"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let drill = env.path("drill");
    let o = env
        .lb()
        .args(cfg)
        .args(["restore", "web", "--to"])
        .arg(&drill)
        .arg("--yes")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = std::fs::read(
        drill
            .join(up.strip_prefix("/").unwrap())
            .join("settings.php"),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        "honest-data",
        "this host's own newest point holds the key holder's bytes for an unchanged file"
    );
}

/// Every restore (even of a point with no database) reads every proof record of the
/// repository and keeps all of them in memory before keeping those of its point
/// (`proofs.rs` `of_point` -> `read_all`). A key holder writes records of no point in
/// particular, each just under the 1 MiB payload limit and compressing to about 4 KiB: 300 of
/// them (1.3 MiB uploaded) took a restore of one 4-byte file to 507 MiB; about 1.7 GiB per
/// 1,000 records, until the machine that needs the restore kills it (prune and check read them
/// all the same way).
#[test]
fn a_restore_keeps_in_memory_only_its_own_points_proof_records() {
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    std::fs::create_dir_all(&up).unwrap();
    std::fs::write(up.join("a"), b"data").unwrap();
    std::fs::write(
        env.path("lifeboat.toml"),
        format!(
            "[repository.main]\npath = \"repo\"\n\n[app.web]\nfiles = [\"{}\"]\n",
            up.display()
        ),
    )
    .unwrap();
    let cfg = ["-c", "lifeboat.toml"];
    let o = env.lb().args(cfg).args(["backup", "web"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut repo = open_repo(&env);
    let session = repo.begin_restore().unwrap();
    for i in 0..300u32 {
        let db = lifeboat_core::ProvenDatabase {
            path: String::new(),
            checksum: format!("{i:032x}"),
            page_count: 1,
            check: "x".into(),
        };
        let n = (1 << 20) / 100;
        session
            .record_proof(&lifeboat_core::ProofRecord {
                point: format!("{i:064x}"),
                time: String::new(),
                hostname: String::new(),
                by: String::new(),
                lifeboat_version: String::new(),
                components: vec![db; n],
                drill: None,
            })
            .unwrap();
    }
    drop(session);
    let rss = max_rss_kib(
        &env,
        &[&"restore", &"web", &"--yes", &"--to", &env.path("drill")],
    );
    eprintln!("restore max RSS {} MiB", rss / 1024);
    assert!(
        rss < 150 * 1024,
        "restoring one 4-byte file took {} MiB of memory (300 foreign proof records)",
        rss / 1024
    );
}

/// `restore --dry-run` (`restore/preview.rs` `walk`) checks each entry with `lstat` but then
/// lists a directory by path (`std::fs::read_dir`), later: the app's user swaps a directory of
/// their tree with a symlink to a directory only root can read (`renameat2(RENAME_EXCHANGE)`
/// in a loop), and root lists that directory's names and sizes as part of the app's tree. The
/// plan then says the restore "removes" them (it does not: the restore goes through fds).
/// Reproduced by hand as uid 65534 too: `removes 1 not in the point: sub2/ROOT-ONLY-NAME`.
#[test]
fn a_dry_run_never_lists_a_directory_through_a_symlink() {
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    std::fs::create_dir_all(up.join("sub")).unwrap();
    for i in 0..3000 {
        std::fs::write(up.join(format!("f{i}")), b"x").unwrap();
    }
    let hidden = env.path("rootonly");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("ROOT-ONLY-NAME"), b"").unwrap();
    std::os::unix::fs::symlink(&hidden, up.join("sub2")).unwrap();
    std::fs::write(
        env.path("lifeboat.toml"),
        format!(
            "[repository.main]\npath = \"repo\"\n\n[app.web]\nfiles = [\"{}\"]\n",
            up.display()
        ),
    )
    .unwrap();
    let cfg = ["-c", "lifeboat.toml"];
    let o = env.lb().args(cfg).args(["backup", "web"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let a =
            std::ffi::CString::new(up.join("sub").into_os_string().into_encoded_bytes()).unwrap();
        let b =
            std::ffi::CString::new(up.join("sub2").into_os_string().into_encoded_bytes()).unwrap();
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
    for _ in 0..40 {
        let o = env
            .lb()
            .args(cfg)
            .args(["restore", "web", "--dry-run"])
            .output()
            .unwrap();
        let out = stdout(&o);
        if out.contains("ROOT-ONLY-NAME") {
            leaked = Some(out);
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        leaked.is_none(),
        "the dry run listed a root-only directory through a symlink:\n{}",
        leaked.unwrap_or_default()
    );
}

/// Storage attacker (no password): a key slot object whose name is shorter than 8 bytes, or
/// has a multi-byte character across byte 8, makes `lifeboat key list` panic
/// (`cli/key.rs`: `&k.id[..8]`, and `&k.id[..8.min(len)]` for a damaged slot).
#[test]
fn key_list_names_odd_slot_names_without_panicking() {
    let env = Env::new();
    env.init();
    let keys = env.repo.join("keys");
    let first = std::fs::read_dir(&keys)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&first, keys.join("ab")).unwrap();
    let o = env.lb().args(["key", "list"]).output().unwrap();
    assert!(o.status.success(), "readable slot `ab`: {}", stderr(&o));
    std::fs::remove_file(keys.join("ab")).unwrap();
    std::fs::write(keys.join("a\u{e9}\u{e9}\u{e9}\u{e9}"), b"{}").unwrap();
    let o = env.lb().args(["key", "list"]).output().unwrap();
    assert!(
        o.status.success(),
        "damaged slot `a\u{e9}\u{e9}\u{e9}\u{e9}`: {}",
        stderr(&o)
    );
}
