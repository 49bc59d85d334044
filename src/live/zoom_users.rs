//! The live side of one `[zoom_user.NAME]`: its client for Zoom's OAuth
//! and user-token API, the grant vault, and the ZAKs cached per grant.
//!
//! A caller's grant is found by (identity, subject) of their verified
//! token; its access token is refreshed through the vault (one refresh per
//! grant at a time, the rotated pair written before it is used).

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::ZoomUserAppSettings;
use crate::pipeline::authn::Principal;
use crate::vault::{Grant, GrantKey, RefreshFailure, StateError, Vault, VaultError};
use crate::zoom_user::{ZoomUserClient, ZoomUserError};

/// A ZAK is reused until this long before it expires.
const ZAK_REUSE_MARGIN_SECS: u64 = 300;

/// Why a caller's Zoom grant could not serve the request.
#[derive(Debug, thiserror::Error)]
pub enum ZoomUserFailure {
    /// No grant for the caller: send the user through connect.
    #[error("the caller has not connected a Zoom user")]
    NotConnected,
    /// The grant died (refresh token refused, scope missing, user gone)
    /// and was removed: send the user through connect again.
    #[error("the caller's Zoom authorization must be renewed")]
    ReconnectRequired,
    /// Zoom refused the OBF token: the authorizing user is not in the
    /// meeting.
    #[error("the authorizing Zoom user is not in the meeting")]
    ObfUserNotInMeeting,
    /// The caller's token has no subject to key a grant by.
    #[error("the caller's token has no subject")]
    NoSubject,
    /// Zoom refused or could not be reached.
    #[error("Zoom: {0}")]
    Zoom(ZoomUserError),
    /// The grant store failed.
    #[error("grant store: {0}")]
    Store(VaultError),
    /// The callback's `state` is missing, altered, expired or foreign.
    #[error("OAuth state refused: {}", .0.code())]
    State(StateError),
    /// The callback's `state` was used already.
    #[error("OAuth state used twice")]
    StateReplayed,
    /// `return_to` is not on the app's allow-list.
    #[error("return_to is not on the allow-list")]
    ReturnToNotAllowed,
    /// Zoom redirected back with an `error` (the user declined).
    #[error("the user did not authorize the app at Zoom")]
    AuthorizationDenied,
    /// The code exchange (or reading the new user) failed: nothing stored.
    #[error("code exchange failed: {0}")]
    Exchange(ZoomUserError),
}

impl ZoomUserFailure {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            ZoomUserFailure::NotConnected => "zoom_user_not_connected",
            ZoomUserFailure::ReconnectRequired => "zoom_user_reconnect_required",
            ZoomUserFailure::ObfUserNotInMeeting => "obf_user_not_in_meeting",
            ZoomUserFailure::NoSubject => "no_subject",
            ZoomUserFailure::Zoom(e) => e.code(),
            ZoomUserFailure::Store(_) => "grant_store_unavailable",
            ZoomUserFailure::State(e) => e.code(),
            ZoomUserFailure::StateReplayed => "state_replayed",
            ZoomUserFailure::ReturnToNotAllowed => "return_to_not_allowed",
            ZoomUserFailure::AuthorizationDenied => "zoom_authorization_denied",
            ZoomUserFailure::Exchange(ZoomUserError::InvalidGrant) => "zoom_code_rejected",
            ZoomUserFailure::Exchange(e) => e.code(),
        }
    }

    /// The HTTP status answered.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            ZoomUserFailure::NotConnected
            | ZoomUserFailure::ReconnectRequired
            | ZoomUserFailure::ObfUserNotInMeeting => S::CONFLICT,
            ZoomUserFailure::NoSubject => S::FORBIDDEN,
            ZoomUserFailure::State(_)
            | ZoomUserFailure::StateReplayed
            | ZoomUserFailure::ReturnToNotAllowed
            | ZoomUserFailure::AuthorizationDenied
            | ZoomUserFailure::Exchange(ZoomUserError::InvalidGrant) => S::BAD_REQUEST,
            ZoomUserFailure::Store(_) => S::SERVICE_UNAVAILABLE,
            ZoomUserFailure::Zoom(e) | ZoomUserFailure::Exchange(e) => match e {
                ZoomUserError::RateLimited { .. } => S::SERVICE_UNAVAILABLE,
                ZoomUserError::InvalidRequest { .. } => S::BAD_REQUEST,
                _ => S::BAD_GATEWAY,
            },
        }
    }

    /// What the caller is told (never a token or code).
    pub fn description(&self) -> &'static str {
        match self {
            ZoomUserFailure::NotConnected => {
                "no Zoom user is connected for the caller: send the user through connect"
            }
            ZoomUserFailure::ReconnectRequired => {
                "the caller's Zoom authorization is no longer valid: send the user through connect again"
            }
            ZoomUserFailure::ObfUserNotInMeeting => {
                "Zoom refused the on-behalf token: the authorizing user must be in the meeting first"
            }
            ZoomUserFailure::NoSubject => "the caller's token has no subject to keep a grant for",
            ZoomUserFailure::Zoom(_) => "Zoom did not answer as expected; retry later",
            ZoomUserFailure::Store(_) => "the grant store is not available; retry later",
            ZoomUserFailure::State(StateError::Expired) => {
                "the authorization took too long; start again from connect"
            }
            ZoomUserFailure::State(_) => "the authorization state is missing or not valid",
            ZoomUserFailure::StateReplayed => "this authorization was completed already",
            ZoomUserFailure::ReturnToNotAllowed => "return_to is not an allowed address",
            ZoomUserFailure::AuthorizationDenied => "the app was not authorized at Zoom",
            ZoomUserFailure::Exchange(_) => {
                "Zoom did not accept the authorization; nothing was stored, start again from connect"
            }
        }
    }
}

impl ZoomUserFailure {
    fn from_zoom(e: ZoomUserError) -> Self {
        match e {
            e if e.needs_reconnect() => ZoomUserFailure::ReconnectRequired,
            ZoomUserError::ObfUserNotInMeeting => ZoomUserFailure::ObfUserNotInMeeting,
            e => ZoomUserFailure::Zoom(e),
        }
    }
}

struct CachedZak {
    token: SecretString,
    zoom_user_id: String,
    expires_at: u64,
}

/// One Zoom app users authorize, as running.
pub struct ZoomUsers {
    pub settings: Arc<ZoomUserAppSettings>,
    pub client: ZoomUserClient,
    pub vault: Arc<Vault>,
    /// ZAK per grant key, with the Zoom user it belongs to and its expiry.
    zaks: moka::future::Cache<String, Arc<CachedZak>>,
}

impl ZoomUsers {
    pub fn new(
        settings: Arc<ZoomUserAppSettings>,
        outbound: crate::pipeline::forward::UpstreamClient,
        vault: Arc<Vault>,
    ) -> Self {
        let client_settings = crate::zoom_user::ZoomUserSettings {
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            redirect_uri: settings.redirect_uri.clone(),
            oauth_base: settings.oauth_base.clone(),
            api_base: settings.api_base.clone(),
            timeout: crate::zoom_user::DEFAULT_TIMEOUT,
        };
        ZoomUsers {
            client: ZoomUserClient::new(Arc::new(client_settings), outbound),
            settings,
            vault,
            zaks: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(366 * 24 * 3600))
                .build(),
        }
    }

    /// The grant key of a verified caller: per Zoom app (`APP/IDENTITY`,
    /// subject), so two apps never share a grant.
    pub fn key(&self, p: &Principal) -> Result<GrantKey, ZoomUserFailure> {
        let subject = p.subject.as_deref().ok_or(ZoomUserFailure::NoSubject)?;
        let identity = format!("{}/{}", self.settings.name, p.identity);
        Ok(GrantKey::new(identity, subject))
    }

    /// The caller's grant with a usable access token (refreshed if needed).
    pub async fn grant(&self, p: &Principal) -> Result<Grant, ZoomUserFailure> {
        self.grant_unless(p, None).await
    }

    /// The caller's grant; refreshed if about to expire, or if it still
    /// holds `refused` (an access token Zoom just refused).
    async fn grant_unless(
        &self,
        p: &Principal,
        refused: Option<&SecretString>,
    ) -> Result<Grant, ZoomUserFailure> {
        let key = self.key(p)?;
        let client = &self.client;
        let stale = |g: &Grant| {
            g.needs_refresh(crate::now_secs(), crate::vault::REFRESH_MARGIN_SECS)
                || refused.is_some_and(|r| r.expose_secret() == g.access_token.expose_secret())
        };
        let result = self
            .vault
            .refreshed(
                &key,
                stale,
                |g: Grant| async move {
                    let set = client.refresh(&g.refresh_token).await?;
                    let now = crate::now_secs();
                    Ok::<_, ZoomUserError>(Grant {
                        access_token: set.access_token,
                        refresh_token: set.refresh_token,
                        access_expires_at: set.expires_at,
                        scopes: set.scopes,
                        api_url: set.api_url,
                        updated_at: now,
                        ..g
                    })
                },
                ZoomUserError::needs_reconnect,
            )
            .await;
        match result {
            Ok(Some(g)) => Ok(g),
            Ok(None) => Err(ZoomUserFailure::NotConnected),
            Err(RefreshFailure::Vault(e)) => Err(ZoomUserFailure::Store(e)),
            Err(RefreshFailure::Refresh { error, dropped }) => {
                if dropped {
                    self.zaks.invalidate(&key.encode()).await;
                    tracing::info!(zoom_user = %self.settings.name, code = error.code(), "Zoom grant removed: the user must connect again");
                }
                Err(ZoomUserFailure::from_zoom(error))
            }
        }
    }

    /// A ZAK for the caller's Zoom user, reused until shortly before it
    /// expires while the grant it came from is still stored (a disconnect
    /// or deauthorization on any replica ends its use).
    pub async fn zak(&self, p: &Principal, ttl: Duration) -> Result<SecretString, ZoomUserFailure> {
        let key = self.key(p)?;
        let cache_key = key.encode();
        let stored = self
            .vault
            .stored_zoom_user(&key)
            .await
            .map_err(ZoomUserFailure::Store)?;
        let Some(stored_zoom_user) = stored else {
            self.zaks.invalidate(&cache_key).await;
            return Err(ZoomUserFailure::NotConnected);
        };
        if let Some(hit) = self.zaks.get(&cache_key).await {
            if hit.zoom_user_id == stored_zoom_user
                && hit.expires_at > crate::now_secs() + ZAK_REUSE_MARGIN_SECS
            {
                return Ok(hit.token.clone());
            }
        }
        let token = self
            .with_access(p, |grant| async move {
                self.client
                    .zak(&grant.api_url, &grant.access_token, Some(ttl.as_secs()))
                    .await
                    .map(|t| (t, grant.zoom_user_id))
            })
            .await?;
        let (token, zoom_user_id) = token;
        let cached = CachedZak {
            token: token.token.clone(),
            zoom_user_id,
            expires_at: token.expires_at,
        };
        self.zaks.insert(cache_key, Arc::new(cached)).await;
        Ok(token.token)
    }

    /// A fresh OBF token for `meeting` (single use: never cached).
    pub async fn obf(
        &self,
        p: &Principal,
        meeting: &str,
        ttl: Duration,
    ) -> Result<SecretString, ZoomUserFailure> {
        let token = self
            .with_access(p, |grant| async move {
                self.client
                    .obf(
                        &grant.api_url,
                        &grant.access_token,
                        meeting,
                        Some(ttl.as_secs()),
                    )
                    .await
            })
            .await?;
        Ok(token.token)
    }

    /// Calls Zoom with the caller's access token; if Zoom refuses the token
    /// (revoked or expired early), refreshes once and calls once more.
    async fn with_access<T, F, Fut>(&self, p: &Principal, call: F) -> Result<T, ZoomUserFailure>
    where
        F: Fn(Grant) -> Fut,
        Fut: std::future::Future<Output = Result<T, ZoomUserError>>,
    {
        let grant = self.grant(p).await?;
        let refused = grant.access_token.clone();
        match call(grant).await {
            Err(ZoomUserError::AccessTokenRejected) => {
                let grant = self.grant_unless(p, Some(&refused)).await?;
                call(grant).await.map_err(ZoomUserFailure::from_zoom)
            }
            other => other.map_err(ZoomUserFailure::from_zoom),
        }
    }

    /// Forgets cached ZAKs of `key` (disconnect, deauthorization).
    pub async fn forget(&self, key: &GrantKey) {
        self.zaks.invalidate(&key.encode()).await;
    }
}
