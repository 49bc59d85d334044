//! Settings of Zoom user authorization: the grant vault (`[grants]`), the
//! Zoom apps users authorize (`[zoom_user.NAME]`) and what a route does with
//! them (`zoom_user = { app, action }`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;

use super::SecretBytes;

/// `[grants]`: the keys users' grants are sealed with and where they live.
#[derive(Debug)]
pub struct GrantSettings {
    /// The key new records are sealed with: id and 32 bytes.
    pub key_id: String,
    pub key: SecretBytes,
    /// Older keys still accepted for opening (records re-sealed on use).
    pub previous_keys: Vec<(String, SecretBytes)>,
    /// The embedded store (without `[cluster]`; with it, grants are in
    /// Redis under `key_prefix`).
    pub path: Option<PathBuf>,
}

/// `[zoom_user.NAME]`
pub struct ZoomUserAppSettings {
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    /// The redirect URL registered with the app, exactly.
    pub redirect_uri: String,
    /// Where the callback may send the browser afterwards (exact URLs).
    pub return_to: Vec<String>,
    /// `https://zoom.us` unless overridden (stand-ins, tests).
    pub oauth_base: String,
    /// `https://api.zoom.us` unless overridden.
    pub api_base: String,
}

impl fmt::Debug for ZoomUserAppSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZoomUserAppSettings")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("redirect_uri", &self.redirect_uri)
            .field("return_to", &self.return_to)
            .field("oauth_base", &self.oauth_base)
            .field("api_base", &self.api_base)
            .finish()
    }
}

/// What a `zoom_user` route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoomUserOp {
    /// Start the authorization (answers the authorize URL, or 302).
    Connect,
    /// Zoom's redirect back: exchange the code, store the grant.
    Callback,
    /// Is the caller connected (never a token).
    Status,
    /// Revoke at Zoom and delete the grant.
    Disconnect,
}

impl ZoomUserOp {
    pub const ALL: [(&'static str, ZoomUserOp); 4] = [
        ("connect", ZoomUserOp::Connect),
        ("callback", ZoomUserOp::Callback),
        ("status", ZoomUserOp::Status),
        ("disconnect", ZoomUserOp::Disconnect),
    ];
}

/// A route answered from users' Zoom grants.
#[derive(Debug)]
pub struct ZoomUserRoute {
    pub app: Arc<ZoomUserAppSettings>,
    pub op: ZoomUserOp,
}
