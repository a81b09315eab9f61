//! End-to-end tests of the real `lifeboat` binary (assert_cmd) on real SQLite files in WAL
//! mode, real directories and a real repository directory. One integration binary, one
//! module per concern:
mod common;
/// A TCP proxy that injects network faults in front of the test S3 server.
mod fault_proxy;
/// Points written by hand through the library (hostile points for the escape and review tests).
mod handmade;

/// Alerts to a local HTTP listener, each anomaly rule, and /metrics parsed by the reference
/// parser (issue 15 items 3-5).
mod alerts;
/// In-place tree restores: staged and swapped in, exact, a failure changes nothing; nested
/// components kept; setuid bits; symlinks in other users' directories (issue 12 item 4).
mod atomic;
/// The audit log: every operation in `audit.log` and the repository, `lifeboat log`,
/// failures, damage, a symlinked log, no secrets (issue 15 item 6).
mod audit;
/// A clean install (issue 13 item 4): a build from outside the repository backs up SQLite;
/// completion scripts and man pages.
mod clean_build;
/// Continuous capture of SQLite and restore --at (issue 14): a writer through checkpoints of
/// every kind, kill -9 of the daemon, resume, gaps.
mod continuous;
/// `lifeboat run`: schedules, catch-up, SIGHUP with a broken config, SIGTERM mid-backup
/// (issue 13).
mod daemon;
/// Wrong password, flipped byte, truncated and missing objects, newer format: detected, named,
/// and restore refuses.
mod damage;
/// `lifeboat drill`: restore to scratch, every check, timed, recorded; damaged points fail
/// loudly (issue 15 item 1).
mod drill;
/// Hand-made points whose paths escape `--to DIR` or lie beneath a symlink (issue 12 item 2).
mod escape;
/// Issue 12 items 8-10: stop/start and before/after_backup hooks, smoke queries, health URL,
/// automatic rollback and `lifeboat rollback`, on real processes.
mod hooks;
/// Deduplication: unchanged and lightly changed databases add little; incremental chains
/// restore exactly.
mod incremental;
/// `lifeboat install`: systemd units that verify, crontab lines that run (issue 13 item 3).
mod install;
/// `latest`: the newest point known on this machine must still be there; future-dated points.
mod latest;
/// Many hosts, one repository: three daemons with their own host names back up into one S3
/// repository at once while one of them prunes (issue 13 item 5).
mod many_hosts;
/// `restore --dry-run`: the plan, nothing changed (issue 12 item 6).
mod plan;
/// PostgreSQL apps on a real server: hot dump beside a writer, new-database and in-place
/// restores, failing and killed dumps, dedup of an unchanged database, wrappers, roles.
mod postgres;
/// Bare-machine recovery from the repository alone (issue 12 item 11).
mod recover;
/// Bad input: not a SQLite file, missing paths, config errors, in-place refusals.
mod refusals;
/// Off-site destinations: a whole app through S3 (moto), request economy, clear refusals.
mod remote;
/// Retention (forget with reasons) and prune: space freed, kill-at-every-step, concurrent
/// backups and prunes.
mod retention;
/// Attack review of the atomic tree restore, hooks and rollback: each a reproduced attack
/// that must fail.
mod review_attacks;
/// Second attack review: point definitions and `recover`, proof records, fd-based capture.
mod review_attacks2;
/// Attack review of `drill` and `status` (issue 15): scratch directory, proof records, periods.
mod review_drill;
/// Hot backup while a writer commits; restore; consistency, integrity, row counts.
mod sqlite_hot;
/// Key slots, `points --json`, `--help`.
mod surface;
/// Issue 12 item 1: a local user swapping symlinks under the target during in-place restores
/// never gets root to write, chmod or chown anything outside it.
mod symlink_race;
/// Files, secrets and config: content, modes, owners, mtimes, symlinks, empty dirs, excludes.
mod trees;
