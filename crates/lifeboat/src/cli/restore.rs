use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use lifeboat_app::{RestorePlan, RestorePreview, RestoreReport, RestoreRequest};
use lifeboat_core::{ComponentKind, Error, ErrorKind, Result};
use lifeboat_sources::sqlite::Verify;

use super::Context;
use crate::output::{esc, json, outln, size};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat restore chat --dry-run                    what would be replaced, removed, saved; no change
  lifeboat restore chat                              on a terminal: pick a recent point, see the plan
  lifeboat restore chat latest --to /tmp/scratch     everything under /tmp/scratch/<original path>
  lifeboat restore chat 1a2b3c4d --only db -o /tmp/chat.db
  lifeboat restore chat latest --yes                 in place (takes a pre-restore point first)
  lifeboat restore chat --at \"2026-01-01 12:00:00\" --to /tmp/scratch   the app as it was then
  lifeboat restore chat --at -10m --only db -o /tmp/chat.db            the database 10 minutes ago
  lifeboat restore chatalot --only db --pg-database chatalot_drill   PostgreSQL into a new database
  lifeboat restore chatalot --to /tmp/scratch        files under /tmp/scratch, each PostgreSQL
                                                     database into <name>_restored_<point time>

Every chunk is authenticated before it is written. A database is written to a temporary file
beside its target, checked (checksum, PRAGMA integrity_check on all cores, row counts against
the point) and only then renamed over the target, after stale -wal/-shm files are removed; on
any failure the old database stays as it was. A passed check is recorded with the point (a
proof record): a later restore of the same bytes still authenticates every page and compares
the checksum, but does not run SQLite's check again (an integrity_check serves --verify full
and quick, a quick_check only quick), and says when and where it passed. In place, lifeboat refuses to replace a database that another process
has open or that changed after the point was taken, unless --force. A directory tree is built
beside its target and swapped in by one rename: it ends up exactly as in the point (files not in
the point are removed; they are in the pre-restore point), and a failure leaves it untouched.
With a lifeboat.toml, only the paths it lists for the app are written in place (--allow-unlisted).
setuid/setgid bits are cleared unless --keep-setid.

With no point given and stdin a terminal, recent points are listed to pick from; with --yes, or
when stdin is not a terminal, no question is ever asked.

`latest` is the newest point of the app that is not a pre-restore point and not dated in the
future (more than 5 minutes ahead of this machine's clock; --allow-future takes it). This
machine remembers the newest point it backed up or restored per repository and app; if that
point is missing or damaged in the repository and no newer one is there, `latest` is an error
(exit 5) instead of an older point, unless --allow-older.

PostgreSQL: the dump is fetched and authenticated into a private temporary file ($TMPDIR), then
pg_restore --exit-on-error loads a new database created with the recorded encoding and locale,
and its row counts are compared with the point (counted in the dump's own snapshot). In place,
that new database is built under a temporary name and swapped in by renames only after it
verified; other sessions of the original make the restore refuse, unless --pg-terminate.

In place, with [app.NAME.hooks] and [app.NAME.checks] in lifeboat.toml: pre-restore point ->
`stop` hook -> restore and SQLite's verification -> smoke queries -> `start` hook -> health_url
polled until 2xx. If anything after the stop hook fails, the pre-restore point is put back, the
app is started again and the command exits 9 saying what failed (10 if that rollback failed too:
the message names the pre-restore point and the command to retry). `lifeboat rollback APP` undoes
the last in-place restore on purpose. With --to DIR no hook runs; the smoke queries check the
restored copies.";

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// [APP] [POINT]: app name from lifeboat.toml, and a point id prefix or `latest` (default)
    #[arg(num_args = 0..=2)]
    pub args: Vec<String>,
    /// Restore under this directory instead of in place
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub to: Option<PathBuf>,
    /// Restore the one selected component to exactly this path (use with --only if the point has several)
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Only these parts: db (every database), postgres, files, secrets, config (repeatable)
    #[arg(long, value_parser = parse_kind)]
    pub only: Vec<ComponentKind>,
    /// PostgreSQL: restore into this new database (refused if it exists) instead of in place
    #[arg(long, value_name = "NAME")]
    pub pg_database: Option<String>,
    /// PostgreSQL: restore onto this server (libpq URL) instead of the configured one
    #[arg(long, value_name = "URL")]
    pub pg_url: Option<String>,
    /// PostgreSQL: parallel pg_restore jobs (default: cores, at most 4)
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// PostgreSQL: restore only this table (`name` or `schema.name`; repeatable; new database only)
    #[arg(long, value_name = "NAME")]
    pub table: Vec<String>,
    /// PostgreSQL: run the point's roles/tablespaces script first (point made with globals = true)
    #[arg(long)]
    pub pg_globals: bool,
    /// PostgreSQL: objects owned by the restoring user; no GRANTs (for a server without the roles)
    #[arg(long)]
    pub pg_no_owner: bool,
    /// PostgreSQL: end other sessions of a database replaced in place (default: refuse)
    #[arg(long)]
    pub pg_terminate: bool,
    /// Replace a database even if it is open by another process or newer than the point
    #[arg(long)]
    pub force: bool,
    /// Let `latest` be older than the newest point this machine wrote or restored, when that
    /// point is missing or damaged in the repository (default: refuse, exit 5)
    #[arg(long)]
    pub allow_older: bool,
    /// Let `latest` be a point dated in the future (more than 5 minutes ahead of this
    /// machine's clock; default: such points are passed over)
    #[arg(long)]
    pub allow_future: bool,
    /// Restore setuid/setgid bits of files as the point has them (default: cleared, with a
    /// warning: a point written by another host's key could plant a setuid program)
    #[arg(long)]
    pub keep_setid: bool,
    /// In place, also replace paths that lifeboat.toml does not list for the app (default:
    /// refused, since any host with the repository's password can write a point)
    #[arg(long)]
    pub allow_unlisted: bool,
    /// Show what the restore would do (each path replaced with its size now and after, files
    /// a tree restore would remove, the pre-restore point, an estimated time) and change
    /// nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Do not ask before an in-place restore (for scripts)
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The app as it was at this moment: "2026-01-01 12:00:00" (local), RFC 3339, or a time ago
    /// (-10m, -2h). Databases under continuous capture come back as of the newest delta at or
    /// before it; files, secrets and config from the newest point at or before it
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Skip the automatic pre-restore point of the current state (in-place only)
    #[arg(long)]
    pub no_safety_point: bool,
    /// How SQLite checks a restored database before it replaces anything: `full` runs
    /// PRAGMA integrity_check (every index entry against its row; ~10 s per GiB), `quick` runs
    /// PRAGMA quick_check (~1.5 s per GiB). Both also check the whole-database checksum (every
    /// page equal to what was backed up) and the row counts. Skipped for bytes a proof record
    /// says already passed this check or a stricter one. Default: full (also for a database
    /// rebuilt from continuous deltas by --at, whose bytes no proof record can name)
    #[arg(long, value_parser = parse_verify)]
    pub verify: Option<Verify>,
    /// Run SQLite's check even where a proof record says these bytes already passed it (a
    /// record can be written by anyone with the password; `lifeboat drill` always rechecks)
    #[arg(long)]
    pub recheck: bool,
    /// Print what was restored as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn parse_verify(s: &str) -> std::result::Result<Verify, String> {
    match s {
        "full" => Ok(Verify::Full),
        "quick" => Ok(Verify::Quick),
        _ => Err(format!("{s:?} is not full or quick")),
    }
}

fn parse_kind(s: &str) -> std::result::Result<ComponentKind, String> {
    match s {
        "db" | "database" | "databases" | "sqlite" => Ok(ComponentKind::Sqlite),
        "postgres" | "pg" | "postgresql" => Ok(ComponentKind::Postgres),
        "files" | "uploads" => Ok(ComponentKind::Files),
        "secret" | "secrets" => Ok(ComponentKind::Secret),
        "config" => Ok(ComponentKind::Config),
        _ => Err(format!(
            "{s:?} is not one of db, postgres, files, secrets, config"
        )),
    }
}

pub fn run(ctx: &Context, a: RestoreArgs) -> Result<()> {
    let mut args = a.args.into_iter();
    let (first, second) = (args.next(), args.next());
    let (mut app, mut point) = match second {
        Some(p) => (first, Some(p)),
        None => (None, first),
    };
    // No point given, on a terminal: the operator picks one (never in scripts: `--yes`, or
    // stdin not a terminal, restores `latest`).
    let interactive =
        !a.yes && !a.json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if interactive && app.is_none() {
        let config = ctx.setup.config()?;
        match &point {
            None => {
                app = config
                    .as_ref()
                    .and_then(|c| c.only_app())
                    .map(str::to_string)
            }
            Some(p) if config.as_ref().is_some_and(|c| c.has_app(p)) => app = point.take(),
            Some(_) => {}
        }
    }
    let at =
        a.at.as_deref()
            .map(|s| lifeboat_app::parse_at(s, jiff::Timestamp::now()))
            .transpose()?;
    if interactive && point.is_none() && at.is_none() {
        point = Some(super::pick::pick_point(ctx, app.as_deref())?);
    }
    let req = RestoreRequest {
        app,
        point,
        to: a.to,
        output: a.output,
        only: a.only,
        pg_database: a.pg_database,
        pg_url: a.pg_url,
        jobs: a.jobs,
        tables: a.table,
        pg_globals: a.pg_globals,
        pg_no_owner: a.pg_no_owner,
        pg_terminate: a.pg_terminate,
        force: a.force,
        safety_point: !a.no_safety_point,
        verify: a.verify,
        allow_older: a.allow_older,
        allow_future: a.allow_future,
        keep_setid: a.keep_setid,
        allow_unlisted: a.allow_unlisted,
        at,
        recheck: a.recheck,
        ..RestoreRequest::default()
    };
    let mut plan = lifeboat_app::restore_plan(&ctx.setup, &req)?;
    if let Some(t) = plan.at_time() {
        if !a.json {
            outln!(
                "as of {}: files, secrets and config from point {} ({})",
                crate::output::local_time(&t.at),
                &t.point[..8],
                crate::output::local_time(&t.point_time)
            );
            for d in &t.databases {
                outln!(
                    "  db {} as of {} (continuous delta {} of the chain from point {})",
                    esc(&d.path),
                    crate::output::local_time(&d.time),
                    d.seq,
                    &d.base[..8]
                );
            }
        }
    }
    if a.dry_run {
        let preview = plan.preview()?;
        if a.json {
            return json(&preview);
        }
        for line in preview_lines(&preview) {
            outln!("{line}");
        }
        outln!("dry run: nothing was changed");
        return Ok(());
    }
    if !plan.replaced().is_empty() {
        confirm_in_place(&mut plan, a.yes)?;
    }
    let (id, point) = (plan.id(), plan.point().clone());
    let report = run_confirmed(ctx, plan)?;
    if a.json {
        return json(&report);
    }
    outln!(
        "restored point {} of app {} ({})",
        id.short(),
        esc(&point.app),
        crate::output::local_time(&point.time)
    );
    print_restored(&report.restored)?;
    print_hooks_and_checks(&report)
}

/// Runs a plan the operator confirmed (or that replaces nothing), saying on stderr when the
/// pre-restore point is saved.
pub(crate) fn run_confirmed(ctx: &Context, plan: RestorePlan) -> Result<RestoreReport> {
    plan.run(true, &ctx.progress, &mut |saved| {
        crate::output::errln!(
            "saved the current state as pre-restore point {}",
            saved.short()
        );
    })
}

/// One line per restored component (databases as `db`), with its warnings.
pub(crate) fn print_restored(restored: &[lifeboat_sources::RestoredComponent]) -> Result<()> {
    for r in restored {
        let kind = if r.kind.is_database() {
            "db"
        } else {
            r.kind.as_str()
        };
        outln!(
            "  {kind:<7} {} ({}): {}",
            esc(&r.path),
            size(r.bytes),
            esc(&r.verified)
        );
        for w in &r.warnings {
            outln!("          warning: {}", esc(w));
        }
    }
    Ok(())
}

/// The hooks that ran and the app's checks that passed, after the restored components.
pub(crate) fn print_hooks_and_checks(report: &lifeboat_app::RestoreReport) -> Result<()> {
    for h in &report.hooks {
        outln!(
            "  hook    {} `{}` ({})",
            h.phase.as_str(),
            esc(&h.command),
            crate::output::duration_ms(h.ms)
        );
    }
    for c in &report.checks {
        outln!("  check   {}", esc(c));
    }
    Ok(())
}

/// The plan, as lines for a person (escaped).
pub(crate) fn preview_lines(p: &RestorePreview) -> Vec<String> {
    let mut out = vec![format!(
        "restore point {} of app {} ({}{}), written by {}",
        &p.point[..8.min(p.point.len())],
        esc(&p.app),
        crate::output::local_time(&p.time),
        if p.tags.is_empty() {
            String::new()
        } else {
            format!("; {}", esc(&p.tags.join(", ")))
        },
        esc(&p.hostname)
    )];
    out.push(format!(
        "  {}{}",
        esc(&p.target),
        if p.safety_point {
            "; what is replaced is saved first as a pre-restore point"
        } else {
            ""
        }
    ));
    for c in &p.components {
        let kind = if c.kind.is_database() {
            "db"
        } else {
            c.kind.as_str()
        };
        let files = |n: Option<u64>| match n {
            Some(1) => "1 file, ".to_string(),
            Some(n) => format!("{n} files, "),
            None => String::new(),
        };
        let after = format!("{}{}", files(c.files_after), size(c.size_after));
        let what = match c.size_now {
            Some(n) => format!("replaces {}{} with {after}", files(c.files_now), size(n)),
            None if c.replaces => format!("replaces it with {after}"),
            None => format!("writes {after}"),
        };
        out.push(format!("  {kind:<7} {}: {what}", esc(&c.path)));
        if c.removed_count > 0 {
            let more = c.removed_count - c.removed.len() as u64;
            out.push(format!(
                "          removes {} not in the point: {}{}",
                c.removed_count,
                esc(&c.removed.join(", ")),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
    }
    for h in &p.hooks {
        out.push(format!("  hook    {}", esc(h)));
    }
    for c in &p.checks {
        out.push(format!("  check   {}", esc(c)));
    }
    out.push(format!(
        "  estimated time: about {}",
        lifeboat_app::duration_ms(p.estimated_seconds * 1000)
    ));
    out
}

pub(crate) fn confirm_in_place(plan: &mut RestorePlan, yes: bool) -> Result<()> {
    if yes {
        return Ok(());
    }
    let list: Vec<_> = plan.replaced().iter().map(|c| c.path.clone()).collect();
    if !std::io::stdin().is_terminal() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("an in-place restore replaces {}", list.join(", ")),
        )
        .with_hint("pass --yes to confirm (a pre-restore point is taken first), or restore elsewhere with --to DIR"));
    }
    for line in preview_lines(&plan.preview()?) {
        crate::output::errln!("{line}");
    }
    crate::output::err_print!("Replace {}? [y/N] ", esc(&list.join(", ")));
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if matches!(line.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Refused,
            "restore cancelled; nothing was changed",
        ))
    }
}
