use clap::Args;
use lifeboat_core::{ObjectId, Point, Result};
use serde::Serialize;

use super::Context;
use crate::output::{json, local_time, size};

#[derive(Debug, Args)]
pub struct PointsArgs {
    /// Only points of this app
    pub app: Option<String>,
    /// JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// A point as listed (no secret content, only paths and numbers).
#[derive(Debug, Serialize)]
pub struct PointSummary<'a> {
    pub id: String,
    pub time: &'a str,
    pub app: &'a str,
    pub tags: &'a [String],
    pub hostname: &'a str,
    /// Logical size of all components.
    pub size: u64,
    /// Bytes this point added to the repository.
    pub added: u64,
    pub duration_ms: u64,
    pub components: Vec<serde_json::Value>,
}

pub fn summary<'a>(id: &ObjectId, p: &'a Point) -> PointSummary<'a> {
    PointSummary {
        id: id.to_hex(),
        time: &p.time,
        app: &p.app,
        tags: &p.tags,
        hostname: &p.hostname,
        size: p.components.iter().map(|c| c.size).sum(),
        added: p.stats.bytes_stored,
        duration_ms: p.stats.duration_ms,
        components: p
            .components
            .iter()
            .map(|c| {
                let mut v = serde_json::json!({ "kind": c.kind, "path": c.path, "size": c.size });
                if let Some(s) = &c.sqlite {
                    v["page_size"] = s.page_size.into();
                    v["schema_version"] =
                        serde_json::to_value(&s.schema_version).unwrap_or_default();
                    v["user_version"] = s.user_version.into();
                    v["row_counts"] = serde_json::to_value(&s.row_counts).unwrap_or_default();
                }
                if let Some(t) = &c.tree {
                    v["files"] = t.files.into();
                    v["dirs"] = t.dirs.into();
                }
                v
            })
            .collect(),
    }
}

pub fn run(ctx: &Context, a: PointsArgs) -> Result<()> {
    let repo = ctx.open(a.app.as_deref())?;
    let points: Vec<_> = repo
        .points()?
        .into_iter()
        .filter(|(_, p)| a.app.as_ref().is_none_or(|x| &p.app == x))
        .collect();
    if a.json {
        json(
            &points
                .iter()
                .map(|(id, p)| summary(id, p))
                .collect::<Vec<_>>(),
        );
        return Ok(());
    }
    if points.is_empty() {
        println!("no points yet");
        return Ok(());
    }
    println!(
        "{:<9} {:<24} {:<12} {:<18} {:>10} {:>10}  CONTENTS",
        "ID", "TIME", "APP", "TAGS", "SIZE", "ADDED"
    );
    for (id, p) in &points {
        let s = summary(id, p);
        let contents: Vec<String> = p
            .components
            .iter()
            .map(|c| match c.kind {
                lifeboat_core::ComponentKind::Sqlite => "db".to_string(),
                k => k.as_str().to_string(),
            })
            .collect();
        println!(
            "{:<9} {:<24} {:<12} {:<18} {:>10} {:>10}  {}",
            id.short(),
            local_time(&p.time),
            p.app,
            p.tags.join(","),
            size(s.size),
            size(s.added),
            contents.join("+")
        );
    }
    Ok(())
}
