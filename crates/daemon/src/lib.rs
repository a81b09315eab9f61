//! `lifeboat run`: the long-running foreground process that protects apps unattended.
//!
//! It is a scheduler and nothing else. What jobs exist, when each is due and how one runs are
//! the app layer's ([`lifeboat_app::jobs`], [`lifeboat_app::Job::due`],
//! [`lifeboat_app::run_job`]): a scheduled backup is the same operation as `lifeboat backup`.
//! This crate decides *when*: it sleeps until the next job is due (no wake-ups in between but
//! a safety one every five minutes, so an idle daemon costs no CPU and sends no request),
//! starts due jobs on their own threads (one job per app at a time, at most
//! `[daemon] max_jobs` at once), records each start and end in the state file
//! ([`lifeboat_app::JobsState`]) so a restart neither repeats nor forgets a run, and reacts to
//! signals:
//!
//! - SIGHUP reloads `lifeboat.toml`; a config that does not load (or whose schedules do not
//!   parse) is logged and the running one is kept.
//! - SIGTERM or SIGINT: no new job starts; running jobs get `[daemon] grace` (default 5 min) to
//!   finish; then they are asked to stop ([`lifeboat_core::cancel`]) and return at their next
//!   safe point (a backup before its point is written: nothing partial is ever visible); a
//!   second SIGTERM/SIGINT skips the grace. The process then exits 0.
//!
//! One line is logged when a job starts and one when it ends (app, job, point, sizes,
//! duration, storage requests), as text or, with `--log-json`, JSON. A failed job is retried
//! with a doubling delay (`[daemon] retry`, default 1 min, at most 1 h, never later than its
//! next slot) and never stops the daemon; a panicking job is a failed job.
#![deny(missing_docs)]

mod daemon;
mod http;
mod monitor;

pub use daemon::{run, RunOptions};
