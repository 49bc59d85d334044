//! Faults around the gateway (issue #8, "hardening"): issuers, upstreams and
//! token endpoints that hang, fail, reset or answer garbage; clients that are
//! slow, idle by the thousand or exhaust file descriptors; a stream of broken
//! configuration files under traffic. Real TLS, real servers on ephemeral
//! loopback ports, real signing keys; one behaviour per test. Cases already
//! pinned elsewhere (an issuer answering 500 at start or after it, an
//! unreachable or silent upstream, a token endpoint answering 500 at start, a
//! partial request head) are not repeated here.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::issuer::{Issuer, SigningKey};
use common::*;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

// === helpers ===

/// A TLS connection offering exactly `alpn`.
async fn tls_with_alpn(
    addr: SocketAddr,
    certs: &Certs,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(certs.client_tls(&[alpn])));
    tls.connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// GET `path` with a bearer token; returns status, headers and JSON (or
/// null).
async fn bearer_get(
    gw: &TestGateway,
    path: &str,
    token: &str,
) -> (StatusCode, http::HeaderMap, Value) {
    let (s, h, b) = get(
        &gw.h1(),
        &gw.url(path),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    let v = serde_json::from_slice(&b).unwrap_or(Value::Null);
    (s, h, v)
}

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn proc_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after "(comm)": state is the first, utime the 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_sec() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// A `[[route]]` proxying everything under `/x` to `up` without
/// authentication.
fn open_route(up: SocketAddr) -> String {
    format!("\n[[route]]\nname = \"x\"\npath = \"/x/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n")
}

/// A config file for the real binary: `[limits]` lines (may be empty) and
/// the open route to `up`, next to a per-run CA. Keep the directory.
fn binary_config(up: SocketAddr, limits: &str) -> (Certs, tempfile::TempDir, std::path::PathBuf) {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let limits = if limits.is_empty() {
        String::new()
    } else {
        format!("[limits]\n{limits}\n")
    };
    let config = write_config(
        &certs,
        dir.path(),
        "",
        &format!("{limits}{}", open_route(up)),
    );
    (certs, dir, config)
}

/// An upstream answering "ok" to everything.
async fn ok_upstream() -> SocketAddr {
    upstream(|_req| async { Response::new(full("ok")) }).await
}

// === issuers ===

/// A gateway with a bearer route `/api/*` for the issuer and a public route
/// `/pub`.
async fn bearer_gateway(issuer: &Issuer, identity_extra: &str) -> TestGateway {
    let up = echo_upstream().await;
    TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
{identity_extra}

[[route]]
name = "api"
path = "/api/*"
upstream = "http://{up}"
authenticate = "corp"

[[route]]
name = "pub"
path = "/pub"
upstream = "http://{up}"
authenticate = "none"
"#,
        iss = issuer.url
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_issuer_holds_up_no_known_kid_and_unknown_kid_refetches_are_bounded() {
    let key = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let gw = bearer_gateway(&issuer, "jwks_refresh_secs = 1\njwks_max_stale_secs = 60").await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    let fresh = |sub: &str| key.sign(&issuer.claims(sub, json!({})));
    assert_eq!(
        bearer_get(&gw, "/api/a", &fresh("a")).await.0,
        StatusCode::OK
    );

    // The issuer stops answering: the next background refresh hangs there.
    issuer.hang.send_replace(true);
    wait_until(
        "a refresh hanging at the issuer",
        Duration::from_secs(5),
        || issuer.hung.load(Ordering::SeqCst) >= 1,
    )
    .await;
    // A token naming a kid the gateway has never seen makes it refetch; that
    // refetch hangs too.
    let unknown = key.sign_raw(
        &json!({ "alg": "RS256", "typ": "JWT", "kid": "rotated-2" }),
        &issuer.claims("u", json!({})),
        Algorithm::RS256,
    );
    let started = Instant::now();
    let (c, url) = (gw.h1(), gw.url("/api/unknown"));
    let pending = tokio::spawn(async move {
        let (s, _, b) = get(&c, &url, &[("authorization", &format!("Bearer {unknown}"))]).await;
        (
            s,
            serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
        )
    });
    wait_until(
        "the refetch hanging at the issuer",
        Duration::from_secs(5),
        || issuer.hung.load(Ordering::SeqCst) >= 2,
    )
    .await;

    // Meanwhile tokens with the known kid (fresh ones, so nothing comes from
    // the verified-token cache) are verified with the cached keys at once.
    for i in 0..10 {
        let t = Instant::now();
        let (s, _, v) = bearer_get(&gw, "/api/b", &fresh(&format!("known-{i}"))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "a known-kid request took {:?} while the issuer hangs",
            t.elapsed()
        );
    }
    assert!(
        !pending.is_finished(),
        "the unknown-kid request should still be waiting for its refetch"
    );

    // The refetch is bounded by the fetch timeout: the request is answered
    // (401 unknown_kid: the issuer is down) instead of hanging with it.
    let (s, v) = pending.await.unwrap();
    let took = started.elapsed();
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"], "unknown_kid");
    assert!(
        took < Duration::from_secs(8),
        "refetch not bounded: {took:?}"
    );
    issuer.hang.send_replace(false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_hanging_at_start_delays_neither_the_start_nor_answers_past_the_fetch_bound() {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    issuer.hang.send_replace(true);
    let started = Instant::now();
    let gw = bearer_gateway(&issuer, "algorithms = [\"ES256\"]\njwks_refresh_secs = 1").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "start waited for the issuer: {:?}",
        started.elapsed()
    );
    wait_until("the first fetch hanging", Duration::from_secs(5), || {
        issuer.hung.load(Ordering::SeqCst) >= 1
    })
    .await;
    // Routes that do not need the issuer serve at once.
    let t = Instant::now();
    assert_eq!(get(&gw.h1(), &gw.url("/pub"), &[]).await.0, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let (s, r) = admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r["not_ready"].to_string().contains("corp"), "{r}");

    // A bearer route answers 503 keys_unavailable once the fetch gives up.
    let token = key.sign(&issuer.claims("a", json!({})));
    let t = Instant::now();
    let (s, h, v) = bearer_get(&gw, "/api/x", &token).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "keys_unavailable");
    assert!(h.contains_key("retry-after"));
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());

    // The issuer answers again: keys arrive by themselves.
    issuer.hang.send_replace(false);
    let deadline = Instant::now() + Duration::from_secs(8);
    while bearer_get(&gw, "/api/x", &token).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "keys did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_garbage_jwks_mid_run_keeps_the_old_keys_serving() {
    let key = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let gw = bearer_gateway(&issuer, "jwks_refresh_secs = 1\njwks_max_stale_secs = 60").await;
    let admin = gw.gw.admin_addr.unwrap();
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    let errors = r#"meetgate_jwks_fetches_total{identity="corp",result="error"}"#;
    let garbage = [
        "<html><body>502 Bad Gateway</body></html>".to_owned(),
        r#"{"keys": []}"#.to_owned(),
        // The same kid as a symmetric key: never usable for signatures.
        r#"{"keys": [{"kty": "oct", "kid": "rsa-1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}"#
            .to_owned(),
        r#"{"keys": [{"kty": "RSA", "kid": "rsa-1", "n": "!!not base64!!", "e": "AQAB"}]}"#
            .to_owned(),
        "null".to_owned(),
        // Over the 1 MiB document limit.
        format!(
            r#"{{"keys": [], "pad": "{}"}}"#,
            "a".repeat(2 * 1024 * 1024)
        ),
    ];
    for (i, body) in garbage.iter().enumerate() {
        let before = metric(&scrape(admin).await, errors);
        *issuer.jwks_body.lock().unwrap() = Some(body.clone());
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&scrape(admin).await, errors) <= before {
            assert!(
                Instant::now() < deadline,
                "case {i}: no failed fetch counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (s, _, v) = bearer_get(
            &gw,
            "/api/x",
            &key.sign(&issuer.claims(&format!("s{i}"), json!({}))),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "case {i}: {v}");
        let m = scrape(admin).await;
        assert_eq!(
            metric(&m, r#"meetgate_jwks_keys{identity="corp"}"#),
            1.0,
            "case {i}"
        );
        assert_eq!(
            admin_get(admin, "/readyz?strict=1").await.0,
            StatusCode::OK,
            "case {i}"
        );
    }
    *issuer.jwks_body.lock().unwrap() = None;
}

// === upstreams ===

/// An upstream written by hand on a raw socket: each path misbehaves in its own way
/// after reading the request head; anything else is answered "ok".
async fn raw_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let path = String::from_utf8_lossy(&head)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                let pad = vec![b'x'; 64 * 1024];
                let reset = match path.as_str() {
                    "/x/reset-before-head" => true,
                    "/x/reset-mid-length" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\n")
                            .await;
                        let _ = s.write_all(&pad).await;
                        true
                    }
                    "/x/reset-mid-chunked" | "/x/close-mid-chunked" => {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000\r\n",
                            )
                            .await;
                        let _ = s.write_all(&pad).await;
                        let _ = s.write_all(b"\r\n10000\r\nxxxx").await;
                        path == "/x/reset-mid-chunked"
                    }
                    _ => {
                        // One request per connection, so none is ever sent
                        // on a connection this upstream will not serve.
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                        let _ = s.shutdown().await;
                        return;
                    }
                };
                let _ = s.flush().await;
                // Let the bytes reach the gateway before the reset.
                tokio::time::sleep(Duration::from_millis(50)).await;
                if reset {
                    let _ = s.set_zero_linger();
                } else {
                    let _ = s.shutdown().await;
                }
                drop(s);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_is_an_error_for_that_client_only_and_the_next_request_is_served() {
    let up = raw_upstream().await;
    let gw = TestGateway::start(&format!(
        "[limits]\nupstream_timeout_ms = 2000\n{}",
        open_route(up)
    ))
    .await;
    for (proto, c) in [("h1", gw.h1()), ("h2", gw.h2())] {
        // Reset before any response head: the gateway's own 502.
        let (s, h, b) = get(&c, &gw.url("/x/reset-before-head"), &[]).await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{proto}");
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(json(&b)["error"], "upstream_unavailable", "{proto}");
        assert_eq!(
            get(&c, &gw.url("/x/ok"), &[]).await.0,
            StatusCode::OK,
            "{proto}"
        );

        // Reset or close in the middle of the body: the client must see the
        // exchange fail, never a shorter body that looks complete.
        for path in [
            "/x/reset-mid-length",
            "/x/reset-mid-chunked",
            "/x/close-mid-chunked",
        ] {
            let resp = c
                .request(Request::get(gw.url(path)).body(empty()).unwrap())
                .await
                .unwrap_or_else(|e| panic!("{proto} {path}: {e}"));
            // The head (and 64 KiB) were on their way before the upstream
            // failed: the client has the status, and then its body fails.
            assert_eq!(resp.status(), StatusCode::OK, "{proto} {path}");
            if let Ok(b) = resp.into_body().collect().await {
                panic!(
                    "{proto} {path}: a broken upstream body reached the client as complete ({} bytes)",
                    b.to_bytes().len()
                );
            }
            // The gateway keeps serving, on the same client (HTTP/2: the
            // same connection).
            let (s, _, b) = get(&c, &gw.url("/x/ok"), &[]).await;
            assert_eq!(
                (s, &b[..]),
                (StatusCode::OK, &b"ok"[..]),
                "{proto} after {path}"
            );
        }
    }
}

/// Opens once released; wakes the body waiting for it.
#[derive(Default)]
struct Gate {
    open: AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

impl Gate {
    fn release(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

/// The pattern stream: a first chunk, then nothing until the gate opens, then
/// the rest as fast as the reader takes it. Counts what it produced.
struct GatedBody {
    first: Option<Bytes>,
    gate: Arc<Gate>,
    rest: PatternBody,
    produced: Arc<AtomicU64>,
}

impl Body for GatedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            self.produced
                .fetch_add(first.len() as u64, Ordering::SeqCst);
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if !self.gate.open.load(Ordering::SeqCst) {
            self.gate.waker.register(cx.waker());
            if !self.gate.open.load(Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        let frame = Pin::new(&mut self.rest).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            let n = f.data_ref().map_or(0, |d| d.len());
            self.produced.fetch_add(n as u64, Ordering::SeqCst);
        }
        frame
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_with_a_huge_body_streams_with_backpressure_and_bounded_memory() {
    const SIZE: u64 = 64 * 1024 * 1024;
    const FIRST: u64 = 64 * 1024;
    type Slot = Arc<Mutex<Option<(Arc<Gate>, Arc<AtomicU64>)>>>;
    let slot: Slot = Arc::new(Mutex::new(None));
    let s2 = slot.clone();
    let up = upstream(move |req: Request<hyper::body::Incoming>| {
        let slot = s2.clone();
        async move {
            if req.uri().path() != "/x/huge" {
                return Response::new(full("ok"));
            }
            let gate = Arc::new(Gate::default());
            let produced = Arc::new(AtomicU64::new(0));
            *slot.lock().unwrap() = Some((gate.clone(), produced.clone()));
            let first: Vec<u8> = (0..FIRST).map(pattern_byte).collect();
            Response::new(
                GatedBody {
                    first: Some(first.into()),
                    gate,
                    rest: PatternBody {
                        offset: FIRST,
                        len: SIZE,
                    },
                    produced,
                }
                .boxed(),
            )
        }
    })
    .await;
    let (certs, _dir, config) = binary_config(up, "");
    let gw = BinaryGateway::spawn(&config);
    for c in [client(&certs, false), client(&certs, true)] {
        assert_eq!(get(&c, &gw.url("/x/warm"), &[]).await.0, StatusCode::OK);
    }
    let baseline = gw.peak_rss_kib();

    for (proto, c) in [("h1", client(&certs, false)), ("h2", client(&certs, true))] {
        let resp = c
            .request(Request::get(gw.url("/x/huge")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (gate, produced) = slot.lock().unwrap().clone().unwrap();
        let mut body = resp.into_body();
        let mut off = 0u64;
        let check = |data: &[u8], off: &mut u64| {
            for b in data {
                assert_eq!(*b, pattern_byte(*off), "{proto}: byte {off}");
                *off += 1;
            }
        };
        // The first bytes arrive while the upstream has produced nothing
        // more (it waits for us): nothing was held back to be buffered.
        while off < FIRST {
            let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
                .await
                .unwrap_or_else(|_| panic!("{proto}: first bytes did not arrive"))
                .unwrap()
                .unwrap();
            if let Ok(d) = frame.into_data() {
                check(&d, &mut off);
            }
        }
        assert_eq!(produced.load(Ordering::SeqCst), FIRST, "{proto}");
        // Now the upstream is fast and this client slow: it stops reading
        // for a while. The gateway must not drain the upstream into memory.
        gate.release();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let ahead = produced.load(Ordering::SeqCst) - off;
        assert!(
            ahead < 32 * 1024 * 1024,
            "{proto}: the upstream got {} MiB ahead of a client that stopped reading",
            ahead / 1024 / 1024
        );
        while let Some(frame) = body.frame().await {
            if let Ok(d) = frame.unwrap().into_data() {
                check(&d, &mut off);
            }
        }
        assert_eq!(off, SIZE, "{proto}");
        eprintln!(
            "{proto}: upstream was {} KiB ahead of the stalled client",
            ahead / 1024
        );
    }
    let growth_mib = gw.peak_rss_kib().saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 24,
        "gateway peak RSS grew by {growth_mib} MiB streaming {} MiB to a slow client",
        SIZE / 1024 / 1024
    );
}

// === token endpoints ===

const S2S_SECRET: &str = "faults-s2s-client-secret-1";

/// A token endpoint (spec section 4) whose faults the tests switch. It
/// accepts only [`S2S_SECRET`] (anything else: 400 `invalid_client`).
struct TokenServer {
    requests: AtomicUsize,
    issued: AtomicU64,
    expires_in: AtomicU64,
    /// Answer 500.
    fail: AtomicBool,
    /// While true, requests wait.
    hang: tokio::sync::watch::Sender<bool>,
    hung: AtomicUsize,
}

async fn token_server() -> (SocketAddr, Arc<TokenServer>) {
    let ts = Arc::new(TokenServer {
        requests: AtomicUsize::new(0),
        issued: AtomicU64::new(0),
        expires_in: AtomicU64::new(3599),
        fail: AtomicBool::new(false),
        hang: tokio::sync::watch::Sender::new(false),
        hung: AtomicUsize::new(0),
    });
    let t = ts.clone();
    let addr = upstream(move |req: Request<hyper::body::Incoming>| {
        let t = t.clone();
        async move {
            let (parts, body) = req.into_parts();
            let _ = body.collect().await;
            let mut hang = t.hang.subscribe();
            if *hang.borrow_and_update() {
                t.hung.fetch_add(1, Ordering::SeqCst);
                let _ = hang.wait_for(|h| !*h).await;
            }
            t.requests.fetch_add(1, Ordering::SeqCst);
            let reply = |status: u16, v: Value| {
                let mut r = Response::new(full(v.to_string()));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r
            };
            if t.fail.load(Ordering::SeqCst) {
                return reply(500, json!({ "error": "server_error" }));
            }
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("TESTclientID:{S2S_SECRET}"))
            );
            if parts.headers.get("authorization").is_none_or(|v| v != basic.as_str()) {
                return reply(
                    400,
                    json!({ "reason": "Invalid client_id or client_secret", "error": "invalid_client" }),
                );
            }
            let n = t.issued.fetch_add(1, Ordering::SeqCst) + 1;
            reply(
                200,
                json!({ "access_token": format!("tok-{n}"), "token_type": "bearer",
                        "expires_in": t.expires_in.load(Ordering::SeqCst) }),
            )
        }
    })
    .await;
    (addr, ts)
}

/// `[limits]`, an S2S credential sending `secret` and a public route
/// `/zoom/*` injecting it.
fn s2s_config(tokens: SocketAddr, api: SocketAddr, secret: &str, extra: &str) -> String {
    format!(
        r#"
[limits]
upstream_timeout_ms = 800

[credential.zoom_api]
type = "zoom_s2s_oauth"
account_id = "TESTaccountID"
client_id = "TESTclientID"
client_secret = "{secret}"
token_url = "http://{tokens}/oauth/token"
{extra}

[[route]]
name = "zoom-api"
path = "/zoom/*"
strip_prefix = "/zoom"
upstream = "http://{api}"
authenticate = "none"
inject = [{{ credential = "zoom_api", header = "Authorization" }}]
"#
    )
}

/// The Authorization header of the last request the API saw.
fn last_auth(seen: &Mutex<Vec<(String, http::HeaderMap)>>) -> String {
    seen.lock().unwrap().last().unwrap().1["authorization"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_endpoint_failing_while_warm_is_bridged_by_the_cached_token_until_it_recovers() {
    let (ts, tokens) = token_server().await;
    // 62 s tokens with a 60 s margin: a refresh 2 s after every fetch.
    tokens.expires_in.store(62, Ordering::SeqCst);
    let (api, seen) = header_recorder().await;
    let gw = TestGateway::start(&s2s_config(ts, api, S2S_SECRET, "refresh_before_secs = 60")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&gw.h1(), &gw.url("/zoom/me"), &[]).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "no first token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last_auth(&seen), "Bearer tok-1");

    tokens.fail.store(true, Ordering::SeqCst);
    let before = tokens.requests.load(Ordering::SeqCst);
    wait_until("refreshes failing", Duration::from_secs(8), || {
        tokens.requests.load(Ordering::SeqCst) >= before + 2
    })
    .await;
    // The token in hand is still valid: requests keep passing with it.
    for i in 0..10 {
        let (s, _, b) = get(&gw.h1(), &gw.url(&format!("/zoom/users/{i}")), &[]).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        assert_eq!(last_auth(&seen), "Bearer tok-1");
    }
    let m = scrape(gw.gw.admin_addr.unwrap()).await;
    assert!(
        metric(
            &m,
            r#"meetgate_credential_fetches_total{credential="zoom_api",result="error"}"#
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1")
            .await
            .0,
        StatusCode::OK
    );

    // Recovery: the next retry gets a new token, which requests then carry.
    tokens.fail.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, _) = get(&gw.h1(), &gw.url("/zoom/me"), &[]).await;
        assert_eq!(s, StatusCode::OK);
        if last_auth(&seen) == "Bearer tok-2" {
            break;
        }
        assert_eq!(last_auth(&seen), "Bearer tok-1");
        assert!(Instant::now() < deadline, "no new token after recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_is_503_until_the_fixed_secret_is_reloaded() {
    let (ts, tokens) = token_server().await;
    let (api, seen) = header_recorder().await;
    let gw = TestGateway::start(&s2s_config(ts, api, "a-rotated-old-secret", "")).await;
    let admin = gw.gw.admin_addr.unwrap();
    wait_until("the refused fetch", Duration::from_secs(5), || {
        tokens.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    for _ in 0..5 {
        let t = Instant::now();
        let (s, h, b) = get(&gw.h1(), &gw.url("/zoom/me"), &[]).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(&b)["error"], "credential_unavailable");
        assert!(h.contains_key("retry-after"));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    }
    assert!(seen.lock().unwrap().is_empty(), "nothing reached the API");
    let (s, r) = admin_get(admin, "/readyz?strict=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r["not_ready"].to_string().contains("zoom_api"), "{r}");
    let m = scrape(admin).await;
    assert!(
        metric(
            &m,
            r#"meetgate_credential_fetches_total{credential="zoom_api",result="config_error"}"#
        ) >= 1.0,
        "{m}"
    );

    // The operator fixes the secret: the reloaded credential fetches at once.
    let generation = gw.generation();
    gw.rewrite(&s2s_config(ts, api, S2S_SECRET, ""), true);
    wait_until("the reload", Duration::from_secs(2), || {
        gw.generation() > generation
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (s, _, _) = get(&gw.h1(), &gw.url("/zoom/me"), &[]).await;
        if s == StatusCode::OK {
            break;
        }
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "the fixed secret was not used");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last_auth(&seen), "Bearer tok-1");
    assert_eq!(admin_get(admin, "/readyz?strict=1").await.0, StatusCode::OK);
}

/// A refused client is asked about again on a slow schedule (every 60 s,
/// README "Credentials"): the secret may be fixed at the provider, with no
/// reload here. Takes a minute of wall time; its binary's other tests run
/// beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_is_tried_again_a_minute_later_and_not_before() {
    let (ts, tokens) = token_server().await;
    let (api, _seen) = header_recorder().await;
    let gw = TestGateway::start(&s2s_config(ts, api, "a-secret-revoked-at-zoom", "")).await;
    wait_until("the refused start-up fetch", Duration::from_secs(5), || {
        tokens.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    let first = Instant::now();
    // Requests meanwhile are answered 503 without asking the endpoint.
    for _ in 0..3 {
        assert_eq!(
            get(&gw.h1(), &gw.url("/zoom/me"), &[]).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    while tokens.requests.load(Ordering::SeqCst) < 2 {
        assert!(
            first.elapsed() < Duration::from_secs(75),
            "no second attempt within 75 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let interval = first.elapsed();
    assert!(
        (Duration::from_secs(58)..Duration::from_secs(63)).contains(&interval),
        "retried after {interval:?}, not on the 60 s schedule"
    );
    let m = scrape(gw.gw.admin_addr.unwrap()).await;
    assert_eq!(
        metric(
            &m,
            r#"meetgate_credential_fetches_total{credential="zoom_api",result="config_error"}"#
        ),
        2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_token_endpoint_costs_requests_at_most_the_upstream_timeout_then_recovers() {
    let (ts, tokens) = token_server().await;
    tokens.hang.send_replace(true);
    let (api, seen) = header_recorder().await;
    // upstream_timeout_ms = 800 bounds the whole wait of a request.
    let gw = TestGateway::start(&s2s_config(ts, api, S2S_SECRET, "")).await;
    wait_until("the start-up fetch hanging", Duration::from_secs(5), || {
        tokens.hung.load(Ordering::SeqCst) >= 1
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = if i % 2 == 0 { gw.h1() } else { gw.h2() };
        let url = gw.url(&format!("/zoom/users/{i}"));
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = get(&c, &url, &[]).await;
            (r, t.elapsed())
        }));
    }
    for t in tasks {
        let ((s, h, b), took) = t.await.unwrap();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(&b)["error"], "credential_unavailable");
        assert!(h.contains_key("retry-after"));
        assert!(
            took < Duration::from_secs(3),
            "a request waited {took:?} for a hanging token endpoint"
        );
    }
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(
        admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1")
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Waiting requests did not pile extra token requests onto the endpoint.
    assert_eq!(tokens.hung.load(Ordering::SeqCst), 1);

    // The endpoint answers again: requests pass with the token it issued.
    tokens.hang.send_replace(false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&gw.h1(), &gw.url("/zoom/me"), &[]).await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last_auth(&seen), "Bearer tok-1");
    assert_eq!(
        admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1")
            .await
            .0,
        StatusCode::OK
    );
}

// === clients ===

/// `[limits]` with short timeouts and an open route.
async fn short_timeouts_gateway(header_ms: u64, upstream_ms: u64) -> (TestGateway, SocketAddr) {
    let up = ok_upstream().await;
    let gw = TestGateway::start(&format!(
        "[limits]\nheader_read_timeout_ms = {header_ms}\nupstream_timeout_ms = {upstream_ms}\n{}",
        open_route(up)
    ))
    .await;
    (gw, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_byte_by_byte_is_cut_at_header_read_timeout() {
    let (gw, _) = short_timeouts_gateway(600, 2000).await;
    let s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    let (mut r, mut w) = tokio::io::split(s);
    // Every byte comes quickly after the last; the head as a whole never ends.
    let writer = tokio::spawn(async move {
        let head = format!(
            "GET /x/a HTTP/1.1\r\nhost: localhost\r\nx-pad: {}",
            "a".repeat(10_000)
        );
        for b in head.as_bytes() {
            if w.write_all(&[*b]).await.is_err() || w.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let started = Instant::now();
    let (out, closed) = read_until_closed(&mut r, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(closed, "a trickled head kept the connection for 5 s");
    let text = String::from_utf8_lossy(&out);
    assert!(out.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        took >= Duration::from_millis(500),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "cut too late: {took:?}");
    writer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_at_header_read_timeout() {
    let (gw, _) = short_timeouts_gateway(600, 2000).await;
    let addr = gw.gw.tls_addr;
    let certs = &gw.certs;
    let started = Instant::now();
    // No TLS handshake at all.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // A TLS handshake, then silence (HTTP/1.1 and HTTP/2 by ALPN).
    let mut h1 = tls_with_alpn(addr, certs, b"http/1.1").await;
    let mut h2 = tls_with_alpn(addr, certs, b"h2").await;
    // Part of the HTTP/2 connection preface, then silence.
    let mut preface = tls_with_alpn(addr, certs, b"h2").await;
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    preface.flush().await.unwrap();
    // One request answered, then silence on the kept-alive connection.
    let mut kept = raw_tls(addr, certs).await;
    kept.write_all(b"GET /x/a HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    // header_read_timeout is 600 ms; 2 s leaves room for a slow machine.
    let limit = Duration::from_secs(2);
    let (a, b, c, d, e) = tokio::join!(
        read_until_closed(&mut tcp, limit),
        read_until_closed(&mut h1, limit),
        read_until_closed(&mut h2, limit),
        read_until_closed(&mut preface, limit),
        read_until_closed(&mut kept, limit),
    );
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&e.0).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&e.0)
    );
    for (what, (_, closed)) in [
        ("no TLS handshake", a),
        ("TLS, HTTP/1.1, nothing sent", b),
        ("TLS, h2, nothing sent", c),
        ("TLS, h2, half a preface", d),
        ("keep-alive after one request", e),
    ] {
        assert!(closed, "{what}: still open after {limit:?}");
    }
    assert!(
        took >= Duration::from_millis(500),
        "cut too early: {took:?}"
    );
    // The gateway serves as before.
    assert_eq!(get(&gw.h1(), &gw.url("/x/a"), &[]).await.0, StatusCode::OK);
}

/// A request body that sends one byte every 50 ms, `left` more bytes.
struct TrickleBody {
    left: usize,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for TrickleBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        let next = tokio::time::Instant::now() + Duration::from_millis(50);
        self.sleep.as_mut().reset(next);
        self.left -= 1;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_webhook_body_is_408_at_the_body_timeout_and_never_forwarded() {
    let (up, seen) = header_recorder().await;
    let gw = TestGateway::start(&format!(
        r#"
[limits]
upstream_timeout_ms = 800

[webhook.zoom]
type = "zoom"
secret_tokens = ["faults-webhook-secret"]

[[route]]
name = "zoom-webhooks"
path = "/webhooks/zoom"
methods = ["POST"]
verify_webhook = "zoom"
upstream = "http://{up}"
"#
    ))
    .await;
    let ts = common::issuer::now().to_string();
    let sig = zoom_webhook_signature("faults-webhook-secret", &ts, b"{}");

    // HTTP/1.1, Content-Length announced, bytes trickling in.
    let s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    let (mut r, mut w) = tokio::io::split(s);
    let head = format!(
        "POST /webhooks/zoom HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 400\r\nx-zm-signature: {sig}\r\nx-zm-request-timestamp: {ts}\r\n\r\n{{"
    );
    w.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..399 {
            if w.write_all(b" ").await.is_err() || w.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).contains("request_timeout") {
        match tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains(r#""error":"request_timeout""#), "{text}");
    assert!(
        took >= Duration::from_millis(700),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "cut too late: {took:?}");
    writer.abort();

    // HTTP/2, a streamed body without a length.
    let started = Instant::now();
    let body = TrickleBody {
        left: 400,
        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    let (s, _, b) = send(
        &gw.h2(),
        "POST",
        &gw.url("/webhooks/zoom"),
        &[("x-zm-signature", &sig), ("x-zm-request-timestamp", &ts)],
        body.boxed(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(s, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(json(&b)["error"], "request_timeout");
    assert!(
        took >= Duration::from_millis(700),
        "cut too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "cut too late: {took:?}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "a partial body was forwarded"
    );
}

/// One HTTP/1.1 keep-alive connection that made one request and now idles;
/// dropping it closes it.
struct IdleConn {
    _sender: hyper::client::conn::http1::SendRequest<TestBody>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IdleConn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn idle_conn(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> IdleConn {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(
            Request::get("/idle")
                .header("host", "localhost")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    resp.into_body().collect().await.unwrap();
    IdleConn {
        _sender: sender,
        task,
    }
}

/// Opens `n` idle connections, 100 at a time.
async fn open_idle(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>, n: usize) -> Vec<IdleConn> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch = (n - conns.len()).min(100);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..batch {
            set.spawn(idle_conn(addr, tls.clone()));
        }
        while let Some(c) = set.join_next().await {
            conns.push(c.unwrap());
        }
    }
    conns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_cost_bounded_memory_and_are_all_released() {
    const N: usize = 2000;
    let up = ok_upstream().await;
    // Long enough that no connection is closed for idling while they open.
    let (certs, _dir, config) = binary_config(up, "header_read_timeout_ms = 60000");
    let gw = BinaryGateway::spawn(&config);
    let pid = gw.child.id();
    let tls = Arc::new(certs.client_tls(&[b"http/1.1"]));
    // Warm up (TLS and HTTP state, the allocator's arenas), then close.
    let idle_fds = open_fds(pid);
    drop(open_idle(gw.tls_addr, &tls, 50).await);
    wait_until("warm-up connections closed", Duration::from_secs(5), || {
        open_fds(pid) <= idle_fds
    })
    .await;
    let (rss0, fds0) = (proc_kib(pid, "VmRSS:"), open_fds(pid));

    let started = Instant::now();
    let conns = open_idle(gw.tls_addr, &tls, N).await;
    let opened_in = started.elapsed();
    let (rss1, fds1) = (proc_kib(pid, "VmRSS:"), open_fds(pid));
    assert!(
        fds1 >= fds0 + N,
        "the gateway should hold all {N} connections: {fds0} -> {fds1} descriptors"
    );
    let per_conn = (rss1.saturating_sub(rss0) * 1024) / N as u64;
    eprintln!(
        "{N} idle connections opened in {opened_in:?}: VmRSS {rss0} -> {rss1} KiB, {per_conn} bytes each"
    );
    assert!(
        per_conn < 64 * 1024,
        "{per_conn} bytes of gateway memory per idle connection"
    );

    // A new client is served promptly meanwhile.
    let t = Instant::now();
    let (s, _, _) = get(&client(&certs, false), &gw.url("/x/a"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    // The clients leave: every descriptor comes back (but the pooled
    // upstream connection's) and the gateway serves on.
    drop(conns);
    wait_until("idle connections closed", Duration::from_secs(10), || {
        open_fds(pid) <= fds0 + 2
    })
    .await;
    assert_eq!(
        get(&client(&certs, false), &gw.url("/x/b"), &[]).await.0,
        StatusCode::OK
    );
}

/// The binary with its open-file limit a few descriptors above what it
/// uses, and far more connections than that: TLS connections that stay
/// silent after their handshake, then bare TCP connections queued beyond
/// (fewer than the listen backlog of 128, so none waits for a SYN retry).
struct Exhausted {
    gw: BinaryGateway,
    certs: Certs,
    pid: u32,
    _dir: tempfile::TempDir,
    tls: Vec<tokio_rustls::client::TlsStream<TcpStream>>,
    tcp: Vec<TcpStream>,
}

async fn exhausted_gateway() -> Exhausted {
    let up = ok_upstream().await;
    let (certs, dir, config) = binary_config(up, "header_read_timeout_ms = 1000");
    let gw = BinaryGateway::spawn(&config);
    let pid = gw.child.id();
    assert_eq!(
        get(&client(&certs, false), &gw.url("/x/a"), &[]).await.0,
        StatusCode::OK
    );
    // prlimit(1) (util-linux) lowers the running process's limit.
    let limit = open_fds(pid) + 30;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit (util-linux) is needed");
    assert!(status.success());
    let mut tls = Vec::new();
    for _ in 0..20 {
        tls.push(tls_with_alpn(gw.tls_addr, &certs, b"http/1.1").await);
    }
    let mut tcp = Vec::new();
    for _ in 0..100 {
        tcp.push(TcpStream::connect(gw.tls_addr).await.unwrap());
    }
    wait_until("descriptors exhausted", Duration::from_secs(5), || {
        open_fds(pid) >= limit - 1
            && gw
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("accept failed"))
    })
    .await;
    Exhausted {
        gw,
        certs,
        pid,
        _dir: dir,
        tls,
        tcp,
    }
}

/// CPU the process uses in the next second, in percent of one core.
async fn cpu_percent_over_a_second(pid: u32) -> u64 {
    let hz = clock_ticks_per_sec();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    (cpu_ticks(pid) - before) * 100 / hz
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_neither_crashes_nor_spins_and_serving_resumes() {
    let Exhausted {
        mut gw,
        certs,
        pid,
        _dir,
        tls,
        tcp,
    } = exhausted_gateway().await;
    // Not spinning: the accept loop backs off while accept fails.
    let cpu = cpu_percent_over_a_second(pid).await;
    eprintln!("{cpu}% CPU while out of descriptors");
    assert!(cpu < 30, "{cpu}% CPU while out of descriptors");
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway exited");

    // The connections close: the gateway serves again.
    drop(tcp);
    drop(tls);
    let resumed = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            client(&certs, false).request(Request::get(gw.url("/x/again")).body(empty()).unwrap()),
        )
        .await;
        if let Ok(Ok(resp)) = r {
            assert_eq!(resp.status(), StatusCode::OK);
            eprintln!("serving again after {:?}", resumed.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not serve again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway exited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_does_not_spin_the_admin_listener() {
    let ex = exhausted_gateway().await;
    // One connection waiting on the admin listener makes its accept fail.
    let _admin = TcpStream::connect(ex.gw.admin_addr.unwrap()).await.unwrap();
    let cpu = cpu_percent_over_a_second(ex.pid).await;
    assert!(cpu < 30, "{cpu}% CPU while out of descriptors");
}

// === configuration ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_right_after_start_does_not_kill_the_gateway() {
    let up = ok_upstream().await;
    let (certs, _dir, config) = binary_config(up, "");
    // The moment between announcing the listeners and acting on signals is
    // short: try a few times.
    for round in 0..5 {
        let mut gw = BinaryGateway::spawn(&config);
        // At once, as a deploy script or a log rotation might.
        gw.signal("HUP");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            gw.child.try_wait().unwrap().is_none(),
            "round {round}: SIGHUP right after start ended the gateway"
        );
        assert_eq!(
            get(&client(&certs, false), &gw.url("/x/a"), &[]).await.0,
            StatusCode::OK
        );
    }
}

/// Fifty configuration files that must each be refused.
fn broken_configs(certs: &Certs, dir: &std::path::Path, good: &str) -> Vec<(String, Vec<u8>)> {
    let server = server_section(certs, "");
    let with = |rest: &str| format!("{server}{rest}").into_bytes();
    let garbage_pem = dir.join("garbage.pem");
    std::fs::write(
        &garbage_pem,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty_pem = dir.join("empty.pem");
    std::fs::write(&empty_pem, "").unwrap();
    let server_with = |cert: &str, key: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n{good}"
        )
        .into_bytes()
    };
    let (cert, key) = (
        certs.cert.display().to_string(),
        certs.key.display().to_string(),
    );
    // A second route "y" on /y with `fields`.
    let route_with =
        |fields: &str| format!("{good}\n[[route]]\nname = \"y\"\npath = \"/y\"\n{fields}\n");
    let route = |extra: &str| route_with(&format!("upstream = \"http://127.0.0.1:9\"\n{extra}"));
    let good_text = format!("{server}{good}");
    let v: Vec<(&str, Vec<u8>)> = vec![
        // Syntax.
        ("unclosed table header", with("[[route]\nname = ")),
        ("unclosed server header", b"[server\nlisten = 1\n".to_vec()),
        ("double equals", with("key = = 1\n")),
        ("unterminated string", with("[[route]]\nname = \"abc\n")),
        ("duplicate key", with(&format!("{good}\n[limits]\nmax_body_bytes = 1\nmax_body_bytes = 2\n"))),
        ("duplicate table", with("[limits]\n[limits]\n")),
        ("invalid UTF-8", [with(good), b"\n# \xff\xfe\n".to_vec()].concat()),
        ("empty file", Vec::new()),
        ("NUL bytes", b"\0\0\0\0".to_vec()),
        ("route as an integer", format!("route = 5\n{server}{good}").into_bytes()),
        ("truncated in the middle", good_text.as_bytes()[..good_text.len() / 2].to_vec()),
        // Unknown keys.
        ("unknown top-level key", format!("typo = 1\n{server}{good}").into_bytes()),
        ("unknown server key", format!("{}listne = \"x\"\n{good}", server).into_bytes()),
        ("unknown limits key", with(&format!("[limits]\nmax_header_byte = 4096\n{good}"))),
        ("unknown route key", with(&route("authenticate = \"none\"\nupstreem = \"x\""))),
        ("unknown identity key", with(&format!("{good}\n[identity.i]\nissuer = \"https://idp.example\"\naudience = \"x\"\n"))),
        ("key of another credential type", with(&format!("{good}\n[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"b\"\naccount_id = \"c\"\n"))),
        ("unknown webhook key", with(&format!("{good}\n[webhook.w]\ntype = \"zoom\"\nsecret = \"x\"\n"))),
        ("unknown section", with(&format!("{good}\n[clustr]\nredis_url = \"redis://127.0.0.1\"\n"))),
        // References that do not resolve.
        ("unknown identity", with(&route("authenticate = \"nosuch\""))),
        ("unknown credential", with(&route("authenticate = \"none\"\ninject = [{ credential = \"nosuch\", header = \"Authorization\" }]"))),
        ("unknown webhook", with(&route("verify_webhook = \"nosuch\""))),
        ("unknown zoom app", with(&route("authenticate = { zoom_app = \"nosuch\" }"))),
        ("unknown respond credential", with(&route_with("authenticate = \"none\"\nrespond = { credential = \"nosuch\" }"))),
        ("missing environment variable", with(&format!("{good}\n[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"${{FAULTS_MISSING_SECRET}}\"\n"))),
        ("missing secret file", with(&format!("{good}\n[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"file:/nonexistent/meetgate/secret\"\n"))),
        ("missing outbound CA", with(&format!("[outbound]\nca_file = \"/nonexistent/ca.pem\"\n{good}"))),
        ("missing upstream CA", with(&route("authenticate = \"none\"\nupstream_ca = \"/nonexistent/up-ca.pem\""))),
        // Values.
        ("plain http to a remote upstream", with(&route_with("upstream = \"http://example.com\"\nauthenticate = \"none\""))),
        ("ftp upstream", with(&route_with("upstream = \"ftp://127.0.0.1\"\nauthenticate = \"none\""))),
        ("upstream not a URL", with(&route_with("upstream = \"not a url\"\nauthenticate = \"none\""))),
        ("path without a slash", with(&format!("{good}\n[[route]]\nname = \"y\"\npath = \"y\"\nupstream = \"http://127.0.0.1:9\"\nauthenticate = \"none\"\n"))),
        ("invalid method", with(&route("authenticate = \"none\"\nmethods = [\"GET POST\"]"))),
        ("alg none", with(&format!("{good}\n[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"x\"]\nalgorithms = [\"none\"]\n"))),
        ("alg HS256", with(&format!("{good}\n[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"x\"]\nalgorithms = [\"HS256\"]\n"))),
        ("Meeting SDK ttl too short", with(&format!("{good}\n[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"b\"\nttl_secs = 10\n"))),
        ("OpenTok ttl too long", with(&format!("{good}\n[credential.c]\ntype = \"opentok_project\"\napi_key = \"1\"\napi_secret = \"b\"\nttl_secs = 1000\n"))),
        ("header limit too small", with(&format!("[limits]\nmax_header_bytes = 10\n{good}"))),
        ("timeout of the wrong type", with(&format!("[limits]\nheader_read_timeout_ms = \"fast\"\n{good}"))),
        ("duplicate route names", with(&format!("{good}{good}"))),
        ("route without authenticate", with(&route(""))),
        ("authenticate beside verify_webhook", with(&format!("{good}\n[webhook.w]\ntype = \"zoom\"\nsecret_tokens = [\"s\"]\n[[route]]\nname = \"y\"\npath = \"/y\"\nupstream = \"http://127.0.0.1:9\"\nverify_webhook = \"w\"\nauthenticate = \"none\"\n"))),
        ("empty webhook secret", with(&format!("{good}\n[webhook.w]\ntype = \"zoom\"\nsecret_tokens = [\"\"]\n"))),
        ("standard secret without whsec_", with(&format!("{good}\n[webhook.w]\ntype = \"standard\"\nsecret_tokens = [\"plain\"]\n"))),
        ("plain http issuer", with(&format!("{good}\n[identity.i]\nissuer = \"http://idp.example\"\naudiences = [\"x\"]\n"))),
        ("listen not an address", format!("[server]\nlisten = \"nowhere\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n{good}").into_bytes()),
        // Certificates.
        ("missing certificate file", server_with("/nonexistent/cert.pem", &key)),
        ("missing key file", server_with(&cert, "/nonexistent/key.pem")),
        ("garbage certificate", server_with(&garbage_pem.display().to_string(), &key)),
        ("empty key file", server_with(&cert, &empty_pem.display().to_string())),
    ];
    v.into_iter().map(|(n, t)| (n.to_owned(), t)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_broken_reloads_under_traffic_fail_no_request() {
    let up = echo_upstream().await;
    let good = open_route(up);
    let gw = TestGateway::start(&good).await;
    let admin = gw.gw.admin_addr.unwrap();
    let broken = broken_configs(&gw.certs, gw.dir.path(), &good);
    assert_eq!(broken.len(), 50);

    // Clients keep sending over both protocols the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for c in [gw.h1(), gw.h2(), gw.h1(), gw.h2()] {
        let (stop, url) = (stop.clone(), gw.url("/x/during-reloads"));
        loops.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(Ordering::SeqCst) {
                match c.request(Request::get(&url).body(empty()).unwrap()).await {
                    Ok(r) if r.status() == StatusCode::OK => match r.into_body().collect().await {
                        Ok(_) => ok += 1,
                        Err(e) => failed.push(format!("body: {e}")),
                    },
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(format!("request: {e}")),
                }
            }
            (ok, failed)
        }));
    }

    let generation = gw.generation();
    let failed_before = gw.reloads_failed();
    for (i, (what, text)) in broken.iter().enumerate() {
        let failed = gw.reloads_failed();
        if i % 2 == 0 {
            std::fs::write(&gw.config, text).unwrap();
        } else {
            let tmp = gw.dir.path().join(".meetgate.toml.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &gw.config).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while gw.reloads_failed() <= failed {
            assert!(
                gw.generation() == generation,
                "case {i} ({what}) was applied"
            );
            assert!(
                Instant::now() < deadline,
                "case {i} ({what}): no failed reload within 2 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(gw.generation(), generation, "case {i} ({what}) was applied");
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for l in loops {
        let (ok, failed) = l.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during reloads: {failed:?}"
        );
        total += ok;
    }
    assert!(total >= 200, "only {total} requests were made");
    eprintln!("{total} requests, none failed, during 50 refused reloads");

    // The counters say so too.
    let failures = gw.reloads_failed() - failed_before;
    assert!(failures >= 50, "{failures} failed reloads counted");
    let m = scrape(admin).await;
    assert!(
        metric(&m, r#"meetgate_config_reloads_total{result="error"}"#) >= 50.0,
        "{m}"
    );
    assert_eq!(metric(&m, "meetgate_config_generation"), generation as f64);
    let (_, r) = admin_get(admin, "/readyz?strict=1").await;
    assert!(r["config_reloads"]["failed"].as_u64().unwrap() >= 50, "{r}");

    // The next good file applies.
    gw.rewrite(&format!("{good}\n[[route]]\nname = \"b\"\npath = \"/b\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n"), true);
    wait_until("the good reload", Duration::from_secs(2), || {
        gw.generation() > generation
    })
    .await;
    assert_eq!(get(&gw.h1(), &gw.url("/b"), &[]).await.0, StatusCode::OK);
}
