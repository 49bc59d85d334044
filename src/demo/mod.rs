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

mod zoom;
pub use zoom::DevZoom;

/// The demo configuration; `{listen}`, `{admin}`, `{upstream}`, `{issuer}`
/// and `{zoom}` are filled in at start. Kept in the repository as `config/demo.toml.in`.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml.in");

/// The demo Zoom app's credentials (as written in `config/demo.toml.in`).
const DEMO_ZOOM_CLIENT_ID: &str = "demoSdkKey";
const DEMO_ZOOM_CLIENT_SECRET: &str = "demo-meeting-sdk-secret";

/// A Vonage session id of the demo (any well-formed one works: the demo
/// mints tokens, it does not call Vonage).
const DEMO_VONAGE_SESSION: &str =
    "2_MX5hYWFhYWFhYS1iYmJiLTRjY2MtOGRkZC0wMTIzNDU2Nzg5YWJ-fjE3NjcyMjU2MDAwMDB-dGVzdHNlc3Npb25-fn4";

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
    /// The local development issuer (`http://` + this).
    pub issuer: SocketAddr,
}

/// Writes development certificates and the demo configuration into
/// `opts.dir`, and starts the echo upstream on an ephemeral loopback port.
pub async fn prepare(opts: &DemoOptions) -> anyhow::Result<DemoSetup> {
    let certs = crate::tls::generate_dev_certs(&["localhost", "127.0.0.1", "::1"])?;
    let (ca_path, _, _) = certs.write_to(&opts.dir)?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = listener.local_addr()?;
    tokio::spawn(echo_upstream(listener));
    let issuer_listener = TcpListener::bind("127.0.0.1:0").await?;
    let issuer = issuer_listener.local_addr()?;
    let dev_issuer = DevIssuer::new(format!("http://{issuer}"))?;
    tokio::spawn(dev_issuer.serve(issuer_listener));
    let zoom_listener = TcpListener::bind("127.0.0.1:0").await?;
    let zoom = format!("http://{}", zoom_listener.local_addr()?);
    let dev_zoom = DevZoom::new(zoom.clone(), DEMO_ZOOM_CLIENT_ID, DEMO_ZOOM_CLIENT_SECRET);
    tokio::spawn(dev_zoom.serve(zoom_listener));
    let config = DEMO_CONFIG
        .replace("{listen}", &opts.listen.to_string())
        .replace("{admin}", &opts.admin_listen.to_string())
        .replace("{upstream}", &upstream.to_string())
        .replace("{issuer}", &format!("http://{issuer}"))
        .replace("{zoom}", &zoom);
    // A fresh RSA key stands in for the Vonage application's private.key.
    let vonage_key =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)?;
    std::fs::write(opts.dir.join("vonage-demo.key"), vonage_key.serialize_pem())?;
    let config_path = opts.dir.join("meetgate.toml");
    std::fs::write(&config_path, config)?;
    Ok(DemoSetup {
        config_path,
        ca_path,
        upstream,
        issuer,
    })
}

/// The examples the demo prints, as data: two lines each (`STATUS what it
/// shows`, then the command template); the format and placeholders are
/// described at the top of the file.
const EXAMPLES: &str = include_str!("examples.txt");

/// One printed example: what it shows, the command, the status it gets.
pub struct Example {
    pub what: &'static str,
    pub command: String,
    pub expect: u16,
}

/// The curl lines printed by the demo: `examples.txt` with its placeholders
/// filled in. Examples naming `{admin}` are left out without an admin listener.
pub fn examples(
    ca: &Path,
    gw: SocketAddr,
    admin: Option<SocketAddr>,
    issuer: SocketAddr,
) -> Vec<Example> {
    let ca = ca.display().to_string();
    let base = format!("https://{gw}");
    let admin = admin.map(|a| a.to_string());
    let issuer = format!("http://{issuer}");
    example_templates()
        .filter(|t| admin.is_some() || !t.command.contains("{admin}"))
        .map(|t| Example {
            what: t.what,
            expect: t.expect,
            command: with_tokens(t.command, &issuer)
                .replace("{ca}", &ca)
                .replace("{base}", &base)
                .replace("{admin}", admin.as_deref().unwrap_or_default())
                .replace("{vonage_session}", DEMO_VONAGE_SESSION),
        })
        .collect()
}

/// One entry of `examples.txt`, its command still a template.
struct Template {
    expect: u16,
    what: &'static str,
    command: &'static str,
}

/// The entries of `examples.txt`, in order. The file is part of the binary
/// and a unit test reads all of it, so a malformed entry cannot ship.
fn example_templates() -> impl Iterator<Item = Template> {
    let mut lines = EXAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    std::iter::from_fn(move || {
        let head = lines.next()?;
        let (status, what) = head.split_once(' ').expect("examples.txt: `STATUS what`");
        Some(Template {
            expect: status.parse().expect("examples.txt: a numeric status"),
            what,
            command: lines
                .next()
                .expect("examples.txt: a command after each `STATUS what`"),
        })
    })
}

/// Replaces each `{token:QUERY}` with a call to the development issuer.
fn with_tokens(command: &str, issuer: &str) -> String {
    const OPEN: &str = "{token:";
    let mut out = String::new();
    let mut rest = command;
    while let Some(start) = rest.find(OPEN) {
        let query_and_rest = &rest[start + OPEN.len()..];
        let end = query_and_rest
            .find('}')
            .expect("examples.txt: `{token:QUERY}` closed");
        out.push_str(&rest[..start]);
        out.push_str(&format!(
            "$(curl -s '{issuer}/token?{}')",
            &query_and_rest[..end]
        ));
        rest = &query_and_rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A development OIDC issuer: a fresh P-256 key, discovery, JWKS, and
/// `GET /token?sub=..&roles=a,b&tenant=..` answering a signed access token
/// (audience `api://meetings`, valid one hour). For the demo only.
pub struct DevIssuer {
    url: String,
    key: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl DevIssuer {
    /// A new issuer at `url` with a freshly generated key.
    pub fn new(url: String) -> anyhow::Result<Self> {
        let pem = rcgen::KeyPair::generate()?.serialize_pem();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())?;
        let mut jwk = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(
            &key,
            jsonwebtoken::Algorithm::ES256,
        )?)?;
        jwk["kid"] = "demo-1".into();
        jwk["use"] = "sig".into();
        Ok(DevIssuer { url, key, jwk })
    }

    /// Serves the issuer on `listener`.
    pub async fn serve(self, listener: TcpListener) {
        let me = std::sync::Arc::new(self);
        serve_http1(listener, move |req| {
            let me = me.clone();
            async move { me.answer(&req) }
        })
        .await
    }

    fn answer<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        let json = |v: serde_json::Value| {
            let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        };
        match req.uri().path() {
            "/.well-known/openid-configuration" => json(serde_json::json!({
                "issuer": self.url,
                "jwks_uri": format!("{}/jwks", self.url),
            })),
            "/jwks" => json(serde_json::json!({ "keys": [self.jwk] })),
            "/token" => {
                let q: std::collections::HashMap<String, String> = req
                    .uri()
                    .query()
                    .unwrap_or_default()
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| {
                        let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                        (k.to_owned(), v.into_owned())
                    })
                    .collect();
                Response::new(Full::new(Bytes::from(self.token(&q))))
            }
            _ => {
                let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
                *r.status_mut() = http::StatusCode::NOT_FOUND;
                r
            }
        }
    }

    fn token(&self, q: &std::collections::HashMap<String, String>) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let roles: Vec<&str> = q
            .get("roles")
            .map(|r| r.split(',').filter(|s| !s.is_empty()).collect())
            .unwrap_or_default();
        let claims = serde_json::json!({
            "iss": self.url,
            "sub": q.get("sub").map_or("demo-user", String::as_str),
            "aud": "api://meetings",
            "iat": now,
            "exp": now + 3600,
            "groups": roles,
            "org_id": q.get("tenant").map_or("acme", String::as_str),
            "scope": "meetings:read meetings:write",
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("demo-1".to_owned());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap_or_default()
    }
}

/// A small upstream that answers every request with a JSON description of
/// what it received (method, path, query, headers, body size).
/// Serves HTTP/1.1 on `listener`, one task per connection, every request
/// answered by `handler` (the demo's local stand-ins).
pub(crate) async fn serve_http1<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let fut = handler(req);
                async move { Ok::<_, hyper::Error>(fut.await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        });
    }
}

pub async fn echo_upstream(listener: TcpListener) {
    serve_http1(listener, |req| async move {
        echo(req).await.unwrap_or_else(|_| {
            let mut r = Response::new(Full::new(Bytes::from_static(b"body failed")));
            *r.status_mut() = http::StatusCode::BAD_REQUEST;
            r
        })
    })
    .await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(admin: Option<SocketAddr>) -> Vec<Example> {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        examples(Path::new("/tmp/ca.pem"), addr, admin, addr)
    }

    #[test]
    fn every_example_is_well_formed_and_filled_in() {
        let all = filled(Some("127.0.0.1:9901".parse().unwrap()));
        assert_eq!(all.len(), 27);
        for ex in &all {
            assert!((100..600).contains(&ex.expect), "{}", ex.what);
            assert!(!ex.what.is_empty());
            assert!(
                ex.command.starts_with("curl ") || ex.command.starts_with("B="),
                "{}",
                ex.command
            );
            // No placeholder is left: `{` before a name is one (JSON bodies have `{"`).
            let left = ex
                .command
                .match_indices('{')
                .any(|(i, _)| ex.command[i + 1..].starts_with(|c: char| c.is_ascii_lowercase()));
            assert!(!left, "unfilled placeholder in {}", ex.command);
        }
        let token = &all[2].command;
        assert!(token.contains(
            "$(curl -s 'http://127.0.0.1:8443/token?sub=alice&roles=meeting-creators&tenant=acme')"
        ));
        assert!(all[26].command.contains("'http://127.0.0.1:9901/metrics'"));
    }

    #[test]
    fn admin_examples_only_with_an_admin_listener() {
        let with = filled(Some("127.0.0.1:9901".parse().unwrap()));
        let without = filled(None);
        assert_eq!(without.len(), 24);
        for (a, b) in without.iter().zip(&with) {
            assert_eq!(a.command, b.command);
        }
        assert!(with[24..]
            .iter()
            .all(|ex| ex.command.contains("http://127.0.0.1:9901/")));
    }
}
