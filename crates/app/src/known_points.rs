//! What this machine knows about each repository's newest points: per repository (its config
//! id) and app, the newest point lifeboat wrote (backup) or restored here. `latest` is checked
//! against it, so a point deleted or damaged in the store cannot make `restore latest` quietly
//! return older data ([`check_latest`]).
//!
//! It also remembers each app's last in-place restore done here and the pre-restore point
//! taken before it ([`LastRestore`]), which `lifeboat rollback` undoes.
//!
//! One small JSON file per repository, `<state dir>/known-points/<config id>.json`:
//! `{"version": 1, "apps": {"<app>": {"id": "<hex>", "time": "<RFC 3339>"}},
//! "restores": {"<app>": {"restored": "<hex>", "restored_time": "...", "pre_restore": "<hex>",
//! "at": "..."}}}` (`restores` only when there is one), in the state directory
//! (`state_dir.rs`), written atomically under an exclusive `flock` of `<config id>.lock` (two
//! backups of one repository must not lose each other's update).
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use lifeboat_core::{
    is_future, Error, ErrorKind, ObjectId, ObjectKind, Point, Repository, Result, StorageError,
};
use serde::{Deserialize, Serialize};

use crate::state_dir::{create_dir, state_dir, write_atomic};

const VERSION: u32 = 1;

/// The newest point of one app known here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Known {
    /// Point id (hex).
    pub id: String,
    /// Its capture time (RFC 3339).
    pub time: String,
}

/// The last in-place restore of one app done here, which `lifeboat rollback` undoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRestore {
    /// The point restored (hex).
    pub restored: String,
    /// Its capture time (RFC 3339).
    pub restored_time: String,
    /// The pre-restore point taken just before: the state the restore replaced (hex).
    pub pre_restore: String,
    /// When the restore ran (RFC 3339).
    pub at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    apps: BTreeMap<String, Known>,
    /// Added without a version change: older lifeboats ignore the field (and drop it when they
    /// rewrite the file, which only loses what `rollback` would undo).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    restores: BTreeMap<String, LastRestore>,
}

fn file_of(dir: &Path, repo_id: &str) -> Option<PathBuf> {
    // The config id is hex (a name never becomes a path outside the directory).
    if repo_id.is_empty() || !repo_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some(dir.join("known-points").join(format!("{repo_id}.json")))
}

fn read_state(path: &Path) -> StateFile {
    match std::fs::read(path) {
        Ok(b) => match serde_json::from_slice::<StateFile>(&b) {
            Ok(s) if s.version == VERSION => s,
            Ok(s) => {
                tracing::warn!(
                    "ignoring {}: version {} is not {VERSION}",
                    path.display(),
                    s.version
                );
                StateFile::default()
            }
            Err(e) => {
                tracing::warn!("ignoring unreadable {}: {e}", path.display());
                StateFile::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile::default(),
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            StateFile::default()
        }
    }
}

/// The newest points known here for repository `repo_id`, by app.
pub(crate) fn known(repo_id: &str) -> BTreeMap<String, Known> {
    state_dir()
        .and_then(|d| file_of(&d, repo_id))
        .map(|p| read_state(&p).apps)
        .unwrap_or_default()
}

/// The newest point of `app` in repository `repo_id` that this machine wrote or restored:
/// the one a backup may reuse unchanged files from.
pub(crate) fn newest(repo_id: &str, app: &str) -> Option<ObjectId> {
    known(repo_id)
        .get(app)
        .and_then(|k| ObjectId::from_hex(&k.id))
}

/// The last in-place restore of `app` in repository `repo_id` done here, if remembered.
pub(crate) fn last_restore(repo_id: &str, app: &str) -> Option<LastRestore> {
    state_dir()
        .and_then(|d| file_of(&d, repo_id))
        .and_then(|p| read_state(&p).restores.remove(app))
}

/// Remembers `last` as the last in-place restore of `app` (what `lifeboat rollback` undoes).
/// A failure to write is a warning: the restore it follows did happen.
pub(crate) fn record_restore(repo: &Repository, app: &str, last: LastRestore) {
    let r = update(&repo.config().id, |s| {
        s.restores.insert(app.to_string(), last.clone());
        true
    });
    if let Err(e) = r {
        tracing::warn!(
            "could not remember pre-restore point {} for `lifeboat rollback {app}`: {e}",
            last.pre_restore
        );
    }
}

fn io(what: &Path, e: std::io::Error) -> Error {
    Error::io(what.display(), e)
}

/// Changes the file of `repo_id` under its lock: `change` gets the apps and says whether it
/// changed them.
fn update(repo_id: &str, change: impl FnOnce(&mut StateFile) -> bool) -> Result<()> {
    let Some(dir) = state_dir() else {
        tracing::debug!("no state directory (no HOME); the newest point is not remembered");
        return Ok(());
    };
    let Some(path) = file_of(&dir, repo_id) else {
        return Ok(());
    };
    let parent = path.parent().expect("has a parent");
    create_dir(parent).map_err(|e| io(parent, e))?;
    let lock_path = parent.join(format!("{repo_id}.lock"));
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)
        .map_err(|e| io(&lock_path, e))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io(&lock_path, std::io::Error::last_os_error()));
    }
    let mut state = read_state(&path);
    if !change(&mut state) {
        return Ok(());
    }
    state.version = VERSION;
    // Under the lock the temp name is ours.
    let mut text = serde_json::to_vec_pretty(&state).expect("serialisable");
    text.push(b'\n');
    write_atomic(&path, &text).map_err(|e| io(&path, e))?;
    drop(lock);
    Ok(())
}

/// Records `point` as the newest of its app in `repo` if it is newer than the one known (a
/// `pre-restore` point, one dated in the future or one with no valid time is never recorded).
/// A failure to write is a warning: the backup or restore it follows did succeed.
pub(crate) fn record(repo: &Repository, id: &ObjectId, point: &Point) {
    if point.tags.iter().any(|t| t == "pre-restore") {
        return;
    }
    let Ok(time) = point.timestamp() else { return };
    if is_future(point, jiff::Timestamp::now()) {
        return;
    }
    let entry = Known {
        id: id.to_hex(),
        time: point.time.clone(),
    };
    let r = update(&repo.config().id, |s| {
        let apps = &mut s.apps;
        let newer = apps.get(&point.app).is_none_or(|k| {
            k.time
                .parse::<jiff::Timestamp>()
                .map_or(true, |t| time >= t && *k != entry)
        });
        if newer {
            apps.insert(point.app.clone(), entry.clone());
        }
        newer
    });
    if let Err(e) = r {
        tracing::warn!(
            "could not remember point {} as the newest of app {}: {e}",
            id.short(),
            point.app
        );
    }
}

/// Forgets the known points among `ids` (points this machine deleted on purpose).
pub(crate) fn forget(repo: &Repository, ids: &[String]) {
    if ids.is_empty()
        || known(&repo.config().id)
            .values()
            .all(|k| !ids.contains(&k.id))
    {
        return;
    }
    let r = update(&repo.config().id, |s| {
        let before = s.apps.len();
        s.apps.retain(|_, k| !ids.contains(&k.id));
        s.apps.len() != before
    });
    if let Err(e) = r {
        tracing::warn!("could not update the known newest points: {e}");
    }
}

/// When `latest` has been resolved (to a point captured at `latest`, or to nothing): every
/// point known here as the newest of `app` (of every app when `None`) must still be there and
/// readable, unless a point at least as new was found (written elsewhere; the known one may
/// have been forgotten by retention since). Otherwise `latest` would quietly be an older point:
/// an error of kind `Corrupt` names the known point, unless `allow_older` (then a warning).
pub(crate) fn check_latest(
    repo: &Repository,
    app: Option<&str>,
    latest: Option<jiff::Timestamp>,
    allow_older: bool,
) -> Result<()> {
    let known = known(&repo.config().id);
    if known.is_empty() {
        return Ok(());
    }
    // Whether a point is there is the store's listing, what `latest` is chosen from: a remote
    // store's local cache may still answer a read for a point deleted from the store.
    let listed: std::collections::HashSet<String> = repo
        .storage()
        .list(ObjectKind::Point)?
        .into_iter()
        .map(|e| e.name)
        .collect();
    for (name, k) in known {
        if app.is_some_and(|a| a != name) {
            continue;
        }
        let Some(id) = ObjectId::from_hex(&k.id) else {
            continue;
        };
        let known_time = k.time.parse::<jiff::Timestamp>().ok();
        if let (Some(l), Some(t)) = (latest, known_time) {
            if l >= t {
                continue;
            }
        }
        let what = if !listed.contains(&k.id) {
            "is missing from the repository".to_string()
        } else {
            match repo.read_point(&id) {
                Ok(p) if p.app == name => continue,
                Ok(_) => "is not a point of this app".to_string(),
                Err(e) => match repo.storage().read(ObjectKind::Point, &k.id) {
                    Err(StorageError::NotFound { .. }) => {
                        "is missing from the repository".to_string()
                    }
                    _ => format!("is damaged: {}", e.message()),
                },
            }
        };
        let msg = format!(
            "the newest point of app {name} that this machine wrote or restored, {} ({}), {what}; `latest` would be an older point, and no newer one is there",
            k.id, k.time
        );
        if allow_older {
            tracing::warn!("{msg} (--allow-older)");
            continue;
        }
        return Err(Error::new(ErrorKind::Corrupt, msg).with_hint(
            "run `lifeboat check` and find out what removed or damaged it (another copy, a replica, may still hold it); to restore the newest point that is left, pass --allow-older; the next backup makes its point the newest known",
        ));
    }
    Ok(())
}
