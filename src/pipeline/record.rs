//! What one request did: the request metrics, counted when the response
//! head is ready, and the audit line, written once the response body has
//! ended (so it can say how many bytes went each way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ConnInfo;
use crate::client_ip::ClientAddr;
use crate::config::Route;
use crate::State;

/// What one request did, filled in by the stages.
pub struct RequestLog {
    /// The request id (the client's, if well-formed, or a fresh one).
    pub id: String,
    pub method: http::Method,
    /// The path as received.
    pub path: String,
    pub conn: ConnInfo,
    /// The client, as `trusted_proxies` let the gateway decide.
    pub client: ClientAddr,
    pub started: Instant,
    pub route: Option<Arc<Route>>,
    pub principal: Option<Arc<super::authn::Principal>>,
    /// Time the upstream took to answer, when one was called.
    pub upstream: Option<Duration>,
    /// Minted credentials and the role granted.
    pub minted: Vec<(String, Option<u8>)>,
    /// A decision and reason that override the defaults (`allow` / `ok`).
    pub outcome: Option<(&'static str, &'static str)>,
    /// A CORS preflight the gateway answered (its headers are complete).
    pub preflight: bool,
    /// The host the request was routed by (lower-case, no port), once known.
    pub host: Option<String>,
    pub version: http::Version,
    /// The client's `User-Agent` (a cheap clone of the header value).
    pub user_agent: Option<http::HeaderValue>,
    /// Request body bytes read so far; only kept (and counted) when an
    /// audit trail is configured.
    pub request_bytes: Option<Arc<AtomicU64>>,
}

/// The longest `User-Agent` an audit line keeps, in characters.
pub const AUDIT_USER_AGENT_CHARS: usize = 256;

/// `HTTP/1.1`, `HTTP/2`…
fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// The user agent as an audit line keeps it: visible ASCII and spaces as
/// sent (anything else replaced), cut to [`AUDIT_USER_AGENT_CHARS`].
fn user_agent(v: &http::HeaderValue) -> String {
    v.as_bytes()
        .iter()
        .take(AUDIT_USER_AGENT_CHARS)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

impl RequestLog {
    /// The log of a request that just arrived; `audited`: an audit trail
    /// is configured (request bytes are counted).
    pub fn new<B>(
        id: String,
        req: &http::Request<B>,
        conn: ConnInfo,
        client: ClientAddr,
        audited: bool,
    ) -> Self {
        RequestLog {
            id,
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            version: req.version(),
            user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
            host: None,
            conn,
            client,
            started: Instant::now(),
            route: None,
            principal: None,
            upstream: None,
            minted: Vec::new(),
            outcome: None,
            preflight: false,
            request_bytes: audited.then(Arc::default),
        }
    }

    /// Counts request body bytes the gateway read and held.
    pub fn read_request_bytes(&self, n: usize) {
        if let Some(c) = &self.request_bytes {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Updates the request metrics; with an audit trail, returns the line
    /// to write once the response body has ended ([`AuditTail`]).
    pub fn record(
        self,
        state: &State,
        status: u16,
        decision: &'static str,
        reason: &'static str,
    ) -> Option<Box<AuditTail>> {
        let total = self.started.elapsed();
        let label = self.route.as_ref().map_or("-", |r| r.label);
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
        if let Some(up) = self.upstream {
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
        let sink = state.audit.load_full()?;
        // Boxed: it rides in every response body, which stays small when
        // no audit trail is configured.
        Some(Box::new(AuditTail {
            // The decision's time, though the line waits for the body.
            ts: crate::audit::now_rfc3339(),
            log: self,
            sink,
            status,
            decision,
            reason,
            total_ms: total.as_millis() as u64,
            response_bytes: 0,
        }))
    }
}

/// A request's audit line, waiting for its response body to end: it rides
/// with the body and is written when the body is dropped (ended, failed, or
/// the client went away).
pub struct AuditTail {
    ts: String,
    log: RequestLog,
    sink: Arc<crate::audit::AuditSink>,
    status: u16,
    decision: &'static str,
    reason: &'static str,
    total_ms: u64,
    response_bytes: u64,
}

impl AuditTail {
    /// Counts response body bytes handed to the client connection.
    pub fn sent(&mut self, n: usize) {
        self.response_bytes += n as u64;
    }
}

impl Drop for AuditTail {
    fn drop(&mut self) {
        let log = &self.log;
        let route = log.route.as_ref().map(|r| r.name.as_str());
        let p = log.principal.as_deref();
        let (credential, granted_role) = match log.minted.first() {
            Some((c, r)) => (Some(c.as_str()), *r),
            None => (None, None),
        };
        self.sink.write(&crate::audit::AuditRecord {
            ts: std::mem::take(&mut self.ts),
            request_id: &log.id,
            route,
            method: log.method.as_str(),
            host: log.host.as_deref(),
            path: &log.path,
            protocol: protocol(log.version),
            user_agent: log.user_agent.as_ref().map(user_agent),
            client_ip: log.client.ip.to_string(),
            identity: p.map(|p| p.identity.as_str()),
            subject: p.and_then(|p| p.subject.as_deref()),
            tenant: p.and_then(|p| p.tenant.as_deref()),
            roles: p.map_or(&[], |p| p.roles.as_slice()),
            decision: self.decision,
            reason: self.reason,
            status: self.status,
            upstream_ms: log.upstream.map(|d| d.as_millis() as u64),
            total_ms: self.total_ms,
            request_bytes: log
                .request_bytes
                .as_ref()
                .map_or(0, |c| c.load(Ordering::Relaxed)),
            response_bytes: self.response_bytes,
            credential,
            granted_role,
        });
    }
}
