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

/// One printed example: what it shows, the command, the status it gets.
pub struct Example {
    pub what: &'static str,
    pub command: String,
    pub expect: u16,
}

/// The curl lines printed by the demo.
pub fn examples(
    ca: &Path,
    gw: SocketAddr,
    admin: Option<SocketAddr>,
    issuer: SocketAddr,
) -> Vec<Example> {
    let ca = ca.display();
    let base = format!("https://{gw}");
    let token = |q: &str| format!("$(curl -s 'http://{issuer}/token?{q}')");
    let mut lines = vec![
        Example {
            what: "a public route, forwarded to the echo upstream (prefix stripped, X-Forwarded-* set)",
            command: format!("curl --cacert {ca} '{base}/public/hello?greeting=hi'"),
            expect: 200,
        },
        Example {
            what: "the same over HTTP/2, with a spoofed identity header the gateway removes",
            command: format!("curl --http2 --cacert {ca} -H 'X-Auth-Subject: mallory' '{base}/public/whoami'"),
            expect: 200,
        },
        Example {
            what: "a token from the local issuer for a meeting creator of tenant acme: allowed, identity headers set",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" '{base}/api/orgs/acme/meetings'",
                token("sub=alice&roles=meeting-creators&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "a valid token without the meeting-creators role: 403 insufficient_role",
            command: format!(
                "curl -i --cacert {ca} -H \"Authorization: Bearer {}\" '{base}/api/orgs/acme/meetings'",
                token("sub=bob&roles=viewers&tenant=acme")
            ),
            expect: 403,
        },
        Example {
            what: "the right role for another tenant: 403 tenant_mismatch",
            command: format!(
                "curl -i --cacert {ca} -H \"Authorization: Bearer {}\" '{base}/api/orgs/acme/meetings'",
                token("sub=carol&roles=meeting-creators&tenant=globex")
            ),
            expect: 403,
        },
        Example {
            what: "a Meeting SDK signature for a host (role 1), minted by the gateway",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{\"meetingNumber\": 85746065432, \"role\": 1}}' '{base}/api/sdk-signature'",
                token("sub=hana&roles=meeting-hosts&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "a participant's signature (role 0)",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{\"meetingNumber\": \"85746065432\", \"role\": 0}}' '{base}/api/sdk-signature'",
                token("sub=pat&roles=viewers&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "a participant asking for host: 403 host_role_not_permitted",
            command: format!(
                "curl -i --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{\"meetingNumber\": 85746065432, \"role\": 1}}' '{base}/api/sdk-signature'",
                token("sub=pat&roles=viewers&tenant=acme")
            ),
            expect: 403,
        },
        Example {
            what: "a browser app on http://localhost:5173 asks first (CORS preflight, no token needed): 204 with Access-Control-Allow-Origin, -Methods, -Headers",
            command: format!(
                "curl -i --cacert {ca} -X OPTIONS -H 'Origin: http://localhost:5173' -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: authorization,content-type' '{base}/api/sdk-signature'"
            ),
            expect: 204,
        },
        Example {
            what: "a page on an origin the policy does not list: 403 cors_not_allowed, no Access-Control-Allow-* (the browser refuses to send the POST)",
            command: format!(
                "curl -i --cacert {ca} -X OPTIONS -H 'Origin: https://evil.example.net' -H 'Access-Control-Request-Method: POST' '{base}/api/sdk-signature'"
            ),
            expect: 403,
        },
        Example {
            what: "a meeting outside the app's account needs the user's own Zoom token: 409 zoom_user_not_connected until connected",
            command: format!(
                "curl -i --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{\"meetingNumber\": 85746065432}}' '{base}/api/sdk-join'",
                token("sub=ext&roles=viewers&tenant=acme")
            ),
            expect: 409,
        },
        Example {
            what: "connect alice's Zoom user: the app gets authorize_url, the browser follows it to (stand-in) Zoom and back through the callback to return_to (curl -L plays the browser)",
            command: format!(
                "curl -L --cacert {ca} \"$(curl -s --cacert {ca} -H \"Authorization: Bearer {}\" '{base}/zoom/connect' | sed -E 's/.*\"authorize_url\":\"([^\"]*)\".*/\\1/')\"",
                token("sub=alice&roles=viewers&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "alice is connected (status never shows a token)",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" '{base}/zoom/status'",
                token("sub=alice&roles=viewers&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "her Meeting SDK answer now carries her ZAK and an OBF token for this meeting",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{\"meetingNumber\": 85746065432}}' '{base}/api/sdk-join'",
                token("sub=alice&roles=viewers&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "a Vonage client token for a meeting host: role moderator (from the token's roles), connection data from its claims",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{}}' '{base}/api/video/sessions/{DEMO_VONAGE_SESSION}/token'",
                token("sub=hana&roles=meeting-hosts&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "a viewer gets a subscriber token; asking for moderator is 403 role_not_permitted",
            command: format!(
                "curl -i --cacert {ca} -H \"Authorization: Bearer {}\" -d '{{\"role\": \"moderator\"}}' '{base}/api/video/sessions/{DEMO_VONAGE_SESSION}/token'",
                token("sub=pat&roles=viewers&tenant=acme")
            ),
            expect: 403,
        },
        Example {
            what: "the app's join endpoint receives a minted X-Zoom-Signature (see the echoed headers)",
            command: format!(
                "curl --cacert {ca} -H \"Authorization: Bearer {}\" '{base}/api/meetings/85746065432/join?role=1'",
                token("sub=hana&roles=meeting-hosts&tenant=acme")
            ),
            expect: 200,
        },
        Example {
            what: "no token: 401 with WWW-Authenticate",
            command: format!("curl -i --cacert {ca} '{base}/api/orgs/acme/meetings'"),
            expect: 401,
        },
        Example {
            what: "Zoom's URL validation, signed with the demo secret token: answered by the gateway",
            command: format!(
                "B='{{\"event\":\"endpoint.url_validation\",\"payload\":{{\"plainToken\":\"demo-plain-token\"}}}}'; TS=$(date +%s); \
                 curl --cacert {ca} -H \"x-zm-request-timestamp: $TS\" \
                 -H \"x-zm-signature: v0=$(printf 'v0:%s:%s' \"$TS\" \"$B\" | openssl dgst -sha256 -hmac demo-webhook-secret | sed 's/^.*= //')\" \
                 -d \"$B\" '{base}/webhooks/zoom'"
            ),
            expect: 200,
        },
        Example {
            what: "an unsigned webhook never reaches the app: 401",
            command: format!("curl -i --cacert {ca} -d '{{\"event\":\"meeting.started\"}}' '{base}/webhooks/zoom'"),
            expect: 401,
        },
        Example {
            what: "a path capture route that only allows GET: DELETE is 405 with Allow",
            command: format!("curl -i --cacert {ca} -X DELETE '{base}/api/items/42'"),
            expect: 405,
        },
        Example {
            what: "TRACE is never forwarded (an upstream would echo the injected credentials back): 405",
            command: format!("curl -i --cacert {ca} -X TRACE '{base}/public/hello'"),
            expect: 405,
        },
        Example {
            what: "an encoded slash is refused before routing: 400",
            command: format!("curl -i --cacert {ca} '{base}/public/..%2fadmin'"),
            expect: 400,
        },
        Example {
            what: "no route: 404 with a JSON error",
            command: format!("curl -i --cacert {ca} '{base}/nowhere'"),
            expect: 404,
        },
    ];
    if let Some(admin) = admin {
        lines.push(Example {
            what: "readiness on the admin listener: can this gateway serve (degraded parts named)",
            command: format!("curl 'http://{admin}/readyz'"),
            expect: 200,
        });
        lines.push(Example {
            what: "strict readiness: 200 only when every identity has keys and every credential a token",
            command: format!("curl 'http://{admin}/readyz?strict=1'"),
            expect: 200,
        });
        lines.push(Example {
            what: "Prometheus metrics: requests, decisions, JWKS, credentials, webhooks, reloads",
            command: format!("curl 'http://{admin}/metrics'"),
            expect: 200,
        });
    }
    lines
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
