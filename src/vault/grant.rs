//! A user's Zoom OAuth grant as the vault keeps it, and how it is sealed.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::keyring::{aad, Keyring, OpenError, SealError};

/// What a grant is stored under: the caller's identity (configured
/// `[identity.NAME]`) and the token's subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrantKey {
    pub identity: String,
    pub subject: String,
}

impl GrantKey {
    /// A key for `identity` and `subject`.
    pub fn new(identity: impl Into<String>, subject: impl Into<String>) -> Self {
        GrantKey {
            identity: identity.into(),
            subject: subject.into(),
        }
    }

    /// The additional data a grant of this key is sealed with.
    pub fn aad(&self) -> Vec<u8> {
        aad("meetgate/grant/v1", &[&self.identity, &self.subject])
    }

    /// An unambiguous byte form (length-prefixed parts), for stores that
    /// need one string per key.
    pub fn encode(&self) -> String {
        format!("{}:{}{}", self.identity.len(), self.identity, self.subject)
    }

    /// Reads [`GrantKey::encode`].
    pub fn decode(s: &str) -> Option<Self> {
        let (len, rest) = s.split_once(':')?;
        let len: usize = len.parse().ok()?;
        if !rest.is_char_boundary(len) {
            return None;
        }
        let (identity, subject) = rest.split_at(len);
        Some(GrantKey::new(identity, subject))
    }
}

fn expose<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

/// One user's Zoom OAuth grant. The tokens are [`SecretString`]s: `Debug`
/// never shows them; they are serialised only inside a sealed record.
#[derive(Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The `[identity.NAME]` the user signed in with.
    pub identity: String,
    /// The user's subject (`sub`) at that identity.
    pub subject: String,
    /// The user's tenant, when the identity has one.
    pub tenant: Option<String>,
    /// Zoom's user id (`GET /v2/users/me` → `id`).
    pub zoom_user_id: String,
    /// Bearer token for Zoom's API.
    #[serde(serialize_with = "expose")]
    pub access_token: SecretString,
    /// The latest refresh token (Zoom rotates it on every refresh).
    #[serde(serialize_with = "expose")]
    pub refresh_token: SecretString,
    /// Unix seconds at which the access token expires.
    pub access_expires_at: u64,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// API base for the user's account, e.g. `https://api.zoom.us`.
    pub api_url: String,
    /// Unix seconds of the code exchange that created the grant.
    pub connected_since: u64,
    /// Unix seconds of the last write (exchange or refresh).
    pub updated_at: u64,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("identity", &self.identity)
            .field("subject", &self.subject)
            .field("tenant", &self.tenant)
            .field("zoom_user_id", &self.zoom_user_id)
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("access_expires_at", &self.access_expires_at)
            .field("scopes", &self.scopes)
            .field("api_url", &self.api_url)
            .field("connected_since", &self.connected_since)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// Why a stored grant could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantOpenError {
    #[error(transparent)]
    Open(#[from] OpenError),
    /// Authentic but not a grant of this format (never quotes the text).
    #[error("sealed grant is not a grant record")]
    Format,
    /// Authentic but names another user than the key it is stored under.
    #[error("sealed grant belongs to another key")]
    Mismatch,
}

impl Grant {
    /// The key this grant is stored under.
    pub fn key(&self) -> GrantKey {
        GrantKey::new(self.identity.clone(), self.subject.clone())
    }

    /// Seconds until the access token expires (0 when it has).
    pub fn access_expires_in(&self, now: u64) -> u64 {
        self.access_expires_at.saturating_sub(now)
    }

    /// Whether the access token must be refreshed before use: `margin`
    /// seconds or less remain (Zoom's Rivet uses 60).
    pub fn needs_refresh(&self, now: u64, margin: u64) -> bool {
        self.access_expires_in(now) <= margin
    }

    /// The grant sealed under the keyring's current key, bound to its key.
    ///
    /// # Errors
    /// The random generator failed.
    pub fn seal(&self, keyring: &Keyring) -> Result<Vec<u8>, SealError> {
        let json =
            secrecy::zeroize::Zeroizing::new(serde_json::to_vec(self).map_err(|_| SealError)?);
        keyring.seal(&self.key().aad(), &json)
    }

    /// Opens a grant stored under `key`; the flag is true when it was
    /// sealed under an older key (re-seal it).
    ///
    /// # Errors
    /// Not authentic for `key`, or not a grant.
    pub fn open(
        keyring: &Keyring,
        key: &GrantKey,
        sealed: &[u8],
    ) -> Result<(Grant, bool), GrantOpenError> {
        let opened = keyring.open(&key.aad(), sealed)?;
        let grant: Grant =
            serde_json::from_slice(&opened.plaintext).map_err(|_| GrantOpenError::Format)?;
        if grant.identity != key.identity || grant.subject != key.subject {
            return Err(GrantOpenError::Mismatch);
        }
        Ok((grant, opened.stale_key))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const ACCESS: &str = "TESTaccessTOKEN.one-secret-value";
    pub(crate) const REFRESH: &str = "TESTrefreshTOKEN.two-secret-value";

    pub(crate) fn grant(identity: &str, subject: &str, zoom_user: &str) -> Grant {
        Grant {
            identity: identity.into(),
            subject: subject.into(),
            tenant: Some("acme".into()),
            zoom_user_id: zoom_user.into(),
            access_token: SecretString::from(ACCESS),
            refresh_token: SecretString::from(REFRESH),
            access_expires_at: 1_767_229_199,
            scopes: vec!["user:read:token".into(), "user:read:zak".into()],
            api_url: "https://api.zoom.us".into(),
            connected_since: 1_767_225_600,
            updated_at: 1_767_225_600,
        }
    }

    pub(crate) fn ring() -> Keyring {
        Keyring::new(("k1", &[3u8; 32]), &[]).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let ring = ring();
        let g = grant("corp", "alice", "zu1");
        let sealed = g.seal(&ring).unwrap();
        for secret in [ACCESS, REFRESH, "alice", "zu1", "user:read"] {
            assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
        let (back, stale) = Grant::open(&ring, &g.key(), &sealed).unwrap();
        assert!(!stale);
        assert_eq!(back.access_token.expose_secret(), ACCESS);
        assert_eq!(back.refresh_token.expose_secret(), REFRESH);
        assert_eq!(back.scopes, g.scopes);
        assert_eq!(back.access_expires_at, 1_767_229_199);
        // Copied under another user's key: refused.
        let bob = GrantKey::new("corp", "bob");
        assert_eq!(
            Grant::open(&ring, &bob, &sealed).unwrap_err(),
            GrantOpenError::Open(OpenError::Tampered)
        );
    }

    #[test]
    fn debug_never_shows_tokens() {
        let dbg = format!("{:?}", grant("corp", "alice", "zu1"));
        assert!(!dbg.contains(ACCESS) && !dbg.contains(REFRESH), "{dbg}");
        assert!(dbg.contains("zu1") && dbg.contains("redacted"), "{dbg}");
    }

    #[test]
    fn key_encoding_is_unambiguous() {
        for (i, s) in [("a", "b:c"), ("a:b", "c"), ("", "x"), ("é", "ü")] {
            let k = GrantKey::new(i, s);
            assert_eq!(GrantKey::decode(&k.encode()), Some(k));
        }
        assert_ne!(
            GrantKey::new("a", "b:c").encode(),
            GrantKey::new("a:b", "c").encode()
        );
        assert_eq!(GrantKey::decode("9:ab"), None);
        assert_eq!(GrantKey::decode("x:ab"), None);
    }

    #[test]
    fn refresh_margin() {
        let g = grant("corp", "alice", "zu1");
        assert!(!g.needs_refresh(1_767_229_199 - 61, 60));
        assert!(g.needs_refresh(1_767_229_199 - 60, 60));
        assert!(g.needs_refresh(u64::MAX, 60));
    }
}
