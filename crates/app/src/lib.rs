//! lifeboat's app layer: the engine every front end shares (the CLI, the `run` daemon, the
//! web dashboard). It owns what an operator's setup means and the operations an operator runs;
//! a front end only parses its input, asks its questions, shows progress and prints.
//!
//! # Overview
//!
//! - [`Config`] is `lifeboat.toml` (repositories and apps; errors name the file, the line and
//!   the key); [`Location`] turns a path or URL into a `Storage`; [`PasswordSource`] finds
//!   the repository password.
//! - [`Setup`] is one invocation's settings (config file, repository override, password
//!   sources), resolved lazily into repositories.
#![deny(missing_docs)]

mod config;
mod destination;
mod password;
mod setup;

pub use config::{AppConfig, Config, KeepConfig, PostgresConfig, RepositoryConfig};
pub use destination::Location;
pub use password::PasswordSource;
pub use setup::{Setup, CONFIG_PATHS};
