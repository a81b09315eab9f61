//! The interactive point picker of `restore` on a terminal: recent points with what tells them
//! apart (time, tags, size, schema version, row counts of the largest tables), a number to
//! pick. Only ever used when stdin and stderr are terminals (never in scripts or the daemon).
use std::io::{BufRead, Write};

use lifeboat_app::PointSummary;
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;
use crate::output::{esc, local_time, size};

/// How many recent points are offered.
const SHOWN: usize = 12;

/// Asks which point of `app` (every app when `None`) to restore; its id (hex).
pub fn pick_point(ctx: &Context, app: Option<&str>) -> Result<String> {
    let report = lifeboat_app::points(&ctx.setup, app)?;
    let mut recent: Vec<&PointSummary> = report.points.iter().rev().take(SHOWN).collect();
    // Newest first; future-dated points are shown (marked) but listed last.
    recent.sort_by_key(|p| p.future);
    if recent.is_empty() {
        return Err(Error::new(
            ErrorKind::Usage,
            format!(
                "no points{}",
                app.map(|a| format!(" of app {a}")).unwrap_or_default()
            ),
        ));
    }
    crate::output::errln!("Recent points (newest first):");
    for (i, p) in recent.iter().enumerate() {
        crate::output::errln!("{:>3}  {}", i + 1, describe(p, app.is_none()));
    }
    let mut line = String::new();
    loop {
        crate::output::err_print!(
            "Point to restore [1-{}, Enter = 1, q = quit]: ",
            recent.len()
        );
        let _ = std::io::stderr().flush();
        line.clear();
        if std::io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 {
            return Err(cancelled());
        }
        match line.trim() {
            "" => return Ok(recent[0].id.clone()),
            "q" | "Q" => return Err(cancelled()),
            s => match s.parse::<usize>() {
                Ok(n) if (1..=recent.len()).contains(&n) => return Ok(recent[n - 1].id.clone()),
                _ => crate::output::errln!(
                    "  {:?} is not a number from 1 to {}",
                    esc(s),
                    recent.len()
                ),
            },
        }
    }
}

fn cancelled() -> Error {
    Error::new(ErrorKind::Refused, "restore cancelled; nothing was changed")
}

/// One line: id, local time, tags, size, and the databases' schema and largest tables.
fn describe(p: &PointSummary, with_app: bool) -> String {
    let mut s = format!("{}  {}", &p.id[..8], local_time(&p.time));
    if with_app {
        s += &format!("  {}", esc(&p.app));
    }
    if !p.tags.is_empty() {
        s += &format!("  [{}]", esc(&p.tags.join(", ")));
    }
    if p.future {
        s += "  (dated in the future)";
    }
    s += &format!("  {}", size(p.size));
    let mut counts: Vec<(String, u64)> = Vec::new();
    for c in &p.components {
        if let Some(v) = c.get("schema_version").and_then(|v| v.as_str()) {
            s += &format!("  schema {}", esc(v));
        } else if let Some(v) = c
            .get("user_version")
            .and_then(|v| v.as_i64())
            .filter(|v| *v != 0)
        {
            s += &format!("  user_version {v}");
        }
        if let Some(m) = c.get("row_counts").and_then(|v| v.as_object()) {
            counts.extend(m.iter().filter_map(|(t, n)| Some((t.clone(), n.as_u64()?))));
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let top: Vec<String> = counts
        .iter()
        .take(2)
        .map(|(t, n)| format!("{} {n}", esc(t)))
        .collect();
    if !top.is_empty() {
        s += &format!("  rows: {}", top.join(", "));
    }
    s
}
