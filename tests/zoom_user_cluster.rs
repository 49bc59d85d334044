//! Zoom user grants shared by three replicas through a real `redis-server`
//! (`[cluster]`, `[grants]` without `path`): one refresh at Zoom's token
//! endpoint for any number of concurrent requests on any replica (the
//! vault's cluster lock), and Redis down or hung: requests needing the
//! grant get 503 `grant_store_unavailable` within `timeout_ms`, nothing is
//! lost, and the grant serves again once Redis is back. A disconnect on one
//! replica ends the use of the ZAKs the others cached.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::redis_server::Redis;
use common::zoom_flow::{GrantStore, ZoomFlow};
use common::*;
use http::StatusCode;
use serde_json::Value;

/// `[cluster] timeout_ms`: the bound on one Redis operation.
const TIMEOUT_MS: u64 = 200;

struct Replicas {
    gws: Vec<TestGateway>,
    z: ZoomFlow,
}

async fn replicas(redis: &Redis) -> Replicas {
    let z = ZoomFlow::start().await;
    let url = redis.url();
    let config = z.config(GrantStore::Redis {
        url: &url,
        prefix: "zu:",
        timeout_ms: TIMEOUT_MS,
    });
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(TestGateway::start(&config).await);
    }
    wait_until("keys", Duration::from_secs(5), || z.issuer.fetches() >= 3).await;
    wait_for_cluster(&gws, "ok").await;
    Replicas { gws, z }
}

async fn wait_for_cluster(gws: &[TestGateway], want: &str) {
    let start = Instant::now();
    for gw in gws {
        loop {
            let (_, body) = admin_get(gw.gw.admin_addr.unwrap(), "/readyz").await;
            if body["cluster_store"] == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "cluster_store did not become {want}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `n` signature requests for alice at once, spread over the replicas.
async fn burst(r: &Replicas, n: usize) -> Vec<(StatusCode, Value)> {
    let calls = (0..n).map(|i| r.z.signature(&r.gws[i % r.gws.len()], "alice"));
    futures_util::future::join_all(calls).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_on_three_replicas_refresh_once() {
    let redis = Redis::start().await;
    let r = replicas(&redis).await;
    r.z.connect(&r.gws[0], "alice").await;
    r.z.join_meeting();
    // The grant is in Redis: every replica sees it.
    for gw in &r.gws {
        let (status, v) = r.z.status(gw, "alice").await;
        assert_eq!(
            (status, &v["connected"]),
            (StatusCode::OK, &Value::Bool(true))
        );
    }
    // Zoom ends the access token early, and answers slowly enough that the
    // replicas' refreshes would overlap if nothing kept them apart.
    r.z.zoom.expire_access_tokens();
    r.z.zoom.delay_ms.store(150, Ordering::SeqCst);
    let answers = burst(&r, 50).await;
    assert_eq!(
        r.z.zoom.token_refresh.load(Ordering::SeqCst),
        1,
        "exactly one refresh at Zoom's token endpoint across the replicas"
    );
    assert_eq!(r.z.zoom.invalid_grant.load(Ordering::SeqCst), 0);
    for (status, v) in answers {
        assert_eq!(status, StatusCode::OK, "{v}");
        assert!(v["zak"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(v["obfToken"].as_str().is_some_and(|s| !s.is_empty()));
    }
    assert_eq!(r.z.zoom.live_grants(), 1);

    // The lock is freed and nothing but the grant and its index remains.
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("zu:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter().all(|k| !k.starts_with("zu:grant-lock:")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.starts_with("zu:grant:")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_on_one_replica_ends_cached_zaks_on_the_others() {
    let redis = Redis::start().await;
    let r = replicas(&redis).await;
    r.z.connect(&r.gws[0], "alice").await;
    let (status, first) = r.z.zak_signature(&r.gws[1], "alice").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert!(
        first["zak"].as_str().is_some_and(|s| !s.is_empty()),
        "{first}"
    );
    let fetched = r.z.zoom.zak.load(Ordering::SeqCst);
    // Cached on replica 1: served again without asking Zoom.
    let (_, again) = r.z.zak_signature(&r.gws[1], "alice").await;
    assert_eq!(again["zak"], first["zak"]);
    assert_eq!(r.z.zoom.zak.load(Ordering::SeqCst), fetched);

    let (status, v) = r.z.disconnect(&r.gws[0], "alice").await;
    assert_eq!(
        (status, &v["connected"]),
        (StatusCode::OK, &Value::Bool(false))
    );
    // Replica 1 still holds the ZAK in memory; it must not serve it.
    let (status, v) = r.z.zak_signature(&r.gws[1], "alice").await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::CONFLICT, Some("zoom_user_not_connected")),
        "{v}"
    );
}

/// Requests needing the grant while Redis does not answer: 503
/// `grant_store_unavailable`, each within about one `timeout_ms`.
async fn refused_quickly(r: &Replicas) {
    for gw in &r.gws {
        for path in ["status", "signature"] {
            let started = Instant::now();
            let (status, v) = if path == "status" {
                r.z.status(gw, "alice").await
            } else {
                r.z.signature(gw, "alice").await
            };
            let took = started.elapsed();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {v}");
            assert_eq!(v["error"], "grant_store_unavailable", "{path}: {v}");
            // One Redis operation (timeout_ms) plus TLS and HTTP on loopback.
            assert!(
                took < Duration::from_millis(TIMEOUT_MS + 800),
                "{path} took {took:?}"
            );
        }
    }
}

async fn still_connected(r: &Replicas) {
    for gw in &r.gws {
        let (status, v) = r.z.status(gw, "alice").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["connected"], true, "{v}");
        let (status, v) = r.z.signature(gw, "alice").await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hung_or_down_answers_503_and_loses_no_grant() {
    let mut redis = Redis::start_persistent().await;
    let r = replicas(&redis).await;
    r.z.connect(&r.gws[1], "alice").await;
    r.z.join_meeting();
    still_connected(&r).await;
    let refreshes = r.z.zoom.token_refresh.load(Ordering::SeqCst);

    // Hung (SIGSTOP): connections stay open, nothing answers.
    redis.pause(true);
    refused_quickly(&r).await;
    // Zoom refuses the access token meanwhile: still no refresh (the grant
    // cannot be read, so no refresh token is used).
    r.z.zoom.expire_access_tokens();
    refused_quickly(&r).await;
    redis.pause(false);
    wait_for_cluster(&r.gws, "ok").await;
    still_connected(&r).await;
    assert_eq!(
        r.z.zoom.token_refresh.load(Ordering::SeqCst),
        refreshes + 1,
        "one refresh once Redis answers again"
    );
    assert_eq!(r.z.zoom.invalid_grant.load(Ordering::SeqCst), 0);

    // Down (SIGKILL), then started again on the same port and data.
    redis.kill();
    refused_quickly(&r).await;
    redis.restart().await;
    wait_for_cluster(&r.gws, "ok").await;
    still_connected(&r).await;
    assert_eq!(r.z.zoom.invalid_grant.load(Ordering::SeqCst), 0);
    assert_eq!(r.z.zoom.live_grants(), 1);
}
