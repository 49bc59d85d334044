//! Adversarial requests: each must be refused, or handled without reaching
//! the upstream in a form the gateway did not check.

mod common;

use common::h2::{h2_frame, hpack_literal};
use common::issuer::{Issuer, SigningKey};
use common::*;
use http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway(up: std::net::SocketAddr, issuer: &str) -> TestGateway {
    TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{issuer}"
audiences = ["api://meetings"]
algorithms = ["RS256"]

[[route]]
name = "admin"
path = "/admin/*"
upstream = "http://{up}"
authenticate = "corp"

[[route]]
name = "public"
path = "/*"
upstream = "http://{up}"
authenticate = "none"
"#
    ))
    .await
}

async fn raw(gw: &TestGateway, request: &[u8]) -> String {
    let mut s = raw_tls(gw.gw.tls_addr, &gw.certs).await;
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn smuggling_and_malformed_framing_are_refused() {
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    let cases: [(&str, &[u8]); 6] = [
        ("TE other than chunked", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        ("TE twice", b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("duplicate Content-Length", b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("obs-fold", b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n"),
        ("NUL in a value", b"GET /x HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n"),
        ("empty header name", b"GET /x HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n"),
    ];
    for (what, req) in cases {
        let out = raw(&gw, req).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{what}: {out}");
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the upstream: {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_desync_the_upstream() {
    // RFC 9112 section 6.1: Transfer-Encoding wins, the connection is closed
    // after the answer. The upstream gets one framing only, so a smuggled
    // second request cannot ride along.
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    let out = raw(
        &gw,
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin/x HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    if out.starts_with("HTTP/1.1 200") {
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            1,
            "the trailing request was not processed: {seen:?}"
        );
        assert!(
            seen[0].1.get("content-length").is_none(),
            "one framing upstream"
        );
    } else {
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(seen.lock().unwrap().is_empty());
    }
    assert_eq!(
        out.matches("HTTP/1.1 ").count(),
        1,
        "only one answer: {out}"
    );
}

#[tokio::test]
async fn duplicated_authorization_headers_are_refused() {
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/admin/x"),
        &[
            ("authorization", "Bearer a.b.c"),
            ("authorization", "Bearer d.e.f"),
        ],
    )
    .await;
    assert_eq!(
        (s, json(&b)["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn duplicate_json_members_in_a_token_are_refused() {
    let key = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, &issuer.url).await;
    common::wait_until("keys", std::time::Duration::from_secs(5), || {
        issuer.fetches() >= 1
    })
    .await;
    let now = common::issuer::now();
    let ok = key.sign(&issuer.claims("alice", json!({})));
    assert_eq!(
        get(
            &gw.h1(),
            &gw.url("/admin/x"),
            &[("authorization", &format!("Bearer {ok}"))]
        )
        .await
        .0,
        StatusCode::OK
    );
    // Signed by the issuer's key, but ambiguous: which `sub` is meant?
    let claims = format!(
        r#"{{"iss":"{}","sub":"alice","aud":"api://meetings","exp":{},"sub":"admin"}}"#,
        issuer.url,
        now + 600
    );
    let header = r#"{"alg":"RS256","kid":"rsa-1","alg":"none"}"#;
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    for (h, c) in [
        (
            r#"{"alg":"RS256","kid":"rsa-1"}"#.to_owned(),
            claims.clone(),
        ),
        (
            header.to_owned(),
            format!(
                r#"{{"iss":"{}","sub":"alice","aud":"api://meetings","exp":{}}}"#,
                issuer.url,
                now + 600
            ),
        ),
    ] {
        let msg = format!("{}.{}", b64(&h), b64(&c));
        let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key.key, Algorithm::RS256).unwrap();
        let (s, _, b) = get(
            &gw.h1(),
            &gw.url("/admin/x"),
            &[("authorization", &format!("Bearer {msg}.{sig}"))],
        )
        .await;
        assert_eq!(
            (s, json(&b)["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("malformed_token")),
            "{h} {c}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "only the well-formed token reached the upstream"
    );
}

#[tokio::test]
async fn no_normalization_difference_reaches_the_protected_route() {
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    // Refused outright.
    for p in [
        "/public/..%2fadmin/x",
        "/%2e%2e/admin/x",
        "/x/%2E%2E/admin",
        "/admin%2fx",
        "//admin/x",
        "/ADMIN%5cx",
    ] {
        assert_eq!(
            get(&gw.h1(), &gw.url(p), &[]).await.0,
            StatusCode::BAD_REQUEST,
            "{p}"
        );
    }
    // Not the admin route, and the upstream sees exactly what was matched:
    // a `;` parameter or an encoded `?`/`#` stays inside its segment.
    for (p, upstream_sees) in [
        ("/admin;jsessionid=1/x", "/admin%3Bjsessionid=1/x"),
        ("/admin%3Fx/y", "/admin%3Fx/y"),
        ("/admin%23/x", "/admin%23/x"),
    ] {
        let (s, _, _) = get(&gw.h1(), &gw.url(p), &[]).await;
        assert_eq!(s, StatusCode::OK, "{p} is a public path");
        assert_eq!(seen.lock().unwrap().last().unwrap().0, upstream_sees);
    }
    // Case matters: /Admin is not /admin (routes are case-sensitive, like the upstream's paths).
    assert_eq!(
        get(&gw.h1(), &gw.url("/admin/x"), &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn connection_listed_forwarding_and_identity_headers_cannot_be_smuggled() {
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    let out = raw(
        &gw,
        b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close, X-Forwarded-For, X-Auth-Subject\r\nX-Forwarded-For: 6.6.6.6\r\nX-Auth-Subject: root\r\nX_Auth_Subject: root\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = seen.lock().unwrap();
    let h = &seen.last().unwrap().1;
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "the gateway's value, not the client's"
    );
    assert!(h.get("x-auth-subject").is_none() && h.get("x_auth_subject").is_none());
}

/// What the server did with one raw HTTP/2 request on stream 1.
#[derive(Debug, PartialEq)]
enum H2Outcome {
    /// RST_STREAM with this error code (1 = PROTOCOL_ERROR).
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// A response; the status when the server sent it as an indexed static
    /// entry (200, 204, 206, 304, 400, 404, 500), else 0.
    Response(u16),
    /// Connection closed without any of those.
    Closed,
}

/// A header block as sent: (name, value) pairs in order.
type Fields<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Sends exactly `fields` (in order, duplicates and all) as the header
/// block of stream 1 over TLS with ALPN h2, bypassing every client-side
/// check, and reports what the server did.
async fn h2_raw(gw: &TestGateway, fields: &[(&[u8], &[u8])]) -> H2Outcome {
    let tcp = tokio::net::TcpStream::connect(gw.gw.tls_addr)
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(gw.certs.client_tls(&[b"h2"])));
    let mut s = tls
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut block = Vec::new();
    for (n, v) in fields {
        hpack_literal(&mut block, n, v);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(4, 0, 0, &[]));
    out.extend(h2_frame(1, 0x1 | 0x4, 1, &block));
    s.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if s.read_exact(&mut head).await.is_err() {
                return H2Outcome::Closed;
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if s.read_exact(&mut payload).await.is_err() {
                return H2Outcome::Closed;
            }
            match kind {
                // SETTINGS from the server: acknowledge.
                4 if flags & 1 == 0 => {
                    let _ = s.write_all(&h2_frame(4, 1, 0, &[])).await;
                }
                3 if stream == 1 => {
                    return H2Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
                }
                7 => {
                    return H2Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
                }
                1 if stream == 1 => {
                    let mut block = &payload[..];
                    if flags & 0x8 != 0 {
                        // PADDED
                        let pad = block[0] as usize;
                        block = &block[1..block.len() - pad];
                    }
                    if flags & 0x20 != 0 {
                        // PRIORITY
                        block = &block[5..];
                    }
                    let status = match block.first() {
                        Some(0x88) => 200,
                        Some(0x89) => 204,
                        Some(0x8a) => 206,
                        Some(0x8b) => 304,
                        Some(0x8c) => 400,
                        Some(0x8d) => 404,
                        Some(0x8e) => 500,
                        _ => 0,
                    };
                    return H2Outcome::Response(status);
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), read)
        .await
        .expect("the server answered, reset or closed within 5 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_pseudo_header_abuse_never_reaches_the_upstream() {
    let (up, seen) = header_recorder().await;
    let gw = TestGateway::start(&format!(
        "\n[[route]]\nname = \"public\"\npath = \"/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\npreserve_host = true\n"
    ))
    .await;
    let authority: &[u8] = b"localhost";
    let base: Fields = vec![
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", authority),
        (b":path", b"/ok"),
    ];
    // The raw client itself works: a well-formed request is forwarded.
    assert_eq!(h2_raw(&gw, &base).await, H2Outcome::Response(200));
    assert_eq!(seen.lock().unwrap().len(), 1);

    let without =
        |name: &[u8]| -> Fields { base.iter().filter(|(n, _)| *n != name).cloned().collect() };
    let with = |extra: &[(&'static [u8], &'static [u8])]| -> Fields {
        base.iter().cloned().chain(extra.iter().cloned()).collect()
    };
    let mut cases: Vec<(&str, Fields)> = vec![
        ("no :path", without(b":path")),
        ("no :method", without(b":method")),
        ("no :scheme", without(b":scheme")),
        ("two :path", with(&[(b":path", b"/admin")])),
        ("two :method", with(&[(b":method", b"DELETE")])),
        ("unknown pseudo-header", with(&[(b":protocol2", b"x")])),
        (
            "response pseudo-header in a request",
            with(&[(b":status", b"200")]),
        ),
        ("uppercase header name", with(&[(b"X-Auth-User", b"admin")])),
        (
            "connection-specific header",
            with(&[(b"connection", b"keep-alive")]),
        ),
        (
            "transfer-encoding",
            with(&[(b"transfer-encoding", b"chunked")]),
        ),
        ("te other than trailers", with(&[(b"te", b"gzip")])),
        (
            "CR LF in a value",
            with(&[(b"x-a", b"1\r\nx-auth-user: admin")]),
        ),
        ("NUL in a value", with(&[(b"x-a", b"1\0")])),
        ("empty header name", with(&[(b"", b"x")])),
        ("space in a header name", with(&[(b"x a", b"x")])),
    ];
    // A pseudo-header after a regular one.
    cases.push((
        "pseudo-header after a regular header",
        vec![
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b"x-a", b"1"),
            (b":authority", authority),
            (b":path", b"/ok"),
        ],
    ));
    // :path that is not origin-form.
    for path in [&b"https://evil.example/ok"[..], b"ok", b"", b"*"] {
        cases.push((
            "non-origin :path",
            vec![
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", authority),
                (b":path", path),
            ],
        ));
    }
    for (what, fields) in &cases {
        let before = seen.lock().unwrap().len();
        let outcome = h2_raw(&gw, fields).await;
        assert!(
            matches!(
                outcome,
                H2Outcome::Reset(_)
                    | H2Outcome::GoAway(_)
                    | H2Outcome::Closed
                    | H2Outcome::Response(400 | 404)
            ),
            "{what}: {outcome:?}"
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            before,
            "{what}: reached the upstream"
        );
    }

    // :authority and a disagreeing Host: routed and forwarded by
    // :authority only; the Host the upstream sees is never the other one.
    let outcome = h2_raw(&gw, &with(&[(b"host", b"evil.example")])).await;
    let last = seen.lock().unwrap().last().cloned();
    if outcome == H2Outcome::Response(200) {
        let (_, h) = last.unwrap();
        for v in h.values() {
            assert!(!v.as_bytes().windows(4).any(|w| w == b"evil"), "{h:?}");
        }
    } else {
        assert!(
            matches!(outcome, H2Outcome::Reset(_) | H2Outcome::Response(400)),
            "{outcome:?}"
        );
    }

    // Still serving after all of that.
    assert_eq!(h2_raw(&gw, &base).await, H2Outcome::Response(200));
}

#[tokio::test]
async fn trace_and_connect_are_answered_by_the_gateway_and_never_forwarded() {
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    for req in [
        &b"TRACE /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"TRACE /admin/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"CONNECT upstream.example:443 HTTP/1.1\r\nHost: upstream.example:443\r\nConnection: close\r\n\r\n",
    ] {
        let out = raw(&gw, req).await;
        assert!(
            out.starts_with("HTTP/1.1 405"),
            "{}: {out}",
            String::from_utf8_lossy(req)
        );
        assert!(out.contains("\"error\":\"method_not_allowed\""), "{out}");
        let allow = out
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("allow:"))
            .unwrap_or_else(|| panic!("no Allow: {out}"));
        assert!(allow.contains("GET") && !allow.contains("TRACE"), "{allow}");
    }
    // Over HTTP/2 too.
    let (s, _, _) = send(&gw.h2(), "TRACE", &gw.url("/x"), &[], empty()).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        seen.lock().unwrap().is_empty(),
        "reached the upstream: {:?}",
        seen.lock().unwrap()
    );
}

#[tokio::test]
async fn http11_requests_need_exactly_one_host() {
    let (up, seen) = header_recorder().await;
    let gw = gateway(up, "https://idp.example").await;
    for (what, req) in [
        (
            "no Host",
            &b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        ),
        (
            "two Host lines",
            b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
        ),
        (
            "two Host lines, HTTP/1.0",
            b"GET /x HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
    ] {
        let out = raw(&gw, req).await;
        assert!(
            out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.0 400"),
            "{what}: {out}"
        );
        assert!(out.contains("\"error\":\"invalid_host\""), "{what}: {out}");
    }
    assert!(seen.lock().unwrap().is_empty());
    // HTTP/1.0 may leave Host out.
    let out = raw(&gw, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    // The upstream reads the whole body before answering.
    let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
        use http_body_util::BodyExt;
        let _ = req.into_body().collect().await;
        http::Response::new(full("ok"))
    })
    .await;
    let gw = gateway(up, "https://idp.example").await;
    let out = raw(
        &gw,
        b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz-not-a-size\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains("\"error\":\"invalid_body\""), "{out}");
    let metrics = gw.gw.state.metrics.encode();
    assert_eq!(
        metric(
            &metrics,
            r#"meetgate_auth_decisions_total{route="public",decision="deny",reason="invalid_body"}"#
        ),
        1.0,
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"reason="upstream_unavailable""#),
        "{metrics}"
    );
}
