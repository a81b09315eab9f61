//! lifeboat: CLI + glue. Parses arguments, runs one library operation, maps the result to an
//! exit code (`docs/EXIT_CODES.md`). No backup logic lives here.
mod cli;
mod config;
mod demo;
mod demo_postgres;
mod destination;
mod output;
mod password;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `lifeboat points | head` must end quietly, like other Unix tools, not panic on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    output::init_logging(args.global.verbose, args.global.quiet);
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(e.kind().exit_code())
        }
    }
}
