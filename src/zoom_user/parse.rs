//! Request bodies and the reading of Zoom's answers (spec section 1):
//! what a usable answer must hold, and which refusal is which error.

use http::{HeaderMap, StatusCode};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{check_base, TokenSet, UserToken, ZoomUserError};
use crate::credentials::lifetime::MAX_EXPIRES_IN;

/// Shortest access-token lifetime accepted: two minutes. The vault
/// refreshes 60 s before expiry, so anything shorter would be refreshed on
/// nearly every use (Zoom answers 3599).
pub const MIN_EXPIRES_IN: u64 = 120;
/// Longest ZAK/OBF token accepted (spec: "at most 512 characters").
pub const MAX_USER_TOKEN_CHARS: usize = 512;
/// Longest access or refresh token accepted.
const MAX_OAUTH_TOKEN_CHARS: usize = 4096;
/// Longest Zoom user id accepted.
const MAX_USER_ID_CHARS: usize = 128;

/// Zoom API error codes (spec section 1).
const CODE_INVALID_ACCESS_TOKEN: i64 = 124;
const CODE_MISSING_SCOPE: i64 = 4711;
const CODE_USER_NOT_FOUND: i64 = 1001;
/// Backend code of "Authorized user not in meeting" (SDK error 4017).
const CODE_AUTHORIZED_USER_NOT_IN_MEETING: i64 = 103041;

/// `grant_type=authorization_code&code=…&redirect_uri=…&code_verifier=…`
/// (the spec's order: `grant_type` first).
pub(super) fn code_request_body(
    code: &str,
    redirect_uri: &str,
    verifier: &SecretString,
) -> Zeroizing<String> {
    Zeroizing::new(
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", verifier.expose_secret())
            .finish(),
    )
}

/// `grant_type=refresh_token&refresh_token=…`.
pub(super) fn refresh_request_body(refresh_token: &SecretString) -> Zeroizing<String> {
    Zeroizing::new(
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token.expose_secret())
            .finish(),
    )
}

/// `token=…` for `/oauth/revoke`.
pub(super) fn revoke_request_body(access_token: &SecretString) -> Zeroizing<String> {
    Zeroizing::new(
        form_urlencoded::Serializer::new(String::new())
            .append_pair("token", access_token.expose_secret())
            .finish(),
    )
}

/// `Basic base64(client_id ":" client_secret)`, as Zoom and Rivet send it.
pub(super) fn basic_auth(client_id: &str, secret: &SecretString) -> Zeroizing<String> {
    use base64::Engine as _;
    let pair = Zeroizing::new(format!("{client_id}:{}", secret.expose_secret()));
    Zeroizing::new(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    ))
}

fn malformed(reason: impl Into<String>) -> ZoomUserError {
    ZoomUserError::Malformed {
        reason: reason.into(),
    }
}

/// A token usable in a header: visible ASCII, bounded.
fn token_field(json: &Value, field: &str, max: usize) -> Result<SecretString, ZoomUserError> {
    let t = json
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| malformed(format!("no {field}")))?;
    if t.is_empty() || t.len() > max || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(format!(
            "{field} is empty, too long or not printable ASCII"
        )));
    }
    Ok(SecretString::from(t.to_owned()))
}

/// Whether `api_url`'s host is `api_base`'s or a sibling of it
/// (`api.zoom.us` allows `*.zoom.us`).
fn api_host_allowed(api_url: &str, api_base: &str) -> bool {
    let host = |u: &str| {
        u.parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
    };
    let (Some(got), Some(base)) = (host(api_url), host(api_base)) else {
        return false;
    };
    if got == base {
        return true;
    }
    match base.split_once('.') {
        Some((_, parent)) if parent.contains('.') => got.ends_with(&format!(".{parent}")),
        _ => false,
    }
}

/// Reads a 200 token answer fetched at `fetched_at`: `access_token`,
/// `refresh_token`, a whole-number `expires_in` within
/// [`MIN_EXPIRES_IN`]..=366 days and `scope` are required; `token_type`,
/// when present, is `bearer`; `api_url` defaults to `api_base`.
pub(super) fn token_set(
    json: &Value,
    fetched_at: u64,
    api_base: &str,
) -> Result<TokenSet, ZoomUserError> {
    let access_token = token_field(json, "access_token", MAX_OAUTH_TOKEN_CHARS)?;
    let refresh_token = token_field(json, "refresh_token", MAX_OAUTH_TOKEN_CHARS)?;
    if let Some(t) = json.get("token_type") {
        if !t.as_str().is_some_and(|t| t.eq_ignore_ascii_case("bearer")) {
            return Err(malformed("token_type is not bearer"));
        }
    }
    let expires_in = json
        .get("expires_in")
        .and_then(Value::as_u64)
        .ok_or_else(|| malformed("expires_in is missing or not a whole number"))?;
    if !(MIN_EXPIRES_IN..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(malformed(format!(
            "expires_in {expires_in} outside {MIN_EXPIRES_IN}..={MAX_EXPIRES_IN} seconds"
        )));
    }
    let scopes = json
        .get("scope")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no scope"))?
        .split_ascii_whitespace()
        .map(str::to_owned)
        .collect();
    let api_url = match json.get("api_url") {
        None | Some(Value::Null) => api_base.to_owned(),
        Some(Value::String(u)) => {
            let u = check_base(u).map_err(|e| malformed(format!("api_url {e}")))?;
            if !api_host_allowed(&u, api_base) {
                return Err(malformed(format!(
                    "api_url `{u}` is outside the configured API domain"
                )));
            }
            u
        }
        Some(_) => return Err(malformed("api_url is not a string")),
    };
    Ok(TokenSet {
        access_token,
        refresh_token,
        expires_in,
        expires_at: fetched_at.saturating_add(expires_in),
        scopes,
        api_url,
    })
}

/// `{"id": …}` of `GET /v2/users/me`.
pub(super) fn user_id(json: &Value) -> Result<String, ZoomUserError> {
    let id = json
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("users/me has no id"))?;
    if id.is_empty() || id.len() > MAX_USER_ID_CHARS || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(malformed(
            "users/me id is empty, too long or not printable ASCII",
        ));
    }
    Ok(id.to_owned())
}

/// `{"token": …}` of `GET /v2/users/me/token`.
pub(super) fn user_token(json: &Value, expires_at: u64) -> Result<UserToken, ZoomUserError> {
    Ok(UserToken {
        token: token_field(json, "token", MAX_USER_TOKEN_CHARS)?,
        expires_at,
    })
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn unavailable(status: StatusCode) -> ZoomUserError {
    ZoomUserError::Unavailable {
        detail: format!("answered {status}"),
    }
}

/// A refusal from the token or revoke endpoint: `{"error": …,
/// "reason": …}`. Only the `error` code is looked at (never echoed for
/// grant errors).
pub(super) fn oauth_error(status: StatusCode, headers: &HeaderMap, json: &Value) -> ZoomUserError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return ZoomUserError::RateLimited {
            retry_after_secs: retry_after(headers),
        };
    }
    if status.is_server_error() {
        return unavailable(status);
    }
    match json.get("error").and_then(Value::as_str) {
        Some("invalid_grant") => ZoomUserError::InvalidGrant,
        Some(e @ ("invalid_client" | "unauthorized_client" | "unsupported_grant_type")) => {
            ZoomUserError::ClientRefused {
                error: e.to_owned(),
            }
        }
        _ => ZoomUserError::Refused {
            status: status.as_u16(),
            code: None,
        },
    }
}

/// A refusal from the API: `{"code": N, "message": …}`. Matched on the
/// code, never the message (spec: messages are representative).
pub(super) fn api_error(status: StatusCode, headers: &HeaderMap, json: &Value) -> ZoomUserError {
    let code = json.get("code").and_then(Value::as_i64);
    match code {
        Some(CODE_INVALID_ACCESS_TOKEN) => return ZoomUserError::AccessTokenRejected,
        Some(CODE_MISSING_SCOPE) => return ZoomUserError::MissingScope,
        Some(CODE_USER_NOT_FOUND) => return ZoomUserError::UserNotFound,
        Some(CODE_AUTHORIZED_USER_NOT_IN_MEETING) => return ZoomUserError::ObfUserNotInMeeting,
        _ => {}
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        ZoomUserError::RateLimited {
            retry_after_secs: retry_after(headers),
        }
    } else if status == StatusCode::UNAUTHORIZED {
        ZoomUserError::AccessTokenRejected
    } else if status.is_server_error() {
        unavailable(status)
    } else {
        ZoomUserError::Refused {
            status: status.as_u16(),
            code,
        }
    }
}
