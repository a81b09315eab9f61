//! The scheduler loop (see the crate documentation).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use lifeboat_app::{
    continuous_of, heartbeat_url, jobs, one_line, run_capture, run_job, Config, ContinuousHandle,
    Job, JobOutcome, JobsState, Notifier, Outcome, PasswordSource, DEFAULT_RETRY,
};
use lifeboat_core::{Error, ErrorKind, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::monitor::{Monitor, Shared};

/// What `lifeboat run` is given.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file (read again on SIGHUP).
    pub config: PathBuf,
    /// Password sources given on the command line, before the config's.
    pub password: PasswordSource,
    /// Where to serve `/metrics`, over `[daemon] listen` (`off`: nowhere).
    pub listen: Option<String>,
}

/// Default `[daemon] max_jobs`.
const DEFAULT_MAX_JOBS: usize = 2;
/// Default `[daemon] grace`.
const DEFAULT_GRACE: Duration = Duration::from_secs(300);
/// How long jobs asked to stop get to return before the daemon exits anyway.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest sleep: a wall-clock jump (NTP, a suspended VM) is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(300);

enum Event {
    Signal(i32),
    Done {
        key: String,
        result: Result<JobOutcome>,
        ended: Timestamp,
    },
}

/// Runs the daemon until SIGTERM or SIGINT. Fails only at start (a config that does not load,
/// no state file location, signals that cannot be caught); after that every failure is a
/// job's, logged and retried.
pub fn run(opts: RunOptions) -> Result<()> {
    let config = Config::load(&opts.config)?;
    let job_list = jobs(&config)?;
    let state_path = JobsState::path_for(&config)?;
    let listen = crate::http::settings(&config, opts.listen.as_deref())?;
    let _lock = lock_state(&state_path)?;
    let (tx, rx) = channel();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::io("catch SIGTERM, SIGINT and SIGHUP", e))?;
    let handle = signals.handle();
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for s in signals.forever() {
                    if tx.send(Event::Signal(s)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("start the signal thread", e))?;
    }
    let state = JobsState::load(&state_path);
    let shared = Arc::new(Shared::default());
    let notifier = Arc::new(Notifier::start(&config.alerts)?);
    if let Some((addr, token)) = listen {
        if let Err(e) = crate::http::serve(addr, token, Arc::clone(&shared)) {
            // Another process may hold the port (a local user squatting it would serve
            // Prometheus whatever it likes): said loudly, to the webhooks too, but backups
            // matter more than metrics, so the daemon goes on.
            tracing::error!("{e}: /metrics is not served; backups go on");
            notifier.alert(&lifeboat_app::AlertEvent {
                event: lifeboat_app::AlertKind::Alert,
                app: "lifeboat run".into(),
                rule: "metrics_unavailable".into(),
                key: "listen".into(),
                message: format!(
                    "{e}: /metrics is not served (another process holds the address: whatever answers there is not lifeboat)"
                ),
                since: Timestamp::now().to_string(),
                time: Timestamp::now().to_string(),
                host: lifeboat_core::hostname(),
            });
        }
    }
    let config = Arc::new(config);
    let monitor = Monitor::start(
        Arc::clone(&config),
        opts.password.clone(),
        Arc::clone(&shared),
        Arc::clone(&notifier),
    )?;
    let mut d = Daemon {
        opts,
        config,
        jobs: job_list,
        state,
        state_path,
        running: HashMap::new(),
        tx,
        stopping: None,
        captures: HashMap::new(),
        shared,
        notifier,
        monitor,
    };
    d.sync_captures();
    tracing::info!(
        jobs = d.jobs.len(),
        apps = d.config.app.len(),
        state = %d.state_path.display(),
        "lifeboat run started: {}",
        d.describe_jobs()
    );
    if d.jobs.is_empty() && d.captures.is_empty() {
        tracing::warn!("no app has a schedule: nothing will run until one is added (schedule = \"hourly\") and the config reloaded (SIGHUP)");
    }
    let res = d.run_loop(&rx);
    handle.close();
    // A last look announces what the last jobs changed; queued messages get a few seconds.
    d.monitor.stop();
    res
}

/// Takes `STATE.lock` beside the state file for as long as the daemon runs: a second daemon
/// on the same state file would run every job twice and rewrite the state file through the
/// same temp name. The lock file holds the holder's pid, for the error of the next one.
fn lock_state(state: &std::path::Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut name = state.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir.display(), e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| Error::io(path.display(), e))?;
    // SAFETY: flock on a descriptor we own; released when it is closed (at exit).
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "another `lifeboat run` (pid {}) uses the state file {}",
                holder.trim(),
                state.display()
            ),
        )
        .with_hint("run one daemon per config; stop the other one first, or give this config its own [daemon] state_file"));
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

/// The stop sequence after SIGTERM.
enum Stopping {
    /// Running jobs may finish until then.
    Grace(Instant),
    /// They were asked to stop; the daemon exits at this time whatever they do.
    Cancelled(Instant),
}

struct Daemon {
    opts: RunOptions,
    config: Arc<Config>,
    jobs: Vec<Job>,
    state: JobsState,
    state_path: PathBuf,
    /// Running jobs: key -> app.
    running: HashMap<String, String>,
    tx: Sender<Event>,
    stopping: Option<Stopping>,
    /// Continuous captures by app: the handle its database threads share, and the threads
    /// by database.
    captures: HashMap<String, Capture>,
    /// What the watcher and `/metrics` see.
    shared: Arc<Shared>,
    /// Heartbeats and webhooks.
    notifier: Arc<Notifier>,
    /// Looks at the status after each job and announces problems.
    monitor: Monitor,
}

/// One app's continuous capture: a thread per database.
struct Capture {
    handle: Arc<ContinuousHandle>,
    threads: HashMap<PathBuf, std::thread::JoinHandle<()>>,
    interval: Duration,
}

impl Daemon {
    fn run_loop(&mut self, rx: &Receiver<Event>) -> Result<()> {
        loop {
            let now = Timestamp::now();
            if self.stopping.is_none() {
                self.start_due(now);
            } else if self.running.is_empty() {
                self.join_captures();
                tracing::info!("lifeboat run stopped");
                return Ok(());
            }
            match rx.recv_timeout(self.sleep(now)) {
                Ok(Event::Signal(SIGHUP)) => self.reload(),
                Ok(Event::Signal(_)) => self.stop(),
                Ok(Event::Done { key, result, ended }) => self.finished(&key, result, ended),
                Err(RecvTimeoutError::Timeout) => self.check_stop_deadline()?,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::new(
                        ErrorKind::Other,
                        "the daemon's event channel closed",
                    ))
                }
            }
        }
    }

    fn retry(&self) -> Duration {
        self.config.daemon.retry.unwrap_or(DEFAULT_RETRY)
    }

    fn describe_jobs(&self) -> String {
        self.jobs
            .iter()
            .map(|j| format!("{} {} ({})", j.app, j.kind, j.schedule))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// How long to sleep: until the next job is due, or the stop deadline.
    fn sleep(&self, now: Timestamp) -> Duration {
        let until = |t: Timestamp| Duration::try_from(t.duration_since(now)).unwrap_or_default();
        match &self.stopping {
            Some(Stopping::Grace(d)) | Some(Stopping::Cancelled(d)) => {
                d.saturating_duration_since(Instant::now())
            }
            // Every slot taken: nothing can start before a job ends (an event).
            None if self.running.len() >= self.max_jobs() => MAX_SLEEP,
            None => self
                .jobs
                .iter()
                // A job whose app is busy waits for the end of that run (an event).
                .filter(|j| !self.running.values().any(|a| *a == j.app))
                .map(|j| until(j.due(self.state.jobs.get(&j.key()), self.retry(), now)))
                .min()
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP),
        }
    }

    fn max_jobs(&self) -> usize {
        self.config.daemon.max_jobs.unwrap_or(DEFAULT_MAX_JOBS)
    }

    /// Starts every due job whose app is idle, earliest due first, up to `max_jobs`.
    fn start_due(&mut self, now: Timestamp) {
        let max = self.max_jobs();
        for i in due_order(&self.jobs, &self.state, self.retry(), now) {
            if self.running.len() >= max {
                break;
            }
            let job = self.jobs[i].clone();
            if self.running.values().any(|a| *a == job.app) {
                continue;
            }
            self.spawn(job, now);
        }
    }

    fn spawn(&mut self, job: Job, now: Timestamp) {
        let key = job.key();
        self.state.started(&key, now);
        self.save();
        tracing::info!(app = %job.app, job = %job.kind, "job started");
        let (config, password, tx) = (
            Arc::clone(&self.config),
            self.opts.password.clone(),
            self.tx.clone(),
        );
        let k = key.clone();
        let app = job.app.clone();
        let started = std::thread::Builder::new()
            .name(format!("job {key}"))
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_job(&config, &password, &job)
                }))
                .unwrap_or_else(|p| {
                    let what = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Error::new(
                        ErrorKind::Other,
                        format!("the job panicked: {what} (a bug: please report it)"),
                    ))
                });
                let _ = tx.send(Event::Done {
                    key: k,
                    result,
                    ended: Timestamp::now(),
                });
            });
        match started {
            Ok(_) => {
                self.running.insert(key, app);
            }
            Err(e) => {
                tracing::error!(%key, "cannot start a thread for the job: {e}");
                self.state.ended(
                    &key,
                    now,
                    Err((Outcome::Failed, format!("cannot start a thread: {e}"))),
                );
                self.save();
            }
        }
    }

    fn finished(&mut self, key: &str, result: Result<JobOutcome>, ended: Timestamp) {
        self.running.remove(key);
        let app = key_app(key);
        let kind = key.rsplit('/').next().unwrap_or_default();
        if let (Ok(o), Some(c)) = (&result, self.captures.get(&app)) {
            if o.point.is_some() {
                // A scheduled backup of the app: the next continuous link starts from it.
                c.handle.new_point();
            }
        }
        let requests = result.as_ref().map(|o| o.requests).unwrap_or_default();
        let result = match result {
            Ok(o) => {
                let ms = self
                    .state
                    .jobs
                    .get(key)
                    .and_then(|r| r.last_start)
                    .map(|s| ended.duration_since(s).as_millis().max(0) as u64);
                match &o.point {
                    Some(point) => tracing::info!(
                        app = %app,
                        job = %kind,
                        point = %point,
                        duration_ms = ms.unwrap_or(0),
                        requests = o.requests.total(),
                        "job ok: {}",
                        one_line(&o.summary)
                    ),
                    None => tracing::info!(
                        app = %app,
                        job = %kind,
                        duration_ms = ms.unwrap_or(0),
                        requests = o.requests.total(),
                        "job ok: {}",
                        one_line(&o.summary)
                    ),
                }
                Ok((o.summary, o.point))
            }
            Err(e) => {
                let interrupted = e.kind() == ErrorKind::Interrupted;
                let outcome = if interrupted {
                    Outcome::Interrupted
                } else {
                    Outcome::Failed
                };
                let msg = one_line(&match e.hint() {
                    Some(h) => format!("{e} ({h})"),
                    None => e.to_string(),
                });
                if interrupted {
                    tracing::warn!(app = %app, job = %kind, "job interrupted: {msg}");
                } else {
                    tracing::error!(app = %app, job = %kind, "job failed: {msg}");
                }
                Err((outcome, msg))
            }
        };
        let failed = matches!(&result, Err((Outcome::Failed, _)));
        if !matches!(&result, Err((Outcome::Interrupted, _))) {
            if let Some(url) = heartbeat_url(&self.config, &app) {
                let line = match &result {
                    Ok((summary, _)) => format!("{app} {kind}: {}", one_line(summary)),
                    Err((_, msg)) => format!("{app} {kind} failed: {msg}"),
                };
                self.notifier.heartbeat(url, !failed, &line);
            }
        }
        self.shared.counters.job_ended(&app, kind, failed, requests);
        self.state.ended(key, ended, result);
        self.save();
        self.monitor.look();
        if let Some(j) = self.jobs.iter().find(|j| j.key() == key) {
            if self.stopping.is_none() {
                let next = j.due(self.state.jobs.get(key), self.retry(), Timestamp::now());
                tracing::debug!(%key, %next, "next run");
            }
        }
    }

    fn save(&self) {
        if let Err(e) = self.state.save(&self.state_path) {
            tracing::error!(
                "cannot write the state file: {e} (missed runs may run again after a restart)"
            );
        }
    }

    fn reload(&mut self) {
        let loaded = Config::load(&self.opts.config).and_then(|c| jobs(&c).map(|j| (c, j)));
        match loaded {
            Ok((config, job_list)) => {
                self.config = Arc::new(config);
                self.jobs = job_list;
                self.sync_captures();
                self.monitor.reload(Arc::clone(&self.config));
                match JobsState::path_for(&self.config) {
                    Ok(p) if p != self.state_path => {
                        tracing::warn!(
                            "[daemon] state_file changed to {}; it takes effect at the next start",
                            p.display()
                        );
                    }
                    _ => {}
                }
                tracing::info!(
                    jobs = self.jobs.len(),
                    "config reloaded: {}",
                    self.describe_jobs()
                );
            }
            Err(e) => tracing::error!(
                "config not reloaded, the running one stays in force: {}{}",
                one_line(&e.to_string()),
                e.hint()
                    .map(|h| format!(" ({})", one_line(h)))
                    .unwrap_or_default()
            ),
        }
    }

    fn stop(&mut self) {
        for c in self.captures.values() {
            c.handle.stop();
        }
        match self.stopping {
            None if self.running.is_empty() => {
                self.stopping = Some(Stopping::Grace(Instant::now()));
            }
            None => {
                let grace = self.config.daemon.grace.unwrap_or(DEFAULT_GRACE);
                tracing::info!(
                    running = self.running.len(),
                    "stopping: no new jobs; running jobs get {} s to finish (a second signal stops them now)",
                    grace.as_secs()
                );
                self.stopping = Some(Stopping::Grace(Instant::now() + grace));
                if grace.is_zero() {
                    self.cancel();
                }
            }
            Some(Stopping::Grace(_)) => self.cancel(),
            Some(Stopping::Cancelled(_)) => {}
        }
    }

    fn cancel(&mut self) {
        tracing::warn!(
            running = self.running.len(),
            "asking running jobs to stop at their next safe point (nothing partial is made visible)"
        );
        lifeboat_core::cancel::request_stop();
        self.stopping = Some(Stopping::Cancelled(Instant::now() + STOP_TIMEOUT));
    }

    fn check_stop_deadline(&mut self) -> Result<()> {
        match self.stopping {
            Some(Stopping::Grace(d)) if Instant::now() >= d && !self.running.is_empty() => {
                self.cancel();
            }
            Some(Stopping::Cancelled(d)) if Instant::now() >= d => {
                let stuck: Vec<&String> = self.running.keys().collect();
                tracing::error!(
                    "jobs did not stop within {} s, exiting anyway: {stuck:?} (no point of theirs is visible)",
                    STOP_TIMEOUT.as_secs()
                );
                for k in self.running.keys().cloned().collect::<Vec<_>>() {
                    self.state.ended(
                        &k,
                        Timestamp::now(),
                        Err((
                            Outcome::Interrupted,
                            "the daemon exited while it ran".into(),
                        )),
                    );
                }
                self.save();
                self.running.clear();
            }
            _ => {}
        }
        Ok(())
    }
}

impl Daemon {
    /// Starts a capture thread for each database of each app with `continuous` on, and stops
    /// those no longer configured (or whose interval changed, which then start again).
    fn sync_captures(&mut self) {
        let mut wanted: HashMap<String, (Vec<PathBuf>, Duration)> = HashMap::new();
        for app in self.config.app.keys() {
            if let Some(c) = continuous_of(&self.config, app) {
                wanted.insert(app.clone(), c);
            }
        }
        let stale: Vec<String> = self
            .captures
            .iter()
            .filter(|(app, c)| {
                wanted.get(*app).is_none_or(|(dbs, i)| {
                    *i != c.interval
                        || dbs.len() != c.threads.len()
                        || dbs.iter().any(|d| !c.threads.contains_key(d))
                })
            })
            .map(|(a, _)| a.clone())
            .collect();
        for app in stale {
            if let Some(c) = self.captures.remove(&app) {
                tracing::info!(app = %app, "continuous capture stops (config changed)");
                c.handle.stop();
                for (_, t) in c.threads {
                    let _ = t.join();
                }
            }
        }
        for (app, (dbs, interval)) in wanted {
            if self.captures.contains_key(&app) {
                continue;
            }
            let handle = Arc::new(ContinuousHandle::default());
            let mut threads = HashMap::new();
            for db in dbs {
                let (config, password, h, a, d) = (
                    Arc::clone(&self.config),
                    self.opts.password.clone(),
                    Arc::clone(&handle),
                    app.clone(),
                    db.clone(),
                );
                let retry = self.retry();
                let spawned = std::thread::Builder::new()
                    .name(format!("continuous {app}"))
                    .spawn(move || capture_thread(&config, &password, &a, &d, interval, &h, retry));
                match spawned {
                    Ok(t) => {
                        threads.insert(db, t);
                    }
                    Err(e) => tracing::error!(app = %app, "cannot start continuous capture: {e}"),
                }
            }
            self.captures.insert(
                app,
                Capture {
                    handle,
                    threads,
                    interval,
                },
            );
        }
        *self
            .shared
            .captures
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = self
            .captures
            .iter()
            .map(|(a, c)| (a.clone(), Arc::clone(&c.handle)))
            .collect();
    }

    /// Stops every capture and waits for its threads (each ends within one interval).
    fn join_captures(&mut self) {
        for c in self.captures.values() {
            c.handle.stop();
        }
        for (_, c) in self.captures.drain() {
            for (_, t) in c.threads {
                let _ = t.join();
            }
        }
    }
}

/// Runs one database's capture until stopped; a capture that fails (the database missing,
/// the repository unreachable at start) is logged and started again after `retry`.
fn capture_thread(
    config: &Config,
    password: &PasswordSource,
    app: &str,
    db: &std::path::Path,
    interval: Duration,
    handle: &ContinuousHandle,
    retry: Duration,
) {
    while !handle.stopping() {
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_capture(config, password, app, db, interval, handle)
        }));
        let msg = match res {
            Ok(Ok(())) => break,
            Ok(Err(e)) => one_line(&match e.hint() {
                Some(h) => format!("{e} ({h})"),
                None => e.to_string(),
            }),
            Err(_) => "the capture thread panicked".to_string(),
        };
        tracing::error!(app = %app, db = %db.display(), "continuous capture failed: {msg}; trying again in {} s", retry.as_secs());
        let until = Instant::now() + retry;
        while Instant::now() < until && !handle.stopping() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The app of a job key `app/kind` (the kind is the part after the last `/`, so a quoted app
/// name with a `/` in it still splits right).
fn key_app(key: &str) -> String {
    key.rsplit_once('/').map_or(key, |(a, _)| a).to_string()
}

/// The indexes of the jobs due at `now`, earliest due first, and a job that never ran before
/// all others: `Job::due` says "now" for it, which sorted it behind every overdue job, so a
/// backup that takes longer than its period (always overdue when its app becomes idle) kept
/// its app's first forget or copy from ever starting. It goes first (it has waited since the
/// daemon took it); once it ran, its slots order it like any other job.
fn due_order(jobs: &[Job], state: &JobsState, retry: Duration, now: Timestamp) -> Vec<usize> {
    let mut due: Vec<(Timestamp, usize)> = jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| {
            let record = state.jobs.get(&j.key());
            let t = j.due(record, retry, now);
            let never_ran = record.is_none_or(|r| r.last_start.is_none());
            (t <= now).then_some((if never_ran { Timestamp::MIN } else { t }, i))
        })
        .collect();
    due.sort();
    due.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_app::{JobKind, JobRecord, Schedule};

    fn job(kind: JobKind, schedule: &str) -> Job {
        Job {
            app: "chat".into(),
            kind,
            schedule: Schedule::parse(schedule).unwrap(),
            random_delay: Duration::ZERO,
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// A backup that takes longer than its period is always overdue when its app becomes
    /// idle. A job of the same app that never ran ("due now") must still get its turn: it
    /// has waited since the daemon started, longer than any slot of the backup.
    #[test]
    fn a_job_never_run_is_not_starved_by_an_always_overdue_job_of_its_app() {
        let now: Timestamp = "2026-12-01T10:00:10Z".parse().unwrap();
        let jobs = [
            job(JobKind::Backup, "every 2s"),
            job(JobKind::Forget, "every 3s"),
        ];
        let mut state = JobsState::default();
        state.jobs.insert(
            "chat/backup".into(),
            JobRecord {
                last_start: Some("2026-12-01T10:00:05Z".parse().unwrap()),
                last_end: Some("2026-12-01T10:00:10Z".parse().unwrap()),
                ..JobRecord::default()
            },
        );
        assert_eq!(due_order(&jobs, &state, DEFAULT_RETRY, now), [1, 0]);
        // Once it ran, the earliest slot goes first.
        state.jobs.insert(
            "chat/forget".into(),
            JobRecord {
                last_start: Some("2026-12-01T10:00:01Z".parse().unwrap()),
                last_end: Some("2026-12-01T10:00:02Z".parse().unwrap()),
                ..JobRecord::default()
            },
        );
        assert_eq!(due_order(&jobs, &state, DEFAULT_RETRY, now), [1, 0]);
        state.jobs.get_mut("chat/forget").unwrap().last_start =
            Some("2026-12-01T10:00:09Z".parse().unwrap());
        assert_eq!(due_order(&jobs, &state, DEFAULT_RETRY, now), [0]);
    }

    fn three_apps(extra: &str) -> Config {
        let mut text = String::from("[repository.r]\npath = \"/var/backups/r\"\n");
        for a in ["a", "b", "c"] {
            text.push_str(&format!(
                "[app.{a}]\nsqlite = [\"/srv/{a}.db\"]\nschedule = \"hourly\"\n"
            ));
        }
        text.push_str(extra);
        Config::parse(std::path::Path::new("/etc/lifeboat/lifeboat.toml"), text).unwrap()
    }

    /// Review: three apps due at once with max_jobs = 2. Two start; the third is due and
    /// idle, so `sleep` returns 0 for it although `start_due` cannot start it until a job
    /// ends (an event): the loop spins at 100% CPU for as long as the two jobs run.
    #[test]
    fn a_due_job_held_back_by_max_jobs_does_not_make_the_loop_spin() {
        let config = three_apps("");
        let (tx, _rx) = channel();
        let shared = Arc::new(Shared::default());
        let notifier = Arc::new(Notifier::start(&config.alerts).unwrap());
        let monitor = Monitor::start(
            Arc::new(config.clone()),
            PasswordSource::default(),
            Arc::clone(&shared),
            Arc::clone(&notifier),
        )
        .unwrap();
        let mut d = Daemon {
            opts: RunOptions {
                config: "/etc/lifeboat/lifeboat.toml".into(),
                password: PasswordSource::default(),
                listen: None,
            },
            jobs: jobs(&config).unwrap(),
            config: Arc::new(config),
            state: JobsState::default(),
            state_path: "/nonexistent/daemon-state.json".into(),
            running: HashMap::new(),
            tx,
            stopping: None,
            captures: HashMap::new(),
            shared,
            notifier,
            monitor,
        };
        d.running.insert("a/backup".into(), "a".into());
        d.running.insert("b/backup".into(), "b".into());
        let now = Timestamp::now();
        // c/backup never ran: due now, but max_jobs (2) is reached.
        assert_eq!(due_order(&d.jobs, &d.state, d.retry(), now), [0, 1, 2]);
        let slept = d.sleep(now);
        assert!(
            slept >= Duration::from_secs(1),
            "the loop would wake again after {slept:?} and find nothing it may start"
        );
    }

    /// Review: nothing stops two `lifeboat run` on one config and state file: both run every
    /// job (two backups per slot, two prunes refusing each other) and both rewrite the state
    /// file through the same `.daemon-state.json.tmp`. The second must refuse to start.
    #[test]
    fn a_second_daemon_on_the_same_state_file_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("lifeboat.toml");
        std::fs::write(
            &cfg,
            format!(
                "[repository.r]\npath = \"{}/repo\"\n[app.a]\nsqlite = [\"/srv/a.db\"]\n[daemon]\nstate_file = \"{}/state.json\"\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .unwrap();
        let opts = RunOptions {
            config: cfg,
            password: PasswordSource::default(),
            listen: Some("off".into()),
        };
        let first = opts.clone();
        std::thread::spawn(move || run(first));
        std::thread::sleep(Duration::from_millis(500));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run(opts).is_err());
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Ok(true),
            "a second daemon on the same state file started (or ran on)"
        );
    }
}
