//! The envelope of every standalone encrypted object (index, point): `docs/FORMAT.md` §3.
//!
//! ```text
//! offset size field
//! 0      4    magic         b"LBIX" (index) | b"LBPT" (point)
//! 4      1    version       1; a reader refuses a larger one before decrypting
//! 5      3    reserved      zero
//! 8      n    sealed        XChaCha20-Poly1305(aad = bytes 0..8, zstd(payload))
//! ```
use crate::crypto::MasterKey;
use crate::error::{err, Result};

/// Version of the envelope and of the payloads this build writes.
pub const OBJECT_VERSION: u8 = 1;
/// Size of the plaintext header.
pub const HEADER_LEN: usize = 8;

/// Compresses, encrypts and frames `payload`.
pub fn seal(key: &MasterKey, magic: &[u8; 4], payload: &[u8]) -> Result<Vec<u8>> {
    seal_version(key, magic, OBJECT_VERSION, payload)
}

/// [`seal`] with another version byte (an object kind whose payload has more than one
/// layout: index objects, `super::index`).
pub fn seal_version(
    key: &MasterKey,
    magic: &[u8; 4],
    version: u8,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut header = header(magic);
    header[4] = version;
    let compressed = zstd::bulk::compress(payload, 3).map_err(|e| err!(Other, "zstd: {e}"))?;
    let sealed = key.seal(&header, &compressed)?;
    let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Checks the frame, authenticates, decrypts and decompresses. `what` names the object in errors.
pub fn open(key: &MasterKey, magic: &[u8; 4], bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    Ok(open_up_to(key, magic, bytes, what, OBJECT_VERSION)?.1)
}

/// [`open`] for an object kind with versions up to `max`; returns the version with the
/// payload. (The version byte is inside the AEAD's associated data: authenticated.)
pub fn open_up_to(
    key: &MasterKey,
    magic: &[u8; 4],
    bytes: &[u8],
    what: &str,
    max: u8,
) -> Result<(u8, Vec<u8>)> {
    check_header_up_to(magic, bytes, what, max)?;
    let compressed = key
        .open(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map_err(|e| e.context(what))?;
    let payload = zstd::stream::decode_all(&compressed[..])
        .map_err(|e| err!(Corrupt, "{what}: bad zstd data: {e}"))?;
    Ok((bytes[4], payload))
}

/// [`open`], refusing (`Corrupt`) a payload that decompresses to more than `max` bytes
/// without ever holding more: for small objects parsed as untrusted (proof records).
pub fn open_bounded(
    key: &MasterKey,
    magic: &[u8; 4],
    bytes: &[u8],
    what: &str,
    max: usize,
) -> Result<Vec<u8>> {
    use std::io::Read;
    check_header(magic, bytes, what)?;
    let compressed = key
        .open(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
        .map_err(|e| e.context(what))?;
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(&compressed[..])
        .and_then(|d| d.take(max as u64 + 1).read_to_end(&mut out))
        .map_err(|e| err!(Corrupt, "{what}: bad zstd data: {e}"))?;
    if out.len() > max {
        return Err(err!(Corrupt, "{what}: payload larger than {max} bytes"));
    }
    Ok(out)
}

fn header(magic: &[u8; 4]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(magic);
    h[4] = OBJECT_VERSION;
    h
}

/// Validates magic and version of a framed object (also used for packs).
pub fn check_header(magic: &[u8; 4], bytes: &[u8], what: &str) -> Result<()> {
    check_header_up_to(magic, bytes, what, OBJECT_VERSION)
}

/// [`check_header`] accepting versions up to `max`.
fn check_header_up_to(magic: &[u8; 4], bytes: &[u8], what: &str, max: u8) -> Result<()> {
    if bytes.len() < HEADER_LEN {
        return Err(err!(Corrupt, "{what}: truncated ({} bytes)", bytes.len()));
    }
    if &bytes[..4] != magic {
        return Err(err!(
            Corrupt,
            "{what}: wrong magic {:?}, expected {:?}",
            String::from_utf8_lossy(&bytes[..4]),
            String::from_utf8_lossy(magic)
        ));
    }
    if bytes[4] > max {
        return Err(newer_version(what, bytes[4] as u32, max as u32));
    }
    if bytes[4] == 0 {
        return Err(err!(Corrupt, "{what}: version 0 is not valid"));
    }
    Ok(())
}

/// The error for anything written by a newer lifeboat.
pub fn newer_version(what: &str, found: u32, supported: u32) -> crate::Error {
    err!(
        Repository,
        "{what} was written by a newer lifeboat (format version {found}; this lifeboat reads up to {supported})"
    )
    .with_hint("upgrade lifeboat to the version that wrote this repository; nothing was changed")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn round_trip_and_version_refusal() {
        let k = MasterKey::generate().unwrap();
        let b = seal(&k, b"LBPT", b"payload").unwrap();
        assert_eq!(open(&k, b"LBPT", &b, "point x").unwrap(), b"payload");
        assert!(open(&k, b"LBIX", &b, "index x").is_err());
        let mut newer = b.clone();
        newer[4] = 2;
        let e = open(&k, b"LBPT", &newer, "point x").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Repository);
        assert!(e.to_string().contains("newer lifeboat"), "{e}");
    }

    /// A small object whose payload decompresses to more than the bound (a zstd bomb from
    /// anyone holding the key) is refused, not inflated.
    #[test]
    fn bounded_open_refuses_a_payload_over_the_bound() {
        let k = MasterKey::generate().unwrap();
        let big = vec![0u8; 2 << 20];
        let b = seal(&k, b"LBVF", &big).unwrap();
        assert!(b.len() < 4096, "zeros compress to almost nothing");
        let e = open_bounded(&k, b"LBVF", &b, "proof x", 1 << 20).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Corrupt);
        assert!(e.to_string().contains("larger than"), "{e}");
        let small = seal(&k, b"LBVF", b"{}").unwrap();
        assert_eq!(
            open_bounded(&k, b"LBVF", &small, "proof y", 1 << 20).unwrap(),
            b"{}"
        );
    }
}
