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

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Action, IdentitySettings, Inject, Route, Snapshot, Upstream};
use crate::credentials::oauth::{CredentialRegistry, TokenSource};
use crate::jwks::{IssuerKeys, JwksRegistry};
use crate::pipeline::forward::{self, UpstreamClient};
use crate::pipeline::pool::H1Pool;

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
                        })
                        .collect(),
                    _ => Vec::new(),
                },
                upstream: route
                    .action
                    .forwarding()
                    .map(|f| connections.connection(old, &f.upstream)),
            })
            .collect();
        Live {
            settings,
            routes,
            outbound,
            identity_keys,
            credential_sources,
            connections,
        }
    }
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
