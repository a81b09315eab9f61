//! Stopping long operations cleanly when the process is asked to stop.
//!
//! The flag is process-wide because what sets it is: the daemon (`lifeboat run`) sets it when
//! SIGTERM's grace period runs out. Long operations check it at safe points (every chunk a
//! backup stores or a prune repacks, every object a copy copies, every point a prune scans,
//! every object a prune's sweep deletes: a sweep is restartable from the start) and return
//! [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted) from there. What they leave is what
//! a crash there would leave, which the write order already makes harmless (no point is
//! visible until its last write; `docs/ARCHITECTURE.md`, "Order of writes"), but the lease is
//! released and the error is reported instead of the process vanishing. Nothing ever clears
//! the flag: a process asked to stop does not start new work.
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{err, Result};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running operation of this process to stop at its next safe point.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether [`request_stop`] was called.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// `Err(Interrupted)` once [`request_stop`] was called.
pub fn check() -> Result<()> {
    if stop_requested() {
        return Err(err!(
            Interrupted,
            "stopped because lifeboat was asked to stop; nothing partial was made visible"
        )
        .with_hint("run the operation again"));
    }
    Ok(())
}
