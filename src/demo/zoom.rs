//! The demo's stand-in for Zoom's user OAuth and user-token API (the
//! formats of docs/platforms/platforms-2026.md section 1), so connect →
//! callback → signature with a ZAK and an OBF token runs on one machine.
//! It authorizes every request at once as one demo user; codes are single
//! use and checked against their PKCE challenge, refresh tokens rotate.
//! For the demo only: plain HTTP on loopback.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

/// The demo Zoom user every authorization signs in as.
pub const DEMO_ZOOM_USER: &str = "demoZoomUser01";

#[derive(Default)]
struct Books {
    /// code → (PKCE challenge, redirect URI)
    codes: HashMap<String, (String, String)>,
    access: HashSet<String>,
    refresh: HashSet<String>,
}

/// The stand-in: who the app is, and what it issued.
pub struct DevZoom {
    url: String,
    basic: String,
    books: Mutex<Books>,
    /// Added before every answer of the user-token API (a distant Zoom).
    token_latency: Duration,
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn params(s: &str) -> HashMap<String, String> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

impl DevZoom {
    /// A stand-in at `url` for the app `client_id` / `client_secret`.
    pub fn new(url: String, client_id: &str, client_secret: &str) -> Self {
        DevZoom {
            url,
            basic: format!(
                "Basic {}",
                STANDARD.encode(format!("{client_id}:{client_secret}"))
            ),
            books: Mutex::default(),
            token_latency: Duration::ZERO,
        }
    }

    /// Answers `/v2/users/me/token` only after `latency` (the rig of
    /// benches/credentials.sh: a Zoom that is some milliseconds away).
    pub fn with_token_latency(mut self, latency: Duration) -> Self {
        self.token_latency = latency;
        self
    }

    /// Accepts `token` as an access token it issued, so a benchmark can
    /// call the user-token API directly, without the gateway.
    pub fn with_access_token(self, token: &str) -> Self {
        self.books
            .lock()
            .expect("demo zoom lock")
            .access
            .insert(token.to_owned());
        self
    }

    /// Serves the stand-in on `listener`.
    pub async fn serve(self, listener: TcpListener) {
        let me = Arc::new(self);
        super::serve_http1(listener, move |req| {
            let me = me.clone();
            async move { me.answer(req).await }
        })
        .await
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let query = params(parts.uri.query().unwrap_or_default());
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .unwrap_or_default()
        };
        if parts.uri.path() == "/v2/users/me/token" && !self.token_latency.is_zero() {
            tokio::time::sleep(self.token_latency).await;
        }
        let mut books = self.books.lock().expect("demo zoom lock");
        match (parts.method.as_str(), parts.uri.path()) {
            ("GET", "/oauth/authorize") => {
                let (Some(redirect), Some(state), Some(challenge)) = (
                    query.get("redirect_uri"),
                    query.get("state"),
                    query.get("code_challenge"),
                ) else {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": "invalid_request"}),
                    );
                };
                if query.get("code_challenge_method").map(String::as_str) != Some("S256") {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"error": "invalid_request"}),
                    );
                }
                let code = random();
                books
                    .codes
                    .insert(code.clone(), (challenge.clone(), redirect.clone()));
                let mut to = format!("{redirect}?");
                to.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .append_pair("code", &code)
                        .append_pair("state", state)
                        .finish(),
                );
                let mut r = Response::new(Full::new(Bytes::new()));
                *r.status_mut() = StatusCode::FOUND;
                if let Ok(v) = HeaderValue::from_str(&to) {
                    r.headers_mut().insert(LOCATION, v);
                }
                r
            }
            ("POST", "/oauth/token") => {
                if header(AUTHORIZATION) != self.basic {
                    return json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({"error": "invalid_client"}),
                    );
                }
                let form = params(&String::from_utf8_lossy(&body));
                let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
                let ok = match get("grant_type") {
                    "authorization_code" => {
                        books
                            .codes
                            .remove(get("code"))
                            .is_some_and(|(challenge, redirect)| {
                                let verifier = URL_SAFE_NO_PAD
                                    .encode(Sha256::digest(get("code_verifier").as_bytes()));
                                verifier == challenge && redirect == get("redirect_uri")
                            })
                    }
                    "refresh_token" => books.refresh.remove(get("refresh_token")),
                    _ => false,
                };
                if !ok {
                    return json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"reason": "Invalid Token!", "error": "invalid_grant"}),
                    );
                }
                let (access, refresh) = (random(), random());
                books.access.insert(access.clone());
                books.refresh.insert(refresh.clone());
                json(
                    StatusCode::OK,
                    serde_json::json!({
                        "access_token": access, "token_type": "bearer", "refresh_token": refresh,
                        "expires_in": 3599, "scope": "user:read:token user:read:zak", "api_url": self.url,
                    }),
                )
            }
            ("POST", "/oauth/revoke") => {
                let form = params(&String::from_utf8_lossy(&body));
                if let Some(t) = form.get("token") {
                    books.access.remove(t);
                }
                json(StatusCode::OK, serde_json::json!({"status": "success"}))
            }
            ("GET", path @ ("/v2/users/me" | "/v2/users/me/token")) => {
                let bearer = header(AUTHORIZATION)
                    .strip_prefix("Bearer ")
                    .unwrap_or_default();
                if !books.access.contains(bearer) {
                    return json(
                        StatusCode::UNAUTHORIZED,
                        serde_json::json!({"code": 124, "message": "Invalid access token."}),
                    );
                }
                if path == "/v2/users/me" {
                    return json(
                        StatusCode::OK,
                        serde_json::json!({"id": DEMO_ZOOM_USER, "type": 1}),
                    );
                }
                match query.get("type").map(String::as_str) {
                    Some("zak") => json(
                        StatusCode::OK,
                        serde_json::json!({"token": format!("demo-zak-{}", random())}),
                    ),
                    Some("onbehalf") if query.contains_key("meeting_id") => json(
                        StatusCode::OK,
                        serde_json::json!({"token": format!("demo-obf-{}", random())}),
                    ),
                    _ => json(
                        StatusCode::BAD_REQUEST,
                        serde_json::json!({"code": 300, "message": "type"}),
                    ),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"code": 2300, "message": "This API endpoint is not recognized."}),
            ),
        }
    }
}
