//! Inject and respond: mint or fetch credentials for the upstream request,
//! or answer a signature request at the gateway.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use super::authn::Principal;
use super::route::Captures;
use crate::body::ResBody;
use crate::config::{CredentialKind, Inject, Respond};
use crate::credentials::mint::{
    self, cut_chars, valid_meeting_number, MAX_SESSION_KEY, MAX_SESSION_NAME, MAX_USER_IDENTITY,
};
use crate::credentials::oauth::{CachedToken, TokenSource};
use crate::credentials::{granted_role, now_secs};
use crate::error::GatewayError;
use crate::live::zoom_users::ZoomUsers;
use crate::live::{LiveInject, LiveRoute};

/// What `inject` produced for one request.
#[derive(Default)]
pub struct Injected {
    /// Headers to set on the upstream request (values marked sensitive).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Fetched tokens used, to drop if the upstream rejects them.
    pub fetched: Vec<(Arc<TokenSource>, SecretString)>,
    /// Minted credentials and the role granted (for the audit trail).
    pub minted: Vec<(String, Option<u8>)>,
}

fn bad(code: &'static str, description: &str) -> GatewayError {
    GatewayError::BadRequest {
        code,
        description: description.to_owned(),
    }
}

fn capture<'a>(captures: &'a Captures, name: &str) -> Option<&'a str> {
    captures
        .iter()
        .find(|(n, _)| &**n == name)
        .map(|(_, v)| v.as_str())
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn sensitive(v: &str) -> Result<HeaderValue, GatewayError> {
    let mut v = HeaderValue::from_str(v).map_err(|_| {
        bad(
            "invalid_request",
            "the credential cannot be sent as a header",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The role asked for in the query (`?role=0|1`) of an inject route.
fn requested_role(query: Option<&str>) -> Result<Option<u8>, GatewayError> {
    match query_param(query, "role").as_deref() {
        None => Ok(None),
        Some("0") => Ok(Some(0)),
        Some("1") => Ok(Some(1)),
        Some(_) => Err(bad("invalid_request", "role must be 0 or 1")),
    }
}

fn unavailable(name: &str) -> GatewayError {
    GatewayError::CredentialUnavailable {
        credential: name.to_owned(),
    }
}

/// Mints or fetches every credential the route injects.
/// A fetched credential waits for its token at most `wait`
/// ([`fetched_token`]).
pub async fn inject(
    route: &LiveRoute,
    wait: Duration,
    principal: Option<&Principal>,
    captures: &Captures,
    query: Option<&str>,
) -> Result<Injected, GatewayError> {
    let mut out = Injected::default();
    for live in &route.inject {
        let inj = &*live.settings;
        let cred = &inj.credential;
        let value = match &cred.kind {
            CredentialKind::ZoomMeetingSdk {
                client_id,
                client_secret,
                ttl,
            } => {
                let meeting = meeting_number_for(inj, captures, query)?;
                let role = granted_role(requested_role(query)?, &inj.host_roles, principal)?;
                out.minted.push((cred.name.clone(), Some(role)));
                mint::meeting_sdk(
                    client_id,
                    client_secret.expose_secret().as_bytes(),
                    &meeting,
                    role,
                    ttl.as_secs(),
                    now_secs(),
                )
            }
            CredentialKind::ZoomVideoSdk {
                client_id,
                client_secret,
                ttl,
            } => {
                let session = session_name(inj.session_param.as_deref(), captures)?;
                let role = granted_role(requested_role(query)?, &inj.host_roles, principal)?;
                let identity = principal
                    .and_then(|p| p.subject.as_deref())
                    .map(|s| cut_chars(s, MAX_USER_IDENTITY));
                out.minted.push((cred.name.clone(), Some(role)));
                mint::video_sdk(
                    client_id,
                    client_secret.expose_secret().as_bytes(),
                    session,
                    role,
                    identity,
                    None,
                    ttl.as_secs(),
                    now_secs(),
                )
            }
            CredentialKind::OpenTokProject {
                api_key,
                api_secret,
                ttl,
                ..
            } => {
                out.minted.push((cred.name.clone(), None));
                mint::opentok_project(
                    api_key,
                    api_secret.expose_secret().as_bytes(),
                    ttl.as_secs(),
                    now_secs(),
                )
            }
            CredentialKind::VonageApplication {
                application_id,
                private_key,
                ttl,
                ..
            } => {
                out.minted.push((cred.name.clone(), None));
                let jti = uuid::Uuid::new_v4().to_string();
                let jwt = crate::credentials::vonage::application_jwt(
                    application_id,
                    private_key,
                    &jti,
                    now_secs(),
                    ttl.as_secs(),
                );
                format!("Bearer {jwt}")
            }
            CredentialKind::ZoomZak { ttl, .. } => {
                let (users, p) = user_app(live, principal, &cred.name)?;
                out.minted.push((cred.name.clone(), None));
                let zak = users.zak(p, *ttl).await.map_err(GatewayError::ZoomUser)?;
                zak.expose_secret().to_owned()
            }
            CredentialKind::ZoomObf { ttl, .. } => {
                let meeting = meeting_number_for(inj, captures, query)?;
                let (users, p) = user_app(live, principal, &cred.name)?;
                out.minted.push((cred.name.clone(), None));
                let obf = users
                    .obf(p, &meeting, *ttl)
                    .await
                    .map_err(GatewayError::ZoomUser)?;
                obf.expose_secret().to_owned()
            }
            CredentialKind::ZoomS2sOAuth { .. } | CredentialKind::OAuthClientCredentials { .. } => {
                let source = live
                    .source
                    .as_ref()
                    .ok_or_else(|| unavailable(&cred.name))?;
                let token = fetched_token(source, wait).await?;
                out.fetched.push((source.clone(), token.value.clone()));
                format!("Bearer {}", token.value.expose_secret())
            }
        };
        out.headers.push((inj.header.clone(), sensitive(&value)?));
    }
    Ok(out)
}

/// The Zoom app of a `zoom_zak` / `zoom_obf` entry and the caller it is
/// fetched for (the route authenticates bearer tokens: `check` says so).
fn user_app<'a>(
    live: &'a LiveInject,
    principal: Option<&'a Principal>,
    name: &str,
) -> Result<(&'a ZoomUsers, &'a Principal), GatewayError> {
    match (live.user.as_deref(), principal) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => Err(unavailable(name)),
    }
}

/// The `ttl` of a `zoom_zak` / `zoom_obf` credential, when one is named.
fn user_ttl(c: &Option<Arc<crate::config::CredentialSettings>>) -> Option<Duration> {
    c.as_ref().map(|c| match c.kind {
        CredentialKind::ZoomZak { ttl, .. } | CredentialKind::ZoomObf { ttl, .. } => ttl,
        _ => Duration::from_secs(crate::zoom_user::DEFAULT_USER_TOKEN_TTL),
    })
}

/// The Zoom apps a Meeting SDK answer takes `zak` and `obfToken` from.
#[derive(Default, Clone, Copy)]
pub struct UserApps<'a> {
    pub zak: Option<&'a ZoomUsers>,
    pub obf: Option<&'a ZoomUsers>,
}

/// The token of a fetched credential for one request. A cached token is
/// taken at once. Otherwise the request waits for the shared fetch at most
/// `wait` (`[limits] upstream_timeout_ms`: a hanging token endpoint must
/// not hold requests longer than a hanging upstream would), then gets 503
/// `credential_unavailable`. The wait runs in its own task so that a request
/// giving up never cancels a fetch it happened to start: the fetch still
/// completes or fails on its own timeout, and its token or backoff serves
/// the requests that follow, so the endpoint sees no extra attempts.
async fn fetched_token(
    source: &Arc<TokenSource>,
    wait: Duration,
) -> Result<Arc<CachedToken>, GatewayError> {
    let refused = |e: &dyn std::error::Error| {
        tracing::warn!(credential = %source.name, error = %crate::error_chain(e), "no token for the upstream request");
        unavailable(&source.name)
    };
    if let Some(t) = source.current() {
        return Ok(t);
    }
    let task = {
        let source = source.clone();
        tokio::spawn(async move { source.token().await })
    };
    match tokio::time::timeout(wait, task).await {
        Ok(Ok(r)) => r.map_err(|e| refused(&e)),
        Ok(Err(e)) => Err(refused(&e)),
        Err(_) => {
            tracing::warn!(credential = %source.name, wait_ms = wait.as_millis() as u64, "no token within upstream_timeout_ms");
            Err(unavailable(&source.name))
        }
    }
}

/// The Video SDK session name: the `session_param` capture, 1 to 200
/// characters.
fn session_name<'c>(param: Option<&str>, captures: &'c Captures) -> Result<&'c str, GatewayError> {
    param
        .and_then(|p| capture(captures, p))
        .filter(|s| !s.is_empty() && s.chars().count() <= MAX_SESSION_NAME)
        .ok_or_else(|| {
            bad(
                "invalid_session_name",
                "the session name must be 1 to 200 characters",
            )
        })
}

fn meeting_number_for(
    inj: &Inject,
    captures: &Captures,
    query: Option<&str>,
) -> Result<String, GatewayError> {
    let raw = match (&inj.meeting_param, &inj.meeting_query) {
        (Some(p), _) => capture(captures, p).map(str::to_owned),
        (None, Some(q)) => query_param(query, q),
        (None, None) => None,
    };
    raw.filter(|m| valid_meeting_number(m)).ok_or_else(|| {
        bad(
            "invalid_meeting_number",
            "the meeting number must be 9 to 12 digits",
        )
    })
}

/// Answers a `respond` route: parse the JSON request, decide the role, mint.
pub async fn respond(
    resp: &Respond,
    apps: UserApps<'_>,
    principal: Option<&Principal>,
    captures: &Captures,
    body: &Bytes,
) -> Result<(Response<ResBody>, String, Option<u8>), GatewayError> {
    let cred = &resp.credential;
    let req: Value = serde_json::from_slice(body)
        .map_err(|_| bad("invalid_request", "the body must be a JSON object"))?;
    let obj = req
        .as_object()
        .ok_or_else(|| bad("invalid_request", "the body must be a JSON object"))?;
    if matches!(
        cred.kind,
        CredentialKind::VonageApplication { .. } | CredentialKind::OpenTokProject { .. }
    ) {
        let (body, role) =
            super::session_token::answer(resp, principal, captures, obj, now_secs())?;
        tracing::info!(credential = %cred.name, session_role = role.as_str(), "session token minted for the caller");
        return Ok((no_store(body), cred.name.clone(), None));
    }
    let role = match obj.get("role") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(r @ (0 | 1)) if v.is_u64() => Some(r as u8),
            _ => return Err(bad("invalid_request", "role must be the number 0 or 1")),
        },
    };
    let role = granted_role(role, &resp.host_roles, principal)?;
    let now = now_secs();
    let body = match &cred.kind {
        CredentialKind::ZoomMeetingSdk {
            client_id,
            client_secret,
            ttl,
        } => {
            let meeting = match obj.get("meetingNumber") {
                Some(Value::Number(n)) => n.as_u64().map(|n| n.to_string()),
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            }
            .filter(|m| valid_meeting_number(m))
            .ok_or_else(|| {
                bad(
                    "invalid_meeting_number",
                    "meetingNumber must be 9 to 12 digits",
                )
            })?;
            let signature = mint::meeting_sdk(
                client_id,
                client_secret.expose_secret().as_bytes(),
                &meeting,
                role,
                ttl.as_secs(),
                now,
            );
            // The caller's Zoom user joins with a ZAK or an OBF token
            // (meetings outside the app's account require one since
            // 2026-03): fetched for the caller's own grant.
            let zak = match (user_ttl(&resp.zak), apps.zak, principal) {
                (Some(ttl), Some(app), Some(p)) => {
                    Some(app.zak(p, ttl).await.map_err(GatewayError::ZoomUser)?)
                }
                (Some(_), _, _) => return Err(unavailable(&cred.name)),
                (None, _, _) => None,
            };
            let obf = match (user_ttl(&resp.obf), apps.obf, principal) {
                (Some(ttl), Some(app), Some(p)) => Some(
                    app.obf(p, &meeting, ttl)
                        .await
                        .map_err(GatewayError::ZoomUser)?,
                ),
                (Some(_), _, _) => return Err(unavailable(&cred.name)),
                (None, _, _) => None,
            };
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Answer<'a> {
                signature: &'a str,
                sdk_key: &'a str,
                meeting_number: &'a str,
                role: u8,
                #[serde(skip_serializing_if = "Option::is_none")]
                zak: Option<&'a str>,
                #[serde(skip_serializing_if = "Option::is_none")]
                obf_token: Option<&'a str>,
            }
            serde_json::to_string(&Answer {
                signature: &signature,
                sdk_key: client_id,
                meeting_number: &meeting,
                role,
                zak: zak.as_ref().map(|z| z.expose_secret()),
                obf_token: obf.as_ref().map(|o| o.expose_secret()),
            })
        }
        CredentialKind::ZoomVideoSdk {
            client_id,
            client_secret,
            ttl,
        } => {
            let session = session_name(resp.session_param.as_deref(), captures)?;
            let text = |k: &str, max: usize| -> Result<Option<&str>, GatewayError> {
                match obj.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.as_str())),
                    _ => Err(GatewayError::BadRequest {
                        code: "invalid_request",
                        description: format!("{k} must be a string of at most {max} characters"),
                    }),
                }
            };
            let identity = match text("userIdentity", MAX_USER_IDENTITY)? {
                Some(i) => Some(i),
                None => principal
                    .and_then(|p| p.subject.as_deref())
                    .map(|s| cut_chars(s, MAX_USER_IDENTITY)),
            };
            let session_key = text("sessionKey", MAX_SESSION_KEY)?;
            let token = mint::video_sdk(
                client_id,
                client_secret.expose_secret().as_bytes(),
                session,
                role,
                identity,
                session_key,
                ttl.as_secs(),
                now,
            );
            #[derive(Serialize)]
            #[serde(rename_all = "camelCase")]
            struct Answer<'a> {
                token: &'a str,
                session_name: &'a str,
                role: u8,
            }
            serde_json::to_string(&Answer {
                token: &token,
                session_name: session,
                role,
            })
        }
        _ => return Err(unavailable(&cred.name)),
    }
    .map_err(|_| unavailable(&cred.name))?;
    Ok((no_store(body), cred.name.clone(), Some(role)))
}

/// A JSON answer carrying a credential: never stored by caches.
fn no_store(body: String) -> Response<ResBody> {
    let mut r = crate::body::json_response(http::StatusCode::OK, body);
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    r
}
