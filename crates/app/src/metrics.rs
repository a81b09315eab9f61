//! Prometheus metrics (text exposition format 0.0.4): what `lifeboat run` serves on
//! `/metrics` and what `lifeboat metrics` prints or writes for node_exporter's textfile
//! collector. Rendered from a [`StatusReport`] (the same rules as `status` and the alerts)
//! and, in the daemon, its [`Counters`]. Names follow the Prometheus conventions: a unit
//! suffix (`_seconds`, `_bytes`), `_total` on counters only, timestamps as Unix seconds
//! (`time() - lifeboat_last_success_timestamp_seconds` is an age). `docs/METRICS.md` lists
//! every family with an example alert rule.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use lifeboat_core::RequestStats;

use crate::status::StatusReport;

/// What only a running daemon knows: failures and storage requests by app and job since it
/// started (counters restart at 0 with the process, as Prometheus expects).
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<BTreeMap<(String, String), JobCounts>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct JobCounts {
    failures: u64,
    requests: RequestStats,
}

impl Counters {
    /// Counts one ended run of `job` of `app`: whether it failed and the requests it sent.
    pub fn job_ended(&self, app: &str, job: &str, failed: bool, requests: RequestStats) {
        let mut m = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let c = m.entry((app.to_string(), job.to_string())).or_default();
        c.failures += u64::from(failed);
        c.requests += requests;
    }
}

enum Kind {
    Gauge,
    Counter,
}

/// One metric family: its samples are written together, after its HELP and TYPE.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

/// The exposition text. `counters` are the daemon's (none for `lifeboat metrics`).
pub fn render(report: &StatusReport, counters: Option<&Counters>) -> String {
    let mut fams: Vec<Family> = Vec::new();
    let mut fam = |name: &'static str, help: &'static str, kind: Kind| {
        fams.push(Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        });
        fams.len() - 1
    };
    use Kind::{Counter, Gauge};
    let taken = fam(
        "lifeboat_status_timestamp_seconds",
        "When the status these metrics show was taken.",
        Gauge,
    );
    let healthy = fam(
        "lifeboat_app_healthy",
        "1 when the app has no problem (the rules of `lifeboat status`), else 0.",
        Gauge,
    );
    let problem = fam(
        "lifeboat_problem",
        "1 for each open problem of an app, by rule and key (an alert is raised when one appears).",
        Gauge,
    );
    let up = fam(
        "lifeboat_destination_up",
        "1 when the destination (repository or replica) could be read.",
        Gauge,
    );
    let points = fam(
        "lifeboat_points",
        "Points of the app in the destination.",
        Gauge,
    );
    let newest = fam(
        "lifeboat_newest_point_timestamp_seconds",
        "When the newest point of the app in the destination was taken.",
        Gauge,
    );
    let newest_size = fam(
        "lifeboat_newest_point_size_bytes",
        "Logical size of the newest point (databases, files, secrets).",
        Gauge,
    );
    let newest_added = fam(
        "lifeboat_newest_point_added_bytes",
        "Bytes the newest point added to the repository (compressed, encrypted).",
        Gauge,
    );
    let drill_time = fam(
        "lifeboat_last_drill_timestamp_seconds",
        "When the newest drill of the app's points ran.",
        Gauge,
    );
    let drill_ok = fam(
        "lifeboat_last_drill_success",
        "1 when the newest drill passed every check, 0 when it failed.",
        Gauge,
    );
    let drill_rto = fam(
        "lifeboat_last_drill_rto_seconds",
        "Recovery time the newest drill measured (open the repository to last check).",
        Gauge,
    );
    let success = fam(
        "lifeboat_last_success_timestamp_seconds",
        "When a scheduled job (backup, copy, forget = forget and prune, drill) last succeeded.",
        Gauge,
    );
    let last_end = fam(
        "lifeboat_last_run_timestamp_seconds",
        "When a scheduled job's last run ended.",
        Gauge,
    );
    let duration = fam(
        "lifeboat_last_run_duration_seconds",
        "How long a scheduled job's last run took.",
        Gauge,
    );
    let in_row = fam(
        "lifeboat_job_consecutive_failures",
        "Failures in a row of a scheduled job (0 after a success).",
        Gauge,
    );
    let next = fam(
        "lifeboat_next_run_timestamp_seconds",
        "When a scheduled job is next due.",
        Gauge,
    );
    let runs = fam(
        "lifeboat_job_runs_total",
        "Runs of a scheduled job since the daemon's state file was created.",
        Counter,
    );
    let failures = fam(
        "lifeboat_job_failures_total",
        "Failed runs of a scheduled job since the daemon started.",
        Counter,
    );
    let requests = fam(
        "lifeboat_storage_requests_total",
        "Storage requests sent by scheduled jobs since the daemon started, by type.",
        Counter,
    );
    let lag = fam(
        "lifeboat_continuous_lag_seconds",
        "Age of the newest continuous link of a database: what a crash now would lose at most.",
        Gauge,
    );
    let deltas = fam(
        "lifeboat_continuous_deltas_total",
        "Continuous deltas written since the capture started.",
        Counter,
    );
    let stored = fam(
        "lifeboat_continuous_stored_bytes_total",
        "Bytes continuous capture stored since it started.",
        Counter,
    );
    let failing = fam(
        "lifeboat_continuous_failing",
        "1 while a database's continuous capture keeps failing.",
        Gauge,
    );
    let ts = |s: &str| {
        s.parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_millisecond() as f64 / 1000.0)
    };
    let mut push =
        |f: usize, labels: Vec<(&'static str, String)>, v: f64| fams[f].samples.push((labels, v));
    if let Some(t) = ts(&report.time) {
        push(taken, Vec::new(), t);
    }
    for a in &report.apps {
        let app = || ("app", a.app.clone());
        push(healthy, vec![app()], f64::from(u8::from(a.healthy)));
        for p in &a.problems {
            push(
                problem,
                vec![app(), ("rule", p.rule.to_string()), ("key", p.key.clone())],
                1.0,
            );
        }
        for d in &a.destinations {
            let l = || {
                vec![
                    app(),
                    ("repository", d.repository.clone()),
                    ("role", d.role.to_string()),
                ]
            };
            push(up, l(), f64::from(u8::from(d.error.is_none())));
            if d.error.is_some() {
                continue;
            }
            push(points, l(), d.points as f64);
            if let Some(n) = &d.newest {
                if let Some(t) = ts(&n.time) {
                    push(newest, l(), t);
                }
                push(newest_size, l(), n.size as f64);
                push(newest_added, l(), n.added as f64);
            }
        }
        if let Some(d) = &a.last_drill {
            if let Some(t) = ts(&d.drill.time) {
                push(drill_time, vec![app()], t);
            }
            push(drill_ok, vec![app()], f64::from(u8::from(d.drill.ok)));
            push(drill_rto, vec![app()], d.drill.seconds);
        }
        for j in &a.jobs {
            let l = || vec![app(), ("job", j.job.as_str().to_string())];
            if let Some(t) = j.last.last_success {
                push(success, l(), t.as_millisecond() as f64 / 1000.0);
            }
            if let Some(t) = j.last.last_end {
                push(last_end, l(), t.as_millisecond() as f64 / 1000.0);
            }
            if let Some(ms) = j.last.duration_ms {
                push(duration, l(), ms as f64 / 1000.0);
            }
            push(in_row, l(), f64::from(j.last.failures));
            push(next, l(), j.next.as_millisecond() as f64 / 1000.0);
            push(runs, l(), j.last.runs as f64);
        }
        for c in &a.continuous {
            let l = || vec![app(), ("database", c.database.clone())];
            if let Some(s) = c.lag_s {
                push(lag, l(), s);
            }
            push(deltas, l(), c.deltas as f64);
            push(stored, l(), c.bytes_stored as f64);
            push(failing, l(), f64::from(u8::from(c.failing.is_some())));
        }
    }
    if let Some(c) = counters {
        let m = c.inner.lock().unwrap_or_else(|p| p.into_inner());
        for ((app, job), n) in m.iter() {
            let l = || vec![("app", app.clone()), ("job", job.clone())];
            push(failures, l(), n.failures as f64);
            let r = n.requests;
            for (ty, v) in [
                ("list", r.list),
                ("get", r.get),
                ("head", r.head),
                ("put", r.put),
                ("delete", r.delete),
            ] {
                let mut labels = l();
                labels.push(("type", ty.to_string()));
                push(requests, labels, v as f64);
            }
        }
    }
    let mut out = String::new();
    for f in fams.iter().filter(|f| !f.samples.is_empty()) {
        let kind = match f.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {kind}", f.name);
        for (labels, v) in &f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape(val));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", number(*v));
        }
    }
    out
}

/// A label value as the format wants it: `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Writes `text` to `path` for node_exporter's textfile collector: whole or not at all (a
/// temp file beside it, renamed over it, so the collector never reads half a file). The file
/// is 0644: node_exporter runs as its own user, and the metrics are what it serves anyway.
pub fn write_textfile(path: &std::path::Path, text: &str) -> lifeboat_core::Result<()> {
    crate::state_dir::write_atomic_mode(path, text.as_bytes(), 0o644)
        .map_err(|e| lifeboat_core::Error::io(path.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_numbers_plain() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn counters_add_up_by_app_and_job() {
        let c = Counters::default();
        let r = RequestStats {
            get: 2,
            put: 1,
            ..RequestStats::default()
        };
        c.job_ended("chat", "backup", false, r);
        c.job_ended("chat", "backup", true, r);
        let report = StatusReport {
            time: "2026-12-02T10:00:00Z".into(),
            healthy: true,
            apps: Vec::new(),
        };
        let text = render(&report, Some(&c));
        assert!(
            text.contains("lifeboat_job_failures_total{app=\"chat\",job=\"backup\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "lifeboat_storage_requests_total{app=\"chat\",job=\"backup\",type=\"get\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE lifeboat_storage_requests_total counter\n"));
        assert!(
            text.contains("lifeboat_status_timestamp_seconds 1796205600\n"),
            "{text}"
        );
    }

    /// Review of issue 15: the textfile was written 0600 (the state files' mode), which
    /// node_exporter, running as its own user, cannot read: the collector reported an
    /// error instead of lifeboat's metrics.
    #[test]
    fn the_textfile_is_readable_by_the_collectors_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lifeboat.prom");
        write_textfile(&path, "lifeboat_app_healthy{app=\"chat\"} 1\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o044, 0o044, "mode {mode:o}");
    }
}
