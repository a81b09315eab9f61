//! The anomaly rules that compare an app's newest point with the ones before it (the guides'
//! "alert if the backup is suddenly smaller than 50% of the average", a table emptied by a
//! bug or an intrusion, a secret swapped): each finding is a [`Problem`] of `status`, so it
//! makes `status` exit non-zero, shows in `/metrics` and raises one alert (and one recovery
//! when a newer point no longer shows it).
//!
//! They read only the manifests `status` already holds, but for a secret whose tree differs:
//! then both trees are read (a restore session, so the index is loaded) to tell a content
//! change from a touched file.
use std::collections::BTreeMap;

use lifeboat_core::{load_tree, ComponentKind, ObjectId, Point, Repository, TreeBody};

use crate::alerts::Rules;
use crate::status::Problem;

/// Points before the newest that make the average of `size_drop`.
const SIZE_WINDOW: usize = 9;

/// Problems one rule reports for one point, at most; the rest are folded into one more
/// (key `...:more`). Manifests are written by any key holder: a point with a million tables
/// emptied (or secrets changed) must not make a million alerts, a metrics page of as many
/// series, an alert state file too large to read back (which re-announces everything at
/// each look), or a restore session per secret.
pub(crate) const MAX_PER_RULE: usize = 20;

/// A point's logical size (saturating: the sizes are the manifest's word, and a forged
/// `u64::MAX` must not overflow).
pub(crate) fn point_size(p: &Point) -> u64 {
    p.components
        .iter()
        .fold(0u64, |t, c| t.saturating_add(c.size))
}

/// The anomalies of `points` (the app's, oldest first; the newest is judged).
pub(crate) fn anomalies(
    repo: &mut Repository,
    points: &[(ObjectId, Point)],
    rules: &Rules,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(((new_id, newest), before)) = points.split_last() else {
        return out;
    };
    if rules.size_drop > 0 && !before.is_empty() {
        let window = &before[before.len().saturating_sub(SIZE_WINDOW)..];
        let avg = window
            .iter()
            .map(|(_, p)| point_size(p) as f64)
            .sum::<f64>()
            / window.len() as f64;
        let size = point_size(newest) as f64;
        if size < avg * f64::from(rules.size_drop) / 100.0 {
            out.push(Problem {
                rule: "size_drop",
                key: "size".into(),
                message: format!(
                    "point {} is {} while the {} before it averaged {} (below {}%)",
                    new_id.short(),
                    crate::human::size(size as u64),
                    window.len(),
                    crate::human::size(avg as u64),
                    rules.size_drop
                ),
            });
        }
    }
    let Some((_, prev)) = before.last() else {
        return out;
    };
    if rules.rows_drop > 0 {
        out.extend(rows_drop(newest, prev, rules));
    }
    if rules.secret_changed {
        out.extend(secrets_changed(repo, newest, prev));
    }
    out
}

/// `rows_drop`: each table of `newest` (by component) whose rows fell by more than the
/// rule's percentage since `prev`, at most [`MAX_PER_RULE`] problems.
fn rows_drop(newest: &Point, prev: &Point, rules: &Rules) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut more = 0usize;
    for c in &newest.components {
        let (Some(now), Some(then)) = (row_counts(c), prev_component(prev, c).and_then(row_counts))
        else {
            continue;
        };
        for (table, &was) in then {
            let is = now.get(table).copied().unwrap_or(0);
            if was >= rules.rows_min.max(1)
                && (is as f64) < was as f64 * f64::from(100 - rules.rows_drop) / 100.0
            {
                if out.len() == MAX_PER_RULE {
                    more += 1;
                    continue;
                }
                out.push(Problem {
                    rule: "rows_drop",
                    key: format!("rows:{}:{table}", c.path),
                    message: format!(
                        "table {table} of {} fell from {was} to {is} rows between the two newest points (more than {}%)",
                        c.path, rules.rows_drop
                    ),
                });
            }
        }
    }
    if more > 0 {
        out.push(Problem {
            rule: "rows_drop",
            key: "rows:more".into(),
            message: format!(
                "{more} more tables fell by more than {}% between the two newest points (see `points`)",
                rules.rows_drop
            ),
        });
    }
    out
}

/// Trees of secrets already compared (by the two trees' entry lists), and whether their
/// contents differed: the daemon looks every 15 minutes and after each job, and a changed
/// secret stays the newest change until the next point; each comparison costs a restore
/// session (a lease written, the index loaded).
type Compared = (Vec<lifeboat_core::ChunkId>, Vec<lifeboat_core::ChunkId>);
static COMPARED: std::sync::Mutex<Option<std::collections::HashMap<Compared, bool>>> =
    std::sync::Mutex::new(None);

/// `secret_changed`: each secret of `newest` whose content differs from `prev`'s. One
/// restore session for all of them, opened only when a tree differs and not compared
/// before; at most [`MAX_PER_RULE`] compared, the rest reported as one problem.
fn secrets_changed(repo: &mut Repository, newest: &Point, prev: &Point) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut unsure = Vec::new();
    let mut todo = Vec::new();
    for c in newest
        .components
        .iter()
        .filter(|c| c.kind == ComponentKind::Secret)
    {
        let (Some(now), Some(then)) = (
            c.tree.as_ref(),
            prev_component(prev, c).and_then(|p| p.tree.as_ref()),
        ) else {
            continue;
        };
        if now.entries == then.entries {
            continue;
        }
        let key = (now.entries.clone(), then.entries.clone());
        let known = COMPARED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|m| m.get(&key).copied());
        match known {
            Some(true) => todo.push((c, now, then, Some(true))),
            Some(false) => {}
            None if todo.len() < MAX_PER_RULE => todo.push((c, now, then, None)),
            None => unsure.push(c.path.as_str()),
        }
    }
    let mut session = None;
    for (c, now, then, known) in todo {
        if out.len() == MAX_PER_RULE {
            unsure.push(c.path.as_str());
            continue;
        }
        let differs = match known {
            Some(d) => Ok(d),
            None => {
                if session.is_none() {
                    match repo.begin_restore() {
                        Ok(s) => session = Some(s),
                        Err(e) => {
                            tracing::warn!("cannot compare secret {}: {e}", c.path);
                            break;
                        }
                    }
                }
                let s = session.as_ref().expect("opened above");
                secret_content_differs(&mut s.reader(), now, then).inspect(|&d| {
                    let mut m = COMPARED.lock().unwrap_or_else(|p| p.into_inner());
                    let m = m.get_or_insert_with(Default::default);
                    if m.len() >= 1000 {
                        m.clear();
                    }
                    m.insert((now.entries.clone(), then.entries.clone()), d);
                })
            }
        };
        match differs {
            Ok(false) => {}
            Ok(true) => out.push(Problem {
                rule: "secret_changed",
                key: format!("secret:{}", c.path),
                message: format!(
                    "secret {} changed between the two newest points (check that the change was yours)",
                    c.path
                ),
            }),
            Err(e) => tracing::warn!("cannot compare secret {}: {e}", c.path),
        }
    }
    if !unsure.is_empty() {
        out.push(Problem {
            rule: "secret_changed",
            key: "secret:more".into(),
            message: format!(
                "{} more secrets may have changed between the two newest points (not compared)",
                unsure.len()
            ),
        });
    }
    out
}

fn prev_component<'p>(
    prev: &'p Point,
    c: &lifeboat_core::Component,
) -> Option<&'p lifeboat_core::Component> {
    prev.components
        .iter()
        .find(|p| p.kind == c.kind && p.path == c.path)
}

fn row_counts(c: &lifeboat_core::Component) -> Option<&BTreeMap<String, u64>> {
    match c.kind {
        ComponentKind::Sqlite => c.sqlite.as_ref().map(|s| &s.row_counts),
        ComponentKind::Postgres => c.postgres.as_ref().map(|p| &p.row_counts),
        _ => None,
    }
}

/// Whether two trees of a secret hold different bytes (a touched file, a new mode or owner
/// is not a content change).
fn secret_content_differs(
    reader: &mut lifeboat_core::ChunkReader<'_>,
    a: &TreeBody,
    b: &TreeBody,
) -> lifeboat_core::Result<bool> {
    let content = |t: &TreeBody, r: &mut lifeboat_core::ChunkReader<'_>| {
        load_tree(r, t).map(|es| {
            es.into_iter()
                .map(|e| (e.path, e.kind, e.size, e.chunks, e.target))
                .collect::<Vec<_>>()
        })
    };
    let x = content(a, reader)?;
    let y = content(b, reader)?;
    Ok(x != y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point with one SQLite component at `path` whose tables have these row counts, of
    /// the given size (as another key holder could write it).
    fn point(components: &[(&str, u64, BTreeMap<String, u64>)]) -> Point {
        let components: Vec<_> = components
            .iter()
            .map(|(path, size, rows)| {
                serde_json::json!({
                    "kind": "sqlite", "path": path, "size": size,
                    "sqlite": {
                        "page_size": 4096, "page_count": 1, "checksum": "", "base": [],
                        "base_pages": 0, "delta": [], "journal_mode": "wal",
                        "user_version": 0, "row_counts": rows,
                    }
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "app": "chat", "time": "2026-12-02T10:00:00Z", "tags": [], "hostname": "h",
            "lifeboat_version": "0", "components": components, "stats": lifeboat_core::PointStats::default(),
        }))
        .unwrap()
    }

    fn rules() -> Rules {
        Rules {
            stale: true,
            size_drop: 50,
            rows_drop: 50,
            rows_min: 100,
            secret_changed: true,
            drill: true,
        }
    }

    #[test]
    fn forged_sizes_saturate_instead_of_overflowing() {
        let p = point(&[
            ("/a", u64::MAX, BTreeMap::new()),
            ("/b", u64::MAX, BTreeMap::new()),
        ]);
        assert_eq!(point_size(&p), u64::MAX);
    }

    #[test]
    fn a_point_emptying_a_million_tables_makes_a_bounded_number_of_problems() {
        let many: BTreeMap<String, u64> = (0..100_000).map(|i| (format!("t{i}"), 1000)).collect();
        let prev = point(&[("/srv/chat.db", 1, many)]);
        let newest = point(&[("/srv/chat.db", 1, BTreeMap::new())]);
        let p = rows_drop(&newest, &prev, &rules());
        assert_eq!(p.len(), MAX_PER_RULE + 1);
        let last = p.last().unwrap();
        assert_eq!(last.key, "rows:more");
        assert!(
            last.message.starts_with("99980 more tables"),
            "{}",
            last.message
        );
        // Stable keys: the same tables are named at each look.
        assert_eq!(p, rows_drop(&newest, &prev, &rules()));
    }
}
