//! Limits and upstream failures: 431, slow heads, 502, 504.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::{Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn route(upstream: &str) -> String {
    format!(
        r#"
[limits]
max_header_bytes = 4096
header_read_timeout_ms = 400
upstream_timeout_ms = 500

[[route]]
name = "r"
path = "/*"
upstream = "{upstream}"
authenticate = "none"
"#
    )
}

#[tokio::test]
async fn oversized_heads_are_431() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&route(&format!("http://{up}"))).await;
    let big = "a".repeat(6000);
    for c in [gw.h1(), gw.h2()] {
        let (s, _, b) = get(&c, &gw.url("/x"), &[("x-big", &big)]).await;
        assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(json(&b)["error"], "headers_too_large");
        // Just under the limit passes.
        let (s, _, _) = get(&c, &gw.url("/x"), &[("x-ok", &"a".repeat(3000))]).await;
        assert_eq!(s, StatusCode::OK);
    }
    // A head far past hyper's own buffer is refused by the HTTP stack.
    let huge = "a".repeat(64 * 1024);
    let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    let _ = s
        .write_all(
            format!("GET /x HTTP/1.1\r\nhost: localhost\r\nx-huge: {huge}\r\n\r\n").as_bytes(),
        )
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&route(&format!("http://{up}"))).await;
    let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    s.write_all(b"GET /x HTTP/1.1\r\nhost: local")
        .await
        .unwrap();
    let started = Instant::now();
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "connection still open after 5 s");
    let text = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "cut too early"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_502() {
    // Bind then drop: the port is closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = TestGateway::start(&route(&format!("http://127.0.0.1:{port}"))).await;
    for c in [gw.h1(), gw.h2()] {
        let (s, h, b) = get(&c, &gw.url("/x"), &[]).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY);
        assert_eq!(h["content-type"], "application/json");
        let v = json(&b);
        assert_eq!(v["error"], "upstream_unavailable");
        assert!(
            !v["error_description"]
                .as_str()
                .unwrap()
                .contains("127.0.0.1"),
            "no upstream address leaks"
        );
    }
}

#[tokio::test]
async fn silent_upstream_is_504_within_the_timeout() {
    let up = upstream(|_req| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(empty())
    })
    .await;
    let gw = TestGateway::start(&route(&format!("http://{up}"))).await;
    for c in [gw.h1(), gw.h2()] {
        let started = Instant::now();
        let (s, _, b) = get(&c, &gw.url("/x"), &[]).await;
        assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(json(&b)["error"], "upstream_timeout");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}

#[tokio::test]
async fn upstream_errors_pass_through_unchanged() {
    let up = upstream(|_req| async {
        let mut r = Response::new(full("teapot body"));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
        r
    })
    .await;
    let gw = TestGateway::start(&route(&format!("http://{up}"))).await;
    let (s, h, b) = get(&gw.h1(), &gw.url("/x"), &[]).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h["x-upstream"], "yes");
    assert_eq!(&b[..], b"teapot body");
}
