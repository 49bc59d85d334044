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

use common::zoom_flow::{GrantStore, ZoomFlow, MEETING, WEBHOOK_SECRET};
use common::zoom_oauth::CLIENT_ID;
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

/// One gateway keeping grants in its embedded file store.
struct Env {
    gw: TestGateway,
    z: ZoomFlow,
}

async fn setup() -> Env {
    let z = ZoomFlow::start().await;
    let gw = TestGateway::start(&z.config(GrantStore::File("grants.redb"))).await;
    wait_until("keys", Duration::from_secs(5), || z.issuer.fetches() >= 1).await;
    Env { gw, z }
}

impl Env {
    fn bearer(&self, sub: &str) -> String {
        self.z.bearer(sub)
    }

    async fn call(&self, method: &str, path: &str, sub: &str, body: &str) -> (StatusCode, Value) {
        self.z.call(&self.gw, method, path, sub, body).await
    }

    async fn authorize(&self, sub: &str, return_to: Option<&str>) -> String {
        self.z.authorize(&self.gw, sub, return_to).await
    }

    async fn callback(&self, url: &str) -> (StatusCode, http::HeaderMap, Value) {
        self.z.callback(&self.gw, url).await
    }

    async fn connect(&self, sub: &str) {
        self.z.connect(&self.gw, sub).await
    }

    async fn signature(&self, sub: &str) -> (StatusCode, Value) {
        self.z.signature(&self.gw, sub).await
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
    assert_eq!(env.z.zoom.token_code.load(Ordering::SeqCst), 1);
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

    env.z.join_meeting();
    let (status, v) = env.signature("alice").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["signature"]
        .as_str()
        .is_some_and(|s| s.split('.').count() == 3));
    assert!(v["zak"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["obfToken"].as_str().is_some_and(|s| !s.is_empty()));
    let zaks = env.z.zoom.zak.load(Ordering::SeqCst);
    let obfs = env.z.zoom.onbehalf.load(Ordering::SeqCst);
    let (status, again) = env.signature("alice").await;
    assert_eq!(status, StatusCode::OK);
    // The ZAK is reused; an OBF token is single-use: fetched per answer.
    assert_eq!(again["zak"], v["zak"]);
    assert_eq!(env.z.zoom.zak.load(Ordering::SeqCst), zaks);
    assert_eq!(env.z.zoom.onbehalf.load(Ordering::SeqCst), obfs + 1);
    assert!(env
        .z
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
    assert_eq!(env.z.zoom.token_code.load(Ordering::SeqCst), 1);

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

    // A code Zoom refuses (here: not the one it issued): 400, nothing
    // stored, and the state is spent.
    let url = env.authorize("carol", None).await;
    let (head, query) = url.split_once('?').unwrap();
    let forged: String = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| {
            let v = if k == "code" {
                "not-the-code".into()
            } else {
                v
            };
            format!(
                "{k}={}",
                form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let (status, _, v) = env.callback(&format!("{head}?{forged}")).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("zoom_code_rejected"))
    );
    let (_, v) = env.call("GET", "/zoom/status", "carol", "").await;
    assert_eq!(
        v["connected"], false,
        "nothing stored after a refused exchange"
    );
    let (status, _, _) = env.callback(&url).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the state was used once already"
    );

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
    env.z.join_meeting();
    // Zoom ends the access token early: every caller's next call is refused.
    env.z.zoom.expire_access_tokens();
    let calls = (0..20).map(|_| env.signature("alice"));
    for (status, v) in futures_util::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    assert_eq!(env.z.zoom.token_refresh.load(Ordering::SeqCst), 1);
    assert_eq!(env.z.zoom.invalid_grant.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn disconnect_revokes_and_deauthorization_deletes() {
    let env = setup().await;
    env.connect("alice").await;
    let (status, v) = env.call("POST", "/zoom/disconnect", "alice", "").await;
    assert_eq!((status, &v["connected"]), (StatusCode::OK, &json!(false)));
    assert_eq!(env.z.zoom.revoke.load(Ordering::SeqCst), 1);
    let (_, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!(v["connected"], false);

    // Connected again, then Zoom says the user removed the app.
    env.connect("alice").await;
    env.z.join_meeting();
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
    let Env { gw, z } = env;
    let TestGateway {
        gw: running,
        certs,
        config,
        dir,
    } = gw;
    running.shutdown().await;
    let file = std::fs::read(dir.path().join("grants.redb")).unwrap();
    let contains = |needle: &[u8]| file.windows(needle.len()).any(|w| w == needle);
    let tokens = z.zoom.issued_tokens();
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
        z,
    };
    wait_until("keys", Duration::from_secs(5), || {
        env.z.issuer.fetches() >= 2
    })
    .await;
    let (status, v) = env.call("GET", "/zoom/status", "alice", "").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["connected"], true);
}

#[tokio::test]
async fn a_reload_keeps_cached_zaks_unless_the_app_changed() {
    let env = setup().await;
    env.connect("alice").await;
    env.z.join_meeting();
    let (s, first) = env.signature("alice").await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let zaks = env.z.zoom.zak.load(Ordering::SeqCst);
    // The same file again: the app, its client and its ZAKs are kept.
    let rest = env.z.config(GrantStore::File("grants.redb"));
    env.gw.rewrite(&rest, true);
    assert!(env.gw.gw.reload().await);
    let (_, again) = env.signature("alice").await;
    assert_eq!(again["zak"], first["zak"]);
    assert_eq!(
        env.z.zoom.zak.load(Ordering::SeqCst),
        zaks,
        "no new ZAK fetched"
    );
    // A changed app (here its return_to list) starts afresh.
    env.gw.rewrite(
        &rest.replace(
            "\"https://app.example.com/other\"",
            "\"https://app.example.com/elsewhere\"",
        ),
        true,
    );
    assert!(env.gw.gw.reload().await);
    let (s, _) = env.signature("alice").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(env.z.zoom.zak.load(Ordering::SeqCst), zaks + 1);
}
