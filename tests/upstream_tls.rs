//! HTTPS upstreams (trust from `upstream_ca` or `[outbound] ca_file`, HTTP/2
//! by ALPN) and the optional plaintext listener.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use common::*;
use http::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// An HTTPS upstream (h2 and http/1.1) with its own CA; answers with the
/// protocol version it saw.
async fn tls_upstream() -> (SocketAddr, Certs) {
    let certs = Certs::new();
    let (cfg, _) = meetgate::tls::server_config(&certs.cert, &certs.key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let v = serde_json::json!({ "version": format!("{:?}", req.version()), "path": req.uri().path() });
                        Ok::<_, Infallible>(Response::new(full(v.to_string())))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, certs)
}

#[tokio::test]
async fn https_upstream_trusted_through_upstream_ca_speaks_h2() {
    let (up, up_certs) = tls_upstream().await;
    let gw = TestGateway::start(&format!(
        r#"
[[route]]
name = "trusted"
path = "/t/*"
upstream = "https://localhost:{port}"
upstream_ca = "{ca}"
authenticate = "none"

[[route]]
name = "untrusted"
path = "/u/*"
upstream = "https://localhost:{port}"
authenticate = "none"
"#,
        port = up.port(),
        ca = up_certs.ca.display()
    ))
    .await;
    let (s, _, b) = get(&gw.h1(), &gw.url("/t/x"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    assert_eq!(
        v["version"], "HTTP/2.0",
        "ALPN picks h2 for https upstreams"
    );
    assert_eq!(v["path"], "/t/x");
    // The same upstream without its CA: the certificate is not trusted.
    let (s, _, b) = get(&gw.h1(), &gw.url("/u/x"), &[]).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert_eq!(json(&b)["error"], "upstream_unavailable");
}

#[tokio::test]
async fn outbound_ca_file_applies_to_every_upstream() {
    let (up, up_certs) = tls_upstream().await;
    let gw = TestGateway::start(&format!(
        "\n[outbound]\nca_file = \"{}\"\n\n[[route]]\nname = \"r\"\npath = \"/*\"\nupstream = \"https://localhost:{}\"\nauthenticate = \"none\"\n",
        up_certs.ca.display(),
        up.port()
    ))
    .await;
    assert_eq!(get(&gw.h2(), &gw.url("/x"), &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn plain_listener_serves_the_same_routes_with_proto_http() {
    let up = echo_upstream().await;
    let gw = TestGateway::start_with(
        &format!("\n[[route]]\nname = \"r\"\npath = \"/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n"),
        "plain_listen = \"127.0.0.1:0\"",
        Default::default(),
    )
    .await;
    let plain = gw.gw.plain_addr.expect("plain listener bound");
    let c =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<TestBody>();
    let (s, _, b) = get(
        &c,
        &format!("http://{plain}/hello"),
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = json(&b);
    assert_eq!(
        v["headers"]["x-forwarded-proto"], "http",
        "set by the gateway, not the client"
    );
}
