//! Alerts: which of `status`'s problems are new and which cleared since the last look, so
//! each one is announced once when it appears and once more (a recovery message) when it is
//! gone, and the `[alerts]` settings that decide what counts as a problem.
//!
//! The problems themselves are `status`'s ([`crate::status()`]): the same rules make the
//! exit code of `lifeboat status`, the `lifeboat_problem` metric and these alerts, so the
//! three never disagree. Each problem has a key stable across evaluations (`stale`,
//! `rows:/srv/chat.db:messages`, `job:backup`); [`AlertState::update`] compares the keys
//! with the open ones and returns the [`AlertEvent`]s to deliver ([`crate::Notifier`]).
//!
//! The open alerts are kept in `alerts-state.json` beside the daemon's state file (written
//! atomically), so a restart neither announces an open problem again nor forgets to announce
//! its recovery.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use lifeboat_core::Result;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::state_dir::{create_dir, write_atomic};
use crate::status::StatusReport;

/// `[alerts]`: where alerts go and the rules' defaults. Every rule is on by default with the
/// backup guides' thresholds; `[app.NAME.alerts]` overrides the rules for one app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Pinged (HTTP POST, the job's one-line summary as body) after each successful scheduled
    /// job, and `URL/fail` after a failed one: healthchecks.io, Uptime Kuma's push monitors
    /// and the like then alert when the pings stop. `[app.NAME.alerts] heartbeat` overrides
    /// it for one app. The URL is a secret (anyone with it can ping): it is never logged.
    pub heartbeat: Option<String>,
    /// Webhooks told of every alert and recovery (`[[alerts.webhook]]`).
    #[serde(default, rename = "webhook")]
    pub webhooks: Vec<Webhook>,
    /// Tries per message before it is dropped with a warning (default 5).
    pub attempts: Option<u32>,
    /// Delay before the second try; it doubles with each try (default 10 s).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub retry: Option<Duration>,
    /// How late a scheduled job may be before its point (or drill) counts as missing: added
    /// to two slots of the schedule and the app's `random_delay` (default 15 min).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub grace: Option<Duration>,
    /// How often `lifeboat run` looks for problems besides after each job (default 15 min):
    /// a stalled job or an overdue drill is noticed within this. Each look lists the points of
    /// every destination (one listing each; manifests are cached).
    #[serde(default, deserialize_with = "crate::hooks::de_duration")]
    pub every: Option<Duration>,
    /// The rules' defaults for every app.
    #[serde(flatten)]
    pub rules: RuleSettings,
}

/// The anomaly rules, each optional (absent: the `[alerts]` value, else the default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSettings {
    /// The newest point is older than two slots of the backup schedule (default on).
    pub stale: Option<bool>,
    /// A backup whose size is below this percentage of the average of the points before it
    /// (up to 9) alerts (default 50, Campfire's guide; 0 turns it off).
    pub size_drop: Option<u8>,
    /// A table whose row count fell by more than this percentage between the two newest
    /// points alerts (default 50; 0 turns it off): a delete-all bug or an intrusion.
    pub rows_drop: Option<u8>,
    /// ... when it had at least this many rows (default 100: small tables come and go).
    pub rows_min: Option<u64>,
    /// A secret whose content differs between the two newest points alerts (default on).
    pub secret_changed: Option<bool>,
    /// The newest drill failed, or a scheduled drill is overdue (default on).
    pub drill: Option<bool>,
}

/// `[app.NAME.alerts]`: one app's rules and heartbeat.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppAlerts {
    /// This app's heartbeat URL (instead of `[alerts] heartbeat`).
    pub heartbeat: Option<String>,
    /// This app's rules.
    #[serde(flatten)]
    pub rules: RuleSettings,
}

/// One webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where the message is POSTed. A secret (Slack's and Discord's carry a token): never
    /// logged, only its host.
    pub url: String,
    /// The body's shape (default `json`).
    #[serde(default)]
    pub format: WebhookFormat,
}

/// The body of a webhook's POST.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// [`AlertEvent`] as JSON.
    #[default]
    Json,
    /// `{"text": ...}` (Slack incoming webhooks, Mattermost, Rocket.Chat).
    Slack,
    /// `{"content": ...}` (Discord webhooks).
    Discord,
    /// The message as plain text with `Title`, `Priority` and `Tags` headers (ntfy topics).
    Ntfy,
}

/// The rules as they apply to one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// See [`RuleSettings::stale`].
    pub stale: bool,
    /// Percent; 0 is off.
    pub size_drop: u8,
    /// Percent; 0 is off.
    pub rows_drop: u8,
    /// Rows.
    pub rows_min: u64,
    /// See [`RuleSettings::secret_changed`].
    pub secret_changed: bool,
    /// See [`RuleSettings::drill`].
    pub drill: bool,
}

impl Rules {
    /// The rules of `app`: its `[app.NAME.alerts]`, else `[alerts]`, else the defaults.
    pub fn of(config: &Config, app: &str) -> Rules {
        let g = &config.alerts.rules;
        let a = config.app.get(app).map(|a| &a.alerts.rules);
        macro_rules! pick {
            ($f:ident, $d:expr) => {
                a.and_then(|a| a.$f).or(g.$f).unwrap_or($d)
            };
        }
        Rules {
            stale: pick!(stale, true),
            size_drop: pick!(size_drop, 50).min(100),
            rows_drop: pick!(rows_drop, 50).min(100),
            rows_min: pick!(rows_min, 100),
            secret_changed: pick!(secret_changed, true),
            drill: pick!(drill, true),
        }
    }
}

/// The heartbeat URL of `app`, if any.
pub fn heartbeat_url<'c>(config: &'c Config, app: &str) -> Option<&'c str> {
    config
        .app
        .get(app)
        .and_then(|a| a.alerts.heartbeat.as_deref())
        .or(config.alerts.heartbeat.as_deref())
        .filter(|u| !u.is_empty())
}

/// Default [`AlertsConfig::grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);

/// Compares `report` with the alerts announced before (the state file beside the daemon's,
/// [`AlertState::path_beside`]), queues a message for each new and each cleared problem on
/// `notifier`, and saves the state. What `lifeboat run` does after each look and
/// `lifeboat status --notify` does once. Returns the messages queued.
pub fn announce(
    config: &Config,
    report: &StatusReport,
    notifier: &crate::notify::Notifier,
) -> Result<Vec<AlertEvent>> {
    let path = AlertState::path_beside(&crate::job_state::JobsState::path_for(config)?);
    let mut state = AlertState::load(&path);
    state.forget_apps(|app| !config.app.contains_key(app));
    let events = state.update(report, Timestamp::now());
    for e in &events {
        match e.event {
            AlertKind::Alert => {
                tracing::warn!(app = %e.app, rule = %e.rule, "alert: {}", e.message)
            }
            AlertKind::Recovered => {
                tracing::info!(app = %e.app, rule = %e.rule, "recovered: {}", e.message)
            }
        }
        notifier.alert(e);
    }
    state.save(&path)?;
    Ok(events)
}

/// Default [`AlertsConfig::every`].
pub const DEFAULT_EVERY: Duration = Duration::from_secs(15 * 60);

/// Whether an alert opened or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    /// A problem appeared.
    Alert,
    /// A problem announced before is gone.
    Recovered,
}

/// One message to deliver: the JSON body of `format = "json"` webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `alert` or `recovered`.
    pub event: AlertKind,
    /// The app.
    pub app: String,
    /// The rule (`stale`, `size_drop`, `rows_drop`, `secret_changed`, `drill_failed`,
    /// `drill_overdue`, `job_failed`, `unreadable`, `replica_behind`, `no_point`).
    pub rule: String,
    /// The problem's key within the app (stable while the problem lasts).
    pub key: String,
    /// What is wrong (for `recovered`: what was).
    pub message: String,
    /// When the problem was first seen (RFC 3339).
    pub since: String,
    /// When this message was made (RFC 3339).
    pub time: String,
    /// The host that saw it.
    pub host: String,
}

/// An open alert, as kept in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Open {
    /// The app and the problem's key (files written before they were kept: from the map's
    /// `app/key`, which is ambiguous when the app's name holds a `/`).
    #[serde(default)]
    app: String,
    #[serde(default)]
    key: String,
    rule: String,
    message: String,
    since: String,
}

impl Open {
    /// Its app and key; `k` is its key in the map (`app/key`), for files that lack them.
    fn app_key<'a>(&'a self, k: &'a str) -> (&'a str, &'a str) {
        if self.app.is_empty() {
            k.split_once('/').unwrap_or((k, ""))
        } else {
            (&self.app, &self.key)
        }
    }
}

/// The alerts announced and not yet recovered, by `app/key`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    version: u32,
    #[serde(default)]
    open: BTreeMap<String, Open>,
}

/// Largest alert state file read.
const MAX_STATE: u64 = 4 << 20;

impl AlertState {
    /// `alerts-state.json` beside `daemon_state` (the daemon's state file).
    pub fn path_beside(daemon_state: &Path) -> PathBuf {
        daemon_state.with_file_name("alerts-state.json")
    }

    /// Reads the file; one that is missing or cannot be read starts empty (every current
    /// problem is then announced once more, which costs a duplicate, never a missed alert).
    pub fn load(path: &Path) -> AlertState {
        let read = || -> std::io::Result<Vec<u8>> {
            use std::io::Read;
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)?;
            let mut b = Vec::new();
            f.take(MAX_STATE).read_to_end(&mut b)?;
            Ok(b)
        };
        match read() {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(
                    "alert state {} cannot be read ({e}): open problems will be announced again",
                    path.display()
                );
                AlertState::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AlertState::default(),
            Err(e) => {
                tracing::warn!(
                    "alert state {}: {e}: open problems will be announced again",
                    path.display()
                );
                AlertState::default()
            }
        }
    }

    /// Writes the file atomically (0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(d) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir(d).map_err(|e| lifeboat_core::Error::io(d.display(), e))?;
        }
        let mut s = self.clone();
        s.version = 1;
        let bytes = serde_json::to_vec_pretty(&s).expect("alert state serialises");
        write_atomic(path, &bytes).map_err(|e| lifeboat_core::Error::io(path.display(), e))
    }

    /// Compares `report`'s problems with the open alerts: a new problem opens an alert, a
    /// gone one closes it; returns the messages to deliver, alerts first. Only the apps in
    /// the report are judged: the alerts of the others (`status --app X --notify`) stay open
    /// as they are ([`announce`] closes those of apps removed from the config).
    pub fn update(&mut self, report: &StatusReport, now: Timestamp) -> Vec<AlertEvent> {
        let host = lifeboat_core::hostname();
        let time = now.to_string();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for a in &report.apps {
            for p in &a.problems {
                let k = format!("{}/{}", a.app, p.key);
                seen.insert(k.clone());
                if let Some(o) = self.open.get_mut(&k) {
                    // Still open: announced already. Keep the newest wording for the recovery.
                    o.message = p.message.clone();
                    continue;
                }
                self.open.insert(
                    k,
                    Open {
                        app: a.app.clone(),
                        key: p.key.clone(),
                        rule: p.rule.to_string(),
                        message: p.message.clone(),
                        since: time.clone(),
                    },
                );
                out.push(AlertEvent {
                    event: AlertKind::Alert,
                    app: a.app.clone(),
                    rule: p.rule.to_string(),
                    key: p.key.clone(),
                    message: p.message.clone(),
                    since: time.clone(),
                    time: time.clone(),
                    host: host.clone(),
                });
            }
        }
        let apps: std::collections::HashSet<&str> =
            report.apps.iter().map(|a| a.app.as_str()).collect();
        let gone: Vec<String> = self
            .open
            .iter()
            .filter(|(k, o)| !seen.contains(*k) && apps.contains(o.app_key(k).0))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            let o = self.open.remove(&k).expect("listed above");
            let (app, key) = o.app_key(&k);
            let (app, key) = (app.to_string(), key.to_string());
            out.push(AlertEvent {
                event: AlertKind::Recovered,
                app,
                rule: o.rule,
                key,
                message: o.message,
                since: o.since,
                time: time.clone(),
                host: host.clone(),
            });
        }
        out
    }

    /// Closes the alerts of the apps `gone` says are gone (removed from the config), without
    /// a message.
    pub fn forget_apps(&mut self, gone: impl Fn(&str) -> bool) {
        self.open.retain(|k, o| !gone(o.app_key(k).0));
    }

    /// Keys (`app/key`) of the open alerts.
    pub fn open_keys(&self) -> impl Iterator<Item = &str> {
        self.open.keys().map(|k| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{AppStatus, Problem};

    fn report(problems: &[(&'static str, &str)]) -> StatusReport {
        StatusReport {
            time: String::new(),
            healthy: problems.is_empty(),
            apps: vec![AppStatus {
                app: "chat".into(),
                healthy: problems.is_empty(),
                problems: problems
                    .iter()
                    .map(|(rule, key)| Problem {
                        rule,
                        key: key.to_string(),
                        message: format!("{key} is wrong"),
                    })
                    .collect(),
                destinations: Vec::new(),
                last_drill: None,
                jobs: Vec::new(),
                continuous: Vec::new(),
            }],
        }
    }

    #[test]
    fn a_problem_is_announced_once_and_its_recovery_once() {
        let mut s = AlertState::default();
        let now = Timestamp::now();
        let e = s.update(&report(&[("stale", "stale")]), now);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].event, e[0].key.as_str()), (AlertKind::Alert, "stale"));
        assert!(s.update(&report(&[("stale", "stale")]), now).is_empty());
        let e = s.update(
            &report(&[("stale", "stale"), ("rows_drop", "rows:/db:messages")]),
            now,
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].rule, "rows_drop");
        let e = s.update(&report(&[("rows_drop", "rows:/db:messages")]), now);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].event, AlertKind::Recovered);
        assert_eq!(e[0].message, "stale is wrong");
        assert!(s
            .update(&report(&[("rows_drop", "rows:/db:messages")]), now)
            .is_empty());
    }

    #[test]
    fn the_state_survives_a_restart_and_a_removed_app_closes_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = AlertState::path_beside(&dir.path().join("daemon-state.json"));
        let mut s = AlertState::default();
        s.update(&report(&[("stale", "stale")]), Timestamp::now());
        s.save(&path).unwrap();
        let mut again = AlertState::load(&path);
        assert!(again
            .update(&report(&[("stale", "stale")]), Timestamp::now())
            .is_empty());
        let mut empty = report(&[]);
        empty.apps.clear();
        assert!(again.update(&empty, Timestamp::now()).is_empty());
        again.forget_apps(|app| app == "chat");
        assert_eq!(again.open_keys().count(), 0);
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(AlertState::load(&path), AlertState::default());
    }

    fn named(app: &str, problems: &[(&'static str, &str)]) -> AppStatus {
        let mut a = report(problems).apps.remove(0);
        a.app = app.into();
        a
    }

    /// Review of issue 15: `status --app wiki --notify` judged only wiki, and every other
    /// app's open alert was dropped as if the app had left the config: its recovery was
    /// never sent, and the next full look announced it again.
    #[test]
    fn a_report_of_one_app_leaves_the_other_apps_alerts_open() {
        let now = Timestamp::now();
        let mut s = AlertState::default();
        let both = |chat: &[(&'static str, &str)]| StatusReport {
            apps: vec![named("chat", chat), named("wiki", &[])],
            ..report(&[])
        };
        assert_eq!(s.update(&both(&[("stale", "stale")]), now).len(), 1);
        let only_wiki = StatusReport {
            apps: vec![named("wiki", &[])],
            ..report(&[])
        };
        assert!(s.update(&only_wiki, now).is_empty());
        assert!(s.update(&both(&[("stale", "stale")]), now).is_empty());
        let e = s.update(&both(&[]), now);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].event, e[0].app.as_str()),
            (AlertKind::Recovered, "chat")
        );
    }

    /// Review of issue 15: the open alerts were keyed `app/key` and split at the first `/`
    /// to recover, so the recovery of app `team/chat` went to app `team` (key
    /// `chat/stale`), or nowhere when there was no app `team`.
    #[test]
    fn an_app_whose_name_holds_a_slash_recovers_under_its_own_name() {
        let now = Timestamp::now();
        for others in [vec![], vec![named("team", &[])]] {
            let mut s = AlertState::default();
            let with = |p: &[(&'static str, &str)]| StatusReport {
                apps: [vec![named("team/chat", p)], others.clone()].concat(),
                ..report(&[])
            };
            assert_eq!(s.update(&with(&[("stale", "stale")]), now).len(), 1);
            let e = s.update(&with(&[]), now);
            assert_eq!(e.len(), 1, "{e:?}");
            assert_eq!(
                (e[0].event, e[0].app.as_str(), e[0].key.as_str()),
                (AlertKind::Recovered, "team/chat", "stale")
            );
        }
    }
}
