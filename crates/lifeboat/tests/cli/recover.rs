//! Bare-machine recovery (issue 12 item 11): a new machine with only the repository URL, the
//! store's credentials and the password (no config, empty cache, no state) brings the app back
//! at its paths, or under a new root, and gets a working lifeboat.toml.
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::*;

struct Machine {
    env: Env,
    srv: PathBuf,
    db: PathBuf,
    up: PathBuf,
    key: PathBuf,
    conf: PathBuf,
}

/// Machine A: an app with a database, uploads, a 0600 secret (owned by 4242 when root), a
/// config file, hooks and checks in its lifeboat.toml; one backup to `env`'s repository.
fn machine_a(env: Env) -> Machine {
    let srv = env.path("srv/chat");
    let (db, up, key, conf) = (
        srv.join("chat.db"),
        srv.join("uploads"),
        srv.join("keys/jwt.pem"),
        srv.join("config.toml"),
    );
    std::fs::create_dir_all(&srv).unwrap();
    make_db(&db, 300, 40);
    write(&up.join("a/cat.png"), &[9u8; 30_000], 0o640);
    write(&key, b"-----BEGIN KEY-----\n", 0o600);
    write(&conf, b"port = 8080\n", 0o644);
    if is_root() {
        std::os::unix::fs::chown(&key, Some(4242), Some(4343)).unwrap();
    }
    let cfg = env.path("a/lifeboat.toml");
    write(
        &cfg,
        format!(
            "[repository.main]\npath = \"{repo}\"\n\n[app.chat]\nsqlite = [\"{}\"]\nfiles = [\"{}\"]\nsecrets = [\"{}\"]\nconfig = [\"{}\"]\nexclude = [\"*.tmp\"]\n\n[app.chat.keep]\nlast = 7\n\n[app.chat.hooks]\nstop = \"systemctl stop chat\"\nstart = \"systemctl start chat\"\n\n[app.chat.checks]\nsql = [\"SELECT count(*) FROM messages\"]\n",
            db.display(),
            up.display(),
            key.display(),
            conf.display(),
            repo = env.repo.display()
        )
        .as_bytes(),
        0o644,
    );
    env.init();
    let o = env
        .lb()
        .arg("-c")
        .arg(&cfg)
        .args(["backup", "chat"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    Machine {
        env,
        srv,
        db,
        up,
        key,
        conf,
    }
}

/// `lifeboat` as on a new machine: no config, a fresh cache and state directory.
fn bare(m: &Machine, name: &str) -> assert_cmd::Command {
    let mut c = m.env.lb();
    c.env("LIFEBOAT_CACHE_DIR", m.env.path(&format!("{name}/cache")))
        .env("LIFEBOAT_STATE_DIR", m.env.path(&format!("{name}/state")))
        .current_dir(m.env.path(name));
    std::fs::create_dir_all(m.env.path(name)).unwrap();
    c
}

fn assert_app_at(m: &Machine, root: &Path) {
    let at = |p: &Path| root.join(p.strip_prefix("/").unwrap());
    let db = at(&m.db);
    assert_eq!(count(&db, "messages"), 300);
    assert_eq!(integrity(&db), "ok");
    assert_eq!(
        std::fs::read(at(&m.up).join("a/cat.png")).unwrap(),
        vec![9u8; 30_000]
    );
    let key = std::fs::metadata(at(&m.key)).unwrap();
    assert_eq!(key.permissions().mode() & 0o7777, 0o600);
    if is_root() {
        assert_eq!((key.uid(), key.gid()), (4242, 4343));
    }
    assert_eq!(std::fs::read(at(&m.conf)).unwrap(), b"port = 8080\n");
}

fn check_config(m: &Machine, cfg: &Path) {
    let text = std::fs::read_to_string(cfg).unwrap();
    assert_eq!(std::fs::metadata(cfg).unwrap().mode() & 0o777, 0o600);
    assert!(text.contains(&m.db.display().to_string()), "{text}");
    assert!(text.contains("SELECT count(*) FROM messages"), "{text}");
    assert!(text.contains("last = 7"), "{text}");
    assert!(
        text.contains("# stop = \"systemctl stop chat\""),
        "hooks are written commented out: {text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("stop")), "{text}");
}

#[test]
fn a_new_machine_recovers_the_app_from_s3_alone() {
    let Some(env) = Env::s3() else { return };
    let m = machine_a(env);
    // The machine is lost.
    std::fs::remove_dir_all(&m.srv).unwrap();

    let cfg = m.env.path("b/etc/lifeboat.toml");
    let o = bare(&m, "b")
        .args(["recover", "--yes", "--config-out"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("recovered app chat"), "{}", stdout(&o));
    assert_app_at(&m, Path::new("/"));
    check_config(&m, &cfg);

    // The written config works on the new machine: a backup of the recovered app.
    let o = bare(&m, "b")
        .env_remove("LIFEBOAT_CONFIG")
        .arg("-c")
        .arg(&cfg)
        .args(["backup", "chat"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // It refuses to overwrite a config.
    fails(
        bare(&m, "b")
            .args(["recover", "--yes", "--config-out"])
            .arg(&cfg),
        6,
        "exists",
    );
}

#[test]
fn recover_under_a_new_root_and_dry_run() {
    let env = Env::new();
    let m = machine_a(env);
    let root = m.env.path("newroot");

    let o = bare(&m, "c")
        .args(["recover", "--dry-run", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("config it would write"),
        "{}",
        stdout(&o)
    );
    assert!(!root.exists(), "a dry run writes nothing");

    let o = bare(&m, "c")
        .args(["recover", "chat", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_app_at(&m, &root);
    check_config(&m, &root.join("etc/lifeboat/lifeboat.toml"));
}
