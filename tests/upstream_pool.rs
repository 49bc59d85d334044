//! Keep-alive connections to plain-HTTP upstreams (src/pipeline/pool.rs):
//! reused across requests, never reused before their response body ended,
//! not reused once the upstream closed them.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream counting the TCP connections it accepted. `/small` answers
/// "ok", `/empty` 204, `/big` 8 MiB in 64 KiB chunks. With `idle_close`,
/// it closes keep-alive connections idle that long.
async fn counting_upstream(idle_close: Option<Duration>) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_counting(l, idle_close)
}

fn serve_counting(
    l: tokio::net::TcpListener,
    idle_close: Option<Duration>,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let resp = match req.uri().path() {
                        "/empty" => Response::builder()
                            .status(StatusCode::NO_CONTENT)
                            .body(empty())
                            .unwrap(),
                        "/big" => {
                            let chunks = futures_util::stream::iter((0..128).map(|_| {
                                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![7u8; 65536])))
                            }));
                            Response::new(StreamBody::new(chunks).map_err(|e| match e {}).boxed())
                        }
                        _ => Response::new(full("ok")),
                    };
                    Ok::<_, Infallible>(resp)
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                if let Some(t) = idle_close {
                    b.timer(TokioTimer::new()).header_read_timeout(t);
                }
                let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    (addr, accepted)
}

async fn gateway(up: SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[[route]]
name = "up"
path = "/up/*"
upstream = "http://{up}"
strip_prefix = "/up"
authenticate = "none"
"#
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_across_requests() {
    let (up, accepted) = counting_upstream(None).await;
    let gw = gateway(up).await;
    let client = gw.h1();
    for _ in 0..30 {
        let (s, _, b) = get(&client, &gw.url("/up/small"), &[]).await;
        assert_eq!((s, b.as_ref()), (StatusCode::OK, &b"ok"[..]));
    }
    // Bodiless answers give their connection back too.
    for _ in 0..10 {
        let (s, _, _) = get(&client, &gw.url("/up/empty"), &[]).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection, kept alive"
    );
    // 8 at a time: no more connections than requests in flight.
    let h2 = gw.h2();
    let url = gw.url("/up/small");
    for _ in 0..5 {
        let batch = (0..8).map(|_| get(&h2, &url, &[]));
        for (s, _, _) in futures_util::future::join_all(batch).await {
            assert_eq!(s, StatusCode::OK);
        }
    }
    let n = accepted.load(Ordering::SeqCst);
    assert!(n <= 9, "{n} upstream connections for 8 concurrent requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_upstream_closed_while_idle_is_not_reused() {
    let (up, accepted) = counting_upstream(Some(Duration::from_millis(150))).await;
    let gw = gateway(up).await;
    let client = gw.h1();
    for round in 1..=3 {
        let (s, _, b) = get(&client, &gw.url("/up/small"), &[]).await;
        assert_eq!(
            (s, b.as_ref()),
            (StatusCode::OK, &b"ok"[..]),
            "round {round}"
        );
        // The upstream drops the idle connection meanwhile.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_abandoned_mid_body_does_not_give_its_connection_back() {
    let (up, accepted) = counting_upstream(None).await;
    let gw = gateway(up).await;
    // Read part of an 8 MiB answer, then hang up.
    let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    s.write_all(b"GET /up/big HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    while got < 256 * 1024 {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    drop(s);
    // The next requests get complete answers, on a new connection: the
    // half-read one could not carry another exchange.
    let client = gw.h1();
    for _ in 0..3 {
        let (s, _, b) = tokio::time::timeout(
            Duration::from_secs(5),
            get(&client, &gw.url("/up/small"), &[]),
        )
        .await
        .expect("answered within 5 s");
        assert_eq!((s, b.as_ref()), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A body read to its end gives the connection back.
    let (s, _, b) = get(&client, &gw.url("/up/big"), &[]).await;
    assert_eq!((s, b.len()), (StatusCode::OK, 8 << 20));
    let (s, _, _) = get(&client, &gw.url("/up/small"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_literal_upstream_is_reached_and_pooled() {
    let Ok(l) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    };
    let (up, accepted) = serve_counting(l, None);
    let gw = gateway(up).await;
    let client = gw.h1();
    for _ in 0..3 {
        let (s, _, b) = get(&client, &gw.url("/up/small"), &[]).await;
        assert_eq!((s, b.as_ref()), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}
