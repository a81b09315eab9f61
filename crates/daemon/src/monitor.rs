//! The daemon's watcher: looks at every app's status ([`lifeboat_app::status()`]) after each
//! job and every `[alerts] every` (default 15 min), announces new and cleared problems to the
//! webhooks ([`AlertState`], [`Notifier`]), keeps the report `/metrics` shows, and writes the
//! continuous captures' progress for `lifeboat status` once a minute while there are any.
//!
//! It runs on its own thread so a slow store never delays the scheduler: jobs only queue a
//! "look" ([`Monitor::look`]), which coalesces with one already waiting.
use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeboat_app::{
    announce, status, write_streams, Config, ContinuousHandle, Counters, Notifier, PasswordSource,
    Setup, StatusReport, Streams, DEFAULT_ALERT_EVERY,
};

/// What the scheduler, the watcher and the HTTP endpoint share.
#[derive(Default)]
pub(crate) struct Shared {
    /// Jobs' failures and requests.
    pub counters: Counters,
    /// The newest status report.
    pub report: Mutex<Option<StatusReport>>,
    /// The continuous captures' handles, by app.
    pub captures: Mutex<HashMap<String, Arc<ContinuousHandle>>>,
}

impl Shared {
    /// The captures' progress by app and database.
    pub fn streams(&self) -> Streams {
        let h = self.captures.lock().unwrap_or_else(|p| p.into_inner());
        h.iter().map(|(app, h)| (app.clone(), h.status())).collect()
    }
}

enum Msg {
    Look,
    Config(Arc<Config>),
    Stop,
}

/// The watcher thread.
pub(crate) struct Monitor {
    tx: Sender<Msg>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The shortest time between two looks (unless `[alerts] every` is shorter).
const MIN_GAP: Duration = Duration::from_secs(30);

/// How often the captures' progress is written for `lifeboat status`.
const STREAMS_EVERY: Duration = Duration::from_secs(60);

impl Monitor {
    /// Starts the watcher; its first look is right away.
    pub fn start(
        config: Arc<Config>,
        password: PasswordSource,
        shared: Arc<Shared>,
        notifier: Arc<Notifier>,
    ) -> lifeboat_core::Result<Monitor> {
        let (tx, rx) = channel();
        let _ = tx.send(Msg::Look);
        let thread = std::thread::Builder::new()
            .name("monitor".into())
            .spawn(move || {
                Watcher {
                    setup: Setup::with_config((*config).clone(), None, password.clone()),
                    config,
                    password,
                    shared,
                    notifier,
                }
                .run(&rx)
            })
            .map_err(|e| lifeboat_core::Error::io("start the monitor thread", e))?;
        Ok(Monitor {
            tx,
            thread: Some(thread),
        })
    }

    /// Asks for a look at the status soon (after a job ended).
    pub fn look(&self) {
        let _ = self.tx.send(Msg::Look);
    }

    /// Hands over a reloaded config.
    pub fn reload(&self, config: Arc<Config>) {
        let _ = self.tx.send(Msg::Config(config));
    }

    /// Takes a last look (a job that just ended is announced), then stops.
    pub fn stop(mut self) {
        let _ = self.tx.send(Msg::Look);
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Watcher {
    config: Arc<Config>,
    password: PasswordSource,
    /// One setup for the daemon's life (until a reload): each destination is unlocked once.
    setup: Setup,
    shared: Arc<Shared>,
    notifier: Arc<Notifier>,
}

impl Watcher {
    fn run(mut self, rx: &Receiver<Msg>) {
        let mut next_look = Instant::now();
        let mut last_look: Option<Instant> = None;
        let mut next_streams = Instant::now();
        loop {
            let every = self.config.alerts.every.unwrap_or(DEFAULT_ALERT_EVERY);
            let has_captures = !self
                .shared
                .captures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            let mut wake = next_look;
            if has_captures {
                wake = wake.min(next_streams);
            }
            let msg = rx.recv_timeout(wake.saturating_duration_since(Instant::now()));
            let mut look = Instant::now() >= next_look;
            match msg {
                Ok(Msg::Look) => look = true,
                Ok(Msg::Config(c)) => {
                    self.set_config(c);
                    look = true;
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    // Whatever was queued for the webhooks gets a few seconds to go out.
                    self.notifier.flush(Duration::from_secs(5));
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Coalesce: many jobs ending at once make one look.
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Look => look = true,
                    Msg::Config(c) => {
                        self.set_config(c);
                        look = true;
                    }
                    Msg::Stop => {
                        if look {
                            self.look();
                        }
                        self.notifier.flush(Duration::from_secs(5));
                        return;
                    }
                }
            }
            if has_captures && Instant::now() >= next_streams {
                if let Err(e) = write_streams(&self.config, &self.shared.streams()) {
                    tracing::debug!("cannot write the continuous progress: {e}");
                }
                next_streams = Instant::now() + STREAMS_EVERY;
            }
            // At most one look per `MIN_GAP` (or `every`, if shorter): jobs every few seconds
            // (busy hosts, the tests' schedules) made a look, with its listings on every
            // destination, after each one.
            let now = Instant::now();
            let earliest = last_look
                .map(|t| t + every.min(MIN_GAP))
                .filter(|e| now < *e);
            if let (true, Some(e)) = (look, earliest) {
                next_look = if next_look <= now {
                    e
                } else {
                    next_look.min(e)
                };
                look = false;
            }
            if look {
                // A panic in a rule (a manifest no one foresaw) must not end the watcher:
                // the alerts would go silent and `/metrics` show the last report for ever.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.look())).is_err() {
                    tracing::error!("the status look failed (a bug): alerts wait for the next");
                }
                last_look = Some(Instant::now());
                next_look = Instant::now() + every;
            }
        }
    }

    /// A reloaded config: a new setup (its repositories may have changed).
    fn set_config(&mut self, c: Arc<Config>) {
        self.setup = Setup::with_config((*c).clone(), None, self.password.clone());
        self.config = c;
    }

    fn look(&self) {
        let report = match status(&self.setup, &self.config, None, &self.shared.streams()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("cannot take the status (alerts wait for the next look): {e}");
                return;
            }
        };
        if let Err(e) = announce(&self.config, &report, &self.notifier) {
            tracing::error!(
                "cannot write the alert state: {e} (alerts may repeat after a restart)"
            );
        }
        *self.shared.report.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }
}
