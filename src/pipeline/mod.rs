//! The request pipeline: `route → verify → authenticate → authorize →
//! inject → respond | forward`, sequenced in one place ([`handle`]).
//!
//! A route whose stage cannot run (an inconsistent snapshot) fails closed
//! here with 503 rather than passing traffic unchecked.

pub mod authn;
pub mod authz;
pub mod forward;
pub mod inject;
pub mod pool;
mod request;
pub mod route;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{ReqBody, ResBody};
use crate::config::{Authenticate, Route, Snapshot};
use crate::error::GatewayError;
use crate::server::h1::ClientUpgrade;
use crate::State;
use request::{check_framing, check_host, head_size, is_bodiless, read_body, request_authority};
use route::Selection;

/// What the pipeline knows about the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// `https` for the TLS listener, `http` for `plain_listen`.
    pub proto: &'static str,
}

/// What one request did, filled in by the stages and written once at the
/// end as an audit line and metrics.
#[derive(Default)]
pub struct RequestLog {
    pub route: Option<Arc<Route>>,
    pub principal: Option<Arc<authn::Principal>>,
    /// Time the upstream took to answer, when one was called.
    pub upstream: Option<std::time::Duration>,
    /// Minted credentials and the role granted.
    pub minted: Vec<(String, Option<u8>)>,
    /// A decision and reason that override the defaults (`allow` / `ok`).
    pub outcome: Option<(&'static str, &'static str)>,
}

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A well-formed incoming request id (1 to 128 of `[A-Za-z0-9._:-]`), or a
/// fresh UUID.
fn request_id<B>(req: &Request<B>) -> String {
    match req.headers().get(&X_REQUEST_ID).map(|v| v.as_bytes()) {
        Some(v)
            if (1..=128).contains(&v.len())
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(b)) =>
        {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

/// Handles one request against the snapshot current when it arrives (kept
/// to the end of the request).
pub async fn respond(
    state: Arc<State>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ResBody> {
    let snap = state.snapshot.load_full();
    handle(&state, snap, req, conn).await
}

/// Handles one request against one snapshot and always produces a response:
/// errors become the JSON answers of [`GatewayError::to_response`]. Every
/// response carries `X-Request-Id`; every request is one audit line.
pub async fn handle(
    state: &State,
    snap: Arc<Snapshot>,
    mut req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ResBody> {
    use tracing::Instrument;
    let started = Instant::now();
    let id = request_id(&req);
    let id_value = http::HeaderValue::from_str(&id).expect("request ids are header-safe");
    // The upstream sees the same id (replacing a malformed one).
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), id_value.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let span = tracing::info_span!("request", request_id = %id, %method);
    let mut log = RequestLog::default();
    let result = run(state, &snap, req, conn, &mut log)
        .instrument(span.clone())
        .await;
    let _enter = span.enter();
    let route = log.route.as_ref().map(|r| r.name.as_str());
    let (mut resp, decision, reason) = match result {
        Ok(resp) => {
            let (decision, reason) = log.outcome.unwrap_or(("allow", "ok"));
            tracing::debug!(route, status = resp.status().as_u16(), "request answered");
            (resp, decision, reason)
        }
        Err(err) => {
            let status = err.status();
            let decision = if status.is_server_error() {
                "error"
            } else {
                "deny"
            };
            if status.is_server_error() {
                tracing::warn!(route, status = status.as_u16(), code = err.code(), error = %crate::error_chain(&err), "request failed");
            } else {
                tracing::debug!(
                    route,
                    status = status.as_u16(),
                    code = err.code(),
                    "request refused"
                );
            }
            (err.to_response(), decision, err.code())
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id_value);
    record(
        state,
        &log,
        &id,
        &method,
        &path,
        conn,
        resp.status().as_u16(),
        decision,
        reason,
        started.elapsed(),
    );
    resp
}

/// Writes the audit line and updates the request metrics.
#[allow(clippy::too_many_arguments)]
fn record(
    state: &State,
    log: &RequestLog,
    id: &str,
    method: &http::Method,
    path: &str,
    conn: ConnInfo,
    status: u16,
    decision: &'static str,
    reason: &'static str,
    total: std::time::Duration,
) {
    let route = log.route.as_ref().map(|r| r.name.as_str());
    let label = log.route.as_ref().map_or("-", |r| r.label);
    let m = &state.metrics;
    m.requests
        .get_or_create(&crate::metrics::RouteStatus {
            route: label,
            status,
        })
        .inc();
    m.request_duration
        .get_or_create(&crate::metrics::RouteLabel { route: label })
        .observe(total.as_secs_f64());
    if let Some(up) = log.upstream {
        m.upstream_duration
            .get_or_create(&crate::metrics::RouteLabel { route: label })
            .observe(up.as_secs_f64());
    }
    m.auth_decisions
        .get_or_create(&crate::metrics::Decision {
            route: label,
            decision,
            reason,
        })
        .inc();
    let Some(sink) = state.audit.load_full() else {
        return;
    };
    let p = log.principal.as_deref();
    let (credential, granted_role) = match log.minted.first() {
        Some((c, r)) => (Some(c.as_str()), *r),
        None => (None, None),
    };
    sink.write(&crate::audit::AuditRecord {
        ts: crate::audit::now_rfc3339(),
        request_id: id,
        route,
        method: method.as_str(),
        path,
        client_ip: conn.remote.ip().to_string(),
        identity: p.map(|p| p.identity.as_str()),
        subject: p.and_then(|p| p.subject.as_deref()),
        tenant: p.and_then(|p| p.tenant.as_deref()),
        roles: p.map_or(&[], |p| p.roles.as_slice()),
        decision,
        reason,
        status,
        upstream_ms: log.upstream.map(|d| d.as_millis() as u64),
        total_ms: total.as_millis() as u64,
        credential,
        granted_role,
    });
}

async fn run(
    state: &State,
    snap: &Snapshot,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    log: &mut RequestLog,
) -> Result<Response<ResBody>, GatewayError> {
    // Route: limits and path checks come before any route is chosen.
    if head_size(&req) > snap.limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    check_framing(req.headers())?;
    check_host(&req)?;
    if *req.method() == http::Method::CONNECT {
        // A tunnel is never opened (its target is an authority, not a path).
        return Err(GatewayError::MethodNotAllowed {
            allow: route::ANY_METHOD.to_vec(),
        });
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
    log.route = Some(route.clone());

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
            log,
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
    log.principal = principal.clone();

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
        log.minted.push((credential, Some(role)));
        return Ok(answer);
    }

    // Inject: minted or fetched credentials for the upstream. (The query is
    // only copied for routes that inject: it may name the meeting or role.)
    let query = if route.inject.is_empty() {
        None
    } else {
        req.uri().query().map(str::to_owned)
    };
    let injected = inject::inject(
        &route,
        snap,
        principal.as_deref(),
        &captures,
        query.as_deref(),
    )
    .await?;
    // A request without a body can be sent again if the upstream rejects a
    // fetched token (docs/BEHAVIOUR.md item 30).
    let retry = (!injected.fetched.is_empty() && is_bodiless(&req)).then(|| {
        let mut r = Request::new(());
        *r.method_mut() = req.method().clone();
        *r.uri_mut() = req.uri().clone();
        *r.version_mut() = req.version();
        *r.headers_mut() = req.headers().clone();
        r
    });
    identity_headers.extend(injected.headers.iter().cloned());
    log.minted.extend(injected.minted.iter().cloned());

    // Forward.
    let Some(upstream) = route.upstream.as_ref() else {
        return Err(GatewayError::StageUnavailable {
            route: route.name.clone(),
            stage: "respond",
        });
    };
    let websocket = route.websocket && forward::is_websocket_upgrade(&req);
    let client_upgrade = websocket.then(|| ClientUpgrade::on(&mut req));
    let target = forward::Target::new(
        &route,
        upstream,
        &path,
        conn,
        authority.as_deref(),
        snap.limits.upstream_timeout,
    );
    let req = req.map(|inner| ReqBody::Stream { inner });
    let base_headers = retry.is_some().then(|| identity_headers.clone());
    let upstream_started = Instant::now();
    let mut resp = target.send(req, websocket, identity_headers).await?;
    if resp.status() == StatusCode::UNAUTHORIZED && !injected.fetched.is_empty() {
        // The upstream rejected a fetched token: drop it, unless a 401 did so
        // within the refetch cooldown (then the 401 passes through).
        let mut renewed = false;
        for (source, value) in &injected.fetched {
            let expose = secrecy::ExposeSecret::expose_secret(value);
            renewed |= source.invalidate(expose).await;
        }
        if let (true, Some(again), Some(mut headers)) = (renewed, retry, base_headers) {
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
            resp = target.send(req, false, headers).await?;
        }
    }
    log.upstream = Some(upstream_started.elapsed());
    if let Some(client_upgrade) = client_upgrade {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            forward::splice_upgrade(client_upgrade, upstream_upgrade, route.name.clone());
        }
    }
    Ok(resp)
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
    log: &mut RequestLog,
) -> Result<Response<ResBody>, GatewayError> {
    let count = |result: &'static str| {
        state
            .metrics
            .webhook_verifications
            .get_or_create(&crate::metrics::WebhookResult {
                webhook: name.to_owned(),
                result,
            })
            .inc();
    };
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
        count(e.reason());
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
        count("url_validation");
        log.outcome = Some(("allow", "url_validation"));
        return Ok(crate::body::json_response(StatusCode::OK, answer));
    }

    let key = format!("{name}:{}", verified.dedup_key);
    let delivery = match state.replay.claim(&key, settings.dedup).await {
        crate::replay::Claim::Duplicate => {
            tracing::info!(webhook = name, "duplicate webhook event not forwarded");
            count("duplicate");
            log.outcome = Some(("deny", "webhook_duplicate"));
            return Ok(crate::body::json_response(
                StatusCode::OK,
                r#"{"status":"duplicate"}"#,
            ));
        }
        crate::replay::Claim::Fresh(d) => d,
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
    let target = forward::Target::new(
        route,
        upstream,
        path,
        conn,
        authority,
        snap.limits.upstream_timeout,
    );
    let req = Request::from_parts(parts, ReqBody::full(bytes));
    count("ok");
    let upstream_started = Instant::now();
    let resp = target.send(req, false, verified_header).await?;
    log.upstream = Some(upstream_started.elapsed());
    if resp.status().is_success() {
        delivery.delivered().await;
    }
    Ok(resp)
}
