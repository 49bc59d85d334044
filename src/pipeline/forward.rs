//! Forwarding to upstreams: the pooled hyper-util client, header hygiene, and
//! WebSocket upgrades.
//!
//! Bodies stream both ways without buffering; hyper's flow control bounds
//! memory whatever the body size (docs/BEHAVIOUR.md item 11).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{BoxError, ReqBody, ResBody};
use crate::config::{Forwarding, Route};
use crate::error::GatewayError;
use crate::live::{Connection, LiveRoute};
use crate::server::h1::ClientUpgrade;

/// The pooled client type used for every upstream.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, ReqBody>;

/// A shared upstream client.
pub type UpstreamClient = Arc<HttpClient>;

/// Builds a pooled client (HTTP/1.1 and, over TLS with ALPN, HTTP/2) trusting
/// `roots`.
pub fn new_client(roots: rustls::RootCertStore) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(crate::tls::client_config(roots))
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https);
    Arc::new(client)
}

pub use crate::net::is_hop_by_hop;
use crate::net::is_reserved;

/// Removes the headers named in `Connection`, every hop-by-hop header, and
/// anything [`is_reserved`].
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut listed: Vec<HeaderName> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for tok in s.split(',') {
                if let Ok(name) = HeaderName::from_bytes(tok.trim().as_bytes()) {
                    listed.push(name);
                }
            }
        }
    }
    for name in listed {
        headers.remove(name);
    }
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n))
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
}

/// Whether two header names are the same once `_` and `-` are folded
/// together (names are lower-case already).
fn same_folded(a: &str, b: &str) -> bool {
    let fold = |c: u8| if c == b'_' { b'-' } else { c };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// Cleans a client's request headers for forwarding: hop-by-hop and
/// reserved headers, and the headers the route fills from claims
/// (`claims_to_headers`, with their `_` look-alikes) whatever the token
/// holds, so a claim the token lacks means the header is absent.
pub fn sanitize_request(headers: &mut HeaderMap, route: &Route) {
    strip_hop_by_hop(headers);
    let from_claims = |n: &HeaderName| {
        route
            .claims_to_headers
            .iter()
            .any(|(name, _)| same_folded(n.as_str(), name.as_str()))
    };
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_reserved(n) || from_claims(n))
        .cloned()
        .collect();
    for name in drop {
        headers.remove(name);
    }
    if !route.action.forwarding().is_some_and(|f| f.forward_bearer) {
        headers.remove(header::AUTHORIZATION);
    }
}

/// Cleans an upstream's response headers (hop-by-hop only; everything else is
/// the upstream's answer and passes unchanged).
pub fn sanitize_response(headers: &mut HeaderMap) {
    strip_hop_by_hop(headers);
}

/// Whether a request asks to switch to WebSocket (HTTP/1.1 Upgrade).
pub fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection = req.headers().get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    req.version() == Version::HTTP_11 && upgrade && connection
}

/// Where one request goes: its route and upstream, the canonical upstream
/// path (see [`super::route::upstream_path`]) and what the forwarder must
/// tell the upstream about the client. Built once per request; a retry sends
/// through the same target.
pub struct Target<'a> {
    route: &'a Route,
    to: &'a Forwarding,
    connection: &'a Connection,
    path: String,
    conn: super::ConnInfo,
    /// What the upstream is told in `X-Forwarded-For`.
    forwarded_for: HeaderValue,
    /// The authority the client addressed (Host or :authority), if any.
    host: Option<&'a str>,
    timeout: Duration,
}

impl<'a> Target<'a> {
    /// A target for the normalized request `path` of `route`; `None` for a
    /// route the gateway answers itself.
    pub fn new(
        route: &'a LiveRoute,
        path: &str,
        conn: super::ConnInfo,
        forwarded_for: HeaderValue,
        host: Option<&'a str>,
        timeout: Duration,
    ) -> Option<Self> {
        let to = route.settings.action.forwarding()?;
        Some(Target {
            route: &route.settings,
            to,
            connection: route.upstream.as_ref()?,
            path: super::route::upstream_path(path, to.strip_prefix.as_deref()),
            conn,
            forwarded_for,
            host,
            timeout,
        })
    }

    /// Sends the request upstream and returns its response, headers cleaned.
    /// `identity` holds the headers naming the authenticated caller (and
    /// injected credentials); the query string passes unchanged.
    pub async fn send(
        &self,
        req: Request<ReqBody>,
        websocket: bool,
        identity: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Response<ResBody>, GatewayError> {
        forward(self, req, websocket, identity).await
    }
}

async fn forward(
    target: &Target<'_>,
    mut req: Request<ReqBody>,
    websocket: bool,
    identity: Vec<(HeaderName, HeaderValue)>,
) -> Result<Response<ResBody>, GatewayError> {
    let Target {
        route,
        to,
        connection,
        ref path,
        conn,
        ref forwarded_for,
        host,
        timeout,
    } = *target;
    let upgrade_value = if websocket {
        req.headers().get(header::UPGRADE).cloned()
    } else {
        None
    };
    let headers = req.headers_mut();
    sanitize_request(headers, route);
    if let Some(v) = upgrade_value {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, v);
    }
    // Set after the client's look-alikes were removed.
    for (name, value) in identity {
        headers.insert(name, value);
    }
    let upstream = &to.upstream;
    if to.preserve_host {
        if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(header::HOST, h);
        }
    } else {
        headers.remove(header::HOST);
    }
    // The client's own forwarding headers were removed above: the upstream
    // hears only what the gateway decided (docs/BEHAVIOUR.md item 10).
    headers.insert(X_FORWARDED_FOR.clone(), forwarded_for.clone());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(conn.proto),
    );
    if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST.clone(), h);
    }

    let query = req.uri().query();
    let mut pq = String::with_capacity(
        upstream.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1),
    );
    pq.push_str(&upstream.base_path);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    // Plain-HTTP upstreams take the origin form on a pooled HTTP/1.1
    // connection (upgrades go through hyper-util's client, which can hand
    // the connection over).
    let pooled = connection.plain.as_ref().filter(|_| !websocket);
    let uri = if pooled.is_some() {
        Uri::try_from(pq).ok()
    } else {
        Uri::builder()
            .scheme(upstream.scheme.clone())
            .authority(upstream.authority.clone())
            .path_and_query(pq)
            .build()
            .ok()
    };
    *req.uri_mut() = uri.ok_or_else(|| GatewayError::BadRequest {
        code: "invalid_request",
        description: "the request target cannot be forwarded".to_owned(),
    })?;
    // The client picks the upstream protocol (ALPN); HTTP/1.1 semantics are
    // what every upstream understands.
    *req.version_mut() = Version::HTTP_11;

    let sent = async {
        match pooled {
            Some(pool) => pool
                .send(req)
                .await
                .map(|(resp, lease)| resp.map(|body| ResBody::leased(body, lease))),
            None => connection
                .client
                .request(req)
                .await
                .map(|resp| resp.map(|body| ResBody::stream(body, None)))
                .map_err(Into::into),
        }
    };
    let upstream_name = || format!("{upstream:?}");
    let mut resp = match tokio::time::timeout(timeout, sent).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(source)) if client_body_failed(&*source) => {
            // The client's framing, not the upstream: 400, audited as a
            // refusal; the upstream connection that got part of the body is
            // dropped by hyper.
            tracing::debug!(route = %route.name, error = %crate::error_chain(&*source), "request body failed while forwarding");
            return Err(GatewayError::BadRequest {
                code: "invalid_body",
                description: "the request body could not be read".to_owned(),
            });
        }
        Ok(Err(source)) => {
            return Err(GatewayError::UpstreamFailed {
                upstream: upstream_name(),
                source,
            })
        }
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout {
                upstream: upstream_name(),
            })
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        sanitize_response(resp.headers_mut());
    }
    Ok(resp)
}

/// Whether sending failed because the client's request body did
/// (malformed chunked coding, a stream reset, a client gone mid-upload):
/// hyper's client reports an error of the body it sends as a user error
/// caused by that body's error, which for a streamed client body is the
/// server side's own `hyper::Error`.
fn client_body_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_user() {
                return std::error::Error::source(h).is_some_and(|s| s.is::<hyper::Error>());
            }
        }
        cur = err.source();
    }
    false
}

/// Splices an upgraded client connection to an upgraded upstream connection
/// until either side closes.
pub fn splice_upgrade(client: ClientUpgrade, upstream: hyper::upgrade::OnUpgrade, route: String) {
    tokio::spawn(async move {
        let upstream = async { upstream.await.map_err(BoxError::from) };
        let (mut c, u) = match tokio::try_join!(client.stream(), upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(route, error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut u = TokioIo::new(u);
        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
            tracing::debug!(route, error = %e, "upgraded connection ended with an error");
        }
    });
}

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers_include_underscore_look_alikes() {
        for n in [
            "x-auth-subject",
            "x_auth_subject",
            "x-auth_roles",
            "x-zoom-user-id",
            "x_zoom_meeting_id",
            "x-webhook-verified",
            "x-forwarded-for",
            "x_forwarded_for",
            "forwarded",
            "x-real-ip",
            "x-http-method-override",
            "x_http_method_override",
            "x-method-override",
            "x-http-method",
        ] {
            assert!(
                is_reserved(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
        for n in [
            "x-request-id",
            "authorization",
            "x-zm-signature",
            "x-custom",
            "content-type",
        ] {
            assert!(
                !is_reserved(&HeaderName::from_bytes(n.as_bytes()).unwrap()),
                "{n}"
            );
        }
    }

    #[test]
    fn connection_listed_and_hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
