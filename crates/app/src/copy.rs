//! Copy the points a replica lacks (off-site copies).
use lifeboat_core::{CopyReport, Error, ErrorKind, Progress, Result};
use serde::Serialize;

use crate::setup::Setup;

/// From where to where.
#[derive(Debug, Clone, Default)]
pub struct CopyRequest {
    /// The app whose repository is the source and whose `copy_to` lists the targets.
    pub app: Option<String>,
    /// Targets (a `[repository.NAME]`, a path or a URL); empty: the app's `copy_to`.
    pub to: Vec<String>,
    /// Source instead of the override / the app's repository.
    pub from: Option<String>,
}

/// One target copied.
#[derive(Debug, Clone, Serialize)]
pub struct Copied {
    /// Source location.
    pub from: String,
    /// Target location.
    pub to: String,
    /// What was copied.
    pub report: CopyReport,
    /// How long it took.
    #[serde(skip)]
    pub duration_ms: u64,
}

/// Copies to every target in turn; `each` sees each target's result as soon as it is done.
/// Recorded in the local audit log (a copy opens no repository with a password, so it writes
/// no audit record; the records already there are copied).
pub fn copy(
    setup: &Setup,
    req: &CopyRequest,
    progress: &dyn Progress,
    each: &mut dyn FnMut(&Copied),
) -> Result<Vec<Copied>> {
    crate::audit::audited(setup, "copy", req.app.as_deref(), || {
        run(setup, req, progress, each)
    })
    .map(|c| c.0)
}

/// The targets copied, for the audit log.
struct CopiedAll(Vec<Copied>);

impl crate::audit::Audited for CopiedAll {
    fn facts(&self, ev: &mut lifeboat_core::AuditEvent) {
        let targets: Vec<&str> = self.0.iter().map(|c| c.to.as_str()).collect();
        ev.destination = Some(targets.join(", "));
        ev.bytes = Some(self.0.iter().map(|c| c.report.bytes).sum());
        ev.message = format!(
            "{} points copied",
            self.0.iter().map(|c| c.report.points).sum::<usize>()
        );
    }
}

fn run(
    setup: &Setup,
    req: &CopyRequest,
    progress: &dyn Progress,
    each: &mut dyn FnMut(&Copied),
) -> Result<CopiedAll> {
    let from = match &req.from {
        Some(s) => setup.storage_named(s)?,
        None => setup.storage_only(req.app.as_deref())?,
    };
    let mut targets = req.to.clone();
    if targets.is_empty() {
        if let (Some(app), Some(cfg)) = (&req.app, setup.config()?) {
            targets = cfg
                .app
                .get(app)
                .map(|x| x.copy_to.clone())
                .unwrap_or_default();
        }
    }
    if targets.is_empty() {
        return Err(Error::new(ErrorKind::Usage, "no copy target").with_hint(
            "pass --to TARGET, or list targets in the app's `copy_to` in lifeboat.toml",
        ));
    }
    let mut done = Vec::new();
    for t in &targets {
        let to = setup.storage_named(t)?;
        let start = std::time::Instant::now();
        let report = lifeboat_core::copy(from.as_ref(), &to, progress)?;
        let c = Copied {
            from: from.location(),
            to: to.location(),
            report,
            duration_ms: start.elapsed().as_millis() as u64,
        };
        each(&c);
        done.push(c);
    }
    Ok(CopiedAll(done))
}
