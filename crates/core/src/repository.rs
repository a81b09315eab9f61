//! An open repository: storage + config + unlocked master key + (once loaded) the index.
use std::collections::HashSet;
use std::sync::Arc;

use crate::crypto::MasterKey;
use crate::error::{err, Error, Result};
use crate::format::config::{ChunkerParams, RepoConfig, FORMAT_NAME, REPO_VERSION};
use crate::format::index::IndexFile;
use crate::format::key::{KdfParams, KeyFile};
use crate::format::object;
use crate::format::point::{Point, POINT_MAGIC};
use crate::format::prune::{PruneRecord, PRUNE_MAGIC};
use crate::id::ObjectId;
use crate::index::Index;
use crate::reader::ChunkReader;
use crate::storage::{ObjectKind, Storage, StorageError};
use crate::writer::ChunkWriter;

/// An unlocked repository.
pub struct Repository {
    storage: Arc<dyn Storage>,
    config: RepoConfig,
    key: MasterKey,
    key_name: String,
    /// The argon2id cost of the slot that unlocked it (new slots get the same).
    kdf: KdfParams,
    index: Index,
    /// The index objects whose entries `index` holds, when it was built by
    /// [`Repository::load_index`] (not by [`Repository::load_index_from`]): a later load with
    /// the same prune records reads only the index objects written since (objects are named by
    /// their content, so a name seen once means the same entries).
    index_names: Option<HashSet<String>>,
    seen_prunes: Vec<String>,
    /// Lifetime of the leases this repository's sessions take ([`crate::lease_ttl`]; tests
    /// shorten it).
    pub(crate) lease_ttl: std::time::Duration,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Repository({})", self.storage.location())
    }
}

/// Reads the config of the repository at `storage`, with clear errors when it is missing,
/// not lifeboat's, or newer than this build.
pub fn read_config(storage: &dyn Storage) -> Result<RepoConfig> {
    match storage.read(ObjectKind::Config, "config") {
        Ok(b) => RepoConfig::parse(&b, &storage.location()),
        Err(StorageError::NotFound { .. }) => Err(err!(
            Repository,
            "no lifeboat repository at {} (there is no config file)",
            storage.location()
        )
        .with_hint("check the path, or create a repository there with `lifeboat init`")),
        Err(e) => Err(Error::from(e).context("read repository config")),
    }
}

impl Repository {
    /// Creates a new repository in empty storage, with one key slot for `password`.
    pub fn init(storage: Arc<dyn Storage>, password: &[u8], kdf: KdfParams) -> Result<Repository> {
        match storage.read(ObjectKind::Config, "config") {
            Ok(_) => return Err(err!(
                Refused,
                "{} already holds a lifeboat repository",
                storage.location()
            )
            .with_hint(
                "use it as it is, or choose an empty location; init never overwrites a repository",
            )),
            Err(StorageError::NotFound { .. }) => {}
            Err(e) => return Err(Error::from(e).context("look for an existing repository")),
        }
        if password.is_empty() {
            return Err(
                err!(Usage, "the password is empty").with_hint("choose a non-empty password")
            );
        }
        let config = RepoConfig {
            format: FORMAT_NAME.into(),
            version: REPO_VERSION,
            id: hex::encode(crate::crypto::random_array::<16>()?),
            created: jiff::Timestamp::now().to_string(),
            chunker: ChunkerParams::default(),
        };
        let key = MasterKey::generate()?;
        let slot = KeyFile::wrap(&key, password, &config.id, kdf, "initial")?;
        let slot_bytes = slot.to_bytes();
        let key_name = ObjectId::of(&slot_bytes).to_hex();
        // Key first, config last: a location with a config always has a usable key.
        storage.write(ObjectKind::Key, &key_name, &slot_bytes)?;
        storage.write(ObjectKind::Config, "config", &config.to_bytes())?;
        Ok(Repository {
            storage,
            config,
            key,
            key_name,
            kdf,
            index: Index::default(),
            index_names: None,
            seen_prunes: Vec::new(),
            lease_ttl: crate::lease::lease_ttl(),
        })
    }

    /// The repository opened again with the key this one was unlocked with: its config read
    /// again (and refused if its id changed: another repository was put at the location), an
    /// empty index, and no key derivation (argon2id costs 64 MiB of memory and ~0.4 s of CPU
    /// at the default cost, each time). For a process that opens its repository many times
    /// (`lifeboat run`: a capture's new chains, its backups). A key slot removed meanwhile
    /// does not lock it out: the master key is what it holds.
    pub fn reopen(&self) -> Result<Repository> {
        let config = read_config(self.storage.as_ref())?;
        if config.id != self.config.id {
            return Err(err!(
                Repository,
                "the repository at {} is not the one opened before (its id changed)",
                self.storage.location()
            )
            .with_hint(
                "another repository was put at this location; check it, then restart lifeboat",
            ));
        }
        Ok(Repository {
            storage: Arc::clone(&self.storage),
            config,
            key: self.key.duplicate(),
            key_name: self.key_name.clone(),
            kdf: self.kdf,
            index: Index::default(),
            index_names: None,
            seen_prunes: Vec::new(),
            lease_ttl: self.lease_ttl,
        })
    }

    /// Opens an existing repository with `password` (tries every key slot). Does not load the
    /// index: a session does ([`Repository::begin_backup`], [`Repository::begin_restore`]).
    pub fn open(storage: Arc<dyn Storage>, password: &[u8]) -> Result<Repository> {
        let config = read_config(storage.as_ref())?;
        let slots = storage.list(ObjectKind::Key)?;
        if slots.is_empty() {
            return Err(err!(Corrupt, "repository {} has no key slots", storage.location())
                .with_hint("the keys/ directory is empty or missing; without a key slot the data cannot be decrypted"));
        }
        // Every slot is tried: a damaged slot, or one written by a newer lifeboat, must not
        // stop another slot from opening the repository. Only when none opens do those
        // reasons become the error.
        let mut newer = None;
        let mut damaged = 0usize;
        for slot in &slots {
            let bytes = match storage.read(ObjectKind::Key, &slot.name) {
                Ok(b) => b,
                Err(e @ StorageError::TooLarge { .. }) => {
                    tracing::warn!("skipping damaged key slot {}: {e}", slot.name);
                    damaged += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let file = match KeyFile::parse(&bytes, &slot.name) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("skipping damaged key slot {}: {e}", slot.name);
                    damaged += 1;
                    continue;
                }
            };
            let opened = match file.unwrap_key(password, &config.id) {
                Ok(k) => k,
                Err(e) if e.kind() == crate::ErrorKind::Repository => {
                    newer = Some(e);
                    continue;
                }
                Err(e) => {
                    tracing::warn!("skipping key slot {}: {e}", slot.name);
                    damaged += 1;
                    continue;
                }
            };
            if let Some(key) = opened {
                tracing::debug!(slot = %slot.name, "unlocked");
                return Ok(Repository {
                    storage,
                    config,
                    key,
                    key_name: slot.name.clone(),
                    kdf: file.params,
                    index: Index::default(),
                    index_names: None,
                    seen_prunes: Vec::new(),
                    lease_ttl: crate::lease::lease_ttl(),
                });
            }
        }
        if let Some(e) = newer {
            return Err(e);
        }
        if damaged == slots.len() {
            return Err(err!(Corrupt, "every key slot of repository {} is damaged", storage.location())
                .with_hint("without a readable key slot the data cannot be decrypted; restore keys/ from another copy"));
        }
        Err(err!(Auth, "wrong password for repository {}: no key slot accepts it", storage.location())
            .with_hint("check LIFEBOAT_PASSWORD, --password-file or --password-command; `lifeboat key list` shows the slots"))
    }

    /// Reads every index object into memory. Packs condemned by a pending prune record are
    /// loaded last and flagged: they serve reads, never deduplication. The names of the
    /// records seen are kept ([`Repository::seen_prunes`]) for the caller's lease.
    pub(crate) fn load_index(&mut self) -> Result<()> {
        self.load_index_with(false)
    }

    /// [`Repository::load_index`] that fails on any index object it cannot read, instead of
    /// skipping it: what prune needs (a skipped index would make live chunks look dead).
    pub(crate) fn load_index_strict(&mut self) -> Result<()> {
        self.load_index_with(true)
    }

    fn load_index_with(&mut self, strict: bool) -> Result<()> {
        let records = self.prune_records()?;
        let mut condemned_indexes = HashSet::new();
        let mut condemned_packs = HashSet::new();
        for (_, r) in &records {
            condemned_indexes.extend(r.indexes.iter().cloned());
            condemned_packs.extend(r.packs.iter().filter_map(|p| ObjectId::from_hex(p)));
        }
        let record_names: Vec<String> = records.into_iter().map(|(n, _)| n).collect();
        let listed: Vec<String> = self
            .storage
            .list(ObjectKind::Index)?
            .into_iter()
            .map(|e| e.name)
            .collect();
        // Reused: the same prune records as the last load (so the same packs condemned), and
        // every index object read then is still there (none was deleted by a prune since).
        // Never for prune (`strict`): what it marks live must come from a load of every index
        // object as it is now.
        let reuse = self.index_names.take().filter(|names| {
            !strict && record_names == self.seen_prunes && {
                let now: HashSet<&String> = listed.iter().collect();
                names.iter().all(|n| now.contains(n))
            }
        });
        let (mut index, mut names) = match reuse {
            Some(names) => (std::mem::take(&mut self.index), names),
            None => (Index::default(), HashSet::new()),
        };
        let new: Vec<&String> = listed.iter().filter(|n| !names.contains(*n)).collect();
        let (later, first): (Vec<&String>, Vec<&String>) = new
            .into_iter()
            .partition(|n| condemned_indexes.contains(*n));
        let added = !first.is_empty() || !later.is_empty();
        for name in first.into_iter().chain(later) {
            if self.add_index_object(&mut index, name, &condemned_packs, strict)? {
                names.insert(name.clone());
            }
        }
        if added {
            index.finish();
        }
        tracing::debug!(chunks = index.len(), "index loaded");
        self.index = index;
        self.index_names = Some(names);
        self.seen_prunes = record_names;
        Ok(())
    }

    fn add_index_object(
        &self,
        index: &mut Index,
        name: &str,
        condemned: &HashSet<ObjectId>,
        strict: bool,
    ) -> Result<bool> {
        // A damaged index must not stop every later backup and restore: its chunks are
        // simply unknown (a backup stores them again; `check` names the damaged object).
        match self.read_index(name) {
            Ok(file) => {
                for (pack, entries) in &file.packs {
                    index.add_pack_as(*pack, entries, condemned.contains(pack));
                }
                return Ok(true);
            }
            Err(e) if strict => {
                return Err(e.context("prune needs every index object").with_hint(
                    "run `lifeboat check`; prune deletes nothing while an index cannot be read",
                ))
            }
            Err(e) => tracing::warn!("ignoring damaged index {name}: {e} (run `lifeboat check`)"),
        }
        Ok(false)
    }

    /// The prune records [`Repository::load_index`] saw.
    pub(crate) fn seen_prunes(&self) -> &[String] {
        &self.seen_prunes
    }

    /// Every readable prune record (`prune/<id>`), by name. A damaged one is skipped with a
    /// warning: its deletions then never run, which loses nothing.
    pub(crate) fn prune_records(&self) -> Result<Vec<(String, PruneRecord)>> {
        let mut out = Vec::new();
        for e in self.storage.list(ObjectKind::Prune)? {
            let what = format!("prune record {}", e.name);
            let read = self
                .storage
                .read(ObjectKind::Prune, &e.name)
                .map_err(Error::from)
                .and_then(|b| {
                    verify_name(&e.name, &b, &what)?;
                    object::open(&self.key, PRUNE_MAGIC, &b, &what)
                })
                .and_then(|p| PruneRecord::decode(&p, &what));
            match read {
                Ok(r) => out.push((e.name, r)),
                Err(err) => tracing::warn!("ignoring {what}: {err}"),
            }
        }
        Ok(out)
    }

    /// Reads and decodes one index object.
    pub(crate) fn read_index(&self, name: &str) -> Result<IndexFile> {
        let what = format!("index {name}");
        let bytes = self.storage.read(ObjectKind::Index, name)?;
        verify_name(name, &bytes, &what)?;
        IndexFile::open(&self.key, &bytes, &what)
    }

    /// Replaces the in-memory index (check builds its own from the readable index objects).
    pub(crate) fn load_index_from(&mut self, index: Index) {
        self.index_names = None;
        self.index = index;
    }

    /// A writer for new chunks (core only: others get one from a [`crate::BackupSession`]).
    pub(crate) fn writer(&self) -> ChunkWriter<'_> {
        ChunkWriter::new(
            Arc::clone(&self.storage),
            &self.key,
            &self.index,
            self.config.chunker,
        )
    }

    /// The ids a backup would give the chunks of `reader` (the same keyed chunker, the same
    /// keyed ids), storing nothing; and the bytes read. How a drill compares a restored file
    /// with the point's record of it.
    pub fn chunk_ids(&self, reader: impl std::io::Read) -> Result<(Vec<crate::ChunkId>, u64)> {
        let mut ids = Vec::new();
        let total = crate::writer::cut_stream(
            reader,
            self.config.chunker,
            self.key.chunker_seed(),
            |chunk| {
                ids.push(self.key.chunk_id(chunk));
                Ok(())
            },
        )?;
        Ok((ids, total))
    }

    /// A reader of stored chunks (core only: others get one from a session).
    pub(crate) fn reader(&self) -> ChunkReader<'_> {
        ChunkReader::new(Arc::clone(&self.storage), &self.key, &self.index)
    }

    /// Writes a point manifest; this is what makes a backup visible. Only
    /// [`crate::BackupSession::commit`] calls it (after the lease check).
    pub(crate) fn write_point(&self, point: &Point) -> Result<ObjectId> {
        let bytes = object::seal(&self.key, POINT_MAGIC, &point.encode())?;
        let id = ObjectId::of(&bytes);
        self.storage
            .write(ObjectKind::Point, &id.to_hex(), &bytes)
            .map_err(|e| Error::from(e).context("write point"))?;
        Ok(id)
    }

    /// Reads one point.
    pub fn read_point(&self, id: &ObjectId) -> Result<Point> {
        let what = format!("point {}", id.to_hex());
        let bytes = self.storage.read(ObjectKind::Point, &id.to_hex())?;
        verify_name(&id.to_hex(), &bytes, &what)?;
        let payload = object::open(&self.key, POINT_MAGIC, &bytes, &what)?;
        Point::decode(&payload, &what)
    }

    /// The names (hex ids) of the points in storage, from one listing, nothing read.
    pub(crate) fn point_names(&self) -> Result<std::collections::HashSet<String>> {
        Ok(self
            .storage
            .list(ObjectKind::Point)?
            .into_iter()
            .map(|e| e.name)
            .collect())
    }

    /// Every point, or an error if one cannot be read (a point deleted meanwhile is skipped):
    /// what prune needs, since a skipped point's data would look dead.
    pub fn points_strict(&self) -> Result<Vec<(ObjectId, Point)>> {
        let mut out = Vec::new();
        for e in self.storage.list(ObjectKind::Point)? {
            let Some(id) = ObjectId::from_hex(&e.name) else {
                continue;
            };
            let p =
                match self.read_point(&id) {
                    Ok(p) => p,
                    // Forgotten meanwhile: not a point any more.
                    Err(_)
                        if matches!(
                            self.storage.read(ObjectKind::Point, &e.name),
                            Err(StorageError::NotFound { .. })
                        ) =>
                    {
                        continue
                    }
                    Err(err) => return Err(err.with_hint(
                        "prune deletes nothing while a point cannot be read; run `lifeboat check`",
                    )),
                };
            out.push((id, p));
        }
        out.sort_by(|a, b| {
            let ta = a.1.timestamp().ok();
            let tb = b.1.timestamp().ok();
            ta.cmp(&tb).then_with(|| a.0.cmp(&b.0))
        });
        Ok(out)
    }

    /// Every readable point, oldest first. Damaged points are skipped with a warning.
    pub fn points(&self) -> Result<Vec<(ObjectId, Point)>> {
        Ok(self.points_and_damaged()?.0)
    }

    /// Every readable point, oldest first, and the points that are listed but cannot be read
    /// (damaged, or not authenticated by this repository's key) with the reason, each skipped
    /// with a warning. A point deleted between the listing and its read is neither.
    pub fn points_and_damaged(&self) -> Result<DamagedListing> {
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for e in self.storage.list(ObjectKind::Point)? {
            let Some(id) = ObjectId::from_hex(&e.name) else {
                tracing::warn!("ignoring unexpected file points/{}", e.name);
                continue;
            };
            // One damaged point must not hide all the others; `check` names it.
            match self.read_point(&id) {
                Ok(p) => out.push((id, p)),
                Err(_)
                    if matches!(
                        self.storage.read(ObjectKind::Point, &e.name),
                        Err(StorageError::NotFound { .. })
                    ) => {}
                Err(e) => {
                    tracing::warn!(
                        "ignoring damaged point {}: {e} (run `lifeboat check`)",
                        id.short()
                    );
                    damaged.push((id, e));
                }
            }
        }
        // Sort by the parsed time: the RFC 3339 strings have a variable-length fraction, so
        // string order is not time order within one second.
        out.sort_by_cached_key(|(id, p)| (p.timestamp().unwrap_or(jiff::Timestamp::MIN), *id));
        Ok((out, damaged))
    }

    /// Finds a point by id prefix (at least 4 hex characters) or `latest`, optionally within
    /// one app, with the default rules ([`Repository::find_point_with`], no future points).
    pub fn find_point(&self, app: Option<&str>, spec: &str) -> Result<(ObjectId, Point)> {
        self.find_point_with(app, spec, false)
    }

    /// Finds a point by id prefix (at least 4 hex characters) or `latest`, optionally within one app.
    /// `latest` is the newest point not tagged `pre-restore`: those are safety copies of what a
    /// restore replaced, and restoring "latest" twice must not bring back the replaced state.
    /// Nor is it a point dated in the future ([`is_future`]) unless `allow_future`: one such
    /// point would otherwise stay "latest" whatever is backed up after it. An id prefix that
    /// matches only a damaged point is an error of kind `Corrupt` naming it.
    pub fn find_point_with(
        &self,
        app: Option<&str>,
        spec: &str,
        allow_future: bool,
    ) -> Result<(ObjectId, Point)> {
        let (all, damaged) = self.points_and_damaged()?;
        let points: Vec<_> = all
            .into_iter()
            .filter(|(_, p)| app.is_none_or(|a| p.app == a))
            .collect();
        let scope = app.map_or(String::new(), |a| format!(" of app {a}"));
        if spec == "latest" {
            let now = jiff::Timestamp::now();
            let candidates: Vec<_> = points
                .into_iter()
                .filter(|(_, p)| !p.tags.iter().any(|t| t == "pre-restore"))
                .collect();
            let future = candidates.iter().filter(|(_, p)| is_future(p, now)).count();
            return candidates
                .into_iter()
                .rfind(|(_, p)| allow_future || !is_future(p, now))
                .ok_or_else(|| {
                    if future > 0 {
                        err!(
                            Usage,
                            "the only points{scope} in {} are dated in the future",
                            self.storage.location()
                        )
                        .with_hint("check this machine's clock; name the point by id, or pass --allow-future to take it as latest")
                    } else {
                        err!(
                            Usage,
                            "there are no points{scope} in {}",
                            self.storage.location()
                        )
                        .with_hint("run `lifeboat backup` first; `lifeboat points` lists what exists")
                    }
                });
        }
        if spec.len() < 4 || !spec.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(err!(
                Usage,
                "{spec:?} is not a point id (give at least 4 hex characters, or `latest`)"
            ));
        }
        let spec_l = spec.to_ascii_lowercase();
        let mut found: Vec<_> = points
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        // A damaged point's app is unknown: it matches whatever the scope.
        let mut broken: Vec<_> = damaged
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
            .collect();
        match (found.len(), broken.len()) {
            (0, 0) => Err(err!(Usage, "no point{scope} with id {spec}")
                .with_hint("`lifeboat points` lists the points")),
            (1, 0) => Ok(found.remove(0)),
            (0, 1) => {
                let (id, e) = broken.remove(0);
                Err(err!(
                    Corrupt,
                    "point {} is damaged and cannot be restored: {}",
                    id.to_hex(),
                    e.message()
                )
                .with_hint("run `lifeboat check` to see what else is affected; `lifeboat points` lists the readable points"))
            }
            (n, m) => Err(err!(Usage, "{} points start with {spec}", n + m)
                .with_hint("give more characters of the id")),
        }
    }

    /// The storage.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }
    /// The config.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    /// The master key (never handed out of core).
    pub(crate) fn key(&self) -> &MasterKey {
        &self.key
    }
    /// The key slot that unlocked this repository.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }
    /// The argon2id cost of the key slot that unlocked this repository: the repository's cost,
    /// which `key add` gives the new slot.
    pub fn kdf(&self) -> KdfParams {
        self.kdf
    }
    /// The loaded index.
    pub(crate) fn index(&self) -> &Index {
        &self.index
    }
}

/// Readable points (oldest first) and the damaged ones with the reason each cannot be read.
pub type DamagedListing = (Vec<(ObjectId, Point)>, Vec<(ObjectId, Error)>);

/// How far ahead of this machine's clock a point may be dated and still count as now (clock
/// skew between the machines writing to one repository).
pub const FUTURE_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// Whether `p` is dated more than [`FUTURE_SKEW`] after `now` (an unparsable time is not).
pub fn is_future(p: &Point, now: jiff::Timestamp) -> bool {
    p.timestamp()
        .ok()
        .and_then(|t| t.checked_sub(FUTURE_SKEW).ok())
        .is_some_and(|t| t > now)
}

/// Checks that an object's bytes hash to its name.
pub(crate) fn verify_name(name: &str, bytes: &[u8], what: &str) -> Result<()> {
    if ObjectId::of(bytes).to_hex() != name {
        return Err(err!(
            Corrupt,
            "{what} is damaged: its content does not match its name ({} bytes)",
            bytes.len()
        )
        .with_hint("run `lifeboat check --read-data` to see everything affected"));
    }
    Ok(())
}

#[cfg(test)]
mod review_incremental_load {
    use std::sync::Arc;

    use super::*;
    use crate::format::pack::BlockEntry;
    use crate::id::ChunkId;
    use crate::test_store::TestStore;

    fn kdf() -> KdfParams {
        KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn write_index(repo: &Repository, pack: ObjectId, id: ChunkId) -> String {
        let file = IndexFile {
            packs: vec![(
                pack,
                vec![BlockEntry {
                    id,
                    block_offset: 8,
                    block_len: 100,
                    offset: 0,
                    len: 10,
                    base: None,
                }],
            )],
        };
        let bytes = file.seal(&repo.key).unwrap();
        let name = ObjectId::of(&bytes).to_hex();
        repo.storage
            .write(ObjectKind::Index, &name, &bytes)
            .unwrap();
        name
    }

    /// A chunk whose only copy at the first load is in a condemned pack, and that a later
    /// backup stored again in a live pack: a full load resolves it to the live pack (condemned
    /// index objects are loaded last, first location wins); the incremental reload must too.
    #[test]
    fn incremental_reload_prefers_a_live_copy_over_a_condemned_one() {
        let store: Arc<dyn Storage> = Arc::new(TestStore::default());
        let mut repo = Repository::init(Arc::clone(&store), b"pw", kdf()).unwrap();
        let x = ChunkId([0x42; 16]);
        let condemned = ObjectId([0xcc; 32]);
        let live = ObjectId([0x11; 32]);
        let ic = write_index(&repo, condemned, x);
        let record = PruneRecord {
            time: "2026-12-01T12:00:00Z".into(),
            hostname: "h".into(),
            packs: vec![condemned.to_hex()],
            indexes: vec![ic],
            points: vec![],
            deltas: vec![],
        };
        let bytes = object::seal(&repo.key, PRUNE_MAGIC, &record.encode()).unwrap();
        store
            .write(ObjectKind::Prune, &ObjectId::of(&bytes).to_hex(), &bytes)
            .unwrap();
        repo.load_index().unwrap();
        assert!(!repo.index().contains(&x), "only in a condemned pack");

        // Another backup stores x again, in a live pack.
        write_index(&repo, live, x);
        repo.load_index().unwrap();

        let mut fresh = Repository::open(Arc::clone(&store), b"pw").unwrap();
        fresh.load_index().unwrap();
        assert!(
            fresh.index().contains(&x),
            "a full load finds the live copy"
        );
        let full = fresh.index().pack(fresh.index().get(&x).unwrap().pack);
        let incr = repo.index().pack(repo.index().get(&x).unwrap().pack);
        assert_eq!(full, live);
        assert_eq!(
            incr, full,
            "incremental reload resolved x to the condemned pack"
        );
        assert!(
            repo.index().contains(&x),
            "incremental reload: x not deduplicable"
        );
    }

    /// A strict reload that fails must not leave the repository with an empty index.
    #[test]
    fn failed_strict_reload_keeps_the_loaded_index() {
        let store: Arc<dyn Storage> = Arc::new(TestStore::default());
        let mut repo = Repository::init(Arc::clone(&store), b"pw", kdf()).unwrap();
        let x = ChunkId([0x42; 16]);
        write_index(&repo, ObjectId([0x11; 32]), x);
        repo.load_index().unwrap();
        assert!(repo.index().contains(&x));
        let junk = b"not an index object".to_vec();
        store
            .write(ObjectKind::Index, &ObjectId::of(&junk).to_hex(), &junk)
            .unwrap();
        assert!(repo.load_index_strict().is_err());
        assert!(
            repo.index().contains(&x),
            "a failed strict load emptied the index"
        );
    }
}

#[cfg(test)]
mod review_prune_after_reuse {
    use std::sync::Arc;

    use super::*;
    use crate::format::point::{Component, ComponentKind, PointStats, TreeBody};
    use crate::id::ChunkId;
    use crate::test_store::TestStore;

    fn point(chunks: Vec<ChunkId>) -> Point {
        Point {
            app: "app".into(),
            time: jiff::Timestamp::now().to_string(),
            tags: vec![],
            hostname: "test".into(),
            lifeboat_version: "test".into(),
            components: vec![Component {
                kind: ComponentKind::Config,
                path: "/etc/app.toml".into(),
                size: 0,
                sqlite: None,
                tree: Some(TreeBody {
                    entries: chunks,
                    files: 0,
                    dirs: 0,
                    symlinks: 0,
                }),
                postgres: None,
            }],
            stats: PointStats::default(),
            definition: None,
        }
    }

    /// A library caller backs up, then prunes, with one `Repository` (as a long-lived process
    /// would). A chunk X only in a pack a pending record R condemns is stored again by the
    /// backup (pack Pn); the prune's mark, reusing the backup's index, resolves X to the
    /// condemned copy, so Pn counts nothing live and is condemned too.
    #[test]
    fn mark_after_reuse_does_not_condemn_the_only_live_copy() {
        let mut condemned_live = 0;
        let mut lost = 0;
        for _ in 0..12 {
            let store: Arc<dyn Storage> = Arc::new(TestStore::default());
            let kdf = KdfParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 1,
            };
            let mut repo = Repository::init(Arc::clone(&store), b"pw", kdf).unwrap();
            let data = b"[]".to_vec(); // an empty file tree: a chunk that is its own tree
                                       // Point A has X; a keeper point has something else.
            let mut s = repo.begin_backup().unwrap();
            let ids = s.writer().store_bytes(&data).unwrap();
            let (a, _) = s.commit(|_| point(ids)).unwrap();
            let mut s = repo.begin_backup().unwrap();
            let ids = s.writer().store_bytes(b"[ ]").unwrap();
            s.commit(|_| point(ids)).unwrap();
            // A backup elsewhere runs long (its lease lacks every record).
            let other = crate::lease::LeaseGuard::acquire(
                Arc::clone(&store),
                "backup",
                std::time::Duration::from_secs(1800),
            )
            .unwrap();
            // Forget A, prune: R condemns X's pack; its sweep waits for `other`.
            store.delete(ObjectKind::Point, &a.to_hex()).unwrap();
            crate::prune(
                &mut repo,
                &crate::PruneOptions::default(),
                &crate::NoProgress,
            )
            .unwrap();
            let r: Vec<String> = store
                .list(ObjectKind::Prune)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(r.len(), 1, "R pending");
            // The app's state holds X again: a backup (same Repository) stores it anew (Pn).
            let mut s = repo.begin_backup().unwrap();
            let ids = s.writer().store_bytes(&data).unwrap();
            let x = ids[0];
            let (q, _) = s.commit(|_| point(ids)).unwrap();
            // Prune again in the same process: mark reuses the backup's index.
            crate::prune(
                &mut repo,
                &crate::PruneOptions::default(),
                &crate::NoProgress,
            )
            .unwrap();
            let records = repo.prune_records().unwrap();
            let fresh_loc = {
                let mut f = Repository::open(Arc::clone(&store), b"pw").unwrap();
                f.load_index().unwrap();
                f.index().get(&x).map(|l| f.index().pack(l.pack))
            };
            let all_condemned: std::collections::HashSet<String> =
                records.iter().flat_map(|(_, r)| r.packs.clone()).collect();
            // Every pack holding X is now condemned by some record?
            let mut f = Repository::open(Arc::clone(&store), b"pw").unwrap();
            f.load_index().unwrap();
            if !f.index().contains(&x) {
                condemned_live += 1;
            }
            let _ = (fresh_loc, all_condemned);
            // The long backup ends; a later prune sweeps both records.
            drop(other);
            let mut later = Repository::open(Arc::clone(&store), b"pw").unwrap();
            if let Err(e) = crate::prune(
                &mut later,
                &crate::PruneOptions::default(),
                &crate::NoProgress,
            ) {
                eprintln!("later prune: {e}");
            }
            let mut check = Repository::open(Arc::clone(&store), b"pw").unwrap();
            let session = check.begin_restore().unwrap();
            let mut reader = session.reader();
            let qp = check_point(&store, &q);
            assert!(qp, "point Q still listed");
            if let Err(e) = reader.read(&x) {
                eprintln!("point Q: {e}");
                lost += 1;
            }
        }
        assert_eq!(
            (condemned_live, lost),
            (0, 0),
            "(runs where every copy of a live chunk got condemned, runs where point Q lost it) of 12"
        );
    }

    fn check_point(store: &Arc<dyn Storage>, q: &ObjectId) -> bool {
        store
            .list(ObjectKind::Point)
            .unwrap()
            .iter()
            .any(|e| e.name == q.to_hex())
    }
}

#[cfg(test)]
mod reopen {
    use std::sync::Arc;

    use super::*;
    use crate::test_store::TestStore;

    /// A repository opened again with its key needs no password and reads what was written
    /// since; a location whose repository was replaced (another id) is refused.
    #[test]
    fn reopen_uses_the_same_key_and_refuses_another_repository() {
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let store = Arc::new(TestStore::default());
        let storage: Arc<dyn Storage> = store.clone();
        let repo = Repository::init(Arc::clone(&storage), b"pw", kdf).unwrap();
        let again = repo.reopen().unwrap();
        assert_eq!(again.config().id, repo.config().id);
        assert_eq!(again.key_name(), repo.key_name());
        // Same key: what one writes the other reads.
        let sealed = object::seal(repo.key(), POINT_MAGIC, b"payload").unwrap();
        let opened = object::open(again.key(), POINT_MAGIC, &sealed, "x").unwrap();
        assert_eq!(opened, b"payload");
        // Another repository put at the location.
        for name in store.names(ObjectKind::Config) {
            storage.delete(ObjectKind::Config, &name).unwrap();
        }
        for name in store.names(ObjectKind::Key) {
            storage.delete(ObjectKind::Key, &name).unwrap();
        }
        Repository::init(Arc::clone(&storage), b"other", kdf).unwrap();
        let e = repo.reopen().unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Repository, "{e}");
    }
}
