//! Keys and authenticated encryption (`docs/FORMAT.md` §2).
//!
//! One random 32-byte master secret per repository. Everything else is derived from it with
//! BLAKE3's `derive_key`, so no two uses share a key:
//! - the **id key** keys BLAKE3 for chunk ids;
//! - the **object key** is the XChaCha20-Poly1305 key of every stored object;
//! - the **checksum key** keys the rolling database checksum;
//! - the **chunker seed** (8 bytes) seeds the content-defined chunker's gear table.
//!
//! A sealed buffer is `nonce (24 random bytes) || ciphertext || tag (16)`. The associated data
//! says what the object is (a pack block or trailer string, or the 8-byte header of an index or
//! point), so one kind of object can never be passed off as another.
use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroize;

use crate::error::{err, Result};
use crate::id::ChunkId;

/// Bytes added by [`MasterKey::seal`]: nonce + tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Bytes of nonce at the start of every sealed buffer.
pub const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

const CONTEXT_ID_KEY: &str = "lifeboat 2026-11 v1 chunk id key";
const CONTEXT_OBJECT_KEY: &str = "lifeboat 2026-11 v1 object encryption key";
const CONTEXT_CHECKSUM_KEY: &str = "lifeboat 2026-11 v1 database checksum key";
const CONTEXT_CHUNKER_SEED: &str = "lifeboat 2026-11 v1 chunker seed";

/// The repository's master key with its derived keys. Debug never prints key material. Not
/// `Clone` (one copy per open repository); the secret and derived keys are wiped on drop
/// (the cipher's key by `chacha20poly1305`'s `zeroize` feature).
pub struct MasterKey {
    secret: [u8; 32],
    id_key: [u8; 32],
    checksum_key: [u8; 32],
    chunker_seed: u64,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.secret.zeroize();
        self.id_key.zeroize();
        self.checksum_key.zeroize();
        self.chunker_seed.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for MasterKey {}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Result<MasterKey> {
        Ok(MasterKey::from_secret(random_array()?))
    }

    /// Rebuilds the derived keys from the 32-byte master secret.
    pub fn from_secret(secret: [u8; 32]) -> MasterKey {
        let id_key = blake3::derive_key(CONTEXT_ID_KEY, &secret);
        let mut object_key = blake3::derive_key(CONTEXT_OBJECT_KEY, &secret);
        let checksum_key = blake3::derive_key(CONTEXT_CHECKSUM_KEY, &secret);
        let mut seed = blake3::derive_key(CONTEXT_CHUNKER_SEED, &secret);
        let chunker_seed = u64::from_le_bytes(seed[..8].try_into().expect("8 bytes"));
        let cipher = XChaCha20Poly1305::new(&object_key.into());
        object_key.zeroize();
        seed.zeroize();
        MasterKey {
            secret,
            id_key,
            checksum_key,
            chunker_seed,
            cipher,
        }
    }

    /// A second copy, for threads that outlive a borrow (kept crate-private and explicit:
    /// `MasterKey` is not `Clone`, so copies of the secret are few and each is wiped on drop).
    pub(crate) fn duplicate(&self) -> MasterKey {
        MasterKey::from_secret(self.secret)
    }

    /// The master secret (only for wrapping it into a key slot).
    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The id of a chunk: BLAKE3 keyed with the id key, first 16 bytes.
    pub fn chunk_id(&self, data: &[u8]) -> ChunkId {
        let h = blake3::keyed_hash(&self.id_key, data);
        ChunkId(h.as_bytes()[..ChunkId::LEN].try_into().expect("16 bytes"))
    }

    /// The key of the rolling database checksum (its own derived key, so checksum terms can
    /// never collide with chunk ids). Sources get this, never the master key.
    pub(crate) fn checksum_key(&self) -> crate::components::ChecksumKey {
        crate::components::ChecksumKey(self.checksum_key)
    }

    /// A 64-bit seed for the content-defined chunker, so that chunk boundaries (and hence
    /// chunk sizes) do not reveal file contents across repositories.
    pub fn chunker_seed(&self) -> u64 {
        self.chunker_seed
    }

    /// Encrypts and authenticates `plaintext`; `aad` says what kind of object it is.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.cipher, aad, plaintext)
    }

    /// Seals in place: `buf` holds [`NONCE_LEN`] bytes of room followed by the plaintext; the
    /// nonce is written into the room, the plaintext is encrypted where it is and the tag is
    /// appended. The result has the same layout as [`MasterKey::seal`]'s, without a copy.
    pub fn seal_in_place(&self, aad: &[u8], buf: &mut Vec<u8>) -> Result<()> {
        if buf.len() < NONCE_LEN {
            return Err(err!(Other, "seal_in_place: no room for the nonce"));
        }
        let nonce_bytes: [u8; NONCE_LEN] = random_array()?;
        buf[..NONCE_LEN].copy_from_slice(&nonce_bytes);
        let nonce = XNonce::from(nonce_bytes);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, aad, (&mut buf[NONCE_LEN..]).into())
            .map_err(|_| err!(Other, "encryption failed"))?;
        buf.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens in place what [`MasterKey::seal`] or [`MasterKey::seal_in_place`] made; returns
    /// the plaintext as a sub-slice of `buf`. Fails with [`crate::ErrorKind::Corrupt`] when any
    /// byte differs.
    pub fn open_in_place<'b>(&self, aad: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8]> {
        if buf.len() < SEAL_OVERHEAD {
            return Err(err!(
                Corrupt,
                "sealed data is truncated ({} bytes, at least {SEAL_OVERHEAD} expected)",
                buf.len()
            ));
        }
        let (nonce, rest) = buf.split_at_mut(NONCE_LEN);
        let (ct, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = XNonce::try_from(&*nonce).map_err(|_| err!(Corrupt, "bad nonce length"))?;
        let tag =
            chacha20poly1305::Tag::try_from(&*tag).map_err(|_| err!(Corrupt, "bad tag length"))?;
        self.cipher
            .decrypt_inout_detached(&nonce, aad, (&mut *ct).into(), &tag)
            .map_err(|_| {
                err!(
                    Corrupt,
                    "authentication failed (the data was changed or damaged)"
                )
            })?;
        Ok(&buf[NONCE_LEN..buf.len() - TAG_LEN])
    }

    /// Authenticates and decrypts a buffer made by [`MasterKey::seal`] with the same `aad`.
    /// Fails with [`crate::ErrorKind::Corrupt`] when any byte differs.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open_with(&self.cipher, aad, sealed)
    }
}

pub(crate) fn seal_with(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let nonce_bytes: [u8; NONCE_LEN] = random_array()?;
    let nonce = XNonce::from(nonce_bytes);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| err!(Other, "encryption failed"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ct);
    Ok(out)
}

pub(crate) fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(err!(
            Corrupt,
            "sealed data is truncated ({} bytes, at least {SEAL_OVERHEAD} expected)",
            sealed.len()
        ));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).map_err(|_| err!(Corrupt, "bad nonce length"))?;
    cipher
        .decrypt(&nonce, Payload { msg: ct, aad })
        .map_err(|_| {
            err!(
                Corrupt,
                "authentication failed (the data was changed or damaged)"
            )
        })
}

/// `N` bytes from the operating system's random generator.
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| err!(Other, "no randomness from the OS: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::generate().unwrap();
        let s = k.seal(b"a", b"hello world").unwrap();
        assert_eq!(k.open(b"a", &s).unwrap(), b"hello world");
        assert!(k.open(b"b", &s).is_err(), "wrong aad must fail");
        let mut t = s.clone();
        t[30] ^= 1;
        assert_eq!(
            k.open(b"a", &t).unwrap_err().kind(),
            crate::ErrorKind::Corrupt
        );
        assert!(
            k.open(b"a", &s[..s.len() - 1]).is_err(),
            "truncation must fail"
        );
        let other = MasterKey::generate().unwrap();
        assert!(other.open(b"a", &s).is_err(), "another key must fail");
        // In-place sealing has the same layout: each side opens the other's output.
        let mut buf = vec![0u8; NONCE_LEN];
        buf.extend_from_slice(b"in place");
        k.seal_in_place(b"a", &mut buf).unwrap();
        assert_eq!(k.open(b"a", &buf).unwrap(), b"in place");
        let mut copy = s.clone();
        assert_eq!(k.open_in_place(b"a", &mut copy).unwrap(), b"hello world");
        buf[NONCE_LEN + 2] ^= 1;
        assert!(k.open_in_place(b"a", &mut buf).is_err());
    }

    /// Issue 12 item 5: the master key was `Clone` and never wiped. Dropping it now zeroes
    /// the secret and every derived key it holds.
    #[test]
    fn master_key_is_wiped_on_drop() {
        let mut k = std::mem::ManuallyDrop::new(MasterKey::from_secret([7u8; 32]));
        assert_ne!(k.id_key, [0u8; 32]);
        let p: *mut MasterKey = &mut *k;
        // SAFETY: `k` is never used again; its memory stays allocated (ManuallyDrop) and the
        // fields read afterwards are plain byte arrays, valid for any bit pattern.
        let (secret, id_key, checksum_key, seed) = unsafe {
            std::ptr::drop_in_place(p);
            (
                std::ptr::read(&raw const (*p).secret),
                std::ptr::read(&raw const (*p).id_key),
                std::ptr::read(&raw const (*p).checksum_key),
                std::ptr::read(&raw const (*p).chunker_seed),
            )
        };
        assert_eq!(secret, [0u8; 32]);
        assert_eq!(id_key, [0u8; 32]);
        assert_eq!(checksum_key, [0u8; 32]);
        assert_eq!(seed, 0);
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<MasterKey>();
    }

    #[test]
    fn chunk_ids_are_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
    }
}
