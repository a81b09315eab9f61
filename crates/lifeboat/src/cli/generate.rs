//! For packagers: `lifeboat completions SHELL` prints a completion script and `lifeboat man`
//! prints the man page (or writes one page per subcommand with `--dir`), both generated from
//! the same clap definition as `--help`, so they never drift from the binary.
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory};
use lifeboat_core::{Error, Result};

use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write lifeboat.1 and one lifeboat-SUBCOMMAND.1 per subcommand into this directory
    /// (created if missing) instead of printing lifeboat.1 to stdout
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(a: CompletionsArgs) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "lifeboat", &mut buf);
    write_stdout(&buf)
}

pub fn man(a: ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            let what = format!("write man pages to {}", dir.display());
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&what, e))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| Error::io(&what, e))?;
            crate::output::out_line(format_args!("man pages written to {}", dir.display()))
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::io("render the man page", e))?;
            write_stdout(&buf)
        }
    }
}

/// Through [`crate::output::Stdout`], so `lifeboat man | head` ends quietly as other output does.
fn write_stdout(buf: &[u8]) -> Result<()> {
    let mut out = crate::output::Stdout;
    out.write_all(buf)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("write to standard output", e))
}
