//! A stand-in for Zoom's user OAuth and user-token API (spec
//! `docs/platforms/platforms-2026.md` section 1), served over real HTTPS on
//! an ephemeral loopback port (`tls_front` over `upstream`):
//!
//! - `GET /oauth/authorize`: checks `response_type=code`, the client id,
//!   the redirect URI (exact: [`ZoomOAuth::redirect_uri`]),
//!   `code_challenge_method=S256` and the challenge's form, then "signs
//!   in" [`ZoomOAuth::user_id`] and answers 302 to
//!   `redirect_uri?code=…&state=…`; codes live 5 minutes, single use;
//! - `POST /oauth/token`: HTTP Basic client auth, form body with
//!   `grant_type` first; `authorization_code` checks the redirect URI and
//!   the PKCE verifier (S256); `refresh_token` accepts only the latest
//!   refresh token of a live grant and rotates it (a used one gets 400
//!   `{"reason":"Invalid Token!","error":"invalid_grant"}`);
//! - `GET /v2/users/me`, `GET /v2/users/me/token?type=zak` and
//!   `type=onbehalf&meeting_id=…` (refused with code 103041 "Authorized
//!   user not in meeting." unless the meeting is in
//!   [`ZoomOAuth::in_meeting`]); a token without `user:read:token` gets
//!   code 4711, an unknown or expired access token 401 code 124;
//! - `POST /oauth/revoke` (`token=` access token, Basic): ends the grant.
//!
//! Counters per endpoint let tests assert "exactly one refresh".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{full, tls_front, upstream, Certs, TestBody};

/// The app's Client ID the stand-in knows (the spec's vector values).
pub const CLIENT_ID: &str = "TESTzoomClientID01";
/// Its Client Secret.
pub const CLIENT_SECRET: &str = "TESTzoomClientSecret0123456789ab";
/// The redirect URL on the app's allow list.
pub const REDIRECT_URI: &str = "https://meetgate.example.com/zoom/oauth/callback";
/// How long codes live (spec: 5 minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(300);

struct Code {
    challenge: String,
    redirect_uri: String,
    user_id: String,
    issued: Instant,
    used: bool,
}

struct Grant {
    user_id: String,
    scopes: String,
    access: String,
    access_expires: Instant,
    refresh: String,
    live: bool,
}

#[derive(Default)]
struct Books {
    codes: HashMap<String, Code>,
    grants: Vec<Grant>,
}

/// The stand-in's state, counters and knobs.
#[derive(Default)]
pub struct ZoomOAuth {
    pub authorize: AtomicUsize,
    pub token_code: AtomicUsize,
    pub token_refresh: AtomicUsize,
    /// Token requests refused with `invalid_grant`.
    pub invalid_grant: AtomicUsize,
    pub users_me: AtomicUsize,
    pub zak: AtomicUsize,
    pub onbehalf: AtomicUsize,
    pub revoke: AtomicUsize,
    /// The Zoom user who signs in at the next authorize.
    pub user_id: Mutex<String>,
    /// Scopes granted to new grants.
    pub scopes: Mutex<String>,
    pub expires_in: AtomicU64,
    /// Meetings the authorizing user is in (OBF allowed).
    pub in_meeting: Mutex<HashSet<String>>,
    /// Every answer is 503 while set.
    pub down: AtomicBool,
    /// Added before every answer.
    pub delay_ms: AtomicU64,
    /// The last user-token query string, for asserting `ttl`.
    pub last_token_query: Mutex<String>,
    /// Every PKCE `code_verifier` received (to check none leaked).
    pub verifiers: Mutex<Vec<String>>,
    /// `https://localhost:PORT`, the OAuth and API base (and `api_url`).
    pub base: Mutex<String>,
    /// The redirect URI on the app's allow list ([`REDIRECT_URI`] unless a
    /// test sets another, e.g. one with the port a browser must reach).
    pub redirect_uri: Mutex<String>,
    books: Mutex<Books>,
    issued: AtomicUsize,
}

fn reply(status: u16, v: Value) -> Response<TestBody> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn invalid_grant() -> Response<TestBody> {
    reply(
        400,
        json!({ "reason": "Invalid Token!", "error": "invalid_grant" }),
    )
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl ZoomOAuth {
    /// Marks every access token expired (the next API call gets 124).
    pub fn expire_access_tokens(&self) {
        let past = Instant::now() - Duration::from_secs(1);
        for g in &mut self.books.lock().unwrap().grants {
            g.access_expires = past;
        }
    }

    /// Every access and refresh token issued (to check none is stored or
    /// shown in clear).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.books
            .lock()
            .unwrap()
            .grants
            .iter()
            .flat_map(|g| [g.access.clone(), g.refresh.clone()])
            .collect()
    }

    /// How many grants are live (not revoked or rotated away).
    pub fn live_grants(&self) -> usize {
        self.books
            .lock()
            .unwrap()
            .grants
            .iter()
            .filter(|g| g.live)
            .count()
    }

    fn next(&self) -> usize {
        self.issued.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn issue(&self, books: &mut Books, user_id: String) -> Response<TestBody> {
        let n = self.next();
        let expires_in = self.expires_in.load(Ordering::SeqCst);
        let g = Grant {
            user_id,
            scopes: self.scopes.lock().unwrap().clone(),
            access: format!("TESTzoomAccess.{n}"),
            access_expires: Instant::now() + Duration::from_secs(expires_in),
            refresh: format!("TESTzoomRefresh.{n}"),
            live: true,
        };
        let answer = self.token_answer(&g, expires_in);
        books.grants.push(g);
        answer
    }

    fn token_answer(&self, g: &Grant, expires_in: u64) -> Response<TestBody> {
        reply(
            200,
            json!({
                "access_token": g.access, "token_type": "bearer", "refresh_token": g.refresh,
                "expires_in": expires_in, "scope": g.scopes, "api_url": *self.base.lock().unwrap(),
            }),
        )
    }

    fn basic_ok(headers: &http::HeaderMap) -> bool {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        headers
            .get("authorization")
            .is_some_and(|v| v == want.as_str())
    }

    fn authorize_answer(&self, query: &str) -> Response<TestBody> {
        self.authorize.fetch_add(1, Ordering::SeqCst);
        let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
        if get("client_id") != CLIENT_ID {
            return reply(
                400,
                json!({ "error": "invalid_client", "reason": "Invalid client_id" }),
            );
        }
        if get("redirect_uri") != *self.redirect_uri.lock().unwrap() {
            // Never redirect to an unregistered URI.
            return reply(
                400,
                json!({ "error": "invalid_request", "reason": "Invalid redirect" }),
            );
        }
        let challenge = get("code_challenge");
        let challenge_ok = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if get("response_type") != "code" || get("code_challenge_method") != "S256" || !challenge_ok
        {
            return reply(
                400,
                json!({ "error": "invalid_request", "reason": "Invalid PKCE or response_type" }),
            );
        }
        let code = format!("TESTzoomCode{}", self.next());
        self.books.lock().unwrap().codes.insert(
            code.clone(),
            Code {
                challenge: challenge.to_owned(),
                redirect_uri: get("redirect_uri").to_owned(),
                user_id: self.user_id.lock().unwrap().clone(),
                issued: Instant::now(),
                used: false,
            },
        );
        let mut back = form_urlencoded::Serializer::new(String::new());
        back.append_pair("code", &code);
        if let Some(state) = q.get("state") {
            back.append_pair("state", state);
        }
        let mut r = reply(302, json!({}));
        let location = format!("{}?{}", get("redirect_uri"), back.finish());
        r.headers_mut()
            .insert("location", location.parse().unwrap());
        r
    }

    fn token_endpoint(&self, headers: &http::HeaderMap, body: &[u8]) -> Response<TestBody> {
        if !Self::basic_ok(headers) {
            return reply(
                401,
                json!({ "reason": "Invalid client_id or client_secret", "error": "invalid_client" }),
            );
        }
        let form = headers.get("content-type").map(|v| v.as_bytes());
        if form != Some(b"application/x-www-form-urlencoded".as_slice()) {
            return reply(
                400,
                json!({ "reason": "Unsupported content type", "error": "invalid_request" }),
            );
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let form: HashMap<&str, &str> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let get = |k: &str| form.get(k).copied().unwrap_or("");
        if pairs.first().map(|(k, _)| k.as_str()) != Some("grant_type") {
            return reply(
                400,
                json!({ "reason": "grant_type must come first", "error": "invalid_request" }),
            );
        }
        let mut books = self.books.lock().unwrap();
        match get("grant_type") {
            "authorization_code" => {
                self.token_code.fetch_add(1, Ordering::SeqCst);
                let verifier = get("code_verifier");
                self.verifiers.lock().unwrap().push(verifier.to_owned());
                let ok = match books.codes.get_mut(get("code")) {
                    Some(c) if !c.used && c.issued.elapsed() < CODE_LIFETIME => {
                        c.used = true;
                        let pkce = b64url(&Sha256::digest(verifier.as_bytes())) == c.challenge;
                        (pkce && c.redirect_uri == get("redirect_uri")).then(|| c.user_id.clone())
                    }
                    _ => None,
                };
                match ok {
                    Some(user) => self.issue(&mut books, user),
                    None => {
                        self.invalid_grant.fetch_add(1, Ordering::SeqCst);
                        invalid_grant()
                    }
                }
            }
            "refresh_token" => {
                self.token_refresh.fetch_add(1, Ordering::SeqCst);
                let presented = get("refresh_token");
                let expires_in = self.expires_in.load(Ordering::SeqCst);
                let Some(g) = books
                    .grants
                    .iter_mut()
                    .find(|g| g.live && g.refresh == presented)
                else {
                    self.invalid_grant.fetch_add(1, Ordering::SeqCst);
                    return invalid_grant();
                };
                let n = self.next();
                g.access = format!("TESTzoomAccess.{n}");
                g.refresh = format!("TESTzoomRefresh.{n}");
                g.access_expires = Instant::now() + Duration::from_secs(expires_in);
                self.token_answer(g, expires_in)
            }
            _ => reply(
                400,
                json!({ "reason": "Unsupported grant type", "error": "unsupported_grant_type" }),
            ),
        }
    }

    fn revoke_endpoint(&self, headers: &http::HeaderMap, body: &[u8]) -> Response<TestBody> {
        self.revoke.fetch_add(1, Ordering::SeqCst);
        if !Self::basic_ok(headers) {
            return reply(
                401,
                json!({ "reason": "Invalid client_id or client_secret", "error": "invalid_client" }),
            );
        }
        let token: String = form_urlencoded::parse(body)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut books = self.books.lock().unwrap();
        match books
            .grants
            .iter_mut()
            .find(|g| g.live && g.access == token)
        {
            Some(g) => {
                g.live = false;
                reply(200, json!({ "status": "success" }))
            }
            None => reply(
                400,
                json!({ "reason": "Invalid Token!", "error": "invalid_request" }),
            ),
        }
    }

    fn api(&self, path: &str, query: &str, headers: &http::HeaderMap) -> Response<TestBody> {
        let books = self.books.lock().unwrap();
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let grant = bearer
            .strip_prefix("Bearer ")
            .and_then(|t| books.grants.iter().find(|g| g.live && g.access == t))
            .filter(|g| Instant::now() < g.access_expires);
        let Some(grant) = grant else {
            return reply(
                401,
                json!({ "code": 124, "message": "Invalid access token." }),
            );
        };
        if path == "/v2/users/me" {
            self.users_me.fetch_add(1, Ordering::SeqCst);
            return reply(
                200,
                json!({ "id": grant.user_id, "type": 1, "status": "active" }),
            );
        }
        *self.last_token_query.lock().unwrap() = query.to_owned();
        let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let kind = q.get("type").map(String::as_str).unwrap_or("token");
        match kind {
            "zak" => self.zak.fetch_add(1, Ordering::SeqCst),
            "onbehalf" => self.onbehalf.fetch_add(1, Ordering::SeqCst),
            _ => {
                return reply(
                    400,
                    json!({ "message": "Token is no longer supported. Please use ZAK token instead." }),
                )
            }
        };
        if !grant.scopes.split(' ').any(|s| s == "user:read:token") {
            return reply(
                400,
                json!({ "code": 4711, "message": "Invalid access token, does not contain scopes:[user:read:token, user:read:token:admin]." }),
            );
        }
        let n = self.next();
        if kind == "zak" {
            return reply(200, json!({ "token": format!("TESTzakTOKEN.{n}") }));
        }
        let Some(meeting) = q.get("meeting_id") else {
            return reply(
                400,
                json!({ "message": "meeting_id is required for type onbehalf" }),
            );
        };
        if !self.in_meeting.lock().unwrap().contains(meeting) {
            return reply(
                400,
                json!({ "code": 103041, "message": "Authorized user not in meeting." }),
            );
        }
        reply(200, json!({ "token": format!("TESTobfTOKEN.{n}") }))
    }
}

/// Starts the stand-in; returns its base URL (`https://localhost:PORT`,
/// trusted by clients with `certs`' CA) and its state.
pub async fn zoom_oauth(certs: &Certs) -> (String, Arc<ZoomOAuth>) {
    let z = Arc::new(ZoomOAuth::default());
    *z.user_id.lock().unwrap() = "TESTzoomUser01".to_owned();
    *z.scopes.lock().unwrap() = "user:read:token user:read:zak".to_owned();
    z.expires_in.store(3599, Ordering::SeqCst);
    *z.redirect_uri.lock().unwrap() = REDIRECT_URI.to_owned();
    let s = z.clone();
    let plain = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let delay = s.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if s.down.load(Ordering::SeqCst) {
                return reply(503, json!({ "error": "temporarily_unavailable" }));
            }
            let query = parts.uri.query().unwrap_or("");
            match (parts.method.as_str(), parts.uri.path()) {
                ("GET", "/oauth/authorize") => s.authorize_answer(query),
                ("POST", "/oauth/token") => s.token_endpoint(&parts.headers, &body),
                ("POST", "/oauth/revoke") => s.revoke_endpoint(&parts.headers, &body),
                ("GET", p @ ("/v2/users/me" | "/v2/users/me/token")) => {
                    s.api(p, query, &parts.headers)
                }
                _ => reply(
                    404,
                    json!({ "code": 2300, "message": "This API endpoint is not recognized." }),
                ),
            }
        }
    })
    .await;
    let front = tls_front(plain, certs).await;
    let base = format!("https://localhost:{}", front.port());
    *z.base.lock().unwrap() = base.clone();
    (base, z)
}
