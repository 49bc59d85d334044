//! The HTTP calls of Zoom user authorization, over the gateway's pooled
//! upstream client ([`UpstreamClient`]), each bounded by the settings'
//! timeout and a 64 KiB answer.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::parse;
use super::{
    authorize_url, PkceVerifier, TokenSet, UserToken, ZoomUserError, ZoomUserSettings,
    DEFAULT_USER_TOKEN_TTL, MAX_USER_TOKEN_TTL,
};
use crate::body::ReqBody;
use crate::now_secs;
use crate::pipeline::forward::UpstreamClient;

/// Largest answer read from Zoom.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Longest meeting number accepted.
const MAX_MEETING_ID_DIGITS: usize = 20;

/// A client for one Zoom app's user authorization. Cheap to clone.
#[derive(Clone)]
pub struct ZoomUserClient {
    settings: Arc<ZoomUserSettings>,
    http: UpstreamClient,
}

impl std::fmt::Debug for ZoomUserClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoomUserClient")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Which endpoint family answered: refusals read differently.
#[derive(Clone, Copy)]
enum Kind {
    OAuth,
    Api,
}

/// A header value from a secret (never logged; marked sensitive so hyper
/// keeps it out of HTTP/2 header compression tables).
fn secret_header(value: &str) -> Result<HeaderValue, ZoomUserError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ZoomUserError::InvalidRequest {
        reason: "credential is not usable in a header",
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl ZoomUserClient {
    /// A client with `settings`, sending through `http` (from
    /// `crate::pipeline::forward::new_client` with the outbound roots).
    pub fn new(settings: Arc<ZoomUserSettings>, http: UpstreamClient) -> Self {
        ZoomUserClient { settings, http }
    }

    /// The settings in use.
    pub fn settings(&self) -> &ZoomUserSettings {
        &self.settings
    }

    /// The authorize URL for `state` and the verifier's S256 challenge.
    pub fn authorize_url(&self, state: &str, verifier: &PkceVerifier) -> String {
        authorize_url(&self.settings, state, &verifier.challenge())
    }

    fn oauth_url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.oauth_base.trim_end_matches('/'))
    }

    /// Sends `req` and reads the answer within the timeout.
    async fn send(
        &self,
        req: Request<ReqBody>,
        kind: Kind,
    ) -> Result<(StatusCode, HeaderMap, Value), ZoomUserError> {
        let what = format!("{} {}", req.method(), req.uri().path());
        let timeout = self.settings.timeout;
        let call = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| ZoomUserError::Unavailable {
                    detail: format!("{what}: {}", crate::error_chain(&e)),
                })?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|_| ZoomUserError::Unavailable {
                    detail: format!("{what}: answer unreadable or over {MAX_ANSWER_BYTES} bytes"),
                })?
                .to_bytes();
            Ok::<_, ZoomUserError>((parts.status, parts.headers, bytes))
        };
        let (status, headers, bytes) =
            tokio::time::timeout(timeout, call).await.map_err(|_| {
                ZoomUserError::Unavailable {
                    detail: format!("{what}: no answer within {} ms", timeout.as_millis()),
                }
            })??;
        let json = serde_json::from_slice::<Value>(&bytes).ok();
        if status.is_success() && bytes.is_empty() {
            // RFC 7009 revocation answers 200 with no body (Zoom sends
            // {"status":"success"}); token and API answers then fail their
            // own shape checks.
            return Ok((status, headers, Value::Null));
        }
        if status.is_success() {
            let json = json.ok_or_else(|| ZoomUserError::Malformed {
                reason: format!("{what}: answer is not JSON"),
            })?;
            return Ok((status, headers, json));
        }
        let json = json.unwrap_or(Value::Null);
        Err(match kind {
            Kind::OAuth => parse::oauth_error(status, &headers, &json),
            Kind::Api => parse::api_error(status, &headers, &json),
        })
    }

    /// A form POST to the OAuth host with the app's Basic credentials.
    async fn post_form(
        &self,
        path: &str,
        body: Zeroizing<String>,
    ) -> Result<(StatusCode, HeaderMap, Value), ZoomUserError> {
        let basic = parse::basic_auth(&self.settings.client_id, &self.settings.client_secret);
        let req = Request::builder()
            .method(Method::POST)
            .uri(self.oauth_url(path))
            .header(AUTHORIZATION, secret_header(&basic)?)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("meetgate/", env!("CARGO_PKG_VERSION")))
            .body(ReqBody::full(Bytes::from(body.as_bytes().to_vec())))
            .map_err(|_| ZoomUserError::InvalidRequest {
                reason: "the OAuth base URL is not usable",
            })?;
        self.send(req, Kind::OAuth).await
    }

    async fn token(&self, body: Zeroizing<String>) -> Result<TokenSet, ZoomUserError> {
        let fetched_at = now_secs();
        let (_, _, json) = self.post_form("/oauth/token", body).await?;
        parse::token_set(
            &json,
            fetched_at,
            self.settings.api_base.trim_end_matches('/'),
        )
    }

    /// Exchanges an authorization code (from the callback) with the PKCE
    /// verifier from the state: `POST /oauth/token`,
    /// `grant_type=authorization_code`, HTTP Basic client authentication.
    ///
    /// # Errors
    /// [`ZoomUserError::InvalidGrant`] for a used, expired or foreign code
    /// or a wrong verifier; the others as their docs say.
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: &PkceVerifier,
    ) -> Result<TokenSet, ZoomUserError> {
        if code.is_empty() || code.len() > 2048 {
            return Err(ZoomUserError::InvalidRequest {
                reason: "authorization code is empty or too long",
            });
        }
        let body = parse::code_request_body(code, &self.settings.redirect_uri, verifier.secret());
        self.token(body).await
    }

    /// Refreshes with the latest refresh token; the answer carries the new
    /// refresh token, which must be stored before the access token is used.
    ///
    /// # Errors
    /// [`ZoomUserError::InvalidGrant`]: the refresh token is dead (the user
    /// must connect again; never retry it).
    pub async fn refresh(&self, refresh_token: &SecretString) -> Result<TokenSet, ZoomUserError> {
        self.token(parse::refresh_request_body(refresh_token)).await
    }

    /// Revokes the user's grant (`POST /oauth/revoke`, `token=` the access
    /// token, Basic client authentication). Zoom then sends
    /// `app_deauthorized`.
    ///
    /// # Errors
    /// As the token endpoint's refusals.
    pub async fn revoke(&self, access_token: &SecretString) -> Result<(), ZoomUserError> {
        self.post_form("/oauth/revoke", parse::revoke_request_body(access_token))
            .await
            .map(drop)
    }

    /// A GET to the user's API base with the user's access token.
    async fn api_get(
        &self,
        api_url: &str,
        path_and_query: &str,
        access_token: &SecretString,
    ) -> Result<Value, ZoomUserError> {
        let bearer = Zeroizing::new(format!("Bearer {}", access_token.expose_secret()));
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("{}{path_and_query}", api_url.trim_end_matches('/')))
            .header(AUTHORIZATION, secret_header(&bearer)?)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("meetgate/", env!("CARGO_PKG_VERSION")))
            .body(ReqBody::empty())
            .map_err(|_| ZoomUserError::InvalidRequest {
                reason: "the grant's api_url is not usable",
            })?;
        self.send(req, Kind::Api).await.map(|(_, _, json)| json)
    }

    /// The Zoom user id of the token's user (`GET /v2/users/me` → `id`).
    ///
    /// # Errors
    /// As the API's refusals; [`ZoomUserError::Malformed`] without an id.
    pub async fn user_id(
        &self,
        api_url: &str,
        access_token: &SecretString,
    ) -> Result<String, ZoomUserError> {
        let json = self.api_get(api_url, "/v2/users/me", access_token).await?;
        parse::user_id(&json)
    }

    async fn user_token(
        &self,
        api_url: &str,
        access_token: &SecretString,
        pairs: &[(&str, &str)],
        ttl: Option<u64>,
    ) -> Result<UserToken, ZoomUserError> {
        // Built before any await: the serializer is not Send.
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.extend_pairs(pairs);
            if let Some(ttl) = ttl {
                if !(1..=MAX_USER_TOKEN_TTL).contains(&ttl) {
                    return Err(ZoomUserError::InvalidRequest {
                        reason: "ttl must be 1 second to one year",
                    });
                }
                query.append_pair("ttl", &ttl.to_string());
            }
            query.finish()
        };
        let fetched_at = now_secs();
        let path = format!("/v2/users/me/token?{query}");
        let json = self.api_get(api_url, &path, access_token).await?;
        let lifetime = ttl.unwrap_or(DEFAULT_USER_TOKEN_TTL);
        parse::user_token(&json, fetched_at.saturating_add(lifetime))
    }

    /// A ZAK for the token's user (`GET /v2/users/me/token?type=zak`).
    ///
    /// # Errors
    /// As the API's refusals.
    pub async fn zak(
        &self,
        api_url: &str,
        access_token: &SecretString,
        ttl: Option<u64>,
    ) -> Result<UserToken, ZoomUserError> {
        self.user_token(api_url, access_token, &[("type", "zak")], ttl)
            .await
    }

    /// An OBF token bound to `meeting_id` (`GET
    /// /v2/users/me/token?type=onbehalf&meeting_id=…`). Single use: fetch
    /// one per join, right before it.
    ///
    /// # Errors
    /// [`ZoomUserError::ObfUserNotInMeeting`] when Zoom refuses because the
    /// authorizing user is not in the meeting; a `meeting_id` that is not
    /// a meeting number (1 to 20 digits) is
    /// [`ZoomUserError::InvalidRequest`].
    pub async fn obf(
        &self,
        api_url: &str,
        access_token: &SecretString,
        meeting_id: &str,
        ttl: Option<u64>,
    ) -> Result<UserToken, ZoomUserError> {
        if meeting_id.is_empty()
            || meeting_id.len() > MAX_MEETING_ID_DIGITS
            || !meeting_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ZoomUserError::InvalidRequest {
                reason: "meeting_id must be a meeting number (1 to 20 digits)",
            });
        }
        let pairs = [("type", "onbehalf"), ("meeting_id", meeting_id)];
        self.user_token(api_url, access_token, &pairs, ttl).await
    }
}
