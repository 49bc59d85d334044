//! `[[route]]`: one route validated and compiled, with its references to
//! the named sections checked.

use super::*;

impl Builder<'_, '_> {
    pub(super) fn route(
        &mut self,
        r: &RawRoute,
        p: &KeyPath,
        refs: &Refs<'_>,
        trust: &mut TrustCache,
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
                        let code = match crate::config::pattern::foreign_syntax(v) {
                            Some(_) => "unsupported_path_syntax",
                            None => "invalid_value",
                        };
                        self.err_as(code, &p.key("path"), e);
                        None
                    }
                });
        let host = r.host.as_ref().and_then(|h| {
            let h = self.string(h, &p.key("host"))?;
            if self.deferred(&h) {
                // Unread: a name of its own, equal only to the same reference.
                return Some(h);
            }
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() || h.contains('/') || h.contains(' ') {
                self.err(&p.key("host"), format!("`{h}` is not a host name"));
                return None;
            }
            if let Some(why) = host_syntax(&h) {
                self.err_as("unsupported_host_syntax", &p.key("host"), why);
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
                        Ok(m) if crate::net::never_forwarded(&m) => {
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
            if let Some(hook) = refs.webhooks.get(w) {
                Some(hook.clone())
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
                    for id in ids.iter().filter(|i| i.tenant_claim.is_none()) {
                        self.err(
                            &ap.key("tenant_param"),
                            format!(
                                "identity \"{}\" has no `tenant_claim` to compare with",
                                id.name
                            ),
                        );
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
                        Ok(name) => match claim_header_refused(&name) {
                            Some(why) => {
                                self.err_as(
                                    "reserved_header",
                                    &cp.key(h),
                                    format!("`{h}` cannot be written from a claim: {why}; name a header of your own (such as `X-User-Email`)"),
                                );
                                None
                            }
                            None => Some((name, claim.clone())),
                        },
                        Err(_) => {
                            self.err(&cp.key(h), format!("`{h}` is not a valid header name"));
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();

        let inject: Vec<Inject> = r
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

        let zoom_user = r.zoom_user.as_ref().and_then(|z| {
            let public = matches!(authenticate, Some(Authenticate::None));
            self.zoom_user_route(z, &p.key("zoom_user"), has_identity, public)
        });

        let cors = r.cors.as_ref().and_then(|c| {
            self.route_cors(
                c,
                &p.key("cors"),
                refs,
                methods.as_deref(),
                authenticate.as_ref(),
            )
        });

        self.dead_combinations(r, p);

        let answered = r.respond.is_some() || r.zoom_user.is_some();
        let upstream = match (&r.upstream, answered) {
            (Some(_), true) => {
                let key = if r.respond.is_some() {
                    "respond"
                } else {
                    "zoom_user"
                };
                self.err(
                    &p.key("upstream"),
                    format!("a `{key}` route is answered by the gateway and takes no `upstream`"),
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
            (Some(u), false) => self.upstream(
                u,
                r.upstream_ca.as_deref(),
                r.insecure_plaintext_upstream.unwrap_or(false),
                p,
                trust,
            ),
        };
        if r.insecure_plaintext_upstream.is_some() && r.upstream.is_none() {
            self.err(
                &p.key("insecure_plaintext_upstream"),
                "applies only to a route with an `upstream`",
            );
        }

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
        let pattern = pattern?;
        let authenticate = authenticate?;
        let action = match (respond, verify_webhook) {
            (Some(respond), _) => Action::Respond(respond),
            (None, _) if r.zoom_user.is_some() => Action::ZoomUser(zoom_user?),
            (None, webhook) => {
                let to = Forwarding {
                    upstream: upstream?,
                    strip_prefix,
                    preserve_host: r.preserve_host.unwrap_or(false),
                    forward_bearer: r.forward_bearer.unwrap_or(false),
                };
                match webhook {
                    Some(webhook) => Action::Webhook { webhook, to },
                    None => Action::Forward {
                        to,
                        websocket: r.websocket.unwrap_or(false),
                        inject: inject.into_iter().map(Arc::new).collect(),
                    },
                }
            }
        };
        Some(Route {
            label: intern(&name),
            name,
            host,
            methods,
            pattern,
            authenticate,
            authorize,
            claims_to_headers,
            cors,
            action,
        })
    }

    /// Keys that would be accepted and never act: a route the gateway
    /// answers (`respond`) forwards nothing, and a `verify_webhook` route
    /// forwards the verified event as it came, so what only forwarding or
    /// injection uses is refused there rather than silently ignored.
    pub(super) fn dead_combinations(&mut self, r: &RawRoute, p: &KeyPath) {
        // What only forwarding uses: dead on a route the gateway answers.
        let forwarding = [
            ("inject", r.inject.is_some()),
            ("verify_webhook", r.verify_webhook.is_some()),
            ("websocket", r.websocket.is_some()),
            ("forward_bearer", r.forward_bearer.is_some()),
            ("preserve_host", r.preserve_host.is_some()),
            ("strip_prefix", r.strip_prefix.is_some()),
            ("upstream_ca", r.upstream_ca.is_some()),
        ];
        let (stage, unused): (&str, Vec<(&str, bool)>) = if r.zoom_user.is_some() {
            let mut keys = forwarding.to_vec();
            keys.push(("respond", r.respond.is_some()));
            keys.push(("claims_to_headers", r.claims_to_headers.is_some()));
            ("a `zoom_user` route is answered by the gateway", keys)
        } else if r.respond.is_some() {
            (
                "a `respond` route is answered by the gateway",
                forwarding.to_vec(),
            )
        } else if r.verify_webhook.is_some() {
            (
                "a `verify_webhook` route forwards the verified event as it came",
                vec![
                    ("inject", r.inject.is_some()),
                    ("websocket", r.websocket.is_some()),
                ],
            )
        } else {
            return;
        };
        for (key, set) in unused {
            if set {
                self.err(&p.key(key), format!("{stage}: `{key}` would never apply"));
            }
        }
    }

    pub(super) fn authenticate(
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
                    } else if let Some(i) = self.identity_ref(n, p, refs) {
                        if !out.iter().any(|o: &Arc<IdentitySettings>| o.name == i.name) {
                            out.push(i);
                        }
                    }
                }
                (out.len() == names.len()).then_some(Authenticate::Identities(out))
            }
            RawAuthenticate::ZoomApp(n) => {
                if let Some(app) = refs.zoom_apps.get(n) {
                    Some(Authenticate::ZoomApp(app.clone()))
                } else {
                    if !refs.declared.zoom_apps.contains(n) {
                        self.err(p, undefined("zoom_app", n, refs.declared.zoom_apps.iter()));
                    }
                    None
                }
            }
        }
    }

    pub(super) fn identity_ref(
        &mut self,
        n: &str,
        p: &KeyPath,
        refs: &Refs<'_>,
    ) -> Option<Arc<IdentitySettings>> {
        if let Some(i) = refs.identities.get(n) {
            Some(i.clone())
        } else {
            if !refs.declared.identities.contains(n) {
                self.err(p, undefined("identity", n, refs.declared.identities.iter()));
            }
            None
        }
    }
}

/// What is wrong with a `host` written in another syntax: a wildcard or a
/// regular expression (a host matches one name exactly).
fn host_syntax(h: &str) -> Option<String> {
    let what = if h.contains('*') {
        "wildcard hosts are not supported"
    } else if h.contains(['^', '$', '(', ')', '\\', '|', '?', '+', '{', '}']) {
        "looks like a regular expression, which is not supported"
    } else {
        return None;
    };
    Some(format!(
        "`{h}`: {what}: `host` matches one name exactly (case-insensitive, port ignored); leave `host` out to match every host, or write one route per host"
    ))
}

/// Why a header cannot be filled from a claim: the upstream would take it
/// as the gateway's word (identity and forwarding headers), as the caller's
/// credentials, or it frames the request.
fn claim_header_refused(name: &HeaderName) -> Option<&'static str> {
    let folded = name.as_str().replace('_', "-");
    if crate::net::is_reserved(name) {
        Some("the gateway's own identity and forwarding headers (X-Auth-*, X-Zoom-*, X-Webhook-*, X-Forwarded-*, Forwarded, X-Real-IP, method overrides) are only ever set by the gateway, and the upstream trusts them as such")
    } else if matches!(
        folded.as_str(),
        "authorization" | "cookie" | "proxy-authorization"
    ) {
        Some("it carries credentials, which the upstream would take as the caller's own")
    } else if crate::net::is_hop_by_hop(name)
        || matches!(
            folded.as_str(),
            "host"
                | "content-length"
                | "content-type"
                | "content-encoding"
                | "expect"
                | "x-request-id"
        )
    {
        Some("the gateway sets it, or it frames the request (hop-by-hop, Host, Content-*, X-Request-Id)")
    } else {
        None
    }
}

pub(super) fn undefined<'k>(
    section: &str,
    name: &str,
    defined: impl Iterator<Item = &'k String>,
) -> String {
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
pub(super) struct Refs<'a> {
    pub(super) identities: &'a BTreeMap<String, Arc<IdentitySettings>>,
    pub(super) zoom_apps: &'a BTreeMap<String, Arc<ZoomAppSettings>>,
    pub(super) credentials: &'a BTreeMap<String, Arc<CredentialSettings>>,
    pub(super) webhooks: &'a BTreeMap<String, Arc<WebhookSettings>>,
    pub(super) cors: &'a BTreeMap<String, Arc<CorsPolicy>>,
    pub(super) declared: Declared,
}

pub(super) struct Declared {
    pub(super) identities: BTreeSet<String>,
    pub(super) zoom_apps: BTreeSet<String>,
    pub(super) credentials: BTreeSet<String>,
    pub(super) webhooks: BTreeSet<String>,
    pub(super) cors: BTreeSet<String>,
}

/// A `'static` copy of a configuration name, made once per distinct name
/// (route names are few and bounded by what operators configure).
pub fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .expect("intern lock");
    match names.get(name) {
        Some(n) => n,
        None => {
            let n: &'static str = Box::leak(name.to_owned().into_boxed_str());
            names.insert(n);
            n
        }
    }
}
