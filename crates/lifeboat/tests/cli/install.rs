//! `lifeboat install` (issue 13 item 3): the generated systemd units pass `systemd-analyze
//! verify` (an INI check where systemd-analyze is missing), and the crontab lines are five
//! fields and a command that, run by /bin/sh as cron would, backs the app up.
use std::path::Path;
use std::process::Command;

use crate::common::{fails, lb_config, make_db, Env, PASSWORD};

/// A config with one app (a SQLite database and a files tree) in the test's directory.
fn setup(schedules: &str) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    env.init();
    let app = env.path("srv/chat");
    std::fs::create_dir_all(app.join("uploads")).unwrap();
    std::fs::write(app.join("uploads/a.png"), b"png").unwrap();
    make_db(&app.join("chat.db"), 50, 100);
    let cfg = env.path("lifeboat.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository.local]\npath = {:?}\n\n[app.chat]\nsqlite = [{:?}]\nfiles = [{:?}]\n{schedules}\n",
            env.repo.display().to_string(),
            app.join("chat.db").display().to_string(),
            app.join("uploads").display().to_string(),
        ),
    )
    .unwrap();
    (env, cfg)
}

/// `systemd-analyze verify` on the unit files in `dir` when it exists here; else each file
/// parsed as INI (sections, `Key=value` lines). Returns which check ran.
fn verify_units(dir: &Path) -> &'static str {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!files.is_empty());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut section = false;
        for l in text.lines().map(str::trim) {
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            if l.starts_with('[') && l.ends_with(']') {
                section = true;
                continue;
            }
            let (k, _) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: {l}", f.display()));
            assert!(
                section && !k.is_empty() && !k.contains(' '),
                "{}: {l}",
                f.display()
            );
        }
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("note: no systemd-analyze here: the units were checked as INI only");
        return "ini";
    }
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&files)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "systemd-analyze verify: {err}");
    // verify also warns about other units of this machine; none may name ours.
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        assert!(!err.contains(&*name), "systemd-analyze verify: {err}");
    }
    println!("systemd-analyze verify passed");
    "systemd-analyze"
}

#[test]
fn install_systemd_writes_units_that_verify_and_refuses_to_overwrite() {
    let (env, cfg) = setup(
        "schedule = \"0 3 * * 1-5\"\nforget_schedule = \"every 7m\"\nrandom_delay = \"5m\"\n[app.chat.keep]\ndaily = 7\n[daemon]\ngrace = \"2m\"\n",
    );
    let dir = env.path("units");
    std::fs::create_dir(&dir).unwrap();
    let out = lb_config(&cfg, env.dir.path())
        .args(["install", "systemd", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(dir.join("lifeboat.service")).unwrap();
    let exe = std::fs::canonicalize(assert_cmd::cargo::cargo_bin("lifeboat")).unwrap();
    let cfg_abs = std::fs::canonicalize(&cfg).unwrap();
    assert!(
        unit.contains(&format!(
            "\nExecStart={} -c {} run\n",
            exe.display(),
            cfg_abs.display()
        )),
        "{unit}"
    );
    assert!(unit.contains("\nTimeoutStopSec=210s\n"), "{unit}");
    let repo = std::fs::canonicalize(&env.repo).unwrap();
    assert!(
        unit.contains(&format!("\nReadWritePaths=-{}\n", repo.display())),
        "{unit}"
    );
    // Printing gives the same unit.
    let printed = lb_config(&cfg, env.dir.path())
        .args(["install", "systemd"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim_end(),
        unit.trim_end()
    );
    // An existing file is not replaced without --force.
    fails(
        lb_config(&cfg, env.dir.path())
            .args(["install", "systemd", "--dir"])
            .arg(&dir),
        6,
        "refusing to overwrite",
    );
    lb_config(&cfg, env.dir.path())
        .args(["install", "systemd", "--force", "--dir"])
        .arg(&dir)
        .assert()
        .success();
    let ran = verify_units(&dir);
    println!("service: {ran}");

    let timers = env.path("timers");
    std::fs::create_dir(&timers).unwrap();
    lb_config(&cfg, env.dir.path())
        .args(["install", "systemd", "--timer", "--dir"])
        .arg(&timers)
        .assert()
        .success();
    let t = std::fs::read_to_string(timers.join("lifeboat-chat-backup.timer")).unwrap();
    assert!(t.contains("\nOnCalendar=Mon..Fri *-*-* 03:00:00\n"), "{t}");
    assert!(t.contains("\nRandomizedDelaySec=300s\n"), "{t}");
    let t = std::fs::read_to_string(timers.join("lifeboat-chat-forget.timer")).unwrap();
    assert!(t.contains("\nOnUnitActiveSec=420s\n"), "{t}");
    let ran = verify_units(&timers);
    println!("timers: {ran}");
}

#[test]
fn install_cron_lines_run_a_backup_and_unexpressible_schedules_are_named() {
    let (env, cfg) = setup("schedule = \"every 15m\"\n");
    let log = env.path("lifeboat.log");
    let out = lb_config(&cfg, env.dir.path())
        .args(["install", "cron", "--lock-dir"])
        .arg(env.dir.path())
        .arg("--log-file")
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("# lifeboat: scheduled jobs of "), "{text}");
    let jobs: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(jobs.len(), 1, "{text}");
    // Five time fields, then the command.
    let fields: Vec<&str> = jobs[0].splitn(6, ' ').collect();
    assert_eq!(fields.len(), 6, "{}", jobs[0]);
    assert_eq!(&fields[..5], ["*/15", "*", "*", "*", "*"]);
    let cmd = fields[5];
    assert!(
        cmd.starts_with("{ mkdir -p -m 0700 ") && cmd.contains("flock -w 3600 "),
        "{cmd}"
    );
    assert!(cmd.contains(" backup chat --tag scheduled "), "{cmd}");
    // Run it as cron would: /bin/sh, the crontab's `\%` unescaped (there is none here).
    assert!(!cmd.contains('%'));
    let st = Command::new("/bin/sh")
        .arg("-c")
        .arg(cmd)
        .env("LIFEBOAT_PASSWORD", PASSWORD)
        .env("LIFEBOAT_STATE_DIR", env.path(".lifeboat-state"))
        .env_remove("LIFEBOAT_CONFIG")
        .status()
        .unwrap();
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let points = env.points();
    assert_eq!(points.len(), 1, "{points:?}");
    assert!(
        points[0].to_string().contains("scheduled"),
        "{:?}",
        points[0]
    );
    assert!(std::fs::read_to_string(&log).unwrap().contains("point"));

    // A schedule cron cannot hold: exit 2, naming the app, the key and the schedule.
    let (env, cfg) = setup("schedule = \"every 7m\"\n");
    fails(
        lb_config(&cfg, env.dir.path()).args(["install", "cron"]),
        2,
        "app.chat.schedule = \"every 7m\" cannot be a crontab line",
    );
}
