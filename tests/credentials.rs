//! Credentials through the real server: a local token server following spec
//! section 4 stands in for zoom.us, a recording API for the platform.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::issuer::{Issuer, SigningKey};
use common::token_server::{token_server, TokenServer, S2S_SECRET};
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use http::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

const SDK_SECRET: &str = "meeting-sdk-secret-value-456";
const VIDEO_SECRET: &str = "video-sdk-secret-value-789";
const OPENTOK_SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

/// An API that records the credential headers it saw and refuses tokens in
/// `revoked`, and every token under `/deny`, with Zoom's 401 code 124.
#[derive(Default)]
struct Api {
    seen: Mutex<Vec<(String, http::HeaderMap)>>,
    revoked: Mutex<Vec<String>>,
}

async fn api() -> (std::net::SocketAddr, Arc<Api>) {
    let a = Arc::new(Api::default());
    let a2 = a.clone();
    let addr = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let a = a2.clone();
        async move {
            let auth = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            a.seen.lock().unwrap().push((
                format!("{} {}", req.method(), req.uri()),
                req.headers().clone(),
            ));
            let deny = req.uri().path().starts_with("/deny");
            if deny
                || a.revoked
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|t| auth == format!("Bearer {t}"))
            {
                let mut r =
                    Response::new(full(r#"{"code":124,"message":"Invalid access token."}"#));
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                return r;
            }
            Response::new(full("ok"))
        }
    })
    .await;
    (addr, a)
}

struct Env {
    gw: TestGateway,
    issuer: Arc<Issuer>,
    key: SigningKey,
    tokens: Arc<TokenServer>,
    api: Arc<Api>,
}

async fn setup(token_extra: &str, limits: &str) -> Env {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (ts_addr, tokens) = token_server().await;
    let (api_addr, api) = api().await;
    let gw = TestGateway::start_with(
        &format!(
            r#"
{limits}
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[credential.zoom_api]
type = "zoom_s2s_oauth"
account_id = "TESTaccountID"
client_id = "TESTclientID"
client_secret = "${{ZOOM_CLIENT_SECRET}}"
token_url = "http://{ts_addr}/oauth/token"
{token_extra}

[credential.zoom_sdk]
type = "zoom_meeting_sdk"
client_id = "abcTESTsdkKEY123"
client_secret = "${{ZOOM_SDK_CLIENT_SECRET}}"
ttl_secs = 7200

[credential.zoom_video]
type = "zoom_video_sdk"
client_id = "TESTvideoSDKkey01"
client_secret = "{VIDEO_SECRET}"

[credential.video]
type = "opentok_project"
api_key = "12345678"
api_secret = "{OPENTOK_SECRET}"
ttl_secs = 180

[[route]]
name = "zoom-api"
path = "/zoom/*"
strip_prefix = "/zoom"
upstream = "http://{api_addr}"
authenticate = "none"
inject = [{{ credential = "zoom_api", header = "Authorization" }}]

[[route]]
name = "join-meeting"
path = "/api/meetings/{{meeting}}/join"
upstream = "http://{api_addr}"
authenticate = "corp"
inject = [{{ credential = "zoom_sdk", header = "X-Zoom-Signature", meeting_param = "meeting", host_roles = ["meeting-hosts"] }}]

[[route]]
name = "opentok-rest"
path = "/opentok/*"
strip_prefix = "/opentok"
upstream = "http://{api_addr}"
authenticate = "none"
inject = [{{ credential = "video", header = "X-OPENTOK-AUTH" }}]

[[route]]
name = "sdk-signature"
path = "/api/sdk-signature"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "zoom_sdk", host_roles = ["meeting-hosts"] }}

[[route]]
name = "video-session"
path = "/api/sessions/{{session}}/token"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "zoom_video", session_param = "session", host_roles = ["meeting-hosts"] }}
"#,
            iss = issuer.url
        ),
        "",
        [
            ("ZOOM_CLIENT_SECRET".to_owned(), S2S_SECRET.to_owned()),
            ("ZOOM_SDK_CLIENT_SECRET".to_owned(), SDK_SECRET.to_owned()),
        ]
        .into(),
    )
    .await;
    wait_until("issuer keys", Duration::from_secs(5), || {
        issuer.fetches() >= 1
    })
    .await;
    Env {
        gw,
        issuer,
        key,
        tokens,
        api,
    }
}

fn bearer(env: &Env, sub: &str, groups: &[&str]) -> String {
    format!(
        "Bearer {}",
        env.key
            .sign(&env.issuer.claims(sub, json!({ "groups": groups })))
    )
}

fn verify_hs256(jwt: &str, secret: &str) -> bool {
    let (msg, sig) = jwt.rsplit_once('.').unwrap();
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(msg.as_bytes());
    m.verify_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .unwrap(),
    )
    .is_ok()
        && jwt.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.")
}

fn last_header(api: &Api, name: &str) -> String {
    let seen = api.seen.lock().unwrap();
    seen.last()
        .unwrap()
        .1
        .get(name)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_start_requests_cause_exactly_one_token_request() {
    let env = setup("", "").await;
    // The background task may already be fetching; make that fetch slow so
    // the requests below all arrive cold.
    env.tokens.delay_ms.store(300, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = if i % 2 == 0 { env.gw.h2() } else { env.gw.h1() };
        let url = env.gw.url(&format!("/zoom/v2/users/{i}"));
        tasks.push(tokio::spawn(async move { get(&c, &url, &[]).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        env.tokens.requests.load(Ordering::SeqCst),
        1,
        "exactly one token request"
    );
    assert!(
        env.tokens.bad_requests.lock().unwrap().is_empty(),
        "{:?}",
        env.tokens.bad_requests.lock().unwrap()
    );
    let seen = env.api.seen.lock().unwrap();
    assert_eq!(seen.len(), 200);
    assert!(seen
        .iter()
        .all(|(_, h)| h["authorization"] == "Bearer tok-1"));
    assert!(
        seen.iter().any(|(p, _)| p == "GET /v2/users/7"),
        "prefix stripped"
    );
}

#[tokio::test]
async fn tokens_refresh_before_expiry_in_the_background() {
    // expires_in 62 with a 60 s margin: refreshed 2 s after each fetch.
    let env = setup("refresh_before_secs = 60", "").await;
    env.tokens.expires_in.store(62, Ordering::SeqCst);
    // Replace the start-up token (fetched with 3599) by one living 62 s.
    env.api.revoked.lock().unwrap().push("tok-1".into());
    assert_eq!(
        get(&env.gw.h1(), &env.gw.url("/zoom/me"), &[]).await.0,
        StatusCode::OK
    );
    let issued = env.tokens.issued.load(Ordering::SeqCst);
    wait_until("background refresh", Duration::from_secs(6), || {
        env.tokens.issued.load(Ordering::SeqCst) > issued
    })
    .await;
    let (s, _, _) = get(&env.gw.h1(), &env.gw.url("/zoom/me"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        last_header(&env.api, "authorization"),
        format!("Bearer tok-{}", env.tokens.issued.load(Ordering::SeqCst))
    );
}

#[tokio::test]
async fn token_server_down_is_503_with_retry_after_and_no_secret() {
    let (ts_addr, tokens) = token_server().await;
    tokens.down.store(true, Ordering::SeqCst);
    let (api_addr, _api) = api().await;
    let gw = TestGateway::start(&format!(
        "[credential.zoom_api]\ntype = \"zoom_s2s_oauth\"\naccount_id = \"TESTaccountID\"\nclient_id = \"TESTclientID\"\nclient_secret = \"{S2S_SECRET}\"\ntoken_url = \"http://{ts_addr}/oauth/token\"\n\n[[route]]\nname = \"z\"\npath = \"/zoom/*\"\nupstream = \"http://{api_addr}\"\nauthenticate = \"none\"\ninject = [{{ credential = \"zoom_api\", header = \"Authorization\" }}]\n"
    ))
    .await;
    wait_until("first attempt", Duration::from_secs(5), || {
        tokens.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    let (s, h, b) = get(&gw.h1(), &gw.url("/zoom/x"), &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&b)["error"], "credential_unavailable");
    assert!(h.contains_key("retry-after"));
    let text = format!("{h:?}{}", String::from_utf8_lossy(&b));
    assert!(
        !text.contains(S2S_SECRET) && !text.contains("VEVTVGNsaWVudElE"),
        "secret leaked: {text}"
    );
    let (s, v) = admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(v["not_ready"].to_string().contains("zoom_api"), "{v}");
    // Recovery: the next attempt succeeds and requests pass.
    tokens.down.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while get(&gw.h1(), &gw.url("/zoom/x"), &[]).await.0 != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_refused_client_is_503_and_not_retried_in_a_hot_loop() {
    let env = setup("", "").await;
    // Start over with a refusing endpoint: drop the token and refuse.
    env.tokens.refuse.store(true, Ordering::SeqCst);
    env.api.revoked.lock().unwrap().push("tok-1".into());
    let (s, _, _) = send(
        &env.gw.h1(),
        "POST",
        &env.gw.url("/zoom/x"),
        &[],
        full("{}"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a POST with a body gets the 401 passed through"
    );
    let before = env.tokens.requests.load(Ordering::SeqCst);
    for _ in 0..30 {
        let (s, _, b) = get(&env.gw.h1(), &env.gw.url("/zoom/x"), &[]).await;
        assert_eq!(
            (s, json(&b)["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("credential_unavailable")
            )
        );
    }
    assert!(
        env.tokens.requests.load(Ordering::SeqCst) - before <= 1,
        "hot loop against the token endpoint"
    );
}

#[tokio::test]
async fn an_upstream_401_refetches_once_and_retries_bodiless_requests() {
    let env = setup("", "").await;
    assert_eq!(
        get(&env.gw.h1(), &env.gw.url("/zoom/a"), &[]).await.0,
        StatusCode::OK
    );
    assert_eq!(last_header(&env.api, "authorization"), "Bearer tok-1");
    env.api.revoked.lock().unwrap().push("tok-1".into());
    let (s, _, _) = get(&env.gw.h1(), &env.gw.url("/zoom/b"), &[]).await;
    assert_eq!(s, StatusCode::OK, "retried with a new token");
    assert_eq!(env.tokens.issued.load(Ordering::SeqCst), 2, "one refetch");
    let seen = env.api.seen.lock().unwrap();
    let tail: Vec<String> = seen
        .iter()
        .rev()
        .take(2)
        .map(|(_, h)| h["authorization"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(tail, vec!["Bearer tok-2", "Bearer tok-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_401_to_every_token_costs_one_refetch_per_cooldown() {
    let env = setup("", "").await;
    let started = std::time::Instant::now();
    // The first request drops tok-1 and is retried with tok-2; inside the
    // cooldown the others keep tok-2 and get the upstream's 401 unchanged.
    for i in 0..30 {
        let (s, _, b) = get(&env.gw.h1(), &env.gw.url(&format!("/zoom/deny/{i}")), &[]).await;
        assert_eq!(
            (s, json(&b)["code"].as_u64()),
            (StatusCode::UNAUTHORIZED, Some(124))
        );
    }
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (c, url) = (env.gw.h2(), env.gw.url(&format!("/zoom/deny/c{i}")));
        tasks.push(tokio::spawn(async move { get(&c, &url, &[]).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    // One refetch per started cooldown (10 s), should this run be that slow.
    let cooldowns = started.elapsed().as_secs() / 10 + 1;
    assert!(
        env.tokens.requests.load(Ordering::SeqCst) as u64 <= 1 + cooldowns,
        "{} token requests for 60 refused requests",
        env.tokens.requests.load(Ordering::SeqCst)
    );
    // The kept token still serves the paths that accept it.
    assert_eq!(
        get(&env.gw.h1(), &env.gw.url("/zoom/me"), &[]).await.0,
        StatusCode::OK
    );
    let issued = env.tokens.issued.load(Ordering::SeqCst);
    assert!(issued >= 2, "the first 401 refetched");
    assert_eq!(
        last_header(&env.api, "authorization"),
        format!("Bearer tok-{issued}")
    );
    let seen = env.api.seen.lock().unwrap();
    let with_first = seen
        .iter()
        .filter(|(_, h)| h["authorization"] == "Bearer tok-1")
        .count();
    assert_eq!(with_first, 1, "a dropped token is never sent again");
}

/// A gateway injecting the S2S token of the stand-in at `ts` on `/zoom/*`.
async fn s2s_gateway(ts: std::net::SocketAddr, api: std::net::SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        "[credential.zoom_api]\ntype = \"zoom_s2s_oauth\"\naccount_id = \"TESTaccountID\"\nclient_id = \"TESTclientID\"\nclient_secret = \"{S2S_SECRET}\"\ntoken_url = \"http://{ts}/oauth/token\"\n\n[[route]]\nname = \"z\"\npath = \"/zoom/*\"\nupstream = \"http://{api}\"\nauthenticate = \"none\"\ninject = [{{ credential = \"zoom_api\", header = \"Authorization\" }}]\n"
    ))
    .await
}

/// Requests for `window` against a token endpoint answering `expires_in`:
/// each is a prompt 503 `credential_unavailable`; returns the number of
/// token requests made meanwhile.
async fn token_requests_with_expires_in(expires_in: u64, window: Duration) -> usize {
    let (ts, tokens) = token_server().await;
    tokens.expires_in.store(expires_in, Ordering::SeqCst);
    let (api_addr, _api) = api().await;
    let gw = s2s_gateway(ts, api_addr).await;
    wait_until("the first token request", Duration::from_secs(5), || {
        tokens.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    let started = std::time::Instant::now();
    while started.elapsed() < window {
        let sent = std::time::Instant::now();
        let (s, _, b) = get(&gw.h1(), &gw.url("/zoom/me"), &[]).await;
        assert_eq!(
            (s, json(&b)["error"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("credential_unavailable")
            ),
            "expires_in {expires_in}"
        );
        assert!(sent.elapsed() < Duration::from_secs(2), "answered promptly");
        // Pacing only: a steady trickle of requests over the window.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokens.requests.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degenerate_expires_in_is_an_unusable_answer_that_backs_off() {
    // 0 and 1 used to refresh in a loop (~25 token requests/s), u64::MAX to
    // wrap the expiry. Now each is a failed fetch backing off from 1 s:
    // attempts at about 0, 1 and 3 s.
    let window = Duration::from_millis(2500);
    let (zero, one, max) = tokio::join!(
        token_requests_with_expires_in(0, window),
        token_requests_with_expires_in(1, window),
        token_requests_with_expires_in(u64::MAX, window),
    );
    for (expires_in, n) in [(0, zero), (1, one), (u64::MAX, max)] {
        assert!(
            (1..=4).contains(&n),
            "expires_in {expires_in}: {n} token requests in {window:?}"
        );
    }
}

#[tokio::test]
async fn opentok_tokens_are_fresh_per_request() {
    let env = setup("", "").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        assert_eq!(
            get(
                &env.gw.h1(),
                &env.gw.url("/opentok/v2/project/12345678/session"),
                &[("x-opentok-auth", "client-value")]
            )
            .await
            .0,
            StatusCode::OK
        );
        let t = last_header(&env.api, "x-opentok-auth");
        assert!(!t.starts_with("Bearer"), "no Bearer prefix");
        assert!(verify_hs256(&t, OPENTOK_SECRET));
        let c = jwt_claims(&t);
        assert_eq!(
            (c["iss"].as_str(), c["ist"].as_str()),
            (Some("12345678"), Some("project"))
        );
        assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 180);
        assert!(c["jti"].is_string());
        seen.push(t);
    }
    seen.dedup();
    assert_eq!(seen.len(), 3, "distinct per request");
}

#[tokio::test]
async fn host_role_decides_the_meeting_sdk_role() {
    let env = setup("", "").await;
    let host = bearer(&env, "hana", &["meeting-hosts"]);
    let guest = bearer(&env, "pat", &["staff"]);
    let cases = [
        (&host, "", StatusCode::OK, Some(0)),
        (&host, "?role=1", StatusCode::OK, Some(1)),
        (&guest, "?role=0", StatusCode::OK, Some(0)),
        (&guest, "?role=1", StatusCode::FORBIDDEN, None),
        (&guest, "?role=2", StatusCode::BAD_REQUEST, None),
    ];
    for (who, q, status, role) in cases {
        let (s, _, b) = get(
            &env.gw.h1(),
            &env.gw.url(&format!("/api/meetings/85746065432/join{q}")),
            &[("authorization", who)],
        )
        .await;
        assert_eq!(s, status, "{q}: {}", String::from_utf8_lossy(&b));
        if let Some(role) = role {
            let sig = last_header(&env.api, "x-zoom-signature");
            assert!(verify_hs256(&sig, SDK_SECRET));
            let c = jwt_claims(&sig);
            assert_eq!(c["role"], role);
            assert_eq!(c["mn"], "85746065432");
            assert_eq!(c["appKey"], "abcTESTsdkKEY123");
            assert_eq!(c["sdkKey"], "abcTESTsdkKEY123");
            assert_eq!(
                c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(),
                7200
            );
            assert_eq!(c["tokenExp"], c["exp"]);
        } else {
            assert_eq!(
                json(&b)["error"],
                if s == StatusCode::FORBIDDEN {
                    "host_role_not_permitted"
                } else {
                    "invalid_request"
                }
            );
        }
    }
    // Meeting numbers must be 9 to 12 digits.
    for bad in [
        "12345678",
        "1234567890123",
        "123%20OR%201",
        "%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96%EF%BC%97%EF%BC%98%EF%BC%99",
    ] {
        let (s, _, b) = get(
            &env.gw.h1(),
            &env.gw.url(&format!("/api/meetings/{bad}/join")),
            &[("authorization", &host)],
        )
        .await;
        assert_eq!(
            (s, json(&b)["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_meeting_number")),
            "{bad}"
        );
    }
}

async fn sign_req(env: &Env, who: &str, body: &str) -> (StatusCode, Value) {
    let (s, _, b) = send(
        &env.gw.h1(),
        "POST",
        &env.gw.url("/api/sdk-signature"),
        &[("authorization", who), ("content-type", "application/json")],
        full(body.to_owned()),
    )
    .await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test]
async fn sdk_signature_answers_and_refusals() {
    let env = setup("", "[limits]\nmax_body_bytes = 1024\n").await;
    let host = bearer(&env, "hana", &["meeting-hosts"]);
    let guest = bearer(&env, "pat", &[]);
    let (s, v) = sign_req(&env, &guest, r#"{"meetingNumber": 85746065432, "role": 0}"#).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["sdkKey"], "abcTESTsdkKEY123");
    assert_eq!(v["meetingNumber"], "85746065432");
    assert_eq!(v["role"], 0);
    let sig = v["signature"].as_str().unwrap();
    assert!(verify_hs256(sig, SDK_SECRET));
    assert_eq!(jwt_claims(sig)["mn"], "85746065432");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4);

    let (s, v) = sign_req(&env, &host, r#"{"meetingNumber": "123456789", "role": 1}"#).await;
    assert_eq!((s, v["role"].as_u64()), (StatusCode::OK, Some(1)));
    let (s, v) = sign_req(&env, &host, r#"{"meetingNumber": "123456789"}"#).await;
    assert_eq!(
        (s, v["role"].as_u64()),
        (StatusCode::OK, Some(0)),
        "no role asked: 0"
    );

    let (s, v) = sign_req(&env, &guest, r#"{"meetingNumber": "123456789", "role": 1}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("host_role_not_permitted"))
    );

    for body in [
        "not json",
        "[1]",
        "{}",
        r#"{"meetingNumber": "12345678"}"#,
        r#"{"meetingNumber": "123 OR 1"}"#,
        r#"{"meetingNumber": "１２３４５６７８９"}"#,
        &format!(r#"{{"meetingNumber": "{}"}}"#, "9".repeat(40)),
        r#"{"meetingNumber": 123456789, "role": "1"}"#,
        r#"{"meetingNumber": 123456789, "role": 2}"#,
        r#"{"meetingNumber": 123456789.5}"#,
    ] {
        let (s, v) = sign_req(&env, &guest, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(v["error"].is_string());
    }
    let (s, v) = sign_req(
        &env,
        &guest,
        &format!(
            r#"{{"meetingNumber": 123456789, "pad": "{}"}}"#,
            "a".repeat(2000)
        ),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    let (s, v) = sign_req(&env, "", r#"{"meetingNumber": 123456789}"#).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
}

#[tokio::test]
async fn video_session_tokens() {
    let env = setup("", "").await;
    let long_sub = "u".repeat(50);
    let who = bearer(&env, &long_sub, &["meeting-hosts"]);
    let post = |body: &'static str, who: String| {
        let c = env.gw.h1();
        let url = env.gw.url("/api/sessions/Cool%20Cars/token");
        async move {
            let (s, _, b) = send(&c, "POST", &url, &[("authorization", &who)], full(body)).await;
            (s, serde_json::from_slice::<Value>(&b).unwrap())
        }
    };
    let (s, v) = post(r#"{"role": 1}"#, who.clone()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["sessionName"].as_str(), v["role"].as_u64()),
        (Some("Cool Cars"), Some(1))
    );
    let t = v["token"].as_str().unwrap();
    assert!(verify_hs256(t, VIDEO_SECRET));
    let c = jwt_claims(t);
    assert_eq!(
        (
            c["app_key"].as_str(),
            c["tpc"].as_str(),
            c["role_type"].as_u64(),
            c["version"].as_u64()
        ),
        (
            Some("TESTvideoSDKkey01"),
            Some("Cool Cars"),
            Some(1),
            Some(1)
        )
    );
    assert_eq!(
        c["user_identity"].as_str().unwrap().len(),
        35,
        "subject cut to 35"
    );
    let (s, v) = post(
        r#"{"role": 0, "userIdentity": "alice", "sessionKey": "abc"}"#,
        who.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let c = jwt_claims(v["token"].as_str().unwrap());
    assert_eq!(
        (c["user_identity"].as_str(), c["session_key"].as_str()),
        (Some("alice"), Some("abc"))
    );
    let (s, _) = post(
        r#"{"userIdentity": "012345678901234567890123456789012345"}"#,
        who.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "userIdentity over 35");
    let (s, _) = post(
        r#"{"sessionKey": "0123456789012345678901234567890123456"}"#,
        who.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "sessionKey over 36");
    let guest = bearer(&env, "pat", &[]);
    let (s, v) = post(r#"{"role": 1}"#, guest).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("host_role_not_permitted"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_token_fetches_leak_no_secret_into_logs() {
    let (ts_addr, tokens) = token_server().await;
    tokens.refuse.store(true, Ordering::SeqCst);
    let (api_addr, _api) = api().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("s2s-secret");
    std::fs::write(&secret_file, format!("{S2S_SECRET}\n")).unwrap();
    let config = write_config(
        &certs,
        dir.path(),
        "",
        &format!(
            "[credential.zoom_api]\ntype = \"zoom_s2s_oauth\"\naccount_id = \"TESTaccountID\"\nclient_id = \"TESTclientID\"\nclient_secret = \"file:{}\"\ntoken_url = \"http://{ts_addr}/oauth/token\"\n\n[[route]]\nname = \"z\"\npath = \"/zoom/*\"\nupstream = \"http://{api_addr}\"\nauthenticate = \"none\"\ninject = [{{ credential = \"zoom_api\", header = \"Authorization\" }}]\n",
            secret_file.display()
        ),
    );
    let gw = BinaryGateway::spawn(&config);
    let c = client(&certs, false);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokens.requests.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (s, h, b) = get(&c, &gw.url("/zoom/x"), &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let log = gw.log.lock().unwrap().join("\n");
    assert!(
        log.contains("configuration error"),
        "the refusal is logged as a configuration error: {log}"
    );
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("TESTclientID:{S2S_SECRET}"));
    for written in [
        log,
        format!("{h:?}"),
        String::from_utf8_lossy(&b).into_owned(),
    ] {
        assert!(!written.contains(S2S_SECRET), "secret written: {written}");
        assert!(!written.contains(&basic), "basic credentials written");
    }
}
