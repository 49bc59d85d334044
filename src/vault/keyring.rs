//! The vault's keys and the sealed-record envelope.
//!
//! A [`Keyring`] holds one current AES-256-GCM key and any number of older
//! ones, each with an id. [`Keyring::seal`] always uses the current key;
//! [`Keyring::open`] accepts every key on the ring and says whether the
//! record was sealed under an older one, so the caller can re-seal it
//! (rotation: add a new current key, keep the old one as `previous` until
//! every record has been re-sealed, then drop it).
//!
//! Envelope (all records, grants and OAuth states alike):
//!
//! ```text
//! version (1 byte, 0x01) || key id length (1 byte) || key id (1..=64 bytes)
//!   || nonce (12 random bytes) || ciphertext || GCM tag (16 bytes)
//! ```
//!
//! The AEAD's additional data is the envelope header (version and key id)
//! followed by the caller's context ([`aad`]): a grant's context names its
//! vault key (identity, subject), so a record copied under another user's
//! key does not open. Nonces are random: AES-GCM stays within its bounds
//! for about 2^32 records per key, far beyond what one key seals between
//! rotations here.
//!
//! Keys come from aws-lc-rs, the one crypto backend of the gateway (rustls
//! and jsonwebtoken use it too).

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine as _;
use secrecy::zeroize::Zeroizing;

/// Envelope format version.
const VERSION: u8 = 1;
/// Length of an AES-256 key.
pub const KEY_LEN: usize = 32;
/// Longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Length of the GCM tag appended to the ciphertext.
const TAG_LEN: usize = 16;

/// Why a keyring could not be built. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The id is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("key id {id:?} must be 1 to 64 characters from A-Z a-z 0-9 . _ -")]
    BadId { id: String },
    /// Two keys share an id.
    #[error("key id {id:?} is used twice")]
    DuplicateId { id: String },
    /// The value is not base64 (standard or URL-safe alphabet).
    #[error("key {id:?} is not base64")]
    Encoding { id: String },
    /// The key does not have [`KEY_LEN`] bytes.
    #[error(
        "key {id:?} has {len} bytes; AES-256-GCM needs exactly 32 (e.g. `openssl rand -base64 32`)"
    )]
    WrongLength { id: String, len: usize },
}

/// Why a record could not be opened. Deliberately coarse: a wrong key, a
/// tampered byte and a record bound to another context look the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not an envelope of a known version.
    #[error("not a sealed record")]
    Malformed,
    /// Sealed under a key id that is not on the ring.
    #[error("sealed under a key this keyring does not hold")]
    UnknownKey,
    /// Tag check failed: tampered, or bound to another context.
    #[error("sealed record failed authentication")]
    Tampered,
}

/// Sealing failed: the system random generator or the cipher refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealing failed (random generator or cipher unavailable)")]
pub struct SealError;

/// A record opened by [`Keyring::open`].
pub struct Opened {
    /// The plaintext, wiped from memory when dropped.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Sealed under a key other than the current one: re-seal it.
    pub stale_key: bool,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field(
                "plaintext",
                &format_args!("[{} bytes redacted]", self.plaintext.len()),
            )
            .field("stale_key", &self.stale_key)
            .finish()
    }
}

struct Key {
    id: String,
    key: LessSafeKey,
}

/// AES-256-GCM keys by id: one current key (sealing and opening) and older
/// keys (opening only). `Debug` shows the ids, never a key.
pub struct Keyring {
    current: Key,
    previous: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field(
                "previous",
                &self
                    .previous
                    .iter()
                    .map(|k| k.id.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn check_id(id: &str) -> Result<(), KeyringError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(KeyringError::BadId { id: id.to_owned() })
    }
}

fn make_key(id: &str, bytes: &[u8]) -> Result<Key, KeyringError> {
    check_id(id)?;
    if bytes.len() != KEY_LEN {
        return Err(KeyringError::WrongLength {
            id: id.to_owned(),
            len: bytes.len(),
        });
    }
    let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| KeyringError::WrongLength {
        id: id.to_owned(),
        len: bytes.len(),
    })?;
    Ok(Key {
        id: id.to_owned(),
        key: LessSafeKey::new(unbound),
    })
}

/// Decodes a base64 key (standard or URL-safe alphabet, padding optional,
/// surrounding whitespace ignored). The error names the id only.
fn decode_key(id: &str, b64: &str) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, config);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, config);
    let text = b64.trim();
    standard
        .decode(text)
        .or_else(|_| url_safe.decode(text))
        .map(Zeroizing::new)
        .map_err(|_| KeyringError::Encoding { id: id.to_owned() })
}

impl Keyring {
    /// A keyring from raw 32-byte keys: `current` seals and opens, each of
    /// `previous` only opens. Ids must be unique, 1 to 64 characters from
    /// `[A-Za-z0-9._-]`.
    ///
    /// # Errors
    /// A bad or duplicate id, or a key that is not 32 bytes.
    pub fn new(current: (&str, &[u8]), previous: &[(&str, &[u8])]) -> Result<Self, KeyringError> {
        let current = make_key(current.0, current.1)?;
        let mut seen = vec![current.id.clone()];
        let mut older = Vec::with_capacity(previous.len());
        for (id, bytes) in previous {
            let key = make_key(id, bytes)?;
            if seen.contains(&key.id) {
                return Err(KeyringError::DuplicateId { id: key.id });
            }
            seen.push(key.id.clone());
            older.push(key);
        }
        Ok(Keyring {
            current,
            previous: older,
        })
    }

    /// Like [`Keyring::new`] with base64-encoded keys (standard or URL-safe
    /// alphabet, padding optional), as the configuration holds them after
    /// resolving `${VAR}` / `file:`.
    ///
    /// # Errors
    /// As [`Keyring::new`], plus [`KeyringError::Encoding`]; no error
    /// quotes a key.
    pub fn from_base64(
        current: (&str, &str),
        previous: &[(&str, &str)],
    ) -> Result<Self, KeyringError> {
        let cur = decode_key(current.0, current.1)?;
        let mut older = Vec::with_capacity(previous.len());
        for (id, b64) in previous {
            older.push((*id, decode_key(id, b64)?));
        }
        let refs: Vec<(&str, &[u8])> = older.iter().map(|(id, k)| (*id, k.as_slice())).collect();
        Keyring::new((current.0, cur.as_slice()), &refs)
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of every key on the ring, current first.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.current.id.as_str()).chain(self.previous.iter().map(|k| k.id.as_str()))
    }

    fn header(id: &str) -> Vec<u8> {
        let mut h = Vec::with_capacity(2 + id.len());
        h.push(VERSION);
        // check_id bounds the length to 64.
        h.push(id.len() as u8);
        h.extend_from_slice(id.as_bytes());
        h
    }

    /// Seals `plaintext` under the current key, bound to `context` (see
    /// [`aad`]).
    ///
    /// # Errors
    /// The system random generator failed.
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let header = Self::header(&self.current.id);
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| SealError)?;
        let mut additional = header.clone();
        additional.extend_from_slice(context);
        let mut out = Vec::with_capacity(header.len() + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        let body_at = out.len();
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(body_at);
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&additional[..]),
                &mut body,
            )
            .map_err(|_| SealError)?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The key id a sealed record names, if it is an envelope at all.
    pub fn sealed_key_id(sealed: &[u8]) -> Option<&str> {
        let (&version, rest) = sealed.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = usize::from(len);
        if version != VERSION || len == 0 || len > MAX_KEY_ID_LEN || rest.len() < len {
            return None;
        }
        std::str::from_utf8(&rest[..len]).ok()
    }

    /// Opens a record sealed by this ring (under any of its keys) with the
    /// same `context`.
    ///
    /// # Errors
    /// [`OpenError`]: not an envelope, unknown key id, or authentication
    /// failed (tampered, or sealed for another context).
    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Opened, OpenError> {
        let id = Self::sealed_key_id(sealed).ok_or(OpenError::Malformed)?;
        let header_len = 2 + id.len();
        if sealed.len() < header_len + NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (key, stale_key) = if id == self.current.id {
            (&self.current, false)
        } else {
            let key = self
                .previous
                .iter()
                .find(|k| k.id == id)
                .ok_or(OpenError::UnknownKey)?;
            (key, true)
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[header_len..header_len + NONCE_LEN]);
        let mut additional = sealed[..header_len].to_vec();
        additional.extend_from_slice(context);
        let mut body = Zeroizing::new(sealed[header_len + NONCE_LEN..].to_vec());
        let len = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&additional[..]),
                &mut body,
            )
            .map_err(|_| OpenError::Tampered)?
            .len();
        body.truncate(len);
        Ok(Opened {
            plaintext: body,
            stale_key,
        })
    }
}

/// Additional data binding a record to its context: a purpose label and
/// the parts that name the record, each length-prefixed so that no two
/// different lists give the same bytes.
pub fn aad(purpose: &str, parts: &[&str]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(8 + purpose.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    for part in std::iter::once(&purpose).chain(parts) {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: [u8; 32] = [7u8; 32];
    const K2: [u8; 32] = [9u8; 32];

    fn b64(k: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    #[test]
    fn seals_and_opens_with_context() {
        let ring = Keyring::new(("k1", &K1), &[]).unwrap();
        let ctx = aad("test", &["a", "b"]);
        let sealed = ring.seal(&ctx, b"hello").unwrap();
        assert_eq!(sealed[0], 1);
        assert_eq!(Keyring::sealed_key_id(&sealed), Some("k1"));
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        let opened = ring.open(&ctx, &sealed).unwrap();
        assert_eq!(&opened.plaintext[..], b"hello");
        assert!(!opened.stale_key);
        // Another context (another user's key) does not open it.
        assert_eq!(
            ring.open(&aad("test", &["a", "c"]), &sealed).unwrap_err(),
            OpenError::Tampered
        );
        // Length prefixes keep ("ab","") and ("a","b") apart.
        assert_ne!(aad("p", &["ab", ""]), aad("p", &["a", "b"]));
        // Two seals of the same text differ (random nonce).
        assert_ne!(sealed, ring.seal(&ctx, b"hello").unwrap());
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let ring = Keyring::new(("k1", &K1), &[]).unwrap();
        let sealed = ring.seal(b"ctx", b"payload").unwrap();
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(ring.open(b"ctx", &bad).is_err(), "byte {i}");
        }
        for n in 0..sealed.len() {
            assert!(ring.open(b"ctx", &sealed[..n]).is_err(), "truncated to {n}");
        }
    }

    #[test]
    fn rotation_opens_old_records_and_flags_them() {
        let old = Keyring::new(("2025", &K1), &[]).unwrap();
        let sealed = old.seal(b"ctx", b"grant").unwrap();
        let rotated = Keyring::new(("2026", &K2), &[("2025", &K1)]).unwrap();
        let opened = rotated.open(b"ctx", &sealed).unwrap();
        assert!(opened.stale_key);
        assert_eq!(&opened.plaintext[..], b"grant");
        let resealed = rotated.seal(b"ctx", &opened.plaintext).unwrap();
        assert_eq!(Keyring::sealed_key_id(&resealed), Some("2026"));
        assert!(!rotated.open(b"ctx", &resealed).unwrap().stale_key);
        // Once the old key is dropped, its records are unknown.
        let newest = Keyring::new(("2026", &K2), &[]).unwrap();
        assert_eq!(
            newest.open(b"ctx", &sealed).unwrap_err(),
            OpenError::UnknownKey
        );
        // A key id relabelled onto another key fails authentication.
        let liar = Keyring::new(("2025", &K2), &[]).unwrap();
        assert_eq!(liar.open(b"ctx", &sealed).unwrap_err(), OpenError::Tampered);
    }

    #[test]
    fn from_base64_errors_are_clear_and_quote_no_key() {
        let good = b64(&K1);
        let ring = Keyring::from_base64(("cur", &good), &[("old", &b64(&K2))]).unwrap();
        assert_eq!(ring.key_ids().collect::<Vec<_>>(), ["cur", "old"]);
        // URL-safe, unpadded, surrounded by a newline: accepted.
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert!(Keyring::from_base64(("u", &format!("{url}\n")), &[]).is_ok());

        let short = b64(&[1u8; 16]);
        let e = Keyring::from_base64(("cur", &short), &[]).unwrap_err();
        assert_eq!(
            e,
            KeyringError::WrongLength {
                id: "cur".into(),
                len: 16
            }
        );
        assert!(!e.to_string().contains(&short));
        let e = Keyring::from_base64(("cur", "not base64 at all!"), &[]).unwrap_err();
        assert_eq!(e, KeyringError::Encoding { id: "cur".into() });
        assert!(!e.to_string().contains("not base64 at all"));
        assert!(matches!(
            Keyring::from_base64(("cur", &good), &[("cur", &good)]),
            Err(KeyringError::DuplicateId { .. })
        ));
        assert!(matches!(
            Keyring::new(("", &K1), &[]),
            Err(KeyringError::BadId { .. })
        ));
        assert!(matches!(
            Keyring::new(("a b", &K1), &[]),
            Err(KeyringError::BadId { .. })
        ));
        assert!(matches!(
            Keyring::new((&"x".repeat(65), &K1), &[]),
            Err(KeyringError::BadId { .. })
        ));
    }

    #[test]
    fn debug_shows_ids_only() {
        let cur = b64(&K1);
        let ring = Keyring::from_base64(("cur", &cur), &[("old", &b64(&K2))]).unwrap();
        let dbg = format!("{ring:?}");
        assert!(dbg.contains("cur") && dbg.contains("old"), "{dbg}");
        assert!(!dbg.contains(&cur) && !dbg.contains(&b64(&K2)), "{dbg}");
        assert!(!dbg.contains("7, 7") && !dbg.contains("9, 9"), "{dbg}");
        let opened = ring
            .open(b"c", &ring.seal(b"c", b"top-secret").unwrap())
            .unwrap();
        assert!(!format!("{opened:?}").contains("top-secret"));
    }
}
