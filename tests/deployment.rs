//! Running in a cluster: `/readyz` that means "can serve" (plain) beside the
//! all-or-nothing `?strict=1`, drain on SIGTERM (readiness fails first, the
//! listeners keep accepting for `drain_ms`, in-flight requests finish), and
//! plaintext upstreams off loopback only with `insecure_plaintext_upstream`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use serde_json::Value;

/// A port nothing listens on (bound, then closed).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// An identity whose JWKS comes from `jwks`, a bearer route using it and a
/// public route.
fn config(jwks: SocketAddr, up: SocketAddr) -> String {
    format!(
        r#"
[identity.corp]
issuer = "https://issuer.test"
jwks_uri = "http://{jwks}/jwks.json"
audiences = ["api"]
algorithms = ["RS256"]

[[route]]
name = "api"
path = "/api/*"
upstream = "http://{up}"
authenticate = "corp"

[[route]]
name = "public"
path = "/public/*"
upstream = "http://{up}"
authenticate = "none"
"#
    )
}

async fn readyz(admin: SocketAddr, query: &str) -> (StatusCode, Value) {
    admin_get(admin, &format!("/readyz{query}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_issuer_degrades_readiness_but_only_strict_readiness_fails() {
    let up = echo_upstream().await;
    let gw = TestGateway::start(&config(closed_port(), up)).await;
    let admin = gw.gw.admin_addr.unwrap();

    // The first fetch fails at once (connection refused): plain readiness
    // is 200 with the identity named as degraded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (s, body) = readyz(admin, "").await;
        if s == StatusCode::OK {
            break body;
        }
        assert_eq!(body["status"], "starting", "{body}");
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["ready"], true);
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["degraded"],
        serde_json::json!(["identity corp: no usable signing keys"])
    );

    // Strict: all or nothing.
    let (s, strict) = readyz(admin, "?strict=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{strict}");
    assert_eq!(strict["ready"], false);
    assert_eq!(
        strict["not_ready"],
        serde_json::json!(["identity corp: no usable signing keys"])
    );

    // The gateway does serve: the public route works, the bearer route says why it cannot.
    let (s, _, _) = get(&gw.h1(), &gw.url("/public/x"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    use base64::Engine as _;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "RS256", "kid": "k1", "typ": "JWT"})),
        b64(
            serde_json::json!({"iss": "https://issuer.test", "aud": "api", "exp": 4_000_000_000u64})
        )
    );
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/api/x"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&b)
    );

    // Metrics say the same.
    let text = scrape(admin).await;
    assert_eq!(metric(&text, "meetgate_ready"), 1.0, "{text}");
    assert_eq!(
        metric(&text, r#"meetgate_degraded{kind="identity",name="corp"}"#),
        1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_the_first_fetch_at_most_the_grace() {
    // A JWKS endpoint that accepts and never answers: the first fetch is
    // neither done nor failed for as long as the grace lasts.
    let hang = upstream(|_req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        http::Response::new(full(""))
    })
    .await;
    let up = echo_upstream().await;
    let gw = TestGateway::start_with(
        &config(hang, up),
        "readiness_grace_ms = 1500",
        Default::default(),
    )
    .await;
    let admin = gw.gw.admin_addr.unwrap();
    let started = Instant::now();
    let (s, body) = readyz(admin, "").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "starting");
    assert_eq!(body["waiting_for"], serde_json::json!(["identity corp"]));
    assert_eq!(metric(&scrape(admin).await, "meetgate_ready"), 0.0);

    let deadline = started + Duration::from_secs(10);
    while readyz(admin, "").await.0 != StatusCode::OK {
        assert!(Instant::now() < deadline, "still not ready after the grace");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "ready before the grace passed: {:?}",
        started.elapsed()
    );
    let (_, body) = readyz(admin, "").await;
    assert_eq!(body["status"], "degraded", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_first_keeps_accepting_for_drain_ms_then_finishes_in_flight() {
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let up = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let arrived_tx = arrived_tx.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = arrived_tx.send(());
                tokio::time::sleep(Duration::from_millis(3000)).await;
            }
            http::Response::new(full("finished"))
        }
    })
    .await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let routes = format!(
        "\n[[route]]\nname = \"all\"\npath = \"/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n"
    );
    let config = write_config(
        &certs,
        dir.path(),
        "drain_ms = 1500\nshutdown_grace_ms = 10000",
        &routes,
    );
    let mut gw = BinaryGateway::spawn(&config);
    let admin = gw.admin_addr.unwrap();
    assert_eq!(readyz(admin, "").await.0, StatusCode::OK);

    let c = client(&certs, false);
    let slow = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&c, &slow, &[]).await });
    arrived.recv().await.unwrap();
    let signalled = Instant::now();
    gw.signal("TERM");

    // Readiness fails at once, while new connections are still served.
    let deadline = signalled + Duration::from_millis(1000);
    let body = loop {
        let (s, body) = readyz(admin, "").await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz still {s} after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["status"], "draining");
    let fresh = client(&certs, false); // a new connection
    let (s, _, b) = get(&fresh, &gw.url("/fast"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&b[..], b"finished");
    assert!(
        signalled.elapsed() < Duration::from_millis(1500),
        "the drain check ran too late to mean anything"
    );

    // After the window: no new connections.
    let tls_addr = gw.tls_addr;
    let deadline = signalled + Duration::from_secs(6);
    while tokio::net::TcpStream::connect(tls_addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting long after drain_ms"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        signalled.elapsed() >= Duration::from_millis(1400),
        "stopped accepting before drain_ms: {:?}",
        signalled.elapsed()
    );

    // The request in flight since before SIGTERM still completes.
    let (s, _, b) = in_flight.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&b[..], b"finished");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = gw.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// `meetgate check` on `rest` after a `[server]` section: (success, output).
fn check(rest: &str) -> (bool, String) {
    check_file(rest).0
}

/// [`check`], and the line `insecure_plaintext_upstream` is on in the file.
fn check_file(rest: &str) -> ((bool, String), Option<usize>) {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&certs, dir.path(), "", rest);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("insecure_plaintext_upstream"))
        .map(|i| i + 1);
    ((out.status.success(), text), line)
}

fn plain_route(upstream: &str, opt_in: &str) -> String {
    format!(
        "\n[[route]]\nname = \"app\"\npath = \"/*\"\nupstream = \"{upstream}\"\nauthenticate = \"none\"\n{opt_in}\n"
    )
}

#[test]
fn plaintext_off_loopback_needs_the_opt_in_and_check_warns_about_it() {
    // Without the opt-in: an error naming the line and key.
    let (ok, text) = check(&plain_route("http://app.internal:3000", ""));
    assert!(!ok, "{text}");
    assert!(text.contains("route[0].upstream"), "{text}");
    assert!(text.contains("only allowed for loopback"), "{text}");

    // With it: accepted, with a warning on that line.
    let ((ok, text), line) = check_file(&plain_route(
        "http://app.internal:3000",
        "insecure_plaintext_upstream = true",
    ));
    assert!(ok, "{text}");
    let warning = text
        .lines()
        .find(|l| l.contains("warning") && l.contains("insecure_plaintext_upstream"))
        .unwrap_or_else(|| panic!("no warning: {text}"));
    assert!(warning.contains("unencrypted"), "{warning}");
    assert!(
        warning.contains(&format!(":{}: warning", line.unwrap())),
        "warning not tied to the key's line: {warning}"
    );

    // The key on an https upstream or a respond route would read as if it did something.
    let (ok, text) = check(&plain_route(
        "https://app.internal:3000",
        "insecure_plaintext_upstream = true",
    ));
    assert!(
        !ok && text.contains("remove `insecure_plaintext_upstream`"),
        "{text}"
    );
    let (ok, text) = check(
        "\n[credential.sdk]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"k\"\nclient_secret = \"s\"\n\
         [[route]]\nname = \"sig\"\npath = \"/sig\"\nauthenticate = \"none\"\n\
         respond = { credential = \"sdk\" }\ninsecure_plaintext_upstream = true\n",
    );
    assert!(
        !ok && text.contains("applies only to a route with an `upstream`"),
        "{text}"
    );

    // Issuers stay https-only off loopback, whatever routes opt in to.
    let (ok, text) = check(
        "\n[identity.corp]\nissuer = \"http://issuer.internal\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]\n",
    );
    assert!(!ok && text.contains("only allowed for loopback"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opted_in_plaintext_upstream_off_loopback_is_proxied_to() {
    // 0.0.0.0 is not a loopback address to the configuration (so the opt-in
    // is needed), while connecting to it reaches this machine.
    let up = echo_upstream().await;
    let target = format!("http://0.0.0.0:{}", up.port());
    let gw = TestGateway::start(&plain_route(&target, "insecure_plaintext_upstream = true")).await;
    let (s, _, b) = get(&gw.h1(), &gw.url("/hello"), &[]).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
}
