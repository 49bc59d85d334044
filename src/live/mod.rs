//! The running gateway for one settings [`Snapshot`]: every reference a
//! route makes resolved to the live part that serves it (an identity's
//! signing keys, a credential's token source, an upstream's connections),
//! once, when the snapshot is put in service.
//!
//! [`Live::assemble`] is the only way to get one, so a route can never be
//! served with a part missing. The parts come from registries that outlive
//! any one configuration (keys and tokens survive reloads while their
//! settings and trust roots are unchanged), and upstream connections are
//! taken over from the previous `Live` for every upstream whose scheme,
//! authority and trust roots are unchanged.

pub mod reload;
pub mod vaults;
pub mod zoom_users;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Action, CredentialKind, IdentitySettings, Inject, Route, Snapshot, Upstream};
use crate::credentials::oauth::{CredentialRegistry, TokenSource};
use crate::jwks::{IssuerKeys, JwksRegistry};
use crate::pipeline::forward::{self, UpstreamClient};
use crate::pipeline::pool::H1Pool;
use zoom_users::ZoomUsers;

/// The configuration in force, with its live parts.
pub struct Live {
    /// What the operator wrote.
    pub settings: Arc<Snapshot>,
    /// The routes, in file order (the first match wins).
    pub routes: Vec<LiveRoute>,
    /// Client for the gateway's own outbound requests (issuers, JWKS, token
    /// endpoints), on the outbound trust roots.
    pub outbound: UpstreamClient,
    /// Signing keys per identity name (readiness, admin).
    pub identity_keys: HashMap<String, Arc<IssuerKeys>>,
    /// Token sources of fetched credentials by name (readiness, admin).
    pub credential_sources: HashMap<String, Arc<TokenSource>>,
    /// Each `[zoom_user.NAME]` as running (deauthorization reaches them).
    pub zoom_users: HashMap<String, Arc<ZoomUsers>>,
    connections: Connections,
}

/// One route and the live parts it uses.
pub struct LiveRoute {
    pub settings: Arc<Route>,
    /// The route's bearer identities with their keys (empty unless it
    /// authenticates bearer tokens).
    pub identities: Vec<LiveIdentity>,
    /// The credentials it injects, each with its token source if fetched.
    pub inject: Vec<LiveInject>,
    /// The connections to its upstream (none for a route the gateway
    /// answers).
    pub upstream: Option<Connection>,
    /// The Zoom app of a `zoom_user` route.
    pub zoom_user: Option<Arc<ZoomUsers>>,
    /// The Zoom apps a Meeting SDK answer takes its `zak` and `obfToken`
    /// from.
    pub zak: Option<Arc<ZoomUsers>>,
    pub obf: Option<Arc<ZoomUsers>>,
}

impl AsRef<Route> for LiveRoute {
    fn as_ref(&self) -> &Route {
        &self.settings
    }
}

/// An identity and its signing keys.
#[derive(Clone)]
pub struct LiveIdentity {
    pub settings: Arc<IdentitySettings>,
    pub keys: Arc<IssuerKeys>,
}

/// One `inject` entry and, for a fetched credential, its token source.
#[derive(Clone)]
pub struct LiveInject {
    pub settings: Arc<Inject>,
    pub source: Option<Arc<TokenSource>>,
    /// For `zoom_zak` / `zoom_obf`: the Zoom app the caller connected.
    pub user: Option<Arc<ZoomUsers>>,
}

/// How requests reach one upstream.
#[derive(Clone)]
pub struct Connection {
    /// The pooled client (TLS on the upstream's trust roots; also carries
    /// WebSocket upgrades to plain-HTTP upstreams).
    pub client: UpstreamClient,
    /// For `http://` upstreams: the HTTP/1.1 connection pool.
    pub plain: Option<Arc<H1Pool>>,
}

/// The registries live parts come from; they outlive every `Live`.
pub struct Registries<'a> {
    pub jwks: &'a JwksRegistry,
    pub credentials: &'a CredentialRegistry,
    /// The grant vault, when `[grants]` is configured.
    pub vault: Option<Arc<crate::vault::Vault>>,
}

/// Upstream clients by trust fingerprint and plain-HTTP pools by
/// authority, shared by every route of one `Live` and handed on to the
/// next.
#[derive(Default, Clone)]
struct Connections {
    clients: HashMap<String, UpstreamClient>,
    pools: HashMap<http::uri::Authority, Arc<H1Pool>>,
}

impl Connections {
    fn client(
        &mut self,
        old: Option<&Connections>,
        trust: &str,
        roots: &rustls::RootCertStore,
    ) -> UpstreamClient {
        if let Some(c) = self.clients.get(trust) {
            return c.clone();
        }
        let c = old
            .and_then(|o| o.clients.get(trust).cloned())
            .unwrap_or_else(|| forward::new_client(roots.clone()));
        self.clients.insert(trust.to_owned(), c.clone());
        c
    }

    fn connection(&mut self, old: Option<&Connections>, u: &Upstream) -> Connection {
        let client = self.client(old, &u.trust, &u.roots);
        let plain = (u.scheme == http::uri::Scheme::HTTP).then(|| {
            let pool = self.pools.get(&u.authority).cloned().unwrap_or_else(|| {
                old.and_then(|o| o.pools.get(&u.authority).cloned())
                    .unwrap_or_else(|| H1Pool::new(u.authority.clone()))
            });
            self.pools.insert(u.authority.clone(), pool.clone());
            pool
        });
        Connection { client, plain }
    }
}

impl Live {
    /// Puts `settings` in service: takes the keys and token sources it
    /// needs from the registries (starting fetchers for new or changed
    /// ones, stopping the rest) and the connections of `previous` for
    /// unchanged upstreams.
    pub fn assemble(settings: Snapshot, reg: &Registries<'_>, previous: Option<&Live>) -> Live {
        let settings = Arc::new(settings);
        let old = previous.map(|p| &p.connections);
        let mut connections = Connections::default();
        let outbound = connections.client(old, &settings.outbound_trust, &settings.outbound_roots);
        let identity_keys = reg.jwks.sync(&settings, &outbound);
        let credential_sources = reg.credentials.sync(&settings, &outbound);
        let zoom_users: HashMap<String, Arc<ZoomUsers>> = match &reg.vault {
            Some(vault) => settings
                .zoom_users
                .iter()
                .map(|(name, app)| {
                    // Unchanged app, trust and vault: keep it (and its ZAKs).
                    let kept = previous
                        .and_then(|p| p.zoom_users.get(name))
                        .filter(|z| {
                            Arc::ptr_eq(&z.vault, vault)
                                && app_fingerprint(&z.settings) == app_fingerprint(app)
                                && p_trust(previous) == Some(settings.outbound_trust.as_str())
                        })
                        .cloned();
                    let live = kept.unwrap_or_else(|| {
                        Arc::new(ZoomUsers::new(app.clone(), outbound.clone(), vault.clone()))
                    });
                    (name.clone(), live)
                })
                .collect(),
            None => HashMap::new(),
        };
        let user_of = |c: &crate::config::CredentialSettings| match &c.kind {
            CredentialKind::ZoomZak { app, .. } | CredentialKind::ZoomObf { app, .. } => {
                zoom_users.get(&app.name).cloned()
            }
            _ => None,
        };
        let routes = settings
            .routes
            .iter()
            .map(|route| LiveRoute {
                settings: route.clone(),
                identities: match &route.authenticate {
                    crate::config::Authenticate::Identities(ids) => ids
                        .iter()
                        .map(|i| LiveIdentity {
                            settings: i.clone(),
                            keys: identity_keys[&i.name].clone(),
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                inject: match &route.action {
                    Action::Forward { inject, .. } => inject
                        .iter()
                        .map(|i| LiveInject {
                            settings: i.clone(),
                            source: credential_sources.get(&i.credential.name).cloned(),
                            user: user_of(&i.credential),
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                upstream: route
                    .action
                    .forwarding()
                    .map(|f| connections.connection(old, &f.upstream)),
                zoom_user: match &route.action {
                    Action::ZoomUser(z) => zoom_users.get(&z.app.name).cloned(),
                    _ => None,
                },
                zak: match &route.action {
                    Action::Respond(r) => r.zak.as_deref().and_then(user_of),
                    _ => None,
                },
                obf: match &route.action {
                    Action::Respond(r) => r.obf.as_deref().and_then(user_of),
                    _ => None,
                },
            })
            .collect();
        Live {
            settings,
            routes,
            outbound,
            identity_keys,
            credential_sources,
            zoom_users,
            connections,
        }
    }
}

/// Every setting of a Zoom app, its secret included (only the digest is
/// kept or compared).
fn app_fingerprint(app: &crate::config::ZoomUserAppSettings) -> String {
    use secrecy::ExposeSecret;
    let return_to = app.return_to.join("\n");
    crate::registry::fingerprint(&[
        app.name.as_bytes(),
        app.client_id.as_bytes(),
        app.client_secret.expose_secret().as_bytes(),
        app.redirect_uri.as_bytes(),
        return_to.as_bytes(),
        app.oauth_base.as_bytes(),
        app.api_base.as_bytes(),
    ])
}

/// The outbound trust fingerprint `previous` was assembled with.
fn p_trust(previous: Option<&Live>) -> Option<&str> {
    previous.map(|p| p.settings.outbound_trust.as_str())
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
