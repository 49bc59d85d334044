//! `[cluster]`: three gateways on different ports share one real
//! `redis-server` (started on a loopback port by the harness) for webhook
//! dedup and platform tokens, degrade to in-process stores when it dies and
//! share again when it is back (docs/BEHAVIOUR.md item 34).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::Redis;
use common::token_server::{token_server, TokenServer, S2S_SECRET};
use common::*;
use http::{Response, StatusCode};
use http_body_util::BodyExt;

const WEBHOOK_SECRET: &str = "cluster-webhook-secret-token";

/// A webhook receiver counting successful deliveries; answers slowly
/// enough that concurrent duplicates overlap.
#[derive(Default)]
struct Receiver {
    /// Deliveries answered 200.
    count: AtomicUsize,
    /// Answer the next delivery 500 (a failed delivery).
    fail_next: std::sync::atomic::AtomicBool,
}

async fn receiver(delay: Duration) -> (SocketAddr, Arc<Receiver>) {
    let rec = Arc::new(Receiver::default());
    let r = rec.clone();
    let addr = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let r = r.clone();
        async move {
            req.into_body().collect().await.unwrap();
            tokio::time::sleep(delay).await;
            if r.fail_next.swap(false, Ordering::SeqCst) {
                let mut resp = Response::new(full("app failed"));
                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                return resp;
            }
            r.count.fetch_add(1, Ordering::SeqCst);
            Response::new(full("received"))
        }
    })
    .await;
    (addr, rec)
}

/// Three gateways with the same routes and `[cluster]` section.
struct Replicas {
    gws: Vec<TestGateway>,
    tokens: Arc<TokenServer>,
    api: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
    hooks: Arc<Receiver>,
}

async fn replicas(cluster: &str, hook_delay: Duration) -> Replicas {
    replicas_with(cluster, hook_delay, 3599).await
}

/// [`replicas`] whose token server issues tokens living `expires_in` s.
async fn replicas_with(cluster: &str, hook_delay: Duration, expires_in: u64) -> Replicas {
    let (ts_addr, tokens) = token_server().await;
    tokens.expires_in.store(expires_in, Ordering::SeqCst);
    let (api_addr, api) = header_recorder().await;
    let (hook_addr, hooks) = receiver(hook_delay).await;
    let rest = format!(
        r#"
{cluster}

[credential.zoom_api]
type = "zoom_s2s_oauth"
account_id = "TESTaccountID"
client_id = "TESTclientID"
client_secret = "${{S2S_SECRET}}"
token_url = "http://{ts_addr}/oauth/token"

[webhook.zoom]
type = "zoom"
secret_tokens = ["${{WEBHOOK_SECRET}}"]

[[route]]
name = "zoom-api"
path = "/zoom/*"
upstream = "http://{api_addr}"
authenticate = "none"
inject = [{{ credential = "zoom_api", header = "Authorization" }}]

[[route]]
name = "hooks"
path = "/webhooks/zoom"
methods = ["POST"]
verify_webhook = "zoom"
upstream = "http://{hook_addr}"
"#
    );
    let env: std::collections::HashMap<String, String> = [
        ("S2S_SECRET".to_owned(), S2S_SECRET.to_owned()),
        ("WEBHOOK_SECRET".to_owned(), WEBHOOK_SECRET.to_owned()),
    ]
    .into();
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(TestGateway::start_with(&rest, "", env.clone()).await);
    }
    Replicas {
        gws,
        tokens,
        api,
        hooks,
    }
}

fn cluster_section(url: &str, prefix: &str) -> String {
    format!("[cluster]\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = 200\n")
}

/// A Zoom webhook and the route verifying it, forwarding to `hook_addr`.
fn hook_route(hook_addr: SocketAddr) -> String {
    format!("\n[webhook.zoom]\ntype = \"zoom\"\nsecret_tokens = [\"{WEBHOOK_SECRET}\"]\n\n[[route]]\nname = \"hooks\"\npath = \"/webhooks/zoom\"\nmethods = [\"POST\"]\nverify_webhook = \"zoom\"\nupstream = \"http://{hook_addr}\"\n")
}

/// Posts a signed Zoom event; returns the status and body.
async fn deliver(gw: &TestGateway, body: &str) -> (StatusCode, String) {
    let ts = common::issuer::now().to_string();
    let sig = zoom_webhook_signature(WEBHOOK_SECRET, &ts, body.as_bytes());
    let (s, _, b) = send(
        &gw.h1(),
        "POST",
        &gw.url("/webhooks/zoom"),
        &[
            ("content-type", "application/json"),
            ("x-zm-signature", &sig),
            ("x-zm-request-timestamp", &ts),
        ],
        full(body.to_owned()),
    )
    .await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

fn event(n: &str) -> String {
    format!(
        r#"{{"event":"meeting.started","event_ts":1739923527123,"payload":{{"object":{{"id":"{n}"}}}}}}"#
    )
}

async fn readyz(gw: &TestGateway) -> (StatusCode, serde_json::Value) {
    admin_get(gw.gw.admin_addr.unwrap(), "/readyz").await
}

async fn cluster_errors(gw: &TestGateway) -> f64 {
    metric(
        &scrape(gw.gw.admin_addr.unwrap()).await,
        "meetgate_cluster_store_errors_total",
    )
}

/// One token-injected request per replica (each then holds the token and
/// is ready), then waits until every replica shares through Redis.
async fn warm_up(r: &Replicas) {
    for gw in &r.gws {
        assert_eq!(
            get(&gw.h1(), &gw.url("/zoom/v2/me"), &[]).await.0,
            StatusCode::OK
        );
    }
    wait_for_cluster(&r.gws, "ok").await;
}

async fn wait_for_cluster(gws: &[TestGateway], want: &str) {
    let start = Instant::now();
    for gw in gws {
        loop {
            let (status, body) = readyz(gw).await;
            assert_eq!(status, StatusCode::OK, "the gateway serves: {body}");
            if body["cluster_store"] == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "cluster_store did not become {want} within 5 s: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_make_one_token_request_for_300_cold_requests() {
    let redis = Redis::start().await;
    let r = replicas(&cluster_section(&redis.url(), "t1:"), Duration::ZERO).await;
    // Slow enough that every replica's start-up fetch and all requests
    // below arrive while the one token request is still in flight.
    r.tokens.delay_ms.store(400, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let gw = &r.gws[i % 3];
        let c = if i % 2 == 0 { gw.h2() } else { gw.h1() };
        let url = gw.url(&format!("/zoom/v2/users/{i}"));
        tasks.push(tokio::spawn(async move { get(&c, &url, &[]).await.0 }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        r.tokens.requests.load(Ordering::SeqCst),
        1,
        "exactly one token request across the three replicas"
    );
    {
        let seen = r.api.lock().unwrap();
        assert_eq!(seen.len(), 300);
        assert!(seen
            .iter()
            .all(|(_, h)| h["authorization"] == "Bearer tok-1"));
    }

    // What Redis holds: the token with its expiry under the prefix, never
    // the client secret.
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.starts_with("t1:")), "{keys:?}");
    for k in &keys {
        let v: Option<String> = redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let v = v.unwrap_or_default();
        assert!(
            !v.contains(S2S_SECRET) && !k.contains(S2S_SECRET),
            "{k} = {v}"
        );
        assert!(!v.contains("TESTclientID"), "{k} = {v}");
    }
    let token_key = keys
        .iter()
        .find(|k| k.starts_with("t1:token:"))
        .expect("a token key");
    let stored: serde_json::Value = serde_json::from_str(
        &redis::cmd("GET")
            .arg(token_key)
            .query_async::<String>(&mut conn)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored["access_token"], "tok-1");
    let ttl: i64 = redis::cmd("TTL")
        .arg(token_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        (3000..=3599).contains(&ttl),
        "expires with the token: {ttl}"
    );
    for gw in &r.gws {
        assert_eq!(readyz(gw).await.1["cluster_store"], "ok");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_refreshes_and_the_others_take_its_token() {
    let redis = Redis::start().await;
    // 62 s tokens with the default 60 s margin: due for refresh 2 s after
    // the fetch, on all three replicas at the same moment.
    let r = replicas_with(&cluster_section(&redis.url(), "r1:"), Duration::ZERO, 62).await;
    wait_until("the first token", Duration::from_secs(5), || {
        r.tokens.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    r.tokens.expires_in.store(3599, Ordering::SeqCst);
    wait_until("the refresh", Duration::from_secs(6), || {
        r.tokens.requests.load(Ordering::SeqCst) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        r.tokens.requests.load(Ordering::SeqCst),
        2,
        "one refresh for the three replicas"
    );
    for gw in &r.gws {
        assert_eq!(
            get(&gw.h1(), &gw.url("/zoom/v2/me"), &[]).await.0,
            StatusCode::OK
        );
    }
    let seen = r.api.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|(_, h)| h["authorization"] == "Bearer tok-2"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_forwarded_once_across_replicas() {
    let redis = Redis::start().await;
    let r = replicas(
        &cluster_section(&redis.url(), "w1:"),
        Duration::from_millis(200),
    )
    .await;

    // Delivered through A, replayed to B and C.
    let e1 = event("1001");
    assert_eq!(
        deliver(&r.gws[0], &e1).await,
        (StatusCode::OK, "received".to_owned())
    );
    for gw in &r.gws[1..] {
        let (s, b) = deliver(gw, &e1).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b, r#"{"status":"duplicate"}"#);
    }
    assert_eq!(r.hooks.count.load(Ordering::SeqCst), 1);

    // The same new event at all three at once: forwarded once, the others
    // wait for that delivery and answer duplicate.
    let e2 = event("1002");
    let sends = r.gws.iter().chain(&r.gws).map(|gw| deliver(gw, &e2));
    let answers = futures_util::future::join_all(sends).await;
    let mut received = 0;
    for (s, b) in answers {
        assert_eq!(s, StatusCode::OK);
        if b == "received" {
            received += 1;
        } else {
            assert_eq!(b, r#"{"status":"duplicate"}"#);
        }
    }
    assert_eq!(received, 1);
    assert_eq!(r.hooks.count.load(Ordering::SeqCst), 2);

    // Delivered keys live in Redis with the dedup window as expiry.
    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("w1:webhook:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for k in &keys {
        let v: String = redis::cmd("GET")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(v, "delivered");
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "keys expire with the dedup window");
    }

    // A failed delivery frees the key: the platform's retry through another
    // replica is delivered.
    let e3 = event("1003");
    r.hooks.fail_next.store(true, Ordering::SeqCst);
    assert_eq!(
        deliver(&r.gws[0], &e3).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // At once, not after the 60 s in-flight lease.
    let retry = tokio::time::timeout(Duration::from_secs(5), deliver(&r.gws[1], &e3))
        .await
        .expect("the failed delivery's key was freed");
    assert_eq!(retry.1, "received");
    assert_eq!(deliver(&r.gws[2], &e3).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(r.hooks.count.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_degrades_to_local_stores_and_sharing_resumes() {
    let mut redis = Redis::start().await;
    let r = replicas(&cluster_section(&redis.url(), "o1:"), Duration::ZERO).await;
    warm_up(&r).await;
    assert_eq!(r.tokens.requests.load(Ordering::SeqCst), 1);
    let errors_before = cluster_errors(&r.gws[0]).await;

    redis.kill();
    // No request fails: tokens come from each replica's memory, webhooks
    // are deduplicated per replica.
    for i in 0..30 {
        let gw = &r.gws[i % 3];
        assert_eq!(
            get(&gw.h2(), &gw.url(&format!("/zoom/v2/x{i}")), &[])
                .await
                .0,
            StatusCode::OK
        );
        let (s, b) = deliver(gw, &event(&format!("outage-{i}"))).await;
        assert_eq!((s, b.as_str()), (StatusCode::OK, "received"));
    }
    let (s, b) = deliver(&r.gws[0], &event("outage-0")).await;
    assert_eq!(
        (s, b.as_str()),
        (StatusCode::OK, r#"{"status":"duplicate"}"#),
        "still deduplicated locally"
    );
    wait_for_cluster(&r.gws, "degraded").await;
    assert!(
        cluster_errors(&r.gws[0]).await > errors_before,
        "the degradation is counted"
    );

    redis.restart().await;
    wait_for_cluster(&r.gws, "ok").await;
    let before = r.hooks.count.load(Ordering::SeqCst);
    let e = event("after-restart");
    assert_eq!(deliver(&r.gws[1], &e).await.1, "received");
    assert_eq!(deliver(&r.gws[2], &e).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(deliver(&r.gws[0], &e).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(
        r.hooks.count.load(Ordering::SeqCst),
        before + 1,
        "shared again"
    );
    assert_eq!(
        r.tokens.requests.load(Ordering::SeqCst),
        1,
        "no replica refetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_counts_as_down_and_requests_do_not_wait_for_it() {
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]).await;
    let r = replicas(&cluster_section(&redis.url(), "s1:"), Duration::ZERO).await;
    warm_up(&r).await;
    // Redis stops answering for 3 s (timeout_ms is 200).
    let mut conn = redis.conn().await;
    let sleeper = tokio::spawn(async move {
        let _: redis::RedisResult<String> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(3)
            .query_async(&mut conn)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let (s, b) = deliver(&r.gws[0], &event("slow-1")).await;
    assert_eq!((s, b.as_str()), (StatusCode::OK, "received"));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "bounded by timeout_ms, not by Redis: {:?}",
        started.elapsed()
    );
    let (status, body) = readyz(&r.gws[0]).await;
    assert_eq!(
        (status, body["cluster_store"].as_str()),
        (StatusCode::OK, Some("degraded"))
    );
    sleeper.await.unwrap();
    wait_for_cluster(&r.gws, "ok").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_password_wins_over_the_url_and_stays_out_of_debug_output() {
    let redis = Redis::start_with(&["--requirepass", "right-redis-password"]).await;
    let url = format!("redis://:wrong-url-password@127.0.0.1:{}/0", redis.port);
    let section = format!(
        "[cluster]\nredis_url = \"{url}\"\nredis_password = \"${{REDIS_PASSWORD}}\"\nkey_prefix = \"p1:\"\n"
    );
    let (hook_addr, hooks) = receiver(Duration::ZERO).await;
    let rest = format!("{section}{}", hook_route(hook_addr));
    let env: std::collections::HashMap<String, String> = [(
        "REDIS_PASSWORD".to_owned(),
        "right-redis-password".to_owned(),
    )]
    .into();
    let a = TestGateway::start_with(&rest, "", env.clone()).await;
    let b = TestGateway::start_with(&rest, "", env).await;
    let gws = [a, b];
    wait_for_cluster(&gws, "ok").await;
    let shown = format!("{:?}", gws[0].gw.state.live.load().settings.cluster);
    assert!(shown.contains("key_prefix"), "{shown}");
    assert!(
        !shown.contains("right-redis-password") && !shown.contains("wrong-url-password"),
        "{shown}"
    );
    let e = event("pw");
    assert_eq!(deliver(&gws[0], &e).await.1, "received");
    assert_eq!(deliver(&gws[1], &e).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(hooks.count.load(Ordering::SeqCst), 1);
    let mut conn = redis.conn_as(Some("right-redis-password")).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("p1:webhook:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_trusts_the_outbound_roots() {
    // A private CA and a certificate for 127.0.0.1 (rcgen).
    let certs = Certs::new();
    let (ca, cert, key) = (&certs.ca, &certs.cert, &certs.key);
    let redis = Redis::start_with(&[
        "--tls-port",
        "PORT",
        "--tls-cert-file",
        cert.to_str().unwrap(),
        "--tls-key-file",
        key.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
    ])
    .await;
    let url = format!("rediss://127.0.0.1:{}/0", redis.port);
    let (hook_addr, hooks) = receiver(Duration::ZERO).await;
    let routes = hook_route(hook_addr);
    // Without the private CA among the outbound roots: TLS fails, degraded.
    let untrusted = TestGateway::start(&format!("{}{routes}", cluster_section(&url, "tls:"))).await;
    wait_for_cluster(std::slice::from_ref(&untrusted), "degraded").await;
    // With it ([outbound] ca_file): shared.
    let trusted = format!(
        "{}\n[outbound]\nca_file = \"{}\"\n{routes}",
        cluster_section(&url, "tls:"),
        ca.display()
    );
    let gws = [
        TestGateway::start(&trusted).await,
        TestGateway::start(&trusted).await,
    ];
    wait_for_cluster(&gws, "ok").await;
    let e = event("tls");
    assert_eq!(deliver(&gws[0], &e).await.1, "received");
    assert_eq!(deliver(&gws[1], &e).await.1, r#"{"status":"duplicate"}"#);
    assert_eq!(hooks.count.load(Ordering::SeqCst), 1);
}

#[test]
fn check_refuses_a_bad_redis_url_without_quoting_it() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    for (url, want) in [
        (
            "http://127.0.0.1:6379",
            "must start with redis:// or rediss://",
        ),
        ("redis://:hunter2-secret@[::1/0", "is not a valid"),
        (
            "rediss://:hunter2-secret@127.0.0.1:6379/0#insecure",
            "not supported",
        ),
    ] {
        let config = write_config(
            &certs,
            dir.path(),
            "",
            &format!("\n[cluster]\nredis_url = \"{url}\"\n"),
        );
        let out = Command::new(env!("CARGO_BIN_EXE_meetgate"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains("cluster.redis_url") && text.contains(want),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "the password leaked: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_follows_reloads() {
    let redis = Redis::start().await;
    let route = "\n[[route]]\nname = \"p\"\npath = \"/p\"\nupstream = \"http://127.0.0.1:9\"\nauthenticate = \"none\"\n";
    let gw = TestGateway::start(route).await;
    assert!(readyz(&gw).await.1.get("cluster_store").is_none());
    // Without [cluster] the gauge is absent (not a 0 that would page).
    let store_up = |gw: &TestGateway| {
        let admin = gw.gw.admin_addr.unwrap();
        async move {
            scrape(admin)
                .await
                .lines()
                .filter(|l| l.starts_with("meetgate_cluster_store_up"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(store_up(&gw).await, Vec::<String>::new());
    let generation = gw.generation();
    gw.rewrite(
        &format!("{}{route}", cluster_section(&redis.url(), "rl:")),
        true,
    );
    wait_until("the reload", Duration::from_secs(5), || {
        gw.generation() > generation
    })
    .await;
    wait_for_cluster(std::slice::from_ref(&gw), "ok").await;
    assert_eq!(store_up(&gw).await, ["meetgate_cluster_store_up{} 1"]);
    let generation = gw.generation();
    gw.rewrite(route, true);
    wait_until("the reload", Duration::from_secs(5), || {
        gw.generation() > generation
    })
    .await;
    assert!(readyz(&gw).await.1.get("cluster_store").is_none());
    assert_eq!(store_up(&gw).await, Vec::<String>::new());
}
