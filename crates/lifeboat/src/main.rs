//! lifeboat: CLI + glue. Parses arguments, runs one library operation, maps the result to an
//! exit code (`docs/EXIT_CODES.md`). No backup logic lives here.
mod cli;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // SIGPIPE stays ignored (Rust's default): with the default action a psql or pg_restore
    // child that exits early would kill lifeboat in the middle of a restore, with no cleanup
    // and no message. Results are printed through `output::out_line`, never `println!` (which
    // panics on a failed write): a closed stdout (`lifeboat points | head`) ends quietly with
    // exit 0, a failed write (`> /dev/full`) is a one-line error, exit 1.
    let args = cli::Cli::parse();
    match &args.command {
        cli::Command::Run(r) => output::init_daemon_logging(args.global.verbose, r.log_json),
        _ => output::init_logging(args.global.verbose, args.global.quiet),
    }
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            output::print_error(&e);
            ExitCode::from(e.kind().exit_code())
        }
    }
}
