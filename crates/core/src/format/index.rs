//! Index objects (`index/<id>`): which chunks are where (`docs/FORMAT.md` §7).
//! Framed by [`super::object`] with magic `LBIX`; the payload is, little-endian:
//!
//! ```text
//! pack_count u32
//! per pack:  pack id (32 bytes) | entry list (count u32 + 32 bytes per BlockEntry, as in packs;
//!            version 2 adds 16 bytes per entry: the base of a page patch, or zero)
//! ```
//!
//! An entry is a 16-byte chunk id and four u32s (`ENTRY_LEN`), stored column by column
//! ([`encode_entries`]): all ids, then each field for all entries.
use super::object;
use super::pack::{decode_entries, encode_entries, BlockEntry};
use crate::crypto::MasterKey;
use crate::error::{err, Result};
use crate::id::ObjectId;

/// Index magic.
pub const INDEX_MAGIC: &[u8; 4] = b"LBIX";

/// Index object version of a list with no patch: the v1 entry list. Such objects stay
/// readable by every lifeboat.
pub const INDEX_VERSION_WHOLE: u8 = 1;
/// Index object version of a list that names a patch's base: each entry list has the base
/// column (§7). Written only when some entry is a patch, so repositories without continuous
/// capture never need a reader newer than version 1.
pub const INDEX_VERSION_BASES: u8 = 2;

/// The contents of one index object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexFile {
    /// Each pack with the chunks it holds.
    pub packs: Vec<(ObjectId, Vec<BlockEntry>)>,
}

impl IndexFile {
    /// The object version this content needs: [`INDEX_VERSION_BASES`] when any entry is a
    /// patch, else [`INDEX_VERSION_WHOLE`].
    pub fn version(&self) -> u8 {
        if self
            .packs
            .iter()
            .any(|(_, e)| e.iter().any(|e| e.base.is_some()))
        {
            INDEX_VERSION_BASES
        } else {
            INDEX_VERSION_WHOLE
        }
    }

    /// Encodes the payload (before framing) for [`IndexFile::version`].
    pub fn encode(&self) -> Vec<u8> {
        let bases = self.version() == INDEX_VERSION_BASES;
        let mut out = (self.packs.len() as u32).to_le_bytes().to_vec();
        for (id, entries) in &self.packs {
            out.extend_from_slice(&id.0);
            out.extend_from_slice(&encode_entries(entries, bases));
        }
        out
    }

    /// Decodes a payload of object version `version`.
    pub fn decode(mut b: &[u8], version: u8, what: &str) -> Result<IndexFile> {
        let bases = version >= INDEX_VERSION_BASES;
        if b.len() < 4 {
            return Err(err!(Corrupt, "{what}: truncated"));
        }
        let n = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        b = &b[4..];
        let mut packs = Vec::new();
        for _ in 0..n {
            if b.len() < 32 {
                return Err(err!(Corrupt, "{what}: truncated pack list"));
            }
            let id = ObjectId(b[..32].try_into().expect("32 bytes"));
            let (entries, rest) = decode_entries(&b[32..], what, bases)?;
            packs.push((id, entries));
            b = rest;
        }
        if !b.is_empty() {
            return Err(err!(Corrupt, "{what}: {} trailing bytes", b.len()));
        }
        Ok(IndexFile { packs })
    }

    /// Encodes, compresses, encrypts and frames the object (`LBIX`, version
    /// [`IndexFile::version`]).
    pub fn seal(&self, key: &MasterKey) -> Result<Vec<u8>> {
        object::seal_version(key, INDEX_MAGIC, self.version(), &self.encode())
    }

    /// Opens an index object of either version; a later version is refused as written by
    /// a newer lifeboat.
    pub fn open(key: &MasterKey, bytes: &[u8], what: &str) -> Result<IndexFile> {
        let (version, payload) =
            object::open_up_to(key, INDEX_MAGIC, bytes, what, INDEX_VERSION_BASES)?;
        IndexFile::decode(&payload, version, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ChunkId;

    fn entry(id: u8, base: Option<u8>) -> BlockEntry {
        BlockEntry {
            id: ChunkId([id; 16]),
            block_offset: 8,
            block_len: 100,
            offset: id as u32,
            len: 1,
            base: base.map(|b| ChunkId([b; 16])),
        }
    }

    #[test]
    fn a_list_with_a_patch_is_version_2_and_round_trips_its_bases() {
        let key = MasterKey::generate().unwrap();
        let whole = IndexFile {
            packs: vec![(ObjectId([1; 32]), vec![entry(1, None), entry(2, None)])],
        };
        assert_eq!(whole.version(), 1);
        let sealed = whole.seal(&key).unwrap();
        assert_eq!(sealed[4], 1, "no patch: the v1 layout old readers know");
        assert_eq!(IndexFile::open(&key, &sealed, "ix").unwrap(), whole);
        let patched = IndexFile {
            packs: vec![(ObjectId([1; 32]), vec![entry(1, None), entry(2, Some(1))])],
        };
        let sealed = patched.seal(&key).unwrap();
        assert_eq!(sealed[4], 2);
        assert_eq!(IndexFile::open(&key, &sealed, "ix").unwrap(), patched);
        // A version this reader does not know is refused as newer, before decryption.
        let mut newer = sealed.clone();
        newer[4] = 3;
        let e = IndexFile::open(&key, &newer, "ix").unwrap_err();
        assert!(e.to_string().contains("newer lifeboat"), "{e}");
        // A chunk that is its own base is corrupt.
        let own = IndexFile {
            packs: vec![(ObjectId([1; 32]), vec![entry(2, Some(2))])],
        };
        let e = IndexFile::open(&key, &own.seal(&key).unwrap(), "ix").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt, "{e}");
    }
}
