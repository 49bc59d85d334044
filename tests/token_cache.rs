//! The verified-token cache: bounded by the memory its principals take, not
//! by their count, and never serving a verification made under settings that
//! are no longer in force.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::issuer::{Issuer, SigningKey};
use common::*;
use http::StatusCode;
use serde_json::json;

fn config(issuer: &Issuer, up: std::net::SocketAddr, audiences: &str, limits: &str) -> String {
    format!(
        r#"
[limits]
{limits}

[identity.corp]
issuer = "{iss}"
audiences = [{audiences}]
algorithms = ["ES256"]
roles_claim = "groups"

[[route]]
name = "api"
path = "/api/*"
upstream = "http://{up}"
authenticate = "corp"
claims_to_headers = {{ "X-User-Email" = "email" }}
"#,
        iss = issuer.url
    )
}

async fn call(gw: &TestGateway, token: &str) -> (StatusCode, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let (s, _, b) = get(&gw.h1(), &gw.url("/api/x"), &[("authorization", &auth)]).await;
    (s, if b.is_empty() { json!(null) } else { json(&b) })
}

async fn cache_series(gw: &TestGateway) -> (f64, f64) {
    let m = scrape(gw.gw.admin_addr.expect("admin listener")).await;
    (
        metric(&m, "meetgate_token_cache_bytes"),
        metric(&m, "meetgate_token_cache_entries"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_is_bounded_by_bytes_and_keeps_only_claims_routes_read() {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let up = echo_upstream().await;
    let gw = TestGateway::start(&config(
        &issuer,
        up,
        r#""api://meetings""#,
        "token_cache_bytes = 1048576",
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;

    // A large claim no route reads is not kept: the entry stays small.
    let blob = "x".repeat(5000);
    let t = key.sign(&issuer.claims("small", json!({ "blob": blob, "email": "a@example.com" })));
    assert_eq!(call(&gw, &t).await.0, StatusCode::OK);
    let (bytes, entries) = cache_series(&gw).await;
    assert_eq!(entries, 1.0);
    assert!(
        bytes > 0.0 && bytes < 2048.0,
        "one small principal weighs {bytes}"
    );

    // Tokens whose roles are large: each entry weighs what it holds, and the
    // total stays within token_cache_bytes.
    let groups: Vec<String> = (0..650).map(|i| format!("g{i:03}")).collect();
    let mut sent = 0;
    for i in 0..120 {
        let t = key.sign(&issuer.claims(&format!("user-{i}"), json!({ "groups": groups })));
        assert!(t.len() <= 8192, "token of {} bytes", t.len());
        let (s, v) = call(&gw, &t).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        sent += 1;
    }
    let (bytes, entries) = cache_series(&gw).await;
    assert!(bytes <= 1048576.0, "cache holds {bytes} bytes");
    assert!(
        entries >= 1.0 && entries < f64::from(sent),
        "{entries} entries for {sent} large tokens within 1 MiB"
    );
    // One large principal weighs in proportion to its roles.
    assert!(
        bytes / entries > 650.0 * 24.0,
        "{bytes} bytes for {entries} entries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_verified_across_a_reload_is_not_served_under_the_new_settings() {
    let old_key = SigningKey::ec("ec-1");
    let new_key = SigningKey::ec("ec-2");
    let issuer = Issuer::start(vec![old_key.clone()]).await;
    let up = echo_upstream().await;
    let gw = TestGateway::start(&config(&issuer, up, r#""api://meetings", "api://old""#, "")).await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;

    // A token for the audience about to be removed, signed by a key the
    // gateway does not know yet: its verification waits on a JWKS refetch.
    let token = new_key.sign(&issuer.claims("bob", json!({ "aud": "api://old" })));
    issuer.keys.lock().unwrap().push(new_key.clone());
    issuer.hang.send_replace(true);
    let gw = Arc::new(gw);
    let in_flight = {
        let gw = gw.clone();
        let token = token.clone();
        tokio::spawn(async move { call(&gw, &token).await })
    };
    wait_until("refetch hanging", Duration::from_secs(5), || {
        issuer.hung.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;

    // The reload tightens the audience while that verification is running.
    let generation = gw.generation();
    gw.rewrite(&config(&issuer, up, r#""api://meetings""#, ""), true);
    wait_until("reloaded", Duration::from_secs(10), || {
        gw.generation() > generation
    })
    .await;
    issuer.hang.send_replace(false);
    // The request that started under the old settings may finish under them.
    let (s, v) = in_flight.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{v}");

    // From then on the token is judged by the settings in force.
    let (s, v) = call(&gw, &token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "wrong_audience");
}
