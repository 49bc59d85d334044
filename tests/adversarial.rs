//! Adversarial requests: each must be refused, or handled without reaching
//! the upstream in a form the gateway did not check.

mod common;

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
