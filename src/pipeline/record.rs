//! What one request did, written once at its end: the audit line and the
//! request metrics.

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
    /// The log of a request that just arrived.
    pub fn new<B>(id: String, req: &http::Request<B>, conn: ConnInfo, client: ClientAddr) -> Self {
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
        }
    }

    /// Writes the audit line and updates the request metrics.
    pub fn record(&self, state: &State, status: u16, decision: &'static str, reason: &'static str) {
        let total = self.started.elapsed();
        let route = self.route.as_ref().map(|r| r.name.as_str());
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
        let Some(sink) = state.audit.load_full() else {
            return;
        };
        let p = self.principal.as_deref();
        let (credential, granted_role) = match self.minted.first() {
            Some((c, r)) => (Some(c.as_str()), *r),
            None => (None, None),
        };
        sink.write(&crate::audit::AuditRecord {
            ts: crate::audit::now_rfc3339(),
            request_id: &self.id,
            route,
            method: self.method.as_str(),
            host: self.host.as_deref(),
            path: &self.path,
            protocol: protocol(self.version),
            user_agent: self.user_agent.as_ref().map(user_agent),
            client_ip: self.client.ip.to_string(),
            identity: p.map(|p| p.identity.as_str()),
            subject: p.and_then(|p| p.subject.as_deref()),
            tenant: p.and_then(|p| p.tenant.as_deref()),
            roles: p.map_or(&[], |p| p.roles.as_slice()),
            decision,
            reason,
            status,
            upstream_ms: self.upstream.map(|d| d.as_millis() as u64),
            total_ms: total.as_millis() as u64,
            credential,
            granted_role,
        });
    }
}
