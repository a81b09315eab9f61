use clap::Args;
use lifeboat_core::{PruneOptions, PruneReport, Result};

use super::Context;
use crate::output::{esc, json, outln, size};

pub const AFTER_HELP: &str = "\
Examples:
  lifeboat prune --dry-run        what would be deleted and repacked
  lifeboat prune                  delete data no point references

Safe beside running backups, restores and copies, from this or another machine: prune first
writes a record of what it condemns (after copying the live chunks of mostly-dead packs and
re-indexing what stays), and deletes only when every running operation has seen that record.
Otherwise the deletion waits for the next prune (the output says for whom). Operations that
were killed hold leases that expire after 30 minutes; no lock ever needs clearing by hand.
Killing prune at any moment leaves a repository that `check --read-data` accepts.";

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Report what would be deleted and repacked; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Repack packs with less than this percentage of live data (0 = never repack)
    #[arg(long, value_name = "PCT", default_value_t = 50)]
    pub repack_below: u8,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn print(r: &PruneReport) -> Result<()> {
    outln!(
        "scanned {} points ({} live chunks) and {} packs",
        r.points,
        r.live_chunks,
        r.packs
    );
    outln!(
        "deleted {} packs with no live data and repacked {} mostly-dead packs ({} of live chunks copied): {} freed",
        r.packs_deleted,
        r.packs_repacked,
        size(r.bytes_repacked),
        size(r.bytes_deleted)
    );
    if r.packs_merged > 0 {
        outln!(
            "merged {} small packs (continuous capture writes one per busy interval) into full-sized ones",
            r.packs_merged
        );
    }
    outln!(
        "index objects: {} written, {} deleted",
        r.indexes_written,
        r.indexes_deleted
    );
    if r.deltas > 0 || r.deltas_deleted > 0 {
        outln!(
            "continuous deltas: {} counted live, {} of forgotten points deleted",
            r.deltas,
            r.deltas_deleted
        );
    }
    if r.proofs_deleted > 0 {
        outln!(
            "proof records of forgotten points: {} deleted",
            r.proofs_deleted
        );
    }
    if r.packs_resurrected > 0 {
        outln!(
            "kept {} condemned packs that points written meanwhile need",
            r.packs_resurrected
        );
    }
    for d in &r.deferred {
        outln!("deferred: {}; run prune again later to finish", esc(d));
    }
    Ok(())
}

pub fn run(ctx: &Context, a: PruneArgs) -> Result<()> {
    let opts = PruneOptions {
        repack_below: a.repack_below as f64 / 100.0,
        dry_run: a.dry_run,
    };
    let report = lifeboat_app::prune(&ctx.setup, &opts, &ctx.progress)?;
    if a.json {
        json(&report)?;
    } else {
        if a.dry_run {
            outln!(
                "dry run: would delete {} packs and repack {} ({} of packs), nothing was changed",
                report.packs_deleted,
                report.packs_repacked,
                size(report.bytes_deleted)
            );
            return Ok(());
        }
        print(&report)?;
    }
    Ok(())
}
