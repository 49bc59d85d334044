//! Webhook routes through the real server: verified events reach the app
//! byte-exact, everything else is refused before it.

mod common;

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

use http::{Response, StatusCode};
use http_body_util::BodyExt;

const SECRET: &str = "wh_test_secret_7c1f0a2b9d";
const OLD_SECRET: &str = "previous-secret-still-valid";

/// Records what the app received; answers with a settable status.
#[derive(Default)]
struct Recorder {
    count: AtomicUsize,
    status: AtomicU16,
    last: Mutex<Option<(http::HeaderMap, bytes::Bytes)>>,
    delay_ms: AtomicUsize,
}

async fn recording_upstream() -> (std::net::SocketAddr, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    rec.status.store(200, Ordering::SeqCst);
    let r = rec.clone();
    let addr = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let r = r.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let delay = r.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay as u64)).await;
            }
            r.count.fetch_add(1, Ordering::SeqCst);
            *r.last.lock().unwrap() = Some((parts.headers, body));
            let mut resp = Response::new(full("app answer"));
            *resp.status_mut() = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
            resp
        }
    })
    .await;
    (addr, rec)
}

async fn gateway(up: std::net::SocketAddr, tolerance: u64) -> TestGateway {
    TestGateway::start_with(
        &format!(
            r#"
[limits]
max_body_bytes = 4096

[webhook.zoom]
type = "zoom"
secret_tokens = ["${{ZOOM_WEBHOOK_SECRET_TOKEN}}", "{OLD_SECRET}"]
tolerance_secs = {tolerance}

[[route]]
name = "zoom-webhooks"
path = "/webhooks/zoom"
methods = ["POST"]
verify_webhook = "zoom"
upstream = "http://{up}"
"#
        ),
        "",
        [("ZOOM_WEBHOOK_SECRET_TOKEN".to_owned(), SECRET.to_owned())].into(),
    )
    .await
}

fn now() -> u64 {
    common::issuer::now()
}

const EVENT: &str = r#"{"event":"meeting.started","event_ts":1739923527123,"payload":{"account_id":"AbCdEfGhIjKlMnOpQrStUv","object":{"id":"85746065432","topic":"Réunion café","type":2}}}"#;

async fn post(
    gw: &TestGateway,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, serde_json::Value) {
    let mut h = vec![("content-type", "application/json; charset=utf-8")];
    h.extend_from_slice(headers);
    let (s, _, b) = send(
        &gw.h1(),
        "POST",
        &gw.url("/webhooks/zoom"),
        &h,
        full(body.to_vec()),
    )
    .await;
    let v = serde_json::from_slice(&b).unwrap_or(serde_json::Value::String(
        String::from_utf8_lossy(&b).into(),
    ));
    (s, v)
}

async fn post_signed(
    gw: &TestGateway,
    secret: &str,
    ts: u64,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let ts = ts.to_string();
    let sig = zoom_webhook_signature(secret, &ts, body.as_bytes());
    post(
        gw,
        &[
            ("x-zm-signature", &sig),
            ("x-zm-request-timestamp", &ts),
            ("x-zm-request-id", "req-1"),
        ],
        body.as_bytes(),
    )
    .await
}

#[tokio::test]
async fn a_verified_event_reaches_the_app_byte_exact() {
    let (up, rec) = recording_upstream().await;
    let gw = gateway(up, 300).await;
    let ts = now().to_string();
    let sig = zoom_webhook_signature(SECRET, &ts, EVENT.as_bytes());
    let (s, _) = post(
        &gw,
        &[
            ("x-zm-signature", &sig),
            ("x-zm-request-timestamp", &ts),
            ("x-webhook-verified", "spoofed"),
            ("x_webhook_verified", "x"),
        ],
        EVENT.as_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (h, body) = rec.last.lock().unwrap().clone().unwrap();
    assert_eq!(
        &body[..],
        EVENT.as_bytes(),
        "exact bytes, non-ASCII included"
    );
    assert_eq!(h["x-webhook-verified"], "zoom");
    assert_eq!(h.get_all("x-webhook-verified").iter().count(), 1);
    assert!(h.get("x_webhook_verified").is_none());
    assert_eq!(h["x-zm-signature"], sig.as_str());
    assert_eq!(h["x-zm-request-timestamp"], ts.as_str());
}

#[tokio::test]
async fn refused_deliveries_are_401_and_never_forwarded() {
    let (up, rec) = recording_upstream().await;
    let gw = gateway(up, 300).await;
    let ts = now();
    let good = zoom_webhook_signature(SECRET, &ts.to_string(), EVENT.as_bytes());
    let other_body = zoom_webhook_signature(SECRET, &ts.to_string(), b"{\"event\":\"other\"}");
    // (what, headers, reason)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, &'a str);
    // The exact ±300 s boundary is pinned by the unit tests (vectors); here a
    // clear margin keeps a second ticking over from deciding the outcome.
    let cases: Vec<Case> = vec![
        (
            "bad signature",
            vec![
                ("x-zm-signature", format!("v0={}", "0".repeat(64))),
                ("x-zm-request-timestamp", ts.to_string()),
            ],
            "invalid_signature",
        ),
        (
            "wrong secret",
            vec![
                (
                    "x-zm-signature",
                    zoom_webhook_signature("not-the-secret", &ts.to_string(), EVENT.as_bytes()),
                ),
                ("x-zm-request-timestamp", ts.to_string()),
            ],
            "invalid_signature",
        ),
        (
            "signature of another body",
            vec![
                ("x-zm-signature", other_body),
                ("x-zm-request-timestamp", ts.to_string()),
            ],
            "invalid_signature",
        ),
        (
            "no signature",
            vec![("x-zm-request-timestamp", ts.to_string())],
            "missing_signature",
        ),
        (
            "no timestamp",
            vec![("x-zm-signature", good.clone())],
            "missing_signature",
        ),
        (
            "malformed signature",
            vec![
                ("x-zm-signature", "sha256=abc".into()),
                ("x-zm-request-timestamp", ts.to_string()),
            ],
            "missing_signature",
        ),
        (
            "stale",
            vec![
                (
                    "x-zm-signature",
                    zoom_webhook_signature(SECRET, &(ts - 400).to_string(), EVENT.as_bytes()),
                ),
                ("x-zm-request-timestamp", (ts - 400).to_string()),
            ],
            "stale_timestamp",
        ),
        (
            "future",
            vec![
                (
                    "x-zm-signature",
                    zoom_webhook_signature(SECRET, &(ts + 400).to_string(), EVENT.as_bytes()),
                ),
                ("x-zm-request-timestamp", (ts + 400).to_string()),
            ],
            "stale_timestamp",
        ),
    ];
    for (what, headers, reason) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, v) = post(&gw, &h, EVENT.as_bytes()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(v["error"], reason, "{what}");
    }
    // Re-serialized body with the original signature.
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(EVENT).unwrap())
            .unwrap();
    let (s, _) = post(
        &gw,
        &[
            ("x-zm-signature", &good),
            ("x-zm-request-timestamp", &ts.to_string()),
        ],
        pretty.as_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        rec.count.load(Ordering::SeqCst),
        0,
        "nothing reached the app"
    );
}

#[tokio::test]
async fn the_second_secret_is_accepted_while_rotating() {
    let (up, rec) = recording_upstream().await;
    let gw = gateway(up, 300).await;
    assert_eq!(
        post_signed(&gw, OLD_SECRET, now(), EVENT).await.0,
        StatusCode::OK
    );
    assert_eq!(rec.count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn url_validation_is_answered_with_the_vector_response_and_not_forwarded() {
    let (up, rec) = recording_upstream().await;
    // The vector's timestamp is from 2022: widen the window for it.
    let gw = gateway(up, 2_000_000_000).await;
    let body = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    for _ in 0..2 {
        let (s, hd, b) = send(
            &gw.h1(),
            "POST",
            &gw.url("/webhooks/zoom"),
            &[
                (
                    "x-zm-signature",
                    "v0=ed367070b32fe54da9ed8008d449fba4089aad1997ea48adf74c75e1038e5bf7",
                ),
                ("x-zm-request-timestamp", "1654503849"),
            ],
            full(body),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(hd["content-type"], "application/json");
        assert_eq!(
            &b[..],
            br#"{"plainToken":"qgg8vlvZRS6UYooatFL8Aw","encryptedToken":"1029edd1df542a422aa595acf38631ce4c9173ab5a87766d8165c72856678db1"}"#,
            "answered every time, never deduplicated"
        );
    }
    // Unsigned challenge: refused (the gateway is no HMAC oracle).
    let (s, _) = post(
        &gw,
        &[("x-zm-request-timestamp", "1654503849")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(rec.count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn delivered_events_are_not_forwarded_again_but_failed_ones_are() {
    let (up, rec) = recording_upstream().await;
    let gw = gateway(up, 300).await;
    let body = r#"{"event":"meeting.ended","event_ts":1,"payload":{"id":1}}"#;
    assert_eq!(
        post_signed(&gw, SECRET, now(), body).await.0,
        StatusCode::OK
    );
    // Same body, new timestamp and signature (a platform retry): duplicate.
    let (s, v) = post_signed(&gw, SECRET, now() - 5, body).await;
    assert_eq!(
        (s, v),
        (StatusCode::OK, serde_json::json!({ "status": "duplicate" }))
    );
    assert_eq!(rec.count.load(Ordering::SeqCst), 1);

    // The app fails: its 500 passes through, and the retry is delivered.
    let body2 = r#"{"event":"meeting.ended","event_ts":2,"payload":{"id":2}}"#;
    rec.status.store(500, Ordering::SeqCst);
    assert_eq!(
        post_signed(&gw, SECRET, now(), body2).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    rec.status.store(200, Ordering::SeqCst);
    assert_eq!(
        post_signed(&gw, SECRET, now(), body2).await.0,
        StatusCode::OK
    );
    assert_eq!(rec.count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn concurrent_duplicates_are_forwarded_once() {
    let (up, rec) = recording_upstream().await;
    rec.delay_ms.store(200, Ordering::SeqCst);
    let gw = Arc::new(gateway(up, 300).await);
    let body = r#"{"event":"recording.completed","event_ts":3,"payload":{}}"#;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            post_signed(&gw, SECRET, now() - i, body).await
        }));
    }
    let mut dup = 0;
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, StatusCode::OK);
        if v == serde_json::json!({ "status": "duplicate" }) {
            dup += 1;
        }
    }
    assert_eq!(rec.count.load(Ordering::SeqCst), 1);
    assert_eq!(dup, 7);
}

#[tokio::test]
async fn unreachable_app_is_502_and_the_event_is_not_remembered() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = gateway(format!("127.0.0.1:{port}").parse().unwrap(), 300).await;
    let body = r#"{"event":"x","event_ts":4,"payload":{}}"#;
    assert_eq!(
        post_signed(&gw, SECRET, now(), body).await.0,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        post_signed(&gw, SECRET, now(), body).await.0,
        StatusCode::BAD_GATEWAY,
        "not a duplicate"
    );
}

#[tokio::test]
async fn oversized_and_non_object_bodies() {
    let (up, rec) = recording_upstream().await;
    let gw = gateway(up, 300).await;
    let big = format!(r#"{{"event":"x","pad":"{}"}}"#, "a".repeat(5000));
    let (s, v) = post_signed(&gw, SECRET, now(), &big).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    // Streamed without Content-Length: cut at the limit all the same.
    let ts = now().to_string();
    let (s, _, b) = send(
        &gw.h2(),
        "POST",
        &gw.url("/webhooks/zoom"),
        &[
            ("x-zm-signature", &format!("v0={}", "0".repeat(64))),
            ("x-zm-request-timestamp", &ts),
        ],
        PatternBody {
            offset: 0,
            len: 100_000,
        }
        .boxed(),
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    for body in ["[1,2,3]", "\"text\"", "not json"] {
        let (s, v) = post_signed(&gw, SECRET, now(), body).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_body")),
            "{body}"
        );
    }
    assert_eq!(rec.count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn github_deliveries_without_a_delivery_id_are_refused() {
    use hmac::{Hmac, KeyInit, Mac};
    let (up, rec) = recording_upstream().await;
    let gw = TestGateway::start(&format!(
        r#"
[webhook.repo]
type = "github"
secret_tokens = ["{SECRET}"]

[[route]]
name = "repo"
path = "/webhooks/github"
methods = ["POST"]
verify_webhook = "repo"
upstream = "http://{up}"
"#
    ))
    .await;
    let body = r#"{"action":"opened","number":7}"#;
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
    let deliver = |delivery: Option<&'static str>| {
        let mut h = vec![
            ("content-type", "application/json"),
            ("x-hub-signature-256", sig.as_str()),
        ];
        h.extend(delivery.map(|d| ("x-github-delivery", d)));
        let (c, url) = (gw.h1(), gw.url("/webhooks/github"));
        async move {
            let (s, _, b) = send(&c, "POST", &url, &h, full(body)).await;
            (
                s,
                serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
            )
        }
    };
    // A validly signed body without its delivery id would skip dedup: each
    // replay would reach the app.
    for delivery in [None, Some("")] {
        for _ in 0..2 {
            let (s, v) = deliver(delivery).await;
            assert_eq!(
                (s, v["error"].as_str()),
                (StatusCode::UNAUTHORIZED, Some("missing_signature")),
                "delivery id {delivery:?}"
            );
        }
    }
    assert_eq!(rec.count.load(Ordering::SeqCst), 0, "nothing forwarded");
    // With its id: delivered once, then a duplicate.
    assert_eq!(deliver(Some("d-42")).await.0, StatusCode::OK);
    assert_eq!(
        deliver(Some("d-42")).await,
        (StatusCode::OK, serde_json::json!({ "status": "duplicate" }))
    );
    assert_eq!(rec.count.load(Ordering::SeqCst), 1);
}
