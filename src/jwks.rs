//! Signing keys per identity: OIDC discovery, JWKS fetch over the gateway's
//! own rustls client, background refresh, and unknown-`kid` refetches.
//!
//! Keys live outside the configuration snapshot ([`JwksRegistry`]) so they
//! survive reloads. Each identity has one [`IssuerKeys`]:
//! - a background task fetches at start and every `jwks_refresh_secs`,
//!   retrying with backoff while the issuer is down;
//! - cached keys stay usable for `jwks_max_stale_secs` after the last good
//!   fetch, then the identity has no usable keys (503 `keys_unavailable`);
//! - an unknown `kid` triggers one refetch right away. Concurrent misses share
//!   that fetch and its outcome (success or failure) is remembered for
//!   [`UNKNOWN_KID_COOLDOWN`], so a flood of random kids costs the issuer at
//!   most one request per cooldown. A regular refresh clears the cooldown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::body::ReqBody;
use crate::config::{IdentitySettings, Snapshot};
use crate::net::is_loopback_host;
use crate::pipeline::forward::UpstreamClient;

/// How long an unknown-kid refetch (and its failure) is remembered.
pub const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(10);
/// Bound on one discovery or JWKS request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest discovery document or JWKS accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The kind of public key, for matching against a token's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    Rsa,
    Ec(Curve),
    Ed25519,
}

/// Elliptic curves the gateway verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl KeyFamily {
    /// Whether a token signed with `alg` can be verified with this key type:
    /// RSA keys only for RS*/PS*, P-256 only for ES256, and so on. HMAC never.
    pub fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::Ec(Curve::P256) => alg == ES256,
            KeyFamily::Ec(Curve::P384) => alg == ES384,
            KeyFamily::Ed25519 => alg == EdDSA,
        }
    }
}

/// One usable verification key.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub family: KeyFamily,
    /// The JWK's own `alg`, when it names one: the token must use exactly it.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

/// The keys of one successful fetch.
pub struct KeySet {
    pub keys: Vec<VerifyKey>,
    pub fetched_at: Instant,
}

impl KeySet {
    /// The key a token names. A token without `kid` may use the only key
    /// compatible with its algorithm, when exactly one is.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut it = self.keys.iter().filter(|k| k.family.accepts(alg));
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }

    fn kids(&self) -> HashSet<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }
}

/// Why a fetch failed. Logged at `warn`; never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request to {uri} failed")]
    Request {
        uri: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("request to {uri} timed out")]
    Timeout { uri: String },
    #[error("{uri} answered {status}")]
    Status { uri: String, status: StatusCode },
    #[error("reading {uri} failed or it is larger than 1 MiB")]
    Body { uri: String },
    #[error("{uri} is not a valid document: {reason}")]
    Invalid { uri: String, reason: String },
}

/// Called after a fetch replaced the key set, with the kids that
/// disappeared (the verified-token cache drops entries signed with them).
pub type KeysChanged = Arc<dyn Fn(&str, &HashSet<String>) + Send + Sync>;

/// The signing keys of one identity.
pub struct IssuerKeys {
    pub settings: Arc<IdentitySettings>,
    client: UpstreamClient,
    current: ArcSwapOption<KeySet>,
    jwks_uri: ArcSwapOption<Uri>,
    /// Single-flight and cooldown for unknown-kid refetches: the cached
    /// value is the outcome of the last refetch (`None` when it failed).
    refetch: moka::future::Cache<(), Option<Arc<KeySet>>>,
    on_change: KeysChanged,
    metrics: Arc<crate::metrics::Metrics>,
    /// Fetch attempts, successful and failed (for tests and metrics).
    pub fetches_ok: AtomicU64,
    pub fetches_failed: AtomicU64,
}

impl IssuerKeys {
    /// Keys for `settings`, fetched with `client` once a refresh loop runs
    /// (see [`JwksRegistry::sync`]); none until then.
    pub fn new(
        settings: Arc<IdentitySettings>,
        client: UpstreamClient,
        on_change: KeysChanged,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        IssuerKeys {
            jwks_uri: ArcSwapOption::new(settings.jwks_uri.clone().map(Arc::new)),
            settings,
            client,
            current: ArcSwapOption::empty(),
            refetch: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(UNKNOWN_KID_COOLDOWN)
                .build(),
            on_change,
            metrics,
            fetches_ok: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
        }
    }

    /// Keys for `settings` that start out holding `keys`, as if just
    /// fetched, with no refresh task (the fuzz targets verify against them).
    /// An unknown kid still refetches over `client`.
    pub fn preloaded(
        settings: Arc<IdentitySettings>,
        client: UpstreamClient,
        keys: Vec<VerifyKey>,
    ) -> Self {
        let k = IssuerKeys::new(
            settings,
            client,
            Arc::new(|_: &str, _: &HashSet<String>| {}),
            Arc::new(crate::metrics::Metrics::default()),
        );
        k.current.store(Some(Arc::new(KeySet {
            keys,
            fetched_at: Instant::now(),
        })));
        k
    }

    /// The keys, if they were fetched and are not older than
    /// `jwks_max_stale_secs`.
    pub fn usable(&self) -> Option<Arc<KeySet>> {
        self.current
            .load_full()
            .filter(|ks| ks.fetched_at.elapsed() <= self.settings.jwks_max_stale)
    }

    /// When the keys in hand were fetched, if ever.
    pub fn last_fetched(&self) -> Option<Instant> {
        self.current.load().as_ref().map(|ks| ks.fetched_at)
    }

    /// Refetches because a token named an unknown kid (or no keys are
    /// usable). Coalesced and rate-limited; see the module docs.
    pub async fn refetch(&self) -> Option<Arc<KeySet>> {
        self.refetch
            .get_with((), async {
                match self.fetch_and_store().await {
                    Ok(ks) => Some(ks),
                    Err(e) => {
                        tracing::warn!(identity = %self.settings.name, error = %crate::error_chain(&e), "JWKS refetch failed");
                        None
                    }
                }
            })
            .await
    }

    async fn fetch_and_store(&self) -> Result<Arc<KeySet>, FetchError> {
        let result = self.fetch().await;
        let label = crate::metrics::IdentityResult {
            identity: self.settings.name.clone(),
            result: if result.is_ok() { "ok" } else { "error" },
        };
        self.metrics.jwks_fetches.get_or_create(&label).inc();
        match result {
            Ok(ks) => {
                self.fetches_ok.fetch_add(1, Ordering::Relaxed);
                let ks = Arc::new(ks);
                let old = self.current.swap(Some(ks.clone()));
                if let Some(old) = old {
                    let gone: HashSet<String> =
                        old.kids().difference(&ks.kids()).cloned().collect();
                    if !gone.is_empty() {
                        (self.on_change)(&self.settings.name, &gone);
                    }
                }
                tracing::debug!(identity = %self.settings.name, keys = ks.keys.len(), "JWKS fetched");
                Ok(ks)
            }
            Err(e) => {
                self.fetches_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let jwks_uri = match self.jwks_uri.load_full() {
            Some(u) => u,
            None => {
                let u = Arc::new(self.discover().await?);
                self.jwks_uri.store(Some(u.clone()));
                u
            }
        };
        let doc: serde_json::Value = self.get_json(&jwks_uri).await?;
        let keys = parse_jwks(&doc).map_err(|reason| FetchError::Invalid {
            uri: jwks_uri.to_string(),
            reason: reason.to_owned(),
        })?;
        Ok(KeySet {
            keys,
            fetched_at: Instant::now(),
        })
    }

    async fn discover(&self) -> Result<Uri, FetchError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let uri: Uri = url.parse().map_err(|_| FetchError::Invalid {
            uri: url.clone(),
            reason: "not a URL".to_owned(),
        })?;
        let doc: serde_json::Value = self.get_json(&uri).await?;
        discovered_jwks_uri(&doc, &self.settings.issuer)
            .map_err(|reason| FetchError::Invalid { uri: url, reason })
    }

    async fn get_json(&self, uri: &Uri) -> Result<serde_json::Value, FetchError> {
        let name = || uri.to_string();
        let req = Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("meetgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(ReqBody::full(Bytes::new()))
            .map_err(|e| FetchError::Invalid {
                uri: name(),
                reason: e.to_string(),
            })?;
        let resp = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| FetchError::Timeout { uri: name() })?
            .map_err(|source| FetchError::Request {
                uri: name(),
                source,
            })?;
        if resp.status() != StatusCode::OK {
            return Err(FetchError::Status {
                uri: name(),
                status: resp.status(),
            });
        }
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(resp.into_body(), MAX_DOCUMENT_BYTES).collect(),
        )
        .await
        .map_err(|_| FetchError::Timeout { uri: name() })?
        .map_err(|_| FetchError::Body { uri: name() })?
        .to_bytes();
        serde_json::from_slice(&body).map_err(|e| FetchError::Invalid {
            uri: name(),
            reason: e.to_string(),
        })
    }

    /// Fetches at start, then every `jwks_refresh_secs`; while the issuer
    /// fails, retries with doubling delays (from 1 s, capped at the refresh
    /// interval).
    async fn refresh_loop(self: Arc<Self>) {
        let refresh = self.settings.jwks_refresh;
        let mut backoff = Duration::from_secs(1).min(refresh);
        loop {
            let delay = match self.fetch_and_store().await {
                Ok(_) => {
                    // A regular refresh ends any unknown-kid cooldown.
                    self.refetch.invalidate_all();
                    backoff = Duration::from_secs(1).min(refresh);
                    refresh
                }
                Err(e) => {
                    tracing::warn!(identity = %self.settings.name, error = %crate::error_chain(&e), retry_in_ms = backoff.as_millis() as u64, "JWKS fetch failed");
                    let d = backoff;
                    backoff = (backoff * 2).min(refresh);
                    d
                }
            };
            tokio::time::sleep(delay).await;
        }
    }
}

/// The `jwks_uri` of an OpenID discovery document for `issuer`. Errors (the
/// reason, for the log): the document names another issuer, has no
/// `jwks_uri`, or it is not https (http only for loopback).
pub fn discovered_jwks_uri(doc: &serde_json::Value, issuer: &str) -> Result<Uri, String> {
    let named = doc
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if named != issuer {
        return Err(format!("its issuer \"{named}\" is not the configured one"));
    }
    let jwks: Uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| "no jwks_uri".to_owned())?
        .parse()
        .map_err(|_| "jwks_uri is not a URL".to_owned())?;
    let host = jwks.host().unwrap_or_default();
    let allowed = match jwks.scheme_str() {
        Some("https") => !host.is_empty(),
        Some("http") => is_loopback_host(host),
        _ => false,
    };
    if !allowed {
        return Err("jwks_uri must be https (http only for loopback)".to_owned());
    }
    Ok(jwks)
}

/// The usable signature keys of a JWKS document. Errors (the reason, for the
/// log): no `keys` array, or not one usable key in it.
pub fn parse_jwks(doc: &serde_json::Value) -> Result<Vec<VerifyKey>, &'static str> {
    let entries = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("no \"keys\" array")?;
    let keys: Vec<VerifyKey> = entries.iter().filter_map(parse_key).collect();
    if keys.is_empty() {
        return Err("no usable signature key");
    }
    Ok(keys)
}

/// Parses one JWK into a verification key; keys that are not for
/// signatures, of unsupported types or malformed are skipped.
fn parse_key(v: &serde_json::Value) -> Option<VerifyKey> {
    let jwk: Jwk = serde_json::from_value(v.clone()).ok()?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyFamily::Ec(Curve::P256),
            EllipticCurve::P384 => KeyFamily::Ec(Curve::P384),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            KeyFamily::Ed25519
        }
        // Symmetric ("oct") keys are never used: HS* is refused.
        _ => return None,
    };
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
    };
    if let Some(a) = alg {
        if !family.accepts(a) {
            return None;
        }
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        family,
        alg,
        key,
    })
}

/// Every identity's keys, kept across configuration reloads.
pub struct JwksRegistry {
    entries: crate::registry::TaskRegistry<IssuerKeys>,
    on_change: KeysChanged,
    metrics: Arc<crate::metrics::Metrics>,
}

impl JwksRegistry {
    /// A registry that reports disappeared kids to `on_change`.
    pub fn new(on_change: KeysChanged, metrics: Arc<crate::metrics::Metrics>) -> Self {
        JwksRegistry {
            entries: Default::default(),
            on_change,
            metrics,
        }
    }

    /// Returns the keys of every identity in `snap` (identity name → keys),
    /// starting refresh tasks for new or changed identities and stopping
    /// those no longer configured.
    pub fn sync(
        &self,
        snap: &Snapshot,
        outbound: &crate::pipeline::forward::UpstreamClient,
    ) -> HashMap<String, Arc<IssuerKeys>> {
        // Any change of settings (issuer, URIs, intervals) or of the trust
        // roots the fetcher's client holds starts afresh.
        let wanted = snap
            .identities
            .iter()
            .map(|(name, s)| (name.clone(), format!("{s:?}")));
        self.entries.sync(
            wanted,
            &snap.outbound_trust,
            |name| {
                Arc::new(IssuerKeys::new(
                    snap.identities[name].clone(),
                    outbound.clone(),
                    self.on_change.clone(),
                    self.metrics.clone(),
                ))
            },
            IssuerKeys::refresh_loop,
        )
    }
}
