//! `meetgate demo`: development certificates, a built-in echo upstream and
//! the gateway on an embedded configuration, with curl lines that work as
//! printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The demo configuration; `{listen}`, `{admin}` and `{upstream}` are filled
/// in at start. Kept in the repository as `config/demo.toml.in`.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml.in");

/// Where the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Directory for the generated certificates and configuration.
    pub dir: PathBuf,
}

/// What [`prepare`] set up.
#[derive(Debug)]
pub struct DemoSetup {
    pub config_path: PathBuf,
    pub ca_path: PathBuf,
    pub upstream: SocketAddr,
}

/// Writes development certificates and the demo configuration into
/// `opts.dir`, and starts the echo upstream on an ephemeral loopback port.
pub async fn prepare(opts: &DemoOptions) -> anyhow::Result<DemoSetup> {
    let certs = crate::tls::generate_dev_certs(&["localhost", "127.0.0.1", "::1"])?;
    let (ca_path, _, _) = certs.write_to(&opts.dir)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = listener.local_addr()?;
    tokio::spawn(echo_upstream(listener));
    let config = DEMO_CONFIG
        .replace("{listen}", &opts.listen.to_string())
        .replace("{admin}", &opts.admin_listen.to_string())
        .replace("{upstream}", &upstream.to_string());
    let config_path = opts.dir.join("meetgate.toml");
    std::fs::write(&config_path, config)?;
    Ok(DemoSetup {
        config_path,
        ca_path,
        upstream,
    })
}

/// The curl lines printed by the demo, each with what it shows.
pub fn curl_lines(ca: &Path, gw: SocketAddr, admin: Option<SocketAddr>) -> Vec<(String, String)> {
    let ca = ca.display();
    let base = format!("https://{gw}");
    let mut lines = vec![
        (
            "a public route, forwarded to the echo upstream (prefix stripped, X-Forwarded-* set)"
                .to_owned(),
            format!("curl --cacert {ca} '{base}/public/hello?greeting=hi'"),
        ),
        (
            "the same over HTTP/2, with a spoofed identity header the gateway removes".to_owned(),
            format!(
                "curl --http2 --cacert {ca} -H 'X-Auth-Subject: mallory' '{base}/public/whoami'"
            ),
        ),
        (
            "a path capture route that only allows GET: DELETE is 405 with Allow".to_owned(),
            format!("curl -i --cacert {ca} -X DELETE '{base}/api/items/42'"),
        ),
        (
            "an encoded slash is refused before routing: 400".to_owned(),
            format!("curl -i --cacert {ca} '{base}/public/..%2fadmin'"),
        ),
        (
            "no route: 404 with a JSON error".to_owned(),
            format!("curl -i --cacert {ca} '{base}/nowhere'"),
        ),
    ];
    if let Some(admin) = admin {
        lines.push((
            "readiness on the admin listener".to_owned(),
            format!("curl 'http://{admin}/readyz'"),
        ));
    }
    lines
}

/// A small upstream that answers every request with a JSON description of
/// what it received (method, path, query, headers, body size).
pub async fn echo_upstream(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service_fn(echo))
                .with_upgrades()
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let answer = serde_json::json!({
        "upstream": "meetgate demo echo",
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": body.len(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(
        serde_json::to_vec_pretty(&answer).unwrap_or_default(),
    )));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}
