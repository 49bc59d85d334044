//! `[server]`, `[limits]`, `[cluster]` and the named sections (`[identity.*]`,
//! `[zoom_app.*]`, `[credential.*]`, `[webhook.*]`): validation of each.

use super::*;
use crate::client_ip::{Cidr, TrustedProxies};

/// A served certificate closer to its `notAfter` than this (14 days) is
/// warned about by `check` and at load.
const CERT_EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

impl Builder<'_, '_> {
    pub(super) fn server(&mut self, s: Option<&RawServer>, p: &KeyPath) -> Option<ServerSettings> {
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
        self.listener_conflicts(
            [
                ("listen", listen),
                ("plain_listen", plain_listen),
                ("admin_listen", admin_listen),
            ],
            p,
        );
        let cert = self.required(&s.tls_cert, &p.key("tls_cert")).cloned();
        let key = self.required(&s.tls_key, &p.key("tls_key")).cloned();
        let shutdown_grace = self.millis(
            s.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE,
            &p.key("shutdown_grace_ms"),
        );
        let drain = Duration::from_millis(s.drain_ms.unwrap_or(0));
        if drain > MAX_DRAIN {
            self.err(
                &p.key("drain_ms"),
                format!("must lie in 0..={}", MAX_DRAIN.as_millis()),
            );
        }
        let readiness_grace = self.millis_at_most(
            s.readiness_grace_ms,
            DEFAULT_READINESS_GRACE,
            MAX_READINESS_GRACE_MS,
            &p.key("readiness_grace_ms"),
        );
        let trusted_proxies = self.trusted_proxies(s.trusted_proxies.as_deref(), p);
        let (proxy_protocol_tls, proxy_protocol_plain) = self.proxy_protocol(
            s.proxy_protocol.as_deref(),
            s.plain_listen.is_some(),
            &trusted_proxies,
            p,
        );
        let (cert, key) = (cert?, key?);
        let (cert_path, key_path) = (relative_to(self.file, &cert), relative_to(self.file, &key));
        self.note_file(&cert_path);
        self.note_file(&key_path);
        let mut tls_not_after = None;
        let tls = if self.mode == BuildMode::CheckWithoutSecrets {
            None
        } else if self.mode == BuildMode::Check && (!cert_path.exists() || !key_path.exists()) {
            self.warn(
                "tls_files_missing",
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
                Ok((c, not_after)) => {
                    let left = not_after - crate::now_secs() as i64;
                    if left < CERT_EXPIRY_WARNING_SECS {
                        self.warn(
                            "tls_cert_expiring",
                            &p.key("tls_cert"),
                            if left < 0 {
                                format!(
                                    "the certificate has expired ({} hours ago)",
                                    -left / 3_600
                                )
                            } else {
                                format!(
                                    "the certificate expires in {} days: renew it (a renewed file is picked up without a restart)",
                                    left / 86_400
                                )
                            },
                        );
                    }
                    tls_not_after = Some(not_after);
                    Some(Arc::new(c))
                }
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
            tls_not_after,
            tls_cert: cert_path,
            tls_key: key_path,
            shutdown_grace,
            drain,
            readiness_grace,
            trusted_proxies,
            proxy_protocol_tls,
            proxy_protocol_plain,
        })
    }

    /// Two listeners on one socket: the admin endpoints (`/metrics`,
    /// `/readyz`) would be served where the public connects, or the second
    /// bind fails at the next start (a reload does not rebind, so only
    /// `check` and the reload's refusal catch it in time). Port 0 (any free
    /// port) never collides.
    fn listener_conflicts(&mut self, addrs: [(&str, Option<SocketAddr>); 3], p: &KeyPath) {
        let overlap = |a: SocketAddr, b: SocketAddr| {
            let dual_stack = |x: SocketAddr| x.is_ipv6() && x.ip().is_unspecified();
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip()
                    || dual_stack(a)
                    || dual_stack(b)
                    || (a.is_ipv4() == b.is_ipv4()
                        && (a.ip().is_unspecified() || b.ip().is_unspecified())))
        };
        for (i, (later, b)) in addrs.iter().enumerate() {
            let Some(b) = b else { continue };
            let clash = addrs[..i]
                .iter()
                .find_map(|(k, a)| a.filter(|a| overlap(*a, *b)).map(|a| (*k, a)));
            if let Some((earlier, a)) = clash {
                let why = if *later == "admin_listen" {
                    "the admin endpoints (/healthz, /readyz, /metrics) must never be reachable on a public listener"
                } else {
                    "two listeners cannot share a socket"
                };
                self.err_as(
                    "listener_conflict",
                    &p.key(later),
                    format!("{b} overlaps `{earlier}` ({a}): {why}; give it its own port"),
                );
            }
        }
    }

    /// `trusted_proxies`: each entry a CIDR block or one address.
    fn trusted_proxies(&mut self, v: Option<&[String]>, p: &KeyPath) -> TrustedProxies {
        let mut blocks = Vec::new();
        for (i, entry) in v.unwrap_or_default().iter().enumerate() {
            let ep = p.key("trusted_proxies").index(i);
            let Some(entry) = self.string(entry, &ep).filter(|e| !self.deferred(e)) else {
                continue;
            };
            match Cidr::parse(&entry) {
                Ok(c) if c.prefix() == 0 => {
                    self.warn(
                        "trusts_every_address",
                        &ep,
                        format!("`{c}` trusts every address: any client can choose the address the audit and the upstream see"),
                    );
                    blocks.push(c);
                }
                Ok(c) => blocks.push(c),
                Err(e) => self.err(&ep, e),
            }
        }
        TrustedProxies::new(blocks)
    }

    /// `proxy_protocol`: the listeners (by key) whose connections start with
    /// a PROXY protocol header. Returns (TLS listener, plain listener).
    fn proxy_protocol(
        &mut self,
        v: Option<&[String]>,
        has_plain: bool,
        trusted: &TrustedProxies,
        p: &KeyPath,
    ) -> (bool, bool) {
        let (mut tls, mut plain) = (false, false);
        for (i, name) in v.unwrap_or_default().iter().enumerate() {
            let ep = p.key("proxy_protocol").index(i);
            match name.as_str() {
                "listen" => tls = true,
                "plain_listen" if has_plain => plain = true,
                "plain_listen" => self.err(&ep, "`plain_listen` is not set"),
                other => self.err(
                    &ep,
                    format!("`{other}` is not a listener key (listen, plain_listen)"),
                ),
            }
        }
        if (tls || plain) && trusted.is_empty() {
            self.err(
                &p.key("proxy_protocol"),
                "needs `trusted_proxies`: a PROXY protocol header is accepted only from a trusted proxy, so every connection would be refused",
            );
        }
        (tls, plain)
    }

    pub(super) fn limits(&mut self, l: &RawLimits, p: &KeyPath) -> Limits {
        let d = Limits::DEFAULT;
        let max_header_bytes = l.max_header_bytes.unwrap_or(d.max_header_bytes as u64);
        if !(1024..=1024 * 1024).contains(&max_header_bytes) {
            self.err(&p.key("max_header_bytes"), "must lie in 1024..=1048576");
        }
        let max_body_bytes = l.max_body_bytes.unwrap_or(d.max_body_bytes as u64);
        if max_body_bytes == 0 || max_body_bytes > 1 << 30 {
            self.err(&p.key("max_body_bytes"), "must lie in 1..=1073741824");
        }
        let token_cache_bytes = l.token_cache_bytes.unwrap_or(d.token_cache_bytes);
        if !((1 << 20)..=(1 << 34)).contains(&token_cache_bytes) {
            self.err(
                &p.key("token_cache_bytes"),
                "must lie in 1048576..=17179869184 (1 MiB to 16 GiB)",
            );
        }
        let mut progress = |v: Option<u64>, default: Duration, key: &str| {
            self.millis_at_most(v, default, MAX_PROGRESS_TIMEOUT_MS, &p.key(key))
        };
        Limits {
            max_header_bytes: max_header_bytes as usize,
            max_body_bytes: max_body_bytes as usize,
            header_read_timeout: progress(
                l.header_read_timeout_ms,
                d.header_read_timeout,
                "header_read_timeout_ms",
            ),
            upstream_timeout: progress(
                l.upstream_timeout_ms,
                d.upstream_timeout,
                "upstream_timeout_ms",
            ),
            token_cache_bytes,
            send_timeout: progress(l.send_timeout_ms, d.send_timeout, "send_timeout_ms"),
            upstream_body_timeout: progress(
                l.upstream_body_timeout_ms,
                d.upstream_body_timeout,
                "upstream_body_timeout_ms",
            ),
            http2_idle_timeout: progress(
                l.http2_idle_timeout_ms,
                d.http2_idle_timeout,
                "http2_idle_timeout_ms",
            ),
        }
    }

    pub(super) fn cluster(
        &mut self,
        c: &RawCluster,
        p: &KeyPath,
        roots: &rustls::RootCertStore,
    ) -> Option<ClusterSettings> {
        let url = self.required(&c.redis_url, &p.key("redis_url"))?;
        let url = self.secret(url, &p.key("redis_url"))?;
        let unread = self.deferred(url.expose_secret());
        let scheme_ok = unread || {
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
            timeout: self.millis(c.timeout_ms, DEFAULT_CLUSTER_TIMEOUT, &p.key("timeout_ms")),
            roots: roots.clone(),
        };
        if let (false, Err(e)) = (unread, redis_target(&settings)) {
            self.err(&p.key("redis_url"), e);
            return None;
        }
        Some(settings)
    }

    pub(super) fn add_roots(&mut self, roots: &mut rustls::RootCertStore, file: &str, p: &KeyPath) {
        let path = relative_to(self.file, file);
        self.note_file(&path);
        if let Err(e) = tls::add_pem_roots(roots, &path) {
            self.err(p, e.to_string());
        }
    }

    pub(super) fn identity(
        &mut self,
        name: &str,
        r: &RawIdentity,
        p: &KeyPath,
    ) -> Option<IdentitySettings> {
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

    pub(super) fn zoom_app(
        &mut self,
        name: &str,
        r: &RawZoomApp,
        p: &KeyPath,
    ) -> Option<ZoomAppSettings> {
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

    pub(super) fn webhook(
        &mut self,
        name: &str,
        r: &RawWebhook,
        p: &KeyPath,
    ) -> Option<WebhookSettings> {
        let kind = match self.required(&r.kind, &p.key("type")).map(String::as_str) {
            Some("zoom") => WebhookKind::Zoom,
            Some("standard") => WebhookKind::Standard,
            Some("github") => WebhookKind::Github,
            Some("vonage") => WebhookKind::Vonage,
            Some(other) => {
                let other = other.to_owned();
                self.err(
                    &p.key("type"),
                    format!("unknown webhook type \"{other}\" (zoom, standard, github, vonage)"),
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
                let bytes = if self.deferred(s.expose_secret()) {
                    s.expose_secret().as_bytes().to_vec()
                } else if kind == WebhookKind::Standard {
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
        let application_id = match (&r.application_id, kind) {
            (Some(id), WebhookKind::Vonage) => {
                let id = self.string(id, &p.key("application_id"));
                if id
                    .as_deref()
                    .is_some_and(|id| !self.deferred(id) && uuid::Uuid::parse_str(id).is_err())
                {
                    self.err(
                        &p.key("application_id"),
                        "must be the application's UUID (from the dashboard)",
                    );
                }
                id
            }
            (Some(_), _) => {
                self.err(&p.key("application_id"), "only applies to type \"vonage\"");
                None
            }
            (None, WebhookKind::Vonage) => {
                self.warn(
                    "any_application",
                    &p.key("application_id"),
                    "not set: callbacks signed for any application with these secrets are accepted",
                );
                None
            }
            (None, _) => None,
        };
        Some(WebhookSettings {
            application_id,
            name: name.to_owned(),
            kind,
            secrets,
            tolerance: self.secs(r.tolerance_secs, 300, 1, &p.key("tolerance_secs")),
            dedup: self.secs(r.dedup_secs, 86_400, 1, &p.key("dedup_secs")),
        })
    }
}
