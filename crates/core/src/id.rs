//! Identifiers.
//!
//! - [`ChunkId`]: BLAKE3 keyed with the repository's id key over a chunk's plaintext,
//!   truncated to 16 bytes (`docs/FORMAT.md` §2). Ids reveal nothing across repositories. 128
//!   bits of a keyed PRF make an accidental collision among 2^32 chunks a 2^-65 event, and an
//!   attacker without the key cannot aim for one; every page costs its id twice (page table and
//!   index), so halving the id halves that overhead (~1.7% of a compressed database).
//! - [`ObjectId`]: unkeyed BLAKE3 of a stored object's bytes (pack, index, point, key):
//!   its name in storage. A flipped bit is found by hashing, even without the password.
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Bytes in this id.
            pub const LEN: usize = $len;

            /// Full lower-case hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex characters, as shown to people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            /// Parses the full hex form.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; $len];
                hex::decode_to_slice(s, &mut out).ok()?;
                Some($name(out))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.short())
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_hex(&s).ok_or_else(|| serde::de::Error::custom(concat!("expected ", stringify!($len), " bytes of hex")))
            }
        }
    };
}

id_type!(
    /// Keyed BLAKE3 of a chunk's plaintext, truncated to 128 bits.
    ChunkId,
    16
);
id_type!(
    /// Unkeyed BLAKE3 of a stored object's bytes; the object's name.
    ObjectId,
    32
);

impl ObjectId {
    /// The id of these stored bytes.
    pub fn of(bytes: &[u8]) -> ObjectId {
        ObjectId(*blake3::hash(bytes).as_bytes())
    }
}
