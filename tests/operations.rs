//! Operating the gateway: request ids, the audit trail, metrics, and proof
//! that nothing secret is written anywhere.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::issuer::{Issuer, SigningKey};
use common::*;
use http::{Response, StatusCode};
use serde_json::{json, Value};

const SDK_SECRET: &str = "leakcheck-meeting-sdk-secret-Q1";
const VIDEO_SECRET: &str = "leakcheck-video-sdk-secret-Q2";
const S2S_SECRET: &str = "leakcheck-s2s-client-secret-Q3";
const OPENTOK_SECRET: &str = "leakcheck-opentok-api-secret-Q4";
const WEBHOOK_SECRET: &str = "leakcheck-webhook-secret-token-Q5";
const ZOOM_APP_SECRET: &str = "leakcheck-zoom-app-client-secret-Q6";
const S2S_TOKEN: &str = "leakcheck-s2s-access-token-Q7";
const MEETING_UUID: &str = "leakcheck-meeting-uuid-Q8==";

async fn token_endpoint() -> std::net::SocketAddr {
    upstream(|_req| async {
        Response::new(full(
            json!({ "access_token": S2S_TOKEN, "token_type": "bearer", "expires_in": 3600 })
                .to_string(),
        ))
    })
    .await
}

fn zoom_context_for(secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let plain = json!({ "typ": "meeting", "uid": "zoom-user-1", "mid": MEETING_UUID, "iss": "marketplace.zoom.us", "ts": now, "exp": now + 120_000, "attendrole": "host" });
    zoom_context(&plain, secret)
}

fn zoom_signature(ts: &str, body: &str) -> String {
    zoom_webhook_signature(WEBHOOK_SECRET, ts, body.as_bytes())
}

fn config(
    issuer: &str,
    up: std::net::SocketAddr,
    tokens: std::net::SocketAddr,
    audit: &str,
) -> String {
    format!(
        r#"
[audit]
path = "{audit}"

[identity.corp]
issuer = "{issuer}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"
tenant_claim = "org_id"

[zoom_app.speaker]
client_secret = "${{ZOOM_APP_CLIENT_SECRET}}"

[credential.zoom_sdk]
type = "zoom_meeting_sdk"
client_id = "leakSdkKey"
client_secret = "${{ZOOM_SDK_CLIENT_SECRET}}"

[credential.zoom_video]
type = "zoom_video_sdk"
client_id = "leakVideoKey"
client_secret = "${{ZOOM_VIDEO_SDK_SECRET}}"

[credential.zoom_api]
type = "zoom_s2s_oauth"
account_id = "acct"
client_id = "s2sClient"
client_secret = "${{ZOOM_CLIENT_SECRET}}"
token_url = "http://{tokens}/oauth/token"

[credential.video]
type = "opentok_project"
api_key = "12345678"
api_secret = "${{OPENTOK_API_SECRET}}"

[webhook.zoom]
type = "zoom"
secret_tokens = ["${{ZOOM_WEBHOOK_SECRET_TOKEN}}"]

[[route]]
name = "orgs"
path = "/api/orgs/{{tenant}}/meetings"
upstream = "http://{up}"
authenticate = "corp"
authorize = {{ roles_any = ["meeting-creators"], tenant_param = "tenant" }}
inject = [{{ credential = "zoom_api", header = "Authorization" }}]

[[route]]
name = "join-meeting"
path = "/api/meetings/{{meeting}}/join"
upstream = "http://{up}"
authenticate = "corp"
inject = [{{ credential = "zoom_sdk", header = "X-Zoom-Signature", meeting_param = "meeting", host_roles = ["hosts"] }}]

[[route]]
name = "sdk-signature"
path = "/api/sdk-signature"
authenticate = "corp"
respond = {{ credential = "zoom_sdk", host_roles = ["hosts"] }}

[[route]]
name = "video-session"
path = "/api/sessions/{{session}}/token"
authenticate = "corp"
respond = {{ credential = "zoom_video", session_param = "session", host_roles = ["hosts"] }}

[[route]]
name = "opentok-rest"
path = "/opentok/*"
upstream = "http://{up}"
authenticate = "corp"
inject = [{{ credential = "video", header = "X-OPENTOK-AUTH" }}]

[[route]]
name = "zoom-webhooks"
path = "/webhooks/zoom"
verify_webhook = "zoom"
upstream = "http://{up}"

[[route]]
name = "zoom-app"
path = "/zoomapp/*"
authenticate = {{ zoom_app = "speaker" }}
upstream = "http://{up}"

[[route]]
name = "public"
path = "/public/*"
upstream = "http://{up}"
authenticate = "none"
"#
    )
}

const ENV: &[(&str, &str)] = &[
    ("ZOOM_SDK_CLIENT_SECRET", SDK_SECRET),
    ("ZOOM_VIDEO_SDK_SECRET", VIDEO_SECRET),
    ("ZOOM_CLIENT_SECRET", S2S_SECRET),
    ("OPENTOK_API_SECRET", OPENTOK_SECRET),
    ("ZOOM_WEBHOOK_SECRET_TOKEN", WEBHOOK_SECRET),
    ("ZOOM_APP_CLIENT_SECRET", ZOOM_APP_SECRET),
];

/// Everything a client got back, to scan.
#[derive(Default)]
struct Seen {
    text: Vec<String>,
    /// Bodies of `respond` routes: they carry a credential on purpose.
    responded: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_written_anywhere() {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (up, received) = header_recorder().await;
    let tokens = token_endpoint().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let cfg = write_config(
        &certs,
        dir.path(),
        "",
        &config(&issuer.url, up, tokens, &audit.display().to_string()),
    );
    // Debug logging: even the detailed logs must stay clean.
    let gw = BinaryGateway::spawn_with(&cfg, "debug", ENV);
    let admin = gw.admin_addr.unwrap();
    leak::wait_ready(admin).await;

    let mut bearer_tokens = Vec::new();
    let mut tok = |sub: &str, groups: &[&str], tenant: &str| {
        let t = key.sign(&issuer.claims(sub, json!({ "groups": groups, "org_id": tenant })));
        bearer_tokens.push(t.clone());
        format!("Bearer {t}")
    };
    let creator = tok("alice", &["meeting-creators", "hosts"], "acme");
    let viewer = tok("bob", &["viewers"], "acme");
    let bad = "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJlLXZhbHVlLWxlYWs"
        .to_owned();
    bearer_tokens.push(bad[7..].to_owned());
    let ctx = zoom_context_for(ZOOM_APP_SECRET);
    let ts = common::issuer::now().to_string();
    let event = r#"{"event":"meeting.started","payload":{"id":"1"}}"#;
    let validation = r#"{"event":"endpoint.url_validation","payload":{"plainToken":"leak-plain"}}"#;

    let c1 = client(&certs, false);
    let c2 = client(&certs, true);
    let mut seen = Seen::default();
    // (method, path, headers, body, a respond route)
    type Req<'a> = (&'a str, String, Vec<(&'a str, String)>, String, bool);
    let requests: Vec<Req> = vec![
        (
            "GET",
            "/api/orgs/acme/meetings".into(),
            vec![("authorization", creator.clone())],
            String::new(),
            false,
        ),
        (
            "GET",
            "/api/orgs/acme/meetings".into(),
            vec![("authorization", viewer.clone())],
            String::new(),
            false,
        ),
        (
            "GET",
            "/api/orgs/acme/meetings?access_token=x".into(),
            vec![("authorization", bad.clone())],
            String::new(),
            false,
        ),
        (
            "GET",
            "/api/meetings/85746065432/join?role=1".into(),
            vec![("authorization", creator.clone())],
            String::new(),
            false,
        ),
        (
            "GET",
            "/api/meetings/85746065432/join?role=1".into(),
            vec![("authorization", viewer.clone())],
            String::new(),
            false,
        ),
        (
            "POST",
            "/api/sdk-signature".into(),
            vec![("authorization", creator.clone())],
            r#"{"meetingNumber":"85746065432","role":1}"#.into(),
            true,
        ),
        (
            "POST",
            "/api/sdk-signature".into(),
            vec![("authorization", viewer.clone())],
            r#"{"meetingNumber":"85746065432","role":1}"#.into(),
            true,
        ),
        (
            "POST",
            "/api/sessions/demo/token".into(),
            vec![("authorization", creator.clone())],
            r#"{"role":1}"#.into(),
            true,
        ),
        (
            "GET",
            "/opentok/v2/project".into(),
            vec![("authorization", creator.clone())],
            String::new(),
            false,
        ),
        (
            "POST",
            "/webhooks/zoom".into(),
            vec![
                ("x-zm-request-timestamp", ts.clone()),
                ("x-zm-signature", zoom_signature(&ts, event)),
            ],
            event.into(),
            false,
        ),
        (
            "POST",
            "/webhooks/zoom".into(),
            vec![
                ("x-zm-request-timestamp", ts.clone()),
                ("x-zm-signature", zoom_signature(&ts, event)),
            ],
            event.into(),
            false,
        ),
        (
            "POST",
            "/webhooks/zoom".into(),
            vec![
                ("x-zm-request-timestamp", ts.clone()),
                ("x-zm-signature", format!("v0={}", "ab".repeat(32))),
            ],
            event.into(),
            false,
        ),
        (
            "POST",
            "/webhooks/zoom".into(),
            vec![
                ("x-zm-request-timestamp", ts.clone()),
                ("x-zm-signature", zoom_signature(&ts, validation)),
            ],
            validation.into(),
            false,
        ),
        (
            "GET",
            "/zoomapp/home".into(),
            vec![("x-zoom-app-context", ctx.clone())],
            String::new(),
            false,
        ),
        (
            "GET",
            "/zoomapp/home".into(),
            vec![("x-zoom-app-context", zoom_context_for("wrong-secret"))],
            String::new(),
            false,
        ),
        (
            "GET",
            "/public/x".into(),
            vec![("authorization", creator.clone())],
            String::new(),
            false,
        ),
        ("GET", "/nowhere".into(), vec![], String::new(), false),
    ];
    for (i, (method, path, headers, body, responds)) in requests.into_iter().enumerate() {
        let c = if i % 2 == 0 { &c1 } else { &c2 };
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, hd, b) = send(c, method, &gw.url(&path), &h, full(body)).await;
        assert!(
            hd.contains_key("x-request-id"),
            "{path}: every response carries a request id"
        );
        let text = String::from_utf8_lossy(&b).into_owned();
        seen.text.push(format!("{s} {hd:?}"));
        if responds && s == StatusCode::OK {
            seen.responded.push(text);
        } else {
            seen.text.push(text);
        }
    }

    // What the gateway minted or fetched (seen by the upstream or answered on
    // purpose) must appear nowhere else.
    let mut minted: Vec<String> = Vec::new();
    for (_, h) in received.lock().unwrap().iter() {
        for name in ["x-zoom-signature", "x-opentok-auth", "authorization"] {
            if let Some(v) = h.get(name) {
                minted.push(v.to_str().unwrap().trim_start_matches("Bearer ").to_owned());
            }
        }
    }
    for body in &seen.responded {
        let v: Value = serde_json::from_str(body).unwrap();
        for k in ["signature", "token"] {
            if let Some(t) = v[k].as_str() {
                minted.push(t.to_owned());
            }
        }
    }
    assert!(
        minted.iter().any(|m| m == S2S_TOKEN),
        "the S2S token reached the upstream"
    );
    assert!(minted.len() >= 5, "{minted:?}");

    let written = leak::Written::collect(&gw, admin, &audit).await;
    let (audit_text, log) = (&written.audit, &written.log);
    assert!(
        audit_text.lines().count() >= 17,
        "one audit line per request:\n{audit_text}"
    );

    let mut forbidden: Vec<(&str, String)> = vec![];
    for s in [
        SDK_SECRET,
        VIDEO_SECRET,
        S2S_SECRET,
        OPENTOK_SECRET,
        WEBHOOK_SECRET,
        ZOOM_APP_SECRET,
        S2S_TOKEN,
        MEETING_UUID,
    ] {
        forbidden.push(("secret", s.to_owned()));
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("s2sClient:{S2S_SECRET}"));
    forbidden.push(("basic credentials", basic));
    for t in &bearer_tokens {
        forbidden.push(("bearer token", t.clone()));
        forbidden.push(("bearer signature", t.rsplit('.').next().unwrap().to_owned()));
    }
    for m in &minted {
        forbidden.push(("minted credential", m.clone()));
    }
    forbidden.push(("zoom app context", ctx[..40].to_owned()));
    written.assert_none_of(&forbidden, &seen.text);
    // A respond route's body holds only its own credential.
    for body in &seen.responded {
        for s in [
            SDK_SECRET,
            VIDEO_SECRET,
            S2S_SECRET,
            OPENTOK_SECRET,
            WEBHOOK_SECRET,
            ZOOM_APP_SECRET,
            S2S_TOKEN,
        ] {
            assert!(!body.contains(s));
        }
    }
    assert!(log.contains("request"), "debug logging was on");
}

async fn audit_setup() -> (
    TestGateway,
    Arc<Issuer>,
    SigningKey,
    std::path::PathBuf,
    Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
) {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (up, received) = header_recorder().await;
    let tokens = token_endpoint().await;
    let audit_dir = tempfile::tempdir().unwrap().keep();
    let audit = audit_dir.join("audit.log");
    let env = ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let gw = TestGateway::start_with(
        &config(&issuer.url, up, tokens, &audit.display().to_string()),
        "",
        env,
    )
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    (gw, issuer, key, audit, received)
}

/// Waits (without blocking the runtime the audit writer runs on) until the
/// audit log holds at least `n` lines.
async fn audit_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} audit lines");
}

#[tokio::test]
async fn request_ids_round_trip() {
    let (gw, _issuer, _key, _audit, received) = audit_setup().await;
    let c = gw.h1();
    let (_, h, _) = get(
        &c,
        &gw.url("/public/a"),
        &[("x-request-id", "abc-123.XYZ:1")],
    )
    .await;
    assert_eq!(h["x-request-id"], "abc-123.XYZ:1");
    assert_eq!(
        received.lock().unwrap().last().unwrap().1["x-request-id"],
        "abc-123.XYZ:1",
        "forwarded upstream"
    );
    let (_, h, _) = get(
        &c,
        &gw.url("/public/a"),
        &[("x-request-id", "bad id with spaces")],
    )
    .await;
    let id = h["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "a malformed id is replaced: {id}"
    );
    assert_eq!(
        received.lock().unwrap().last().unwrap().1["x-request-id"],
        id.as_str()
    );
    let (s, h, _) = get(&c, &gw.url("/nowhere"), &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        uuid::Uuid::parse_str(h["x-request-id"].to_str().unwrap()).is_ok(),
        "errors carry one too"
    );
}

#[tokio::test]
async fn one_audit_line_per_decision_with_its_fields() {
    let (gw, issuer, key, audit, _) = audit_setup().await;
    let c = gw.h1();
    let t = |sub: &str, groups: &[&str]| {
        format!(
            "Bearer {}",
            key.sign(&issuer.claims(sub, json!({ "groups": groups, "org_id": "acme" })))
        )
    };
    let long_agent = format!("probe/1.0 ({})", "x".repeat(300));
    let (s, _, _) = get(
        &c,
        &gw.url("/api/orgs/acme/meetings?secret=query"),
        &[
            ("authorization", &t("alice", &["meeting-creators"])),
            ("x-request-id", "req-allow"),
            ("user-agent", &long_agent),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = get(
        &c,
        &gw.url("/api/orgs/acme/meetings"),
        &[
            ("authorization", &t("bob", &["viewers"])),
            ("x-request-id", "req-deny"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = get(
        &c,
        &gw.url("/api/orgs/acme/meetings"),
        &[("x-request-id", "req-missing")],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = send(
        &gw.h2(),
        "POST",
        &gw.url("/api/sdk-signature"),
        &[
            ("authorization", &t("hana", &["hosts"])),
            ("x-request-id", "req-mint"),
        ],
        full(r#"{"meetingNumber":"123456789","role":1}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let lines = audit_lines(&audit, 4).await;
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("{id}"))
            .clone()
    };

    let a = by_id("req-allow");
    assert_eq!(
        (
            a["decision"].as_str(),
            a["reason"].as_str(),
            a["status"].as_u64()
        ),
        (Some("allow"), Some("ok"), Some(200))
    );
    assert_eq!(
        (a["route"].as_str(), a["method"].as_str()),
        (Some("orgs"), Some("GET"))
    );
    assert_eq!(a["path"], "/api/orgs/acme/meetings", "no query string");
    assert_eq!(
        (
            a["identity"].as_str(),
            a["subject"].as_str(),
            a["tenant"].as_str()
        ),
        (Some("corp"), Some("alice"), Some("acme"))
    );
    assert_eq!(a["roles"], json!(["meeting-creators"]));
    assert_eq!(a["client_ip"], "127.0.0.1");
    assert_eq!(
        (a["host"].as_str(), a["protocol"].as_str()),
        (Some("localhost"), Some("HTTP/1.1"))
    );
    assert_eq!(
        a["user_agent"].as_str(),
        Some(&long_agent[..256]),
        "the user agent, cut to 256 characters"
    );
    assert!(a["upstream_ms"].is_u64() && a["total_ms"].is_u64());
    assert!(time::OffsetDateTime::parse(
        a["ts"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339
    )
    .is_ok());

    let d = by_id("req-deny");
    assert_eq!(
        (
            d["decision"].as_str(),
            d["reason"].as_str(),
            d["status"].as_u64()
        ),
        (Some("deny"), Some("insufficient_role"), Some(403))
    );
    assert!(d["upstream_ms"].is_null());
    let m = by_id("req-missing");
    assert_eq!(
        (
            m["decision"].as_str(),
            m["reason"].as_str(),
            m["status"].as_u64()
        ),
        (Some("deny"), Some("missing_token"), Some(401))
    );
    assert!(m["user_agent"].is_null(), "{m}");
    let mint = by_id("req-mint");
    assert_eq!(mint["protocol"], "HTTP/2");
    assert_eq!(
        (mint["credential"].as_str(), mint["granted_role"].as_u64()),
        (Some("zoom_sdk"), Some(1))
    );
    for l in &lines {
        let text = l.to_string();
        assert!(
            !text.contains("eyJ"),
            "no token or signature in audit: {text}"
        );
    }
}

#[tokio::test]
async fn metrics_move_with_traffic() {
    let (gw, issuer, key, _, _) = audit_setup().await;
    let c = gw.h1();
    let before = scrape(gw.gw.admin_addr.unwrap()).await;
    assert_eq!(
        metric(&before, r#"meetgate_build_info{version="0.1.0"}"#),
        1.0
    );
    assert_eq!(metric(&before, "meetgate_config_generation"), 1.0);
    assert!(
        metric(
            &before,
            r#"meetgate_jwks_fetches_total{identity="corp",result="ok"}"#
        ) >= 1.0
    );
    assert_eq!(
        metric(&before, r#"meetgate_jwks_keys{identity="corp"}"#),
        1.0
    );

    let t = format!(
        "Bearer {}",
        key.sign(&issuer.claims(
            "alice",
            json!({ "groups": ["meeting-creators"], "org_id": "acme" })
        ))
    );
    for _ in 0..3 {
        assert_eq!(
            get(
                &c,
                &gw.url("/api/orgs/acme/meetings"),
                &[("authorization", &t)]
            )
            .await
            .0,
            StatusCode::OK
        );
    }
    let _ = get(&c, &gw.url("/api/orgs/acme/meetings"), &[]).await;
    let ts = common::issuer::now().to_string();
    let ev = r#"{"event":"x","payload":{}}"#;
    let _ = send(
        &c,
        "POST",
        &gw.url("/webhooks/zoom"),
        &[
            ("x-zm-request-timestamp", &ts),
            ("x-zm-signature", &zoom_signature(&ts, ev)),
        ],
        full(ev),
    )
    .await;
    let _ = send(
        &c,
        "POST",
        &gw.url("/webhooks/zoom"),
        &[("x-zm-request-timestamp", &ts), ("x-zm-signature", "v0=00")],
        full(ev),
    )
    .await;
    gw.rewrite("[[route]\n", false);
    wait_until("failed reload", Duration::from_secs(2), || {
        gw.reloads_failed() > 0
    })
    .await;

    let after = scrape(gw.gw.admin_addr.unwrap()).await;
    assert_eq!(
        metric(
            &after,
            r#"meetgate_requests_total{route="orgs",status="200"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_requests_total{route="orgs",status="401"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_auth_decisions_total{route="orgs",decision="allow",reason="ok"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_auth_decisions_total{route="orgs",decision="deny",reason="missing_token"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&after, "meetgate_token_cache_hits_total"),
        2.0,
        "the repeated token is a cache hit"
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_request_duration_seconds_count{route="orgs"}"#
        ),
        4.0
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_upstream_duration_seconds_count{route="orgs"}"#
        ),
        3.0
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_webhook_verifications_total{webhook="zoom",result="ok"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &after,
            r#"meetgate_webhook_verifications_total{webhook="zoom",result="missing_signature"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&after, r#"meetgate_config_reloads_total{result="error"}"#),
        1.0
    );
    assert!(
        metric(
            &after,
            r#"meetgate_credential_fetches_total{credential="zoom_api",result="ok"}"#
        ) >= 1.0
    );
    assert!(
        metric(
            &after,
            r#"meetgate_credential_expiry_seconds{credential="zoom_api"}"#
        ) > 3500.0
    );
    assert!(after.contains("meetgate_jwks_age_seconds{identity=\"corp\"}"));
    assert!(
        !after.contains("alice") && !after.contains("/api/orgs"),
        "labels never carry subjects or paths"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_file_is_reopened_on_sighup() {
    let up = echo_upstream().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let cfg = write_config(
        &certs,
        dir.path(),
        "",
        &format!("[audit]\npath = \"audit.log\"\n\n[[route]]\nname = \"p\"\npath = \"/p\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n"),
    );
    let gw = BinaryGateway::spawn(&cfg);
    let c = client(&certs, false);
    get(&c, &gw.url("/p"), &[("x-request-id", "before-rotation")]).await;
    audit_lines(&audit, 1).await;
    std::fs::rename(&audit, dir.path().join("audit.log.1")).unwrap();
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        get(&c, &gw.url("/p"), &[("x-request-id", "after-rotation")]).await;
        if std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("after-rotation")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "audit file not reopened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap();
    assert!(old.contains("before-rotation"));
}

#[tokio::test]
async fn audit_lines_count_body_bytes_both_ways() {
    use http_body_util::BodyExt;
    // Reads the whole request body, answers `?n=` bytes; `/stall` sends
    // 64 KiB and then nothing.
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        let stall = req.uri().path().ends_with("/stall");
        let n: usize = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("n="))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let got = req.into_body().collect().await.unwrap().to_bytes().len();
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        tokio::spawn(async move {
            if stall {
                let _ = tx.send(vec![b's'; 65_536].into()).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            } else {
                for chunk in vec![b'r'; n].chunks(10_000) {
                    let _ = tx.send(bytes::Bytes::copy_from_slice(chunk)).await;
                }
            }
        });
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let data = rx.recv().await?;
            Some((Ok::<_, BoxError>(http_body::Frame::data(data)), rx))
        });
        let body = http_body_util::StreamBody::new(frames);
        let mut resp = Response::new(body.boxed());
        resp.headers_mut()
            .insert("x-got", got.to_string().parse().unwrap());
        resp
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let gw = TestGateway::start(&format!(
        "[audit]\npath = \"{}\"\n[limits]\nupstream_body_timeout_ms = 500\n\n[[route]]\nname = \"up\"\npath = \"/up/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n",
        audit.display()
    ))
    .await;
    for (i, c) in [gw.h1(), gw.h2()].iter().enumerate() {
        let body = vec![b'q'; 100_000 + i];
        let (s, h, b) = send(
            c,
            "POST",
            &gw.url(&format!("/up/x?n={}", 250_000 + i)),
            &[("x-request-id", &format!("bytes-{i}"))],
            full(body),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["x-got"], (100_000 + i).to_string());
        assert_eq!(b.len(), 250_000 + i);
    }
    // Cut after 64 KiB (the upstream stalls past upstream_body_timeout_ms):
    // the line is written when the response is dropped, with what was
    // handed over.
    let req = http::Request::post(gw.url("/up/stall"))
        .header("x-request-id", "bytes-cut")
        .body(full("abc"))
        .unwrap();
    let resp = gw.h1().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.into_body().collect().await.is_err(),
        "a cut body ends in an error"
    );
    let lines = audit_lines(&audit, 3).await;
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|l| l["request_id"] == id)
            .unwrap_or_else(|| panic!("{id}: {lines:?}"))
            .clone()
    };
    for i in 0..2u64 {
        let l = by_id(&format!("bytes-{i}"));
        assert_eq!(
            (l["request_bytes"].as_u64(), l["response_bytes"].as_u64()),
            (Some(100_000 + i), Some(250_000 + i)),
            "{l}"
        );
    }
    let cut = by_id("bytes-cut");
    assert_eq!(
        (
            cut["request_bytes"].as_u64(),
            cut["response_bytes"].as_u64()
        ),
        (Some(3), Some(65_536)),
        "{cut}"
    );
}
