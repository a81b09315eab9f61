//! Check a repository: structure, and with `read_data` every byte.
use lifeboat_core::{CheckOptions, CheckReport, Error, ErrorKind, Progress, Result};

use crate::setup::Setup;

/// Checks the repository (the only one, or the override). Damage is in the report, not an
/// error: see [`verdict`].
pub fn check(setup: &Setup, opts: CheckOptions, progress: &dyn Progress) -> Result<CheckReport> {
    let mut repo = setup.open(None)?;
    lifeboat_core::check(&mut repo, opts, progress)
}

/// The error a check with problems ends in (exit code 5), once the report is shown.
pub fn verdict(report: &CheckReport) -> Result<()> {
    if report.problems.is_empty() {
        return Ok(());
    }
    Err(Error::new(ErrorKind::Corrupt, format!("check found {} problems", report.problems.len())).with_hint(
        "the objects named above are damaged or missing; points (and continuous chains) that depend on them cannot be restored in full. Restore from another copy of the repository if you have one",
    ))
}
