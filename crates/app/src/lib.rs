//! lifeboat's app layer: the engine every front end shares (the CLI, the `run` daemon, the
//! web dashboard). It owns what an operator's setup means and the operations an operator
//! runs; a front end only parses its input, asks its questions, shows progress and prints.
//!
//! # Overview
//!
//! - [`Config`] is `lifeboat.toml` (repositories and apps; errors name the file, the line and
//!   the key; an app's `[keep]` table is core's retention [`Policy`](lifeboat_core::Policy));
//!   [`Location`] turns a path or URL into a `Storage`; [`PasswordSource`] finds the
//!   repository password.
//! - [`Setup`] is one invocation's settings (config file, repository override, password
//!   sources), resolved lazily into repositories. Every operation starts from one.
//! - Operations, one module each, take a plain request and return a serializable report:
//!   [`backup()`] ([`BackupRequest`] -> [`BackupReport`]); [`restore_plan`]
//!   ([`RestoreRequest`] -> [`RestorePlan`], whose [`RestorePlan::replaced`] a front end
//!   confirms, then [`RestorePlan::run`] -> [`RestoreReport`]: in place, with the app's
//!   [`HooksConfig`] and [`ChecksConfig`] and the automatic rollback); [`rollback_plan`]
//!   ([`RollbackRequest`] -> [`RollbackPlan`], the last in-place restore undone);
//!   [`run_hook`] (one hook of an app, as backups and restores run them); [`forget_plan`]
//!   ([`ForgetRequest`] -> [`ForgetPlan`], then [`ForgetPlan::apply`]); [`prune()`];
//!   [`copy()`] ([`CopyRequest`] -> [`Copied`] per target); [`check()`] and its
//!   [`check_verdict`]; [`points()`] ([`PointsReport`] of [`PointSummary`] rows); [`init`] /
//!   [`init_from`] ([`Created`]); [`add_key`], [`list_keys`], [`remove_key`].
//! - Every operation that changes something (backup, restore, rollback, drill, forget, prune,
//!   copy, key add/remove) is recorded in the audit log (a line in `audit.log`, a record in
//!   the repository); [`log()`] ([`LogRequest`] -> [`LogReport`]) reads it back.
//! - [`systemd_service`], [`systemd_timers`] and [`crontab`] generate what runs the
//!   schedules unattended (`lifeboat install`), the sandbox computed from the config.
//! - [`demo()`] runs the whole job on an embedded app through these operations, narrating
//!   each step to a [`std::io::Write`].
//!
//! Progress goes to core's [`Progress`](lifeboat_core::Progress), which the front end draws.
//! Errors are core's [`Error`](lifeboat_core::Error): their kind decides the exit code.
#![deny(missing_docs)]

mod alerts;
mod anomalies;
mod audit;
mod backup;
mod check;
mod checks;
mod config;
mod continuous;
mod copy;
mod definition;
mod demo;
mod demo_postgres;
mod destination;
mod forget;
mod hooks;
mod human;
mod init;
mod install;
mod job_state;
mod jobs;
mod keys;
mod known_points;
mod metrics;
mod notify;
mod password;
mod points;
mod prune;
mod recover;
mod restore;
mod rollback;
mod schedule;
mod setup;
mod state_dir;
mod status;
mod trust;

pub use alerts::{
    announce, heartbeat_url, AlertEvent, AlertKind, AlertState, AlertsConfig, AppAlerts,
    RuleSettings, Rules, Webhook, WebhookFormat, DEFAULT_EVERY as DEFAULT_ALERT_EVERY,
};
pub use audit::{local_path as audit_log_path, log, Damaged, LogReport, LogRequest};
pub use backup::{backup, classify, BackupReport, BackupRequest};
pub use check::{check, verdict as check_verdict};
pub use checks::{ChecksConfig, DEFAULT_HEALTH_TIMEOUT};
pub use config::{AppConfig, Config, DaemonConfig, PostgresConfig, RepositoryConfig};
pub use continuous::{
    continuous_of, run_capture, ContinuousHandle, StreamStatus, DEFAULT_KEEP, DEFAULT_REBASE,
};
pub use copy::{copy, Copied, CopyRequest};
pub use demo::{demo, DemoRequest};
pub use destination::Location;
pub use forget::{plan as forget_plan, ForgetPlan, ForgetRequest};
pub use hooks::{
    run_hook, HookCommand, HookContext, HookRun, HooksConfig, Phase,
    DEFAULT_TIMEOUT as DEFAULT_HOOK_TIMEOUT,
};
pub use human::{age, duration_ms, one_line, size};
pub use init::{init, init_from, Created};
pub use install::{
    cron_spec, crontab, on_calendar, systemd_service, systemd_timers, InstallOptions, Trigger,
    UnitFile,
};
pub use job_state::{JobRecord, JobsState, Outcome};
pub use jobs::{
    jobs, run_job, schedule_report, Job, JobKind, JobOutcome, JobStatus, DEFAULT_RETRY, MAX_RETRY,
};
pub use keys::{add_key, list_keys, remove_key};
pub use known_points::LastRestore;
pub use metrics::{render as render_metrics, write_textfile, Counters};
pub use notify::{heartbeat_delivery, spawn_runtime_thread, webhook_delivery, Delivery, Notifier};
pub use password::PasswordSource;
pub use points::{points, summary, ContinuousWindow, PointSummary, PointsReport};
pub use prune::prune;
pub use recover::{recover_plan, RecoverPlan, RecoverReport, RecoverRequest};
pub use restore::{
    drill, parse_at, plan as restore_plan, AtTime, DrillReport, DrillRequest, PreviewComponent,
    ReplayedDb, RestorePlan, RestorePreview, RestoreReport, RestoreRequest,
};
pub use rollback::{plan as rollback_plan, RollbackPlan, RollbackRequest};
pub use schedule::{CronFields, Form, Schedule};
pub use setup::{Setup, CONFIG_PATHS};
pub use state_dir::state_dir;
pub use status::{
    read_streams, status, stream_lags, streams_path, write_streams, AppStatus, DestinationStatus,
    NewestPoint, PointDrill, Problem, StatusReport, StreamLag, Streams,
};
