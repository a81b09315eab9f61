//! `check`: is the repository whole, and (with `read_data`) does every byte authenticate?
//!
//! Structure check: config, key slots, every index decrypts, every indexed pack exists and
//! is long enough, every point decrypts and every chunk it references (page tables, pages,
//! trees, file contents) is indexed, and every delta record (§17) reads, starts from a point
//! holding its database, and belongs to a whole chain that replays. With `read_data`: every indexed pack is read in full,
//! its name must equal the hash of its bytes, every block must authenticate and decode, and
//! every chunk must hash to its id. Each problem names the damaged object and the points
//! that depend on it.
use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::components::{load_page_table, load_tree};
use crate::error::Result;
use crate::format::key::KeyFile;
use crate::format::object::check_header;
use crate::format::pack::{decode_block, BLOCK_AAD, PACK_MAGIC};
use crate::id::{ChunkId, ObjectId};
use crate::progress::Progress;
use crate::repository::{verify_name, Repository};
use crate::storage::ObjectKind;

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Read and authenticate every pack in full.
    pub read_data: bool,
}

/// One thing found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged object, as `kind/name` (e.g. `pack/3fa9...`).
    pub object: String,
    /// What is wrong with it.
    pub message: String,
}

/// The result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Key slots seen.
    pub keys: usize,
    /// Index objects seen.
    pub indexes: usize,
    /// Packs listed in indexes.
    pub packs: usize,
    /// Points seen.
    pub points: usize,
    /// Distinct chunks referenced by points.
    pub chunks_referenced: usize,
    /// Bytes of pack data read and authenticated (with `read_data`).
    pub bytes_read: u64,
    /// Packs present in storage but in no readable index: left by an interrupted backup
    /// (harmless), or holding the data of a damaged index (then they must be kept).
    pub unindexed_packs: usize,
    /// Whether every index object could be read (if not, unindexed packs may hold live data).
    pub all_indexes_readable: bool,
    /// Prune records whose deletions have not run yet (they wait for running operations).
    pub pending_prunes: usize,
    /// Packs those records condemn (still present, still readable).
    pub condemned_packs: usize,
    /// Proof records seen (`FORMAT.md` §16).
    pub proofs: usize,
    /// Proof records of points no longer in the repository (harmless; prune drops them).
    pub stale_proofs: usize,
    /// Delta records of continuous capture seen (`FORMAT.md` §17).
    pub deltas: usize,
    /// Chains those deltas form (one per base point and database path).
    pub delta_chains: usize,
    /// Delta records of points no longer in the repository (harmless; prune drops them).
    pub stale_deltas: usize,
    /// Audit records seen (`FORMAT.md` §18); damaged ones are problems.
    pub audit_records: usize,
    /// Everything wrong, each naming its object.
    pub problems: Vec<Problem>,
    /// What is not damage but an operator should know, each naming its object: points whose
    /// trees hold setuid or setgid files (a restore clears those bits unless asked to keep
    /// them; a point from another key holder could plant a setuid program).
    pub notes: Vec<Problem>,
}

/// Runs the check. Problems are collected, not returned as errors; an `Err` means the check
/// itself could not run (e.g. the storage is unreachable).
pub fn check(
    repo: &mut Repository,
    opts: CheckOptions,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let storage = std::sync::Arc::clone(repo.storage());
    let mut r = CheckReport::default();
    let problem = |r: &mut CheckReport, kind: ObjectKind, name: &str, msg: String| {
        r.problems.push(Problem {
            object: format!("{kind}/{name}"),
            message: msg,
        });
    };

    for k in storage.list(ObjectKind::Key)? {
        r.keys += 1;
        match storage.read(ObjectKind::Key, &k.name) {
            Ok(b) => {
                if let Err(e) = KeyFile::parse(&b, &k.name) {
                    problem(&mut r, ObjectKind::Key, &k.name, e.to_string());
                }
            }
            Err(e) => problem(&mut r, ObjectKind::Key, &k.name, e.to_string()),
        }
    }

    // Indexes: build the index from the good ones.
    let mut index = crate::index::Index::default();
    let mut pack_entries: HashMap<ObjectId, Vec<crate::format::pack::BlockEntry>> = HashMap::new();
    for ix in storage.list(ObjectKind::Index)? {
        r.indexes += 1;
        match repo.read_index(&ix.name) {
            Ok(file) => {
                index.add(&file);
                for (p, e) in file.packs {
                    pack_entries.entry(p).or_default().extend(e);
                }
            }
            Err(e) => problem(&mut r, ObjectKind::Index, &ix.name, e.to_string()),
        }
    }
    index.finish();
    r.packs = pack_entries.len();
    r.all_indexes_readable = !r.problems.iter().any(|p| p.object.starts_with("index/"));

    // Packs: presence, size, and with read_data every byte.
    let sizes: HashMap<String, u64> = storage
        .list(ObjectKind::Pack)?
        .into_iter()
        .map(|e| (e.name, e.size))
        .collect();
    r.unindexed_packs = sizes
        .keys()
        .filter(|n| ObjectId::from_hex(n).is_none_or(|id| !pack_entries.contains_key(&id)))
        .count();
    let records = repo.prune_records()?;
    r.pending_prunes = records.len();
    r.condemned_packs = records
        .iter()
        .flat_map(|(_, rec)| rec.packs.iter())
        .filter(|p| sizes.contains_key(*p))
        .collect::<HashSet<_>>()
        .len();
    let mut bad_packs: HashSet<ObjectId> = HashSet::new();
    let total: u64 = pack_entries
        .keys()
        .map(|p| sizes.get(&p.to_hex()).copied().unwrap_or(0))
        .sum();
    progress.start(
        if opts.read_data {
            "reading packs"
        } else {
            "checking packs"
        },
        if opts.read_data {
            total
        } else {
            pack_entries.len() as u64
        },
    );
    let mut packs: Vec<_> = pack_entries.iter().collect();
    packs.sort_by_key(|(id, _)| **id);
    for (pack, entries) in packs {
        let name = pack.to_hex();
        let need = entries
            .iter()
            .map(|e| e.block_offset as u64 + e.block_len as u64)
            .max()
            .unwrap_or(0);
        match sizes.get(&name) {
            None => {
                problem(
                    &mut r,
                    ObjectKind::Pack,
                    &name,
                    format!("pack is missing ({} chunks lost)", entries.len()),
                );
                bad_packs.insert(*pack);
                continue;
            }
            Some(&size) if size < need + 4 => {
                problem(
                    &mut r,
                    ObjectKind::Pack,
                    &name,
                    format!("pack is truncated: {size} bytes, the index needs more than {need}"),
                );
                bad_packs.insert(*pack);
                if !opts.read_data {
                    continue;
                }
            }
            _ => {}
        }
        if !opts.read_data {
            progress.inc(1);
            continue;
        }
        if let Err(msg) = read_pack(repo, pack, entries, &mut r.bytes_read) {
            problem(&mut r, ObjectKind::Pack, &name, msg);
            bad_packs.insert(*pack);
        }
        progress.inc(sizes.get(&name).copied().unwrap_or(0));
    }
    progress.finish();

    repo.load_index_from(index);

    // Points: decrypt and walk every reference.
    let mut referenced: HashSet<ChunkId> = HashSet::new();
    let mut point_names: HashSet<String> = HashSet::new();
    for p in storage.list(ObjectKind::Point)? {
        r.points += 1;
        point_names.insert(p.name.clone());
        let Some(id) = ObjectId::from_hex(&p.name) else {
            problem(&mut r, ObjectKind::Point, &p.name, "unexpected name".into());
            continue;
        };
        let point = match repo.read_point(&id) {
            Ok(pt) => pt,
            Err(e) => {
                problem(&mut r, ObjectKind::Point, &p.name, e.to_string());
                continue;
            }
        };
        let mut mine: HashSet<ChunkId> = HashSet::new();
        let mut walk_errs = Vec::new();
        let mut path_errs = Vec::new();
        let mut notes = Vec::new();
        let mut reader = repo.reader();
        for c in &point.components {
            if let Err(e) = crate::paths::check_component_path(&id.short(), c) {
                walk_errs.push(e.to_string());
            }
            let res = (|| -> Result<()> {
                if let Some(s) = &c.sqlite {
                    mine.extend(s.base.iter().chain(&s.delta).copied());
                    mine.extend(load_page_table(&mut reader, s)?);
                }
                if let Some(t) = &c.tree {
                    mine.extend(t.entries.iter().copied());
                    let entries = load_tree(&mut reader, t)?;
                    if let Err(e) = crate::paths::check_tree(&id.short(), c, &entries) {
                        path_errs.push(e.to_string());
                    }
                    let setid: Vec<&str> = entries
                        .iter()
                        .filter(|e| e.kind == crate::EntryKind::File && e.mode & 0o6000 != 0)
                        .map(|e| e.path.as_str())
                        .collect();
                    if !setid.is_empty() {
                        notes.push(format!(
                            "{} {} has {} setuid/setgid files (a restore clears those bits unless --keep-setid): {}",
                            c.kind.as_str(),
                            c.path,
                            setid.len(),
                            setid.iter().take(5).copied().collect::<Vec<_>>().join(", ")
                        ));
                    }
                    for e in entries {
                        mine.extend(e.chunks);
                    }
                }
                Ok(())
            })();
            if let Err(e) = res {
                walk_errs.push(format!(
                    "cannot read the contents list of {} {}: {e}",
                    c.kind.as_str(),
                    c.path
                ));
            }
        }
        walk_errs.extend(path_errs);
        for msg in walk_errs {
            problem(&mut r, ObjectKind::Point, &p.name, msg);
        }
        for message in notes {
            r.notes.push(Problem {
                object: format!("{}/{}", ObjectKind::Point, p.name),
                message,
            });
        }
        let mut missing = 0usize;
        let mut damaged: HashSet<ObjectId> = HashSet::new();
        for ch in &mine {
            match repo.index().get(ch) {
                None => missing += 1,
                Some(loc) => {
                    let pk = repo.index().pack(loc.pack);
                    if bad_packs.contains(&pk) {
                        damaged.insert(pk);
                    }
                }
            }
        }
        if missing > 0 {
            problem(
                &mut r,
                ObjectKind::Point,
                &p.name,
                format!(
                    "{missing} referenced chunks are in no index: this point cannot be restored"
                ),
            );
        }
        if !damaged.is_empty() {
            let mut names: Vec<_> = damaged.iter().map(|d| d.short()).collect();
            names.sort();
            problem(
                &mut r,
                ObjectKind::Point,
                &p.name,
                format!(
                    "depends on damaged pack(s) {}: this point cannot be restored in full",
                    names.join(", ")
                ),
            );
        }
        referenced.extend(mine);
    }
    check_deltas(repo, &point_names, &bad_packs, &mut referenced, &mut r)?;
    r.chunks_referenced = referenced.len();
    check_patches(
        repo,
        &pack_entries,
        &bad_packs,
        &referenced,
        opts.read_data,
        &mut r,
    );

    // Proof records: each must authenticate and parse; one of a point that is gone is not a
    // problem (the next prune drops it).
    let (proofs, bad) = crate::proofs::read_all(repo)?;
    r.proofs = proofs.len() + bad.len();
    for (name, e) in bad {
        problem(&mut r, ObjectKind::Proof, &name, e.to_string());
    }
    r.stale_proofs = proofs
        .iter()
        .filter(|(_, p)| !point_names.contains(&p.point))
        .count();

    // Audit records: each must authenticate and parse. Nothing depends on them, but a damaged
    // one is history lost, worth naming.
    let audit = repo.audit_records()?;
    r.audit_records = audit.events.len() + audit.damaged.len() + audit.unread;
    for (name, e) in audit.damaged {
        problem(&mut r, ObjectKind::Audit, &name, e);
    }
    Ok(r)
}

/// Delta records (§17): each must read; its base must be a point with a `sqlite` component
/// at its path and page size; each chain (deltas of one base and path) must be whole (every
/// parent present, seq contiguous from 1, or from a level-0 link a level-1 link reaches: what
/// forget leaves after dropping the level-0 links older than an hour) and replay (checksum
/// links, page counts); the
/// chunks it names (segments and the pages they list) must be indexed. A delta whose base is
/// gone is stale (prune drops it), not damage.
fn check_deltas(
    repo: &Repository,
    point_names: &HashSet<String>,
    bad_packs: &HashSet<ObjectId>,
    referenced: &mut HashSet<ChunkId>,
    r: &mut CheckReport,
) -> Result<()> {
    use crate::format::delta::Delta;
    use crate::format::pagetable::decode_delta;
    use std::collections::BTreeMap;

    let problem = |r: &mut CheckReport, name: &str, message: String| {
        r.problems.push(Problem {
            object: format!("{}/{name}", ObjectKind::Delta),
            message,
        });
    };
    let (deltas, bad) = repo.deltas_and_damaged()?;
    r.deltas = deltas.len() + bad.len();
    for (name, e) in bad {
        problem(r, &name, e.to_string());
    }
    let mut chains: BTreeMap<(String, String), HashMap<ObjectId, Delta>> = BTreeMap::new();
    for (id, d) in deltas {
        chains
            .entry((d.base.clone(), d.path.clone()))
            .or_default()
            .insert(id, d);
    }
    r.delta_chains = chains.len();
    let mut reader = repo.reader();
    let mut bases: HashMap<String, Option<crate::format::point::Point>> = HashMap::new();
    for ((base, path), links) in &chains {
        let short = &base[..8];
        if !point_names.contains(base) {
            r.stale_deltas += links.len();
            continue;
        }
        let point = bases
            .entry(base.clone())
            .or_insert_with(|| ObjectId::from_hex(base).and_then(|id| repo.read_point(&id).ok()))
            .clone();
        let mut names: Vec<&ObjectId> = links.keys().collect();
        names.sort_by_key(|id| (links[*id].seq, **id));
        let Some(point) = point else {
            for id in names {
                problem(
                    r,
                    &id.to_hex(),
                    format!("its base point {short} cannot be read (see that point's problem)"),
                );
            }
            continue;
        };
        let body = point
            .components
            .iter()
            .find(|c| c.path == *path)
            .and_then(|c| c.sqlite.as_ref());
        let Some(body) = body else {
            for id in names {
                problem(
                    r,
                    &id.to_hex(),
                    format!("its base point {short} has no sqlite database at {path}"),
                );
            }
            continue;
        };
        let mut whole = true;
        for id in &names {
            let d = &links[*id];
            if d.page_size != body.page_size {
                whole = false;
                problem(
                    r,
                    &id.to_hex(),
                    format!(
                        "seq {} of {path} from point {short}: page size {} differs from the base's {}",
                        d.seq, d.page_size, body.page_size
                    ),
                );
            }
            if d.app != point.app {
                problem(
                    r,
                    &id.to_hex(),
                    format!(
                        "seq {} of {path} from point {short}: app {:?} differs from the base's {:?}",
                        d.seq, d.app, point.app
                    ),
                );
            }
            // The chunks it names must be indexed and in packs that are not damaged.
            let mut mine: HashSet<ChunkId> = d.pages.iter().copied().collect();
            for seg in &d.pages {
                match reader.read(seg).and_then(|b| decode_delta(&b)) {
                    Ok(pairs) => mine.extend(pairs.into_iter().map(|(_, c)| c)),
                    Err(e) => {
                        whole = false;
                        problem(
                            r,
                            &id.to_hex(),
                            format!(
                                "seq {} of {path} from point {short} at {}: cannot read its page list: {e}",
                                d.seq, d.time
                            ),
                        );
                    }
                }
            }
            let missing = mine
                .iter()
                .filter(|c| repo.index().get(c).is_none())
                .count();
            let mut damaged: Vec<String> = mine
                .iter()
                .filter_map(|c| repo.index().get(c))
                .map(|l| repo.index().pack(l.pack))
                .filter(|p| bad_packs.contains(p))
                .map(|p| p.short())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            damaged.sort();
            if missing > 0 {
                problem(
                    r,
                    &id.to_hex(),
                    format!(
                        "seq {} of {path} from point {short} at {}: {missing} referenced chunks are in no index",
                        d.seq, d.time
                    ),
                );
            }
            if !damaged.is_empty() {
                problem(
                    r,
                    &id.to_hex(),
                    format!(
                        "seq {} of {path} from point {short} at {}: depends on damaged pack(s) {}",
                        d.seq,
                        d.time,
                        damaged.join(", ")
                    ),
                );
            }
            referenced.extend(mine);
        }
        if !whole {
            continue;
        }
        // Whole chains: walk back from every tip (a link no other names as parent); a missing
        // parent is a gap, named with the newest moment restorable before it. Then replay.
        let parents: HashSet<ObjectId> = links
            .values()
            .filter_map(|d| d.parent.as_deref().and_then(ObjectId::from_hex))
            .collect();
        // Level-0 tips twice when minute links exist: as a restore walks (minute links
        // standing in for the interval links they reach), and through every interval link
        // still stored (else those that minute links cover, every interval of the last hour
        // that a restore --at replays, would never be checked). A minute link whose `until`
        // is stored must reach its state.
        let minutes = links.values().any(|d| d.level == 1);
        for (id, d) in links.iter().filter(|(_, d)| d.level == 1) {
            let Some(u) = d.until.as_deref().and_then(ObjectId::from_hex) else {
                continue;
            };
            if let Some(x) = links.get(&u) {
                if x.level != 0
                    || x.checksum_after != d.checksum_after
                    || x.page_count != d.page_count
                    || x.time != d.time
                {
                    problem(
                        r,
                        &id.to_hex(),
                        format!(
                            "minute link seq {} of {path} from point {short} at {}: does not reach the state of the link it names",
                            d.seq, d.time
                        ),
                    );
                }
            }
        }
        let mut seen: HashSet<String> = HashSet::new();
        let tips = names
            .iter()
            .rev()
            .filter(|id| !parents.contains(**id))
            .flat_map(|id| {
                let twice = minutes && links[*id].level == 0;
                [(*id, false)]
                    .into_iter()
                    .chain(twice.then_some((*id, true)))
            });
        for (tip, intervals) in tips {
            let chain = if intervals {
                crate::deltas::interval_links_to(links, tip)
            } else {
                crate::deltas::links_to(links, tip)
            };
            let res = chain
                .and_then(|chain| crate::deltas::replay(&mut reader, body, &chain).map(|_| ()));
            if let Err(e) = res {
                let mut msg = format!("chain of {path} from point {short}: {}", e.message());
                // The gap's hint starts with the newest moment restorable before it.
                if let Some(h) = e.hint().and_then(|h| h.split(';').next()) {
                    msg.push_str(&format!(" ({h})"));
                }
                if seen.insert(msg.clone()) {
                    problem(r, &tip.to_hex(), msg);
                }
            }
        }
    }
    Ok(())
}

fn read_pack(
    repo: &Repository,
    pack: &ObjectId,
    entries: &[crate::format::pack::BlockEntry],
    bytes_read: &mut u64,
) -> std::result::Result<(), String> {
    let name = pack.to_hex();
    let bytes = repo
        .storage()
        .read(ObjectKind::Pack, &name)
        .map_err(|e| e.to_string())?;
    *bytes_read += bytes.len() as u64;
    verify_name(&name, &bytes, "pack").map_err(|e| e.to_string())?;
    check_header(PACK_MAGIC, &bytes, "pack").map_err(|e| e.to_string())?;
    check_trailer(repo, &bytes, entries)?;
    let mut blocks: HashMap<(u32, u32), Vec<&crate::format::pack::BlockEntry>> = HashMap::new();
    for e in entries {
        blocks
            .entry((e.block_offset, e.block_len))
            .or_default()
            .push(e);
    }
    for ((off, len), chunks) in blocks {
        let sealed = bytes
            .get(off as usize..off as usize + len as usize)
            .ok_or_else(|| format!("block at offset {off} lies past the end"))?;
        let plain = repo.key().open(BLOCK_AAD, sealed).map_err(|_| {
            format!("block at offset {off} fails authentication (damaged or altered)")
        })?;
        let data =
            decode_block(&plain, "block").map_err(|e| format!("block at offset {off}: {e}"))?;
        for c in chunks {
            if c.base.is_some() {
                continue; // a page patch: `check_patches`
            }
            let ok = data
                .get(c.offset as usize..c.offset as usize + c.len as usize)
                .is_some_and(|d| repo.key().chunk_id(d) == c.id);
            if !ok {
                return Err(format!(
                    "chunk {} in block at offset {off} does not match its id",
                    c.id
                ));
            }
        }
    }
    Ok(())
}

/// Page patches: each needs a base stored whole (from the index alone); with `read_data`
/// each is rebuilt from its base and authenticated (`read_pack` could not: the base may sit
/// in another pack). The entry checked is the pack's own, not whichever copy of the page the
/// index prefers. A patch whose base is gone is a problem only when a point or delta needs
/// that page and the index has no other copy of it: prune keeps the bases of live patches
/// only, and a dead patch in a pack that stays is garbage, not damage. Problems are reported
/// against the patch's pack.
fn check_patches(
    repo: &Repository,
    pack_entries: &HashMap<ObjectId, Vec<crate::format::pack::BlockEntry>>,
    bad_packs: &HashSet<ObjectId>,
    referenced: &HashSet<ChunkId>,
    read_data: bool,
    r: &mut CheckReport,
) {
    // Whether the index's copy of `id` (the one reads use) can be read: whole, or a patch of
    // a base indexed whole.
    let readable = |id: &ChunkId| {
        repo.index().get(id).is_some_and(|l| {
            l.base
                .is_none_or(|b| repo.index().get(&b).is_some_and(|bl| bl.base.is_none()))
        })
    };
    let positions: HashMap<ObjectId, u32> = (0..repo.index().pack_count() as u32)
        .rev()
        .map(|i| (repo.index().pack(i), i))
        .collect();
    let mut reader = repo.reader();
    let mut packs: Vec<_> = pack_entries.iter().collect();
    packs.sort_by_key(|(id, _)| **id);
    for (pack, entries) in packs {
        if bad_packs.contains(pack) {
            continue;
        }
        let mut problems = Vec::new();
        let mut by_block: std::collections::BTreeMap<u32, Vec<&crate::format::pack::BlockEntry>> =
            Default::default();
        for e in entries {
            let Some(base) = e.base else {
                continue;
            };
            let needed = referenced.contains(&e.id) && !readable(&e.id);
            match repo.index().get(&base).map(|l| l.base.is_none()) {
                // A dead patch whose base prune removed: garbage the next prune may take.
                base_whole if !needed && base_whole != Some(true) => {}
                None => problems.push(format!(
                    "page patch {} needs base {base}, which no index lists",
                    e.id
                )),
                Some(false) => problems.push(format!(
                    "page patch {} names base {base}, which is itself a patch",
                    e.id
                )),
                Some(true) => by_block.entry(e.block_offset).or_default().push(e),
            }
        }
        if read_data {
            if let Some(&pos) = positions.get(pack) {
                for list in by_block.values() {
                    match reader.verify_patches(pos, list) {
                        Ok(failed) => problems.extend(failed),
                        Err(e) => problems.push(e.to_string()),
                    }
                }
            }
        }
        for message in problems {
            r.problems.push(Problem {
                object: format!("{}/{}", ObjectKind::Pack, pack.to_hex()),
                message,
            });
        }
    }
}

/// The trailer must authenticate and list exactly the blocks and chunk lengths the index
/// says the pack holds (so an index can be rebuilt from packs alone).
fn check_trailer(
    repo: &Repository,
    bytes: &[u8],
    entries: &[crate::format::pack::BlockEntry],
) -> std::result::Result<(), String> {
    use crate::format::pack::{decode_trailer, trailer_blocks, TRAILER_AAD};
    let n = bytes.len();
    let len = bytes
        .get(n.saturating_sub(4)..)
        .filter(|b| b.len() == 4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or("pack has no trailer length")?;
    let start = n
        .checked_sub(4 + len)
        .ok_or("trailer length points before the start of the pack")?;
    let plain = repo
        .key()
        .open(TRAILER_AAD, &bytes[start..n - 4])
        .map_err(|_| "trailer fails authentication (damaged or altered)".to_string())?;
    let payload =
        zstd::stream::decode_all(&plain[..]).map_err(|e| format!("trailer: bad zstd data: {e}"))?;
    let listed = decode_trailer(&payload, "trailer").map_err(|e| e.to_string())?;
    if listed != trailer_blocks(entries) {
        return Err("trailer and index disagree about the blocks in this pack".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::progress::NoProgress;
    use crate::test_chain::*;
    use crate::test_store::TestStore;

    fn run(repo: &mut Repository) -> CheckReport {
        check(repo, CheckOptions { read_data: true }, &NoProgress).unwrap()
    }

    #[test]
    fn check_passes_an_intact_chain_and_names_a_gap() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let a = base_point(&mut repo, "app", "A");
        let steps = three_steps(jiff::Timestamp::now());
        let ids = chain(&mut repo, &a, &steps);

        let r = run(&mut repo);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!((r.deltas, r.delta_chains, r.stale_deltas), (3, 1, 0));

        // The middle link goes missing.
        repo.storage()
            .delete(ObjectKind::Delta, &ids[1].to_hex())
            .unwrap();
        let r = run(&mut repo);
        assert_eq!((r.deltas, r.delta_chains), (2, 1));
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        let p = &r.problems[0];
        assert_eq!(
            p.object,
            format!("{}/{}", ObjectKind::Delta, ids[2].to_hex())
        );
        for needle in [
            "gap",
            DB,
            &a.0.to_hex()[..8],
            "delta seq 2",
            "delta seq 3",
            &steps[2].time.to_string(),
            // The newest moment still restorable: the first link.
            &format!("delta seq 1 at {}", steps[0].time),
        ] {
            assert!(p.message.contains(needle), "{needle:?} in {}", p.message);
        }
    }

    #[test]
    fn check_reports_a_chain_that_does_not_fit_its_base() {
        let store = Arc::new(TestStore::default());
        let mut repo = repo(&store);
        let a = base_point(&mut repo, "app", "A");
        let b = base_point(&mut repo, "app", "B");
        // A chain written against A but naming B as its base: the first link's checksum
        // before is A's, so the replay finds the broken link.
        let mut wrong = a.clone();
        wrong.0 = b.0;
        let ids = chain(&mut repo, &wrong, &three_steps(jiff::Timestamp::now()));
        let r = run(&mut repo);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        let p = &r.problems[0];
        assert_eq!(
            p.object,
            format!("{}/{}", ObjectKind::Delta, ids[2].to_hex())
        );
        assert!(p.message.contains("seq 1"), "{}", p.message);
        assert!(p.message.contains("checksum before"), "{}", p.message);

        // Once B is forgotten the chain is stale, not damage: prune drops it.
        repo.storage()
            .delete(ObjectKind::Point, &b.0.to_hex())
            .unwrap();
        let r = run(&mut repo);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.stale_deltas, 3);
    }
}
