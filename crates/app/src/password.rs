//! Where the repository password comes from, first match wins:
//! 1. `--password-command CMD` / `LIFEBOAT_PASSWORD_COMMAND` (stdout, trailing newline removed)
//! 2. `--password-file PATH` / `LIFEBOAT_PASSWORD_FILE` (first line)
//! 3. `LIFEBOAT_PASSWORD`
//! 4. the repository's `password_file` / `password_command` in `lifeboat.toml`
//!
//! The password itself never appears in logs or errors, and every buffer that held it is
//! wiped when dropped ([`Zeroizing`]).
use std::path::Path;
use std::process::Command;

use zeroize::Zeroizing;

use lifeboat_core::{Error, ErrorKind, Result};

/// Password settings gathered from flags, environment and config.
#[derive(Debug, Clone, Default)]
pub struct PasswordSource {
    /// A command that prints the password.
    pub command: Option<String>,
    /// A file whose first line is the password.
    pub file: Option<String>,
}

impl PasswordSource {
    /// Resolves the password. `config` holds the repository's settings from lifeboat.toml.
    pub fn resolve(&self, config: &PasswordSource, var_prefix: &str) -> Result<Zeroizing<Vec<u8>>> {
        let env = |k: &str| {
            std::env::var(format!("{var_prefix}{k}"))
                .ok()
                .filter(|v| !v.is_empty())
        };
        if let Some(cmd) = self.command.clone().or_else(|| env("_COMMAND")) {
            return from_command(&cmd);
        }
        if let Some(f) = self.file.clone().or_else(|| env("_FILE")) {
            return from_file(Path::new(&f));
        }
        if let Some(p) = env("") {
            return Ok(Zeroizing::new(p.into_bytes()));
        }
        if let Some(cmd) = &config.command {
            return from_command(cmd);
        }
        if let Some(f) = &config.file {
            return from_file(Path::new(f));
        }
        Err(Error::new(ErrorKind::Auth, "no repository password was given").with_hint(format!(
            "set {var_prefix}, {var_prefix}_FILE or {var_prefix}_COMMAND, pass --password-file/--password-command, or set password_file in lifeboat.toml"
        )))
    }
}

/// Reads the first line of a password file. Refused (kind `Refused`) when another user could
/// read it (the password opens every backup) or change it, or owns it: checked on the open
/// file, as OpenSSH does for private keys.
fn from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let fail = |e: std::io::Error| {
        Error::io(format!("read password file {}", path.display()), e).with_kind(ErrorKind::Auth)
    };
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let md = file.metadata().map_err(fail)?;
    let euid = crate::trust::effective_uid();
    if md.mode() & 0o077 != 0 || (md.uid() != euid && md.uid() != 0) {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "password file {} can be read or changed by other users (owner uid {}, mode {:o})",
                path.display(),
                md.uid(),
                md.mode() & 0o7777
            ),
        )
        .with_hint(format!(
            "make it yours and private: chown {euid} {0} && chmod 600 {0}",
            path.display()
        )));
    }
    let mut s = Zeroizing::new(String::new());
    file.read_to_string(&mut s).map_err(fail)?;
    let line = s.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Error::new(
            ErrorKind::Auth,
            format!("password file {} is empty", path.display()),
        ));
    }
    Ok(Zeroizing::new(line.as_bytes().to_vec()))
}

fn from_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut sh = Command::new("sh");
    // The command learns no password and no store credential from lifeboat's environment.
    lifeboat_sources::scrub_child_env(&mut sh);
    let out = sh
        .arg("-c")
        .arg(cmd)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::io("run password command", e).with_kind(ErrorKind::Auth))?;
    let mut stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Auth,
            format!("password command failed ({})", out.status),
        )
        .with_hint("run the command by hand to see why"));
    }
    while stdout.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        stdout.pop();
    }
    if stdout.is_empty() {
        return Err(Error::new(
            ErrorKind::Auth,
            "password command printed nothing",
        ));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12 item 5: passwords were plain `Vec<u8>`s, never wiped. Every source hands out
    /// a buffer that zeroes itself (and its spare capacity) when dropped.
    #[test]
    fn passwords_come_in_buffers_wiped_on_drop() {
        let p: Zeroizing<Vec<u8>> = from_command("printf 'pw\\n'").unwrap();
        assert_eq!(&p[..], b"pw");
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "secret\nrest\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p: Zeroizing<Vec<u8>> = from_file(&f).unwrap();
        assert_eq!(&p[..], b"secret");
        let src = PasswordSource {
            command: Some("echo from-cmd".into()),
            file: None,
        };
        let p: Zeroizing<Vec<u8>> = src
            .resolve(&PasswordSource::default(), "LIFEBOAT_TEST_UNSET_PW")
            .unwrap();
        assert_eq!(&p[..], b"from-cmd");
    }
}
