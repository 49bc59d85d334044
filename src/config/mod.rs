//! Settings: the operator's TOML file turned into an immutable, validated
//! [`Snapshot`] of pure data.
//!
//! Three tiers: [`raw`] mirrors the file, [`build`] validates it and compiles
//! matchers, trust roots and TLS settings. Nothing here runs: the clients,
//! fetchers and stores a snapshot needs are assembled from it by
//! [`crate::live`], which is what a reload swaps atomically. This module
//! imports nothing from the running parts, so `meetgate check` builds no
//! client and opens no connection.

pub mod build;
pub mod cors;
mod known_keys;
pub mod pattern;
pub mod raw;
mod redis_url;
pub mod source;
mod zoom_user;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use secrecy::SecretString;

pub use build::{build, build_all, load_file, BuildMode, LoadError, Outcome};
pub use cors::{CorsPolicy, OriginRule, RouteCors};
pub use redis_url::{redis_target, RedisTarget};
pub use zoom_user::{GrantSettings, ZoomUserAppSettings, ZoomUserOp, ZoomUserRoute};

pub use pattern::PathPattern;

/// One problem found in a configuration file: an error (the file is
/// refused) or a warning (it is used; `check` and every start and reload
/// say why it may not do what was meant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line, when the problem can be tied to one.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the key, when known.
    pub column: Option<usize>,
    /// The key the problem is about, e.g. `route[2].authenticate`.
    pub key: String,
    /// The `name` of the route the key belongs to, when it is a route's.
    pub route: Option<String>,
    /// A stable reason code (`unknown_key`, `route_shadowed`, ...; the
    /// README lists them): what `check --format json` reports for tools.
    pub code: &'static str,
    /// What is wrong. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.key.is_empty()) {
            (Some(line), false) => write!(f, "line {line}: key `{}`: {}", self.key, self.message)?,
            (Some(line), true) => write!(f, "line {line}: {}", self.message)?,
            (None, false) => write!(f, "key `{}`: {}", self.key, self.message)?,
            (None, true) => f.write_str(&self.message)?,
        }
        match &self.route {
            Some(name) => write!(f, " (route \"{name}\")"),
            None => Ok(()),
        }
    }
}

/// The validated, compiled configuration: what the operator wrote, as data.
/// Immutable once built; references between sections are resolved to
/// `Arc`s at build time.
pub struct Snapshot {
    /// The file this snapshot was built from.
    pub source: PathBuf,
    pub server: ServerSettings,
    pub limits: Limits,
    pub audit: Option<AuditSettings>,
    pub cluster: Option<ClusterSettings>,
    pub identities: BTreeMap<String, Arc<IdentitySettings>>,
    pub zoom_apps: BTreeMap<String, Arc<ZoomAppSettings>>,
    /// `[grants]`, required when a `[zoom_user.*]` is configured.
    pub grants: Option<GrantSettings>,
    pub zoom_users: BTreeMap<String, Arc<ZoomUserAppSettings>>,
    pub credentials: BTreeMap<String, Arc<CredentialSettings>>,
    pub webhooks: BTreeMap<String, Arc<WebhookSettings>>,
    /// Routes in file order; the first match wins.
    pub routes: Vec<Arc<Route>>,
    /// Distinguishes this build from every other one in the process: what a
    /// verification under this snapshot is tagged with in the token cache.
    pub build_id: u64,
    /// The top-level claim names some route reads (`claims_equal`,
    /// `claims_to_headers`): a principal keeps only these claims.
    pub principal_claims: std::collections::BTreeSet<String>,
    /// Problems that do not stop the file from being used (shown by `check`).
    pub warnings: Vec<ConfigError>,
    /// Every file this configuration was built from: the file itself,
    /// `file:` references, certificates and keys, CA bundles (the reload
    /// watcher watches them).
    pub files: Vec<PathBuf>,
    /// Roots the gateway's own outbound requests trust (issuers, JWKS,
    /// token endpoints): webpki roots plus `[outbound] ca_file`.
    pub outbound_roots: Arc<rustls::RootCertStore>,
    /// Fingerprint of `outbound_roots`: part of the registry key of every
    /// JWKS fetcher and token source, so a changed `ca_file` reaches them.
    pub outbound_trust: String,
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("source", &self.source)
            .field(
                "routes",
                &self.routes.iter().map(|r| &r.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// `[server]`
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub plain_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// `None` only when built for `check` and the files do not exist yet.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The served certificate's `notAfter` (Unix seconds), with `tls`.
    pub tls_not_after: Option<i64>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub shutdown_grace: Duration,
    /// After SIGTERM, how long the listeners keep accepting while `/readyz`
    /// already answers 503 (0: stop accepting at once).
    pub drain: Duration,
    /// How long plain `/readyz` waits at start for every first fetch.
    pub readiness_grace: Duration,
    /// Peers whose `X-Forwarded-For` entries and PROXY protocol headers are
    /// believed (docs/BEHAVIOUR.md item 36).
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    /// Connections to `listen` start with a PROXY protocol header.
    pub proxy_protocol_tls: bool,
    /// Connections to `plain_listen` start with a PROXY protocol header.
    pub proxy_protocol_plain: bool,
}

/// `[limits]`
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub upstream_timeout: Duration,
    /// Bound on the verified-token cache, in estimated bytes.
    pub token_cache_bytes: u64,
    /// A response body that the client accepts no part of for this long is
    /// cut (HTTP/2: the stream is reset; HTTP/1.1: the connection closed).
    pub send_timeout: Duration,
    /// A response body that the upstream sends no part of for this long is
    /// cut, and its upstream connection closed.
    pub upstream_body_timeout: Duration,
    /// An HTTP/2 connection with no open stream for this long gets GOAWAY.
    pub http2_idle_timeout: Duration,
}

impl Limits {
    /// What each `[limits]` key is when the operator leaves it out (the
    /// defaults the README's `[limits]` table states), and why that value.
    pub const DEFAULT: Limits = Limits {
        // Room for the largest bearer token accepted (8 KiB,
        // `pipeline::authn::jwt::MAX_TOKEN_BYTES`) beside cookies and the
        // usual headers; every connection may hold this much while its head
        // is read, so it stays small.
        max_header_bytes: 16 * 1024,
        // Only bodies the gateway buffers count (webhook deliveries,
        // signature requests: small JSON), so 1 MiB is ample yet bounds
        // what one request can make it hold; proxied bodies stream.
        max_body_bytes: 1024 * 1024,
        // A real client sends its head (and finishes the TLS handshake)
        // right after connecting; one that trickles it (slowloris) holds a
        // socket for at most 5 s. Also an idle keep-alive connection's wait.
        header_read_timeout: Duration::from_millis(5_000),
        // Generous for an app endpoint or a token endpoint, yet short of the
        // 30-60 s after which clients and load balancers commonly give up,
        // so the caller gets the gateway's 504 (or 503) rather than a
        // dropped connection.
        upstream_timeout: Duration::from_millis(15_000),
        // An entry is the principal's estimated size plus 256 bytes of
        // bookkeeping, so 64 MiB remembers tens of thousands of callers'
        // tokens even with large claims, a small share of the process.
        token_cache_bytes: 64 * 1024 * 1024,
        // The three progress and idle bounds: nginx's send_timeout,
        // proxy_read_timeout and keepalive_timeout are in the same range,
        // long enough for slow links and quiet streams, short enough that a
        // client or upstream that stopped cannot pin a connection for long.
        send_timeout: Duration::from_millis(60_000),
        upstream_body_timeout: Duration::from_millis(60_000),
        http2_idle_timeout: Duration::from_millis(60_000),
    };
}

/// `[audit]`
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// `-` for stdout, otherwise a file opened for append.
    pub path: String,
}

/// `[cluster]`
#[derive(Debug)]
pub struct ClusterSettings {
    pub redis_url: SecretString,
    pub redis_password: Option<SecretString>,
    pub key_prefix: String,
    pub timeout: Duration,
    /// Trust for `rediss://`: the outbound roots (webpki plus
    /// `[outbound] ca_file`).
    pub roots: rustls::RootCertStore,
}

/// `[identity.NAME]`
#[derive(Debug)]
pub struct IdentitySettings {
    pub name: String,
    pub issuer: String,
    pub jwks_uri: Option<http::Uri>,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    pub leeway: Duration,
    pub jwks_refresh: Duration,
    pub jwks_max_stale: Duration,
    pub roles_claim: Option<String>,
    pub tenant_claim: Option<String>,
    /// Remember verified tokens until they expire (default true).
    pub verified_token_cache: bool,
}

/// `[zoom_app.NAME]`
#[derive(Debug)]
pub struct ZoomAppSettings {
    pub name: String,
    pub client_id: Option<String>,
    pub client_secret: SecretString,
    pub max_age: Duration,
    pub allow_guests: bool,
    pub leeway: Duration,
}

/// `[credential.NAME]`
#[derive(Debug)]
pub struct CredentialSettings {
    pub name: String,
    pub kind: CredentialKind,
}

/// The kinds of credential the gateway mints or fetches.
#[derive(Debug)]
pub enum CredentialKind {
    ZoomMeetingSdk {
        client_id: String,
        client_secret: SecretString,
        ttl: Duration,
    },
    ZoomVideoSdk {
        client_id: String,
        client_secret: SecretString,
        ttl: Duration,
    },
    ZoomS2sOAuth {
        account_id: String,
        client_id: String,
        client_secret: SecretString,
        token_url: http::Uri,
        refresh_before: Duration,
    },
    OpenTokProject {
        api_key: String,
        api_secret: SecretString,
        /// REST project JWTs.
        ttl: Duration,
        /// Session tokens answered by `respond`.
        client_ttl: Duration,
        client_format: OpenTokFormat,
    },
    /// A Vonage application: RS256 application JWTs for REST, client
    /// tokens for sessions.
    VonageApplication {
        application_id: String,
        private_key: Arc<crate::credentials::vonage::AppKey>,
        /// REST application JWTs.
        ttl: Duration,
        /// Client tokens answered by `respond`.
        client_ttl: Duration,
    },
    /// A ZAK of the caller's connected Zoom user (cached per grant).
    ZoomZak {
        app: Arc<ZoomUserAppSettings>,
        ttl: Duration,
    },
    /// An OBF token of the caller's connected Zoom user for one meeting
    /// (fresh per answer).
    ZoomObf {
        app: Arc<ZoomUserAppSettings>,
        ttl: Duration,
    },
    OAuthClientCredentials {
        token_url: http::Uri,
        client_id: String,
        client_secret: SecretString,
        scope: Option<String>,
        audience: Option<String>,
        client_auth: ClientAuth,
        refresh_before: Duration,
    },
}

impl CredentialKind {
    /// The `type` string of this kind, as written in the file.
    pub fn type_name(&self) -> &'static str {
        match self {
            CredentialKind::ZoomMeetingSdk { .. } => "zoom_meeting_sdk",
            CredentialKind::ZoomVideoSdk { .. } => "zoom_video_sdk",
            CredentialKind::ZoomS2sOAuth { .. } => "zoom_s2s_oauth",
            CredentialKind::OpenTokProject { .. } => "opentok_project",
            CredentialKind::VonageApplication { .. } => "vonage_application",
            CredentialKind::ZoomZak { .. } => "zoom_zak",
            CredentialKind::ZoomObf { .. } => "zoom_obf",
            CredentialKind::OAuthClientCredentials { .. } => "oauth_client_credentials",
        }
    }
}

/// Which OpenTok session token format `respond` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenTokFormat {
    /// HS256 JWT (the opentok SDK's default since 2025).
    Jwt,
    /// The legacy `T1==` format.
    T1,
}

/// How an OAuth client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

/// `[webhook.NAME]`
#[derive(Debug)]
pub struct WebhookSettings {
    pub name: String,
    pub kind: WebhookKind,
    /// Secrets in the order written; several while rotating. For `standard`
    /// these are the decoded `whsec_` key bytes.
    pub secrets: Vec<SecretBytes>,
    pub tolerance: Duration,
    pub dedup: Duration,
    /// `vonage`: the application whose callbacks are accepted.
    pub application_id: Option<String>,
}

/// Key material that must not be printed.
pub struct SecretBytes(pub Vec<u8>);

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([REDACTED])")
    }
}

/// Webhook signature schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    Zoom,
    Standard,
    Github,
    /// Vonage signed callbacks (HS256 JWT with the body's hash).
    Vonage,
}

/// A compiled route.
/// What a route without `methods` accepts (every method but TRACE and
/// CONNECT, which are never forwarded): announced in `Allow`, and what a
/// CORS preflight may allow.
pub const ANY_METHOD: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// `name` as a metric label (interned once at build).
    pub label: &'static str,
    /// Lower-case host without port.
    pub host: Option<String>,
    /// `None`: [`ANY_METHOD`].
    pub methods: Option<Vec<Method>>,
    pub pattern: PathPattern,
    pub authenticate: Authenticate,
    pub authorize: Option<Authorize>,
    pub claims_to_headers: Vec<(HeaderName, String)>,
    /// `cors = "NAME"`: preflights answered by the gateway, CORS headers on
    /// every answer.
    pub cors: Option<RouteCors>,
    /// What the route does once the caller is let in.
    pub action: Action,
}

/// What a route does: each kind carries only the settings that apply to it,
/// so a key that would never act cannot be written (`check` refuses it).
#[derive(Debug)]
pub enum Action {
    /// Forward to the upstream, with minted or fetched credentials injected.
    Forward {
        to: Forwarding,
        /// Pass WebSocket upgrades through.
        websocket: bool,
        inject: Vec<Arc<Inject>>,
    },
    /// The gateway answers (signature requests); nothing is forwarded.
    Respond(Respond),
    /// Verify a webhook delivery, then forward its exact bytes.
    Webhook {
        webhook: Arc<WebhookSettings>,
        to: Forwarding,
    },
    /// Connect, callback, status or disconnect of the caller's Zoom grant.
    ZoomUser(ZoomUserRoute),
}

impl Action {
    /// Where the route forwards to, unless the gateway answers it.
    pub fn forwarding(&self) -> Option<&Forwarding> {
        match self {
            Action::Forward { to, .. } | Action::Webhook { to, .. } => Some(to),
            Action::Respond(_) | Action::ZoomUser(_) => None,
        }
    }
}

/// How a route forwards.
#[derive(Debug)]
pub struct Forwarding {
    pub upstream: Upstream,
    /// Decoded path prefix removed before forwarding (segment-aligned).
    pub strip_prefix: Option<String>,
    pub preserve_host: bool,
    pub forward_bearer: bool,
}

/// Where a route forwards to.
pub struct Upstream {
    /// `http` or `https`.
    pub scheme: http::uri::Scheme,
    pub authority: http::uri::Authority,
    /// Path prefix of the upstream URL, without a trailing slash ("" for none).
    pub base_path: String,
    /// The roots an `https` upstream's certificate must chain to (the
    /// outbound roots plus the route's `upstream_ca`).
    pub roots: Arc<rustls::RootCertStore>,
    /// Fingerprint of `roots`: upstreams with equal scheme, authority and
    /// trust share their connections, across reloads too.
    pub trust: String,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.base_path)
    }
}

/// Route `authenticate`.
#[derive(Debug, Clone)]
pub enum Authenticate {
    /// Explicitly public.
    None,
    /// Bearer JWT from one of these identities (chosen by `iss`).
    Identities(Vec<Arc<IdentitySettings>>),
    /// Zoom Apps context of this zoom_app.
    ZoomApp(Arc<ZoomAppSettings>),
}

/// Route `authorize`.
#[derive(Debug, Default)]
pub struct Authorize {
    pub roles_any: Vec<String>,
    pub roles_all: Vec<String>,
    pub scopes_all: Vec<String>,
    pub tenant_param: Option<String>,
    pub claims_equal: Vec<(String, serde_json::Value)>,
}

/// One entry of route `inject`.
#[derive(Debug)]
pub struct Inject {
    pub credential: Arc<CredentialSettings>,
    pub header: HeaderName,
    pub meeting_param: Option<String>,
    pub meeting_query: Option<String>,
    pub session_param: Option<String>,
    pub host_roles: Vec<String>,
}

/// Route `respond`.
#[derive(Debug)]
pub struct Respond {
    pub credential: Arc<CredentialSettings>,
    /// A `zoom_zak` credential added to a Meeting SDK answer as `zak`.
    pub zak: Option<Arc<CredentialSettings>>,
    /// A `zoom_obf` credential added as `obfToken` (for `meetingNumber`).
    pub obf: Option<Arc<CredentialSettings>>,
    /// Vonage/OpenTok client tokens: who may be moderator or publisher
    /// (everyone else subscribes).
    pub moderator_roles: Vec<String>,
    pub publisher_roles: Vec<String>,
    /// Claims (dotted paths) written as JSON into the token's connection
    /// data.
    pub connection_data: Vec<String>,
    pub host_roles: Vec<String>,
    pub session_param: Option<String>,
}

impl Snapshot {
    /// Resolves a path written in the file relative to the file's directory.
    pub fn relative(&self, p: &str) -> PathBuf {
        relative_to(&self.source, p)
    }
}

/// `p` relative to the directory of `file` (absolute paths unchanged).
pub fn relative_to(file: &Path, p: &str) -> PathBuf {
    let base = file.parent().unwrap_or_else(|| Path::new("."));
    base.join(p)
}
