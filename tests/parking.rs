//! Idle HTTP/1.1 keep-alive connections are parked (src/server/h1.rs): they
//! give hyper's buffers back while quiet, and the client sees nothing of it.
//! Whether a connection is parked is read from `meetgate_connections_parked`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// An echo route over TLS and plaintext listeners.
async fn gateway(header_read_timeout_ms: u64) -> TestGateway {
    let up = echo_upstream().await;
    TestGateway::start_with(
        &format!(
            r#"
[limits]
header_read_timeout_ms = {header_read_timeout_ms}

[[route]]
name = "echo"
path = "/echo/*"
upstream = "http://{up}"
authenticate = "none"
"#
        ),
        "plain_listen = \"127.0.0.1:0\"",
        HashMap::new(),
    )
    .await
}

fn request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").into_bytes()
}

/// Sends `path` and checks the echo answered it on a kept-alive connection.
async fn roundtrip(s: &mut (impl AsyncRead + AsyncWrite + Unpin), path: &str) {
    s.write_all(&request(path)).await.unwrap();
    s.flush().await.unwrap();
    let (head, body) = read_response(s).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(
        json(&body)["path"],
        path,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

async fn plain(gw: &TestGateway) -> TcpStream {
    let addr: SocketAddr = gw.gw.plain_addr.unwrap();
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_parked_and_serve_again_on_the_same_connection() {
    let gw = gateway(30_000).await;
    let mut tls = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    let mut tcp = plain(&gw).await;
    // A fresh connection that has sent nothing is not parked (hyper lets a
    // connection go only between requests).
    let mut fresh = plain(&gw).await;
    roundtrip(&mut tls, "/echo/1").await;
    roundtrip(&mut tcp, "/echo/1").await;
    wait_parked(&gw, 2.0).await;
    for round in 2..5 {
        // Woken by the request, served by a new hyper connection, parked
        // again once quiet.
        roundtrip(&mut tls, &format!("/echo/{round}")).await;
        roundtrip(&mut tcp, &format!("/echo/{round}")).await;
        wait_parked(&gw, 2.0).await;
    }
    // Two requests in one write while parked: both answered, in order.
    let mut two = request("/echo/a");
    two.extend(request("/echo/b"));
    tcp.write_all(&two).await.unwrap();
    for path in ["/echo/a", "/echo/b"] {
        let (head, body) = read_response(&mut tcp).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert_eq!(json(&body)["path"], path);
    }
    // The fresh connection still works and was never counted.
    roundtrip(&mut fresh, "/echo/fresh").await;
    wait_parked(&gw, 3.0).await;
    // A client closing a parked connection releases it.
    drop(tls);
    drop(tcp);
    drop(fresh);
    wait_parked(&gw, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_begun_while_parked_is_completed_later() {
    let gw = gateway(30_000).await;
    for tls in [true, false] {
        let mut s: Box<dyn Stream> = if tls {
            Box::new(raw_tls(gw.gw.tls_addr, &gw.certs).await)
        } else {
            Box::new(plain(&gw).await)
        };
        roundtrip(&mut s, "/echo/first").await;
        wait_parked(&gw, 1.0).await;
        // Half a head wakes the connection; the rest comes after more than
        // two park periods, and the request is served whole.
        let req = request("/echo/split");
        let (a, b) = req.split_at(12);
        s.write_all(a).await.unwrap();
        s.flush().await.unwrap();
        wait_parked(&gw, 0.0).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        s.write_all(b).await.unwrap();
        s.flush().await.unwrap();
        let (head, body) = read_response(&mut s).await;
        assert!(head.starts_with("http/1.1 200"), "tls={tls}: {head}");
        // Still keep-alive: a connection is never let go mid-request.
        assert!(!head.contains("connection: close"), "tls={tls}: {head}");
        assert_eq!(json(&body)["path"], "/echo/split");
        roundtrip(&mut s, "/echo/after").await;
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_keep_the_header_read_timeout() {
    // Idle keep-alive connections close at header_read_timeout from the
    // end of their last response, parked or not; a client trickling a head
    // into a parked connection gets no more time than that.
    let gw = gateway(1_000).await;
    let mut idle = plain(&gw).await;
    let mut trickle = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    roundtrip(&mut idle, "/echo/1").await;
    roundtrip(&mut trickle, "/echo/1").await;
    let idle_from = Instant::now();
    wait_parked(&gw, 2.0).await;
    let trickled = async {
        let (mut r, mut w) = tokio::io::split(trickle);
        let writer = async {
            for b in request("/echo/never") {
                if w.write_all(&[b]).await.is_err() || w.flush().await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            std::future::pending::<()>().await
        };
        tokio::select! {
            (_, closed) = read_until_closed(&mut r, Duration::from_secs(4)) => closed.then(|| idle_from.elapsed()),
            () = writer => unreachable!(),
        }
    };
    let idle_closed = async {
        let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(4)).await;
        closed.then(|| idle_from.elapsed())
    };
    let (idle_closed, trickle_closed) = tokio::join!(idle_closed, trickled);
    for (what, closed) in [("idle", idle_closed), ("trickling", trickle_closed)] {
        let closed = closed.unwrap_or_else(|| panic!("{what}: still open after 4 s"));
        assert!(
            closed >= Duration::from_millis(900),
            "{what}: closed {closed:?} after going idle, before header_read_timeout"
        );
        assert!(
            closed < Duration::from_millis(2_000),
            "{what}: closed only {closed:?} after going idle"
        );
    }
    wait_parked(&gw, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_parked_connections_at_once() {
    let gw = gateway(30_000).await;
    let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    roundtrip(&mut s, "/echo/1").await;
    wait_parked(&gw, 1.0).await;
    let started = Instant::now();
    gw.gw.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?} on a parked connection",
        started.elapsed()
    );
    assert!(
        read_until_closed(&mut s, Duration::from_secs(2)).await.1,
        "the parked connection is closed"
    );
}
