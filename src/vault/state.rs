//! The sealed OAuth `state` of a connect: who started it, where to go
//! back, the PKCE verifier, and until when it may be used, encrypted and
//! authenticated with the vault's keyring (its own additional-data label,
//! so a state cannot pass for a grant or the reverse).
//!
//! The browser carries it to Zoom and back; nothing about the flow is kept
//! on the gateway until the callback. Single use is enforced by the caller
//! with the replay store (`src/replay.rs`, `claim` of
//! [`StateClaims::replay_key`] for [`MAX_STATE_LIFETIME_SECS`]).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use super::keyring::{aad, Keyring};

/// The longest a state may live: 10 minutes.
pub const MAX_STATE_LIFETIME_SECS: u64 = 600;
/// The longest state string accepted (a sealed state is a few hundred
/// characters; `return_to` is bounded by the allow-list).
pub const MAX_STATE_CHARS: usize = 4096;

const PURPOSE: &str = "meetgate/oauth-state/v1";

fn expose<S: Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose_secret())
}

/// What a connect's `state` carries.
#[derive(Clone, Serialize, Deserialize)]
pub struct StateClaims {
    /// The caller's `[identity.NAME]`.
    pub identity: String,
    /// The caller's subject.
    pub subject: String,
    /// The caller's tenant, when the identity has one.
    pub tenant: Option<String>,
    /// Where the callback sends the browser (already checked against the
    /// allow-list when the state was made).
    pub return_to: String,
    /// The PKCE `code_verifier` (secret until the code exchange).
    #[serde(serialize_with = "expose")]
    pub pkce_verifier: SecretString,
    /// A random value for single-use enforcement.
    pub nonce: String,
    /// Unix seconds after which the state is refused.
    pub expires_at: u64,
}

impl fmt::Debug for StateClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateClaims")
            .field("identity", &self.identity)
            .field("subject", &self.subject)
            .field("tenant", &self.tenant)
            .field("return_to", &self.return_to)
            .field("pkce_verifier", &"[redacted]")
            .field("nonce", &self.nonce)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl StateClaims {
    /// A fresh random nonce (16 bytes, base64url).
    ///
    /// # Errors
    /// The system random generator failed.
    pub fn new_nonce() -> Result<String, StateError> {
        let mut n = [0u8; 16];
        aws_lc_rs::rand::fill(&mut n).map_err(|_| StateError::Seal)?;
        Ok(URL_SAFE_NO_PAD.encode(n))
    }

    /// The key to claim in the replay store so the state is used once.
    pub fn replay_key(&self) -> String {
        format!("oauth-state:{}", self.nonce)
    }
}

/// Why a state was refused. [`StateError::code`] is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not one of ours: bad encoding, unknown key, failed authentication,
    /// unreadable claims, or a lifetime beyond the maximum.
    #[error("the OAuth state is not valid")]
    Invalid,
    /// Authentic but past its `expires_at`.
    #[error("the OAuth state has expired; start the connection again")]
    Expired,
    /// Sealing refused: lifetime not in `1..=600` s, or no randomness.
    #[error("cannot seal the OAuth state")]
    Seal,
}

impl StateError {
    /// A stable code for answers and audit.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Invalid => "state_invalid",
            StateError::Expired => "state_expired",
            StateError::Seal => "state_seal_failed",
        }
    }
}

/// Seals `claims` into a URL-safe string (base64url, no padding) for the
/// authorize request's `state`. `now` is the current Unix time; the claims
/// must expire within [`MAX_STATE_LIFETIME_SECS`] of it.
///
/// # Errors
/// [`StateError::Seal`]: a lifetime of 0 or over 10 minutes, or the random
/// generator failed.
pub fn seal_state(keyring: &Keyring, claims: &StateClaims, now: u64) -> Result<String, StateError> {
    if claims.expires_at <= now || claims.expires_at - now > MAX_STATE_LIFETIME_SECS {
        return Err(StateError::Seal);
    }
    let json =
        secrecy::zeroize::Zeroizing::new(serde_json::to_vec(claims).map_err(|_| StateError::Seal)?);
    let sealed = keyring
        .seal(&aad(PURPOSE, &[]), &json)
        .map_err(|_| StateError::Seal)?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// Opens a state made by [`seal_state`] with a key on `keyring`, at `now`.
///
/// # Errors
/// [`StateError::Invalid`] or [`StateError::Expired`].
pub fn open_state(keyring: &Keyring, state: &str, now: u64) -> Result<StateClaims, StateError> {
    if state.is_empty() || state.len() > MAX_STATE_CHARS {
        return Err(StateError::Invalid);
    }
    let sealed = URL_SAFE_NO_PAD
        .decode(state)
        .map_err(|_| StateError::Invalid)?;
    let opened = keyring
        .open(&aad(PURPOSE, &[]), &sealed)
        .map_err(|_| StateError::Invalid)?;
    let claims: StateClaims =
        serde_json::from_slice(&opened.plaintext).map_err(|_| StateError::Invalid)?;
    if claims.expires_at <= now {
        return Err(StateError::Expired);
    }
    // Only a key holder could have made it; still, never honour more than
    // the maximum lifetime (a clock that jumped back, a bug elsewhere).
    if claims.expires_at - now > MAX_STATE_LIFETIME_SECS {
        return Err(StateError::Invalid);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::grant::tests::{grant, ring};

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const NOW: u64 = 1_767_225_600;

    fn claims() -> StateClaims {
        StateClaims {
            identity: "corp".into(),
            subject: "alice".into(),
            tenant: Some("acme".into()),
            return_to: "https://app.example.com/after".into(),
            pkce_verifier: SecretString::from(VERIFIER),
            nonce: StateClaims::new_nonce().unwrap(),
            expires_at: NOW + 600,
        }
    }

    #[test]
    fn round_trip() {
        let ring = ring();
        let c = claims();
        let s = seal_state(&ring, &c, NOW).unwrap();
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{s}"
        );
        assert!(!s.contains(VERIFIER));
        let back = open_state(&ring, &s, NOW + 599).unwrap();
        assert_eq!(back.subject, "alice");
        assert_eq!(back.tenant.as_deref(), Some("acme"));
        assert_eq!(back.return_to, c.return_to);
        assert_eq!(back.pkce_verifier.expose_secret(), VERIFIER);
        assert_eq!(back.replay_key(), c.replay_key());
        assert_ne!(c.nonce, StateClaims::new_nonce().unwrap());
    }

    #[test]
    fn expired_tampered_foreign_and_oversized_are_refused() {
        let ring = ring();
        let s = seal_state(&ring, &claims(), NOW).unwrap();
        assert_eq!(
            open_state(&ring, &s, NOW + 600).unwrap_err(),
            StateError::Expired
        );
        assert_eq!(StateError::Expired.code(), "state_expired");
        // A state sealed in the future (clock went back) beyond the maximum.
        assert_eq!(
            open_state(&ring, &s, NOW - 1).unwrap_err(),
            StateError::Invalid
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&s).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            open_state(&ring, &tampered, NOW).unwrap_err(),
            StateError::Invalid
        );
        assert_eq!(StateError::Invalid.code(), "state_invalid");
        let other = Keyring::new(("k1", &[4u8; 32]), &[]).unwrap();
        assert_eq!(
            open_state(&other, &s, NOW).unwrap_err(),
            StateError::Invalid
        );
        for junk in ["", "!!!", "AAAA", &"A".repeat(MAX_STATE_CHARS + 1)] {
            assert_eq!(
                open_state(&ring, junk, NOW).unwrap_err(),
                StateError::Invalid
            );
        }
        // A sealed grant is not a state (different additional data).
        let g = grant("corp", "alice", "zu");
        let as_state = URL_SAFE_NO_PAD.encode(g.seal(&ring).unwrap());
        assert_eq!(
            open_state(&ring, &as_state, NOW).unwrap_err(),
            StateError::Invalid
        );
    }

    #[test]
    fn lifetime_is_bounded_when_sealing() {
        let ring = ring();
        let mut c = claims();
        c.expires_at = NOW + 601;
        assert_eq!(seal_state(&ring, &c, NOW).unwrap_err(), StateError::Seal);
        c.expires_at = NOW;
        assert_eq!(seal_state(&ring, &c, NOW).unwrap_err(), StateError::Seal);
    }

    #[test]
    fn debug_hides_the_verifier() {
        let dbg = format!("{:?}", claims());
        assert!(!dbg.contains(VERIFIER), "{dbg}");
        assert!(dbg.contains("alice") && dbg.contains("redacted"), "{dbg}");
    }
}
