//! Prune: delete the data no point references, repack mostly-dead packs.
use lifeboat_core::{Progress, PruneOptions, PruneReport, Result};

use crate::setup::Setup;

/// Prunes the repository (the only one, or the override).
pub fn prune(setup: &Setup, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    let mut repo = setup.open(None)?;
    lifeboat_core::prune(&mut repo, opts, progress)
}
