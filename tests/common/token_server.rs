//! A token endpoint following spec section 4 (Zoom Server-to-Server OAuth),
//! standing in for zoom.us: counts requests, issues `tok-N`, and can be
//! made slow, failing (500) or refusing the client (400 invalid_client).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::{full, upstream};

/// The client secret the stand-in accepts (with client id `TESTclientID`
/// and account id `TESTaccountID`).
pub const S2S_SECRET: &str = "s2s-client-secret-value-123";

/// A token endpoint as spec section 4 describes it.
#[derive(Default)]
pub struct TokenServer {
    pub requests: AtomicUsize,
    pub issued: AtomicU64,
    pub expires_in: AtomicU64,
    pub down: AtomicBool,
    pub refuse: AtomicBool,
    pub delay_ms: AtomicU64,
    pub bad_requests: Mutex<Vec<String>>,
}

pub async fn token_server() -> (std::net::SocketAddr, Arc<TokenServer>) {
    let ts = Arc::new(TokenServer::default());
    ts.expires_in.store(3599, Ordering::SeqCst);
    let t = ts.clone();
    let addr = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let t = t.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            t.requests.fetch_add(1, Ordering::SeqCst);
            let delay = t.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            let reply = |status: u16, v: Value| {
                let mut r = Response::new(full(v.to_string()));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r
            };
            if t.down.load(Ordering::SeqCst) {
                return reply(500, json!({ "error": "server_error" }));
            }
            let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("TESTclientID:{S2S_SECRET}")));
            let ok = parts.method == http::Method::POST
                && parts.uri.path() == "/oauth/token"
                && parts.headers.get("authorization").is_some_and(|v| v == basic.as_str())
                && parts.headers.get("content-type").is_some_and(|v| v == "application/x-www-form-urlencoded")
                && &body[..] == b"grant_type=account_credentials&account_id=TESTaccountID";
            if !ok {
                t.bad_requests.lock().unwrap().push(format!("{} {} {:?}", parts.method, parts.uri, body));
            }
            if t.refuse.load(Ordering::SeqCst) || !ok {
                return reply(400, json!({ "reason": "Invalid client_id or client_secret", "error": "invalid_client" }));
            }
            let n = t.issued.fetch_add(1, Ordering::SeqCst) + 1;
            reply(200, json!({
                "access_token": format!("tok-{n}"), "token_type": "bearer",
                "expires_in": t.expires_in.load(Ordering::SeqCst), "scope": "meeting:read:admin", "api_url": "https://api.zoom.us"
            }))
        }
    })
    .await;
    (addr, ts)
}
