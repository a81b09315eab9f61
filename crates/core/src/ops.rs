//! Repository-level operations (options in, report out). App-level backup and restore, which
//! need to know every source kind, live in `lifeboat-sources`.
pub mod check;
pub mod copy;
pub mod forget;
pub mod keys;
pub mod missing;
pub mod prune;
