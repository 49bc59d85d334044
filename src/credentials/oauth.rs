//! Fetched credentials: Zoom Server-to-Server OAuth (spec section 4) and any
//! OAuth 2.0 client-credentials endpoint.
//!
//! One [`TokenSource`] per credential:
//! - a background task fetches at start and again at
//!   `fetched_at + expires_in - refresh_before_secs` (never sooner than
//!   [`MIN_REFRESH_SECS`](super::lifetime::MIN_REFRESH_SECS) after the
//!   fetch; `expires_in` outside the bounds of [`parse_expires_in`] is an
//!   unusable answer), so requests never wait once warm;
//! - fetches are single-flight (one lock, re-checked after acquiring it): any
//!   number of concurrent cold-start requests cause exactly one token request;
//! - failures back off with jitter (5xx and network errors from 1 s, a
//!   refused client — `invalid_client`, `unsupported_grant_type` — is a
//!   configuration error retried only every few minutes), and while backing
//!   off, requests get 503 `credential_unavailable` at once instead of piling
//!   onto the token endpoint;
//! - [`TokenSource::invalidate`] drops a token an upstream rejected, at most
//!   once per [`REJECTION_COOLDOWN`]: inside it the token is kept and the
//!   upstream's 401 passes through, so an upstream answering 401 to every
//!   token cannot turn each request into a token request.
//!
//! Tokens live in a [`MemoryTokenStore`] keyed by a hash of the credential's
//! settings, never by a secret. With `[cluster]`, replicas share them through
//! Redis (`PREFIX + "token:" + key`, JSON with the expiry): before fetching,
//! a replica adopts a token another one fetched; otherwise it takes a short
//! Redis lock (`PREFIX + "token-lock:" + key`) and fetches, while the others
//! poll for the result — for at most `timeout_ms` plus one fetch, then they
//! fetch themselves. Requests keep using a still-valid token meanwhile.
//! Redis failing at any step means this replica fetches on its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, USER_AGENT};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use secrecy::{ExposeSecret, SecretString};

use super::lifetime::{parse_expires_in, refresh_at, rejection_may_drop, REJECTION_COOLDOWN};
use crate::body::ReqBody;
use crate::config::{CredentialKind, CredentialSettings};
use crate::credentials::token_request::settings_key;
pub use crate::credentials::token_request::{token_request, TokenRequest};
use crate::credentials::token_store::{parse_shared, shared_json};
pub use crate::credentials::token_store::{CachedToken, MemoryTokenStore};
use crate::pipeline::forward::UpstreamClient;

/// Bound on one token request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff bounds for transient failures.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Retry interval after the token endpoint refused the client itself (a
/// slow schedule: the secret may be fixed at the provider, not here).
const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(60);

/// Why no token could be had.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("token request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("token request to {url} timed out")]
    Timeout { url: String },
    #[error("token endpoint {url} answered {status}")]
    Status { url: String, status: StatusCode },
    /// The endpoint refused the client: wrong or rotated credentials, or
    /// credentials of another app type. A configuration error.
    #[error("token endpoint {url} refused the client: {error} (check the credential's client id, secret and type)")]
    Refused { url: String, error: String },
    #[error("token endpoint {url} sent an unusable answer: {reason}")]
    Invalid { url: String, reason: String },
    #[error("no token yet; the last attempt failed and the next one is scheduled")]
    CoolingDown,
}

impl FetchError {
    fn is_config_error(&self) -> bool {
        matches!(self, FetchError::Refused { .. })
    }
}

use crate::now_secs;

/// A random factor in 0.8..1.2 for backoff jitter.
fn jitter(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 400) as u32;
    d * (800 + r) / 1000
}

/// One fetched credential.
pub struct TokenSource {
    pub name: String,
    kind: Arc<CredentialSettings>,
    key: String,
    client: UpstreamClient,
    store: Arc<MemoryTokenStore>,
    cluster: Arc<crate::cluster::Cluster>,
    fetch_lock: tokio::sync::Mutex<()>,
    /// Until when requests do not trigger a fetch (after a failure).
    cooldown_until: Mutex<Option<Instant>>,
    /// The next delay after a transient failure (doubles, reset on success).
    backoff: Mutex<Duration>,
    /// When an upstream's 401 last made this replica drop the token.
    last_rejection: Mutex<Option<Instant>>,
    /// Wakes the refresh task when a token was stored outside it.
    changed: tokio::sync::Notify,
    metrics: Arc<crate::metrics::Metrics>,
    /// Set once a token was obtained (readiness).
    pub obtained: AtomicBool,
    /// Token requests made, successful and failed.
    pub fetches_ok: AtomicU64,
    pub fetches_failed: AtomicU64,
}

impl TokenSource {
    fn new(
        settings: Arc<CredentialSettings>,
        client: UpstreamClient,
        store: Arc<MemoryTokenStore>,
        cluster: Arc<crate::cluster::Cluster>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        TokenSource {
            name: settings.name.clone(),
            key: settings_key(&settings.kind),
            kind: settings,
            client,
            store,
            cluster,
            fetch_lock: tokio::sync::Mutex::new(()),
            cooldown_until: Mutex::new(None),
            backoff: Mutex::new(BACKOFF_MIN),
            last_rejection: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
            metrics,
            obtained: AtomicBool::new(false),
            fetches_ok: AtomicU64::new(0),
            fetches_failed: AtomicU64::new(0),
        }
    }

    fn refresh_before(&self) -> u64 {
        match &self.kind.kind {
            CredentialKind::ZoomS2sOAuth { refresh_before, .. }
            | CredentialKind::OAuthClientCredentials { refresh_before, .. } => {
                refresh_before.as_secs()
            }
            _ => 60,
        }
    }

    /// The cached token while it is valid: what a request uses without
    /// waiting.
    pub fn current(&self) -> Option<Arc<CachedToken>> {
        self.store
            .get(&self.key)
            .filter(|t| now_secs() < t.expires_at)
    }

    /// A valid token: cached, or fetched once for all concurrent callers.
    pub async fn token(&self) -> Result<Arc<CachedToken>, FetchError> {
        if let Some(t) = self.current() {
            return Ok(t);
        }
        if self.cooling_down() {
            return Err(FetchError::CoolingDown);
        }
        self.fetch_shared().await
    }

    fn cooling_down(&self) -> bool {
        self.cooldown_until
            .lock()
            .expect("cooldown lock")
            .is_some_and(|u| Instant::now() < u)
    }

    /// Fetches under the lock unless someone else just did.
    async fn fetch_shared(&self) -> Result<Arc<CachedToken>, FetchError> {
        let _guard = self.fetch_lock.lock().await;
        // Someone fetched while we waited for the lock.
        if let Some(t) = self.current() {
            return Ok(t);
        }
        // Or failed: do not ask again until the backoff has passed.
        if self.cooling_down() {
            return Err(FetchError::CoolingDown);
        }
        let now = now_secs();
        self.obtain(|t| now < t.expires_at).await
    }

    /// An upstream rejected `value`: drops it, here and in the shared store,
    /// so the next caller gets a new one — unless this replica dropped one
    /// for a 401 less than [`REJECTION_COOLDOWN`] ago.
    ///
    /// Returns whether sending the request again can use another token:
    /// true when `value` was dropped now, or is no longer the cached token
    /// (a concurrent 401 or a refresh replaced it); false inside the
    /// cooldown while `value` is still the cached token, which is then kept
    /// and the caller passes the upstream's 401 through.
    pub async fn invalidate(&self, value: &str) -> bool {
        self.invalidate_at(value, Instant::now()).await
    }

    async fn invalidate_at(&self, value: &str, now: Instant) -> bool {
        {
            let mut last = self.last_rejection.lock().expect("rejection lock");
            let cached = self.store.get(&self.key).is_some_and(|t| {
                crate::secret::constant_time_eq(
                    t.value.expose_secret().as_bytes(),
                    value.as_bytes(),
                )
            });
            if !cached {
                return true;
            }
            if !rejection_may_drop(*last, now) {
                tracing::info!(credential = %self.name, cooldown_secs = REJECTION_COOLDOWN.as_secs(), "upstream refused the token again within the refetch cooldown; keeping it");
                return false;
            }
            *last = Some(now);
            self.store.remove_if(&self.key, value);
        }
        if let Some(link) = self.cluster.link() {
            let _ = link
                .delete_token_if(&link.key("token", &self.key), value)
                .await;
        }
        true
    }

    /// A token from the shared store when `[cluster]` is configured and one
    /// there is `acceptable`; otherwise fetched, by this replica alone or by
    /// whichever replica holds the shared lock. Called under `fetch_lock`.
    async fn obtain(
        &self,
        acceptable: impl Fn(&CachedToken) -> bool,
    ) -> Result<Arc<CachedToken>, FetchError> {
        let Some(link) = self.cluster.link() else {
            return self.fetch().await;
        };
        let token_key = link.key("token", &self.key);
        let lock_key = link.key("token-lock", &self.key);
        let owner = link.owner_token();
        let deadline = Instant::now() + link.timeout() + FETCH_TIMEOUT;
        // The shared token, made current here if it is acceptable.
        let take = |shared: Option<String>| {
            let t = shared.as_deref().and_then(parse_shared)?;
            acceptable(&t).then(|| {
                tracing::debug!(credential = %self.name, "token taken from the cluster store");
                let t = Arc::new(t);
                self.accept(t.clone());
                t
            })
        };
        loop {
            let Some(shared) = link.get(&token_key).await else {
                break;
            };
            if let Some(t) = take(shared) {
                return Ok(t);
            }
            match link.set_nx(&lock_key, &owner, SHARED_LOCK_TTL).await {
                Some(true) => {
                    // Re-check under the lock: the previous holder may have
                    // stored its token between our read and our lock.
                    if let Some(t) = take(link.get(&token_key).await.flatten()) {
                        let _ = link.delete_if_equal(&lock_key, &owner).await;
                        return Ok(t);
                    }
                    let result = self.fetch().await;
                    if let Ok(t) = &result {
                        let ttl = t.expires_at.saturating_sub(now_secs());
                        if ttl > 0 {
                            let _ = link
                                .set(&token_key, &shared_json(t), Duration::from_secs(ttl))
                                .await;
                        }
                    }
                    let _ = link.delete_if_equal(&lock_key, &owner).await;
                    return result;
                }
                // Another replica is fetching: wait for its result.
                Some(false) if Instant::now() < deadline => {
                    tokio::time::sleep(SHARED_POLL).await;
                }
                Some(false) => {
                    tracing::warn!(credential = %self.name, "no token from the replica holding the cluster lock in time; fetching here");
                    break;
                }
                None => break,
            }
        }
        self.fetch().await
    }

    /// Makes `token` the current one.
    fn accept(&self, token: Arc<CachedToken>) {
        self.store.put(&self.key, token);
        self.obtained.store(true, Ordering::SeqCst);
        *self.cooldown_until.lock().expect("cooldown lock") = None;
        *self.backoff.lock().expect("backoff lock") = BACKOFF_MIN;
        self.changed.notify_one();
    }

    async fn fetch(&self) -> Result<Arc<CachedToken>, FetchError> {
        let TokenRequest { uri, headers, body } =
            token_request(&self.kind.kind).ok_or_else(|| FetchError::Invalid {
                url: String::new(),
                reason: "not a fetched credential".to_owned(),
            })?;
        let url = uri.to_string();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("meetgate/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(ReqBody::full(Bytes::from(body)))
            .map_err(|e| FetchError::Invalid {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let fetched_at = now_secs();
        let result = async {
            let resp = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(req))
                .await
                .map_err(|_| FetchError::Timeout { url: url.clone() })?
                .map_err(|source| FetchError::Request {
                    url: url.clone(),
                    source,
                })?;
            let status = resp.status();
            let bytes = tokio::time::timeout(
                FETCH_TIMEOUT,
                Limited::new(resp.into_body(), 64 * 1024).collect(),
            )
            .await
            .map_err(|_| FetchError::Timeout { url: url.clone() })?
            .map_err(|_| FetchError::Invalid {
                url: url.clone(),
                reason: "unreadable or oversized body".to_owned(),
            })?
            .to_bytes();
            let json: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            if status.is_client_error() {
                // 400 invalid_client / unsupported_grant_type, 401: the client
                // itself is refused. Only the error code is kept (no body).
                let error = json
                    .get("error")
                    .and_then(|e| e.as_str())
                    .map(|e| {
                        e.chars()
                            .filter(|c| c.is_ascii_graphic())
                            .take(64)
                            .collect()
                    })
                    .unwrap_or_else(|| status.to_string());
                return Err(FetchError::Refused {
                    url: url.clone(),
                    error,
                });
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.clone(),
                    status,
                });
            }
            let access = json
                .get("access_token")
                .and_then(|t| t.as_str())
                .filter(|t| !t.is_empty() && HeaderValue::from_str(&format!("Bearer {t}")).is_ok())
                .ok_or_else(|| FetchError::Invalid {
                    url: url.clone(),
                    reason: "no usable access_token".to_owned(),
                })?;
            // Bounded: a degenerate lifetime (0, 1, u64::MAX) used to make
            // the refresh task fetch in a loop; now it backs off.
            let expires_in =
                parse_expires_in(json.get("expires_in")).map_err(|reason| FetchError::Invalid {
                    url: url.clone(),
                    reason,
                })?;
            Ok(Arc::new(CachedToken {
                value: SecretString::from(access.to_owned()),
                expires_at: fetched_at.saturating_add(expires_in),
                refresh_at: refresh_at(fetched_at, expires_in, self.refresh_before()),
            }))
        }
        .await;
        let label = crate::metrics::CredentialResult {
            credential: self.name.clone(),
            result: match &result {
                Ok(_) => "ok",
                Err(FetchError::Refused { .. }) => "config_error",
                Err(_) => "error",
            },
        };
        self.metrics.credential_fetches.get_or_create(&label).inc();
        match result {
            Ok(token) => {
                self.fetches_ok.fetch_add(1, Ordering::SeqCst);
                self.accept(token.clone());
                tracing::debug!(credential = %self.name, expires_at = token.expires_at, "token fetched");
                Ok(token)
            }
            Err(e) => {
                self.fetches_failed.fetch_add(1, Ordering::SeqCst);
                let delay = if e.is_config_error() {
                    tracing::error!(credential = %self.name, error = %crate::error_chain(&e), retry_in_ms = CONFIG_ERROR_RETRY.as_millis() as u64, "credential configuration error: the token endpoint refused the client");
                    CONFIG_ERROR_RETRY
                } else {
                    let mut backoff = self.backoff.lock().expect("backoff lock");
                    let d = jitter(*backoff);
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    tracing::warn!(credential = %self.name, error = %crate::error_chain(&e), retry_in_ms = d.as_millis() as u64, "token fetch failed");
                    d
                };
                // Requests stop asking for a while; the refresh task tries
                // again when it ends (a refused client every
                // CONFIG_ERROR_RETRY, in case it was fixed at the provider).
                *self.cooldown_until.lock().expect("cooldown lock") = Some(Instant::now() + delay);
                self.changed.notify_one();
                Err(e)
            }
        }
    }

    /// How long the refresh task waits before its next attempt.
    fn next_attempt_in(&self) -> Duration {
        if let Some(t) = self.store.get(&self.key) {
            let now = now_secs();
            if t.refresh_at > now {
                return Duration::from_secs(t.refresh_at - now);
            }
        }
        match *self.cooldown_until.lock().expect("cooldown lock") {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => Duration::ZERO,
        }
    }

    /// Seconds until the current token expires (for the expiry gauge).
    pub fn expires_in(&self) -> Option<i64> {
        self.store.get(&self.key).map(|t| {
            let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
            secs(t.expires_at).saturating_sub(secs(now_secs()))
        })
    }

    /// Keeps a fresh token in the store: fetch at start, then before each
    /// expiry; after failures, again when the backoff has passed. Woken
    /// whenever a token is stored or a fetch fails elsewhere, to reschedule.
    async fn refresh_loop(self: Arc<Self>) {
        loop {
            let wait = self.next_attempt_in();
            if wait.is_zero() {
                let _guard = self.fetch_lock.lock().await;
                if self.next_attempt_in().is_zero() {
                    // Errors are logged and turned into a cooldown by fetch().
                    // A replica that refreshed already shares one not yet due.
                    let now = now_secs();
                    let _ = self.obtain(|t| now < t.refresh_at).await;
                }
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
            }
        }
    }
}

/// How long the shared fetch lock lives at most (a replica that dies while
/// fetching frees it after this).
const SHARED_LOCK_TTL: Duration = Duration::from_secs(2 * FETCH_TIMEOUT.as_secs() + 5);
/// How often a replica waiting for another one's fetch looks again.
const SHARED_POLL: Duration = Duration::from_millis(50);

/// Every fetched credential's token source, kept across reloads.
pub struct CredentialRegistry {
    store: Arc<MemoryTokenStore>,
    cluster: Arc<crate::cluster::Cluster>,
    metrics: Arc<crate::metrics::Metrics>,
    entries: crate::registry::TaskRegistry<TokenSource>,
}

impl CredentialRegistry {
    /// A registry keeping tokens in process, shared through `cluster`
    /// when it has a link.
    pub fn new(
        cluster: Arc<crate::cluster::Cluster>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        CredentialRegistry {
            store: Arc::default(),
            cluster,
            metrics,
            entries: Default::default(),
        }
    }

    /// Token sources for the snapshot's fetched credentials (name → source),
    /// starting refresh tasks for new or changed ones and stopping the rest.
    pub fn sync(
        &self,
        snap: &crate::config::Snapshot,
        outbound: &crate::pipeline::forward::UpstreamClient,
    ) -> HashMap<String, Arc<TokenSource>> {
        let wanted = snap
            .credentials
            .iter()
            .filter(|(_, c)| token_request(&c.kind).is_some())
            .map(|(name, c)| (name.clone(), settings_key(&c.kind)));
        // The trust roots the source's client holds are part of its key: a
        // changed `[outbound] ca_file` starts a new source.
        self.entries.sync(
            wanted,
            &snap.outbound_trust,
            |name| {
                Arc::new(TokenSource::new(
                    snap.credentials[name].clone(),
                    outbound.clone(),
                    self.store.clone(),
                    self.cluster.clone(),
                    self.metrics.clone(),
                ))
            },
            TokenSource::refresh_loop,
        )
    }
}

#[cfg(test)]
#[path = "oauth_tests.rs"]
mod tests;
