//! Delivery of heartbeats and webhooks: queued, retried, never blocking the job that caused
//! them.
//!
//! A [`Notifier`] owns one thread with a small async runtime; [`Notifier::alert`] and
//! [`Notifier::heartbeat`] only queue (at most [`MAX_PENDING`] messages wait; beyond that a
//! message is dropped with a warning rather than hold memory for a dead endpoint). Each
//! message is sent on its own task: a POST with a 10 s timeout, retried on a network error,
//! a 5xx or a 429 after `[alerts] retry` (default 10 s), doubling, up to `[alerts] attempts`
//! tries (default 5); another answer (a 4xx: a wrong URL) is not retried. Redirects are not
//! followed. URLs are secrets (a token is often part of them): logs name only the host.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_core::{Error, Result};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::alerts::{AlertEvent, AlertKind, AlertsConfig, WebhookFormat};

/// Messages waiting or being sent, at most.
pub const MAX_PENDING: usize = 1000;
/// Default `[alerts] attempts`.
const DEFAULT_ATTEMPTS: u32 = 5;
/// Default `[alerts] retry`.
const DEFAULT_RETRY: Duration = Duration::from_secs(10);
/// Each request's deadline.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest heartbeat body (healthchecks.io keeps 100 KB; a summary line is enough).
const MAX_BODY: usize = 10_000;

/// One HTTP POST to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where (a secret: never logged).
    pub url: String,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// What it is, for logs (`webhook`, `heartbeat`).
    pub what: &'static str,
}

/// Sends heartbeats and webhooks in the background (see the module documentation).
pub struct Notifier {
    tx: UnboundedSender<Delivery>,
    pending: Arc<AtomicUsize>,
    webhooks: Vec<crate::alerts::Webhook>,
}

impl Notifier {
    /// Starts the delivery thread for `config`'s settings.
    pub fn start(config: &AlertsConfig) -> Result<Notifier> {
        let (tx, mut rx) = unbounded_channel::<Delivery>();
        let pending = Arc::new(AtomicUsize::new(0));
        let attempts = config.attempts.unwrap_or(DEFAULT_ATTEMPTS).max(1);
        let retry = config.retry.unwrap_or(DEFAULT_RETRY);
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("lifeboat/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::new(
                    lifeboat_core::ErrorKind::Other,
                    format!("cannot set up the HTTP client for alerts: {e}"),
                )
            })?;
        let p = Arc::clone(&pending);
        spawn_runtime_thread("notify", "alerts cannot be sent", async move {
            while let Some(d) = rx.recv().await {
                let (client, p) = (client.clone(), Arc::clone(&p));
                tokio::spawn(async move {
                    send(&client, &d, attempts, retry).await;
                    p.fetch_sub(1, Ordering::SeqCst);
                });
            }
            // The sender is gone: let the tasks in flight finish (flush waits).
            while p.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })?;
        Ok(Notifier {
            tx,
            pending,
            webhooks: config.webhooks.clone(),
        })
    }

    /// Queues `d`; never blocks.
    pub fn send(&self, d: Delivery) {
        if self.pending.fetch_add(1, Ordering::SeqCst) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                "{} dropped: {MAX_PENDING} messages already wait (is the endpoint down?)",
                d.what
            );
            return;
        }
        if self.tx.send(d).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("alert thread gone: a message was dropped");
        }
    }

    /// Queues `event` for every webhook.
    pub fn alert(&self, event: &AlertEvent) {
        for w in &self.webhooks {
            self.send(webhook_delivery(&w.url, w.format, event));
        }
    }

    /// Queues a heartbeat: `url` after a success, `url/fail` after a failure, `message` (one
    /// line, cut to 10 kB) as body.
    pub fn heartbeat(&self, url: &str, ok: bool, message: &str) {
        self.send(heartbeat_delivery(url, ok, message));
    }

    /// Waits until nothing is pending, at most `within`; whether everything went.
    pub fn flush(&self, within: Duration) -> bool {
        let end = Instant::now() + within;
        while self.pending.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Messages waiting or in flight.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Runs `task` on a new thread named `name` with its own current-thread tokio runtime (the
/// notifier's deliveries, the daemon's HTTP endpoint): nothing async leaks into the callers,
/// which stay plain threads. `what` starts the error logged if no runtime can be made.
pub fn spawn_runtime_thread(
    name: &str,
    what: &'static str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(task),
                Err(e) => tracing::error!("{what}: no async runtime: {e}"),
            }
        })
        .map(|_| ())
        .map_err(|e| Error::io(format!("start the {name} thread"), e))
}

/// The POST of a heartbeat (see [`Notifier::heartbeat`]). A query string stays after the
/// `/fail`.
pub fn heartbeat_delivery(url: &str, ok: bool, message: &str) -> Delivery {
    let url = if ok {
        url.to_string()
    } else {
        let (base, query) = match url.find('?') {
            Some(i) => url.split_at(i),
            None => (url, ""),
        };
        format!("{}/fail{query}", base.trim_end_matches('/'))
    };
    let mut body = message.as_bytes().to_vec();
    if body.len() > MAX_BODY {
        let mut cut = MAX_BODY;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
    }
    Delivery {
        url,
        content_type: "text/plain; charset=utf-8",
        headers: Vec::new(),
        body,
        what: "heartbeat",
    }
}

/// The POST of `event` to a webhook in `format`.
pub fn webhook_delivery(url: &str, format: WebhookFormat, event: &AlertEvent) -> Delivery {
    let (mark, title) = match event.event {
        AlertKind::Alert => ("ALERT", format!("lifeboat: {} needs attention", event.app)),
        AlertKind::Recovered => ("RECOVERED", format!("lifeboat: {} recovered", event.app)),
    };
    let text = format!(
        "[{mark}] {} on {}: {} ({}, since {})",
        event.app, event.host, event.message, event.rule, event.since
    );
    let json = |v: serde_json::Value| serde_json::to_vec(&v).expect("json");
    let (content_type, headers, body) = match format {
        WebhookFormat::Json => (
            "application/json",
            Vec::new(),
            serde_json::to_vec(event).expect("event serialises"),
        ),
        WebhookFormat::Slack => (
            "application/json",
            Vec::new(),
            json(serde_json::json!({ "text": inert(&text, true) })),
        ),
        WebhookFormat::Discord => (
            "application/json",
            Vec::new(),
            // Discord refuses content over 2000 characters. No mention pings anyone, whatever
            // the text says.
            json(serde_json::json!({
                "content": inert(&text, false).chars().take(2000).collect::<String>(),
                "allowed_mentions": { "parse": [] },
            })),
        ),
        WebhookFormat::Ntfy => {
            let (priority, tags) = match event.event {
                AlertKind::Alert => ("high", "warning"),
                AlertKind::Recovered => ("default", "white_check_mark"),
            };
            (
                "text/plain; charset=utf-8",
                vec![
                    // Header values must be visible ASCII: app names can be anything.
                    (
                        "Title",
                        title.replace(|c: char| !c.is_ascii_graphic() && c != ' ', "?"),
                    ),
                    ("Priority", priority.into()),
                    ("Tags", tags.into()),
                ],
                text.into_bytes(),
            )
        }
    };
    Delivery {
        url: url.to_string(),
        content_type,
        headers,
        body,
        what: "webhook",
    }
}

/// `text` as a chat message that pings and links no one: messages quote table names, paths
/// and drill failures from the repository, which any key holder writes (a table named
/// `<!channel>` or `@everyone` must not page a whole workspace). `@` gets a zero-width space
/// after it (`@channel`, `@here`, `@all` of Mattermost and Rocket.Chat, Discord's
/// `@everyone`); for Slack's markup `&`, `<` and `>` are escaped as its documentation asks.
fn inert(text: &str, slack: bool) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '@' => s.push_str("@\u{200b}"),
            '&' if slack => s.push_str("&amp;"),
            '<' if slack => s.push_str("&lt;"),
            '>' if slack => s.push_str("&gt;"),
            c => s.push(c),
        }
    }
    s
}

/// Only the host of `url`, for logs.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "an invalid URL".into())
}

async fn send(client: &reqwest::Client, d: &Delivery, attempts: u32, retry: Duration) {
    let host = host_of(&d.url);
    let mut wait = retry;
    for attempt in 1..=attempts {
        let mut req = client
            .post(&d.url)
            .header(reqwest::header::CONTENT_TYPE, d.content_type)
            .body(d.body.clone());
        for (k, v) in &d.headers {
            req = req.header(*k, v);
        }
        let (again, why) = match req.send().await {
            Ok(r) if r.status().is_success() => {
                tracing::debug!("{} to {host} delivered", d.what);
                return;
            }
            Ok(r) => {
                let s = r.status();
                (
                    s.is_server_error() || s == reqwest::StatusCode::TOO_MANY_REQUESTS,
                    format!("answered {s}"),
                )
            }
            // Without the URL: reqwest's errors print it.
            Err(e) => (true, kind_of(&e).to_string()),
        };
        if !again || attempt == attempts {
            tracing::warn!(
                "{} to {host} not delivered after {attempt} tries: {why}{}",
                d.what,
                if again {
                    ""
                } else {
                    " (not retried: check the URL)"
                }
            );
            return;
        }
        tracing::debug!("{} to {host}: {why}; retrying in {wait:?}", d.what);
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2);
    }
}

fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_request() {
        "the request failed"
    } else {
        "the connection failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: AlertKind) -> AlertEvent {
        AlertEvent {
            event: kind,
            app: "chat".into(),
            rule: "rows_drop".into(),
            key: "rows:/srv/chat.db:messages".into(),
            message: "table messages fell from 500 to 0 rows".into(),
            since: "2026-12-02T10:00:00Z".into(),
            time: "2026-12-02T10:00:00Z".into(),
            host: "h1".into(),
        }
    }

    #[test]
    fn heartbeat_failures_go_to_fail_before_the_query() {
        assert_eq!(
            heartbeat_delivery("https://hc-ping.com/u", false, "x").url,
            "https://hc-ping.com/u/fail"
        );
        assert_eq!(
            heartbeat_delivery("https://k/api/push/abc/?status=up", false, "x").url,
            "https://k/api/push/abc/fail?status=up"
        );
        let ok = heartbeat_delivery("https://hc-ping.com/u", true, &"é".repeat(6000));
        assert_eq!(ok.url, "https://hc-ping.com/u");
        assert!(ok.body.len() <= MAX_BODY && std::str::from_utf8(&ok.body).is_ok());
    }

    #[test]
    fn each_format_carries_the_message() {
        let e = event(AlertKind::Alert);
        let j: AlertEvent =
            serde_json::from_slice(&webhook_delivery("u", WebhookFormat::Json, &e).body).unwrap();
        assert_eq!(j, e);
        for (f, field) in [
            (WebhookFormat::Slack, "text"),
            (WebhookFormat::Discord, "content"),
        ] {
            let v: serde_json::Value =
                serde_json::from_slice(&webhook_delivery("u", f, &e).body).unwrap();
            let text = v[field].as_str().unwrap();
            assert!(
                text.starts_with("[ALERT] chat on h1: table messages fell"),
                "{text}"
            );
        }
        let n = webhook_delivery("u", WebhookFormat::Ntfy, &event(AlertKind::Recovered));
        assert!(String::from_utf8(n.body)
            .unwrap()
            .starts_with("[RECOVERED] chat"));
        assert!(n.headers.contains(&("Tags", "white_check_mark".into())));
        assert_eq!(
            host_of("https://hooks.slack.com/services/T/B/secret"),
            "hooks.slack.com"
        );
    }

    /// Review of issue 15: a table name is the repository's word (any key holder writes
    /// manifests), and the Slack and Discord texts quoted it as is: `<!channel>` pinged a
    /// whole Slack workspace, `@everyone` a whole Discord server.
    #[test]
    fn chat_formats_ping_no_one_whatever_the_repository_says() {
        let mut e = event(AlertKind::Alert);
        e.message = "table <!channel> @everyone <https://evil|click> & co fell".into();
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_delivery("u", WebhookFormat::Slack, &e).body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(
            text.contains("&lt;!channel&gt;") && text.contains("&amp; co"),
            "{text}"
        );
        assert!(!text.contains("@everyone"), "{text}");
        let v: serde_json::Value =
            serde_json::from_slice(&webhook_delivery("u", WebhookFormat::Discord, &e).body)
                .unwrap();
        assert_eq!(v["allowed_mentions"]["parse"], serde_json::json!([]));
        assert!(!v["content"].as_str().unwrap().contains("@everyone"));
    }
}
