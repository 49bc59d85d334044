//! CORS through the real server (docs/BEHAVIOUR.md item 38): preflights
//! answered by the gateway without authentication and never forwarded,
//! the policy's headers on every other answer of a CORS route (the
//! gateway's own errors included), the upstream's `Vary` kept, routes
//! without `cors` unchanged. `meetgate check` on CORS policies:
//! tests/cors_check.rs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::issuer::{Issuer, SigningKey};
use common::*;
use http::{HeaderMap, StatusCode};
use serde_json::json;

const APP: &str = "https://app.example.com";

struct Env {
    gw: TestGateway,
    key: SigningKey,
    issuer: Arc<Issuer>,
    /// Requests the upstream received.
    upstream_hits: Arc<AtomicUsize>,
}

/// An upstream that counts requests and answers with its own `Vary` and
/// CORS headers (which a CORS route's policy replaces).
async fn cors_aware_upstream(hits: Arc<AtomicUsize>) -> std::net::SocketAddr {
    upstream(move |req: http::Request<hyper::body::Incoming>| {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let mut r = http::Response::new(full(
                json!({ "upstream": true, "method": req.method().as_str() }).to_string(),
            ));
            let h = r.headers_mut();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("vary", "Accept-Encoding".parse().unwrap());
            h.insert("access-control-allow-origin", "*".parse().unwrap());
            h.insert("access-control-allow-methods", "DELETE".parse().unwrap());
            h.insert("x-upstream", "yes".parse().unwrap());
            r
        }
    })
    .await
}

async fn setup() -> Env {
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let upstream_hits = Arc::new(AtomicUsize::new(0));
    let up = cors_aware_upstream(upstream_hits.clone()).await;
    let gw = TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
roles_claim = "groups"

[cors.spa]
origins = ["{APP}", "https://*.preview.example.org:8443"]
methods = ["GET", "POST", "PUT"]
headers = ["authorization", "content-type", "x-trace"]
credentials = true
max_age_secs = 600
expose_headers = ["x-request-id", "x-upstream"]

[cors.open]
origins = ["*"]
headers = ["authorization"]

[credential.sdk]
type = "zoom_meeting_sdk"
client_id = "sdkKey"
client_secret = "sdk-secret"

[[route]]
name = "signature"
path = "/api/sdk-signature"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "sdk" }}
cors = "spa"

[[route]]
name = "admin"
path = "/api/admin"
upstream = "http://{up}"
authenticate = "corp"
authorize = {{ roles_any = ["admins"] }}
cors = "spa"

[[route]]
name = "items"
path = "/api/items/*"
upstream = "http://{up}"
authenticate = "corp"
cors = "spa"

[[route]]
name = "open"
path = "/open"
upstream = "http://{up}"
authenticate = "corp"
cors = "open"

[[route]]
name = "plain"
path = "/plain/*"
upstream = "http://{up}"
authenticate = "none"
"#,
        iss = issuer.url
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    Env {
        gw,
        key,
        issuer,
        upstream_hits,
    }
}

impl Env {
    fn bearer(&self, groups: &[&str]) -> String {
        let claims = self.issuer.claims("alice", json!({ "groups": groups }));
        format!("Bearer {}", self.key.sign(&claims))
    }

    fn hits(&self) -> usize {
        self.upstream_hits.load(Ordering::SeqCst)
    }

    async fn preflight(
        &self,
        path: &str,
        origin: &str,
        method: &str,
        headers: Option<&str>,
    ) -> (StatusCode, HeaderMap, bytes::Bytes) {
        let mut h = vec![
            ("origin", origin),
            ("access-control-request-method", method),
        ];
        if let Some(v) = headers {
            h.push(("access-control-request-headers", v));
        }
        send(&self.gw.h1(), "OPTIONS", &self.gw.url(path), &h, empty()).await
    }
}

/// The header's value, or "" when absent.
fn value<'h>(h: &'h HeaderMap, name: &str) -> &'h str {
    h.get(name).map_or("", |v| v.to_str().unwrap())
}

/// Every `Vary` item, lower-cased.
fn vary(h: &HeaderMap) -> Vec<String> {
    h.get_all("vary")
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

const ALLOW_HEADERS: [&str; 5] = [
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-max-age",
];

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_token() {
    let env = setup().await;
    // No Authorization: a browser never sends credentials on a preflight.
    let (s, h, body) = env
        .preflight(
            "/api/sdk-signature",
            APP,
            "POST",
            Some("authorization,content-type"),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{h:?}");
    assert!(body.is_empty());
    assert_eq!(value(&h, "access-control-allow-origin"), APP);
    // The policy's methods that this route accepts: only POST.
    assert_eq!(value(&h, "access-control-allow-methods"), "POST");
    assert_eq!(
        value(&h, "access-control-allow-headers"),
        "authorization, content-type, x-trace"
    );
    assert_eq!(value(&h, "access-control-allow-credentials"), "true");
    assert_eq!(value(&h, "access-control-max-age"), "600");
    assert!(h.get("access-control-expose-headers").is_none());
    assert!(vary(&h).contains(&"origin".to_owned()), "{h:?}");
    assert!(h.get("x-request-id").is_some());

    // A route taking every method offers the policy's methods; a pattern
    // origin (one or more labels before .preview.example.org:8443) is
    // allowed; HTTP/2 too. The upstream never sees a preflight.
    for origin in [
        "https://pr-42.preview.example.org:8443",
        "https://a.b.preview.example.org:8443",
    ] {
        let (s, h, _) = env.preflight("/api/items/7", origin, "PUT", None).await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{origin}: {h:?}");
        assert_eq!(value(&h, "access-control-allow-origin"), origin);
        assert_eq!(value(&h, "access-control-allow-methods"), "GET, POST, PUT");
    }
    let h2 = [
        ("origin", APP),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "authorization"),
    ];
    let (s, h, _) = send(
        &env.gw.h2(),
        "OPTIONS",
        &env.gw.url("/api/items/7"),
        &h2,
        empty(),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(value(&h, "access-control-allow-origin"), APP);
    assert_eq!(env.hits(), 0, "a preflight was forwarded");
}

#[tokio::test]
async fn refused_preflights_are_403_without_any_allow_header() {
    let env = setup().await;
    let cases: &[(&str, &str, &str, Option<&str>, &str)] = &[
        // Origins: another site, another scheme or port, the pattern's bare
        // domain, a trailing slash, an opaque origin.
        (
            "/api/sdk-signature",
            "https://evil.example.net",
            "POST",
            None,
            "origin",
        ),
        (
            "/api/sdk-signature",
            "http://app.example.com",
            "POST",
            None,
            "origin",
        ),
        (
            "/api/sdk-signature",
            "https://app.example.com:8443",
            "POST",
            None,
            "origin",
        ),
        (
            "/api/sdk-signature",
            "https://app.example.com/",
            "POST",
            None,
            "origin",
        ),
        (
            "/api/sdk-signature",
            "https://app.example.com.evil.net",
            "POST",
            None,
            "origin",
        ),
        (
            "/api/items/1",
            "https://preview.example.org:8443",
            "GET",
            None,
            "origin",
        ),
        (
            "/api/items/1",
            "https://x.preview.example.org",
            "GET",
            None,
            "origin",
        ),
        ("/api/items/1", "null", "GET", None, "origin"),
        // A method the route takes but the policy does not list.
        ("/api/items/1", APP, "DELETE", None, "method DELETE"),
        // A request header the policy does not list.
        (
            "/api/items/1",
            APP,
            "GET",
            Some("authorization,x-debug"),
            "header x-debug",
        ),
        (
            "/api/sdk-signature",
            APP,
            "POST",
            Some("cookie"),
            "header cookie",
        ),
    ];
    for (path, origin, method, headers, says) in cases {
        let (s, h, body) = env.preflight(path, origin, method, *headers).await;
        let what = format!("{path} {origin} {method} {headers:?}");
        assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {h:?}");
        for name in ALLOW_HEADERS {
            assert!(h.get(name).is_none(), "{what}: {name} in {h:?}");
        }
        assert!(vary(&h).contains(&"origin".to_owned()), "{what}: {h:?}");
        let v = json(&body);
        assert_eq!(v["error"], "cors_not_allowed", "{what}");
        assert!(
            v["error_description"].as_str().unwrap().contains(says),
            "{what}: {v}"
        );
    }
    // A method no route takes on the path: 405 as for any request, no
    // CORS headers either.
    let (s, h, _) = env.preflight("/api/sdk-signature", APP, "PUT", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(h.get("access-control-allow-origin").is_none());
    assert_eq!(env.hits(), 0, "a preflight was forwarded");
}

#[tokio::test]
async fn answers_echo_an_allowed_origin_on_success_and_on_the_gateways_errors() {
    let env = setup().await;
    let gw = &env.gw;
    let post = |auth: Option<String>, origin: &'static str| {
        let c = gw.h1();
        let url = gw.url("/api/sdk-signature");
        async move {
            let auth = auth.unwrap_or_default();
            let mut h = vec![("origin", origin), ("content-type", "application/json")];
            if !auth.is_empty() {
                h.push(("authorization", &auth));
            }
            let body = full(r#"{"meetingNumber": 85746065432, "role": 0}"#);
            send(&c, "POST", &url, &h, body).await
        }
    };
    let expect_cors = |h: &HeaderMap, what: &str| {
        assert_eq!(
            value(h, "access-control-allow-origin"),
            APP,
            "{what}: {h:?}"
        );
        assert_eq!(
            value(h, "access-control-allow-credentials"),
            "true",
            "{what}"
        );
        assert_eq!(
            value(h, "access-control-expose-headers"),
            "x-request-id, x-upstream",
            "{what}"
        );
        assert!(vary(h).contains(&"origin".to_owned()), "{what}: {h:?}");
        // Preflight-only headers never appear on an actual answer.
        assert!(h.get("access-control-allow-methods").is_none(), "{what}");
        assert!(h.get("access-control-max-age").is_none(), "{what}");
    };

    // 200 from the gateway itself (a minted signature).
    let (s, h, body) = post(Some(env.bearer(&[])), APP).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(json(&body)["signature"].is_string());
    expect_cors(&h, "200");

    // 401: no token, and a bad one; the page can read the JSON error.
    let (s, h, body) = post(None, APP).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "missing_token");
    assert!(h.get("www-authenticate").is_some());
    expect_cors(&h, "401 missing");
    let (s, h, body) = post(Some("Bearer not.a.jwt".to_owned()), APP).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "malformed_token");
    expect_cors(&h, "401 malformed");

    // 403 from the route's rules.
    let auth = env.bearer(&["viewers"]);
    let hh = [("origin", APP), ("authorization", auth.as_str())];
    let (s, h, body) = get(&gw.h1(), &gw.url("/api/admin"), &hh).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(json(&body)["error"], "insufficient_role");
    expect_cors(&h, "403");

    // CORS is not access control: another origin's request is answered,
    // only without the headers that let its page read it.
    let (s, h, _) = post(Some(env.bearer(&[])), "https://evil.example.net").await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("access-control-allow-origin").is_none(), "{h:?}");
    assert!(h.get("access-control-allow-credentials").is_none());
    assert!(vary(&h).contains(&"origin".to_owned()));
    // No Origin at all: Vary only (a cached answer must not serve a page).
    let (s, h, _) = send(
        &gw.h1(),
        "POST",
        &gw.url("/api/sdk-signature"),
        &[("authorization", &env.bearer(&[]))],
        full(r#"{"meetingNumber": 85746065432}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(h.get("access-control-allow-origin").is_none());
    assert_eq!(vary(&h), ["origin"]);
}

#[tokio::test]
async fn the_upstreams_vary_is_kept_and_its_cors_headers_replaced_by_the_policy() {
    let env = setup().await;
    let auth = env.bearer(&[]);
    let h = [("origin", APP), ("authorization", auth.as_str())];
    let (s, h, body) = get(&env.gw.h1(), &env.gw.url("/api/items/1"), &h).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["upstream"], true);
    assert_eq!(vary(&h), ["accept-encoding", "origin"]);
    let acao: Vec<_> = h.get_all("access-control-allow-origin").iter().collect();
    assert_eq!(acao, [APP], "the upstream's `*` is replaced");
    assert!(h.get("access-control-allow-methods").is_none());
    assert_eq!(value(&h, "x-upstream"), "yes");

    // `origins = ["*"]`: any origin is echoed, never with credentials.
    let origin = "https://anyone.example";
    let (s, pf, _) = env
        .preflight("/open", origin, "GET", Some("authorization"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(value(&pf, "access-control-allow-origin"), origin);
    assert!(pf.get("access-control-allow-credentials").is_none());
    assert!(pf.get("access-control-max-age").is_none());
    let h = [("origin", origin), ("authorization", auth.as_str())];
    let (s, h, _) = get(&env.gw.h1(), &env.gw.url("/open"), &h).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(value(&h, "access-control-allow-origin"), origin);
    assert!(h.get("access-control-allow-credentials").is_none());
    assert!(h.get("access-control-expose-headers").is_none());

    // OPTIONS with an Origin but no Access-Control-Request-Method is an
    // actual request: forwarded (authenticated), with the policy's headers.
    let before = env.hits();
    let h = [("origin", APP), ("authorization", auth.as_str())];
    let (s, h, body) = send(
        &env.gw.h1(),
        "OPTIONS",
        &env.gw.url("/api/items/1"),
        &h,
        empty(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["method"], "OPTIONS");
    assert_eq!(value(&h, "access-control-allow-origin"), APP);
    assert_eq!(env.hits(), before + 1);
}

#[tokio::test]
async fn routes_without_cors_behave_as_before() {
    let env = setup().await;
    // A preflight to a route without `cors` is an OPTIONS like any other:
    // forwarded, and the upstream's answer passes through unchanged.
    let (s, h, body) = env
        .preflight("/plain/x", APP, "POST", Some("authorization"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["method"], "OPTIONS");
    assert_eq!(env.hits(), 1);
    assert_eq!(value(&h, "access-control-allow-origin"), "*");
    assert_eq!(value(&h, "access-control-allow-methods"), "DELETE");
    assert_eq!(vary(&h), ["accept-encoding"]);
    let (s, h, _) = get(&env.gw.h1(), &env.gw.url("/plain/x"), &[("origin", APP)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(value(&h, "access-control-allow-origin"), "*");
    assert_eq!(vary(&h), ["accept-encoding"]);
    // Answers before any route is chosen carry nothing either.
    let (s, h, _) = get(&env.gw.h1(), &env.gw.url("/nowhere"), &[("origin", APP)]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(h.get("vary").is_none() && h.get("access-control-allow-origin").is_none());
}
