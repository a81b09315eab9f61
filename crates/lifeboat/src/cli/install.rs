use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use lifeboat_app::{Config, InstallOptions, UnitFile};
use lifeboat_core::{Error, ErrorKind, Result};

use super::Context;
use crate::output::outln;

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat -c /etc/lifeboat/lifeboat.toml install systemd            print lifeboat.service
  lifeboat -c /etc/lifeboat/lifeboat.toml install systemd --dir /etc/systemd/system
  lifeboat install systemd --timer --dir /etc/systemd/system         a timer per job instead of the daemon
  lifeboat install cron | crontab -u root -                          crontab lines instead (replaces root's crontab)

The files are generated from lifeboat.toml: the service's sandbox lets it write only the
directories the config names (sources' directories, local repositories, the state and cache
directories), and each directive carries a comment saying why. Regenerate after changing the
config's paths or repositories.";

#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// A hardened systemd service running `lifeboat run` (or, with --timer, a oneshot service
    /// and a timer per scheduled job).
    Systemd(SystemdArgs),
    /// Crontab lines, one per scheduled job, each under flock so jobs of one app never overlap.
    Cron(CronArgs),
}

#[derive(Debug, Args)]
pub struct Common {
    /// The lifeboat binary the units and lines run (default: this one)
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SystemdArgs {
    /// A oneshot service and a .timer per scheduled job instead of the `lifeboat run` service
    #[arg(long)]
    pub timer: bool,
    /// Write the files into DIR (e.g. /etc/systemd/system) instead of printing them
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// With --dir: replace files that exist
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct CronArgs {
    /// Append each job's output to FILE (default: syslog through `logger`)
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// Directory of the per-app lock files
    #[arg(long, value_name = "DIR", default_value = "/run/lifeboat")]
    pub lock_dir: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(ctx: &Context, cmd: InstallCommand) -> Result<()> {
    match cmd {
        InstallCommand::Systemd(a) => {
            let (config, o) = load(ctx, &a.common, PathBuf::new(), None)?;
            let files = if a.timer {
                lifeboat_app::systemd_timers(&config, &o)?
            } else {
                vec![lifeboat_app::systemd_service(&config, &o)?]
            };
            match &a.dir {
                None => {
                    for (i, f) in files.iter().enumerate() {
                        if files.len() > 1 {
                            let sep = if i == 0 { "" } else { "\n" };
                            outln!("{sep}### {}", f.name);
                        }
                        outln!("{}", f.contents.trim_end());
                    }
                }
                Some(dir) => {
                    write_all(dir, &files, a.force)?;
                    for f in &files {
                        outln!("wrote {}", dir.join(&f.name).display());
                    }
                    let enable: Vec<&str> = files
                        .iter()
                        .map(|f| f.name.as_str())
                        .filter(|n| !a.timer || n.ends_with(".timer"))
                        .collect();
                    outln!(
                        "next: systemctl daemon-reload && systemctl enable --now {}",
                        enable.join(" ")
                    );
                }
            }
        }
        InstallCommand::Cron(a) => {
            let (config, o) = load(ctx, &a.common, a.lock_dir, a.log_file)?;
            let text = lifeboat_app::crontab(&config, &o)?;
            outln!("{}", text.trim_end());
        }
    }
    Ok(())
}

/// The config (from -c or the usual places) and the absolute paths the files name.
fn load(
    ctx: &Context,
    c: &Common,
    lock_dir: PathBuf,
    log_file: Option<PathBuf>,
) -> Result<(Config, InstallOptions)> {
    let path = super::run::config_path(ctx)?;
    let config = Config::load(&path)?;
    let abs = |p: &Path, what: &str| {
        std::fs::canonicalize(p).map_err(|e| Error::io(format!("{what} {}", p.display()), e))
    };
    let exe = match &c.bin {
        Some(b) if b.is_absolute() => b.clone(),
        Some(b) => {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("--bin {}: give the absolute path", b.display()),
            ))
        }
        None => abs(
            &std::env::current_exe().map_err(|e| Error::io("find this binary", e))?,
            "binary",
        )?,
    };
    let config_abs = abs(&path, "config")?;
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    Ok((
        config,
        InstallOptions {
            exe,
            config: config_abs,
            lock_dir: absolute(lock_dir),
            log_file: log_file.map(absolute),
        },
    ))
}

/// Writes every file into `dir`, refusing (before writing any) when one exists and `force`
/// is off.
fn write_all(dir: &Path, files: &[UnitFile], force: bool) -> Result<()> {
    if !force {
        let existing: Vec<String> = files
            .iter()
            .map(|f| dir.join(&f.name))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("refusing to overwrite {}", existing.join(", ")),
            )
            .with_hint("pass --force to replace them"));
        }
    }
    for f in files {
        let p = dir.join(&f.name);
        std::fs::write(&p, &f.contents)
            .map_err(|e| Error::io(format!("write {}", p.display()), e))?;
    }
    Ok(())
}
