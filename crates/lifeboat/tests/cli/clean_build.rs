use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// `cargo install --path`, `cargo install --git` and a build from a crate archive do not read
/// the repository's `.cargo/config.toml`, and neither does `cargo build --manifest-path` run
/// from another directory (Cargo looks for config files from the working directory up, then in
/// `$CARGO_HOME`). So this builds lifeboat from a temporary directory outside the repository,
/// with `LIBSQLITE3_FLAGS` removed from the environment, and backs up a live WAL database with
/// the binary that build produced: `sqlite_dbpage` must come from the build itself
/// (crates/sqlite), not from a config file or a variable.
///
/// Cheap by reusing this test run's target directory: the command below is the unit graph
/// `cargo nextest run --workspace [--features lifeboat/fault-injection]` (or `cargo test`)
/// built, so when the environment is the same every unit is fresh and cargo only checks
/// fingerprints (a few seconds). Were `sqlite_dbpage` to depend on the repository's config or
/// on `LIBSQLITE3_FLAGS`, the build scripts that read it (libsqlite3-sys, lifeboat-sqlite)
/// would re-run without it and the binary below would refuse the backup. After a partial run
/// (`-p`) some units differ and are built here, with hashes of their own.
#[test]
fn a_build_from_outside_the_repository_backs_up_sqlite() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    // <target>/debug/lifeboat, or <target>/<triple>/debug/lifeboat after `--target <triple>`
    // (then build scripts are in <target>/debug).
    let test_bin = assert_cmd::cargo::cargo_bin("lifeboat");
    let profile_dir = test_bin.parent().unwrap();
    let parent = profile_dir.parent().unwrap();
    let cross = parent.file_name().unwrap().to_string_lossy().contains('-')
        && parent
            .parent()
            .is_some_and(|t| t.join(profile_dir.file_name().unwrap()).is_dir());
    let (target_dir, triple) = if cross {
        (
            parent.parent().unwrap().to_path_buf(),
            Some(parent.file_name().unwrap().to_owned()),
        )
    } else {
        (parent.to_path_buf(), None)
    };
    let outside = tempfile::tempdir().unwrap();
    assert!(
        !outside.path().starts_with(&root),
        "temp dir inside the repository"
    );

    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(outside.path())
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("LIBSQLITE3_FLAGS")
        .args(["build", "--frozen", "--workspace", "--tests"])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--message-format", "json-render-diagnostics"]);
    if cfg!(feature = "fault-injection") {
        cargo.args(["--features", "lifeboat/fault-injection"]);
    }
    if let Some(t) = &triple {
        cargo.arg("--target").arg(t);
    }
    let started = std::time::Instant::now();
    let out = cargo.output().unwrap();
    assert!(
        out.status.success(),
        "cargo build from {} failed:\n{}",
        outside.path().display(),
        stderr(&out)
    );
    let mut bin: Option<PathBuf> = None;
    let mut rebuilt = Vec::new();
    for line in stdout(&out).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if msg["fresh"] == false {
            rebuilt.push(msg["target"]["name"].as_str().unwrap_or("?").to_string());
        }
        // The CLI itself, not its unit-test harness (same target, `profile.test`).
        if msg["target"]["name"] == "lifeboat"
            && msg["target"]["kind"][0] == "bin"
            && msg["profile"]["test"] == false
        {
            bin = msg["executable"].as_str().map(PathBuf::from);
        }
    }
    eprintln!(
        "build from outside: {:.1?}, {} units rebuilt {rebuilt:?}",
        started.elapsed(),
        rebuilt.len()
    );
    let bin = bin.expect("the build produced no lifeboat binary");

    // A real backup of a live WAL database with that binary, then a restore and comparison.
    let env = Env::new();
    let db = env.path("chat.db");
    make_db(&db, 2000, 200);
    let lb = |args: &[&dyn AsRef<std::ffi::OsStr>]| {
        // Env::lb_std's arguments (--repo) and environment, on the binary built above.
        let template = env.lb_std();
        let mut c = Command::new(&bin);
        c.current_dir(env.dir.path()).args(template.get_args());
        for (k, v) in template.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        let o = c.args(args.iter().map(|a| a.as_ref())).output().unwrap();
        assert!(o.status.success(), "{:?}:\n{}", c.get_args(), stderr(&o));
    };
    lb(&[&"init", &"--kdf-memory-mib", &"8"]);
    lb(&[&"backup", &db]);
    let to = env.path("restored");
    lb(&[&"restore", &"latest", &"--to", &to]);
    let restored = to.join(db.strip_prefix("/").unwrap());
    assert_eq!(count(&restored, "messages"), 2000);
    assert_eq!(integrity(&restored), "ok");
}

/// What packagers run: `lifeboat completions SHELL` (README "Install").
#[test]
fn completion_scripts_name_the_subcommands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = env.lb().args(["completions", shell]).output().unwrap();
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let s = stdout(&o);
        for sub in ["backup", "restore", "points", "prune", "check", "rollback"] {
            assert!(s.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let bash = stdout(&env.lb().args(["completions", "bash"]).output().unwrap());
    assert!(bash.contains("complete -F _lifeboat"), "{bash}");
    // The script loads in bash and registers the completion.
    let script = env.path("lifeboat.bash");
    std::fs::write(&script, &bash).unwrap();
    let o = Command::new("bash")
        .arg("-c")
        .arg(r#"source "$1" && complete -p lifeboat"#)
        .arg("bash")
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("_lifeboat"), "{}", stdout(&o));
    // The packagers' commands stay out of --help.
    let help = stdout(&env.lb().arg("--help").output().unwrap());
    assert!(
        !help.contains("completions") && !help.contains("\n  man"),
        "{help}"
    );
    fails(env.lb().args(["completions", "tcsh"]), 2, "tcsh");
}

/// `lifeboat man` prints a page that renders; `--dir` writes one per subcommand.
#[test]
fn man_pages_render() {
    let env = Env::new();
    let o = env.lb().arg("man").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let page = stdout(&o);
    assert!(
        page.starts_with(".ie") || page.contains(".TH lifeboat"),
        "{page}"
    );
    assert!(
        page.contains("backup") && page.contains("restore"),
        "{page}"
    );

    let dir = env.path("man1");
    env.lb().args(["man", "--dir"]).arg(&dir).assert().success();
    for name in [
        "lifeboat.1",
        "lifeboat-backup.1",
        "lifeboat-restore.1",
        "lifeboat-key.1",
    ] {
        assert!(dir.join(name).is_file(), "no {name} in {}", dir.display());
    }
    assert!(!dir.join("lifeboat-man.1").exists());

    // Rendered by man(1) where it is installed (Debian's CI image has it).
    if Path::new("/usr/bin/man").exists() {
        let o = Command::new("man")
            .arg("-l")
            .arg(dir.join("lifeboat-backup.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(o.status.success(), "man -l failed: {}", stderr(&o));
        let text = stdout(&o);
        assert!(text.contains("lifeboat-backup"), "{text}");
        assert!(!text.contains("warning"), "{}", stderr(&o));
    }
}
