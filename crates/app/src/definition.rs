//! An app's definition carried in its points (`Point::definition`, `docs/FORMAT.md` §8): the
//! `[app.NAME]` table of the `lifeboat.toml` it was backed up with, as TOML, with every path
//! absolute and any password removed from PostgreSQL URLs. `lifeboat recover` turns it back
//! into a `lifeboat.toml` on a new machine.
//!
//! A point may be written by any key holder, so what comes back from one is untrusted: it is
//! only ever written into a new config file, parsed by the same validating parser, and its
//! hooks are written commented out (they would run as root), for the operator to review.
use std::path::{Path, PathBuf};

use lifeboat_core::{ComponentKind, Error, ErrorKind, ObjectId, Point, Result};
use lifeboat_sources::postgres::url_without_password;

use crate::config::Config;

/// The definition of app `name` of `cfg`, as stored in its points.
pub(crate) fn of_app(cfg: &Config, name: &str) -> Option<String> {
    let root: toml::Table = toml::from_str(cfg.text()).ok()?;
    let mut t = root.get("app")?.get(name)?.as_table()?.clone();
    let a = cfg.app.get(name)?;
    let paths = |v: &[PathBuf]| {
        toml::Value::Array(
            v.iter()
                .map(|p| toml::Value::String(p.display().to_string()))
                .collect(),
        )
    };
    for (k, v) in [
        ("sqlite", &a.sqlite),
        ("files", &a.files),
        ("secrets", &a.secrets),
        ("config", &a.config),
    ] {
        if t.contains_key(k) {
            t.insert(k.into(), paths(v));
        }
    }
    if let Some(toml::Value::Array(pgs)) = t.get_mut("postgres") {
        for (pg, parsed) in pgs.iter_mut().zip(&a.postgres) {
            let Some(pg) = pg.as_table_mut() else {
                continue;
            };
            if let Some(u) = &parsed.url {
                pg.insert("url".into(), url_without_password(u).into());
            }
            for (k, v) in [
                ("password_file", &parsed.password_file),
                ("bin_dir", &parsed.bin_dir),
            ] {
                if let Some(p) = v {
                    pg.insert(k.into(), p.display().to_string().into());
                }
            }
        }
    }
    toml::to_string(&t).ok()
}

/// The keys of a definition written live into a recovered config: they only say what to read
/// and how to check it. Everything else (hooks, PostgreSQL connections and commands,
/// retention) is written commented out for the operator to review: a point may come from any
/// key holder, and those keys run commands as root, send a password somewhere, or delete
/// points.
const LIVE_KEYS: [&str; 2] = ["exclude", "checks"];

/// A `lifeboat.toml` for this machine: repository `repo` (as given to `recover`) and app
/// `app` from point `id`: the paths of the components it restored (never the definition's
/// own lists: only what was restored is backed up again), the definition's `exclude` and
/// `checks`, and every other key of the definition commented out. The text is checked by the
/// config parser.
pub(crate) fn config_text(repo: &str, app: &str, point: &Point, id: &ObjectId) -> Result<String> {
    let bad = |why: String| {
        Error::new(
            ErrorKind::Corrupt,
            format!("point {}: its app definition {why}", id.short()),
        )
    };
    let mut def: toml::Table = match &point.definition {
        Some(text) => toml::from_str(text).map_err(|e| bad(format!("is not TOML: {e}")))?,
        None => toml::Table::new(),
    };
    let mut live = toml::Table::new();
    for (kind, key) in [
        (ComponentKind::Sqlite, "sqlite"),
        (ComponentKind::Files, "files"),
        (ComponentKind::Secret, "secrets"),
        (ComponentKind::Config, "config"),
    ] {
        def.remove(key);
        let paths: Vec<toml::Value> = point
            .components
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.path.clone().into())
            .collect();
        if !paths.is_empty() {
            live.insert(key.into(), paths.into());
        }
    }
    for key in LIVE_KEYS {
        if let Some(v) = def.remove(key) {
            live.insert(key.into(), v);
        }
    }
    // Replicas are named by this config's repositories, which the point does not carry.
    def.remove("copy_to");
    def.remove("repository");
    let wrap = |t: toml::Table| {
        let mut root = toml::Table::new();
        root.insert(
            "app".into(),
            toml::Table::from_iter([(app.to_string(), toml::Value::Table(t))]).into(),
        );
        root
    };
    let mut out = format!(
        "# Written by `lifeboat recover` from point {} of app {app} ({}, host {}).\n\
         # Review it; then `lifeboat backup {app}` and `lifeboat restore {app}` use it.\n\n",
        id.short(),
        printable(&point.time),
        printable(&point.hostname)
    );
    let mut repo_table = toml::Table::new();
    repo_table.insert("path".into(), repo.into());
    if repo.starts_with("s3://") {
        if let Ok(e) = std::env::var("AWS_ENDPOINT_URL") {
            repo_table.insert("endpoint".into(), e.into());
        }
    }
    let mut root = wrap(live);
    root.insert(
        "repository".into(),
        toml::Table::from_iter([("main".to_string(), toml::Value::Table(repo_table))]).into(),
    );
    let body = toml::to_string(&root).map_err(|e| bad(format!("cannot be written: {e}")))?;
    out.push_str(&body);
    out.push_str(
        "\n# The repository's password: LIFEBOAT_PASSWORD, or one of\n\
         # password_file = \"/etc/lifeboat/password\"    (in [repository.main])\n",
    );
    if !def.is_empty() {
        let keys: Vec<String> = def.keys().cloned().collect();
        let text =
            toml::to_string(&wrap(def)).map_err(|e| bad(format!("cannot be written: {e}")))?;
        out.push_str(&format!(
            "\n# From the point (written by host {}), not enabled: {}. Hooks and PostgreSQL\n\
             # commands run as root, a PostgreSQL url and password_file decide where a password\n\
             # goes, retention decides what is deleted. Review them, then remove the leading '# '.\n",
            printable(&point.hostname),
            printable(&keys.join(", "))
        ));
        for line in text.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    Config::parse(Path::new("lifeboat.toml"), out.clone())
        .map_err(|e| bad(format!("does not make a valid config: {}", e.message())))?;
    Ok(out)
}

/// `s` with control characters replaced (a comment line of TOML allows none).
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_has_absolute_paths_and_no_password_and_makes_a_config_again() {
        let text = "[repository.main]\npath = \"/b\"\n\n[app.chat]\nsqlite = [\"data/chat.db\"]\n\
                    secrets = [\"/etc/chat/.env\"]\n\n[[app.chat.postgres]]\n\
                    url = \"postgresql://app:hunter2@db/chat\"\n\n[app.chat.hooks]\n\
                    stop = \"systemctl stop chat\"\n";
        let cfg = Config::parse(Path::new("/etc/lifeboat/lifeboat.toml"), text.into()).unwrap();
        let def = of_app(&cfg, "chat").unwrap();
        assert!(!def.contains("hunter2"), "{def}");
        assert!(def.contains("/etc/lifeboat/data/chat.db"), "{def}");
        let point = Point {
            app: "chat".into(),
            time: "2026-12-01T00:00:00Z".into(),
            tags: Vec::new(),
            hostname: "old\u{1b}]52;host".into(),
            lifeboat_version: "0".into(),
            components: vec![lifeboat_core::Component {
                kind: ComponentKind::Sqlite,
                path: "/srv/chat/chat.db".into(),
                size: 0,
                sqlite: None,
                tree: None,
                postgres: None,
            }],
            stats: Default::default(),
            definition: Some(def),
        };
        let id = ObjectId::from_hex(&"07".repeat(32)).unwrap();
        let out = config_text("s3://b/p", "chat", &point, &id).unwrap();
        assert!(out.contains("# stop = \"systemctl stop chat\""), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
        let again = Config::parse(Path::new("x.toml"), out.clone()).unwrap();
        assert!(
            again.app["chat"].hooks.stop.is_none(),
            "hooks stay commented out"
        );
        // The paths are the components' (what was restored), never the definition's lists.
        assert_eq!(
            again.app["chat"].sqlite,
            [PathBuf::from("/srv/chat/chat.db")]
        );
        assert!(again.app["chat"].secrets.is_empty());
        // PostgreSQL connections (a url, a command) are left for the operator to enable.
        assert!(again.app["chat"].postgres.is_empty());
        assert!(
            out.contains("# url = \"postgresql://app@db/chat\""),
            "{out}"
        );
    }
}
