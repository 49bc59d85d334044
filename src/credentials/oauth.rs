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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use secrecy::{ExposeSecret, SecretString};

use super::lifetime::{parse_expires_in, refresh_at, rejection_may_drop, REJECTION_COOLDOWN};
use crate::body::ReqBody;
use crate::config::{ClientAuth, CredentialKind, CredentialSettings};
use crate::pipeline::forward::UpstreamClient;

/// Bound on one token request.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Backoff bounds for transient failures.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Retry interval after the token endpoint refused the client itself.
const CONFIG_ERROR_RETRY: Duration = Duration::from_secs(300);

/// A fetched access token.
pub struct CachedToken {
    pub value: SecretString,
    /// Unix seconds after which the token must not be used.
    pub expires_at: u64,
    /// Unix seconds at which the background task replaces it.
    pub refresh_at: u64,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

/// The in-process token store (one per gateway, outliving reloads).
#[derive(Default)]
pub struct MemoryTokenStore {
    tokens: Mutex<HashMap<String, Arc<CachedToken>>>,
}

impl MemoryTokenStore {
    fn get(&self, key: &str) -> Option<Arc<CachedToken>> {
        self.tokens
            .lock()
            .expect("token store lock")
            .get(key)
            .cloned()
    }

    fn put(&self, key: &str, token: Arc<CachedToken>) {
        self.tokens
            .lock()
            .expect("token store lock")
            .insert(key.to_owned(), token);
    }

    /// Removes the token under `key` if it is still `value`.
    fn remove_if(&self, key: &str, value: &str) {
        let mut tokens = self.tokens.lock().expect("token store lock");
        if tokens.get(key).is_some_and(|t| {
            crate::secret::constant_time_eq(t.value.expose_secret().as_bytes(), value.as_bytes())
        }) {
            tokens.remove(key);
        }
    }
}

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

/// A token request: POST to `uri` with `headers` and a form `body`.
pub struct TokenRequest {
    pub uri: Uri,
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    pub body: String,
}

/// The token request for a fetched credential (spec section 4: POST,
/// `Authorization: Basic`, parameters in the body); `None` for minted kinds.
pub fn token_request(kind: &CredentialKind) -> Option<TokenRequest> {
    let basic = |id: &str, secret: &SecretString| {
        let v = format!(
            "Basic {}",
            STANDARD.encode(format!("{id}:{}", secret.expose_secret()))
        );
        let mut v = HeaderValue::from_str(&v).ok()?;
        v.set_sensitive(true);
        Some(v)
    };
    let form = HeaderValue::from_static("application/x-www-form-urlencoded");
    match kind {
        CredentialKind::ZoomS2sOAuth {
            account_id,
            client_id,
            client_secret,
            token_url,
            ..
        } => {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "account_credentials")
                .append_pair("account_id", account_id)
                .finish();
            let headers = vec![
                (AUTHORIZATION, basic(client_id, client_secret)?),
                (CONTENT_TYPE, form),
            ];
            Some(TokenRequest {
                uri: token_url.clone(),
                headers,
                body,
            })
        }
        CredentialKind::OAuthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            client_auth,
            ..
        } => {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            ser.append_pair("grant_type", "client_credentials");
            if let Some(s) = scope {
                ser.append_pair("scope", s);
            }
            if let Some(a) = audience {
                ser.append_pair("audience", a);
            }
            let mut headers = vec![(CONTENT_TYPE, form)];
            match client_auth {
                ClientAuth::Basic => {
                    headers.push((AUTHORIZATION, basic(client_id, client_secret)?))
                }
                ClientAuth::Post => {
                    ser.append_pair("client_id", client_id);
                    ser.append_pair("client_secret", client_secret.expose_secret());
                }
            }
            Some(TokenRequest {
                uri: token_url.clone(),
                headers,
                body: ser.finish(),
            })
        }
        _ => None,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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
                    tracing::error!(credential = %self.name, error = %crate::error_chain(&e), "credential configuration error: the token endpoint refused the client");
                    CONFIG_ERROR_RETRY
                } else {
                    let mut backoff = self.backoff.lock().expect("backoff lock");
                    let d = jitter(*backoff);
                    *backoff = (*backoff * 2).min(BACKOFF_MAX);
                    tracing::warn!(credential = %self.name, error = %crate::error_chain(&e), retry_in_ms = d.as_millis() as u64, "token fetch failed");
                    d
                };
                // Requests stop asking for a while; a refused client is still
                // retried by requests every BACKOFF_MAX in case it was fixed.
                *self.cooldown_until.lock().expect("cooldown lock") =
                    Some(Instant::now() + delay.min(BACKOFF_MAX));
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

/// A token as the cluster store keeps it.
fn shared_json(t: &CachedToken) -> String {
    serde_json::json!({
        "access_token": t.value.expose_secret(),
        "expires_at": t.expires_at,
        "refresh_at": t.refresh_at,
    })
    .to_string()
}

/// Reads [`shared_json`]; anything else is ignored (and fetched over).
fn parse_shared(s: &str) -> Option<CachedToken> {
    #[derive(serde::Deserialize)]
    struct Shared {
        access_token: SecretString,
        expires_at: u64,
        refresh_at: u64,
    }
    let t: Shared = serde_json::from_str(s).ok()?;
    let usable = !t.access_token.expose_secret().is_empty()
        && HeaderValue::from_str(&format!("Bearer {}", t.access_token.expose_secret())).is_ok();
    usable.then_some(CachedToken {
        value: t.access_token,
        expires_at: t.expires_at,
        refresh_at: t.refresh_at,
    })
}

/// A stable key for a credential's settings: a hash, so the secret itself is
/// never a key.
fn settings_key(kind: &CredentialKind) -> String {
    let Some(r) = token_request(kind) else {
        return crate::registry::fingerprint(&[]);
    };
    let uri = r.uri.to_string();
    let mut parts: Vec<&[u8]> = vec![uri.as_bytes()];
    for (k, v) in &r.headers {
        parts.push(k.as_str().as_bytes());
        parts.push(v.as_bytes());
    }
    parts.push(r.body.as_bytes());
    crate::registry::fingerprint(&parts)
}

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
    pub fn sync(&self, snap: &crate::config::Snapshot) -> HashMap<String, Arc<TokenSource>> {
        let wanted = snap
            .credentials
            .iter()
            .filter(|(_, c)| token_request(&c.kind).is_some())
            .map(|(name, c)| {
                // The trust roots the source's client holds are part of its
                // key: a changed `[outbound] ca_file` starts a new source.
                let settings = settings_key(&c.kind);
                let key = crate::registry::fingerprint(&[
                    name.as_bytes(),
                    settings.as_bytes(),
                    snap.outbound_trust.as_bytes(),
                ]);
                (name.clone(), key)
            });
        self.entries.sync(
            wanted,
            |name| {
                Arc::new(TokenSource::new(
                    snap.credentials[name].clone(),
                    snap.outbound.clone(),
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
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::test_vectors::vector;

    #[test]
    fn s2s_token_request_vector() {
        let v = vector("zoom_s2s_oauth_token_request");
        let i = &v["inputs"];
        let kind = CredentialKind::ZoomS2sOAuth {
            account_id: i["account_id"].as_str().unwrap().into(),
            client_id: i["client_id"].as_str().unwrap().into(),
            client_secret: i["client_secret"].as_str().unwrap().to_owned().into(),
            token_url: "https://zoom.us/oauth/token".parse().unwrap(),
            refresh_before: Duration::from_secs(60),
        };
        let TokenRequest { uri, headers, body } = token_request(&kind).unwrap();
        let e = &v["expected"];
        assert_eq!(uri.path(), e["url_path"]);
        assert_eq!(body, e["body"]);
        let get = |n: http::HeaderName| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .unwrap()
                .1
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(get(AUTHORIZATION), e["authorization_header"]);
        assert_eq!(get(CONTENT_TYPE), e["content_type"]);
        assert!(headers
            .iter()
            .find(|(k, _)| *k == AUTHORIZATION)
            .unwrap()
            .1
            .is_sensitive());
    }

    #[test]
    fn cache_window_vector_and_no_minimum_lifetime() {
        let v = vector("zoom_s2s_oauth_cache_window");
        let fetched = v["inputs"]["fetched_at_unix"].as_u64().unwrap();
        let resp: Value =
            serde_json::from_str(v["inputs"]["response_json"].as_str().unwrap()).unwrap();
        let expires_in = resp["expires_in"].as_u64().unwrap();
        let margin = v["inputs"]["refresh_margin_seconds"].as_u64().unwrap();
        assert_eq!(
            fetched + expires_in,
            v["expected"]["expires_at_unix"].as_u64().unwrap()
        );
        assert_eq!(
            refresh_at(fetched, expires_in, margin),
            v["expected"]["refresh_after_unix"].as_u64().unwrap()
        );
        assert_eq!(refresh_at(1000, 63, 60), 1003, "docs/BEHAVIOUR.md item 29");
        assert_eq!(
            refresh_at(1000, 30, 60),
            1015,
            "shorter than the margin: half-way"
        );
    }

    #[test]
    fn client_credentials_post_puts_the_client_in_the_body() {
        let kind = CredentialKind::OAuthClientCredentials {
            token_url: "https://idp.example/token".parse().unwrap(),
            client_id: "cid".into(),
            client_secret: "s3cr3t&=".to_owned().into(),
            scope: Some("a b".into()),
            audience: Some("https://api.example".into()),
            client_auth: ClientAuth::Post,
            refresh_before: Duration::from_secs(60),
        };
        let TokenRequest { headers, body, .. } = token_request(&kind).unwrap();
        assert!(headers.iter().all(|(k, _)| *k != AUTHORIZATION));
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fapi.example&client_id=cid&client_secret=s3cr3t%26%3D"
        );
    }

    /// A Zoom S2S token source with no cluster link (never fetches here).
    fn source() -> TokenSource {
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let settings = Arc::new(CredentialSettings {
            name: "zoom_api".into(),
            kind: CredentialKind::ZoomS2sOAuth {
                account_id: "acc".into(),
                client_id: "cid".into(),
                client_secret: "secret".to_owned().into(),
                token_url: "https://zoom.us/oauth/token".parse().unwrap(),
                refresh_before: Duration::from_secs(60),
            },
        });
        TokenSource::new(
            settings,
            crate::pipeline::forward::new_client(rustls::RootCertStore::empty()),
            Arc::default(),
            Arc::new(crate::cluster::Cluster::new(metrics.clone())),
            metrics,
        )
    }

    fn cache(src: &TokenSource, value: &str) {
        let t = CachedToken {
            value: SecretString::from(value.to_owned()),
            expires_at: now_secs() + 3600,
            refresh_at: now_secs() + 3540,
        };
        src.store.put(&src.key, Arc::new(t));
    }

    fn cached(src: &TokenSource) -> Option<String> {
        src.current().map(|t| t.value.expose_secret().to_owned())
    }

    #[tokio::test]
    async fn a_401_drops_the_token_at_most_once_per_cooldown() {
        let src = source();
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        cache(&src, "tok-1");
        assert!(src.invalidate_at("tok-1", t0).await, "the first 401 drops");
        assert_eq!(cached(&src), None);
        cache(&src, "tok-2");
        assert!(
            src.invalidate_at("tok-1", at(1)).await,
            "already replaced: a retry uses the new token"
        );
        assert_eq!(cached(&src).as_deref(), Some("tok-2"));
        assert!(
            !src.invalidate_at("tok-2", at(9)).await,
            "inside the cooldown the token is kept"
        );
        assert_eq!(cached(&src).as_deref(), Some("tok-2"));
        assert!(
            src.invalidate_at("tok-2", t0 + REJECTION_COOLDOWN).await,
            "after the cooldown a 401 drops again"
        );
        assert_eq!(cached(&src), None);
        cache(&src, "tok-3");
        assert!(
            !src.invalidate_at("tok-3", t0 + REJECTION_COOLDOWN + Duration::from_secs(5))
                .await,
            "the cooldown restarts with each drop"
        );
    }

    #[test]
    fn cached_token_debug_hides_the_value() {
        let t = CachedToken {
            value: SecretString::from("tok-secret-value".to_owned()),
            expires_at: 1,
            refresh_at: 1,
        };
        assert!(!format!("{t:?}").contains("tok-secret-value"));
    }
}
