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

/// The label set of a metric that has no labels but is only exported
/// while the part it describes exists (a [`Family`] of it is empty, and
/// absent from `/metrics`, until set).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Present;

impl EncodeLabelSet for Present {
    fn encode(
        &self,
        _: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        Ok(())
    }
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Sets a metric that exists only while its part does: `Some(set)` sets
/// it (creating it), `None` removes it from `/metrics`.
fn present<M: Default, R>(family: &Family<Present, M>, set: Option<impl FnOnce(&M) -> R>) {
    match set {
        Some(set) => {
            set(&family.get_or_create(&Present));
        }
        None => family.clear(),
    }
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    // 100 µs .. ~26 s.
    prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.0, 19)
}

fn latency_histograms() -> Family<RouteLabel, Histogram> {
    Family::new_with_constructor(|| Histogram::new(latency_buckets()))
}

/// Declares the `Metrics` struct from one table: each line is
/// `[pub] field: Type [= constructor], "name", "help" [, Unit];` and becomes
/// a field, its value (`Default::default()` unless a constructor is given)
/// and its registration, in table order (the order `/metrics` lists them).
macro_rules! metrics {
    ($(
        $vis:vis $field:ident: $ty:ty $(= $init:expr)?, $name:literal, $help:literal $(, $unit:ident)?;
    )*) => {
        /// Every metric the gateway exports.
        pub struct Metrics {
            registry: Registry,
            $($vis $field: $ty,)*
        }

        impl Metrics {
            fn registered() -> Self {
                let mut registry = Registry::default();
                $(
                    let $field: $ty = metrics!(@init $($init)?);
                    metrics!(@register registry, $name, $help, $field.clone() $(, $unit)?);
                )*
                Metrics { registry, $($field,)* }
            }
        }
    };
    (@init) => { Default::default() };
    (@init $init:expr) => { $init };
    (@register $registry:ident, $name:literal, $help:literal, $metric:expr) => {
        $registry.register($name, $help, $metric)
    };
    (@register $registry:ident, $name:literal, $help:literal, $metric:expr, $unit:ident) => {
        $registry.register_with_unit($name, $help, Unit::$unit, $metric)
    };
}

metrics! {
    pub requests: Family<RouteStatus, Counter>, "meetgate_requests", "Requests answered, by route and status";
    pub request_duration: Family<RouteLabel, Histogram> = latency_histograms(), "meetgate_request_duration", "Time from request head to response head", Seconds;
    pub upstream_duration: Family<RouteLabel, Histogram> = latency_histograms(), "meetgate_upstream_duration", "Time the upstream took to answer (response head)", Seconds;
    pub auth_decisions: Family<Decision, Counter>, "meetgate_auth_decisions", "Decisions by route, decision (allow, deny, error) and reason code";
    pub jwks_fetches: Family<IdentityResult, Counter>, "meetgate_jwks_fetches", "JWKS fetches by identity and result";
    pub jwks_keys: Family<IdentityLabel, Gauge>, "meetgate_jwks_keys", "Usable signing keys per identity";
    pub jwks_age: Family<IdentityLabel, FloatGauge>, "meetgate_jwks_age", "Age of each identity's keys (since the last good fetch)", Seconds;
    pub token_cache_hits: Counter, "meetgate_token_cache_hits", "Bearer tokens answered from the verified-token cache";
    pub token_cache_bytes: Gauge, "meetgate_token_cache", "Estimated memory held by the verified-token cache (bounded by [limits] token_cache_bytes)", Bytes;
    pub token_cache_entries: Gauge, "meetgate_token_cache_entries", "Verified tokens remembered";
    pub credential_fetches: Family<CredentialResult, Counter>, "meetgate_credential_fetches", "Token requests by credential and result";
    pub credential_expiry: Family<CredentialLabel, FloatGauge>, "meetgate_credential_expiry", "Seconds until each fetched credential's token expires", Seconds;
    pub webhook_verifications: Family<WebhookResult, Counter>, "meetgate_webhook_verifications", "Webhook deliveries by webhook and result";
    pub config_reloads: Family<ResultLabel, Counter>, "meetgate_config_reloads", "Configuration reloads by result";
    pub config_generation: Gauge, "meetgate_config_generation", "Generation of the configuration in force";
    pub audit_dropped: Counter, "meetgate_audit_dropped", "Audit lines dropped because the writer fell behind";
    pub cluster_store_errors: Counter, "meetgate_cluster_store_errors", "Redis operations of the [cluster] store that failed or timed out (each fell back to the in-process store)";
    cluster_store_up: Family<Present, Gauge>, "meetgate_cluster_store_up", "1 while the [cluster] Redis store answers, 0 while replicas serve from in-process stores (absent without [cluster])";
    pub connections_parked: Gauge, "meetgate_connections_parked", "Idle HTTP/1.1 keep-alive connections parked (holding no HTTP state until the client sends again)";
    pub ready: Gauge, "meetgate_ready", "1 while /readyz answers 200 (started, not draining), else 0";
    pub degraded: Family<ComponentLabel, Gauge>, "meetgate_degraded", "1 for a part that cannot serve right now (an identity without usable keys, a credential without a token), 0 when it can";
    pub tls_handshake_failures: Family<ListenerReason, Counter>, "meetgate_tls_handshake_failures", "TLS handshakes that failed, by listener and reason (timeout, closed, no_shared_protocol, invalid_message, alert, other)";
    tls_certificate_expiry: Family<Present, FloatGauge>, "meetgate_tls_certificate_expiry_timestamp", "When the certificate the TLS listener serves stops being valid (its notAfter, Unix time; absent without a TLS listener)", Seconds;
    pub proxy_protocol_refused: Family<ListenerReason, Counter>, "meetgate_proxy_protocol_refused", "Connections closed on a proxy_protocol listener, by listener and reason (untrusted_peer, invalid_header, timeout)";
    build_info: Family<VersionLabel, Gauge>, "meetgate_build_info", "Build information";
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics::registered();
        m.build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        // Present from the start, so a rate over them works before the
        // first reload.
        for result in ["ok", "error"] {
            let _ = m.config_reloads.get_or_create(&ResultLabel { result });
        }
        m
    }
}

impl Metrics {
    /// Whether the `[cluster]` Redis store answers; `None` without
    /// `[cluster]` (the metric is then absent).
    pub fn set_cluster_store_up(&self, up: Option<bool>) {
        present(
            &self.cluster_store_up,
            up.map(|up| move |g: &Gauge| g.set(i64::from(up))),
        );
    }

    /// The `notAfter` of the certificate the TLS listener serves, in Unix
    /// seconds; `None` without a TLS listener (the metric is then absent).
    pub fn set_tls_certificate_expiry(&self, not_after: Option<i64>) {
        present(
            &self.tls_certificate_expiry,
            not_after.map(|t| move |g: &FloatGauge| g.set(t as f64)),
        );
    }

    /// The registry in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
