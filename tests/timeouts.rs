//! Responses that stop moving and HTTP/2 connections that stay without a
//! request are cut: `send_timeout_ms`, `upstream_body_timeout_ms`,
//! `header_read_timeout_ms` on HTTP/2, `http2_idle_timeout_ms`.
//!
//! The upstream stand-in counts its response bodies dropped before their
//! end: that is the gateway letting go of the upstream connection.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::h2::*;
use common::*;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame as BodyFrame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HEADER_READ_TIMEOUT: Duration = Duration::from_millis(800);
const SEND_TIMEOUT: Duration = Duration::from_millis(1000);
const UPSTREAM_BODY_TIMEOUT: Duration = Duration::from_millis(1200);
const IDLE_TIMEOUT: Duration = Duration::from_millis(2000);
/// Scheduling and test-side slack on top of a bound (the gateway's
/// HTTP/1.1 checks run on a 200 ms tick; the GOAWAY grace is 1 s).
const SLACK: Duration = Duration::from_millis(3000);

/// How the stand-in's response body goes.
#[derive(Clone, Copy)]
enum Pace {
    /// 64 KiB chunks as fast as they are taken, forever.
    Endless,
    /// One chunk, then nothing, forever.
    StallAfterOne,
    /// A 1 KiB chunk every 200 ms, 15 of them, then the end.
    Steady,
}

/// A response body paced by [`Pace`] that counts, when dropped before its
/// end, in `cut`.
struct Paced {
    pace: Pace,
    sent: u32,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
    cut: Arc<AtomicUsize>,
}

impl Body for Paced {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let chunk = match this.pace {
            Pace::Endless => vec![b'e'; 64 * 1024],
            Pace::StallAfterOne if this.sent == 0 => vec![b's'; 1024],
            Pace::StallAfterOne => return Poll::Pending,
            Pace::Steady if this.sent == 15 => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Pace::Steady => {
                let timer = this.timer.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(Duration::from_millis(200)))
                });
                std::task::ready!(timer.as_mut().poll(cx));
                this.timer = None;
                vec![b'p'; 1024]
            }
        };
        this.sent += 1;
        Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from(chunk)))))
    }
}

impl Drop for Paced {
    fn drop(&mut self) {
        if !self.ended {
            self.cut.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An upstream answering `/endless`, `/stall`, `/steady` with a [`Paced`]
/// body and anything else with "ok"; returns its address and the count of
/// bodies cut.
async fn paced_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let cut = Arc::new(AtomicUsize::new(0));
    let c = cut.clone();
    let addr = upstream(move |req: Request<Incoming>| {
        let cut = c.clone();
        async move {
            let pace = match req.uri().path() {
                "/endless" => Pace::Endless,
                "/stall" => Pace::StallAfterOne,
                "/steady" => Pace::Steady,
                _ => return Response::new(full("ok")),
            };
            Response::new(
                Paced {
                    pace,
                    sent: 0,
                    timer: None,
                    ended: false,
                    cut,
                }
                .boxed(),
            )
        }
    })
    .await;
    (addr, cut)
}

async fn gateway(up: std::net::SocketAddr) -> TestGateway {
    TestGateway::start_with(
        &format!(
            r#"
[limits]
header_read_timeout_ms = {}
send_timeout_ms = {}
upstream_body_timeout_ms = {}
http2_idle_timeout_ms = {}

[[route]]
name = "r"
path = "/*"
upstream = "http://{up}"
authenticate = "none"
"#,
            HEADER_READ_TIMEOUT.as_millis(),
            SEND_TIMEOUT.as_millis(),
            UPSTREAM_BODY_TIMEOUT.as_millis(),
            IDLE_TIMEOUT.as_millis(),
        ),
        "plain_listen = \"127.0.0.1:0\"",
        HashMap::new(),
    )
    .await
}

/// Waits until `cut` reaches `n`; returns how long that took.
async fn wait_cut(cut: &AtomicUsize, n: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    wait_until(&format!("{n} upstream bodies dropped"), limit, || {
        cut.load(Ordering::SeqCst) >= n
    })
    .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_stops_reading_is_cut_and_the_upstream_let_go() {
    let (up, cut) = paced_upstream().await;
    let gw = gateway(up).await;
    let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    s.write_all(b"GET /endless HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Reads nothing: the socket buffers fill, then the gateway's.
    let took = wait_cut(&cut, 1, SEND_TIMEOUT + SLACK + Duration::from_secs(5)).await;
    assert!(took >= SEND_TIMEOUT, "cut after {took:?}, before the bound");
    let (_, closed) = read_until_closed(&mut s, SLACK).await;
    assert!(closed, "the client connection is still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_the_client_grants_no_window_are_reset_and_the_upstream_let_go() {
    let (up, cut) = paced_upstream().await;
    let gw = gateway(up).await;
    let mut s = TcpStream::connect(gw.gw.plain_addr.unwrap()).await.unwrap();
    let mut out = PREFACE.to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE = 0: no stream may send a DATA byte.
    out.extend(settings(&[(0x4, 0)]));
    let streams = [1u32, 3, 5, 7, 9];
    for id in streams {
        out.extend(h2_frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block("http", "/endless"),
        ));
    }
    s.write_all(&out).await.unwrap();
    let started = Instant::now();
    let mut reset = Vec::new();
    let mut answered = Vec::new();
    while reset.len() < streams.len() {
        let f = read_frame(&mut s, SEND_TIMEOUT + SLACK)
            .await
            .unwrap_or_else(|()| panic!("streams {reset:?} reset, the others still open"))
            .expect("the connection stays open");
        match f.kind {
            SETTINGS if f.flags & ACK == 0 => s.write_all(&settings_ack()).await.unwrap(),
            HEADERS => answered.push(f.stream),
            RST_STREAM => {
                assert_eq!(f.error_code(), 0x8, "CANCEL");
                reset.push(f.stream);
            }
            GOAWAY => panic!("GOAWAY: one stalled stream must not end the others"),
            _ => {}
        }
    }
    let took = started.elapsed();
    assert!(
        took >= SEND_TIMEOUT,
        "reset after {took:?}, before the bound"
    );
    reset.sort_unstable();
    assert_eq!(reset, streams);
    answered.sort_unstable();
    assert_eq!(answered, streams, "every response head went out first");
    wait_cut(&cut, streams.len(), SLACK).await;
}

fn settings_ack() -> Vec<u8> {
    h2_frame(SETTINGS, ACK, 0, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_stalls_mid_body_is_cut_on_both_protocols() {
    let (up, cut) = paced_upstream().await;
    let gw = gateway(up).await;
    for (n, client) in [gw.h1(), gw.h2()].into_iter().enumerate() {
        let resp = client
            .request(Request::get(gw.url("/stall")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let started = Instant::now();
        let body = tokio::time::timeout(UPSTREAM_BODY_TIMEOUT + SLACK, resp.into_body().collect())
            .await
            .expect("the stalled body still hangs");
        assert!(body.is_err(), "a cut body must not look complete");
        let took = started.elapsed();
        assert!(
            took >= UPSTREAM_BODY_TIMEOUT - Duration::from_millis(100),
            "cut after {took:?}"
        );
        wait_cut(&cut, n + 1, SLACK).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_upstream_is_not_cut() {
    let (up, cut) = paced_upstream().await;
    let gw = gateway(up).await;
    for client in [gw.h1(), gw.h2()] {
        // 15 chunks 200 ms apart: 3 s in all, far past both bounds, but
        // never a pause as long as either.
        let (s, _, body) = get(&client, &gw.url("/steady"), &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body.len(), 15 * 1024);
    }
    assert_eq!(cut.load(Ordering::SeqCst), 0);
}

/// What a raw client writes while it waits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    /// Nothing at all.
    Mute,
    /// SETTINGS acknowledgements only.
    Quiet,
    /// Acknowledges SETTINGS and PINGs, and pings every 200 ms: looks alive.
    Pinging,
}

/// Reads frames until the server closes, writing what `peer` does. Returns
/// when GOAWAY came and when the connection closed, measured from
/// `started`.
async fn until_closed(
    s: &mut TcpStream,
    started: Instant,
    peer: Peer,
    limit: Duration,
) -> (Option<Duration>, Duration) {
    let answer_pings = peer == Peer::Pinging;
    let mut goaway = None;
    let mut next_ping = Instant::now();
    loop {
        assert!(
            started.elapsed() < limit,
            "still open after {limit:?} (GOAWAY at {goaway:?})"
        );
        if answer_pings && Instant::now() >= next_ping {
            let _ = s.write_all(&h2_frame(PING, 0, 0, &[7; 8])).await;
            next_ping = Instant::now() + Duration::from_millis(200);
        }
        let f = match read_frame(s, Duration::from_millis(200)).await {
            Err(()) => continue,
            Ok(None) => return (goaway, started.elapsed()),
            Ok(Some(f)) => f,
        };
        match f.kind {
            SETTINGS if f.flags & ACK == 0 && peer != Peer::Mute => {
                let _ = s.write_all(&settings_ack()).await;
            }
            PING if f.flags & ACK == 0 && answer_pings => {
                let _ = s.write_all(&h2_frame(PING, ACK, 0, &f.payload)).await;
            }
            GOAWAY => {
                goaway.get_or_insert(started.elapsed());
            }
            _ => {}
        }
    }
}

async fn h2c(gw: &TestGateway, first: &[u8]) -> (TcpStream, Instant) {
    let mut s = TcpStream::connect(gw.gw.plain_addr.unwrap()).await.unwrap();
    let started = Instant::now();
    let mut out = PREFACE.to_vec();
    out.extend(settings(&[]));
    out.extend_from_slice(first);
    s.write_all(&out).await.unwrap();
    (s, started)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_without_a_request_is_closed_at_header_read_timeout() {
    let (up, _) = paced_upstream().await;
    let gw = gateway(up).await;
    // Silent after SETTINGS, or pinging and answering pings: the first
    // request head is what counts.
    for peer in [Peer::Quiet, Peer::Pinging] {
        let (mut s, started) = h2c(&gw, &[]).await;
        let (goaway, closed) =
            until_closed(&mut s, started, peer, HEADER_READ_TIMEOUT + SLACK).await;
        let goaway = goaway.expect("GOAWAY before closing");
        assert!(
            goaway >= HEADER_READ_TIMEOUT - Duration::from_millis(100),
            "GOAWAY after {goaway:?}"
        );
        assert!(closed >= goaway);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_http2_header_block_is_closed_at_header_read_timeout() {
    let (up, cut) = paced_upstream().await;
    let gw = gateway(up).await;
    // HEADERS without END_HEADERS, and no CONTINUATION ever (nor any other
    // frame: mid header block, anything else is a protocol error).
    let block = get_block("http", "/ok");
    let (mut s, started) = h2c(&gw, &h2_frame(HEADERS, END_STREAM, 1, &block[..10])).await;
    let (goaway, closed) =
        until_closed(&mut s, started, Peer::Mute, HEADER_READ_TIMEOUT + SLACK).await;
    assert!(goaway.is_some(), "closed without GOAWAY after {closed:?}");
    assert!(closed >= HEADER_READ_TIMEOUT - Duration::from_millis(100));
    assert_eq!(cut.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_answering_pings_gets_goaway_at_the_idle_bound() {
    let (up, _) = paced_upstream().await;
    let gw = gateway(up).await;
    let get = h2_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &get_block("http", "/ok"),
    );
    let (mut s, _) = h2c(&gw, &get).await;
    // The request is answered; from its end the connection is idle.
    loop {
        let f = read_frame(&mut s, SLACK).await.unwrap().unwrap();
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            s.write_all(&settings_ack()).await.unwrap();
        }
        if f.stream == 1 && f.flags & END_STREAM != 0 {
            break;
        }
    }
    let idle_from = Instant::now();
    let (goaway, closed) =
        until_closed(&mut s, idle_from, Peer::Pinging, IDLE_TIMEOUT + SLACK).await;
    let goaway = goaway.expect("GOAWAY before closing");
    assert!(
        goaway >= IDLE_TIMEOUT - Duration::from_millis(100),
        "GOAWAY after {goaway:?}, before the idle bound"
    );
    // The client acknowledged the GOAWAY's PING: closed at once.
    assert!(closed - goaway < Duration::from_millis(900), "{closed:?}");
}
