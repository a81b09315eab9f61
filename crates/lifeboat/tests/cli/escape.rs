//! Points written by hand through the library (as anyone with the password could) whose paths
//! break the path rules: `restore --to DIR` refuses them (exit 5) before writing anything, and
//! `check` reports them.
use std::path::Path;

use lifeboat_core::{ComponentKind, EntryKind, ObjectId, TreeEntry};

use crate::common::*;
use crate::handmade::*;

/// Commits a point of one files component at `path` with `entries` (files get content `pwned`,
/// symlinks point at `link_to`).
fn make_point(env: &Env, path: &str, entries: Vec<TreeEntry>, link_to: &Path) -> ObjectId {
    make_point_of(
        env,
        vec![(ComponentKind::Files, path.to_string(), entries)],
        &link_to.display().to_string(),
    )
}

/// Commits a point of `components` (kind, path, tree entries), as `make_point` does.
fn make_point_of(
    env: &Env,
    components: Vec<(ComponentKind, String, Vec<TreeEntry>)>,
    link_to: &str,
) -> ObjectId {
    hand_made_point(
        env,
        Header {
            app: "adhoc",
            time: Some("2026-01-01T00:00:00Z"),
            hostname: "evil",
            definition: None,
        },
        components,
        link_to,
    )
}

/// Every file under `dir`, recursively (symlinks not followed).
fn all_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().unwrap().is_dir() {
                out.extend(all_files(&p));
            }
        }
    }
    out
}

fn refused(path: &str, entries: Vec<TreeEntry>, needle: &str) {
    let env = Env::new();
    env.init();
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let id = make_point(&env, path, entries, &outside);
    let short = &id.to_hex()[..8];
    let to = env.path("to");
    std::fs::create_dir(&to).unwrap();
    let before: Vec<_> = all_files(env.dir.path())
        .into_iter()
        .filter(|p| !p.starts_with(&env.repo) && !p.starts_with(env.path(".lifeboat-state")))
        .collect();
    let o = fails(
        env.lb()
            .args(["restore", &id.to_hex(), "--to"])
            .arg(&to)
            .arg("--yes"),
        5,
        needle,
    );
    let err = stderr(&o);
    assert!(err.contains(short), "the error names the point: {err}");
    assert!(err.contains(path), "the error names the component: {err}");
    let after: Vec<_> = all_files(env.dir.path())
        .into_iter()
        .filter(|p| !p.starts_with(&env.repo) && !p.starts_with(env.path(".lifeboat-state")))
        .collect();
    assert_eq!(
        before, after,
        "nothing written anywhere (inside --to or outside)"
    );
    assert!(all_files(&to).is_empty());
    // `check` (structure only) reports the point.
    let o = env.lb().arg("check").output().unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("point/{}", id.to_hex())) && stdout(&o).contains(needle),
        "check names the point and the problem: {}",
        stdout(&o)
    );
}

#[test]
fn component_path_with_dotdot_is_refused() {
    use EntryKind::*;
    refused(
        "/srv/../..",
        vec![entry("", Dir), entry("escaped", File)],
        "has a \"..\" component",
    );
}

#[test]
fn relative_component_path_is_refused() {
    use EntryKind::*;
    refused(
        "../escaped",
        vec![entry("", Dir), entry("x", File)],
        "is not absolute",
    );
}

#[test]
fn entry_with_dotdot_is_refused_before_anything_is_written() {
    use EntryKind::*;
    refused(
        "/srv/up",
        vec![
            entry("", Dir),
            entry("ok", File),
            entry("../../../escaped", File),
        ],
        "\"../../../escaped\"",
    );
}

#[test]
fn absolute_and_empty_entry_components_are_refused() {
    use EntryKind::*;
    refused(
        "/srv/up",
        vec![entry("", Dir), entry("ok", File), entry("/abs", File)],
        "is absolute",
    );
    refused(
        "/srv/up",
        vec![entry("", Dir), entry("d", Dir), entry("d//x", File)],
        "empty component",
    );
}

#[test]
fn entry_beneath_a_symlink_is_refused() {
    use EntryKind::*;
    refused(
        "/srv/up",
        vec![entry("", Dir), entry("a", Symlink), entry("a/x", File)],
        "which is a symlink",
    );
}

/// In place too: refused before the pre-restore point and before anything is written.
#[test]
fn in_place_restores_are_refused() {
    use EntryKind::*;
    let env = Env::new();
    env.init();
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let dotdot = format!("{}/up/../escaped", env.dir.path().display());
    let up = env.path("up").display().to_string();
    let cases = [
        (
            dotdot.clone(),
            vec![entry("", Dir), entry("x", File)],
            "\"..\" component",
        ),
        (
            up.clone(),
            vec![entry("", Dir), entry("a", Symlink), entry("a/x", File)],
            "which is a symlink",
        ),
        (
            up.clone(),
            vec![entry("", Dir), entry("ok", File), entry("../escaped", File)],
            "\"../escaped\"",
        ),
    ];
    for (path, entries, needle) in cases {
        let id = make_point(&env, &path, entries, &outside);
        let points_before = env.points().len();
        let o = fails(env.lb().args(["restore", &id.to_hex(), "--yes"]), 5, needle);
        assert!(stderr(&o).contains(&id.to_hex()[..8]), "{}", stderr(&o));
        assert!(!env.path("up").exists() && !env.path("escaped").exists());
        assert!(all_files(&outside).is_empty());
        assert_eq!(env.points().len(), points_before, "no pre-restore point");
    }
}

/// A secret whose path lies beneath a symlink that another component (a files tree of the
/// same point) restores: restoring the secret must not follow it out of `--to DIR`, nor out of
/// the tree in place, whether the link is absolute or climbs with `..`.
#[test]
fn a_component_beneath_another_trees_symlink_stays_inside() {
    use EntryKind::*;
    for (in_place, absolute) in [(false, true), (false, false), (true, true), (true, false)] {
        let env = Env::new();
        env.init();
        let outside = env.path("outside");
        std::fs::create_dir(&outside).unwrap();
        let app = if in_place {
            env.path("live/app").display().to_string()
        } else {
            "/srv/app".to_string()
        };
        let link = if absolute {
            outside.display().to_string()
        } else {
            "../../../../../../../../../../..".to_string() + &outside.display().to_string()
        };
        let id = make_point_of(
            &env,
            vec![
                (
                    ComponentKind::Files,
                    app.clone(),
                    vec![entry("", Dir), entry("y", Symlink)],
                ),
                (
                    ComponentKind::Secret,
                    format!("{app}/y/key"),
                    vec![entry("", File)],
                ),
            ],
            &link,
        );
        let mut cmd = env.lb();
        cmd.args(["restore", &id.to_hex(), "--yes"]);
        if !in_place {
            cmd.arg("--to").arg(env.path("to"));
        }
        let o = fails(&mut cmd, 6, "leads outside");
        assert!(stderr(&o).contains("y/key"), "{}", stderr(&o));
        assert!(
            all_files(&outside).is_empty(),
            "nothing written through the link (in place: {in_place}, absolute: {absolute})"
        );
    }
}

/// In place, a point (which any key holder can write) replaces only what lifeboat.toml lists
/// for the app; `--to DIR`, `--only` of the listed kinds and `--allow-unlisted` still work.
#[test]
fn in_place_writes_only_the_paths_the_config_lists() {
    use EntryKind::*;
    let env = Env::new();
    env.init();
    let up = env.path("live/up");
    let cron = env.path("etc/cron.d/job");
    std::fs::write(
        env.path("lifeboat.toml"),
        format!(
            "[repository.main]\npath = \"repo\"\n\n[app.adhoc]\nfiles = [\"{}\"]\n",
            up.display()
        ),
    )
    .unwrap();
    let id = make_point_of(
        &env,
        vec![
            (
                ComponentKind::Files,
                up.display().to_string(),
                vec![entry("", Dir), entry("ok", File)],
            ),
            (
                ComponentKind::Secret,
                cron.display().to_string(),
                vec![entry("", File)],
            ),
        ],
        "/",
    );
    let id = id.to_hex();
    let o = fails(
        env.lb().args(["restore", &id, "--yes"]),
        6,
        "does not list it for app adhoc",
    );
    assert!(
        stderr(&o).contains(&cron.display().to_string()),
        "{}",
        stderr(&o)
    );
    assert!(!cron.exists() && !up.exists(), "nothing written");

    let o = env
        .lb()
        .args(["restore", &id, "--yes", "--only", "files"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(up.join("ok")).unwrap(), b"pwned");
    assert!(!cron.exists());

    let o = env
        .lb()
        .args(["restore", &id, "--yes", "--force", "--allow-unlisted"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&cron).unwrap(), b"pwned");
}
