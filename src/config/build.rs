//! `RawConfig` → [`Snapshot`]: validation, secret resolution, compiled
//! matchers, TLS settings and upstream clients.
//!
//! Every problem is collected (not just the first) and tied to its key and
//! line through [`SourceMap`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::header::HeaderName;
use http::{Method, Uri};
use secrecy::{ExposeSecret, SecretString};

use super::raw::*;
use super::source::{KeyPath, SourceMap};
use super::*;
use crate::net::is_loopback_host;
use crate::pipeline::forward::{self, UpstreamClient};
use crate::pipeline::pool::H1Pool;
use crate::pipeline::route::PathPattern;
use crate::secret::{resolve, EnvLookup};
use crate::tls;

/// What the snapshot is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildMode {
    /// Serving: TLS files must load.
    Run,
    /// `meetgate check`: TLS files that do not exist yet are a warning (they
    /// are often provisioned on the target host); unreadable ones an error.
    Check,
}

/// Why a file could not be turned into a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in {}", errors.len(), path.display())]
    Invalid {
        path: PathBuf,
        errors: Vec<ConfigError>,
    },
}

impl LoadError {
    /// Every problem, one per line, as `file:line: ...`.
    pub fn report(&self) -> String {
        match self {
            LoadError::Read { .. } => self.to_string(),
            LoadError::Invalid { path, errors } => errors
                .iter()
                .map(|e| match e.line {
                    Some(l) => format!("{}:{l}: error: {e}", path.display()),
                    None => format!("{}: error: {e}", path.display()),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// Reads and builds the file at `path`.
pub fn load_file(path: &Path, mode: BuildMode, env: EnvLookup<'_>) -> Result<Snapshot, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    build(&text, path, mode, env).map_err(|errors| LoadError::Invalid {
        path: path.to_owned(),
        errors,
    })
}

/// Builds a snapshot from the text of a file located at `path` (relative
/// paths in it are relative to that file).
pub fn build(
    text: &str,
    path: &Path,
    mode: BuildMode,
    env: EnvLookup<'_>,
) -> Result<Snapshot, Vec<ConfigError>> {
    let map = SourceMap::new(text);
    let de = match toml::de::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => return Err(vec![toml_error(&map, &e)]),
    };
    let mut unknown = Vec::new();
    let raw: RawConfig =
        match serde_ignored::deserialize(de, |p| unknown.push(KeyPath::from_ignored(&p))) {
            Ok(raw) => raw,
            Err(e) => return Err(vec![toml_error(&map, &e)]),
        };
    let mut b = Builder {
        map: &map,
        file: path,
        env,
        mode,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    for p in unknown {
        let name = p.to_string();
        b.err(
            &p,
            format!("unknown key `{name}` (a typo must not silently disable a check)"),
        );
    }
    let snapshot = b.snapshot(raw);
    let Builder {
        mut errors,
        warnings,
        ..
    } = b;
    match snapshot {
        Some(mut s) if errors.is_empty() => {
            s.warnings = warnings;
            Ok(s)
        }
        _ => {
            errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
            Err(errors)
        }
    }
}

fn toml_error(map: &SourceMap<'_>, e: &toml::de::Error) -> ConfigError {
    let (line, key) = match e.span() {
        Some(span) => (
            Some(map.line_of(span.start)),
            map.path_at(span.start).to_string(),
        ),
        None => (None, String::new()),
    };
    ConfigError {
        line,
        key,
        message: e.message().trim().to_owned(),
    }
}

struct Builder<'a, 'i> {
    map: &'a SourceMap<'i>,
    file: &'a Path,
    env: EnvLookup<'a>,
    mode: BuildMode,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

const DEFAULT_MAX_HEADER_BYTES: u64 = 16 * 1024;
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
const DEFAULT_UPSTREAM_TIMEOUT_MS: u64 = 15_000;
// nginx's send_timeout, proxy_read_timeout and keepalive_timeout are in the
// same range: long enough for slow links and quiet streams, short enough
// that a client or upstream that stopped cannot pin a connection for long.
const DEFAULT_SEND_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_UPSTREAM_BODY_TIMEOUT_MS: u64 = 60_000;
const DEFAULT_HTTP2_IDLE_TIMEOUT_MS: u64 = 60_000;
/// The longest body-progress or idle bound: a day. Longer is a typo or a
/// wish for "never", which these bounds exist to rule out.
const MAX_PROGRESS_TIMEOUT_MS: u64 = 86_400_000;
const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
const ZOOM_S2S_TOKEN_URL: &str = "https://zoom.us/oauth/token";

/// Algorithms an identity may allow: asymmetric only (docs/BEHAVIOUR.md item 18).
const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl Builder<'_, '_> {
    fn err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line: self.map.line(path),
            key: path.to_string(),
            message: message.into(),
        });
    }

    fn warn(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.warnings.push(ConfigError {
            line: self.map.line(path),
            key: path.to_string(),
            message: message.into(),
        });
    }

    /// A required value: records "missing" when absent.
    fn required<'v, T>(&mut self, v: &'v Option<T>, path: &KeyPath) -> Option<&'v T> {
        if v.is_none() {
            self.err(path, "is required");
        }
        v.as_ref()
    }

    /// Resolves `${VAR}` / `file:` in a plain string value.
    fn string(&mut self, v: &str, path: &KeyPath) -> Option<String> {
        match resolve(v, self.base(), self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err(path, e.to_string());
                None
            }
        }
    }

    /// Resolves a secret; empty secrets are refused (an empty HMAC key would
    /// accept anything signed with it).
    fn secret(&mut self, v: &SecretString, path: &KeyPath) -> Option<SecretString> {
        match resolve(v.expose_secret(), self.base(), self.env) {
            Ok(s) if s.is_empty() => {
                self.err(path, "must not be empty");
                None
            }
            Ok(s) => Some(SecretString::from(s)),
            Err(e) => {
                self.err(path, e.to_string());
                None
            }
        }
    }

    fn base(&self) -> &Path {
        self.file.parent().unwrap_or_else(|| Path::new("."))
    }

    fn millis(&mut self, v: Option<u64>, default: u64, path: &KeyPath) -> Duration {
        let ms = v.unwrap_or(default);
        if ms == 0 {
            self.err(path, "must be greater than 0");
        }
        Duration::from_millis(ms)
    }

    /// Milliseconds in `1..=max`.
    fn millis_at_most(
        &mut self,
        v: Option<u64>,
        default: u64,
        max: u64,
        path: &KeyPath,
    ) -> Duration {
        let ms = v.unwrap_or(default);
        if !(1..=max).contains(&ms) {
            self.err(path, format!("must lie in 1..={max}"));
        }
        Duration::from_millis(ms.min(max))
    }

    fn secs(&mut self, v: Option<u64>, default: u64, min: u64, path: &KeyPath) -> Duration {
        let s = v.unwrap_or(default);
        if s < min {
            self.err(path, format!("must be at least {min}"));
        }
        Duration::from_secs(s)
    }

    fn addr(&mut self, v: &str, path: &KeyPath) -> Option<SocketAddr> {
        let v = self.string(v, path)?;
        match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(path, format!("`{v}` is not an address like 127.0.0.1:8443"));
                None
            }
        }
    }

    /// An outbound URL: https, or http to a loopback host only.
    fn outbound_url(&mut self, v: &str, path: &KeyPath) -> Option<Uri> {
        let v = self.string(v, path)?;
        let uri: Uri = match v.parse() {
            Ok(u) => u,
            Err(_) => {
                self.err(path, format!("`{v}` is not a valid URL"));
                return None;
            }
        };
        let host = uri.host().unwrap_or_default();
        match uri.scheme_str() {
            Some("https") if !host.is_empty() => Some(uri),
            Some("http") if is_loopback_host(host) => Some(uri),
            Some("http") if !host.is_empty() => {
                self.err(
                    path,
                    format!("`{v}`: http:// is only allowed for loopback hosts; use https://"),
                );
                None
            }
            _ => {
                self.err(
                    path,
                    format!("`{v}` must be an absolute http:// or https:// URL"),
                );
                None
            }
        }
    }

    fn snapshot(&mut self, raw: RawConfig) -> Option<Snapshot> {
        let root = KeyPath::root();
        let server = self.server(raw.server.as_ref(), &root.key("server"));
        let limits = self.limits(&raw.limits, &root.key("limits"));
        let audit = raw.audit.as_ref().map(|a| AuditSettings {
            path: a.path.clone().unwrap_or_else(|| "-".to_owned()),
        });
        let mut roots = tls::webpki_roots();
        if let Some(ca) = raw.outbound.as_ref().and_then(|o| o.ca_file.as_ref()) {
            let p = root.key("outbound").key("ca_file");
            self.add_roots(&mut roots, ca, &p);
        }
        let cluster = raw
            .cluster
            .as_ref()
            .and_then(|c| self.cluster(c, &root.key("cluster"), &roots));

        let identities = self.named(&raw.identity, "identity", Self::identity);
        let zoom_apps = self.named(&raw.zoom_app, "zoom_app", Self::zoom_app);
        let credentials = self.named(&raw.credential, "credential", Self::credential);
        let webhooks = self.named(&raw.webhook, "webhook", Self::webhook);

        let refs = Refs {
            identities: &identities,
            zoom_apps: &zoom_apps,
            credentials: &credentials,
            webhooks: &webhooks,
            declared: Declared {
                identities: raw.identity.keys().cloned().collect(),
                zoom_apps: raw.zoom_app.keys().cloned().collect(),
                credentials: raw.credential.keys().cloned().collect(),
                webhooks: raw.webhook.keys().cloned().collect(),
            },
        };
        let mut clients = ClientCache {
            trust: tls::trust_fingerprint(&roots),
            roots,
            default: None,
            by_ca: HashMap::new(),
            plain: HashMap::new(),
        };
        let mut names = BTreeSet::new();
        let mut routes = Vec::new();
        for (i, r) in raw.route.iter().enumerate() {
            let p = root.key("route").index(i);
            if let Some(route) = self.route(r, &p, &refs, &mut clients) {
                if !names.insert(route.name.clone()) {
                    self.err(
                        &p.key("name"),
                        format!("route name \"{}\" is used twice", route.name),
                    );
                }
                routes.push(Arc::new(route));
            }
        }
        if raw.route.is_empty() {
            self.warn(
                &root,
                "no [[route]] is defined: every request will be answered 404",
            );
        }
        let principal_claims = routes
            .iter()
            .flat_map(|r| {
                let equal = r.authorize.iter().flat_map(|a| a.claims_equal.iter());
                let to_headers = r.claims_to_headers.iter();
                equal
                    .map(|(path, _)| path.as_str())
                    .chain(to_headers.map(|(_, path)| path.as_str()))
            })
            .map(|path| path.split('.').next().unwrap_or(path).to_owned())
            .collect();
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Some(Snapshot {
            build_id: BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            principal_claims,
            source: self.file.to_owned(),
            server: server?,
            limits,
            audit,
            cluster,
            identities,
            zoom_apps,
            credentials,
            webhooks,
            routes,
            warnings: Vec::new(),
            outbound: clients.default().0,
            outbound_trust: clients.trust.clone(),
            identity_keys: Default::default(),
            credential_sources: Default::default(),
        })
    }

    fn named<R, T>(
        &mut self,
        raw: &BTreeMap<String, R>,
        section: &str,
        f: fn(&mut Self, &str, &R, &KeyPath) -> Option<T>,
    ) -> BTreeMap<String, Arc<T>> {
        let mut out = BTreeMap::new();
        for (name, r) in raw {
            let p = KeyPath::root().key(section).key(name);
            if name == "none" {
                self.err(
                    &p,
                    format!("\"none\" is reserved and cannot name a {section}"),
                );
                continue;
            }
            if let Some(t) = f(self, name, r, &p) {
                out.insert(name.clone(), Arc::new(t));
            }
        }
        out
    }

    fn server(&mut self, s: Option<&RawServer>, p: &KeyPath) -> Option<ServerSettings> {
        let Some(s) = s else {
            self.err(p, "the [server] section is required");
            return None;
        };
        let listen = self
            .required(&s.listen, &p.key("listen"))
            .and_then(|v| self.addr(&v.clone(), &p.key("listen")));
        let plain_listen = s
            .plain_listen
            .as_ref()
            .and_then(|v| self.addr(&v.clone(), &p.key("plain_listen")));
        let admin_listen = s
            .admin_listen
            .as_ref()
            .and_then(|v| self.addr(&v.clone(), &p.key("admin_listen")));
        let cert = self.required(&s.tls_cert, &p.key("tls_cert")).cloned();
        let key = self.required(&s.tls_key, &p.key("tls_key")).cloned();
        let shutdown_grace = self.millis(
            s.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE_MS,
            &p.key("shutdown_grace_ms"),
        );
        let (cert, key) = (cert?, key?);
        let (cert_path, key_path) = (relative_to(self.file, &cert), relative_to(self.file, &key));
        let tls = if self.mode == BuildMode::Check && (!cert_path.exists() || !key_path.exists()) {
            self.warn(
                &p.key("tls_cert"),
                format!(
                    "{} or {} does not exist yet; `run` needs both",
                    cert_path.display(),
                    key_path.display()
                ),
            );
            None
        } else {
            match tls::server_config(&cert_path, &key_path) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    self.err(&p.key("tls_cert"), e.to_string());
                    None
                }
            }
        };
        if self.mode == BuildMode::Run && tls.is_none() {
            return None;
        }
        Some(ServerSettings {
            listen: listen?,
            plain_listen,
            admin_listen,
            tls,
            tls_cert: cert_path,
            tls_key: key_path,
            shutdown_grace,
        })
    }

    fn limits(&mut self, l: &RawLimits, p: &KeyPath) -> Limits {
        let max_header_bytes = l.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
        if !(1024..=1024 * 1024).contains(&max_header_bytes) {
            self.err(&p.key("max_header_bytes"), "must lie in 1024..=1048576");
        }
        let max_body_bytes = l.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > 1 << 30 {
            self.err(&p.key("max_body_bytes"), "must lie in 1..=1073741824");
        }
        let token_cache_bytes = l
            .token_cache_bytes
            .unwrap_or(crate::pipeline::authn::jwt::DEFAULT_TOKEN_CACHE_BYTES);
        if !((1 << 20)..=(1 << 34)).contains(&token_cache_bytes) {
            self.err(
                &p.key("token_cache_bytes"),
                "must lie in 1048576..=17179869184 (1 MiB to 16 GiB)",
            );
        }
        Limits {
            max_header_bytes: max_header_bytes as usize,
            max_body_bytes: max_body_bytes as usize,
            // Bounded like the progress timeouts: a deadline far in the
            // future would overflow `Instant` arithmetic.
            header_read_timeout: self.millis_at_most(
                l.header_read_timeout_ms,
                DEFAULT_HEADER_READ_TIMEOUT_MS,
                MAX_PROGRESS_TIMEOUT_MS,
                &p.key("header_read_timeout_ms"),
            ),
            upstream_timeout: self.millis_at_most(
                l.upstream_timeout_ms,
                DEFAULT_UPSTREAM_TIMEOUT_MS,
                MAX_PROGRESS_TIMEOUT_MS,
                &p.key("upstream_timeout_ms"),
            ),
            token_cache_bytes,
            send_timeout: self.millis_at_most(
                l.send_timeout_ms,
                DEFAULT_SEND_TIMEOUT_MS,
                MAX_PROGRESS_TIMEOUT_MS,
                &p.key("send_timeout_ms"),
            ),
            upstream_body_timeout: self.millis_at_most(
                l.upstream_body_timeout_ms,
                DEFAULT_UPSTREAM_BODY_TIMEOUT_MS,
                MAX_PROGRESS_TIMEOUT_MS,
                &p.key("upstream_body_timeout_ms"),
            ),
            http2_idle_timeout: self.millis_at_most(
                l.http2_idle_timeout_ms,
                DEFAULT_HTTP2_IDLE_TIMEOUT_MS,
                MAX_PROGRESS_TIMEOUT_MS,
                &p.key("http2_idle_timeout_ms"),
            ),
        }
    }

    fn cluster(
        &mut self,
        c: &RawCluster,
        p: &KeyPath,
        roots: &rustls::RootCertStore,
    ) -> Option<ClusterSettings> {
        let url = self.required(&c.redis_url, &p.key("redis_url"))?;
        let url = self.secret(url, &p.key("redis_url"))?;
        let scheme_ok = {
            let u = url.expose_secret();
            u.starts_with("redis://") || u.starts_with("rediss://")
        };
        if !scheme_ok {
            self.err(&p.key("redis_url"), "must start with redis:// or rediss://");
            return None;
        }
        let redis_password = c
            .redis_password
            .as_ref()
            .and_then(|s| self.secret(s, &p.key("redis_password")));
        let settings = ClusterSettings {
            redis_url: url,
            redis_password,
            key_prefix: c
                .key_prefix
                .clone()
                .unwrap_or_else(|| "meetgate:".to_owned()),
            timeout: self.millis(c.timeout_ms, 250, &p.key("timeout_ms")),
            roots: roots.clone(),
        };
        if let Err(e) = crate::cluster::endpoint(&settings) {
            self.err(&p.key("redis_url"), e);
            return None;
        }
        Some(settings)
    }

    fn add_roots(&mut self, roots: &mut rustls::RootCertStore, file: &str, p: &KeyPath) {
        let path = relative_to(self.file, file);
        if let Err(e) = tls::add_pem_roots(roots, &path) {
            self.err(p, e.to_string());
        }
    }

    fn identity(&mut self, name: &str, r: &RawIdentity, p: &KeyPath) -> Option<IdentitySettings> {
        // Kept exactly as written: a token's `iss` must equal it.
        let issuer = self
            .required(&r.issuer, &p.key("issuer"))
            .cloned()
            .and_then(|v| self.string(&v, &p.key("issuer")))
            .filter(|v| self.outbound_url(v, &p.key("issuer")).is_some());
        let jwks_uri = r
            .jwks_uri
            .as_ref()
            .and_then(|v| self.outbound_url(&v.clone(), &p.key("jwks_uri")));
        let audiences = r.audiences.clone().unwrap_or_default();
        if audiences.is_empty() {
            self.err(&p.key("audiences"), "at least one audience is required");
        }
        let algorithms = r
            .algorithms
            .clone()
            .unwrap_or_else(|| vec!["RS256".to_owned()]);
        if algorithms.is_empty() {
            self.err(&p.key("algorithms"), "at least one algorithm is required");
        }
        for a in &algorithms {
            if a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS") {
                self.err(
                    &p.key("algorithms"),
                    format!(
                        "\"{a}\" is never accepted for bearer tokens (only asymmetric algorithms)"
                    ),
                );
            } else if !ASYMMETRIC_ALGORITHMS.contains(&a.as_str()) {
                self.err(
                    &p.key("algorithms"),
                    format!(
                        "unknown algorithm \"{a}\" (one of {})",
                        ASYMMETRIC_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        let leeway = self.secs(r.leeway_secs, 30, 0, &p.key("leeway_secs"));
        let jwks_refresh = self.secs(r.jwks_refresh_secs, 300, 1, &p.key("jwks_refresh_secs"));
        let jwks_max_stale = self.secs(
            r.jwks_max_stale_secs,
            86_400,
            1,
            &p.key("jwks_max_stale_secs"),
        );
        Some(IdentitySettings {
            name: name.to_owned(),
            issuer: issuer?,
            jwks_uri,
            audiences,
            algorithms,
            leeway,
            jwks_refresh,
            jwks_max_stale,
            roles_claim: r.roles_claim.clone(),
            tenant_claim: r.tenant_claim.clone(),
            verified_token_cache: r.verified_token_cache.unwrap_or(true),
        })
    }

    fn zoom_app(&mut self, name: &str, r: &RawZoomApp, p: &KeyPath) -> Option<ZoomAppSettings> {
        let client_id = r
            .client_id
            .as_ref()
            .and_then(|v| self.string(&v.clone(), &p.key("client_id")));
        let secret = self
            .required(&r.client_secret, &p.key("client_secret"))
            .and_then(|s| self.secret(&s.clone(), &p.key("client_secret")));
        let max_age = self.secs(r.max_age_secs, 300, 1, &p.key("max_age_secs"));
        // `exp` is always enforced: no leeway unless the operator sets one.
        let leeway = self.secs(r.leeway_secs, 0, 0, &p.key("leeway_secs"));
        Some(ZoomAppSettings {
            name: name.to_owned(),
            client_id,
            client_secret: secret?,
            max_age,
            allow_guests: r.allow_guests.unwrap_or(false),
            leeway,
        })
    }

    fn credential(
        &mut self,
        name: &str,
        r: &RawCredential,
        p: &KeyPath,
    ) -> Option<CredentialSettings> {
        let kind = self.required(&r.kind, &p.key("type")).cloned()?;
        // Keys each type accepts; anything else set is an error, so a key
        // meant for another type never silently does nothing.
        let allowed: &[&str] = match kind.as_str() {
            "zoom_meeting_sdk" | "zoom_video_sdk" => &["client_id", "client_secret", "ttl_secs"],
            "zoom_s2s_oauth" => &[
                "account_id",
                "client_id",
                "client_secret",
                "token_url",
                "refresh_before_secs",
            ],
            "opentok_project" => &["api_key", "api_secret", "ttl_secs"],
            "oauth_client_credentials" => &[
                "token_url",
                "client_id",
                "client_secret",
                "scope",
                "audience",
                "client_auth",
                "refresh_before_secs",
            ],
            other => {
                self.err(
                    &p.key("type"),
                    format!("unknown credential type \"{other}\" (zoom_meeting_sdk, zoom_video_sdk, zoom_s2s_oauth, opentok_project, oauth_client_credentials)"),
                );
                return None;
            }
        };
        let present = [
            ("client_id", r.client_id.is_some()),
            ("client_secret", r.client_secret.is_some()),
            ("ttl_secs", r.ttl_secs.is_some()),
            ("account_id", r.account_id.is_some()),
            ("token_url", r.token_url.is_some()),
            ("refresh_before_secs", r.refresh_before_secs.is_some()),
            ("api_key", r.api_key.is_some()),
            ("api_secret", r.api_secret.is_some()),
            ("scope", r.scope.is_some()),
            ("audience", r.audience.is_some()),
            ("client_auth", r.client_auth.is_some()),
        ];
        for (key, set) in present {
            if set && !allowed.contains(&key) {
                self.err(
                    &p.key(key),
                    format!("`{key}` does not apply to type \"{kind}\""),
                );
            }
        }
        let s = |b: &mut Self, v: &Option<String>, k: &str| {
            b.required(v, &p.key(k))
                .cloned()
                .and_then(|v| b.string(&v, &p.key(k)))
        };
        let sec = |b: &mut Self, v: &Option<SecretString>, k: &str| {
            b.required(v, &p.key(k))
                .cloned()
                .and_then(|v| b.secret(&v, &p.key(k)))
        };
        let kind = match kind.as_str() {
            "zoom_meeting_sdk" | "zoom_video_sdk" => {
                let client_id = s(self, &r.client_id, "client_id");
                let client_secret = sec(self, &r.client_secret, "client_secret");
                let ttl = r.ttl_secs.unwrap_or(7200);
                if !(1800..=172_800).contains(&ttl) {
                    self.err(
                        &p.key("ttl_secs"),
                        format!("{ttl} is outside the platform's window 1800..=172800 seconds"),
                    );
                }
                let (client_id, client_secret, ttl) =
                    (client_id?, client_secret?, Duration::from_secs(ttl));
                if kind == "zoom_meeting_sdk" {
                    CredentialKind::ZoomMeetingSdk {
                        client_id,
                        client_secret,
                        ttl,
                    }
                } else {
                    CredentialKind::ZoomVideoSdk {
                        client_id,
                        client_secret,
                        ttl,
                    }
                }
            }
            "zoom_s2s_oauth" => {
                let account_id = s(self, &r.account_id, "account_id");
                let client_id = s(self, &r.client_id, "client_id");
                let client_secret = sec(self, &r.client_secret, "client_secret");
                let url = r
                    .token_url
                    .clone()
                    .unwrap_or_else(|| ZOOM_S2S_TOKEN_URL.to_owned());
                let token_url = self.outbound_url(&url, &p.key("token_url"));
                let refresh_before =
                    self.secs(r.refresh_before_secs, 60, 0, &p.key("refresh_before_secs"));
                CredentialKind::ZoomS2sOAuth {
                    account_id: account_id?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    token_url: token_url?,
                    refresh_before,
                }
            }
            "opentok_project" => {
                let api_key = s(self, &r.api_key, "api_key");
                let api_secret = sec(self, &r.api_secret, "api_secret");
                let ttl = r.ttl_secs.unwrap_or(180);
                if !(1..=300).contains(&ttl) {
                    self.err(
                        &p.key("ttl_secs"),
                        format!("{ttl} is outside the platform's window 1..=300 seconds"),
                    );
                }
                CredentialKind::OpenTokProject {
                    api_key: api_key?,
                    api_secret: api_secret?,
                    ttl: Duration::from_secs(ttl),
                }
            }
            _ => {
                let token_url = self
                    .required(&r.token_url, &p.key("token_url"))
                    .cloned()
                    .and_then(|u| self.outbound_url(&u, &p.key("token_url")));
                let client_id = s(self, &r.client_id, "client_id");
                let client_secret = sec(self, &r.client_secret, "client_secret");
                let client_auth = match r.client_auth.as_deref().unwrap_or("basic") {
                    "basic" => ClientAuth::Basic,
                    "post" => ClientAuth::Post,
                    other => {
                        self.err(
                            &p.key("client_auth"),
                            format!("\"{other}\" is not \"basic\" or \"post\""),
                        );
                        ClientAuth::Basic
                    }
                };
                let refresh_before =
                    self.secs(r.refresh_before_secs, 60, 0, &p.key("refresh_before_secs"));
                CredentialKind::OAuthClientCredentials {
                    token_url: token_url?,
                    client_id: client_id?,
                    client_secret: client_secret?,
                    scope: r.scope.clone(),
                    audience: r.audience.clone(),
                    client_auth,
                    refresh_before,
                }
            }
        };
        Some(CredentialSettings {
            name: name.to_owned(),
            kind,
        })
    }

    fn webhook(&mut self, name: &str, r: &RawWebhook, p: &KeyPath) -> Option<WebhookSettings> {
        let kind = match self.required(&r.kind, &p.key("type")).map(String::as_str) {
            Some("zoom") => WebhookKind::Zoom,
            Some("standard") => WebhookKind::Standard,
            Some("github") => WebhookKind::Github,
            Some(other) => {
                let other = other.to_owned();
                self.err(
                    &p.key("type"),
                    format!("unknown webhook type \"{other}\" (zoom, standard, github)"),
                );
                return None;
            }
            None => return None,
        };
        let tokens = self
            .required(&r.secret_tokens, &p.key("secret_tokens"))
            .cloned();
        let mut secrets = Vec::new();
        if let Some(tokens) = tokens {
            if tokens.is_empty() {
                self.err(
                    &p.key("secret_tokens"),
                    "at least one secret token is required",
                );
            }
            for (i, t) in tokens.iter().enumerate() {
                let tp = p.key("secret_tokens").index(i);
                let Some(s) = self.secret(t, &tp) else {
                    continue;
                };
                let bytes = if kind == WebhookKind::Standard {
                    let Some(b64) = s.expose_secret().strip_prefix("whsec_") else {
                        self.err(
                            &tp,
                            "a Standard Webhooks secret must look like whsec_<base64>",
                        );
                        continue;
                    };
                    match base64::engine::general_purpose::STANDARD.decode(b64) {
                        Ok(k) if !k.is_empty() => k,
                        _ => {
                            self.err(&tp, "the part after whsec_ is not valid base64");
                            continue;
                        }
                    }
                } else {
                    s.expose_secret().as_bytes().to_vec()
                };
                secrets.push(SecretBytes(bytes));
            }
        }
        Some(WebhookSettings {
            name: name.to_owned(),
            kind,
            secrets,
            tolerance: self.secs(r.tolerance_secs, 300, 1, &p.key("tolerance_secs")),
            dedup: self.secs(r.dedup_secs, 86_400, 1, &p.key("dedup_secs")),
        })
    }

    fn route(
        &mut self,
        r: &RawRoute,
        p: &KeyPath,
        refs: &Refs<'_>,
        clients: &mut ClientCache,
    ) -> Option<Route> {
        let name = self.required(&r.name, &p.key("name")).cloned();
        if name.as_deref() == Some("") {
            self.err(&p.key("name"), "must not be empty");
        }
        let pattern =
            self.required(&r.path, &p.key("path"))
                .and_then(|v| match PathPattern::parse(v) {
                    Ok(pat) => Some(pat),
                    Err(e) => {
                        self.err(&p.key("path"), e);
                        None
                    }
                });
        let host = r.host.as_ref().and_then(|h| {
            let h = self.string(h, &p.key("host"))?;
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains(' ') {
                self.err(&p.key("host"), format!("`{h}` is not a host name"));
                return None;
            }
            Some(crate::net::strip_port(&h).to_owned())
        });
        let methods = r.methods.as_ref().map(|ms| {
            if ms.is_empty() {
                self.err(
                    &p.key("methods"),
                    "must list at least one method (leave it out for all methods)",
                );
            }
            ms.iter()
                .filter_map(
                    |m| match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) if crate::pipeline::route::never_forwarded(&m) => {
                            self.err(
                                &p.key("methods"),
                                format!("`{m}` is never forwarded (TRACE would reflect injected credentials, CONNECT would open a tunnel)"),
                            );
                            None
                        }
                        Ok(m) => Some(m),
                        Err(_) => {
                            self.err(&p.key("methods"), format!("`{m}` is not an HTTP method"));
                            None
                        }
                    },
                )
                .collect::<Vec<_>>()
        });

        // Authentication: exactly one of `authenticate` and `verify_webhook`.
        let authenticate = match (&r.authenticate, &r.verify_webhook) {
            (None, None) => {
                self.err(
                    &p.key("authenticate"),
                    "a route needs `authenticate` (an identity, a list of identities, { zoom_app = ... } or \"none\") or `verify_webhook`",
                );
                None
            }
            (Some(_), Some(_)) => {
                self.err(
                    &p.key("verify_webhook"),
                    "a `verify_webhook` route takes no `authenticate`",
                );
                None
            }
            (None, Some(_)) => Some(Authenticate::None),
            (Some(a), None) => self.authenticate(a, &p.key("authenticate"), refs),
        };
        let verify_webhook = r.verify_webhook.as_ref().and_then(|w| {
            if refs.webhooks.contains_key(w) {
                Some(w.clone())
            } else {
                if !refs.declared.webhooks.contains(w) {
                    self.err(
                        &p.key("verify_webhook"),
                        undefined("webhook", w, refs.declared.webhooks.iter()),
                    );
                }
                None
            }
        });
        let captures = pattern
            .as_ref()
            .map(PathPattern::capture_names)
            .unwrap_or_default();
        let has_identity = matches!(authenticate, Some(Authenticate::Identities(_)));

        let authorize = r.authorize.as_ref().map(|a| {
            let ap = p.key("authorize");
            if !has_identity && authenticate.is_some() {
                self.err(
                    &ap,
                    "`authorize` needs `authenticate` with a bearer-token identity",
                );
            }
            if let Some(t) = &a.tenant_param {
                if !captures.contains(&t.as_str()) {
                    self.err(
                        &ap.key("tenant_param"),
                        format!("\"{t}\" is not a `{{{t}}}` capture in `path`"),
                    );
                }
                if let Some(Authenticate::Identities(ids)) = &authenticate {
                    for id in ids {
                        if refs
                            .identities
                            .get(id)
                            .is_some_and(|i| i.tenant_claim.is_none())
                        {
                            self.err(
                                &ap.key("tenant_param"),
                                format!("identity \"{id}\" has no `tenant_claim` to compare with"),
                            );
                        }
                    }
                }
            }
            Authorize {
                roles_any: a.roles_any.clone().unwrap_or_default(),
                roles_all: a.roles_all.clone().unwrap_or_default(),
                scopes_all: a.scopes_all.clone().unwrap_or_default(),
                tenant_param: a.tenant_param.clone(),
                claims_equal: a
                    .claims_equal
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            }
        });

        let claims_to_headers = r
            .claims_to_headers
            .as_ref()
            .map(|m| {
                let cp = p.key("claims_to_headers");
                if !has_identity {
                    self.err(
                        &cp,
                        "`claims_to_headers` needs `authenticate` with a bearer-token identity",
                    );
                }
                m.iter()
                    .filter_map(|(h, claim)| match HeaderName::from_bytes(h.as_bytes()) {
                        Ok(name) => Some((name, claim.clone())),
                        Err(_) => {
                            self.err(&cp.key(h), format!("`{h}` is not a valid header name"));
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();

        let inject = r
            .inject
            .as_ref()
            .map(|list| {
                list.iter()
                    .enumerate()
                    .filter_map(|(i, inj)| {
                        self.inject(
                            inj,
                            &p.key("inject").index(i),
                            refs,
                            &captures,
                            has_identity,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();

        let respond = r
            .respond
            .as_ref()
            .and_then(|resp| self.respond(resp, &p.key("respond"), refs, &captures, has_identity));

        self.dead_combinations(r, p);

        let upstream = match (&r.upstream, r.respond.is_some()) {
            (Some(_), true) => {
                self.err(
                    &p.key("upstream"),
                    "a `respond` route is answered by the gateway and takes no `upstream`",
                );
                None
            }
            (None, false) => {
                self.err(
                    &p.key("upstream"),
                    "is required (or `respond` for a route the gateway answers)",
                );
                None
            }
            (None, true) => None,
            (Some(u), false) => self.upstream(u, r.upstream_ca.as_deref(), p, clients),
        };

        let strip_prefix = r.strip_prefix.as_ref().and_then(|sp| {
            let spp = p.key("strip_prefix");
            let sp = sp.trim_end_matches('/');
            match &pattern {
                Some(pat) if !sp.starts_with('/') || !pat.has_literal_prefix(sp) => {
                    self.err(
                        &spp,
                        format!("\"{sp}\" is not a literal prefix of the route's `path`"),
                    );
                    None
                }
                _ => Some(sp.to_owned()),
            }
        });

        let name = name?;
        Some(Route {
            label: crate::metrics::intern(&name),
            name,
            host,
            methods,
            pattern: pattern?,
            strip_prefix,
            upstream,
            preserve_host: r.preserve_host.unwrap_or(false),
            forward_bearer: r.forward_bearer.unwrap_or(false),
            websocket: r.websocket.unwrap_or(false),
            authenticate: authenticate?,
            authorize,
            claims_to_headers,
            inject,
            respond,
            verify_webhook,
        })
    }

    /// Keys that would be accepted and never act: a route the gateway
    /// answers (`respond`) forwards nothing, and a `verify_webhook` route
    /// forwards the verified event as it came, so what only forwarding or
    /// injection uses is refused there rather than silently ignored.
    fn dead_combinations(&mut self, r: &RawRoute, p: &KeyPath) {
        let (stage, unused): (&str, &[(&str, bool)]) = if r.respond.is_some() {
            (
                "a `respond` route is answered by the gateway",
                &[
                    ("inject", r.inject.is_some()),
                    ("verify_webhook", r.verify_webhook.is_some()),
                    ("websocket", r.websocket.is_some()),
                    ("forward_bearer", r.forward_bearer.is_some()),
                    ("preserve_host", r.preserve_host.is_some()),
                    ("strip_prefix", r.strip_prefix.is_some()),
                    ("upstream_ca", r.upstream_ca.is_some()),
                ],
            )
        } else if r.verify_webhook.is_some() {
            (
                "a `verify_webhook` route forwards the verified event as it came",
                &[
                    ("inject", r.inject.is_some()),
                    ("websocket", r.websocket.is_some()),
                ],
            )
        } else {
            return;
        };
        for (key, set) in unused {
            if *set {
                self.err(&p.key(key), format!("{stage}: `{key}` would never apply"));
            }
        }
    }

    fn authenticate(
        &mut self,
        a: &RawAuthenticate,
        p: &KeyPath,
        refs: &Refs<'_>,
    ) -> Option<Authenticate> {
        match a {
            RawAuthenticate::One(n) if n == "none" => Some(Authenticate::None),
            RawAuthenticate::One(n) => self
                .identity_ref(n, p, refs)
                .map(|n| Authenticate::Identities(vec![n])),
            RawAuthenticate::Many(names) => {
                if names.is_empty() {
                    self.err(p, "the list of identities is empty");
                    return None;
                }
                let mut out = Vec::new();
                for n in names {
                    if n == "none" {
                        self.err(p, "\"none\" cannot be part of a list of identities");
                    } else if let Some(n) = self.identity_ref(n, p, refs) {
                        if !out.contains(&n) {
                            out.push(n);
                        }
                    }
                }
                (out.len() == names.len()).then_some(Authenticate::Identities(out))
            }
            RawAuthenticate::ZoomApp(n) => {
                if refs.zoom_apps.contains_key(n) {
                    Some(Authenticate::ZoomApp(n.clone()))
                } else {
                    if !refs.declared.zoom_apps.contains(n) {
                        self.err(p, undefined("zoom_app", n, refs.declared.zoom_apps.iter()));
                    }
                    None
                }
            }
        }
    }

    fn identity_ref(&mut self, n: &str, p: &KeyPath, refs: &Refs<'_>) -> Option<String> {
        if refs.identities.contains_key(n) {
            Some(n.to_owned())
        } else {
            if !refs.declared.identities.contains(n) {
                self.err(p, undefined("identity", n, refs.declared.identities.iter()));
            }
            None
        }
    }

    fn credential_ref<'r>(
        &mut self,
        n: &Option<String>,
        p: &KeyPath,
        refs: &'r Refs<'_>,
    ) -> Option<&'r Arc<CredentialSettings>> {
        let n = self.required(n, p)?;
        match refs.credentials.get(n) {
            Some(c) => Some(c),
            None => {
                if !refs.declared.credentials.contains(n) {
                    let msg = undefined("credential", n, refs.declared.credentials.iter());
                    self.err(p, msg);
                }
                None
            }
        }
    }

    fn inject(
        &mut self,
        r: &RawInject,
        p: &KeyPath,
        refs: &Refs<'_>,
        captures: &[&str],
        has_identity: bool,
    ) -> Option<Inject> {
        let cred = self.credential_ref(&r.credential, &p.key("credential"), refs);
        let header = self.required(&r.header, &p.key("header")).and_then(|h| {
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name)
                    if crate::pipeline::forward::is_hop_by_hop(&name)
                        || name == http::header::HOST =>
                {
                    self.err(&p.key("header"), format!("`{h}` cannot be injected"));
                    None
                }
                Ok(name) => Some(name),
                Err(_) => {
                    self.err(
                        &p.key("header"),
                        format!("`{h}` is not a valid header name"),
                    );
                    None
                }
            }
        });
        let kind = cred.map(|c| c.kind.type_name());
        self.param_rules(
            p,
            kind,
            r.meeting_param.as_deref(),
            r.session_param.as_deref(),
            captures,
        );
        if r.meeting_query.is_some() && kind.is_some_and(|k| k != "zoom_meeting_sdk") {
            self.err(
                &p.key("meeting_query"),
                "only applies to a zoom_meeting_sdk credential",
            );
        }
        if kind == Some("zoom_meeting_sdk")
            && r.meeting_param.is_none()
            && r.meeting_query.is_none()
        {
            self.err(
                p,
                "a zoom_meeting_sdk injection needs `meeting_param` or `meeting_query`",
            );
        }
        if kind == Some("zoom_video_sdk") && r.session_param.is_none() {
            self.err(p, "a zoom_video_sdk injection needs `session_param`");
        }
        self.host_roles_rules(p, kind, r.host_roles.as_ref(), has_identity);
        Some(Inject {
            credential: cred?.name.clone(),
            header: header?,
            meeting_param: r.meeting_param.clone(),
            meeting_query: r.meeting_query.clone(),
            session_param: r.session_param.clone(),
            host_roles: r.host_roles.clone().unwrap_or_default(),
        })
    }

    fn respond(
        &mut self,
        r: &RawRespond,
        p: &KeyPath,
        refs: &Refs<'_>,
        captures: &[&str],
        has_identity: bool,
    ) -> Option<Respond> {
        let cred = self.credential_ref(&r.credential, &p.key("credential"), refs)?;
        let kind = cred.kind.type_name();
        if !matches!(kind, "zoom_meeting_sdk" | "zoom_video_sdk") {
            self.err(
                &p.key("credential"),
                format!("a route can respond with a zoom_meeting_sdk or zoom_video_sdk credential, not {kind}"),
            );
        }
        if !has_identity {
            self.err(
                p,
                "a `respond` route needs `authenticate` with a bearer-token identity",
            );
        }
        self.param_rules(p, Some(kind), None, r.session_param.as_deref(), captures);
        if kind == "zoom_video_sdk" && r.session_param.is_none() {
            self.err(p, "a zoom_video_sdk respond needs `session_param`");
        }
        self.host_roles_rules(p, Some(kind), r.host_roles.as_ref(), has_identity);
        Some(Respond {
            credential: cred.name.clone(),
            host_roles: r.host_roles.clone().unwrap_or_default(),
            session_param: r.session_param.clone(),
        })
    }

    fn param_rules(
        &mut self,
        p: &KeyPath,
        kind: Option<&str>,
        meeting: Option<&str>,
        session: Option<&str>,
        captures: &[&str],
    ) {
        for (key, value, for_kind) in [
            ("meeting_param", meeting, "zoom_meeting_sdk"),
            ("session_param", session, "zoom_video_sdk"),
        ] {
            let Some(v) = value else { continue };
            if !captures.contains(&v) {
                self.err(
                    &p.key(key),
                    format!("\"{v}\" is not a `{{{v}}}` capture in the route's `path`"),
                );
            }
            if kind.is_some_and(|k| k != for_kind) {
                self.err(
                    &p.key(key),
                    format!("only applies to a {for_kind} credential"),
                );
            }
        }
    }

    fn host_roles_rules(
        &mut self,
        p: &KeyPath,
        kind: Option<&str>,
        host_roles: Option<&Vec<String>>,
        has_identity: bool,
    ) {
        if host_roles.is_none() {
            return;
        }
        if kind.is_some_and(|k| !matches!(k, "zoom_meeting_sdk" | "zoom_video_sdk")) {
            self.err(
                &p.key("host_roles"),
                "only applies to Meeting SDK and Video SDK credentials",
            );
        }
        if !has_identity {
            self.err(
                &p.key("host_roles"),
                "needs `authenticate` with a bearer-token identity (roles come from its token)",
            );
        }
    }

    fn upstream(
        &mut self,
        u: &str,
        ca: Option<&str>,
        p: &KeyPath,
        clients: &mut ClientCache,
    ) -> Option<Upstream> {
        let up = p.key("upstream");
        let uri = self.outbound_url(u, &up)?;
        if uri.query().is_some() {
            self.err(&up, "an upstream URL takes no query string");
            return None;
        }
        let parts = uri.into_parts();
        let (client, trust) = match ca {
            None => clients.default(),
            Some(ca) => {
                let path = relative_to(self.file, ca);
                match clients.with_ca(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        self.err(&p.key("upstream_ca"), e.to_string());
                        return None;
                    }
                }
            }
        };
        let scheme = parts.scheme?;
        let authority = parts.authority?;
        Some(Upstream {
            plain: (scheme == http::uri::Scheme::HTTP).then(|| clients.plain(&authority)),
            scheme,
            authority,
            base_path: parts
                .path_and_query
                .map(|pq| pq.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            client,
            trust,
        })
    }
}

fn undefined<'k>(section: &str, name: &str, defined: impl Iterator<Item = &'k String>) -> String {
    let defined: Vec<&str> = defined.map(String::as_str).collect();
    if defined.is_empty() {
        format!("{section} \"{name}\" is not defined (no [{section}.*] section exists)")
    } else {
        format!(
            "{section} \"{name}\" is not defined (defined: {})",
            defined.join(", ")
        )
    }
}

/// Sections a route may refer to: the ones that built, and every name
/// declared (a section that failed on its own, say a missing secret, is
/// still declared, so references to it do not report a second problem).
struct Refs<'a> {
    identities: &'a BTreeMap<String, Arc<IdentitySettings>>,
    zoom_apps: &'a BTreeMap<String, Arc<ZoomAppSettings>>,
    credentials: &'a BTreeMap<String, Arc<CredentialSettings>>,
    webhooks: &'a BTreeMap<String, Arc<WebhookSettings>>,
    declared: Declared,
}

struct Declared {
    identities: BTreeSet<String>,
    zoom_apps: BTreeSet<String>,
    credentials: BTreeSet<String>,
    webhooks: BTreeSet<String>,
}

/// Upstream clients built for one snapshot: one for the common trust roots,
/// one per extra `upstream_ca` file.
struct ClientCache {
    roots: rustls::RootCertStore,
    /// [`tls::trust_fingerprint`] of `roots`.
    trust: String,
    default: Option<UpstreamClient>,
    by_ca: HashMap<PathBuf, (UpstreamClient, String)>,
    plain: HashMap<http::uri::Authority, Arc<H1Pool>>,
}

impl ClientCache {
    /// The client on the common roots, and their fingerprint.
    fn default(&mut self) -> (UpstreamClient, String) {
        let client = self
            .default
            .get_or_insert_with(|| forward::new_client(self.roots.clone()))
            .clone();
        (client, self.trust.clone())
    }

    fn plain(&mut self, authority: &http::uri::Authority) -> Arc<H1Pool> {
        self.plain
            .entry(authority.clone())
            .or_insert_with(|| H1Pool::new(authority.clone()))
            .clone()
    }

    /// The client on the common roots plus `path`, and their fingerprint.
    fn with_ca(&mut self, path: &Path) -> Result<(UpstreamClient, String), tls::TlsError> {
        if let Some(c) = self.by_ca.get(path) {
            return Ok(c.clone());
        }
        let mut roots = self.roots.clone();
        tls::add_pem_roots(&mut roots, path)?;
        let trust = tls::trust_fingerprint(&roots);
        let c = (forward::new_client(roots), trust);
        self.by_ca.insert(path.to_owned(), c.clone());
        Ok(c)
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
