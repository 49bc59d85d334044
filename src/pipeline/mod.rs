//! The request pipeline: `route → verify → authenticate → authorize →
//! inject → respond | forward`, sequenced in one place ([`handle`]).
//!
//! Stages that later issues add plug in here; until one exists, a snapshot
//! that needs it is refused at start and reload
//! ([`crate::config::Snapshot::unsupported_stages`]) and, as a second line of
//! defence, such a route fails closed here.

pub mod authn;
pub mod authz;
pub mod forward;
pub mod inject;
pub mod route;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::HOST;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{ReqBody, ResBody};
use crate::config::{Authenticate, Route, Snapshot};
use crate::error::GatewayError;
use crate::State;
use route::Selection;

/// What the pipeline knows about the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// `https` for the TLS listener, `http` for `plain_listen`.
    pub proto: &'static str,
}

/// Handles one request against one snapshot and always produces a response:
/// errors become the JSON answers of [`GatewayError::to_response`].
pub async fn handle(
    state: &State,
    snap: Arc<Snapshot>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ResBody> {
    let started = Instant::now();
    let method = req.method().clone();
    let mut route_name = None;
    let result = run(state, &snap, req, conn, &mut route_name).await;
    let route = route_name.as_deref().unwrap_or("-");
    match result {
        Ok(resp) => {
            tracing::debug!(
                route,
                %method,
                status = resp.status().as_u16(),
                total_ms = started.elapsed().as_millis() as u64,
                "request forwarded"
            );
            resp
        }
        Err(err) => {
            let status = err.status();
            if status.is_server_error() {
                tracing::warn!(route, %method, status = status.as_u16(), code = err.code(), error = %crate::error_chain(&err), "request failed");
            } else {
                tracing::debug!(route, %method, status = status.as_u16(), code = err.code(), "request refused");
            }
            err.to_response()
        }
    }
}

async fn run(
    state: &State,
    snap: &Snapshot,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    route_name: &mut Option<String>,
) -> Result<Response<ResBody>, GatewayError> {
    // Route: limits and path checks come before any route is chosen.
    if head_size(&req) > snap.limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    let path = route::normalize(req.uri().path())
        .map_err(|reason| GatewayError::InvalidPath { reason })?;
    let authority = request_authority(&req).map(str::to_owned);
    let host = authority
        .as_deref()
        .map(|a| crate::net::strip_port(a).to_ascii_lowercase());
    let (route, captures) = match route::select(&snap.routes, host.as_deref(), req.method(), &path)
    {
        Selection::Found { route, captures } => (route, captures),
        Selection::MethodNotAllowed(allow) => return Err(GatewayError::MethodNotAllowed { allow }),
        Selection::NotFound => return Err(GatewayError::NoRoute),
    };
    *route_name = Some(route.name.clone());

    // Verify: webhook routes buffer the body, check it, and may answer here.
    if let Some(name) = &route.verify_webhook {
        return webhook_route(
            state,
            snap,
            req,
            conn,
            &route,
            name,
            &path,
            authority.as_deref(),
        )
        .await;
    }

    // Authenticate.
    let principal = match &route.authenticate {
        Authenticate::None => None,
        Authenticate::Identities(ids) => {
            Some(authn::bearer(req.headers(), ids, snap, &state.tokens).await?)
        }
        Authenticate::ZoomApp(name) => {
            let app = snap
                .zoom_apps
                .get(name)
                .ok_or_else(|| GatewayError::StageUnavailable {
                    route: route.name.clone(),
                    stage: "authenticate",
                })?;
            Some(authn::zoom_app(req.headers(), app)?)
        }
    };

    // Authorize.
    if let Some(rules) = &route.authorize {
        let p = principal.as_deref().ok_or(GatewayError::Forbidden {
            reason: "insufficient_role",
        })?;
        authz::check(rules, p, &captures)?;
    }
    let mut identity_headers = match &principal {
        Some(p) => authn::identity_headers(p, &route)?,
        None => Vec::new(),
    };

    // Respond: the gateway answers (signature requests).
    if let Some(resp) = &route.respond {
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, &parts.headers, &snap.limits).await?;
        let (answer, credential, role) =
            inject::respond(resp, snap, principal.as_deref(), &captures, &bytes)?;
        tracing::info!(route = %route.name, credential, granted_role = role, "credential minted for the caller");
        return Ok(answer);
    }

    // Inject: minted or fetched credentials for the upstream.
    let query = req.uri().query().map(str::to_owned);
    let injected = inject::inject(
        &route,
        snap,
        principal.as_deref(),
        &captures,
        query.as_deref(),
    )
    .await?;
    // A request without a body can be sent again if the upstream rejects a
    // fetched token (BEHAVIOUR.md item 30).
    let retry = (!injected.fetched.is_empty() && is_bodiless(&req)).then(|| {
        let mut r = Request::new(());
        *r.method_mut() = req.method().clone();
        *r.uri_mut() = req.uri().clone();
        *r.version_mut() = req.version();
        *r.headers_mut() = req.headers().clone();
        r
    });
    identity_headers.extend(injected.headers.iter().cloned());

    // Forward.
    let Some(upstream) = route.upstream.as_ref() else {
        return Err(GatewayError::StageUnavailable {
            route: route.name.clone(),
            stage: "respond",
        });
    };
    let websocket = route.websocket && forward::is_websocket_upgrade(&req);
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let upstream_path = route::upstream_path(&path, route.strip_prefix.as_deref());
    let down = forward::Downstream {
        client_addr: conn.remote,
        proto: conn.proto,
        host: authority.as_deref(),
    };
    let req = req.map(|inner| ReqBody::Stream { inner });
    let base_headers = retry.is_some().then(|| identity_headers.clone());
    let mut resp = forward::forward(
        &route,
        upstream,
        req,
        &upstream_path,
        &down,
        snap.limits.upstream_timeout,
        websocket,
        identity_headers,
    )
    .await?;
    if resp.status() == StatusCode::UNAUTHORIZED && !injected.fetched.is_empty() {
        // The upstream rejected a fetched token: never send it again.
        for (source, value) in &injected.fetched {
            source.invalidate(secrecy::ExposeSecret::expose_secret(value));
        }
        if let (Some(again), Some(mut headers)) = (retry, base_headers) {
            tracing::info!(route = %route.name, "upstream refused the token; retrying once with a new one");
            let fresh = inject::inject(
                &route,
                snap,
                principal.as_deref(),
                &captures,
                query.as_deref(),
            )
            .await?;
            // Replace the injected headers with the fresh ones.
            headers.retain(|(n, _)| !fresh.headers.iter().any(|(f, _)| f == n));
            headers.extend(fresh.headers);
            let req = again.map(|()| ReqBody::full(bytes::Bytes::new()));
            resp = forward::forward(
                &route,
                upstream,
                req,
                &upstream_path,
                &down,
                snap.limits.upstream_timeout,
                false,
                headers,
            )
            .await?;
        }
    }
    if let Some(client_upgrade) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            forward::splice_upgrade(client_upgrade, upstream_upgrade, route.name.clone());
        }
    }
    Ok(forward::into_response(resp))
}

/// A `verify_webhook` route: buffer (bounded), verify, answer Zoom's URL
/// validation, skip delivered duplicates, forward the exact bytes.
#[allow(clippy::too_many_arguments)]
async fn webhook_route(
    state: &State,
    snap: &Snapshot,
    req: Request<Incoming>,
    conn: ConnInfo,
    route: &Route,
    name: &str,
    path: &str,
    authority: Option<&str>,
) -> Result<Response<ResBody>, GatewayError> {
    let settings = snap
        .webhooks
        .get(name)
        .ok_or_else(|| GatewayError::StageUnavailable {
            route: route.name.clone(),
            stage: "verify_webhook",
        })?;
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, &parts.headers, &snap.limits).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let verified = webhook::verify(settings, &parts.headers, &bytes, now).map_err(|e| {
        if let webhook::WebhookError::StaleTimestamp { age_secs } = e {
            tracing::info!(
                webhook = name,
                age_secs,
                "webhook refused: timestamp outside the window"
            );
        } else {
            tracing::debug!(webhook = name, reason = e.reason(), "webhook refused");
        }
        GatewayError::WebhookRejected { reason: e.reason() }
    })?;
    let event: serde_json::Value =
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let Some(obj) = event.as_object() else {
        return Err(GatewayError::BadRequest {
            code: "invalid_body",
            description: "a webhook body must be a JSON object".to_owned(),
        });
    };
    if settings.kind == crate::config::WebhookKind::Zoom
        && obj.get("event").and_then(|e| e.as_str()) == Some("endpoint.url_validation")
    {
        let plain = obj
            .get("payload")
            .and_then(|p| p.get("plainToken"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| GatewayError::BadRequest {
                code: "invalid_body",
                description: "endpoint.url_validation needs payload.plainToken".to_owned(),
            })?;
        let answer = webhook::url_validation_answer(&settings.secrets[verified.secret].0, plain);
        let mut resp = Response::new(ResBody::full(answer));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    }

    let delivery = match &verified.dedup_key {
        Some(key) => {
            let key = format!("{name}:{key}");
            match state.replay.claim(&key, settings.dedup).await {
                crate::replay::Claim::Duplicate => {
                    tracing::info!(webhook = name, "duplicate webhook event not forwarded");
                    let mut resp = Response::new(ResBody::full(r#"{"status":"duplicate"}"#));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    return Ok(resp);
                }
                crate::replay::Claim::Fresh(d) => Some(d),
            }
        }
        None => None,
    };

    let Some(upstream) = route.upstream.as_ref() else {
        return Err(GatewayError::StageUnavailable {
            route: route.name.clone(),
            stage: "forward",
        });
    };
    let verified_header = vec![(
        http::HeaderName::from_static("x-webhook-verified"),
        http::HeaderValue::from_str(name).map_err(|_| GatewayError::StageUnavailable {
            route: route.name.clone(),
            stage: "verify_webhook",
        })?,
    )];
    let down = forward::Downstream {
        client_addr: conn.remote,
        proto: conn.proto,
        host: authority,
    };
    let req = Request::from_parts(parts, ReqBody::full(bytes));
    let upstream_path = route::upstream_path(path, route.strip_prefix.as_deref());
    let resp = forward::forward(
        route,
        upstream,
        req,
        &upstream_path,
        &down,
        snap.limits.upstream_timeout,
        false,
        verified_header,
    )
    .await?;
    if resp.status().is_success() {
        if let Some(d) = delivery {
            d.delivered();
        }
    }
    Ok(forward::into_response(resp))
}

/// Reads a body the gateway must hold, refusing more than
/// `max_body_bytes` (413) and bodies slower than the upstream timeout (408).
async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limits: &crate::config::Limits,
) -> Result<bytes::Bytes, GatewayError> {
    use http_body_util::BodyExt;
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(GatewayError::PayloadTooLarge);
    }
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes);
    match tokio::time::timeout(limits.upstream_timeout, limited.collect()).await {
        Err(_) => Err(GatewayError::RequestTimeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge)
        }
        Ok(Err(_)) => Err(GatewayError::BadRequest {
            code: "invalid_body",
            description: "the request body could not be read".to_owned(),
        }),
    }
}

/// GET, HEAD, OPTIONS or DELETE without a body: safe to send twice.
fn is_bodiless<B>(req: &Request<B>) -> bool {
    use http::Method;
    let method_ok = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    );
    let h = req.headers();
    let no_body = !h.contains_key(http::header::TRANSFER_ENCODING)
        && h.get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
    method_ok && no_body
}

/// The authority the client addressed: `:authority` (HTTP/2, absolute-form)
/// or the Host header.
fn request_authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()))
}

/// The size of the request head as the limit counts it: target plus every
/// header line.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    req.headers()
        .iter()
        .fold(target, |acc, (n, v)| acc + n.as_str().len() + v.len() + 4)
}
