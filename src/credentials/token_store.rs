//! Where fetched tokens are kept: the in-process store (one per gateway,
//! outliving reloads) and the form a token takes in the `[cluster]` store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

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
    pub(super) fn get(&self, key: &str) -> Option<Arc<CachedToken>> {
        self.tokens
            .lock()
            .expect("token store lock")
            .get(key)
            .cloned()
    }

    pub(super) fn put(&self, key: &str, token: Arc<CachedToken>) {
        self.tokens
            .lock()
            .expect("token store lock")
            .insert(key.to_owned(), token);
    }

    /// Removes the token under `key` if it is still `value`.
    pub(super) fn remove_if(&self, key: &str, value: &str) {
        let mut tokens = self.tokens.lock().expect("token store lock");
        if tokens.get(key).is_some_and(|t| {
            crate::secret::constant_time_eq(t.value.expose_secret().as_bytes(), value.as_bytes())
        }) {
            tokens.remove(key);
        }
    }
}

/// A token as the cluster store keeps it.
pub(super) fn shared_json(t: &CachedToken) -> String {
    serde_json::json!({
        "access_token": t.value.expose_secret(),
        "expires_at": t.expires_at,
        "refresh_at": t.refresh_at,
    })
    .to_string()
}

/// Reads [`shared_json`]; anything else is ignored (and fetched over).
pub(super) fn parse_shared(s: &str) -> Option<CachedToken> {
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
