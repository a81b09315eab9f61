//! The command line: one file per subcommand under `cli/`, each a thin clap struct calling
//! one library operation. Each variant's doc comment is its `--help`.
mod backup;
mod check;
mod copy;
mod demo;
mod drill;
mod forget;
mod generate;
mod init;
mod install;
mod key;
mod log;
mod metrics;
mod pick;
mod points;
mod prune;
mod recover;
mod restore;
mod rollback;
mod run;
mod schedule;
mod status;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lifeboat_app::{PasswordSource, Setup};
use lifeboat_core::Result;

use crate::progress::Bars;

const AFTER_HELP: &str = "\
Examples:
  lifeboat demo                                  back up, break and restore a demo app (no setup)
  lifeboat init --repo /backup/lb                create a repository (password from LIFEBOAT_PASSWORD)
  lifeboat backup --repo /backup/lb /srv/chat/chat.db /srv/chat/uploads
  lifeboat backup chat --tag pre-deploy          back up app `chat` from lifeboat.toml
  lifeboat points                                list recovery points
  lifeboat restore chat latest --to /tmp/scratch restore into a scratch directory
  lifeboat restore chat --yes                    in place: stop hook, restore, checks, start hook
  lifeboat rollback chat --yes                   undo the last in-place restore
  lifeboat check --read-data                     verify every byte of the repository

Exit codes: 0 ok, 1 I/O or other error, 2 usage or config error, 3 no/unsupported repository,
4 wrong or missing password, 5 repository data damaged, 6 refused to protect data (see --force),
7 source unreadable or not what it claims, 8 restored data failed verification, 9 an in-place
restore failed and was rolled back, 10 that rollback failed too, 11 stopped by a signal.
See docs/EXIT_CODES.md.";

/// lifeboat backs up self-hosted apps (SQLite databases, uploads, secrets, config) as one
/// recovery point into an encrypted, deduplicated repository, and restores them verified.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, after_help = AFTER_HELP, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Config file (default: ./lifeboat.toml, then /etc/lifeboat/lifeboat.toml)
    #[arg(long, short = 'c', global = true, env = "LIFEBOAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Repository: a directory or s3://BUCKET/PREFIX (endpoint, region and credentials from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the config's
    /// [repository.NAME] table); overrides the config's repository
    #[arg(long, short = 'r', global = true, env = "LIFEBOAT_REPO")]
    pub repo: Option<String>,
    /// File whose first line is the repository password (or LIFEBOAT_PASSWORD_FILE)
    #[arg(long, global = true)]
    pub password_file: Option<String>,
    /// Command that prints the repository password (or LIFEBOAT_PASSWORD_COMMAND)
    #[arg(long, global = true)]
    pub password_command: Option<String>,
    /// More log output on stderr (-v info, -vv debug)
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// No progress bars (they are off anyway when stderr is not a terminal)
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Print the requests sent to the repository's storage (by type) on stderr at the end;
    /// object stores bill per request
    #[arg(long, global = true)]
    pub stats: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new encrypted repository.
    ///
    /// The password comes from LIFEBOAT_PASSWORD, --password-file or --password-command
    /// (or the repository's password_file in lifeboat.toml). Keep it safe: without it the
    /// backups cannot be read. Add more passwords later with `lifeboat key add`.
    ///
    /// With --from SOURCE the new repository is a replica of SOURCE instead (same id and
    /// passwords, no new key): `lifeboat copy` then keeps it up to date.
    #[command(
        after_help = "Examples:\n  LIFEBOAT_PASSWORD=... lifeboat init --repo /var/backups/lifeboat\n  lifeboat init --repo s3://my-bucket/chat --from /var/backups/lifeboat"
    )]
    Init(init::InitArgs),
    /// Back up an app (or some paths) as one recovery point.
    #[command(after_help = backup::AFTER_HELP)]
    Backup(backup::BackupArgs),
    /// List recovery points.
    #[command(after_help = "Examples:\n  lifeboat points\n  lifeboat points chat --json")]
    Points(points::PointsArgs),
    /// Restore a point into a directory, a file, or in place, verified.
    #[command(after_help = restore::AFTER_HELP)]
    Restore(restore::RestoreArgs),
    /// Prove a point comes back: restore it into a scratch place, check everything, record it.
    #[command(after_help = drill::AFTER_HELP)]
    Drill(drill::DrillArgs),
    /// Is every app protected and proven? Per app and destination; exit 12 when not.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// Print the Prometheus metrics of every app (or write them for node_exporter's textfile
    /// collector)
    #[command(after_help = metrics::AFTER_HELP)]
    Metrics(metrics::MetricsArgs),
    /// Bring an app back on a new machine from its repository alone, and write its config.
    #[command(after_help = recover::AFTER_HELP)]
    Recover(recover::RecoverArgs),
    /// Undo the last in-place restore: put back the pre-restore point it took.
    #[command(after_help = rollback::AFTER_HELP)]
    Rollback(rollback::RollbackArgs),
    /// Copy the points another replica of the repository lacks (off-site copies).
    ///
    /// Objects are copied as they are (encrypted; no password needed), each verified against
    /// its name, in the order a backup writes them: packs, indexes, then points.
    #[command(after_help = copy::AFTER_HELP)]
    Copy(copy::CopyArgs),
    /// Remove points that a retention policy does not keep (GFS, last N, within, tags).
    #[command(after_help = forget::AFTER_HELP)]
    Forget(forget::ForgetArgs),
    /// Delete data that no point references; repack mostly-dead packs.
    #[command(after_help = prune::AFTER_HELP)]
    Prune(prune::PruneArgs),
    /// Check the repository: structure, and with --read-data every byte.
    #[command(
        after_help = "Examples:\n  lifeboat check\n  lifeboat check --read-data --json\n\nExits 5 when anything is damaged; each problem names the object and the points that depend on it."
    )]
    Check(check::CheckArgs),
    /// Manage passwords (key slots): several passwords open the same repository.
    #[command(
        subcommand,
        after_help = "Examples:\n  LIFEBOAT_NEW_PASSWORD=... lifeboat key add --label laptop\n  lifeboat key list\n  lifeboat key remove 1a2b3c4d"
    )]
    Key(key::KeyCommand),
    /// Show the audit log: every backup, restore, rollback, drill, forget, prune, copy and key
    /// change, who ran it and how it ended (from the repository, or this machine's file).
    #[command(after_help = log::AFTER_HELP)]
    Log(log::LogArgs),
    /// Run the demo: a chat-server-like app (SQLite in WAL mode with a writer running,
    /// uploads, an SSH host key, config) is backed up, destroyed, restored and verified.
    /// Needs no services and no setup; everything happens in a temporary directory.
    #[command(
        after_help = "Example:\n  lifeboat demo\n  lifeboat demo --dir /tmp/lifeboat-demo --keep"
    )]
    Demo(demo::DemoArgs),
    /// Run the apps' scheduled backups, copies and retention in the foreground (the daemon).
    ///
    /// For systemd, Docker and Kubernetes, which expect a foreground process. Logs go to
    /// stderr, one line per job start and end.
    #[command(after_help = run::AFTER_HELP)]
    Run(run::RunArgs),
    /// Show each scheduled job: when it runs next, and how it last ended.
    #[command(after_help = "Examples:\n  lifeboat schedule\n  lifeboat schedule --json")]
    Schedule(schedule::ScheduleArgs),
    /// Generate what runs the schedules unattended: a hardened systemd service for
    /// `lifeboat run`, systemd timers, or crontab lines, from lifeboat.toml.
    #[command(subcommand, after_help = install::AFTER_HELP)]
    Install(install::InstallCommand),

    /// Print a shell completion script (for packagers; see README "Install")
    #[command(hide = true)]
    Completions(generate::CompletionsArgs),
    /// Print the man page, or write one page per subcommand with --dir (for packagers)
    #[command(hide = true)]
    Man(generate::ManArgs),
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    let ctx = Context::new(cli.global);
    let res = match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Points(a) => points::run(&ctx, a),
        Command::Copy(a) => copy::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Drill(a) => drill::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Metrics(a) => metrics::run(&ctx, a),
        Command::Rollback(a) => rollback::run(&ctx, a),
        Command::Recover(a) => recover::run(&ctx, a),
        Command::Check(a) => check::run(&ctx, a),
        Command::Forget(a) => forget::run(&ctx, a),
        Command::Prune(a) => prune::run(&ctx, a),
        Command::Key(a) => key::run(&ctx, a),
        Command::Log(a) => log::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
        Command::Run(a) => run::run(&ctx, a),
        Command::Schedule(a) => schedule::run(&ctx, a),
        Command::Install(a) => install::run(&ctx, a),
        Command::Completions(a) => generate::completions(a),
        Command::Man(a) => generate::man(a),
    };
    if ctx.global.stats {
        ctx.print_stats();
    }
    res
}

/// What every subcommand gets: the app layer's [`Setup`] built from the global flags, and
/// the progress display.
pub struct Context {
    pub global: Global,
    pub setup: Setup,
    pub progress: Bars,
}

impl Context {
    fn new(global: Global) -> Context {
        let progress = Bars::new(global.no_progress || global.quiet);
        let setup = Setup::new(
            global.config.clone(),
            global.repo.clone(),
            PasswordSource {
                command: global.password_command.clone(),
                file: global.password_file.clone(),
            },
        );
        Context {
            global,
            setup,
            progress,
        }
    }

    /// The password sources given on the command line.
    pub fn setup_password(&self) -> PasswordSource {
        PasswordSource {
            command: self.global.password_command.clone(),
            file: self.global.password_file.clone(),
        }
    }

    /// `--stats`: requests per storage opened, on stderr.
    fn print_stats(&self) {
        for (loc, r) in self.setup.opened() {
            crate::output::errln!(
                "requests to {loc}: {} (list {}, get {}, head {}, put {}, delete {})",
                r.total(),
                r.list,
                r.get,
                r.head,
                r.put,
                r.delete
            );
        }
    }
}
