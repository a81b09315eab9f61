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
    /// Replicas (the app's `copy_to`) that hold this point too; empty when none are configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copied_to: Vec<String>,
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
        copied_to: Vec::new(),
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
                if let Some(pg) = &c.postgres {
                    v["database"] = pg.database.clone().into();
                    v["server_version"] = pg.server_version.clone().into();
                    v["database_size"] = pg.database_size.into();
                    v["schema_only"] = pg.schema_only.into();
                    v["globals"] = pg.globals.into();
                    v["row_counts"] = serde_json::to_value(&pg.row_counts).unwrap_or_default();
                } else if let Some(t) = &c.tree {
                    v["files"] = t.files.into();
                    v["dirs"] = t.dirs.into();
                }
                v
            })
            .collect(),
    }
}

pub fn run(ctx: &Context, a: PointsArgs) -> Result<()> {
    let repo = ctx.setup.open(a.app.as_deref())?;
    let points: Vec<_> = repo
        .points()?
        .into_iter()
        .filter(|(_, p)| a.app.as_ref().is_none_or(|x| &p.app == x))
        .collect();
    // Where each point lives: the app's replicas are listed (one listing each).
    let mut replicas: Vec<(String, std::collections::HashSet<String>)> = Vec::new();
    if let (Some(app), Some(cfg)) = (&a.app, ctx.setup.config()?) {
        for t in cfg
            .app
            .get(app)
            .map(|x| x.copy_to.clone())
            .unwrap_or_default()
        {
            let names = ctx
                .setup
                .storage_named(&t)?
                .list(lifeboat_core::ObjectKind::Point)?
                .into_iter()
                .map(|e| e.name)
                .collect();
            replicas.push((t, names));
        }
    }
    let where_ = |id: &ObjectId| -> Vec<String> {
        replicas
            .iter()
            .filter(|(_, names)| names.contains(&id.to_hex()))
            .map(|(t, _)| t.clone())
            .collect()
    };
    if a.json {
        json(
            &points
                .iter()
                .map(|(id, p)| PointSummary {
                    copied_to: where_(id),
                    ..summary(id, p)
                })
                .collect::<Vec<_>>(),
        );
        return Ok(());
    }
    if points.is_empty() {
        println!("no points yet");
        return Ok(());
    }
    println!(
        "{:<9} {:<24} {:<12} {:<18} {:>10} {:>10}  CONTENTS{}",
        "ID",
        "TIME",
        "APP",
        "TAGS",
        "SIZE",
        "ADDED",
        if replicas.is_empty() {
            ""
        } else {
            "  COPIED TO"
        }
    );
    for (id, p) in &points {
        let s = summary(id, p);
        let contents: Vec<String> = p
            .components
            .iter()
            .map(|c| match c.kind {
                lifeboat_core::ComponentKind::Sqlite => "db".to_string(),
                lifeboat_core::ComponentKind::Postgres => "pg".to_string(),
                k => k.as_str().to_string(),
            })
            .collect();
        let copied = if replicas.is_empty() {
            String::new()
        } else {
            let w = where_(id);
            format!(
                "  {}",
                if w.is_empty() {
                    "-".into()
                } else {
                    w.join(",")
                }
            )
        };
        println!(
            "{:<9} {:<24} {:<12} {:<18} {:>10} {:>10}  {}{copied}",
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
