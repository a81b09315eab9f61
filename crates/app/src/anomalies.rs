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

/// A point's logical size.
pub(crate) fn point_size(p: &Point) -> u64 {
    p.components.iter().map(|c| c.size).sum()
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
        for c in &newest.components {
            let (Some(now), Some(then)) =
                (row_counts(c), prev_component(prev, c).and_then(row_counts))
            else {
                continue;
            };
            for (table, &was) in then {
                let is = now.get(table).copied().unwrap_or(0);
                if was >= rules.rows_min.max(1)
                    && (is as f64) < was as f64 * f64::from(100 - rules.rows_drop) / 100.0
                {
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
    }
    if rules.secret_changed {
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
            match secret_content_differs(repo, now, then) {
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
    repo: &mut Repository,
    a: &TreeBody,
    b: &TreeBody,
) -> lifeboat_core::Result<bool> {
    let session = repo.begin_restore()?;
    let mut reader = session.reader();
    let content = |t: &TreeBody, r: &mut lifeboat_core::ChunkReader<'_>| {
        load_tree(r, t).map(|es| {
            es.into_iter()
                .map(|e| (e.path, e.kind, e.size, e.chunks, e.target))
                .collect::<Vec<_>>()
        })
    };
    let x = content(a, &mut reader)?;
    let y = content(b, &mut reader)?;
    Ok(x != y)
}
