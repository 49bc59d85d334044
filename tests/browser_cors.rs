//! CORS in a real browser: a page served from one origin
//! (`http://spa.example.com:PORT`, a small loopback HTTP server) calls the
//! gateway's signature route on another (`https://meetgate.example.com`)
//! with `fetch` and `Authorization: Bearer ...`, which makes headless
//! Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/interop/browser-fetch.mjs`) send a preflight first. The browser
//! itself decides what the page may read: the minted signature and the
//! gateway's 401 JSON for the allowed origin; nothing (`TypeError`) for a
//! page on an origin the policy does not list, whose POST is never sent.
//!
//! Names resolve to 127.0.0.1 by `--host-resolver-rules`; the gateway's
//! per-run test certificate is trusted by its public key
//! (`--ignore-certificate-errors-spki-list`, as in browser_zoom_connect.rs).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::issuer::{Issuer, SigningKey};
use common::*;
use serde_json::{json, Value};

const GATEWAY_HOST: &str = "meetgate.example.com";

/// The SPA's host: any path answers a small HTML page.
async fn page_server() -> SocketAddr {
    upstream(|_req: http::Request<hyper::body::Incoming>| async {
        let mut r = http::Response::new(full("<!doctype html><title>spa</title><p>spa</p>"));
        r.headers_mut()
            .insert("content-type", "text/html".parse().unwrap());
        r
    })
    .await
}

/// Runs the steps in headless Chromium; returns one result per step.
fn browse(steps: Value, trust: &Path) -> Vec<Value> {
    let cfg = json!({
        "host_rules": format!("MAP {GATEWAY_HOST} 127.0.0.1, MAP spa.example.com 127.0.0.1, MAP other.example.com 127.0.0.1"),
        "trust_pem": [trust.display().to_string()],
        "steps": steps,
    });
    serde_json::from_value(run_browser("browser-fetch.mjs", cfg)).expect("one result per step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_reads_the_answer_only_when_its_origin_is_allowed() {
    let page = page_server().await;
    let spa = format!("http://spa.example.com:{}", page.port());
    let other = format!("http://other.example.com:{}", page.port());
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(vec![key.clone()]).await;

    let certs = Certs::with_names(&[GATEWAY_HOST]);
    let trust = certs.cert.clone();
    let port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let gw = TestGateway::start_on(
        certs,
        listen,
        &format!(
            r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]

[credential.sdk]
type = "zoom_meeting_sdk"
client_id = "sdkKey"
client_secret = "sdk-secret"

[cors.spa]
origins = ["{spa}"]
headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]

[[route]]
name = "signature"
path = "/api/sdk-signature"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "sdk" }}
cors = "spa"
"#,
            iss = issuer.url
        ),
    )
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;

    let token = key.sign(&issuer.claims("alice", json!({})));
    let api = format!("https://{GATEWAY_HOST}:{port}/api/sdk-signature");
    let call = |page: &str, bearer: &str| {
        json!({
            "page": format!("{page}/app"),
            "url": api,
            "method": "POST",
            "headers": { "Authorization": format!("Bearer {bearer}"), "Content-Type": "application/json" },
            "body": r#"{"meetingNumber": 85746065432, "role": 0}"#,
        })
    };
    let steps = json!([
        call(&spa, &token),
        call(&spa, "not.a.jwt"),
        call(&other, &token),
    ]);
    let results = tokio::task::spawn_blocking(move || browse(steps, &trust))
        .await
        .unwrap();
    assert_eq!(results.len(), 3, "{results:#?}");

    // The allowed page reads the minted signature and an exposed header.
    let ok = &results[0];
    assert_eq!(ok["page_origin"], spa.as_str(), "{ok:#}");
    assert_eq!(ok["ok"], true, "{ok:#}");
    assert_eq!(ok["status"], 200, "{ok:#}");
    let answer: Value = serde_json::from_str(ok["body"].as_str().unwrap()).unwrap();
    assert!(answer["signature"].is_string(), "{answer}");
    assert_eq!(answer["sdkKey"], "sdkKey");
    assert!(ok["headers"]["x-request-id"].is_string(), "{ok:#}");

    // It reads the gateway's own 401 JSON too.
    let refused = &results[1];
    assert_eq!(refused["ok"], true, "{refused:#}");
    assert_eq!(refused["status"], 401, "{refused:#}");
    let error: Value = serde_json::from_str(refused["body"].as_str().unwrap()).unwrap();
    assert_eq!(error["error"], "malformed_token", "{error}");

    // Another origin: the browser refuses (preflight 403), fetch rejects.
    let blocked = &results[2];
    assert_eq!(blocked["page_origin"], other.as_str(), "{blocked:#}");
    assert_eq!(blocked["ok"], false, "{blocked:#}");
    assert_eq!(blocked["error"], "TypeError", "{blocked:#}");

    // What the gateway saw: three preflights (two allowed), and only the
    // allowed page's requests after them: one signature minted, one 401.
    let m = scrape(gw.gw.admin_addr.unwrap()).await;
    let decisions = |decision: &str, reason: &str| {
        metric(
            &m,
            &format!(
                "meetgate_auth_decisions_total{{route=\"signature\",decision=\"{decision}\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(decisions("allow", "cors_preflight"), 2.0, "{m}");
    assert_eq!(decisions("deny", "cors_not_allowed"), 1.0, "{m}");
    assert_eq!(decisions("allow", "ok"), 1.0, "{m}");
    assert_eq!(decisions("deny", "malformed_token"), 1.0, "{m}");
}
