//! Zoom Apps routes: the encrypted `x-zoom-app-context` becomes verified
//! identity headers; anything else is 401.

mod common;

use common::*;
use http::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "zoom-app-test-secret-0123456789";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn plain(extra: Value) -> Value {
    let now = now_ms();
    let mut v = json!({
        "typ": "meeting", "uid": "UIhTkdB5Q123456789", "mid": "wceIoD0lTySwype123456789==",
        "aud": "TESTCLIENTID0001", "iss": "marketplace.zoom.us", "ts": now, "exp": now + 120_000,
        "entitlements": [], "attendrole": "host"
    });
    for (k, val) in extra.as_object().unwrap() {
        if val.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = val.clone();
        }
    }
    v
}

async fn gateway() -> TestGateway {
    let up = echo_upstream().await;
    TestGateway::start_with(
        &format!(
            r#"
[zoom_app.speaker]
client_id = "TESTCLIENTID0001"
client_secret = "${{ZOOM_APP_CLIENT_SECRET}}"
max_age_secs = 300

[zoom_app.open]
client_secret = "${{ZOOM_APP_CLIENT_SECRET}}"
allow_guests = true

[[route]]
name = "zoom-app"
path = "/zoomapp/*"
authenticate = {{ zoom_app = "speaker" }}
upstream = "http://{up}"

[[route]]
name = "guests"
path = "/guests/*"
authenticate = {{ zoom_app = "open" }}
upstream = "http://{up}"
"#
        ),
        "",
        [("ZOOM_APP_CLIENT_SECRET".to_owned(), SECRET.to_owned())].into(),
    )
    .await
}

#[tokio::test]
async fn a_valid_context_becomes_zoom_headers() {
    let gw = gateway().await;
    let ctx = zoom_context(&plain(json!({})), SECRET);
    let (s, _, b) = get(
        &gw.h2(),
        &gw.url("/zoomapp/home"),
        &[
            ("x-zoom-app-context", &ctx),
            ("x-zoom-user-id", "spoofed"),
            ("x-auth-subject", "spoofed"),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let h = &json(&b)["headers"];
    assert_eq!(h["x-zoom-user-id"], "UIhTkdB5Q123456789");
    assert_eq!(h["x-zoom-meeting-id"], "wceIoD0lTySwype123456789==");
    assert_eq!(h["x-zoom-context-type"], "meeting");
    assert_eq!(h["x-zoom-attend-role"], "host");
    assert!(
        h.get("x-zoom-app-context").is_none(),
        "raw context not forwarded"
    );
    assert!(
        h.get("x-auth-subject").is_none(),
        "no X-Auth-* on Zoom Apps routes"
    );
}

#[tokio::test]
async fn absent_fields_omit_their_headers() {
    let gw = gateway().await;
    let ctx = zoom_context(
        &plain(json!({ "typ": "panel", "mid": null, "attendrole": null })),
        SECRET,
    );
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/zoomapp/x"),
        &[("x-zoom-app-context", &ctx)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let h = &json(&b)["headers"];
    assert_eq!(h["x-zoom-context-type"], "panel");
    assert!(h.get("x-zoom-meeting-id").is_none() && h.get("x-zoom-attend-role").is_none());
}

#[tokio::test]
async fn refusals_are_401_with_reason_codes() {
    let gw = gateway().await;
    let cases = [
        ("missing", None, "missing_context"),
        (
            "wrong secret",
            Some(zoom_context(&plain(json!({})), "another-secret")),
            "invalid_context",
        ),
        (
            "garbage",
            Some("not base64 at all!".to_owned()),
            "invalid_context",
        ),
        (
            "expired",
            Some(zoom_context(
                &plain(json!({ "exp": now_ms() - 1_000 })),
                SECRET,
            )),
            "context_expired",
        ),
        (
            "too old",
            Some(zoom_context(
                &plain(json!({ "ts": now_ms() - 301_000 })),
                SECRET,
            )),
            "context_expired",
        ),
        (
            "no exp",
            Some(zoom_context(&plain(json!({ "exp": null })), SECRET)),
            "invalid_context",
        ),
        (
            "wrong iss",
            Some(zoom_context(
                &plain(json!({ "iss": "evil.example" })),
                SECRET,
            )),
            "invalid_context",
        ),
        (
            "wrong aud",
            Some(zoom_context(&plain(json!({ "aud": "OTHER" })), SECRET)),
            "invalid_context",
        ),
        (
            "guest",
            Some(zoom_context(&plain(json!({ "uid": null })), SECRET)),
            "guest_not_allowed",
        ),
    ];
    for (what, ctx, reason) in cases {
        let mut h = vec![];
        if let Some(c) = &ctx {
            h.push(("x-zoom-app-context", c.as_str()));
        }
        let (s, _, b) = get(&gw.h1(), &gw.url("/zoomapp/x"), &h).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}");
        let v = json(&b);
        assert_eq!(v["error"], reason, "{what}");
        if let Some(c) = &ctx {
            assert!(
                !v.to_string().contains(&c[..16.min(c.len())]),
                "context echoed"
            );
        }
    }
}

#[tokio::test]
async fn guests_pass_where_allowed_with_the_guest_header() {
    let gw = gateway().await;
    let ctx = zoom_context(
        &plain(json!({ "uid": null, "iid": "u1zORRbITkev9brKC0RNDA==" })),
        SECRET,
    );
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/guests/x"),
        &[("x-zoom-app-context", &ctx)],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let h = &json(&b)["headers"];
    assert_eq!(h["x-zoom-guest"], "true");
    assert!(h.get("x-zoom-user-id").is_none());
}
