//! A repository in a local directory.
//!
//! Layout: [`ObjectKind::object_path`] under the directory (`config`, `keys/<id>`,
//! `packs/<2 hex>/<id>`, ...; FORMAT.md §1).
//! Writes go to `<dir>/.tmp-<random>` in the object's own directory, are fsynced, renamed
//! over the final name and the directory is fsynced (Litestream's file replica pattern), so
//! a crash leaves either nothing or the whole object under its name. Stray `.tmp-*` files
//! from a crash are ignored by `list` and reclaimed by prune.
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use lifeboat_core::{
    ListEntry, ObjectKind, ObjectWriter, RequestCounter, RequestStats, Storage, StorageError,
    StorageResult,
};

/// A repository directory.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
    counter: Arc<RequestCounter>,
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> StorageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound {
            what: what.to_string(),
        }
    } else {
        StorageError::Io {
            what: what.to_string(),
            source: e,
        }
    }
}

impl LocalStorage {
    /// A storage rooted at `root`. The directory is created by the first write (`init`).
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        let root = root.into();
        let root = std::path::absolute(&root).unwrap_or(root);
        LocalStorage {
            root,
            counter: Arc::default(),
        }
    }

    /// `rel` (a `/`-separated path from [`ObjectKind`]) under the root.
    fn under_root(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    fn path(&self, kind: ObjectKind, name: &str) -> PathBuf {
        self.under_root(&kind.object_path(name))
    }

    /// Creates `dir` and any missing parents, fsyncing each parent so the new entries are
    /// durable before an object inside them is reported written.
    fn create_dirs(&self, dir: &Path) -> std::io::Result<()> {
        let mut missing = Vec::new();
        let mut d = dir;
        while !d.is_dir() {
            missing.push(d.to_path_buf());
            match d.parent() {
                Some(p) => d = p,
                None => break,
            }
        }
        for m in missing.iter().rev() {
            match DirBuilder::new().mode(DIR_MODE).create(m) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            if let Some(parent) = m.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }

    fn describe(&self, kind: ObjectKind, name: &str) -> String {
        format!("{kind} {name} ({})", self.path(kind, name).display())
    }
}

/// Mode of every directory the storage creates: the owner only (key slots hold the
/// password-wrapped master key, readable slots invite offline guessing).
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every object file, set at creation (`open(O_CREAT|O_EXCL, 0600)`), never by a
/// later chmod.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Opens a new temp file exclusively, owner-only, never through a symlink.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn random_hex() -> StorageResult<String> {
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| StorageError::Io {
        what: "random temp name".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(hex::encode(rnd))
}

/// A streamed object: bytes go to a temp file; `finish` fsyncs it and renames it into place.
struct LocalWriter<'s> {
    storage: &'s LocalStorage,
    kind: ObjectKind,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl ObjectWriter for LocalWriter<'_> {
    fn write(&mut self, data: &[u8]) -> StorageResult<()> {
        let f = self.file.as_mut().expect("open until finish");
        f.write_all(data).map_err(|e| io(self.tmp.display(), e))
    }

    fn finish(mut self: Box<Self>, name: &str) -> StorageResult<()> {
        if !valid_name(name) {
            return Err(StorageError::Io {
                what: format!("{} {name:?}", self.kind),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "invalid object name",
                ),
            });
        }
        let path = self.storage.path(self.kind, name);
        let what = self.storage.describe(self.kind, name);
        self.storage.counter.put(1);
        let file = self.file.take().expect("open until finish");
        let res = (|| -> std::io::Result<()> {
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            let dir = path.parent().expect("object paths have a parent");
            if !dir.is_dir() {
                self.storage.create_dirs(dir)?;
            }
            fs::rename(&self.tmp, &path)?;
            sync_dir(dir)
        })();
        res.map_err(|source| StorageError::Io { what, source })
    }
}

impl Drop for LocalWriter<'_> {
    fn drop(&mut self) {
        // Not finished (error path) or finished (renamed away): removing is right or a no-op.
        drop(self.file.take());
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The whole file at `path`, refused as [`StorageError::TooLarge`] from its size before any
/// byte is read when it exceeds the kind's bound (and never more than the bound read, should
/// it grow meanwhile).
pub(crate) fn read_bounded(path: &Path, kind: ObjectKind, what: &str) -> StorageResult<Vec<u8>> {
    let f = File::open(path).map_err(|e| io(what, e))?;
    let size = f.metadata().map_err(|e| io(what, e))?.len();
    kind.check_size(what, size)?;
    let mut buf = Vec::with_capacity(size as usize);
    f.take(kind.max_size() + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io(what, e))?;
    kind.check_size(what, buf.len() as u64)?;
    Ok(buf)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        self.counter.list(1);
        let mut out = Vec::new();
        let mut scan = |dir: &Path| -> StorageResult<()> {
            let rd = match fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io(dir.display(), e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| io(dir.display(), e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                // An object deleted between the directory read and this call (a lease being
                // refreshed, a point being forgotten) is simply not listed.
                let md = match ent.metadata() {
                    Ok(md) => md,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(ent.path().display(), e)),
                };
                if md.is_file() {
                    out.push(ListEntry {
                        name,
                        size: md.len(),
                    });
                }
            }
            Ok(())
        };
        match kind {
            ObjectKind::Config => {
                if let Ok(md) = fs::metadata(self.path(kind, "config")) {
                    out.push(ListEntry {
                        name: "config".into(),
                        size: md.len(),
                    });
                }
            }
            _ if kind.fanned_out() => {
                let base = self.under_root(kind.dir());
                let rd = match fs::read_dir(&base) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(io(base.display(), e)),
                };
                let mut dirs = Vec::new();
                for ent in rd {
                    let ent = ent.map_err(|e| io(base.display(), e))?;
                    if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        dirs.push(ent.path());
                    }
                }
                for d in dirs {
                    scan(&d)?;
                }
            }
            _ => scan(&self.under_root(kind.dir()))?,
        }
        Ok(out)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        self.counter.get(1);
        read_bounded(&self.path(kind, name), kind, &self.describe(kind, name))
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        self.counter.get(1);
        let what = self.describe(kind, name);
        let mut f = File::open(self.path(kind, name)).map_err(|e| io(&what, e))?;
        let size = f.metadata().map_err(|e| io(&what, e))?.len();
        if offset.saturating_add(len) > size {
            return Err(StorageError::Truncated {
                what,
                size,
                wanted_end: offset + len,
            });
        }
        f.seek(SeekFrom::Start(offset)).map_err(|e| io(&what, e))?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(|e| io(&what, e))?;
        Ok(buf)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        if kind != ObjectKind::Config && !valid_name(name) {
            return Err(StorageError::Io {
                what: format!("{kind} {name:?}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "invalid object name",
                ),
            });
        }
        self.counter.put(1);
        let path = self.path(kind, name);
        let dir = path
            .parent()
            .expect("object paths have a parent")
            .to_path_buf();
        if !dir.is_dir() {
            self.create_dirs(&dir).map_err(|e| io(dir.display(), e))?;
        }
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), random_hex()?));
        let what = self.describe(kind, name);
        let res = (|| -> std::io::Result<()> {
            let mut f = create_private(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            sync_dir(&dir)
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(StorageError::Io { what, source: e });
        }
        Ok(())
    }

    fn create(&self, kind: ObjectKind) -> StorageResult<Box<dyn ObjectWriter + '_>> {
        // The temp file lives in the kind's top directory (e.g. `packs/`); `finish` renames
        // it into its final directory on the same filesystem, which is atomic.
        let dir = self.under_root(kind.dir());
        if !dir.is_dir() {
            self.create_dirs(&dir).map_err(|e| io(dir.display(), e))?;
        }
        let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), random_hex()?));
        let file = create_private(&tmp).map_err(|e| io(tmp.display(), e))?;
        Ok(Box::new(LocalWriter {
            storage: self,
            kind,
            tmp,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
        }))
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        self.counter.delete(1);
        let path = self.path(kind, name);
        fs::remove_file(&path).map_err(|e| io(self.describe(kind, name), e))?;
        if let Some(dir) = path.parent() {
            let _ = sync_dir(dir);
        }
        Ok(())
    }

    fn requests(&self) -> RequestStats {
        self.counter.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leases are written and deleted all the time; a listing that meets a name whose file is
    /// already gone must skip it, not fail (a prune once failed that way beside backups).
    #[test]
    fn listing_skips_objects_deleted_while_listing() {
        let d = tempfile::tempdir().unwrap();
        let s = Arc::new(LocalStorage::new(d.path()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let name = format!("{:016x}", i % 64);
                    let _ = s.write(ObjectKind::Lease, &name, b"x");
                    let _ = s.delete(ObjectKind::Lease, &format!("{:016x}", (i + 32) % 64));
                    i += 1;
                }
            })
        };
        for _ in 0..3000 {
            s.list(ObjectKind::Lease).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
    }
}
