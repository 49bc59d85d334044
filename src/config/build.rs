//! `RawConfig` → [`Snapshot`]: validation, secret resolution, compiled
//! matchers, trust roots and TLS settings. Builds no client.
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
use super::source::{KeyPath, Seg, SourceMap};
use super::*;
use crate::net::is_loopback_host;
use crate::secret::{is_reference, reference_syntax, resolve, EnvLookup, ResolveError};
use crate::tls;

mod cors;
mod credential;
mod lints;
mod route;
mod route_credentials;
mod sections;
mod upstream;
mod zoom_user;

use route::{Declared, Refs};
use upstream::TrustCache;

/// What the snapshot is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildMode {
    /// Serving: TLS files must load.
    Run,
    /// `meetgate check`: TLS files that do not exist yet are a warning (they
    /// are often provisioned on the target host); unreadable ones an error.
    Check,
    /// `meetgate check --no-secrets`: the structure only, before the
    /// production secrets exist. No `${VAR}` variable, `file:` secret, TLS
    /// certificate or key is read; a reference's syntax is still checked,
    /// and what would be checked of its value (a URL, an address, a key's
    /// format) is taken as valid.
    CheckWithoutSecrets,
}

/// Everything a build found: the snapshot (only when there is no error),
/// every error and every warning.
pub struct Outcome {
    pub snapshot: Option<Snapshot>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
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
        /// What would have been warned about had the file been accepted.
        warnings: Vec<ConfigError>,
    },
}

impl LoadError {
    /// Every problem, one per line, as `file:line: ...`.
    pub fn report(&self) -> String {
        match self {
            LoadError::Read { .. } => self.to_string(),
            LoadError::Invalid { path, errors, .. } => errors
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
    let Outcome {
        snapshot,
        errors,
        warnings,
    } = build_all(&text, path, mode, env);
    snapshot.ok_or_else(|| LoadError::Invalid {
        path: path.to_owned(),
        errors,
        warnings,
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
    let outcome = build_all(text, path, mode, env);
    outcome.snapshot.ok_or(outcome.errors)
}

/// [`build`], reporting the warnings of a refused file too (what `check`
/// prints).
pub fn build_all(text: &str, path: &Path, mode: BuildMode, env: EnvLookup<'_>) -> Outcome {
    let map = SourceMap::new(text);
    let refused = |e: ConfigError| Outcome {
        snapshot: None,
        errors: vec![e],
        warnings: Vec::new(),
    };
    let de = match toml::de::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => return refused(toml_error(&map, &e, "syntax")),
    };
    let mut unknown = Vec::new();
    let raw: RawConfig =
        match serde_ignored::deserialize(de, |p| unknown.push(KeyPath::from_ignored(&p))) {
            Ok(raw) => raw,
            Err(e) => return refused(toml_error(&map, &e, "invalid_type")),
        };
    let mut b = Builder {
        map: &map,
        file: path,
        env,
        mode,
        errors: Vec::new(),
        warnings: Vec::new(),
        zoom_users: BTreeMap::new(),
        declared_zoom_users: BTreeSet::new(),
        files: BTreeSet::from([path.to_owned()]),
        route_names: raw.route.iter().map(|r| r.name.clone()).collect(),
    };
    for p in unknown {
        let name = p.to_string();
        let hint = match super::known_keys::suggestion(&p) {
            Some(s) => format!("; {s}"),
            None => String::new(),
        };
        b.err_as(
            "unknown_key",
            &p,
            format!("unknown key `{name}` (a typo must not silently disable a check){hint}"),
        );
    }
    let snapshot = b.snapshot(raw);
    let Builder {
        mut errors,
        mut warnings,
        files,
        ..
    } = b;
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    warnings.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    let snapshot = snapshot.filter(|_| errors.is_empty()).map(|mut s| {
        s.warnings = warnings.clone();
        s.files = files.into_iter().collect();
        s
    });
    Outcome {
        snapshot,
        errors,
        warnings,
    }
}

fn toml_error(map: &SourceMap<'_>, e: &toml::de::Error, code: &'static str) -> ConfigError {
    let (position, key) = match e.span() {
        Some(span) => (
            Some(map.position_of(span.start)),
            map.path_at(span.start).to_string(),
        ),
        None => (None, String::new()),
    };
    ConfigError {
        line: position.map(|(line, _)| line),
        column: position.map(|(_, column)| column),
        key,
        route: None,
        code,
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
    /// `[zoom_user.*]` built so far (credentials and routes refer to them).
    zoom_users: BTreeMap<String, Arc<ZoomUserAppSettings>>,
    declared_zoom_users: BTreeSet<String>,
    /// Every file the configuration reads (itself, `file:` references,
    /// certificates, CA bundles): what the reload watcher watches.
    files: BTreeSet<PathBuf>,
    /// Each `[[route]]`'s `name`, so problems name the route, not its index.
    route_names: Vec<Option<String>>,
}

/// The longest body-progress or idle bound (`[limits]`): a day. Longer is
/// a typo or a wish for "never", which these bounds exist to rule out, and a
/// deadline far in the future would overflow `Instant` arithmetic.
const MAX_PROGRESS_TIMEOUT_MS: u64 = 86_400_000;
/// `[server] shutdown_grace_ms` by default: Kubernetes' default
/// `terminationGracePeriodSeconds`, so in-flight requests get all the time
/// the platform gives before it kills the process.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// The longest `drain_ms`: a drain window longer than this is a typo.
const MAX_DRAIN: Duration = Duration::from_secs(600);
/// `[server] readiness_grace_ms` by default: the first fetch of keys and
/// tokens takes well under a second from healthy endpoints, so 10 s lets a
/// slow start finish before `/readyz` answers, while an unreachable one
/// delays a rollout only briefly (`/readyz` then names it under `degraded`).
const DEFAULT_READINESS_GRACE: Duration = Duration::from_secs(10);
/// The longest `readiness_grace_ms`, as for `drain_ms`.
const MAX_READINESS_GRACE_MS: u64 = 600_000;
/// `[cluster] timeout_ms` by default: Redis answers in about a millisecond
/// on a healthy network, and every operation falls back to the in-process
/// store (grants: 503) when it does not, so a short wait costs little.
const DEFAULT_CLUSTER_TIMEOUT: Duration = Duration::from_millis(250);
const ZOOM_S2S_TOKEN_URL: &str = "https://zoom.us/oauth/token";

/// Algorithms an identity may allow: asymmetric only (docs/BEHAVIOUR.md item 18).
const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

impl Builder<'_, '_> {
    fn problem(&self, code: &'static str, path: &KeyPath, message: String) -> ConfigError {
        let position = self.map.position(path);
        let route = match path.0.as_slice() {
            [Seg::Key(k), Seg::Index(i), ..] if k == "route" => {
                self.route_names.get(*i).cloned().flatten()
            }
            _ => None,
        };
        ConfigError {
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            key: path.to_string(),
            route,
            code,
            message,
        }
    }

    /// An error without a more specific code: a value that is not valid.
    fn err(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.err_as("invalid_value", path, message);
    }

    /// An error with its stable code.
    fn err_as(&mut self, code: &'static str, path: &KeyPath, message: impl Into<String>) {
        let e = self.problem(code, path, message.into());
        self.errors.push(e);
    }

    fn warn(&mut self, code: &'static str, path: &KeyPath, message: impl Into<String>) {
        let w = self.problem(code, path, message.into());
        self.warnings.push(w);
    }

    /// A required value: records "missing" when absent.
    fn required<'v, T>(&mut self, v: &'v Option<T>, path: &KeyPath) -> Option<&'v T> {
        if v.is_none() {
            self.err_as("missing_key", path, "is required");
        }
        v.as_ref()
    }

    /// Notes that the configuration reads `v` when it is a `file:`
    /// reference.
    fn note_reference(&mut self, v: &str) {
        if let Some(f) = v.strip_prefix("file:") {
            let full = self.base().join(f);
            self.files.insert(full);
        }
    }

    /// Notes a file the configuration reads (a certificate, a CA bundle).
    pub(super) fn note_file(&mut self, path: &Path) {
        self.files.insert(path.to_owned());
    }

    /// Resolves `${VAR}` / `file:` in a value; a value that looks like a
    /// reference written wrong (`$VAR`, `${VAR}-x`) is refused rather than
    /// used as written.
    fn resolved(&mut self, v: &str, path: &KeyPath) -> Option<String> {
        self.note_reference(v);
        if let Some(mistake) = crate::secret::reference_mistake(v) {
            self.err_as("reference_syntax", path, mistake);
            return None;
        }
        let resolved = if self.mode == BuildMode::CheckWithoutSecrets && is_reference(v) {
            reference_syntax(v).map(|()| v.to_owned())
        } else {
            resolve(v, self.base(), self.env)
        };
        match resolved {
            Ok(s) => Some(s),
            Err(e) => {
                let code = match e {
                    ResolveError::BadReference { .. } => "reference_syntax",
                    _ => "unresolved_reference",
                };
                self.err_as(code, path, e.to_string());
                None
            }
        }
    }

    /// Whether `v` is a reference `check --no-secrets` left unread: its
    /// value cannot be checked.
    fn deferred(&self, v: &str) -> bool {
        self.mode == BuildMode::CheckWithoutSecrets && is_reference(v)
    }

    /// Resolves `${VAR}` / `file:` in a plain string value.
    fn string(&mut self, v: &str, path: &KeyPath) -> Option<String> {
        self.resolved(v, path)
    }

    /// Resolves a secret; empty secrets are refused (an empty HMAC key would
    /// accept anything signed with it).
    fn secret(&mut self, v: &SecretString, path: &KeyPath) -> Option<SecretString> {
        match self.resolved(v.expose_secret(), path)? {
            s if s.is_empty() => {
                self.err(path, "must not be empty");
                None
            }
            s => Some(SecretString::from(s)),
        }
    }

    fn base(&self) -> &Path {
        self.file.parent().unwrap_or_else(|| Path::new("."))
    }

    /// Milliseconds above 0; `default` when the key is left out.
    fn millis(&mut self, v: Option<u64>, default: Duration, path: &KeyPath) -> Duration {
        let Some(ms) = v else { return default };
        if ms == 0 {
            self.err(path, "must be greater than 0");
        }
        Duration::from_millis(ms)
    }

    /// Milliseconds in `1..=max`; `default` when the key is left out.
    fn millis_at_most(
        &mut self,
        v: Option<u64>,
        default: Duration,
        max: u64,
        path: &KeyPath,
    ) -> Duration {
        let Some(ms) = v else { return default };
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
        if self.deferred(&v) {
            return Some(SocketAddr::from(([0, 0, 0, 0], 0)));
        }
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
        if self.deferred(&v) {
            return Some(Uri::from_static("https://unread.invalid/"));
        }
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
        self.declared_zoom_users = raw.zoom_user.keys().cloned().collect();
        self.zoom_users = self.named(&raw.zoom_user, "zoom_user", Self::zoom_user);
        let grants = match &raw.grants {
            Some(g) => self.grants(g, &root.key("grants"), raw.cluster.is_some()),
            None => {
                if !raw.zoom_user.is_empty() {
                    self.err(
                        &root.key("grants"),
                        "[zoom_user.*] keeps users' Zoom grants: a [grants] section (key_id, key, path) is required",
                    );
                }
                None
            }
        };
        let credentials = self.named(&raw.credential, "credential", Self::credential);
        let webhooks = self.named(&raw.webhook, "webhook", Self::webhook);
        let cors = self.named(&raw.cors, "cors", Self::cors);

        let refs = Refs {
            identities: &identities,
            zoom_apps: &zoom_apps,
            credentials: &credentials,
            webhooks: &webhooks,
            cors: &cors,
            declared: Declared {
                identities: raw.identity.keys().cloned().collect(),
                zoom_apps: raw.zoom_app.keys().cloned().collect(),
                credentials: raw.credential.keys().cloned().collect(),
                webhooks: raw.webhook.keys().cloned().collect(),
                cors: raw.cors.keys().cloned().collect(),
            },
        };
        let mut trust = TrustCache::new(roots);
        let mut names = BTreeSet::new();
        let mut built = Vec::new();
        for (i, r) in raw.route.iter().enumerate() {
            let p = root.key("route").index(i);
            if let Some(route) = self.route(r, &p, &refs, &mut trust) {
                if !names.insert(route.name.clone()) {
                    self.err(
                        &p.key("name"),
                        format!("route name \"{}\" is used twice", route.name),
                    );
                }
                built.push((i, Arc::new(route)));
            }
        }
        self.route_lints(&built);
        let routes: Vec<Arc<Route>> = built.into_iter().map(|(_, r)| r).collect();
        if raw.route.is_empty() {
            self.warn(
                "no_routes",
                &root,
                "no [[route]] is defined: every request will be answered 404",
            );
        }
        let principal_claims = routes
            .iter()
            .flat_map(|r| {
                let equal = r.authorize.iter().flat_map(|a| a.claims_equal.iter());
                let to_headers = r.claims_to_headers.iter();
                let connection_data = match &r.action {
                    Action::Respond(resp) => resp.connection_data.as_slice(),
                    _ => &[],
                };
                equal
                    .map(|(path, _)| path.as_str())
                    .chain(to_headers.map(|(_, path)| path.as_str()))
                    .chain(connection_data.iter().map(String::as_str))
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
            grants,
            zoom_users: std::mem::take(&mut self.zoom_users),
            credentials,
            webhooks,
            routes,
            warnings: Vec::new(),
            files: Vec::new(),
            outbound_roots: trust.roots.clone(),
            outbound_trust: trust.trust.clone(),
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
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
