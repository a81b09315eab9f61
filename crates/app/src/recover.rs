//! Bare-machine recovery: with only the repository (URL, the store's credentials and the
//! password), bring an app back where it was (or under a new root) and write a
//! `lifeboat.toml` for this machine from the app's definition in the point
//! (`crate::definition`). The restore is the ordinary in-place restore (`crate::restore`):
//! every chunk authenticated, databases verified, a pre-restore point of anything already
//! there.
use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use lifeboat_core::{Error, ErrorKind, ObjectId, Progress, Result};
use lifeboat_sources::sqlite::Verify;
use lifeboat_sources::RestoredComponent;
use serde::Serialize;

use crate::restore::{plan, RestorePlan, RestoreRequest};
use crate::setup::Setup;

/// What to recover.
#[derive(Debug, Clone)]
pub struct RecoverRequest {
    /// The app (default: the repository's only app).
    pub app: Option<String>,
    /// Everything under this directory (a new root file system) instead of `/`.
    pub root: Option<PathBuf>,
    /// Where the new `lifeboat.toml` goes (default: `ROOT/etc/lifeboat/lifeboat.toml`).
    pub config_out: Option<PathBuf>,
    /// The repository as the operator named it (written into the new config).
    pub repo: String,
    /// How SQLite checks the restored databases.
    pub verify: Verify,
    /// PostgreSQL: restore onto this server.
    pub pg_url: Option<String>,
}

/// A recovery ready to run: the app and point chosen, the restore planned.
pub struct RecoverPlan {
    /// The restore of the app's latest point (in place, or under the root).
    pub restore: RestorePlan,
    /// The config written after it.
    pub config: String,
    config_out: PathBuf,
    root: Option<PathBuf>,
}

/// What a recovery did.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    /// The point restored (hex).
    pub point: String,
    /// The app.
    pub app: String,
    /// Each component restored.
    pub restored: Vec<RestoredComponent>,
    /// Where the new `lifeboat.toml` was written.
    pub config: String,
}

/// Chooses the app and its latest point and plans the restore; writes nothing.
pub fn recover_plan(setup: &Setup, req: &RecoverRequest) -> Result<RecoverPlan> {
    let app = match &req.app {
        Some(a) => a.clone(),
        None => {
            let repo = setup.open(None)?;
            let apps: BTreeSet<String> = repo
                .points()?
                .into_iter()
                .filter(|(_, p)| !p.tags.iter().any(|t| t == "pre-restore"))
                .map(|(_, p)| p.app)
                .collect();
            match apps.len() {
                1 => apps.into_iter().next().expect("one"),
                0 => {
                    return Err(Error::new(
                        ErrorKind::Usage,
                        "the repository holds no point to recover",
                    ))
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Usage,
                        format!(
                            "which app? the repository holds {}",
                            apps.into_iter().collect::<Vec<_>>().join(", ")
                        ),
                    )
                    .with_hint("name it: lifeboat recover --repo URL APP"))
                }
            }
        }
    };
    let config_out = req.config_out.clone().unwrap_or_else(|| {
        req.root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/"))
            .join("etc/lifeboat/lifeboat.toml")
    });
    if std::fs::symlink_metadata(&config_out).is_ok() {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("{} exists", config_out.display()),
        )
        .with_hint("this machine already has a lifeboat config: use `lifeboat restore`, or pass --config-out PATH"));
    }
    let restore = plan(
        setup,
        &RestoreRequest {
            app: Some(app.clone()),
            point: Some("latest".into()),
            to: req.root.clone(),
            verify: Some(req.verify),
            pg_url: req.pg_url.clone(),
            // A new machine has no config listing the app's paths yet: the point's are the
            // app's (the operator confirms them).
            allow_unlisted: true,
            ..RestoreRequest::default()
        },
    )?;
    let config = crate::definition::config_text(&req.repo, &app, restore.point(), &restore.id())?;
    Ok(RecoverPlan {
        restore,
        config,
        config_out,
        root: req.root.clone(),
    })
}

impl RecoverPlan {
    /// Restores, then writes the config (0600, never over an existing file).
    pub fn run(
        self,
        confirmed: bool,
        progress: &dyn Progress,
        saved: &mut dyn FnMut(&ObjectId),
    ) -> Result<RecoverReport> {
        let (id, app) = (self.restore.id(), self.restore.point().app.clone());
        let report = self.restore.run(confirmed, progress, saved)?;
        let out = &self.config_out;
        let fail = |e: std::io::Error| {
            Error::io(format!("write {}", out.display()), e).with_hint(
                "the app was restored; write the config by hand (`lifeboat recover --dry-run` prints it)",
            )
        };
        // Under --root, nothing the restore just wrote there (a symlink in `etc/`) can lead
        // the file out of it; never over an existing file or a symlink.
        let mut f = lifeboat_sources::create_new_file(self.root.as_deref(), out, 0o600)
            .map_err(|e| {
                e.with_hint("the app was restored; write the config by hand (`lifeboat recover --dry-run` prints it)")
            })?;
        f.write_all(self.config.as_bytes()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        Ok(RecoverReport {
            point: id.to_hex(),
            app,
            restored: report.restored,
            config: out.display().to_string(),
        })
    }
}
