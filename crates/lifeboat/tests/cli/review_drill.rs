//! Attack review of `lifeboat drill` and `lifeboat status` (issue 15): each test reproduces a
//! finding and must fail on the reviewed code.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lifeboat_core::{ComponentKind, DrillOutcome, EntryKind, ProofRecord};

use crate::common::*;
use crate::drill::app;
use crate::handmade::{entry, hand_made_point, open_repo, Header};

/// A directory another user can change (no sticky bit), as `--scratch` or `$TMPDIR`.
fn open_dir(env: &Env) -> PathBuf {
    let open = env.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    open
}

fn status(cfg: &Path, dir: &Path, app: Option<&str>) -> (Option<i32>, String, String) {
    let mut c = lb_config(cfg, dir);
    c.arg("status");
    if let Some(a) = app {
        c.arg(a);
    }
    let o = c.arg("--json").output().unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

/// Finding 1: the scratch directory is made with a path in `--scratch` / `[daemon] scratch_dir`
/// / `$TMPDIR` whatever its owner and mode. In a directory another user can write (no sticky
/// bit), that user renames root's private `lifeboat-drill-*` away and puts their own directory
/// under its name before the restore opens it (`open_trusted` follows real directories):
/// root then restores the app's files, secrets and databases into a directory that user owns,
/// below root-made 0755 directories, and reads what is world-readable there (the app's own
/// 0700 parent is not part of the copy). Lifeboat refuses such directories everywhere else
/// (config, `[daemon] state_file`, `demo --dir`).
#[test]
fn review_a_scratch_dir_another_user_can_change_is_refused() {
    let env = Env::new();
    let cfg = app(&env);
    let open = open_dir(&env);
    let o = lb_config(&cfg, env.dir.path())
        .args(["drill", "chat", "--scratch"])
        .arg(&open)
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(6),
        "a drill made its scratch copy in a directory another user can change (mode 0777): {}{}",
        stdout(&o),
        stderr(&o)
    );
}

/// Finding 1, the attack itself: the scratch directory swapped for one of ours while the drill
/// plans; the restored copy lands in it.
#[test]
fn review_a_swapped_scratch_dir_does_not_receive_the_restored_copy() {
    let env = Env::new();
    let cfg = app(&env);
    let open = open_dir(&env);
    let mut won = false;
    for attempt in 0..8 {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
            .env("LIFEBOAT_PASSWORD", PASSWORD)
            .env("LIFEBOAT_CONFIG", &cfg)
            .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
            .current_dir(env.dir.path())
            .args(["drill", "chat", "--scratch"])
            .arg(&open)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut planted: Option<PathBuf> = None;
        let mut leaked = false;
        loop {
            if planted.is_none() {
                for e in std::fs::read_dir(&open).unwrap().flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with("lifeboat-drill-") {
                        let moved = open.join(format!("moved-{attempt}"));
                        if std::fs::rename(e.path(), &moved).is_ok()
                            && std::fs::create_dir(e.path()).is_ok()
                        {
                            std::fs::set_permissions(
                                e.path(),
                                std::fs::Permissions::from_mode(0o777),
                            )
                            .unwrap();
                            planted = Some(e.path());
                        }
                        break;
                    }
                }
            } else if let Some(p) = &planted {
                if find(p, "readme.txt").is_some() {
                    leaked = true;
                }
            }
            if leaked || child.try_wait().unwrap().is_some() {
                break;
            }
        }
        let _ = child.wait();
        if planted.is_some() {
            won = true;
            assert!(
                !leaked,
                "root restored the app's files into a directory another user put in place of the scratch directory"
            );
        }
    }
    if !won {
        println!("note: never saw the scratch directory before the restore; inconclusive");
    }
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if e.file_name() == name {
            return Some(p);
        }
        if e.file_type().ok()?.is_dir() {
            if let Some(f) = find(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

fn drill_record(point: &str, ok: bool, failure: Option<String>) -> ProofRecord {
    ProofRecord {
        point: point.into(),
        time: jiff::Timestamp::now().to_string(),
        hostname: "h".into(),
        by: "drill".into(),
        lifeboat_version: "0".into(),
        components: Vec::new(),
        drill: Some(DrillOutcome {
            ok,
            seconds: 1.0,
            bytes: 0,
            checks: Vec::new(),
            failure,
        }),
    }
}

/// Finding 2: `status` takes the newest drill of *every* record in the repository, not of the
/// app's points: another app's drill (or one of a forgotten point, or a record naming no
/// point) counts for this app. Here app `other` has a drill schedule and was never drilled;
/// `chat`'s passed drill makes it look proven and healthy.
#[test]
fn review_status_counts_only_drills_of_the_apps_own_points() {
    let env = Env::new();
    let cfg = app(&env);
    std::fs::create_dir_all(env.path("other")).unwrap();
    write(&env.path("other/f.txt"), b"other", 0o644);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[app.other]\nfiles = [\"{}\"]\ndrill = \"every 1s\"\n[alerts]\ngrace = \"1s\"\n",
        env.path("other").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    lb_config(&cfg, env.dir.path())
        .args(["backup", "other"])
        .assert()
        .success();
    lb_config(&cfg, env.dir.path())
        .args(["drill", "chat", "--scratch"])
        .arg(env.dir.path())
        .assert()
        .success();
    // Never drilled counts once two drill slots (and the grace) passed since the first point.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let (code, out, err) = status(&cfg, env.dir.path(), Some("other"));
    assert_eq!(
        code,
        Some(12),
        "app other was never drilled, yet status is healthy (chat's drill counted): {out}{err}"
    );
    assert!(out.contains("no drill has run yet"), "{out}");
}

/// Finding 3: `proofs_by_point` (`points`, `status`) keeps a summary per distinct `point`
/// string of every record, with the record's whole failure text and host name: any key holder
/// writes many records of made-up points, each with ~1 MiB of text, and `points` holds them
/// all (a restore's `of_point` was bounded against exactly this).
#[test]
fn review_records_of_made_up_points_do_not_cost_points_their_size_in_memory() {
    let env = Env::new();
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
    env.lb()
        .args(["init", "--kdf-memory-mib", "8"])
        .assert()
        .success();
    let cfg = ["-c", "lifeboat.toml"];
    let o = env.lb().args(cfg).args(["backup", "web"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut repo = open_repo(&env);
    let session = repo.begin_restore().unwrap();
    for i in 0..200u32 {
        // Varied text, so that the records are not tiny once compressed.
        let failure: String = (0..(1 << 20) - 4096)
            .map(|k: u32| char::from(b'a' + ((k.wrapping_mul(2654435761) ^ i) >> 27) as u8 % 26))
            .collect();
        session
            .record_proof(&drill_record(&format!("{i:064x}"), false, Some(failure)))
            .unwrap();
    }
    drop(session);
    let rss = max_rss_kib(&env, &[&"points"]);
    eprintln!("points max RSS {} MiB", rss / 1024);
    assert!(
        rss < 150 * 1024,
        "listing one point took {} MiB of memory (200 drill records of made-up points)",
        rss / 1024
    );
}

/// A config of one app `solo` (a files source) with `extra` lines, a repository, and
/// hand-made points of it dated `times`.
fn solo(env: &Env, extra: &str, times: &[String]) -> PathBuf {
    let dir = env.path("solo");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.r]\npath = \"{}\"\n\n[app.solo]\nfiles = [\"{}\"]\n{extra}\n",
            env.repo.display(),
            dir.display()
        ),
    )
    .unwrap();
    env.init();
    for t in times {
        hand_made_point(
            env,
            Header {
                app: "solo",
                time: Some(t),
                hostname: "h",
                definition: None,
            },
            vec![(
                ComponentKind::Files,
                dir.display().to_string(),
                vec![entry("", EntryKind::Dir)],
            )],
            "x",
        );
    }
    cfg
}

/// Finding 4: "older than two periods" measures the period between the next two slots after
/// now. For a cron schedule whose slots are uneven (weekdays only, `0 9,17 * * *`, two slots
/// a minute apart once a day as here) that is not the time since the last slot the point
/// should have come from: here the newest point was taken right at the last slot (nothing
/// missed, the next slot is tomorrow), yet status calls it stale (for `0 3 * * 1-5`: every
/// Sunday). Conversely a Thursday evening sees a 3-day period and misses a stopped backup.
#[test]
fn review_a_cron_schedule_with_uneven_slots_is_not_called_stale() {
    use jiff::{tz::TimeZone, SignedDuration, Timestamp};
    let env = Env::new();
    let mut t = (Timestamp::now() - SignedDuration::from_hours(3)).to_zoned(TimeZone::UTC);
    if t.minute() == 0 {
        t = t.checked_sub(SignedDuration::from_mins(1)).unwrap();
    }
    let (h, m) = (t.hour(), t.minute());
    let taken = t
        .with()
        .second(5)
        .subsec_nanosecond(0)
        .build()
        .unwrap()
        .timestamp()
        .to_string();
    let cfg = solo(
        &env,
        &format!(
            "schedule = \"{},{} {h} * * *\"\ntimezone = \"UTC\"",
            m - 1,
            m
        ),
        &[taken],
    );
    let (code, out, err) = status(&cfg, env.dir.path(), None);
    assert_eq!(
        code,
        Some(0),
        "a point taken at the schedule's last slot (the next is tomorrow) was called stale: {out}{err}"
    );
}

/// Finding 5: the newest point is picked by time with no regard for points dated in the
/// future (a host with a wrong clock, or any key holder): a point dated next year makes the
/// app look fresh forever, though `restore latest` skips it and the real backups stopped a
/// day ago.
#[test]
fn review_a_future_dated_point_does_not_hide_a_stale_app() {
    use jiff::{SignedDuration, Timestamp};
    let env = Env::new();
    let now = Timestamp::now();
    let cfg = solo(
        &env,
        "schedule = \"hourly\"",
        &[
            (now - SignedDuration::from_hours(24)).to_string(),
            (now + SignedDuration::from_hours(24 * 365)).to_string(),
        ],
    );
    let (code, out, err) = status(&cfg, env.dir.path(), None);
    assert_eq!(
        code,
        Some(12),
        "backups stopped a day ago (hourly schedule), but a future-dated point made status healthy: {out}{err}"
    );
}

/// Finding 4b: a replica's newest point is held to two periods of the *copy* schedule alone.
/// A replica cannot hold a point newer than the repository's newest: with weekly backups and
/// daily copies, the replica is called stale five days a week although it holds every point.
#[test]
fn review_a_replica_copied_daily_of_weekly_backups_is_not_called_stale() {
    use jiff::{SignedDuration, Timestamp};
    let env = Env::new();
    let off = env.path("off");
    let three_days = (Timestamp::now() - SignedDuration::from_hours(72)).to_string();
    let cfg = solo(
        &env,
        &format!(
            "repository = \"r\"\ncopy_to = [\"off\"]\nschedule = \"weekly\"\ncopy_schedule = \"daily\"\n\n[repository.off]\npath = \"{}\"",
            off.display()
        ),
        &[three_days],
    );
    assert_cmd::Command::cargo_bin("lifeboat")
        .unwrap()
        .env("LIFEBOAT_PASSWORD", PASSWORD)
        .env_remove("LIFEBOAT_CONFIG")
        .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
        .current_dir(env.dir.path())
        .arg("--repo")
        .arg(&off)
        .args(["init", "--from"])
        .arg(&env.repo)
        .assert()
        .success();
    lb_config(&cfg, env.dir.path())
        .args(["copy", "solo"])
        .assert()
        .success();
    let (code, out, err) = status(&cfg, env.dir.path(), None);
    assert_eq!(
        code,
        Some(0),
        "the replica holds the repository's newest point (3 days old, weekly backups) yet is called stale: {out}{err}"
    );
}

/// Finding 6: the scratch copy is removed by `TempDir`'s drop, which ignores errors. Run by a
/// user other than root (a user's own lifeboat), a point holding a read-only directory (0555:
/// vendored code, a module cache) is restored with that mode, its entries cannot be unlinked,
/// and the whole copy stays behind, silently, once per drill (a scheduled drill fills the
/// disk). Here as `nobody` through setpriv.
#[test]
fn review_a_read_only_directory_does_not_leave_the_scratch_copy_behind() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        println!("note: needs root and setpriv; skipped");
        return;
    }
    let env = Env::new();
    let src = env.path("app");
    write(&src.join("ro/sub/f.txt"), b"read-only dir", 0o644);
    std::fs::set_permissions(src.join("ro/sub"), std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(src.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    let scratch = env.path("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.r]\npath = \"{}\"\n\n[app.ro]\nfiles = [\"{}\"]\n",
            env.repo.display(),
            src.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ok = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(env.dir.path())
        .status()
        .unwrap();
    assert!(ok.success());
    let nobody = |args: &[&str]| {
        let o = std::process::Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(assert_cmd::cargo::cargo_bin("lifeboat"))
            .args(args)
            .env("LIFEBOAT_PASSWORD", PASSWORD)
            .env("LIFEBOAT_CONFIG", &cfg)
            .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
            .env("HOME", env.dir.path())
            .current_dir(env.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
    };
    nobody(&[
        "--repo",
        env.repo.to_str().unwrap(),
        "init",
        "--kdf-memory-mib",
        "8",
    ]);
    nobody(&["backup", "ro"]);
    nobody(&["drill", "ro", "--scratch", scratch.to_str().unwrap()]);
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "the drill's scratch copy was left behind: {left:?}"
    );
}

/// Finding 7: when the newest point this machine made is gone, `restore latest` refuses
/// (Corrupt) and the drill calls that "a restore that cannot be planned because the point's
/// data is damaged": it records a failed drill against the *older* point `latest` now names,
/// which is intact and was never drilled. `points` marks it DRILL FAIL and every later
/// restore reader sees a failure that is not its own.
#[test]
fn review_a_missing_newest_point_is_not_recorded_as_a_failed_drill_of_another() {
    let env = Env::new();
    let cfg = app(&env);
    write(&env.path("app/uploads/new.txt"), b"second", 0o644);
    lb_config(&cfg, env.dir.path())
        .args(["backup", "chat"])
        .assert()
        .success();
    let pts = env.points();
    assert_eq!(pts.len(), 2);
    let (older, newer) = (
        pts[0]["id"].as_str().unwrap().to_string(),
        pts[1]["id"].as_str().unwrap().to_string(),
    );
    std::fs::remove_file(env.repo.join("points").join(&newer)).unwrap();
    let o = lb_config(&cfg, env.dir.path())
        .args(["drill", "chat", "--scratch"])
        .arg(env.dir.path())
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    let p = env
        .points()
        .into_iter()
        .find(|p| p["id"] == older.as_str())
        .unwrap();
    assert!(
        p["proofs"]["last_drill"].is_null(),
        "point {} was never drilled, yet carries a failed drill: {p}",
        &older[..8]
    );
}
