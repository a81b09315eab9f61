//! When scheduled jobs run: a schedule from `lifeboat.toml` and its slots.
//!
//! ```toml
//! [app.chat]
//! schedule = "hourly"            # backups: hourly, daily, weekly, monthly,
//!                                # "every 15m" (also s, h, d), or cron "0 3 * * *"
//! copy_schedule = "daily"        # copy to the app's copy_to replicas
//! forget_schedule = "daily"      # forget by [app.chat.keep], then prune
//! random_delay = "5m"            # each run starts up to this much after its slot
//! timezone = "Europe/Berlin"     # of the cron fields and named schedules (default: system)
//! ```
//!
//! Named schedules run at the start of their period in the time zone: `hourly` at minute 0,
//! `daily` at 00:00, `weekly` on Monday 00:00, `monthly` on the 1st at 00:00. `every D` runs
//! at whole multiples of `D` since the Unix epoch (so `every 15m` is :00, :15, :30, :45 of
//! every hour in UTC, and a restart does not shift it). A cron expression has the usual five
//! fields (minute, hour, day of month, month, day of week; `0` and `7` are Sunday, names
//! `MON`..`SUN` and `JAN`..`DEC` work), or six with seconds first; restricting both day of
//! month and day of week is refused (cron ORs them, which is rarely what was meant).
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// A parsed schedule; displays as it was written.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Every(Duration),
    Cron(Box<jiff_cron::Schedule>),
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// The shortest `every` interval: anything shorter would keep a repository busy with
/// nothing but points (and is more likely a typo for minutes).
pub const MIN_EVERY: Duration = Duration::from_secs(1);

impl Schedule {
    /// Parses `hourly`, `daily`, `weekly`, `monthly`, `every DURATION` or a cron expression.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let text = s.trim().to_string();
        let cron = |expr: &str| -> Result<Kind, String> {
            let sched: jiff_cron::Schedule = expr
                .parse()
                .map_err(|e| format!("{s:?} is not a valid cron expression ({e})"))?;
            Ok(Kind::Cron(Box::new(sched)))
        };
        let kind = match text.as_str() {
            "hourly" | "@hourly" => cron("0 0 * * * *")?,
            "daily" | "@daily" => cron("0 0 0 * * *")?,
            "weekly" | "@weekly" => cron("0 0 0 * * MON")?,
            "monthly" | "@monthly" => cron("0 0 0 1 * *")?,
            t if t.starts_with("every ") => {
                let d = t["every ".len()..].trim();
                // Whole days too (`every 2d`): jiff's durations have no days, which vary in
                // length in a time zone; here a day is 24 h, as the epoch-aligned slots are.
                let days = d
                    .strip_suffix("days")
                    .or_else(|| d.strip_suffix("day"))
                    .or_else(|| d.strip_suffix('d'))
                    .and_then(|n| n.trim().parse::<i64>().ok());
                let sd: jiff::SignedDuration = match days {
                    Some(n) => n
                        .checked_mul(24)
                        .and_then(jiff::SignedDuration::try_from_hours)
                        .ok_or_else(|| format!("{s:?} is too long"))?,
                    None => d.parse().map_err(|e| {
                        format!("{s:?}: {d:?} is not a duration ({e}); write e.g. \"every 15m\"")
                    })?,
                };
                let d = Duration::try_from(sd).map_err(|_| format!("{s:?} is negative"))?;
                if d < MIN_EVERY {
                    return Err(format!("{s:?} is shorter than one second"));
                }
                Kind::Every(d)
            }
            t => {
                let fields: Vec<&str> = t.split_whitespace().collect();
                let (sec, rest) = match fields.len() {
                    5 => ("0", &fields[..]),
                    6 => (fields[0], &fields[1..]),
                    _ => {
                        return Err(format!(
                            "{s:?} is not a schedule: write hourly, daily, weekly, monthly, \"every 15m\", or a cron expression such as \"0 3 * * *\""
                        ))
                    }
                };
                let (dom, dow) = (rest[2], rest[4]);
                if !matches!(dom, "*" | "?") && !matches!(dow, "*" | "?") {
                    return Err(format!(
                        "{s:?} restricts both the day of the month and the day of the week; restrict one and leave the other *"
                    ));
                }
                let dow = unix_days_of_week(dow).ok_or_else(|| {
                    format!("{s:?}: day of week {dow:?} is not understood (use 0-7 or MON-SUN, ranges and lists)")
                })?;
                cron(&format!(
                    "{sec} {} {} {} {} {dow}",
                    rest[0], rest[1], rest[2], rest[3]
                ))?
            }
        };
        let sched = Schedule { text, kind };
        // A cron expression that matches no date (February 30th) would run once at start and
        // never again.
        if sched.next_after(Timestamp::now(), &TimeZone::UTC).is_none() {
            return Err(format!("{s:?} never fires (no date matches it)"));
        }
        Ok(sched)
    }

    /// The first slot strictly after `t`, in time zone `tz` (None: a cron expression that
    /// never fires again).
    pub fn next_after(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(d) => {
                let step = i128::try_from(d.as_nanos()).ok()?.max(1);
                let now = t.as_nanosecond();
                let next = (now.div_euclid(step) + 1) * step;
                Timestamp::from_nanosecond(next).ok()
            }
            Kind::Cron(c) => c
                .after(Zoned::new(t, tz.clone()))
                .next()
                .map(|z| z.timestamp()),
        }
    }

    /// The schedule's structure as written, for front ends that translate it into another
    /// scheduler's syntax (systemd timers, crontab lines).
    pub fn form(&self) -> Form<'_> {
        match self.text.as_str() {
            "hourly" | "@hourly" => return Form::Hourly,
            "daily" | "@daily" => return Form::Daily,
            "weekly" | "@weekly" => return Form::Weekly,
            "monthly" | "@monthly" => return Form::Monthly,
            _ => {}
        }
        if let Kind::Every(d) = self.kind {
            return Form::Every(d);
        }
        // `parse` accepted five or six fields.
        let f: Vec<&str> = self.text.split_whitespace().collect();
        let (second, r) = if f.len() == 6 {
            (f[0], &f[1..])
        } else {
            ("0", &f[..])
        };
        Form::Cron(CronFields {
            second,
            minute: r[0],
            hour: r[1],
            day_of_month: r[2],
            month: r[3],
            day_of_week: r[4],
        })
    }

    /// The period of an `every` schedule.
    pub fn every(&self) -> Option<Duration> {
        match self.kind {
            Kind::Every(d) => Some(d),
            Kind::Cron(_) => None,
        }
    }
}

/// What kind of schedule a [`Schedule`] is ([`Schedule::form`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form<'a> {
    /// `hourly`: minute 0 of every hour.
    Hourly,
    /// `daily`: 00:00.
    Daily,
    /// `weekly`: Monday 00:00.
    Weekly,
    /// `monthly`: the 1st at 00:00.
    Monthly,
    /// `every D`: whole multiples of `D` since the Unix epoch.
    Every(Duration),
    /// A cron expression's fields as written (day of week in Unix numbering: 0 and 7 are
    /// Sunday, or names).
    Cron(CronFields<'a>),
}

/// The fields of a cron expression as written; `second` is `"0"` for a five-field one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CronFields<'a> {
    pub second: &'a str,
    pub minute: &'a str,
    pub hour: &'a str,
    pub day_of_month: &'a str,
    pub month: &'a str,
    pub day_of_week: &'a str,
}

impl<'de> serde::Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Schedule::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Schedule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A Unix day-of-week field (0-7, Sunday both 0 and 7) in the crate's numbering (1-7, Sunday
/// 1), as names, which both read the same way. `*`, `?` and names pass through.
fn unix_days_of_week(field: &str) -> Option<String> {
    const NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];
    let num = |p: &str| -> Option<usize> { p.parse::<usize>().ok().filter(|&n| n < NAMES.len()) };
    let is_num = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit());
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) if is_num(st) => (r, Some(st)),
            Some(_) => return None,
            None => (part, None),
        };
        let bounds = match range.split_once('-') {
            Some((a, b)) => (a, b),
            None => (range, range),
        };
        if is_num(bounds.0) && is_num(bounds.1) {
            // Numbers are listed out as names: a range ending at 7 (`5-7`, Friday to Sunday)
            // has no counterpart in the crate's 1-7 numbering, where Sunday is first.
            let (a, b) = (num(bounds.0)?, num(bounds.1)?);
            if a > b {
                return None;
            }
            let (mut b, st) = (b, step.map_or(Some(1), |st| st.parse::<usize>().ok())?);
            if st == 0 {
                return None;
            }
            if range == bounds.0 && step.is_some() {
                b = 7; // `N/S`: from N to the end
            }
            out.extend((a..=b).step_by(st).map(|n| NAMES[n].to_string()));
        } else if bounds
            .0
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '*' || c == '?')
            && bounds
                .1
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == '*' || c == '?')
        {
            // `*`, `?`, names and name ranges read the same in both numberings.
            out.push(part.to_ascii_uppercase());
        } else {
            return None;
        }
    }
    out.dedup();
    Some(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(sched: &str, after: &str, tz: &str) -> String {
        let tz = TimeZone::get(tz).unwrap();
        let s = Schedule::parse(sched).unwrap();
        s.next_after(at(after), &tz).unwrap().to_string()
    }

    #[test]
    fn named_schedules_start_their_period_in_the_time_zone() {
        assert_eq!(
            next("hourly", "2026-12-01T10:20:00Z", "UTC"),
            "2026-12-01T11:00:00Z"
        );
        assert_eq!(
            next("daily", "2026-12-01T10:20:00Z", "UTC"),
            "2026-12-02T00:00:00Z"
        );
        // 2026-12-01 is a Tuesday: the next Monday is the 7th.
        assert_eq!(
            next("weekly", "2026-12-01T10:20:00Z", "UTC"),
            "2026-12-07T00:00:00Z"
        );
        assert_eq!(
            next("monthly", "2026-12-01T10:20:00Z", "UTC"),
            "2027-01-01T00:00:00Z"
        );
        // Midnight in Berlin (UTC+1 in December).
        assert_eq!(
            next("daily", "2026-12-01T10:20:00Z", "Europe/Berlin"),
            "2026-12-01T23:00:00Z"
        );
    }

    #[test]
    fn every_is_aligned_to_the_epoch_and_strictly_after() {
        assert_eq!(
            next("every 15m", "2026-12-01T10:20:00Z", "UTC"),
            "2026-12-01T10:30:00Z"
        );
        assert_eq!(
            next("every 15m", "2026-12-01T10:30:00Z", "UTC"),
            "2026-12-01T10:45:00Z"
        );
        assert_eq!(
            next("every 2s", "2026-12-01T10:30:01Z", "UTC"),
            "2026-12-01T10:30:02Z"
        );
        assert!(Schedule::parse("every 0s").is_err());
        assert!(Schedule::parse("every soon").is_err());
    }

    #[test]
    fn cron_days_of_week_read_as_unix_cron() {
        // 1 is Monday in cron(5), Sunday in the underlying crate: Tuesday the 1st -> Monday 7th.
        assert_eq!(
            next("0 3 * * 1", "2026-12-01T10:00:00Z", "UTC"),
            "2026-12-07T03:00:00Z"
        );
        assert_eq!(
            next("0 3 * * 0", "2026-12-01T10:00:00Z", "UTC"),
            "2026-12-06T03:00:00Z"
        );
        assert_eq!(
            next("0 3 * * 7", "2026-12-01T10:00:00Z", "UTC"),
            "2026-12-06T03:00:00Z"
        );
        assert_eq!(
            next("0 3 * * 1-5", "2026-12-04T10:00:00Z", "UTC"),
            "2026-12-07T03:00:00Z"
        );
        assert_eq!(
            next("30 2 * * sat", "2026-12-01T10:00:00Z", "UTC"),
            "2026-12-05T02:30:00Z"
        );
        assert_eq!(
            next("*/10 * * * *", "2026-12-01T10:01:00Z", "UTC"),
            "2026-12-01T10:10:00Z"
        );
        // Six fields: seconds first.
        assert_eq!(
            next("*/5 * * * * *", "2026-12-01T10:00:01Z", "UTC"),
            "2026-12-01T10:00:05Z"
        );
    }

    #[test]
    fn ambiguous_or_malformed_expressions_are_refused_with_the_reason() {
        let e = Schedule::parse("0 3 1 * 1").unwrap_err();
        assert!(
            e.contains("both the day of the month and the day of the week"),
            "{e}"
        );
        let e = Schedule::parse("hourli").unwrap_err();
        assert!(e.contains("not a schedule"), "{e}");
        assert!(Schedule::parse("0 25 * * *").is_err());
        assert!(Schedule::parse("0 3 * * 8").is_err());
    }

    #[test]
    fn form_exposes_the_structure_as_written() {
        assert_eq!(Schedule::parse("@daily").unwrap().form(), Form::Daily);
        assert_eq!(
            Schedule::parse("every 15m").unwrap().form(),
            Form::Every(Duration::from_secs(900))
        );
        let s = Schedule::parse("0 3 * * 1-5").unwrap();
        let Form::Cron(c) = s.form() else {
            panic!("not cron")
        };
        assert_eq!(
            (c.second, c.minute, c.hour, c.day_of_week),
            ("0", "0", "3", "1-5")
        );
        let s = Schedule::parse("*/5 1 2 * * *").unwrap();
        let Form::Cron(c) = s.form() else {
            panic!("not cron")
        };
        assert_eq!((c.second, c.minute, c.hour), ("*/5", "1", "2"));
    }

    #[test]
    fn a_daily_cron_across_a_dst_change_runs_once_a_day() {
        // Europe/Berlin leaves DST on 2026-10-25 at 03:00 local: 02:30 exists twice.
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let s = Schedule::parse("30 2 * * *").unwrap();
        let mut t = at("2026-10-24T12:00:00Z");
        let mut days = Vec::new();
        for _ in 0..3 {
            t = s.next_after(t, &tz).unwrap();
            days.push(t.to_zoned(tz.clone()).date().to_string());
        }
        assert_eq!(days, ["2026-10-25", "2026-10-26", "2026-10-27"], "{days:?}");
    }

    /// Review: `every N d` multiplies into jiff's `from_hours`, which panics on overflow. A
    /// typo in lifeboat.toml then panics `Config::load`: SIGHUP kills the daemon (the reload
    /// runs on its main thread) instead of keeping the running config, and every command dies.
    #[test]
    fn a_huge_every_is_an_error_not_a_panic() {
        let r = std::panic::catch_unwind(|| Schedule::parse("every 1000000000000000d"));
        assert!(matches!(r, Ok(Err(_))), "panicked or accepted");
    }

    /// Review: `0 3 30 2 *` (February 30th) loads; the job runs once when the daemon starts
    /// and never again, and nothing but `lifeboat schedule`'s far-future time says so.
    #[test]
    fn a_cron_expression_that_never_fires_is_refused() {
        assert!(Schedule::parse("0 3 30 2 *").is_err());
    }
}
