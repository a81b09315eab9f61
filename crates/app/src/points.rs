//! The listing of recovery points, with the replicas that hold each.
use std::collections::HashSet;

use lifeboat_core::{is_future, ComponentKind, ObjectId, ObjectKind, Point, PointProofs, Result};
use serde::Serialize;

use crate::setup::Setup;

/// A point as listed (no secret content, only paths and numbers).
#[derive(Debug, Clone, Serialize)]
pub struct PointSummary {
    /// Point id (hex).
    pub id: String,
    /// Capture time (RFC 3339).
    pub time: String,
    /// App name.
    pub app: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Host that made it.
    pub hostname: String,
    /// Logical size of all components.
    pub size: u64,
    /// Bytes this point added to the repository.
    pub added: u64,
    /// How long the backup took.
    pub duration_ms: u64,
    /// Each component: kind, path, size and what its body records.
    pub components: Vec<serde_json::Value>,
    /// Dated more than 5 minutes after this machine's clock (core's `FUTURE_SKEW`): never
    /// `latest` unless `restore --allow-future`.
    pub future: bool,
    /// Replicas (the app's `copy_to`) that hold this point too; empty when none are configured.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub copied_to: Vec<String>,
    /// What restores and drills proved about it (`docs/FORMAT.md` §16): the most thorough
    /// check its databases passed and the newest drill.
    pub proofs: PointProofs,
    /// The components' kinds, in order (for display; not serialized).
    #[serde(skip)]
    pub kinds: Vec<ComponentKind>,
}

/// The summary of one point.
pub fn summary(id: &ObjectId, p: &Point) -> PointSummary {
    PointSummary {
        id: id.to_hex(),
        time: p.time.clone(),
        app: p.app.clone(),
        tags: p.tags.clone(),
        hostname: p.hostname.clone(),
        size: p.components.iter().map(|c| c.size).sum(),
        added: p.stats.bytes_stored,
        duration_ms: p.stats.duration_ms,
        future: is_future(p, jiff::Timestamp::now()),
        copied_to: Vec::new(),
        proofs: PointProofs::default(),
        kinds: p.components.iter().map(|c| c.kind).collect(),
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

/// The points of a repository.
#[derive(Debug, Clone, Serialize)]
pub struct PointsReport {
    /// The app's replicas (its `copy_to`) that were listed; empty when none are configured.
    pub replicas: Vec<String>,
    /// The points, oldest first, each with the replicas holding it.
    pub points: Vec<PointSummary>,
    /// The continuous windows (one per chain of deltas), oldest first: `restore --at` any
    /// moment inside one gets the database as of that moment (within its interval).
    pub windows: Vec<ContinuousWindow>,
}

/// One chain of continuous deltas: from its base point to its newest link.
#[derive(Debug, Clone, Serialize)]
pub struct ContinuousWindow {
    /// The app.
    pub app: String,
    /// The database.
    pub path: String,
    /// The point the chain starts from (hex).
    pub base: String,
    /// The first link's time (RFC 3339).
    pub from: String,
    /// The newest link's time.
    pub to: String,
    /// Links.
    pub links: u64,
    /// Links that compared every page.
    pub healed: u64,
}

/// The continuous windows of `app` (every app when `None`), from the delta records.
fn windows(repo: &lifeboat_core::Repository, app: Option<&str>) -> Result<Vec<ContinuousWindow>> {
    let mut by_chain: std::collections::BTreeMap<(String, String, String), ContinuousWindow> =
        std::collections::BTreeMap::new();
    for (_, d) in repo.deltas()? {
        if app.is_some_and(|a| a != d.app) {
            continue;
        }
        let w = by_chain
            .entry((d.app.clone(), d.path.clone(), d.base.clone()))
            .or_insert_with(|| ContinuousWindow {
                app: d.app.clone(),
                path: d.path.clone(),
                base: d.base.clone(),
                from: d.time.clone(),
                to: d.time.clone(),
                links: 0,
                healed: 0,
            });
        let t = d.timestamp().ok();
        if t < w.from.parse().ok() {
            w.from = d.time.clone();
        }
        if t > w.to.parse().ok() {
            w.to = d.time.clone();
        }
        w.links += 1;
        w.healed += d.healed as u64;
    }
    let mut out: Vec<ContinuousWindow> = by_chain.into_values().collect();
    out.sort_by_key(|w| w.from.parse::<jiff::Timestamp>().ok());
    Ok(out)
}

/// Lists the points of `app` (or every point) of its repository; with an app whose config
/// names replicas, also which replicas hold each point (one listing per replica).
pub fn points(setup: &Setup, app: Option<&str>) -> Result<PointsReport> {
    let repo = setup.open(app)?;
    let points: Vec<_> = repo
        .points()?
        .into_iter()
        .filter(|(_, p)| app.is_none_or(|x| p.app == x))
        .collect();
    let mut replicas: Vec<(String, HashSet<String>)> = Vec::new();
    if let (Some(app), Some(cfg)) = (app, setup.config()?) {
        for t in cfg
            .app
            .get(app)
            .map(|x| x.copy_to.clone())
            .unwrap_or_default()
        {
            let names = setup
                .storage_named(&t)?
                .list(ObjectKind::Point)?
                .into_iter()
                .map(|e| e.name)
                .collect();
            replicas.push((t, names));
        }
    }
    let wanted = points.iter().map(|(id, _)| id.to_hex()).collect();
    let mut proofs = repo.proofs_by_point(&wanted)?;
    let points = points
        .iter()
        .map(|(id, p)| PointSummary {
            proofs: proofs.remove(&id.to_hex()).unwrap_or_default(),
            copied_to: replicas
                .iter()
                .filter(|(_, names)| names.contains(&id.to_hex()))
                .map(|(t, _)| t.clone())
                .collect(),
            ..summary(id, p)
        })
        .collect();
    Ok(PointsReport {
        replicas: replicas.into_iter().map(|(t, _)| t).collect(),
        points,
        windows: windows(&repo, app)?,
    })
}
