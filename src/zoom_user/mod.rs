//! Zoom user authorization (spec `docs/platforms/platforms-2026.md`
//! section 1): the OAuth authorization-code flow with PKCE (S256), token
//! refresh with rotation, `GET /v2/users/me`, the user token API (ZAK and
//! OBF tokens) and revocation.
//!
//! [`ZoomUserClient`] makes the calls; this module holds what they share:
//! the settings, the PKCE verifier, the authorize URL, the typed results
//! and [`ZoomUserError`] with its stable codes. No token, code, verifier or
//! client secret appears in an error message or in `Debug` output.

mod client;
mod parse;

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

pub use client::ZoomUserClient;
pub use parse::{MAX_USER_TOKEN_CHARS, MIN_EXPIRES_IN};

/// Zoom's OAuth host.
pub const ZOOM_OAUTH_BASE: &str = "https://zoom.us";
/// Zoom's API host, used when a token answer has no `api_url`.
pub const ZOOM_API_BASE: &str = "https://api.zoom.us";
/// Bound on one call (connect, request, and reading the answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// ZAK and OBF lifetime when no `ttl` is asked for (spec: 7200 s).
pub const DEFAULT_USER_TOKEN_TTL: u64 = 7200;
/// Longest `ttl` Zoom accepts for ZAK and OBF tokens: one year.
pub const MAX_USER_TOKEN_TTL: u64 = 365 * 24 * 3600;

/// What the client needs from the configuration.
pub struct ZoomUserSettings {
    /// The app's Client ID (also the Meeting SDK key).
    pub client_id: String,
    /// The app's Client Secret.
    pub client_secret: SecretString,
    /// The redirect URL on the app's allow list, exactly as registered.
    pub redirect_uri: String,
    /// `https://zoom.us` (a loopback `http://` only in tests).
    pub oauth_base: String,
    /// `https://api.zoom.us`: the API base when a token answer has no
    /// `api_url`; an `api_url` must be on this host or a sibling of it
    /// (`api.zoom.us` allows `*.zoom.us`).
    pub api_base: String,
    /// Bound on each call.
    pub timeout: Duration,
}

impl fmt::Debug for ZoomUserSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoomUserSettings")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("redirect_uri", &self.redirect_uri)
            .field("oauth_base", &self.oauth_base)
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub use crate::net::check_base_url as check_base;

/// A PKCE `code_verifier` (RFC 7636): secret until the code exchange.
pub struct PkceVerifier(SecretString);

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

impl PkceVerifier {
    /// A new verifier: 32 random bytes, base64url without padding (43
    /// characters).
    ///
    /// # Errors
    /// The system random generator failed.
    pub fn generate() -> Result<Self, ZoomUserError> {
        let mut bytes = secrecy::zeroize::Zeroizing::new([0u8; 32]);
        aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| ZoomUserError::InvalidRequest {
            reason: "no randomness for the PKCE verifier",
        })?;
        Ok(PkceVerifier(SecretString::from(
            URL_SAFE_NO_PAD.encode(&bytes[..]),
        )))
    }

    /// A verifier read back (from the sealed state): 43 to 128 characters
    /// from `[A-Za-z0-9-._~]`.
    ///
    /// # Errors
    /// [`ZoomUserError::InvalidRequest`] (the value is not quoted).
    pub fn from_secret(s: SecretString) -> Result<Self, ZoomUserError> {
        let v = s.expose_secret();
        let ok = (43..=128).contains(&v.len())
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if ok {
            Ok(PkceVerifier(s))
        } else {
            Err(ZoomUserError::InvalidRequest {
                reason: "PKCE verifier must be 43 to 128 characters from A-Z a-z 0-9 - . _ ~",
            })
        }
    }

    /// The verifier itself (for the sealed state and the code exchange).
    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    /// `code_challenge` for S256: base64url(SHA-256(verifier)) without
    /// padding, over the verifier's ASCII text.
    pub fn challenge(&self) -> String {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            self.0.expose_secret().as_bytes(),
        );
        URL_SAFE_NO_PAD.encode(digest.as_ref())
    }
}

/// A token endpoint answer (code exchange or refresh), validated.
pub struct TokenSet {
    pub access_token: SecretString,
    /// The new refresh token (Zoom rotates it every time).
    pub refresh_token: SecretString,
    /// Lifetime as answered, within [`MIN_EXPIRES_IN`] to 366 days.
    pub expires_in: u64,
    /// `fetched_at + expires_in`.
    pub expires_at: u64,
    /// Granted scopes (space-separated `scope`).
    pub scopes: Vec<String>,
    /// API base for the user's account, checked (see
    /// [`ZoomUserSettings::api_base`]).
    pub api_url: String,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .field("scopes", &self.scopes)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// A ZAK or OBF token from `GET /v2/users/me/token`.
pub struct UserToken {
    pub token: SecretString,
    /// `fetched_at + ttl` (the requested `ttl`, or 7200 s).
    pub expires_at: u64,
}

impl fmt::Debug for UserToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a Zoom call failed. [`ZoomUserError::code`] is stable; messages
/// never contain a token, code, verifier or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoomUserError {
    /// The code or refresh token is dead (used, expired, revoked, wrong
    /// PKCE verifier): the user must connect again. Never retried.
    #[error("Zoom refused the grant (invalid_grant): the user must connect again")]
    InvalidGrant,
    /// The token endpoint refused the app itself (wrong client id or
    /// secret): a configuration error.
    #[error("Zoom refused the client: {error} (check the client id and secret)")]
    ClientRefused { error: String },
    /// The API refused the access token (code 124 or 401): refresh once,
    /// then retry once.
    #[error("Zoom refused the user's access token")]
    AccessTokenRejected,
    /// The access token lacks a scope (code 4711): add it to the app; the
    /// user must connect again.
    #[error("the user's Zoom token lacks a required scope (add user:read:token to the app)")]
    MissingScope,
    /// Zoom does not know the user (code 1001): the grant is unusable.
    #[error("Zoom does not know the authorizing user")]
    UserNotFound,
    /// Zoom refused the OBF token because the authorizing user is not in
    /// the meeting (backend code 103041, "Authorized user not in meeting").
    #[error("the authorizing Zoom user is not in the meeting")]
    ObfUserNotInMeeting,
    /// 429: back off.
    #[error("Zoom rate limit reached")]
    RateLimited { retry_after_secs: Option<u64> },
    /// Another refusal (4xx), with Zoom's numeric code when it sent one.
    #[error("Zoom refused the request ({status}{})", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Refused { status: u16, code: Option<i64> },
    /// Zoom could not be reached, timed out or answered 5xx.
    #[error("Zoom unavailable: {detail}")]
    Unavailable { detail: String },
    /// A 2xx answer that is not what the spec says.
    #[error("Zoom sent an unusable answer: {reason}")]
    Malformed { reason: String },
    /// The caller's input cannot be sent (e.g. a meeting id that is not a
    /// meeting number).
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: &'static str },
}

impl ZoomUserError {
    /// A stable code for answers, audit, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ZoomUserError::InvalidGrant => "invalid_grant",
            ZoomUserError::ClientRefused { .. } => "zoom_client_refused",
            ZoomUserError::AccessTokenRejected => "zoom_access_token_rejected",
            ZoomUserError::MissingScope => "zoom_missing_scope",
            ZoomUserError::UserNotFound => "zoom_user_not_found",
            ZoomUserError::ObfUserNotInMeeting => "obf_user_not_in_meeting",
            ZoomUserError::RateLimited { .. } => "zoom_rate_limited",
            ZoomUserError::Refused { .. } => "zoom_refused",
            ZoomUserError::Unavailable { .. } => "upstream_unavailable",
            ZoomUserError::Malformed { .. } => "malformed_response",
            ZoomUserError::InvalidRequest { .. } => "invalid_request",
        }
    }

    /// Whether the grant is unusable and the user must connect again
    /// (delete it; do not retry).
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            ZoomUserError::InvalidGrant | ZoomUserError::MissingScope | ZoomUserError::UserNotFound
        )
    }
}

/// The authorize URL for the user's browser, parameters in the spec's
/// order (`response_type`, `client_id`, `redirect_uri`, `state`,
/// `code_challenge`, `code_challenge_method=S256`), form-encoded. No
/// `scope`: Zoom grants the app's configured scopes.
pub fn authorize_url(settings: &ZoomUserSettings, state: &str, code_challenge: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &settings.client_id)
        .append_pair("redirect_uri", &settings.redirect_uri)
        .append_pair("state", state)
        .append_pair("code_challenge", code_challenge)
        .append_pair("code_challenge_method", "S256")
        .finish();
    format!(
        "{}/oauth/authorize?{query}",
        settings.oauth_base.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests;
