//! Progress reporting. The core reports; the CLI draws (indicatif on a terminal, nothing
//! otherwise). Implementations must be cheap: `inc` is called per chunk.
/// A progress sink.
pub trait Progress: Send + Sync {
    /// Starts a phase with a total (bytes or items) and a short label.
    fn start(&self, _label: &str, _total: u64) {}
    /// Advances by `n`.
    fn inc(&self, _n: u64) {}
    /// Ends the current phase.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;
impl Progress for NoProgress {}
