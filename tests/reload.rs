//! Live reload in-process: file watching (in-place write and atomic rename),
//! broken files keeping the old snapshot, in-flight requests keeping theirs.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;

fn routes(up: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "\n[[route]]\nname = \"a\"\npath = \"/a/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n{extra}"
    )
}

fn route_b(up: std::net::SocketAddr) -> String {
    format!("\n[[route]]\nname = \"b\"\npath = \"/b/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n")
}

#[tokio::test]
async fn new_route_applies_within_two_seconds_for_writes_and_renames() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&routes(up, "")).await;
    let c = gw.h1();
    assert_eq!(get(&c, &gw.url("/b/x"), &[]).await.0, StatusCode::NOT_FOUND);

    for atomic in [false, true] {
        let before = gw.generation();
        let extra = if atomic { String::new() } else { route_b(up) };
        gw.rewrite(&routes(up, &extra), atomic);
        wait_until("reload", Duration::from_secs(2), || {
            gw.generation() > before
        })
        .await;
        let expected = if atomic {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        };
        assert_eq!(
            get(&c, &gw.url("/b/x"), &[]).await.0,
            expected,
            "atomic={atomic}"
        );
    }
}

#[tokio::test]
async fn broken_reloads_keep_the_old_routes() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&routes(up, "")).await;
    let c = gw.h1();
    let generation = gw.generation();
    let broken = [
        "[[route]\nname = ".to_owned(),                                   // syntax
        routes(up, "typo_key = 1\n"),                                     // unknown key
        routes(up, "\n[credential.x]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"${MISSING_SECRET}\"\n"),
        format!("{}\n[[route]]\nname = \"c\"\npath = \"/c\"\nupstream = \"http://{up}\"\n", routes(up, "")), // no authenticate
    ];
    for (i, text) in broken.iter().enumerate() {
        let failed = gw.reloads_failed();
        gw.rewrite(text, i % 2 == 0);
        wait_until("failed reload", Duration::from_secs(2), || {
            gw.reloads_failed() > failed
        })
        .await;
        assert_eq!(gw.generation(), generation, "case {i} must not apply");
        assert_eq!(
            get(&c, &gw.url("/a/x"), &[]).await.0,
            StatusCode::OK,
            "case {i}: old route serves"
        );
    }
    // The next good file applies.
    gw.rewrite(&routes(up, &route_b(up)), true);
    wait_until("good reload", Duration::from_secs(2), || {
        gw.generation() > generation
    })
    .await;
    assert_eq!(get(&c, &gw.url("/b/x"), &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn reload_rereads_certificates() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&routes(up, "")).await;
    // New certificates from a different CA replace the files in place.
    let fresh = meetgate::tls::generate_dev_certs(&["localhost", "127.0.0.1"]).unwrap();
    std::fs::write(&gw.certs.cert, &fresh.chain_pem).unwrap();
    std::fs::write(&gw.certs.key, &fresh.key_pem).unwrap();
    let before = gw.generation();
    assert!(gw.gw.reload().await);
    assert!(gw.generation() > before);
    // The old CA no longer verifies new connections; the new one does.
    assert!(gw
        .h1()
        .request(http::Request::get(gw.url("/a/x")).body(empty()).unwrap())
        .await
        .is_err());
    let ca_dir = tempfile::tempdir().unwrap();
    std::fs::write(ca_dir.path().join("ca.pem"), &fresh.ca_pem).unwrap();
    let c = client_with_ca(&ca_dir.path().join("ca.pem"));
    assert_eq!(get(&c, &gw.url("/a/x"), &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn in_flight_requests_finish_on_their_snapshot() {
    let (release, rx) = tokio::sync::oneshot::channel::<()>();
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel::<()>();
    let gates = std::sync::Arc::new(tokio::sync::Mutex::new(Some((rx, arrived_tx))));
    let up = upstream(move |_req| {
        let gates = gates.clone();
        async move {
            if let Some((rx, arrived_tx)) = gates.lock().await.take() {
                let _ = arrived_tx.send(());
                let _ = rx.await;
            }
            http::Response::new(full("slow answer"))
        }
    })
    .await;
    let gw = TestGateway::start(&routes(up, "")).await;
    let c = gw.h1();
    let url = gw.url("/a/slow");
    let slow = tokio::spawn(async move { get(&c, &url, &[]).await });
    arrived.await.unwrap();
    // Remove route "a" while the request is in flight.
    let before = gw.generation();
    gw.rewrite(&route_b(up), true);
    wait_until("reload", Duration::from_secs(2), || {
        gw.generation() > before
    })
    .await;
    release.send(()).unwrap();
    let (s, _, b) = slow.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&b[..], b"slow answer");
    assert_eq!(
        get(&gw.h1(), &gw.url("/a/slow"), &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_keep_alive_connection_survives_a_reload() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // An upstream counting the connections it accepts.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(full("ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let gw = TestGateway::start(&routes(up, "")).await;
    let c = gw.h1();
    assert_eq!(get(&c, &gw.url("/a/x"), &[]).await.0, StatusCode::OK);
    let before = gw.generation();
    let other = echo_upstream().await;
    gw.rewrite(&routes(up, &route_b(other)), false);
    wait_until("reload", Duration::from_secs(5), || {
        gw.generation() > before
    })
    .await;
    assert_eq!(get(&c, &gw.url("/a/x"), &[]).await.0, StatusCode::OK);
    assert_eq!(get(&c, &gw.url("/b/x"), &[]).await.0, StatusCode::OK);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the reload dropped the upstream keep-alive connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_outbound_ca_file_reaches_running_jwks_fetchers_and_token_sources() {
    use common::issuer::{Issuer, SigningKey};
    use common::token_server::{token_server, S2S_SECRET};
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let issuer_addr: std::net::SocketAddr =
        issuer.url.trim_start_matches("http://").parse().unwrap();
    let (ts_addr, _ts) = token_server().await;
    // The issuer and the token endpoint behind TLS from a CA the gateway
    // does not trust at first.
    let platform = Certs::new();
    let unrelated = Certs::new();
    let jwks = tls_front(issuer_addr, &platform).await;
    let tokens = tls_front(ts_addr, &platform).await;
    let up = echo_upstream().await;
    let config = |ca: &std::path::Path| {
        format!(
            r#"
[outbound]
ca_file = "{ca}"

[identity.corp]
issuer = "{iss}"
jwks_uri = "https://localhost:{jp}/jwks"
audiences = ["api://meetings"]
algorithms = ["ES256"]

[credential.zoom_api]
type = "zoom_s2s_oauth"
account_id = "TESTaccountID"
client_id = "TESTclientID"
client_secret = "{S2S_SECRET}"
token_url = "https://localhost:{tp}/oauth/token"

[[route]]
name = "api"
path = "/api/*"
upstream = "http://{up}"
authenticate = "corp"

[[route]]
name = "zoom"
path = "/zoom/*"
upstream = "http://{up}"
authenticate = "none"
inject = [{{ credential = "zoom_api", header = "Authorization" }}]
"#,
            ca = ca.display(),
            iss = issuer.url,
            jp = jwks.port(),
            tp = tokens.port(),
        )
    };
    let gw = TestGateway::start(&config(&unrelated.ca)).await;
    let c = gw.h1();
    let token = key.sign(&issuer.claims("alice", serde_json::json!({})));
    let auth = format!("Bearer {token}");
    let statuses = || async {
        let api = get(&c, &gw.url("/api/x"), &[("authorization", &auth)])
            .await
            .0;
        let zoom = get(&c, &gw.url("/zoom/x"), &[]).await.0;
        (api, zoom)
    };
    assert_eq!(
        statuses().await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE
        )
    );

    let before = gw.generation();
    gw.rewrite(&config(&platform.ca), true);
    wait_until("reload", Duration::from_secs(5), || {
        gw.generation() > before
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = statuses().await;
        if now == (StatusCode::OK, StatusCode::OK) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {now:?} after the new ca_file applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
