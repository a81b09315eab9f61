use std::path::PathBuf;

use clap::Args;
use lifeboat_app::DemoRequest;
use lifeboat_core::Result;

use super::Context;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Work in this directory: a new one (created 0700), or an empty one of yours that only
    /// you can write to (default: a new private temporary directory)
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the directory afterwards (a temporary one stays private, 0700)
    #[arg(long)]
    pub keep: bool,
    /// Messages in the demo database before the backup starts
    #[arg(long, default_value_t = 20_000)]
    pub messages: u32,
    /// Run the Chatalot-shaped demo instead: PostgreSQL + uploads + secrets, the database
    /// restored into a new database. Needs a server: `--postgres=postgresql://USER@HOST:PORT/postgres`,
    /// or `--postgres` alone to use the PG* environment
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    pub postgres: Option<String>,
    /// Directory of psql, pg_dump and pg_restore for --postgres (else PATH)
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

pub fn run(ctx: &Context, a: DemoArgs) -> Result<()> {
    let req = DemoRequest {
        dir: a.dir,
        keep: a.keep,
        messages: a.messages,
        postgres: a.postgres,
        pg_bin: a.pg_bin,
    };
    lifeboat_app::demo(&req, &ctx.progress, &mut crate::output::Stdout)
}
