//! `restore APP --at TIME`: the app as it was at a moment. Files, secrets and config come from
//! the newest point at or before that moment; each SQLite database from whichever is newer,
//! that point or the newest continuous delta at or before the moment, replayed from its
//! chain's base (`docs/FORMAT.md` §17) and verified against the chain's checksums before a
//! page is written.
use std::collections::HashMap;

use lifeboat_core::{
    links_to, replay, ComponentKind, Delta, Error, ErrorKind, ObjectId, Point, Repository, Result,
};
use serde::Serialize;

/// Where each part of a restore `--at` comes from.
#[derive(Debug, Clone, Serialize)]
pub struct AtTime {
    /// The moment asked for (RFC 3339).
    pub at: String,
    /// The point files, secrets and config (and databases without a newer delta) come from.
    pub point: String,
    /// Its time.
    pub point_time: String,
    /// Databases rebuilt from continuous deltas.
    pub databases: Vec<ReplayedDb>,
}

/// One database rebuilt from a chain.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayedDb {
    /// The database's path.
    pub path: String,
    /// The time of the newest link used: the database as it was then.
    pub time: String,
    /// That link's position in its chain.
    pub seq: u64,
    /// The point the chain starts from (hex).
    pub base: String,
}

/// Parses the `--at` argument: an RFC 3339 timestamp, a local date and time
/// (`2026-01-01 12:00:00`, `2026-01-01T12:00`, in the system's time zone), or a time ago
/// (`-10m`, `-2h30m`, `-1d`).
pub fn parse_at(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp> {
    let s = s.trim();
    let bad = |why: String| {
        Error::new(ErrorKind::Usage, format!("--at {s:?}: {why}")).with_hint(
            "give a time such as \"2026-01-01 12:00:00\" (local), \"2026-01-01T11:00:00Z\", or a time ago such as -10m",
        )
    };
    if let Some(ago) = s.strip_prefix('-') {
        let span: jiff::Span = ago.parse().map_err(|e| bad(format!("{e}")))?;
        let tz = jiff::tz::TimeZone::system();
        return now
            .to_zoned(tz)
            .checked_sub(span)
            .map(|z| z.timestamp())
            .map_err(|e| bad(format!("{e}")));
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let civil: jiff::civil::DateTime = s
        .parse()
        .or_else(|_| {
            s.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|e| bad(format!("{e}")))?;
    civil
        .to_zoned(jiff::tz::TimeZone::system())
        .map(|z| z.timestamp())
        .map_err(|e| bad(format!("{e}")))
}

/// Page tables replayed from continuous deltas, by database path.
pub(crate) type Replayed = HashMap<String, Vec<lifeboat_core::ChunkId>>;

/// The point and replayed page tables for `app` at `at`: the point (with each replayed
/// database's body set to the replay's page count and checksum, row counts cleared) and the
/// tables by database path.
pub(crate) fn resolve(
    repo: &mut Repository,
    app: &str,
    at: jiff::Timestamp,
) -> Result<(ObjectId, Point, Replayed, AtTime)> {
    let points = repo.points()?;
    let mut of_app: Vec<&(ObjectId, Point)> = points
        .iter()
        .filter(|(_, p)| p.app == app && !p.tags.iter().any(|t| t == "pre-restore"))
        .collect();
    let oldest = of_app.first().map(|(_, p)| p.time.clone());
    of_app.retain(|(_, p)| p.timestamp().is_ok_and(|t| t <= at));
    let Some((id, point)) = of_app.last().map(|(i, p)| (*i, p.clone())) else {
        return Err(Error::new(
            ErrorKind::Usage,
            format!("app {app} has no point at or before {at}"),
        )
        .with_hint(match oldest {
            Some(t) => format!("its oldest point is from {t}"),
            None => "it has no point at all".to_string(),
        }));
    };
    let point_time = point.timestamp()?;
    let deltas: HashMap<ObjectId, Delta> = repo
        .deltas()?
        .into_iter()
        .filter(|(_, d)| d.app == app)
        .collect();
    let mut out_point = point.clone();
    let mut tables = HashMap::new();
    let mut info = AtTime {
        at: at.to_string(),
        point: id.to_hex(),
        point_time: point.time.clone(),
        databases: Vec::new(),
    };
    // Per database path: the newest link at or before `at`, if newer than the point.
    let mut newest: HashMap<&str, (&ObjectId, &Delta, jiff::Timestamp)> = HashMap::new();
    for (did, d) in &deltas {
        let Ok(t) = d.timestamp() else { continue };
        // Captured on the host the point is from (an app of the same name on another host
        // has its own database at that path).
        if t > at || t <= point_time || d.hostname != point.hostname {
            continue;
        }
        let e = newest.entry(d.path.as_str()).or_insert((did, d, t));
        // Ties (a minute link has its last interval link's time): the interval link.
        if (t, d.level == 0) > (e.2, e.1.level == 0) {
            *e = (did, d, t);
        }
    }
    if newest.is_empty() {
        return Ok((id, out_point, tables, info));
    }
    let session = repo.begin_restore()?;
    let mut reader = session.reader();
    let mut paths: Vec<&&str> = newest.keys().collect();
    paths.sort();
    for path in paths {
        let (did, d, _) = newest[*path];
        let links: HashMap<ObjectId, Delta> = deltas
            .iter()
            .filter(|(_, x)| x.base == d.base && x.path == d.path)
            .map(|(i, x)| (*i, x.clone()))
            .collect();
        let chain = match links_to(&links, did) {
            Ok(c) => c,
            // An interval link cut off by a forget killed while thinning: the newest minute
            // link at or before the moment still gives the database within that minute.
            Err(e) if d.level == 0 => {
                // Newer than the point (else the point is the newer state) and from its host.
                let minute = links
                    .iter()
                    .filter(|(_, x)| x.level == 1 && x.hostname == point.hostname)
                    .filter_map(|(i, x)| Some((x.timestamp().ok()?, x.seq, *i)))
                    .filter(|(t, _, _)| *t <= at && *t > point_time)
                    .max()
                    .map(|(_, _, i)| i);
                match minute {
                    Some(m) => {
                        tracing::warn!("{e}; restoring from the minute link before it");
                        links_to(&links, &m)?
                    }
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        // The link the database is restored as of (a minute link after a fallback).
        let used = chain.last().expect("a chain has links").1.clone();
        let d = &used;
        let base_id = ObjectId::from_hex(&d.base).expect("checked by decode");
        let base_point = session.repository().read_point(&base_id).map_err(|e| {
            e.context(format!(
                "the point {} the continuous chain of {} starts from",
                base_id.short(),
                d.path
            ))
        })?;
        if base_point.app != app {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the chain of {} starts from point {} of another app ({})",
                    d.path,
                    base_id.short(),
                    base_point.app
                ),
            ));
        }
        let base_comp = base_point
            .components
            .iter()
            .find(|c| c.kind == ComponentKind::Sqlite && c.path == d.path)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!(
                        "point {} has no database {}, yet a continuous chain starts from it",
                        base_id.short(),
                        d.path
                    ),
                )
            })?;
        let body = base_comp.sqlite.as_ref().ok_or_else(|| {
            Error::new(
                ErrorKind::Corrupt,
                format!("database {} has no page table", d.path),
            )
        })?;
        let (table, sum) = replay(&mut reader, body, &chain)?;
        let mut comp = base_comp.clone();
        let b = comp.sqlite.as_mut().expect("checked");
        b.page_count = table.len() as u32;
        b.checksum = sum.to_hex();
        b.row_counts.clear();
        b.schema_version = None;
        comp.size = b.page_count as u64 * b.page_size as u64;
        match out_point
            .components
            .iter_mut()
            .find(|c| c.kind == ComponentKind::Sqlite && c.path == d.path)
        {
            Some(c) => *c = comp,
            None => out_point.components.push(comp),
        }
        tables.insert(d.path.clone(), table);
        info.databases.push(ReplayedDb {
            path: d.path.clone(),
            time: d.time.clone(),
            seq: d.seq,
            base: d.base.clone(),
        });
    }
    Ok((id, out_point, tables, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_local_and_relative_times() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        assert_eq!(
            parse_at("2026-12-01T11:00:00Z", now).unwrap().to_string(),
            "2026-12-01T11:00:00Z"
        );
        assert_eq!(
            parse_at("-10m", now).unwrap().to_string(),
            "2026-12-01T11:50:00Z"
        );
        assert_eq!(
            parse_at("-1h30m", now).unwrap().to_string(),
            "2026-12-01T10:30:00Z"
        );
        let local = parse_at("2026-12-01 11:00:00", now).unwrap();
        let expect = jiff::civil::date(2026, 12, 1)
            .at(11, 0, 0, 0)
            .to_zoned(jiff::tz::TimeZone::system())
            .unwrap()
            .timestamp();
        assert_eq!(local, expect);
        for bad in ["yesterday", "-ten minutes", ""] {
            let e = parse_at(bad, now).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
        }
    }
}
