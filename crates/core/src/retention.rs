//! Retention policies: which points of an app to keep, and the rule that kept each one.
//!
//! Semantics (restic's, which operators already know, plus two safety rules):
//! - points are taken newest first; `last N` keeps the N newest;
//! - `hourly/daily/weekly/monthly/yearly N` keep the newest point of each of the N most recent
//!   hours/days/ISO weeks/months/years **that have a point**, in the policy's time zone
//!   (calendar days across DST changes, real month ends, leap days);
//! - `within D` keeps every point not older than D before the **newest point** (not "now": a
//!   backup job that stopped a month ago must not make `forget` delete everything);
//! - `tags [..]` keeps every point carrying one of them (`pinned` never expires);
//! - `tagged {tag = N}` keeps the N newest points carrying `tag` (`pre-migration = 2`);
//! - the newest point of the app is always kept (rule `newest`);
//! - a policy with no rule at all is refused: it would keep only the newest point.
use std::collections::BTreeMap;

use jiff::{tz::TimeZone, Span, Timestamp, Zoned};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{err, Result};
use crate::format::point::Point;
use crate::id::ObjectId;

/// A retention policy: the one type behind `lifeboat.toml`'s `[app.NAME.keep]` tables (it
/// deserializes straight from them, with the same field names), the CLI's `--keep-*` flags
/// and [`plan`]. Counts of 0 mean "rule not used"; [`Policy::default`] has no rule.
///
/// The time zone of the calendar rules is part of the policy (`timezone`, an IANA name;
/// `None` means the system's): "daily" is only meaningful with the zone whose days it counts.
/// [`Policy::validate`] checks what deserialization cannot (the zone is known).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The N newest points.
    #[serde(default)]
    pub last: u32,
    /// Newest point of each of the N most recent hours with a point.
    #[serde(default)]
    pub hourly: u32,
    /// ... days.
    #[serde(default)]
    pub daily: u32,
    /// ... ISO weeks (Monday to Sunday).
    #[serde(default)]
    pub weekly: u32,
    /// ... months.
    #[serde(default)]
    pub monthly: u32,
    /// ... years.
    #[serde(default)]
    pub yearly: u32,
    /// Every point not older than this before the newest point (`"30d"`, `"12h"`, `"2w"`:
    /// see [`parse_span`]).
    #[serde(default, deserialize_with = "deserialize_span")]
    pub within: Option<Span>,
    /// Every point with one of these tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The N newest points with this tag.
    #[serde(default)]
    pub tagged: BTreeMap<String, u32>,
    /// Time zone of the calendar rules (IANA name, e.g. `Europe/Berlin`); `None`: the
    /// system's. See [`Policy::time_zone`].
    #[serde(default)]
    pub timezone: Option<String>,
}

/// `within = "30d"`, parsed by [`parse_span`].
fn deserialize_span<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Span>, D::Error> {
    let s = String::deserialize(d)?;
    parse_span(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(e.message()))
}

impl PartialEq for Policy {
    fn eq(&self, o: &Policy) -> bool {
        (
            self.last,
            self.hourly,
            self.daily,
            self.weekly,
            self.monthly,
            self.yearly,
        ) == (o.last, o.hourly, o.daily, o.weekly, o.monthly, o.yearly)
            && self.within.map(|s| s.fieldwise()) == o.within.map(|s| s.fieldwise())
            && self.tags == o.tags
            && self.tagged == o.tagged
            && self.timezone == o.timezone
    }
}

impl Policy {
    /// Checks what the type cannot: the time zone is known. Config loading and the CLI's
    /// flags both call this.
    pub fn validate(&self) -> Result<()> {
        self.time_zone().map(|_| ())
    }

    /// The time zone of the calendar rules: `timezone`, or the system's.
    pub fn time_zone(&self) -> Result<TimeZone> {
        match &self.timezone {
            Some(name) => {
                TimeZone::get(name).map_err(|e| err!(Usage, "unknown time zone {name:?}: {e}"))
            }
            None => Ok(TimeZone::system()),
        }
    }

    /// Parses one `tagged` rule written `TAG=N` (`pre-migration=2`).
    pub fn parse_tagged(s: &str) -> Result<(String, u32)> {
        s.split_once('=')
            .and_then(|(t, n)| Some((t.to_string(), n.parse::<u32>().ok()?)))
            .ok_or_else(|| err!(Usage, "{s:?}: expected TAG=N, e.g. pre-migration=2"))
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within.is_none()
            && self.tags.is_empty()
            && self.tagged.values().all(|n| *n == 0)
    }

    /// One line, e.g. `last 5, daily 7, weekly 4, monthly 12, tags pinned`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, n) in [
            ("last", self.last),
            ("hourly", self.hourly),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
            ("yearly", self.yearly),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(w) = &self.within {
            parts.push(format!("within {w:#}"));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {}", self.tags.join(",")));
        }
        for (t, n) in &self.tagged {
            parts.push(format!("tagged {t}={n}"));
        }
        parts.join(", ")
    }
}

/// What the policy decided for one point.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Point id (hex).
    pub id: String,
    /// Capture time (RFC 3339).
    pub time: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Kept or not.
    pub keep: bool,
    /// Every rule that keeps it (`daily 2026-11-21`, `last 3`, `tag pinned`); empty = remove.
    pub reasons: Vec<String>,
}

/// Parses a duration such as `30d`, `12h`, `2w`, `1y 6mo` or ISO `P30D`.
pub fn parse_span(s: &str) -> Result<Span> {
    s.trim().parse::<Span>().map_err(|e| {
        err!(
            Usage,
            "{s:?} is not a duration (like 30d, 12h, 2w, 6mo): {e}"
        )
    })
}

/// Applies `policy` to the points of ONE app (any order). Returns one decision per point,
/// newest first.
pub fn plan(points: &[(ObjectId, Point)], policy: &Policy, tz: &TimeZone) -> Result<Vec<Decision>> {
    if policy.is_empty() {
        return Err(err!(
            Usage,
            "the retention policy has no rule: it would keep only the newest point"
        ));
    }
    let mut list: Vec<(Timestamp, &ObjectId, &Point)> = points
        .iter()
        .map(|(id, p)| Ok((p.timestamp()?, id, p)))
        .collect::<Result<_>>()?;
    // Newest first; ties broken by id so the plan is deterministic.
    list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(a.1)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); list.len()];
    if list.is_empty() {
        return Ok(Vec::new());
    }
    reasons[0].push("newest".into());

    for (i, r) in reasons.iter_mut().enumerate().take(policy.last as usize) {
        r.push(format!("last {}", i + 1));
    }
    type Bucket = fn(&Zoned) -> String;
    let buckets: [(&str, u32, Bucket); 5] = [
        ("hourly", policy.hourly, |z| {
            z.strftime("%Y-%m-%d %H:00").to_string()
        }),
        ("daily", policy.daily, |z| {
            z.strftime("%Y-%m-%d").to_string()
        }),
        ("weekly", policy.weekly, |z| {
            let w = z.date().iso_week_date();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("monthly", policy.monthly, |z| {
            z.strftime("%Y-%m").to_string()
        }),
        ("yearly", policy.yearly, |z| z.strftime("%Y").to_string()),
    ];
    for (name, n, bucket) in buckets {
        if n == 0 {
            continue;
        }
        let mut seen: Option<String> = None;
        let mut kept = 0;
        for (i, (t, _, _)) in list.iter().enumerate() {
            if kept == n {
                break;
            }
            let b = bucket(&t.to_zoned(tz.clone()));
            if seen.as_ref() != Some(&b) {
                reasons[i].push(format!("{name} {b}"));
                seen = Some(b);
                kept += 1;
            }
        }
    }
    if let Some(span) = &policy.within {
        let newest = list[0].0.to_zoned(tz.clone());
        let cutoff = newest
            .checked_sub(*span)
            .map_err(|e| err!(Usage, "within {span:#} before {newest}: {e}"))?
            .timestamp();
        for (i, (t, _, _)) in list.iter().enumerate() {
            if *t >= cutoff {
                reasons[i].push(format!("within {span:#}"));
            }
        }
    }
    for (i, (_, _, p)) in list.iter().enumerate() {
        for t in &policy.tags {
            if p.tags.contains(t) {
                reasons[i].push(format!("tag {t}"));
            }
        }
    }
    for (tag, n) in &policy.tagged {
        for (k, i) in list
            .iter()
            .enumerate()
            .filter(|(_, (_, _, p))| p.tags.contains(tag))
            .map(|(i, _)| i)
            .take(*n as usize)
            .enumerate()
        {
            reasons[i].push(format!("tagged {tag} {}", k + 1));
        }
    }
    Ok(list
        .iter()
        .zip(reasons)
        .map(|((_, id, p), reasons)| Decision {
            id: id.to_hex(),
            time: p.time.clone(),
            tags: p.tags.clone(),
            keep: !reasons.is_empty(),
            reasons,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::point::PointStats;

    fn point(time: &str, tags: &[&str]) -> (ObjectId, Point) {
        let p = Point {
            app: "chat".into(),
            time: time.parse::<Timestamp>().unwrap().to_string(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            hostname: "h".into(),
            lifeboat_version: "0".into(),
            components: Vec::new(),
            stats: PointStats::default(),
            definition: None,
        };
        (ObjectId::of(time.as_bytes()), p)
    }

    /// Points at these zoned times (`2026-03-29T01:30[Europe/Berlin]`), hourly/daily/...
    fn at(zoned: &[&str]) -> Vec<(ObjectId, Point)> {
        zoned
            .iter()
            .map(|z| {
                let t = z.parse::<Zoned>().unwrap().timestamp().to_string();
                point(&t, &[])
            })
            .collect()
    }

    fn kept(points: &[(ObjectId, Point)], policy: &Policy, tz: &str) -> Vec<String> {
        let tz = TimeZone::get(tz).unwrap();
        plan(points, policy, &tz)
            .unwrap()
            .into_iter()
            .filter(|d| d.keep)
            .map(|d| {
                d.time
                    .parse::<Timestamp>()
                    .unwrap()
                    .to_zoned(tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn daily_uses_calendar_days_across_dst() {
        // Europe/Berlin springs forward on 2026-03-29 (02:00 -> 03:00) and falls back on
        // 2026-10-25 (03:00 -> 02:00). A day is a calendar day in the zone, 23 or 25 hours long.
        let pts = at(&[
            "2026-03-28T23:30[Europe/Berlin]",
            "2026-03-29T00:30[Europe/Berlin]",
            "2026-03-29T03:30[Europe/Berlin]", // after the skipped hour, same day
            "2026-03-29T23:59[Europe/Berlin]",
            "2026-03-30T00:01[Europe/Berlin]",
        ]);
        let p = Policy {
            daily: 3,
            ..Default::default()
        };
        assert_eq!(
            kept(&pts, &p, "Europe/Berlin"),
            vec!["2026-03-30 00:01", "2026-03-29 23:59", "2026-03-28 23:30"]
        );
        // The same instants seen from UTC fall into two days only (00:01 on the 30th in
        // Berlin is 22:01 on the 29th in UTC; 00:30 on the 29th is 23:30 on the 28th).
        assert_eq!(
            kept(&pts, &p, "UTC"),
            vec!["2026-03-29 22:01", "2026-03-28 23:30"]
        );
        // Fall back: 02:30 happens twice; both are the same day and the same hour bucket.
        let pts = at(&[
            "2026-10-25T02:30+02:00[Europe/Berlin]",
            "2026-10-25T02:30+01:00[Europe/Berlin]",
            "2026-10-25T04:00[Europe/Berlin]",
        ]);
        let p = Policy {
            hourly: 10,
            ..Default::default()
        };
        assert_eq!(
            kept(&pts, &p, "Europe/Berlin"),
            vec!["2026-10-25 04:00", "2026-10-25 02:30"]
        );
    }

    #[test]
    fn monthly_and_yearly_use_real_month_ends_and_leap_days() {
        let pts = at(&[
            "2024-02-28T12:00[UTC]",
            "2024-02-29T12:00[UTC]", // leap day: newest of February 2024
            "2024-03-01T00:00[UTC]",
            "2024-03-31T23:59[UTC]",
            "2024-04-30T23:59[UTC]",
            "2025-02-28T23:59[UTC]",
            "2025-03-01T00:00[UTC]",
        ]);
        let p = Policy {
            monthly: 4,
            ..Default::default()
        };
        assert_eq!(
            kept(&pts, &p, "UTC"),
            vec![
                "2025-03-01 00:00",
                "2025-02-28 23:59",
                "2024-04-30 23:59",
                "2024-03-31 23:59"
            ]
        );
        let p = Policy {
            monthly: 5,
            yearly: 2,
            ..Default::default()
        };
        let k = kept(&pts, &p, "UTC");
        assert!(k.contains(&"2024-02-29 12:00".to_string()), "{k:?}");
        assert!(!k.contains(&"2024-02-28 12:00".to_string()), "{k:?}");
        // A month end in UTC is the next month in Asia/Tokyo (+09:00).
        let p = Policy {
            monthly: 1,
            ..Default::default()
        };
        let one = at(&["2024-03-31T23:59[UTC]", "2024-03-31T10:00[UTC]"]);
        assert_eq!(kept(&one, &p, "UTC"), vec!["2024-03-31 23:59"]);
        let k = kept(&one, &p, "Asia/Tokyo");
        assert_eq!(k, vec!["2024-04-01 08:59"], "newest is April in Tokyo");
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_year_boundary() {
        // 2026-12-31 (Thu) and 2027-01-03 (Sun) are both in ISO week 2026-W53.
        let pts = at(&[
            "2026-12-28T09:00[UTC]",
            "2026-12-31T09:00[UTC]",
            "2027-01-03T09:00[UTC]",
            "2027-01-04T09:00[UTC]", // Monday: 2027-W01
        ]);
        let p = Policy {
            weekly: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&pts, &p, "UTC"),
            vec!["2027-01-04 09:00", "2027-01-03 09:00"]
        );
        let tz = TimeZone::get("UTC").unwrap();
        let d = plan(&pts, &p, &tz).unwrap();
        assert_eq!(d[1].reasons, vec!["weekly 2026-W53"]);
    }

    #[test]
    fn gfs_7_4_12_over_400_days_keeps_the_expected_set() {
        let start: Zoned = "2025-10-18T03:00[Europe/Berlin]".parse().unwrap();
        let pts: Vec<_> = (0..400)
            .map(|d| {
                let z = start.checked_add(Span::new().days(d)).unwrap();
                point(&z.timestamp().to_string(), &[])
            })
            .collect();
        let p = Policy {
            daily: 7,
            weekly: 4,
            monthly: 12,
            ..Default::default()
        };
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let d = plan(&pts, &p, &tz).unwrap();
        let keep: Vec<_> = d.iter().filter(|d| d.keep).collect();
        // 7 days; weeks: the 4 newest weeks' newest points, 1 of them new (the current week's
        // is one of the 7 days), months: 12, the newest month's point is already kept.
        assert!(
            keep.len() >= 12 && keep.len() <= 7 + 4 + 12,
            "{}",
            keep.len()
        );
        // Every kept point says why; the newest is kept by several rules.
        assert!(keep.iter().all(|d| !d.reasons.is_empty()));
        assert!(d[0].reasons.iter().any(|r| r.starts_with("daily")));
        assert!(d[0].reasons.iter().any(|r| r.starts_with("monthly")));
        // Months are distinct calendar months.
        let months: std::collections::BTreeSet<_> = keep
            .iter()
            .flat_map(|d| d.reasons.iter().filter(|r| r.starts_with("monthly")))
            .collect();
        assert_eq!(months.len(), 12);
        assert_eq!(d.len(), 400);
    }

    #[test]
    fn last_within_tags_and_safety_rules() {
        let pts = vec![
            point("2026-11-01T10:00:00Z", &["pre-migration"]),
            point("2026-11-02T10:00:00Z", &["pinned"]),
            point("2026-11-10T10:00:00Z", &["pre-migration"]),
            point("2026-11-15T10:00:00Z", &["pre-migration"]),
            point("2026-11-19T10:00:00Z", &[]),
            point("2026-11-20T10:00:00Z", &[]),
            point("2026-11-21T10:00:00Z", &[]),
        ];
        let mut tagged = BTreeMap::new();
        tagged.insert("pre-migration".to_string(), 2);
        let p = Policy {
            last: 1,
            within: Some(parse_span("2d").unwrap()),
            tags: vec!["pinned".into()],
            tagged,
            ..Default::default()
        };
        let k = kept(&pts, &p, "UTC");
        assert_eq!(
            k,
            vec![
                "2026-11-21 10:00", // newest, last 1, within
                "2026-11-20 10:00", // within 2d
                "2026-11-19 10:00", // exactly 2 days before the newest: within
                "2026-11-15 10:00", // tagged pre-migration 1
                "2026-11-10 10:00", // tagged pre-migration 2
                "2026-11-02 10:00", // tag pinned
            ]
        );
        // `within` counts from the newest point, not from now: old points are not all lost.
        let tz = TimeZone::get("UTC").unwrap();
        let d = plan(&pts, &p, &tz).unwrap();
        assert_eq!(d.iter().filter(|d| !d.keep).count(), 1);
        // No rule: refused.
        assert!(plan(&pts, &Policy::default(), &tz).is_err());
        // Only an unrelated tag: the newest point is still kept.
        let p = Policy {
            tags: vec!["nothing-has-this".into()],
            ..Default::default()
        };
        let d = plan(&pts, &p, &tz).unwrap();
        assert_eq!(d.iter().filter(|d| d.keep).count(), 1);
        assert_eq!(d[0].reasons, vec!["newest"]);
        assert!(parse_span("30d").is_ok() && parse_span("P2W").is_ok());
        assert!(parse_span("soon").is_err());
    }

    #[test]
    fn policy_time_zone_tagged_and_equality() {
        let p = Policy {
            timezone: Some("Europe/Berlin".into()),
            ..Default::default()
        };
        assert_eq!(p.time_zone().unwrap().iana_name(), Some("Europe/Berlin"));
        assert!(p.validate().is_ok());
        let bad = Policy {
            timezone: Some("Mars/Olympus".into()),
            ..Default::default()
        };
        let e = bad.validate().unwrap_err();
        assert!(
            e.to_string().contains("unknown time zone \"Mars/Olympus\""),
            "{e}"
        );
        assert!(Policy::default().validate().is_ok());
        assert_eq!(
            Policy::parse_tagged("pre-migration=2").unwrap(),
            ("pre-migration".to_string(), 2)
        );
        assert!(Policy::parse_tagged("pre-migration").is_err());
        assert!(Policy::parse_tagged("x=two").is_err());
        let a = Policy {
            within: Some(parse_span("30d").unwrap()),
            ..Default::default()
        };
        let b = Policy {
            within: Some(parse_span("30 days").unwrap()),
            ..Default::default()
        };
        assert_eq!(a, b);
        assert_ne!(a, Policy::default());
    }
}
