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
