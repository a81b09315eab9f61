//! Reading and writing proof records (`docs/FORMAT.md` §16): which of a point's databases
//! already passed `integrity_check` on their restored bytes. Everything read is untrusted (any
//! key holder can write a record): a damaged or oversized record is skipped, and a record only
//! ever applies to the exact point, checksum and page count it names.
use crate::error::{Error, Result};
use crate::format::object;
use crate::format::proof::{ProofRecord, MAX_PROOF_PAYLOAD, PROOF_MAGIC};
use crate::id::ObjectId;
use crate::repository::{verify_name, Repository};
use crate::storage::ObjectKind;

/// Records by name, and the names of those that could not be read with why.
pub(crate) type Listing = (Vec<(String, ProofRecord)>, Vec<(String, Error)>);

/// Every proof record in the repository, by name; those that cannot be read (damaged, too
/// large, written by a newer lifeboat) come back as errors beside them.
pub(crate) fn read_all(repo: &Repository) -> Result<Listing> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for e in repo.storage().list(ObjectKind::Proof)? {
        match read_one(repo, &e.name) {
            Ok(r) => good.push((e.name, r)),
            Err(err) => bad.push((e.name, err)),
        }
    }
    Ok((good, bad))
}

fn read_one(repo: &Repository, name: &str) -> Result<ProofRecord> {
    let what = format!("proof {name}");
    let bytes = repo.storage().read(ObjectKind::Proof, name)?;
    verify_name(name, &bytes, &what)?;
    let payload = object::open_bounded(repo.key(), PROOF_MAGIC, &bytes, &what, MAX_PROOF_PAYLOAD)?;
    ProofRecord::decode(&payload, &what)
}

/// The readable records of `point`. Best effort: a record that cannot be read is skipped with
/// a warning and a failed listing counts as none (a record only saves work; without it the
/// checks run).
pub(crate) fn of_point(repo: &Repository, point: &ObjectId) -> Vec<ProofRecord> {
    let hex = point.to_hex();
    let names = match repo.storage().list(ObjectKind::Proof) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot list proof records (checks will run): {e}");
            return Vec::new();
        }
    };
    // One record at a time, dropped unless it is this point's: any key holder can write
    // records, and holding them all (each up to 1 MiB decoded) could exhaust the memory of
    // the machine that needs the restore. At most `KEEP` of this point's are kept.
    const KEEP: usize = 16;
    let mut out = Vec::new();
    for e in names {
        match read_one(repo, &e.name) {
            Ok(r) if r.point == hex => {
                out.push(r);
                if out.len() >= KEEP {
                    break;
                }
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("ignoring proof {}: {err}", e.name),
        }
    }
    out
}

/// Seals and writes a record under the hash of its bytes.
pub(crate) fn write(repo: &Repository, record: &ProofRecord) -> Result<ObjectId> {
    let bytes = object::seal(repo.key(), PROOF_MAGIC, &record.encode())?;
    let id = ObjectId::of(&bytes);
    repo.storage()
        .write(ObjectKind::Proof, &id.to_hex(), &bytes)
        .map_err(|e| Error::from(e).context("write proof record"))?;
    Ok(id)
}
