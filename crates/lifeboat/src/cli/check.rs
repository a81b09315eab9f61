use clap::Args;
use lifeboat_core::{CheckOptions, Result};

use super::Context;
use crate::output::{esc, json, outln, size};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Read every pack in full and authenticate every byte (slower; proves restores can work)
    #[arg(long)]
    pub read_data: bool,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, a: CheckArgs) -> Result<()> {
    let report = lifeboat_app::check(
        &ctx.setup,
        CheckOptions {
            read_data: a.read_data,
        },
        &ctx.progress,
    )?;
    if a.json {
        json(&report)?;
    } else {
        outln!(
            "checked {} points{}, {} index files, {} packs, {} chunks referenced{}",
            report.points,
            if report.deltas > 0 {
                format!(
                    ", {} continuous deltas in {} chains",
                    report.deltas, report.delta_chains
                )
            } else {
                String::new()
            },
            report.indexes,
            report.packs,
            report.chunks_referenced,
            if a.read_data {
                format!("; read and authenticated {}", size(report.bytes_read))
            } else {
                String::new()
            }
        );
        if report.pending_prunes > 0 {
            outln!(
                "note: {} prune record(s) wait to delete {} packs (no point needs them; the next `lifeboat prune` deletes them once running backups have ended)",
                report.pending_prunes, report.condemned_packs
            );
        }
        if report.unindexed_packs > 0 && report.all_indexes_readable {
            outln!(
                "note: {} packs are in no index (left by an interrupted backup; harmless; `lifeboat prune` deletes them)",
                report.unindexed_packs
            );
        } else if report.unindexed_packs > 0 {
            outln!(
                "note: {} packs are in no readable index; they may hold the data of the damaged index: do not delete them",
                report.unindexed_packs
            );
        }
        if report.stale_proofs > 0 {
            outln!(
                "note: {} proof record(s) belong to forgotten points (harmless; `lifeboat prune` deletes them)",
                report.stale_proofs
            );
        }
        if report.stale_deltas > 0 {
            outln!(
                "note: {} continuous delta(s) belong to forgotten points (harmless; `lifeboat prune` deletes them)",
                report.stale_deltas
            );
        }
        for n in &report.notes {
            outln!("note: {}: {}", esc(&n.object), esc(&n.message));
        }
        for p in &report.problems {
            outln!("DAMAGED {}: {}", esc(&p.object), esc(&p.message));
        }
    }
    if report.problems.is_empty() && !a.json {
        outln!("no problems found");
    }
    lifeboat_app::check_verdict(&report)
}
