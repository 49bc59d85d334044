//! Serde types that mirror the TOML file one to one.
//!
//! Nothing here is validated beyond types: [`super::build`] turns a
//! [`RawConfig`] into a [`super::Snapshot`] and reports every problem with its
//! line. Unknown keys are collected by `serde_ignored` (so every typo is
//! listed, not just the first); the few values with several shapes implement
//! `Deserialize` by hand so their unknown keys are rejected by name too.
//! Secret fields are `SecretString` from the start.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The whole configuration file.
#[derive(Deserialize)]
pub struct RawConfig {
    pub server: Option<RawServer>,
    #[serde(default)]
    pub limits: RawLimits,
    pub audit: Option<RawAudit>,
    pub cluster: Option<RawCluster>,
    pub outbound: Option<RawOutbound>,
    #[serde(default)]
    pub identity: BTreeMap<String, RawIdentity>,
    #[serde(default)]
    pub zoom_app: BTreeMap<String, RawZoomApp>,
    pub grants: Option<RawGrants>,
    #[serde(default)]
    pub zoom_user: BTreeMap<String, RawZoomUser>,
    #[serde(default)]
    pub credential: BTreeMap<String, RawCredential>,
    #[serde(default)]
    pub webhook: BTreeMap<String, RawWebhook>,
    #[serde(default)]
    pub cors: BTreeMap<String, RawCors>,
    #[serde(default)]
    pub route: Vec<RawRoute>,
}

/// `[server]`
#[derive(Deserialize)]
pub struct RawServer {
    pub listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub admin_listen: Option<String>,
    pub plain_listen: Option<String>,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace_ms: Option<u64>,
    /// After SIGTERM: how long the listeners keep accepting while `/readyz`
    /// already fails (load balancers take the replica out first).
    pub drain_ms: Option<u64>,
    /// How long plain `/readyz` waits at start for the first fetch of every
    /// identity's keys and every fetched credential.
    pub readiness_grace_ms: Option<u64>,
    /// CIDR blocks of the proxies whose `X-Forwarded-For` and PROXY protocol
    /// headers are believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// Listener keys (`listen`, `plain_listen`) whose connections start with
    /// a PROXY protocol header.
    pub proxy_protocol: Option<Vec<String>>,
}

/// `[limits]`
#[derive(Deserialize, Default)]
pub struct RawLimits {
    pub max_header_bytes: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub upstream_timeout_ms: Option<u64>,
    pub token_cache_bytes: Option<u64>,
    pub send_timeout_ms: Option<u64>,
    pub upstream_body_timeout_ms: Option<u64>,
    pub http2_idle_timeout_ms: Option<u64>,
}

/// `[audit]`
#[derive(Deserialize)]
pub struct RawAudit {
    pub path: Option<String>,
}

/// `[cluster]`
#[derive(Deserialize)]
pub struct RawCluster {
    pub redis_url: Option<SecretString>,
    pub redis_password: Option<SecretString>,
    pub key_prefix: Option<String>,
    pub timeout_ms: Option<u64>,
}

/// `[outbound]`
#[derive(Deserialize)]
pub struct RawOutbound {
    pub ca_file: Option<String>,
}

/// `[identity.NAME]`: an OIDC issuer.
#[derive(Deserialize)]
pub struct RawIdentity {
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub audiences: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub leeway_secs: Option<u64>,
    pub jwks_refresh_secs: Option<u64>,
    pub jwks_max_stale_secs: Option<u64>,
    pub roles_claim: Option<String>,
    pub tenant_claim: Option<String>,
    pub verified_token_cache: Option<bool>,
}

/// `[zoom_app.NAME]`
#[derive(Deserialize)]
pub struct RawZoomApp {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub max_age_secs: Option<u64>,
    pub allow_guests: Option<bool>,
    pub leeway_secs: Option<u64>,
}

/// `[credential.NAME]`: one flat table; which keys apply depends on `type`,
/// and `build` rejects keys that do not belong to the type.
#[derive(Deserialize)]
pub struct RawCredential {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub ttl_secs: Option<u64>,
    pub account_id: Option<String>,
    pub token_url: Option<String>,
    pub refresh_before_secs: Option<u64>,
    pub api_key: Option<String>,
    pub api_secret: Option<SecretString>,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: Option<String>,
    pub zoom_user: Option<String>,
    pub application_id: Option<String>,
    pub private_key: Option<SecretString>,
    pub client_ttl_secs: Option<u64>,
    pub client_token_format: Option<String>,
}

/// `[grants]`: the encrypted vault of users' Zoom grants.
#[derive(Deserialize)]
pub struct RawGrants {
    pub key_id: Option<String>,
    pub key: Option<SecretString>,
    pub previous_keys: Option<BTreeMap<String, SecretString>>,
    pub path: Option<String>,
}

/// `[zoom_user.NAME]`: a Zoom app users authorize (OAuth code + PKCE).
#[derive(Deserialize)]
pub struct RawZoomUser {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub redirect_uri: Option<String>,
    pub return_to: Option<Vec<String>>,
    pub oauth_url: Option<String>,
    pub api_url: Option<String>,
}

/// Route `zoom_user = { app = "NAME", action = "connect" }`
#[derive(Deserialize)]
pub struct RawZoomUserRoute {
    pub app: Option<String>,
    pub action: Option<String>,
}

/// `[webhook.NAME]`
#[derive(Deserialize)]
pub struct RawWebhook {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub secret_tokens: Option<Vec<SecretString>>,
    pub tolerance_secs: Option<u64>,
    pub dedup_secs: Option<u64>,
    pub application_id: Option<String>,
}

/// `[cors.NAME]`: a browser CORS policy routes refer to.
#[derive(Deserialize)]
pub struct RawCors {
    pub origins: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    pub credentials: Option<bool>,
    pub max_age_secs: Option<u64>,
    pub expose_headers: Option<Vec<String>>,
}

/// `[[route]]`
#[derive(Deserialize)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    pub upstream: Option<String>,
    pub upstream_ca: Option<String>,
    /// Allows an `http://` upstream off loopback (traffic unencrypted).
    pub insecure_plaintext_upstream: Option<bool>,
    pub strip_prefix: Option<String>,
    pub preserve_host: Option<bool>,
    pub forward_bearer: Option<bool>,
    pub websocket: Option<bool>,
    pub authenticate: Option<RawAuthenticate>,
    pub authorize: Option<RawAuthorize>,
    pub claims_to_headers: Option<BTreeMap<String, String>>,
    pub inject: Option<Vec<RawInject>>,
    pub respond: Option<RawRespond>,
    pub verify_webhook: Option<String>,
    pub zoom_user: Option<RawZoomUserRoute>,
    pub cors: Option<String>,
}

/// Route `authorize = { ... }`
#[derive(Deserialize)]
pub struct RawAuthorize {
    pub roles_any: Option<Vec<String>>,
    pub roles_all: Option<Vec<String>>,
    pub scopes_all: Option<Vec<String>>,
    pub tenant_param: Option<String>,
    pub claims_equal: Option<BTreeMap<String, serde_json::Value>>,
}

/// One entry of route `inject = [ ... ]`
#[derive(Deserialize)]
pub struct RawInject {
    pub credential: Option<String>,
    pub header: Option<String>,
    pub meeting_param: Option<String>,
    pub meeting_query: Option<String>,
    pub session_param: Option<String>,
    pub host_roles: Option<Vec<String>>,
}

/// Route `respond = { ... }`
#[derive(Deserialize)]
pub struct RawRespond {
    pub credential: Option<String>,
    pub host_roles: Option<Vec<String>>,
    pub session_param: Option<String>,
    pub zak: Option<String>,
    pub obf: Option<String>,
    pub moderator_roles: Option<Vec<String>>,
    pub publisher_roles: Option<Vec<String>>,
    pub connection_data: Option<Vec<String>>,
}

/// Route `authenticate`: `"none"`, `"NAME"`, `["a", "b"]` or
/// `{ zoom_app = "NAME" }`.
pub enum RawAuthenticate {
    One(String),
    Many(Vec<String>),
    ZoomApp(String),
}

impl<'de> Deserialize<'de> for RawAuthenticate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAuthenticate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""none", an identity name, a list of identity names, or { zoom_app = "NAME" }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawAuthenticate::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(RawAuthenticate::Many(names))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut app = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "zoom_app" => app = Some(map.next_value::<String>()?),
                        other => return Err(de::Error::unknown_field(other, &["zoom_app"])),
                    }
                }
                app.map(RawAuthenticate::ZoomApp)
                    .ok_or_else(|| de::Error::missing_field("zoom_app"))
            }
        }
        d.deserialize_any(V)
    }
}
