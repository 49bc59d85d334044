//! Routing, errors and header hygiene through the real server over real TLS,
//! each case over HTTP/1.1 and HTTP/2.

mod common;

use common::*;
use http::StatusCode;

async fn gateway(up: std::net::SocketAddr) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[[route]]
name = "orgs"
host = "App.Example.com"
path = "/api/orgs/{{tenant}}/meetings/{{id}}"
methods = ["GET", "POST"]
upstream = "http://{up}"
authenticate = "none"

[[route]]
name = "meetings-read"
path = "/api/meetings/{{id}}"
methods = ["GET"]
upstream = "http://{up}"
authenticate = "none"

[[route]]
name = "meetings-write"
path = "/api/meetings/{{id}}"
methods = ["PUT"]
upstream = "http://{up}/base/"
authenticate = "none"

[[route]]
name = "public"
path = "/public/*"
strip_prefix = "/public"
upstream = "http://{up}"
authenticate = "none"

[[route]]
name = "bearer-passthrough"
path = "/pass/*"
upstream = "http://{up}"
authenticate = "none"
forward_bearer = true
preserve_host = true

[[route]]
name = "root"
path = "/"
upstream = "http://{up}"
authenticate = "none"
"#
    ))
    .await
}

#[tokio::test]
async fn routes_captures_and_strip_prefix_over_h1_and_h2() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    for c in [gw.h1(), gw.h2()] {
        let (s, _, b) = get(&c, &gw.url("/public/a/b?x=1&y=%20"), &[]).await;
        assert_eq!(s, StatusCode::OK);
        let v = json(&b);
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["query"], "x=1&y=%20");

        let (s, _, b) = get(&c, &gw.url("/public"), &[]).await;
        assert_eq!(s, StatusCode::OK, "/x/* matches /x itself");
        assert_eq!(json(&b)["path"], "/");

        let (s, _, b) = get(&c, &gw.url("/"), &[]).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&b)["path"], "/");

        // Upstream base path is prepended; percent-decoded path is re-encoded.
        let (s, _, b) = send(&c, "PUT", &gw.url("/api/meetings/caf%C3%A9"), &[], empty()).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&b)["path"], "/base/api/meetings/caf%C3%A9");
    }
}

#[tokio::test]
async fn host_matching_ignores_case_and_port() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    let c = gw.h1();
    let url = gw.url("/api/orgs/acme/meetings/7");
    let (s, _, _) = get(&c, &url, &[("host", "APP.example.COM:8443")]).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = get(&c, &url, &[("host", "other.example.com")]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(json(&b)["error"], "no_route");
}

#[tokio::test]
async fn not_found_and_method_not_allowed_with_allow() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    for c in [gw.h1(), gw.h2()] {
        let (s, h, b) = get(&c, &gw.url("/nothing/here"), &[]).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(h["content-type"], "application/json");
        assert_eq!(json(&b)["error"], "no_route");

        // Two routes share the path; neither allows DELETE: Allow lists both.
        let (s, h, b) = send(&c, "DELETE", &gw.url("/api/meetings/1"), &[], empty()).await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(h["allow"], "GET, PUT");
        assert_eq!(json(&b)["error"], "method_not_allowed");

        // A later route with the right method wins over an earlier 405.
        let (s, _, _) = send(&c, "PUT", &gw.url("/api/meetings/1"), &[], empty()).await;
        assert_eq!(s, StatusCode::OK);
    }
}

#[tokio::test]
async fn unsafe_paths_are_400_before_routing() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    let cases = [
        "/public/..%2fadmin",
        "/public/a%2Fb",
        "/public/a%5cb",
        "/public/%2e%2e/admin",
        "/public/%2E/x",
        "/public//x",
        "/public/a%00b",
        "/public/a%0d%0ab",
        "/public/%zz",
        "/public/%c0%ae%c0%ae",
        "/nothing/%2e%2e",
    ];
    for c in [gw.h1(), gw.h2()] {
        for p in cases {
            let (s, h, b) = get(&c, &gw.url(p), &[]).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
            assert_eq!(h["content-type"], "application/json");
            assert_eq!(json(&b)["error"], "invalid_path", "{p}");
        }
    }
}

#[tokio::test]
async fn raw_dot_segments_are_400() {
    // hyper's client would keep these as written; send them raw to be sure.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    for target in ["/public/../admin", "/public/./x", "/public/a/.."] {
        let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
        s.write_all(
            format!("GET {target} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{target}: {out}");
        assert!(out.contains("invalid_path"), "{target}: {out}");
    }
}

#[tokio::test]
async fn header_hygiene() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    for (i, c) in [gw.h1(), gw.h2()].into_iter().enumerate() {
        let mut hdrs = vec![
            ("x-auth-subject", "mallory"),
            ("X-Auth-Roles", "admin"),
            ("x_auth_tenant", "evil"),
            ("x-zoom-user-id", "spoof"),
            ("x_zoom_meeting_id", "spoof"),
            ("x-webhook-verified", "zoom"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "for=1.2.3.4"),
            ("authorization", "Bearer secret-token-value"),
            ("x-custom", "kept"),
        ];
        if i == 0 {
            // HTTP/1.1 only: hop-by-hop headers and names listed in Connection.
            hdrs.extend([
                ("connection", "keep-alive, X-Hop-Listed"),
                ("x-hop-listed", "drop me"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("upgrade", "h2c"),
            ]);
        }
        let (s, _, b) = get(&c, &gw.url("/public/h"), &hdrs).await;
        assert_eq!(s, StatusCode::OK);
        let v = json(&b);
        let h = v["headers"].as_object().unwrap();
        for gone in [
            "x-auth-subject",
            "x-auth-roles",
            "x_auth_tenant",
            "x-zoom-user-id",
            "x_zoom_meeting_id",
            "x-webhook-verified",
            "x_forwarded_for",
            "forwarded",
            "authorization",
            "x-hop-listed",
            "keep-alive",
            "te",
            "proxy-authorization",
            "upgrade",
        ] {
            assert!(!h.contains_key(gone), "{gone} reached the upstream: {v}");
        }
        assert_eq!(h["x-custom"], "kept");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1", "replaced, not appended");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(
            h["x-forwarded-host"],
            format!("localhost:{}", gw.gw.tls_addr.port())
        );
        assert_eq!(
            h["host"],
            up.to_string(),
            "upstream Host is the upstream authority"
        );
    }
}

#[tokio::test]
async fn forward_bearer_and_preserve_host_are_opt_in() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/pass/x"),
        &[("authorization", "Bearer abc")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    assert_eq!(v["headers"]["authorization"], "Bearer abc");
    assert_eq!(
        v["headers"]["host"],
        format!("localhost:{}", gw.gw.tls_addr.port())
    );
}

#[tokio::test]
async fn admin_paths_are_not_on_the_public_listener() {
    let up = echo_upstream().await;
    let gw = gateway(up).await;
    let (s, _, _) = get(&gw.h1(), &gw.url("/healthz"), &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let admin = gw.gw.admin_addr.unwrap();
    for p in ["/healthz", "/readyz"] {
        assert_eq!(admin_get(admin, p).await.0, StatusCode::OK, "{p}");
    }
}
