use clap::{Args, Subcommand};
use lifeboat_core::Result;

use super::Context;
use crate::output::{esc, json, local_time, outln};
use lifeboat_app::PasswordSource;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Add a password. The new one comes from LIFEBOAT_NEW_PASSWORD, --new-password-file
    /// or --new-password-command; the current one opens the repository as usual.
    Add(AddArgs),
    /// List key slots.
    List(ListArgs),
    /// Remove a key slot by id prefix (not the one you opened with, not the last one).
    ///
    /// A password stops opening the repository from then on; a process that already opened
    /// it with that password (a running `lifeboat run`: its continuous capture keeps the key
    /// it unlocked) goes on until it is restarted. Every slot unwraps the same master key, so
    /// removing a slot never revokes a copy of the key someone already has.
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// A label to recognise the slot by
    #[arg(long, default_value = "")]
    pub label: String,
    /// File whose first line is the new password
    #[arg(long)]
    pub new_password_file: Option<String>,
    /// Command printing the new password
    #[arg(long)]
    pub new_password_command: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Id (or prefix) of the slot
    pub id: String,
}

pub fn run(ctx: &Context, cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::Add(a) => {
            let src = PasswordSource {
                command: a.new_password_command,
                file: a.new_password_file,
            };
            let id = lifeboat_app::add_key(&ctx.setup, &a.label, &src)?;
            outln!("added key slot {}", &id[..8]);
        }
        KeyCommand::List(a) => {
            let keys = lifeboat_app::list_keys(&ctx.setup)?;
            if a.json {
                json(&keys)?;
            } else {
                outln!("{:<10} {:<25} {:<20} LABEL", "ID", "CREATED", "HOST");
                for k in keys {
                    if let Some(why) = &k.damaged {
                        outln!(
                            " {:<9} DAMAGED: {} (`lifeboat key remove {}` removes it)",
                            esc(&short(&k.id)),
                            esc(why),
                            esc(&short(&k.id))
                        );
                        continue;
                    }
                    outln!(
                        "{}{:<9} {:<25} {:<20} {}",
                        if k.current { "*" } else { " " },
                        esc(&short(&k.id)),
                        local_time(&k.created),
                        esc(&k.hostname),
                        esc(&k.label)
                    );
                }
            }
        }
        KeyCommand::Remove(a) => {
            let id = lifeboat_app::remove_key(&ctx.setup, &a.id)?;
            outln!("removed key slot {}", esc(&short(&id)));
        }
    }
    Ok(())
}

/// The first 8 characters of a slot's name (whatever the store calls it).
fn short(id: &str) -> String {
    id.chars().take(8).collect()
}
