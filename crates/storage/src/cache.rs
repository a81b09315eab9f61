//! A local cache of a remote repository's small immutable objects: key slots, index objects
//! and point manifests (restic keeps the same cache). With it, opening an S3 or SFTP
//! repository costs a few listings instead of one request per index and per point, which is
//! what keeps the backup of an unchanged app at a small, fixed number of requests.
//!
//! Safe by construction: those objects are named by the BLAKE3 hash of their bytes, so a
//! cached copy is used only when its hash still equals its name (a damaged or foreign file is
//! fetched again). Listings always go to the store, so a deleted object is never resurrected
//! from the cache; the cache only answers reads of names the caller got from a listing or a
//! point. Packs are never cached (restores read them once).
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use lifeboat_core::{
    ListEntry, ObjectId, ObjectKind, ObjectWriter, RequestStats, Storage, StorageResult,
};

/// A [`Storage`] that keeps key slots, indexes and points of `inner` in a local directory.
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    dir: PathBuf,
}

impl CachedStorage {
    /// Caches `inner` in `dir` (created on first use).
    pub fn new(inner: Arc<dyn Storage>, dir: impl Into<PathBuf>) -> CachedStorage {
        CachedStorage {
            inner,
            dir: dir.into(),
        }
    }

    /// The default cache directory for a storage: `$LIFEBOAT_CACHE_DIR`, else
    /// `$XDG_CACHE_HOME/lifeboat`, else `~/.cache/lifeboat`, then one directory per location.
    pub fn default_dir(location: &str) -> Option<PathBuf> {
        let base = std::env::var_os("LIFEBOAT_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("lifeboat"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("lifeboat"))
            })?;
        let id = ObjectId::of(location.as_bytes()).to_hex();
        Some(base.join(&id[..16]))
    }

    fn cached(kind: ObjectKind) -> bool {
        matches!(
            kind,
            ObjectKind::Key
                | ObjectKind::Index
                | ObjectKind::Point
                | ObjectKind::Delta
                | ObjectKind::Proof
                | ObjectKind::Audit
        )
    }

    /// The cached copy's path: the repository layout ([`ObjectKind::object_path`]) under the
    /// cache directory (`keys/<id>`, `index/<id>`, `points/<id>`, `deltas/<id>`: a `restore
    /// --at` on the host that captured them reads no delta record from the store;
    /// `proofs/<id>`: `status` and the daemon's watcher read every proof record at each look;
    /// `audit/<id>`: `lifeboat log` reads each record from the store once). `None` for kinds
    /// that are
    /// not cached and for names that are not plain alphanumerics (a name never becomes a path
    /// outside the cache directory).
    fn path(&self, kind: ObjectKind, name: &str) -> Option<PathBuf> {
        let plain = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric());
        (Self::cached(kind) && plain).then(|| self.dir.join(kind.object_path(name)))
    }

    /// Drops the cached copy of an object whose name now holds other bytes (or nothing):
    /// a read must return what the store holds, not an older copy.
    fn forget(&self, kind: ObjectKind, name: &str) {
        if let Some(path) = self.path(kind, name) {
            let _ = fs::remove_file(path);
        }
    }

    /// Best effort: a cache that cannot be written only costs requests.
    fn store(&self, kind: ObjectKind, name: &str, data: &[u8]) {
        let Some(path) = self.path(kind, name) else {
            return;
        };
        let res = (|| -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::DirBuilderExt;
            let dir = path.parent().expect("cache paths have a parent");
            fs::DirBuilder::new()
                .recursive(true)
                .mode(crate::local::DIR_MODE)
                .create(dir)?;
            let mut rnd = [0u8; 8];
            getrandom::fill(&mut rnd).map_err(|e| std::io::Error::other(e.to_string()))?;
            let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), hex::encode(rnd)));
            let written = (|| {
                let mut f = crate::local::create_private(&tmp)?;
                f.write_all(data)?;
                drop(f);
                fs::rename(&tmp, &path)
            })();
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            written
        })();
        if let Err(e) = res {
            tracing::debug!("cache write {} failed: {e}", path.display());
        }
    }
}

impl Storage for CachedStorage {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list(&self, kind: ObjectKind) -> StorageResult<Vec<ListEntry>> {
        self.inner.list(kind)
    }

    fn read(&self, kind: ObjectKind, name: &str) -> StorageResult<Vec<u8>> {
        let Some(path) = self.path(kind, name) else {
            return self.inner.read(kind, name);
        };
        if let Ok(b) = crate::local::read_bounded(&path, kind, &path.display().to_string()) {
            if ObjectId::of(&b).to_hex() == name {
                return Ok(b);
            }
        }
        let b = self.inner.read(kind, name)?;
        if ObjectId::of(&b).to_hex() == name {
            self.store(kind, name, &b);
        }
        Ok(b)
    }

    fn read_range(
        &self,
        kind: ObjectKind,
        name: &str,
        offset: u64,
        len: u64,
    ) -> StorageResult<Vec<u8>> {
        self.inner.read_range(kind, name, offset, len)
    }

    fn write(&self, kind: ObjectKind, name: &str, data: &[u8]) -> StorageResult<()> {
        // Forgotten first: whatever happens to the write, no older copy answers for the name.
        self.forget(kind, name);
        self.inner.write(kind, name, data)?;
        if Self::cached(kind) && ObjectId::of(data).to_hex() == name {
            self.store(kind, name, data);
        }
        Ok(())
    }

    fn delete(&self, kind: ObjectKind, name: &str) -> StorageResult<()> {
        self.forget(kind, name);
        self.inner.delete(kind, name)
    }

    fn create(&self, kind: ObjectKind) -> StorageResult<Box<dyn ObjectWriter + '_>> {
        let inner = self.inner.create(kind)?;
        if !Self::cached(kind) {
            return Ok(inner);
        }
        Ok(Box::new(CachedWriter {
            cache: self,
            kind,
            inner,
        }))
    }

    fn requests(&self) -> RequestStats {
        self.inner.requests()
    }
}

/// A streamed object of a cached kind: finishing it drops any cached copy of its name (the
/// bytes are not kept, so the next read fetches and caches them).
struct CachedWriter<'s> {
    cache: &'s CachedStorage,
    kind: ObjectKind,
    inner: Box<dyn ObjectWriter + 's>,
}

impl ObjectWriter for CachedWriter<'_> {
    fn write(&mut self, data: &[u8]) -> StorageResult<()> {
        self.inner.write(data)
    }

    fn finish(self: Box<Self>, name: &str) -> StorageResult<()> {
        let CachedWriter { cache, kind, inner } = *self;
        cache.forget(kind, name);
        inner.finish(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStorage;
    use std::os::unix::fs::PermissionsExt;

    /// Issue 12 item 5: cached key slots were written with umask modes (0644) and a
    /// predictable temp name. Every cache directory is 0700 and every file 0600.
    #[test]
    fn cache_files_and_dirs_are_owner_only_under_umask_022() {
        // SAFETY: umask only changes the mode of files this process creates from now on.
        unsafe { libc::umask(0o022) };
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cache");
        let c = CachedStorage::new(Arc::new(MemoryStorage::new()), &dir);
        for kind in [
            ObjectKind::Key,
            ObjectKind::Index,
            ObjectKind::Point,
            ObjectKind::Delta,
            ObjectKind::Proof,
            ObjectKind::Audit,
        ] {
            let data = format!("{kind} bytes").into_bytes();
            let name = ObjectId::of(&data).to_hex();
            c.write(kind, &name, &data).unwrap();
            assert_eq!(c.read(kind, &name).unwrap(), data);
        }
        let mut stack = vec![dir.clone()];
        let mut files = 0;
        while let Some(p) = stack.pop() {
            let md = fs::symlink_metadata(&p).unwrap();
            let mode = md.permissions().mode() & 0o777;
            if md.is_dir() {
                assert_eq!(mode, 0o700, "{}", p.display());
                for e in fs::read_dir(&p).unwrap() {
                    stack.push(e.unwrap().path());
                }
            } else {
                assert!(!p.file_name().unwrap().to_string_lossy().starts_with(".tmp"));
                assert_eq!(mode, 0o600, "{}", p.display());
                files += 1;
            }
        }
        assert_eq!(files, 6);
    }
}
