//! Prune: delete the data no point references, repack mostly-dead packs.
use lifeboat_core::{AuditEvent, Progress, PruneOptions, PruneReport, Result};

use crate::audit::{audited, Audited};
use crate::setup::Setup;

/// Prunes the repository (the only one, or the override), and records it in the audit log.
pub fn prune(setup: &Setup, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    audited(setup, "prune", None, || {
        let mut repo = setup.open(None)?;
        lifeboat_core::prune(&mut repo, opts, progress)
    })
}

impl Audited for PruneReport {
    fn facts(&self, ev: &mut AuditEvent) {
        ev.bytes = Some(self.bytes_deleted);
        ev.message = format!(
            "{} packs deleted, {} repacked, {} deferred",
            self.packs_deleted,
            self.packs_repacked,
            self.deferred.len()
        );
    }
}
