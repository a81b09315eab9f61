use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;

/// The number in `requests to ...: N (...)` that `--stats` prints.
fn requests(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("requests to "))
        .unwrap_or_else(|| panic!("no request line in {stderr}"));
    let after = line
        .split("): ")
        .nth(1)
        .unwrap_or(line.rsplit(": ").next().unwrap());
    after.split_whitespace().next().unwrap().parse().unwrap()
}

/// A whole app (SQLite, uploads, a 0600 secret) goes to S3 and comes back exactly; a second
/// backup of the unchanged app costs at most 11 requests (10 + its audit record); `check --read-data` passes; a
/// restore on a machine without the local cache works too.
#[test]
fn s3_app_round_trip_and_unchanged_backup_costs_few_requests() {
    let Some(env) = Env::s3() else { return };
    app_round_trip(env);
}

/// The same through SFTP (the private sshd), host key checked against its known_hosts.
#[test]
fn sftp_app_round_trip_and_unchanged_backup_costs_few_requests() {
    let Some(env) = Env::sftp() else { return };
    app_round_trip(env);
}

/// SFTP refusals through the CLI: a known_hosts that lists another key for the server, and a
/// missing client key; each one line naming the cause, exit 3.
#[test]
fn sftp_wrong_host_key_and_missing_client_key_are_named() {
    let Some(mut env) = Env::sftp() else { return };
    let kh = env.path("known_hosts");
    let key = std::env::var("LIFEBOAT_TEST_SFTP_KEY").unwrap();
    let pubkey = std::fs::read_to_string(format!("{key}.pub")).unwrap();
    let real =
        std::fs::read_to_string(std::env::var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS").unwrap()).unwrap();
    let hostport = real.split_whitespace().next().unwrap();
    let other: Vec<&str> = pubkey.split_whitespace().take(2).collect();
    std::fs::write(&kh, format!("{hostport} {}\n", other.join(" "))).unwrap();
    set_env(
        &mut env,
        "LIFEBOAT_SFTP_KNOWN_HOSTS",
        &kh.display().to_string(),
    );
    let o = fails(
        env.lb().args(["init", "--kdf-memory-mib", "8"]),
        3,
        "HOST KEY MISMATCH",
    );
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );

    set_env(
        &mut env,
        "LIFEBOAT_SFTP_KNOWN_HOSTS",
        &std::env::var("LIFEBOAT_TEST_SFTP_KNOWN_HOSTS").unwrap(),
    );
    set_env(
        &mut env,
        "LIFEBOAT_SFTP_IDENTITY_FILE",
        "/nonexistent/id_ed25519",
    );
    fails(
        env.lb().args(["init", "--kdf-memory-mib", "8"]),
        3,
        "/nonexistent/id_ed25519 does not exist",
    );
}

fn app_round_trip(env: Env) {
    let db = env.path("app/chat.db");
    std::fs::create_dir_all(env.path("app")).unwrap();
    make_db(&db, 20_000, 300);
    let up = env.path("app/uploads");
    let big: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    write(&up.join("a/photo.bin"), &big, 0o644);
    write(&up.join("note.txt"), b"hello", 0o640);
    let key = env.path("app/jwt.key");
    write(&key, b"-----BEGIN PRIVATE KEY-----\nsecret\n", 0o600);

    env.init();
    let backup = || {
        let o = env
            .lb()
            .args(["--stats", "backup", "--name", "chat", "--secret"])
            .arg(&key)
            .arg(&db)
            .arg(&up)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    backup();
    let second = backup();
    let n = requests(&second);
    // 10, and the audit record's PUT (issue 15 item 6).
    assert!(
        n <= 11,
        "unchanged backup made {n} requests (limit 11): {second}"
    );

    env.lb().args(["check", "--read-data"]).assert().success();

    // Another machine: no cache.
    std::fs::remove_dir_all(env.path("cache")).unwrap();
    let out = env.path("out");
    let o = env
        .lb()
        .args(["restore", "chat", "latest", "--to"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let r = |p: &Path| out.join(p.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(r(&up).join("a/photo.bin")).unwrap(), big);
    assert_eq!(std::fs::read(r(&up).join("note.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read(r(&key)).unwrap(),
        std::fs::read(&key).unwrap()
    );
    let mode = std::fs::metadata(r(&key)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "secret keeps its mode");
    let rdb = r(&db);
    assert_eq!(integrity(&rdb), "ok");
    assert_eq!(count(&rdb, "messages"), count(&db, "messages"));
}

/// A bucket that does not exist: one line naming the bucket and the cause, exit 3, for the
/// first command that touches it.
#[test]
fn s3_missing_bucket_is_named() {
    let Some(mut env) = Env::s3() else { return };
    env.repo = "s3://no-such-bucket-lifeboat/x".into();
    let o = fails(
        env.lb().args(["init", "--kdf-memory-mib", "8"]),
        3,
        "\"no-such-bucket-lifeboat\" does not exist",
    );
    let first = stderr(&o);
    assert!(
        first.lines().next().unwrap().starts_with("error: "),
        "{first}"
    );
    fails(env.lb().arg("points"), 3, "does not exist");
}

/// An endpoint where nothing listens: a clear error that says a retry may help, exit 1.
#[test]
fn s3_unreachable_endpoint_fails_cleanly() {
    let Some(mut env) = Env::s3() else { return };
    for (k, v) in env.envs.iter_mut() {
        if k == "AWS_ENDPOINT_URL" {
            *v = "http://127.0.0.1:9".into();
        }
        if k == "LIFEBOAT_S3_RETRIES" {
            *v = "0".into();
        }
    }
    let o = fails(env.lb().arg("points"), 1, "config");
    assert!(stderr(&o).contains("temporary"), "{}", stderr(&o));
}

/// Against a store that checks signatures (the second moto, started with MOTO_AUTH=1): the
/// right key works; a wrong secret and an unknown key id each fail with one line naming the
/// store's reason, exit 3.
#[test]
fn s3_wrong_credentials_are_named() {
    let Some(mut env) = Env::s3() else { return };
    let var = |k: &str| {
        std::env::var(k).unwrap_or_else(|_| panic!("{k} is not set: run `bash scripts/test.sh`"))
    };
    let endpoint = var("LIFEBOAT_TEST_S3_AUTH_ENDPOINT");
    let key = var("LIFEBOAT_TEST_S3_AUTH_KEY");
    let secret = var("LIFEBOAT_TEST_S3_AUTH_SECRET");
    let set = |env: &mut Env, k: &str, v: &str| {
        for (ek, ev) in env.envs.iter_mut() {
            if ek == k {
                *ev = v.to_string();
            }
        }
    };
    set(&mut env, "AWS_ENDPOINT_URL", &endpoint);
    set(&mut env, "AWS_ACCESS_KEY_ID", &key);
    set(&mut env, "AWS_SECRET_ACCESS_KEY", &secret);
    // The right key works (init reads, then writes). (Not `points`: moto 5.2 in this mode
    // rejects the signature of any listing whose prefix holds a '/', boto3's included.)
    env.init();

    set(&mut env, "AWS_SECRET_ACCESS_KEY", "not-the-secret");
    let o = fails(env.lb().arg("points"), 3, "SignatureDoesNotMatch");
    assert_eq!(
        stderr(&o)
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );
    assert!(
        !stderr(&o).contains("not-the-secret"),
        "the secret is never printed"
    );

    set(&mut env, "AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000");
    fails(env.lb().arg("points"), 3, "InvalidAccessKeyId");
}

fn set_env(env: &mut Env, k: &str, v: &str) {
    match env.envs.iter_mut().find(|(ek, _)| ek == k) {
        Some((_, ev)) => *ev = v.to_string(),
        None => env.envs.push((k.into(), v.into())),
    }
}

fn s3_upstream() -> std::net::SocketAddr {
    let ep = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    ep.trim_start_matches("http://").parse().unwrap()
}

fn add_rows(db: &Path, n: i64, tag: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO messages(body) VALUES (?1)",
            (body_of(i + 7_000_000, 300) + tag,),
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
}

/// Backups through a proxy that refuses, delays, answers 503 and cuts connections mid-upload:
/// each either completes or fails with a clear error (exit 1, "may be temporary"), and after
/// every attempt `check --read-data` passes on the real store. A clean backup afterwards
/// works and its point restores exactly.
#[test]
fn s3_backups_through_network_faults_complete_or_fail_without_damage() {
    use crate::fault_proxy::{FaultProxy, Faults};
    let Some(mut env) = Env::s3() else { return };
    std::fs::create_dir_all(env.path("app")).unwrap();
    let db = env.path("app/chat.db");
    make_db(&db, 10_000, 300);
    let up = env.path("app/uploads");
    let blob: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    write(&up.join("a.bin"), &blob, 0o644);
    env.init();
    let direct = std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap();
    let proxy = FaultProxy::start(
        s3_upstream(),
        Faults {
            drop: 0.08,
            slow_down: 0.08,
            delay: 0.05,
            cut: 0.01,
        },
        7,
    );
    let faulty = format!("http://{}", proxy.addr);
    let (mut ok, mut failed) = (0, 0);
    for round in 0..6 {
        add_rows(&db, 300, &format!("round {round}"));
        write(
            &up.join(format!("r{round}.bin")),
            &blob[round * 1000..],
            0o644,
        );
        set_env(&mut env, "AWS_ENDPOINT_URL", &faulty);
        set_env(
            &mut env,
            "LIFEBOAT_S3_RETRIES",
            if round % 2 == 0 { "6" } else { "0" },
        );
        let o = env
            .lb()
            .args(["backup", "--name", "chat"])
            .arg(&db)
            .arg(&up)
            .output()
            .unwrap();
        if o.status.success() {
            ok += 1;
        } else {
            failed += 1;
            let err = stderr(&o);
            assert_eq!(o.status.code(), Some(1), "{err}");
            // One error line (warnings, e.g. about a read that failed and was worked around,
            // may come before it).
            assert_eq!(
                err.lines().filter(|l| l.starts_with("error: ")).count(),
                1,
                "{err}"
            );
        }
        set_env(&mut env, "AWS_ENDPOINT_URL", &direct);
        let o = env.lb().args(["check", "--read-data"]).output().unwrap();
        assert!(
            o.status.success(),
            "round {round}: check after a faulty backup: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    eprintln!(
        "{ok} backups completed, {failed} failed; {} faults injected",
        proxy.injected()
    );
    assert!(proxy.injected() > 0, "no fault was injected");
    set_env(&mut env, "LIFEBOAT_S3_RETRIES", "1");
    env.ok(&[&"backup", &"--name", &"chat", &db, &up]);
    let out = env.path("out");
    env.ok(&[&"restore", &"chat", &"latest", &"--to", &out]);
    let r = |p: &Path| out.join(p.strip_prefix("/").unwrap());
    assert_eq!(integrity(&r(&db)), "ok");
    assert_eq!(count(&r(&db), "messages"), count(&db, "messages"));
    assert_eq!(std::fs::read(r(&up).join("r5.bin")).unwrap(), &blob[5000..]);
}

/// `lifeboat backup` killed (SIGKILL) at several moments of an upload to S3: no point that
/// references missing data appears, `check --read-data` passes, and the next backup works.
#[test]
fn s3_backup_killed_mid_upload_leaves_a_consistent_repository() {
    let Some(env) = Env::s3() else { return };
    std::fs::create_dir_all(env.path("app")).unwrap();
    let db = env.path("app/chat.db");
    make_db(&db, 30_000, 300);
    env.init();
    let mut killed_running = 0;
    for (i, ms) in [150u64, 400, 800, 1500].into_iter().enumerate() {
        add_rows(&db, 2000, &format!("kill {i}"));
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
            .envs(env.envs.iter().map(|(k, v)| (k, v)))
            .env("LIFEBOAT_PASSWORD", PASSWORD)
            .env_remove("LIFEBOAT_CONFIG")
            .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
            .arg("--repo")
            .arg(&env.repo)
            .args(["backup", "--name", "chat"])
            .arg(&db)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let o = env.lb().args(["check", "--read-data"]).output().unwrap();
        assert!(
            o.status.success(),
            "kill after {ms} ms: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    assert!(killed_running > 0, "every backup ended before its kill");
    env.ok(&[&"backup", &"--name", &"chat", &db]);
    let out = env.path("restored.db");
    env.ok(&[&"restore", &"chat", &"latest", &"-o", &out]);
    assert_eq!(count(&out, "messages"), count(&db, "messages"));
}

/// A local repository with two off-site replicas (S3 and SFTP) declared in lifeboat.toml:
/// `init --from` makes them, `copy chat` fills both, `points chat` shows where each point is,
/// each replica passes `check --read-data` and restores the app; a second copy moves nothing;
/// a repository that is not a replica is refused; a damaged source pack stops the copy before
/// any point is copied.
#[test]
fn copy_fills_s3_and_sftp_replicas() {
    let (Some(s3), Some(sftp)) = (Env::s3(), Env::sftp()) else {
        return;
    };
    let local = Env::new();
    // One process environment serves all three repositories.
    let mut envs = s3.envs.clone();
    envs.extend(
        sftp.envs
            .iter()
            .filter(|(k, _)| k != "LIFEBOAT_CACHE_DIR")
            .cloned(),
    );
    let cfg = local.path("lifeboat.toml");
    let db = local.path("app/chat.db");
    std::fs::create_dir_all(local.path("app")).unwrap();
    make_db(&db, 5_000, 200);
    std::fs::write(
        &cfg,
        format!(
            "[repository.local]\npath = \"{}\"\n\n[repository.offsite]\nurl = \"{}\"\n\n[repository.nas]\nurl = \"{}\"\n\n[app.chat]\nrepository = \"local\"\ncopy_to = [\"offsite\", \"nas\"]\nsqlite = [\"{}\"]\n",
            local.repo.display(),
            s3.repo.display(),
            sftp.repo.display(),
            db.display()
        ),
    )
    .unwrap();
    let lb = || {
        let mut c = lb_config(&cfg, local.dir.path());
        c.envs(envs.iter().map(|(k, v)| (k, v)));
        c
    };
    lb().args(["init", "--kdf-memory-mib", "8", "--repo", "local"])
        .assert()
        .success();
    for t in ["offsite", "nas"] {
        lb().args(["init", "--repo", t, "--from", "local"])
            .assert()
            .success();
    }
    lb().args(["backup", "chat"]).assert().success();
    add_rows(&db, 200, "second");
    lb().args(["backup", "chat"]).assert().success();

    let o = lb().args(["copy", "chat"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).matches("2 point(s) copied").count(),
        2,
        "{}",
        stdout(&o)
    );
    let o = lb().args(["copy", "chat"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o)
            .matches("0 point(s) copied (2 already there)")
            .count(),
        2,
        "{}",
        stdout(&o)
    );

    let o = lb().args(["points", "chat", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let pts: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(pts.len(), 2);
    for p in &pts {
        assert_eq!(p["copied_to"], serde_json::json!(["offsite", "nas"]), "{p}");
    }

    for t in ["offsite", "nas"] {
        lb().args(["check", "--read-data", "--repo", t])
            .assert()
            .success();
        let out = local.path(&format!("from-{t}.db"));
        let o = lb()
            .args(["restore", "chat", "latest", "--repo", t, "-o"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{t}: {}", stderr(&o));
        assert_eq!(count(&out, "messages"), count(&db, "messages"));
    }

    // Not a replica: refused, nothing written.
    let other = Env::new();
    other.init();
    fails(
        lb().args(["copy", "--repo", "local", "--to"])
            .arg(&other.repo),
        6,
        "is not a replica",
    );

    // A damaged pack in the source: the copy to a fresh replica fails naming it, and the
    // replica gets no point.
    let fresh = Env::new();
    lb().args(["init", "--from", "local", "--repo"])
        .arg(&fresh.repo)
        .assert()
        .success();
    let pack = largest_pack(&local);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    fails(
        lb().args(["copy", "--repo", "local", "--to"])
            .arg(&fresh.repo),
        5,
        "no point was copied",
    );
    assert!(
        !fresh.repo.join("points").exists()
            || std::fs::read_dir(fresh.repo.join("points"))
                .unwrap()
                .count()
                == 0
    );
}
