//! The request pipeline: `route → verify → authenticate → authorize →
//! inject → respond | forward`, sequenced in one place ([`run`]); the
//! stages after authorization live in [`stages`].
//!
//! Each request runs against the [`Live`] gateway current when it arrived,
//! kept to its end.

pub mod authn;
pub mod authz;
mod cors;
pub mod forward;
pub mod inject;
pub mod pool;
mod record;
mod request;
pub mod route;
mod session_token;
mod stages;
pub mod webhook;
mod webhook_vonage;
mod zoom_user;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;

use crate::body::ResBody;
use crate::config::{Action, Authenticate};
use crate::error::GatewayError;
use crate::live::Live;
use crate::State;
pub use record::{AuditTail, RequestLog};
use request::{check_framing, check_host, head_size, request_authority};
use route::Selection;
use stages::Ctx;

/// What the pipeline knows about the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The connection's address: the source its PROXY protocol header named
    /// (on a `proxy_protocol` listener), else the TCP peer. Each request's
    /// client is found from it ([`crate::client_ip::resolve`]).
    pub remote: SocketAddr,
    /// `https` for the TLS listener, `http` for `plain_listen`.
    pub proto: &'static str,
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
) -> (Response<ResBody>, Option<Box<AuditTail>>) {
    let live = state.live.load_full();
    handle(&state, live, req, conn).await
}

/// Handles one request against one live configuration and always produces
/// a response: errors become the JSON answers of
/// [`GatewayError::to_response`]. Every response carries `X-Request-Id`;
/// every request is one audit line: with an audit trail, the returned
/// [`AuditTail`] goes with the response body and writes it when the body
/// ends.
pub async fn handle(
    state: &State,
    live: Arc<Live>,
    mut req: Request<Incoming>,
    conn: ConnInfo,
) -> (Response<ResBody>, Option<Box<AuditTail>>) {
    use tracing::Instrument;
    let id = request_id(&req);
    let id_value = http::HeaderValue::from_str(&id).expect("request ids are header-safe");
    // The upstream sees the same id (replacing a malformed one).
    req.headers_mut()
        .insert(X_REQUEST_ID.clone(), id_value.clone());
    // Before any stage: the audit line, the logs and the upstream's
    // X-Forwarded-For all use this one answer.
    let client = crate::client_ip::resolve(
        &live.settings.server.trusted_proxies,
        conn.remote.ip(),
        req.headers(),
    );
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), client = %client.ip);
    let audited = state.audit.load().is_some();
    let mut log = RequestLog::new(id, &req, conn, client, audited);
    let origin = cors::request_origin(req.headers());
    let result = run(state, &live, req, &mut log)
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
            if status.is_server_error() {
                tracing::warn!(route, status = status.as_u16(), code = err.code(), error = %crate::error_chain(&err), "request failed");
            } else {
                refused(route, status, &err);
            }
            let decision = if status.is_server_error() {
                "error"
            } else {
                "deny"
            };
            (err.to_response(), decision, err.code())
        }
    };
    // Every answer of a CORS route but the preflights it answered itself.
    if let Some(policy) = log.route.as_ref().and_then(|r| r.cors.as_ref()) {
        if !log.preflight {
            cors::decorate(&mut resp, policy, origin.as_ref());
        }
    }
    resp.headers_mut().insert(X_REQUEST_ID.clone(), id_value);
    let status = resp.status().as_u16();
    (resp, log.record(state, status, decision, reason))
}

/// How many refused requests a second are logged at info; past it, at
/// debug (the next info line says how many it left out).
pub const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

/// Logs a refused request (4xx): what was wrong, in safe terms, at info
/// within [`REFUSALS_LOGGED_PER_SECOND`], else at debug.
fn refused(route: Option<&str>, status: http::StatusCode, err: &GatewayError) {
    static BUDGET: crate::telemetry::LogBudget =
        crate::telemetry::LogBudget::new(REFUSALS_LOGGED_PER_SECOND);
    let (status, code, detail) = (status.as_u16(), err.code(), err.detail());
    match BUDGET.admit() {
        Some(0) => tracing::info!(route, status, code, detail, "request refused"),
        Some(not_logged) => {
            tracing::info!(route, status, code, detail, not_logged, "request refused")
        }
        None => tracing::debug!(route, status, code, detail, "request refused"),
    }
}

/// The stages in order: route, then verify a webhook or authenticate,
/// authorize, and respond or inject and forward.
async fn run(
    state: &State,
    live: &Live,
    req: Request<Incoming>,
    log: &mut RequestLog,
) -> Result<Response<ResBody>, GatewayError> {
    let conn = log.conn;
    let mut cx = match route(state, live, &req, conn, log)? {
        Routed::Request(cx) => cx,
        Routed::Preflight(answer) => return Ok(answer),
    };
    let settings = cx.route.settings.clone();
    // The rare and large stages are boxed: the request future holds only
    // the room of the common path (see the test at the end).
    if let Action::Webhook { webhook, .. } = &settings.action {
        return Box::pin(cx.webhook(webhook, req)).await;
    }

    // Authenticate.
    let principal = match &settings.authenticate {
        Authenticate::None => None,
        Authenticate::Identities(_) => Some(
            Box::pin(authn::bearer(
                req.headers(),
                &cx.route.identities,
                &live.settings,
                &state.tokens,
            ))
            .await?,
        ),
        Authenticate::ZoomApp(app) => Some(authn::zoom_app(req.headers(), app)?),
    };
    cx.log.principal = principal.clone();

    // Authorize.
    if let Some(rules) = &settings.authorize {
        let p = principal
            .as_deref()
            .ok_or(GatewayError::from(authz::Denial::InsufficientRole))?;
        authz::check(rules, p, &cx.captures)?;
    }

    match &settings.action {
        Action::Respond(spec) => Box::pin(cx.respond(spec, req, principal.as_deref())).await,
        Action::Forward { websocket, .. } => {
            let headers = match &principal {
                Some(p) => authn::identity_headers(p, &settings)?,
                None => Vec::new(),
            };
            cx.forward(req, *websocket, principal.as_deref(), headers)
                .await
        }
        Action::ZoomUser(spec) => Box::pin(cx.zoom_user(spec, req, principal.as_deref())).await,
        Action::Webhook { .. } => Err(cx.stage_unavailable("verify_webhook")),
    }
}

/// What routing leads to.
enum Routed<'a> {
    /// A route was chosen: the stages run.
    Request(Ctx<'a>),
    /// A CORS preflight the gateway answered (never forwarded).
    Preflight(Response<ResBody>),
}

/// Route: limits and path checks come before any route is chosen.
fn route<'a>(
    state: &'a State,
    live: &'a Live,
    req: &Request<Incoming>,
    conn: ConnInfo,
    log: &'a mut RequestLog,
) -> Result<Routed<'a>, GatewayError> {
    if head_size(req) > live.settings.limits.max_header_bytes {
        return Err(GatewayError::HeadersTooLarge);
    }
    check_framing(req.headers())?;
    check_host(req)?;
    if *req.method() == http::Method::CONNECT {
        // A tunnel is never opened (its target is an authority, not a path).
        return Err(GatewayError::MethodNotAllowed {
            allow: crate::config::ANY_METHOD.to_vec(),
        });
    }
    let path = route::normalize(req.uri().path())
        .map_err(|reason| GatewayError::InvalidPath { reason })?;
    let authority = request_authority(req).map(str::to_owned);
    let host = authority
        .as_deref()
        .map(|a| crate::net::strip_port(a).to_ascii_lowercase());
    log.host.clone_from(&host);
    if let Some(requested) = cors::preflight_method(req) {
        if let Some((route, policy, takes_method)) =
            cors::preflight_route(&live.routes, host.as_deref(), &requested, &path)
        {
            log.route = Some(route.settings.clone());
            log.preflight = true;
            let answer = cors::preflight(policy, &requested, takes_method, req.headers(), log);
            return Ok(Routed::Preflight(answer));
        }
    }
    let (route, captures) = match route::select(&live.routes, host.as_deref(), req.method(), &path)
    {
        Selection::Found { route, captures } => (route, captures),
        Selection::MethodNotAllowed(allow) => return Err(GatewayError::MethodNotAllowed { allow }),
        Selection::NotFound => return Err(GatewayError::NoRoute),
    };
    log.route = Some(route.settings.clone());
    Ok(Routed::Request(Ctx {
        state,
        live,
        conn,
        route,
        captures,
        path,
        authority,
        log,
    }))
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn taking three arguments returns.
    fn future_size<F, A, B, C, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every request's future is moved into a box when the connection
    /// serves it, and holds as much room as its largest stage: the rare
    /// and large stages (webhooks, answers the gateway makes itself, the
    /// Zoom user flows) are boxed on their own so the common proxied
    /// request does not carry (and copy) their room.
    #[test]
    fn the_request_future_stays_small() {
        // Measured 8056 bytes (debug build) before the rare stages were
        // boxed; 9 000 more instructions per proxied request, mostly that
        // future's copies (benches/ab_instructions.sh).
        let size = future_size(super::respond);
        assert!(size <= 7168, "request future is {size} bytes");
    }
}
