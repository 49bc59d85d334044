//! Zoom user authorization through the gateway, from outside: connect (the
//! sealed, single-use state and PKCE), Zoom's redirect to the callback, the
//! grant kept encrypted across restarts, a Meeting SDK answer with the
//! caller's ZAK and OBF token, refresh when Zoom refuses an access token,
//! disconnect, and `app_deauthorized`. Zoom is the stand-in of
//! `tests/common/zoom_oauth.rs` over real HTTPS.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::issuer::{Issuer, SigningKey};
use common::zoom_oauth::{zoom_oauth, ZoomOAuth, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

const RETURN_TO: &str = "https://app.example.com/settings/zoom";
/// 32 bytes, base64 (a test key; never a real one).
const GRANT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WEBHOOK_SECRET: &str = "zoom-webhook-secret";
const MEETING: &str = "123456789";

struct Env {
    gw: TestGateway,
    issuer: Arc<Issuer>,
    key: SigningKey,
    zoom: Arc<ZoomOAuth>,
    zoom_certs: Certs,
}

fn config(iss: &str, zoom_base: &str, zoom_ca: &str, echo: std::net::SocketAddr) -> String {
    format!(
        r#"
[outbound]
ca_file = "{zoom_ca}"

[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[grants]
key_id = "k1"
key = "{GRANT_KEY}"
path = "grants.redb"

[zoom_user.main]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{REDIRECT_URI}"
return_to = ["{RETURN_TO}", "https://app.example.com/other"]
oauth_url = "{zoom_base}"
api_url = "{zoom_base}"

[credential.sdk]
type = "zoom_meeting_sdk"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"

[credential.zak]
type = "zoom_zak"
zoom_user = "main"

[credential.obf]
type = "zoom_obf"
zoom_user = "main"

[webhook.zoom]
type = "zoom"
secret_tokens = ["{WEBHOOK_SECRET}"]

[[route]]
name = "connect"
path = "/zoom/connect"
authenticate = "corp"
zoom_user = {{ app = "main", action = "connect" }}

[[route]]
name = "callback"
path = "/zoom/oauth/callback"
authenticate = "none"
zoom_user = {{ app = "main", action = "callback" }}

[[route]]
name = "status"
path = "/zoom/status"
authenticate = "corp"
zoom_user = {{ app = "main", action = "status" }}

[[route]]
name = "disconnect"
path = "/zoom/disconnect"
methods = ["POST"]
authenticate = "corp"
zoom_user = {{ app = "main", action = "disconnect" }}

[[route]]
name = "signature"
path = "/sdk/signature"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "sdk", zak = "zak", obf = "obf" }}

[[route]]
name = "join"
path = "/join/{{meeting}}"
authenticate = "corp"
upstream = "http://{echo}"
inject = [{{ credential = "zak", header = "X-Zoom-Zak" }}, {{ credential = "obf", header = "X-Zoom-Obf", meeting_param = "meeting" }}]

[[route]]
name = "zoom-events"
path = "/webhooks/zoom"
verify_webhook = "zoom"
upstream = "http://{echo}"
"#,
        zoom_ca = zoom_ca
    )
}

async fn setup() -> Env {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let zoom_certs = Certs::new();
    let (base, zoom) = zoom_oauth(&zoom_certs).await;
    let echo = echo_upstream().await;
    let gw = TestGateway::start(&config(
        &issuer.url,
        &base,
        &zoom_certs.ca.display().to_string(),
        echo,
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    Env {
        gw,
        issuer,
        key,
        zoom,
        zoom_certs,
    }
}

impl Env {
    fn bearer(&self, sub: &str) -> String {
        let token = self.key.sign(&self.issuer.claims(sub, json!({})));
        format!("Bearer {token}")
    }

    async fn call(&self, method: &str, path: &str, sub: &str, body: &str) -> (StatusCode, Value) {
        let auth = self.bearer(sub);
        let (status, _, bytes) = send(
            &self.gw.h1(),
            method,
            &self.gw.url(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            full(body.to_owned()),
        )
        .await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// The user's browser: connect, Zoom's authorize page, then the
    /// redirect to the gateway's callback. Returns the callback URL.
    async fn authorize(&self, sub: &str, return_to: Option<&str>) -> String {
        let path = match return_to {
            Some(r) => format!(
                "/zoom/connect?return_to={}",
                form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
            ),
            None => "/zoom/connect".to_owned(),
        };
        let (status, v) = self.call("GET", &path, sub, "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let url = v["authorize_url"]
            .as_str()
            .expect("authorize_url")
            .to_owned();
        let browser = client(&self.zoom_certs, false);
        let (status, headers, _) = get(&browser, &url, &[]).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = headers["location"].to_str().unwrap();
        let query = location
            .strip_prefix(REDIRECT_URI)
            .expect("Zoom redirects to the registered redirect URI");
        self.gw.url(&format!("/zoom/oauth/callback{query}"))
    }

    async fn callback(&self, url: &str) -> (StatusCode, http::HeaderMap, Value) {
        let (status, headers, body) = get(&self.gw.h1(), url, &[]).await;
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    async fn connect(&self, sub: &str) {
        let url = self.authorize(sub, None).await;
        let (status, headers, body) = self.callback(&url).await;
        assert_eq!(status, StatusCode::FOUND, "{body}");
        assert_eq!(headers["location"], RETURN_TO);
    }

    async fn signature(&self, sub: &str) -> (StatusCode, Value) {
        let body = json!({ "meetingNumber": MEETING, "role": 0 }).to_string();
        self.call("POST", "/sdk/signature", sub, &body).await
    }
}

#[tokio::test]
async fn connect_then_signature_with_zak_and_obf() {
    let env = setup().await;
    let (status, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!((status, &v["connected"]), (StatusCode::OK, &json!(false)));
    let (status, v) = env.signature("alice").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "zoom_user_not_connected");

    env.connect("alice").await;
    assert_eq!(env.zoom.token_code.load(Ordering::SeqCst), 1);
    let (status, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["connected"], true);
    assert_eq!(v["zoom_user_id"], "TESTzoomUser01");
    let shown = v.to_string();
    assert!(
        !shown.contains("token") || !shown.contains("access"),
        "{shown}"
    );
    // Another user of the app is not connected by alice's grant.
    let (_, v) = env.call("GET", "/zoom/status", "bob", "").await;
    assert_eq!(v["connected"], false);

    // The authorizing user is not in the meeting: Zoom refuses the OBF.
    let (status, v) = env.signature("alice").await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"], "obf_user_not_in_meeting");

    env.zoom
        .in_meeting
        .lock()
        .unwrap()
        .insert(MEETING.to_owned());
    let (status, v) = env.signature("alice").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["signature"]
        .as_str()
        .is_some_and(|s| s.split('.').count() == 3));
    assert!(v["zak"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["obfToken"].as_str().is_some_and(|s| !s.is_empty()));
    let zaks = env.zoom.zak.load(Ordering::SeqCst);
    let obfs = env.zoom.onbehalf.load(Ordering::SeqCst);
    let (status, again) = env.signature("alice").await;
    assert_eq!(status, StatusCode::OK);
    // The ZAK is reused; an OBF token is single-use: fetched per answer.
    assert_eq!(again["zak"], v["zak"]);
    assert_eq!(env.zoom.zak.load(Ordering::SeqCst), zaks);
    assert_eq!(env.zoom.onbehalf.load(Ordering::SeqCst), obfs + 1);
    assert!(env
        .zoom
        .last_token_query
        .lock()
        .unwrap()
        .contains(&format!("meeting_id={MEETING}")));

    // Inject: the same tokens as headers for the upstream.
    let auth = env.bearer("alice");
    let (status, _, body) = get(
        &env.gw.h1(),
        &env.gw.url(&format!("/join/{MEETING}")),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let echoed = json(&body);
    assert_eq!(echoed["headers"]["x-zoom-zak"], v["zak"]);
    assert!(echoed["headers"]["x-zoom-obf"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
}

#[tokio::test]
async fn the_state_is_single_use_bound_and_sealed() {
    let env = setup().await;
    let url = env
        .authorize("alice", Some("https://app.example.com/other"))
        .await;
    let (status, headers, _) = env.callback(&url).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "https://app.example.com/other");
    // Replayed: refused, nothing exchanged again.
    let (status, _, v) = env.callback(&url).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("state_replayed"))
    );
    assert_eq!(env.zoom.token_code.load(Ordering::SeqCst), 1);

    // Tampered: one character of the state changed.
    let url = env.authorize("bob", None).await;
    let (head, query) = url.split_once('?').unwrap();
    let tampered: String = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if k == "state" {
                let mut b = v.into_owned().into_bytes();
                let i = b.len() / 2;
                b[i] = if b[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(b).unwrap()
            } else {
                v.into_owned()
            };
            format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let (status, _, v) = env.callback(&format!("{head}?{tampered}")).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("state_invalid"))
    );
    let (_, v) = env.call("GET", "/zoom/status", "bob", "").await;
    assert_eq!(v["connected"], false, "no grant stored for a refused state");

    // No state, or Zoom's error parameter: clear answers.
    let (status, _, v) = env
        .callback(&env.gw.url("/zoom/oauth/callback?code=abc"))
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("state_invalid"))
    );
    let (status, _, v) = env
        .callback(
            &env.gw
                .url("/zoom/oauth/callback?error=access_denied&state=x"),
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("zoom_authorization_denied"))
    );

    // return_to outside the allow-list: refused at connect (no open redirect).
    let (status, v) = env
        .call(
            "GET",
            "/zoom/connect?return_to=https%3A%2F%2Fevil.example%2F",
            "alice",
            "",
        )
        .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("return_to_not_allowed"))
    );
}

#[tokio::test]
async fn a_refused_access_token_is_refreshed_once_for_concurrent_callers() {
    let env = setup().await;
    env.connect("alice").await;
    env.zoom
        .in_meeting
        .lock()
        .unwrap()
        .insert(MEETING.to_owned());
    // Zoom ends the access token early: every caller's next call is refused.
    env.zoom.expire_access_tokens();
    let calls = (0..20).map(|_| env.signature("alice"));
    for (status, v) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    assert_eq!(env.zoom.token_refresh.load(Ordering::SeqCst), 1);
    assert_eq!(env.zoom.invalid_grant.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn disconnect_revokes_and_deauthorization_deletes() {
    let env = setup().await;
    env.connect("alice").await;
    let (status, v) = env.call("POST", "/zoom/disconnect", "alice", "").await;
    assert_eq!((status, &v["connected"]), (StatusCode::OK, &json!(false)));
    assert_eq!(env.zoom.revoke.load(Ordering::SeqCst), 1);
    let (_, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!(v["connected"], false);

    // Connected again, then Zoom says the user removed the app.
    env.connect("alice").await;
    env.zoom
        .in_meeting
        .lock()
        .unwrap()
        .insert(MEETING.to_owned());
    let (status, _) = env.signature("alice").await;
    assert_eq!(status, StatusCode::OK);
    let event = json!({
        "event": "app_deauthorized",
        "event_ts": 1767225600000u64,
        "payload": {
            "account_id": "acc", "user_id": "TESTzoomUser01", "signature": "x",
            "deauthorization_time": "2026-11-29T12:00:00Z", "client_id": CLIENT_ID
        }
    })
    .to_string();
    let ts = issuer_now().to_string();
    let sig = zoom_webhook_signature(WEBHOOK_SECRET, &ts, event.as_bytes());
    let (status, _, body) = send(
        &env.gw.h1(),
        "POST",
        &env.gw.url("/webhooks/zoom"),
        &[
            ("x-zm-request-timestamp", &ts),
            ("x-zm-signature", &sig),
            ("content-type", "application/json"),
        ],
        full(event),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the event still reaches the app");
    assert_eq!(json(&body)["method"], "POST");
    let (_, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!(v["connected"], false);
    // The cached ZAK is not served once the grant is gone.
    let (status, v) = env.signature("alice").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("zoom_user_not_connected"))
    );
}

fn issuer_now() -> u64 {
    common::issuer::now()
}

#[tokio::test]
async fn grants_survive_a_restart_and_are_sealed_on_disk() {
    let env = setup().await;
    env.connect("alice").await;
    let Env {
        gw,
        issuer,
        key,
        zoom,
        zoom_certs,
    } = env;
    let TestGateway {
        gw: running,
        certs,
        config,
        dir,
    } = gw;
    running.shutdown().await;
    let file = std::fs::read(dir.path().join("grants.redb")).unwrap();
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    let tokens = zoom.issued_tokens();
    assert!(!tokens.is_empty());
    for t in &tokens {
        assert!(!contains(t.as_bytes()), "a Zoom token is stored in clear");
    }

    let env_fn: meetgate::Env = Arc::new(|_: &str| None);
    let again = meetgate::start(&config, env_fn).await.expect("restart");
    let env = Env {
        gw: TestGateway {
            gw: again,
            certs,
            config,
            dir,
        },
        issuer,
        key,
        zoom,
        zoom_certs,
    };
    wait_until("keys", Duration::from_secs(5), || env.issuer.fetches() >= 2).await;
    let (status, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["connected"], true);
}
