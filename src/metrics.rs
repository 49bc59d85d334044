//! Prometheus metrics, served on the admin listener at `/metrics`
//! (OpenMetrics text). Labels are bounded: route, identity, credential and
//! webhook names come from the configuration, never from requests.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

// Per-request labels hold `&'static str` only (route names are interned), so
// counting a request allocates nothing.

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Decision {
    pub route: &'static str,
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityResult {
    pub identity: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IdentityLabel {
    pub identity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialResult {
    pub credential: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabel {
    pub credential: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookResult {
    pub webhook: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

/// A part routes may need: `kind` is `identity` or `credential`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabel {
    pub kind: &'static str,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerReason {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 100 µs .. ~26 s.
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 19)
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<RouteLabel, Histogram>,
    pub upstream_duration: Family<RouteLabel, Histogram>,
    pub auth_decisions: Family<Decision, Counter>,
    pub jwks_fetches: Family<IdentityResult, Counter>,
    pub jwks_keys: Family<IdentityLabel, Gauge>,
    pub jwks_age: Family<IdentityLabel, FloatGauge>,
    pub token_cache_hits: Counter,
    pub token_cache_bytes: Gauge,
    pub token_cache_entries: Gauge,
    pub credential_fetches: Family<CredentialResult, Counter>,
    pub credential_expiry: Family<CredentialLabel, FloatGauge>,
    pub webhook_verifications: Family<WebhookResult, Counter>,
    pub config_reloads: Family<ResultLabel, Counter>,
    pub config_generation: Gauge,
    pub audit_dropped: Counter,
    pub cluster_store_errors: Counter,
    pub cluster_store_up: Gauge,
    pub connections_parked: Gauge,
    pub ready: Gauge,
    pub degraded: Family<ComponentLabel, Gauge>,
    pub proxy_protocol_refused: Family<ListenerReason, Counter>,
    build_info: Family<VersionLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            upstream_duration: Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            auth_decisions: Family::default(),
            jwks_fetches: Family::default(),
            jwks_keys: Family::default(),
            jwks_age: Family::default(),
            token_cache_hits: Counter::default(),
            token_cache_bytes: Gauge::default(),
            token_cache_entries: Gauge::default(),
            credential_fetches: Family::default(),
            credential_expiry: Family::default(),
            webhook_verifications: Family::default(),
            config_reloads: Family::default(),
            config_generation: Gauge::default(),
            audit_dropped: Counter::default(),
            cluster_store_errors: Counter::default(),
            cluster_store_up: Gauge::default(),
            connections_parked: Gauge::default(),
            ready: Gauge::default(),
            degraded: Family::default(),
            proxy_protocol_refused: Family::default(),
            build_info: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "meetgate_requests",
            "Requests answered, by route and status",
            m.requests.clone(),
        );
        registry.register_with_unit(
            "meetgate_request_duration",
            "Time from request head to response head",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        registry.register_with_unit(
            "meetgate_upstream_duration",
            "Time the upstream took to answer (response head)",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        registry.register(
            "meetgate_auth_decisions",
            "Decisions by route, decision (allow, deny, error) and reason code",
            m.auth_decisions.clone(),
        );
        registry.register(
            "meetgate_jwks_fetches",
            "JWKS fetches by identity and result",
            m.jwks_fetches.clone(),
        );
        registry.register(
            "meetgate_jwks_keys",
            "Usable signing keys per identity",
            m.jwks_keys.clone(),
        );
        registry.register_with_unit(
            "meetgate_jwks_age",
            "Age of each identity's keys (since the last good fetch)",
            Unit::Seconds,
            m.jwks_age.clone(),
        );
        registry.register(
            "meetgate_token_cache_hits",
            "Bearer tokens answered from the verified-token cache",
            m.token_cache_hits.clone(),
        );
        registry.register_with_unit(
            "meetgate_token_cache",
            "Estimated memory held by the verified-token cache (bounded by [limits] token_cache_bytes)",
            Unit::Bytes,
            m.token_cache_bytes.clone(),
        );
        registry.register(
            "meetgate_token_cache_entries",
            "Verified tokens remembered",
            m.token_cache_entries.clone(),
        );
        registry.register(
            "meetgate_credential_fetches",
            "Token requests by credential and result",
            m.credential_fetches.clone(),
        );
        registry.register_with_unit(
            "meetgate_credential_expiry",
            "Seconds until each fetched credential's token expires",
            Unit::Seconds,
            m.credential_expiry.clone(),
        );
        registry.register(
            "meetgate_webhook_verifications",
            "Webhook deliveries by webhook and result",
            m.webhook_verifications.clone(),
        );
        registry.register(
            "meetgate_config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "meetgate_config_generation",
            "Generation of the configuration in force",
            m.config_generation.clone(),
        );
        registry.register(
            "meetgate_audit_dropped",
            "Audit lines dropped because the writer fell behind",
            m.audit_dropped.clone(),
        );
        registry.register(
            "meetgate_cluster_store_errors",
            "Redis operations of the [cluster] store that failed or timed out (each fell back to the in-process store)",
            m.cluster_store_errors.clone(),
        );
        registry.register(
            "meetgate_cluster_store_up",
            "1 while the [cluster] Redis store answers, 0 while replicas serve from in-process stores",
            m.cluster_store_up.clone(),
        );
        registry.register(
            "meetgate_connections_parked",
            "Idle HTTP/1.1 keep-alive connections parked (holding no HTTP state until the client sends again)",
            m.connections_parked.clone(),
        );
        registry.register(
            "meetgate_ready",
            "1 while /readyz answers 200 (started, not draining), else 0",
            m.ready.clone(),
        );
        registry.register(
            "meetgate_degraded",
            "1 for a part that cannot serve right now (an identity without usable keys, a credential without a token), 0 when it can",
            m.degraded.clone(),
        );
        registry.register(
            "meetgate_proxy_protocol_refused",
            "Connections closed on a proxy_protocol listener, by listener and reason (untrusted_peer, invalid_header, timeout)",
            m.proxy_protocol_refused.clone(),
        );
        registry.register(
            "meetgate_build_info",
            "Build information",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
