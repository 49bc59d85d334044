//! `[server]`, `[limits]`, `[cluster]` and the named sections (`[identity.*]`,
//! `[zoom_app.*]`, `[credential.*]`, `[webhook.*]`): validation of each.

use super::*;

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

    pub(super) fn limits(&mut self, l: &RawLimits, p: &KeyPath) -> Limits {
        let max_header_bytes = l.max_header_bytes.unwrap_or(DEFAULT_MAX_HEADER_BYTES);
        if !(1024..=1024 * 1024).contains(&max_header_bytes) {
            self.err(&p.key("max_header_bytes"), "must lie in 1024..=1048576");
        }
        let max_body_bytes = l.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 || max_body_bytes > 1 << 30 {
            self.err(&p.key("max_body_bytes"), "must lie in 1..=1073741824");
        }
        let token_cache_bytes = l.token_cache_bytes.unwrap_or(DEFAULT_TOKEN_CACHE_BYTES);
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

    pub(super) fn cluster(
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
        if let Err(e) = redis_target(&settings) {
            self.err(&p.key("redis_url"), e);
            return None;
        }
        Some(settings)
    }

    pub(super) fn add_roots(&mut self, roots: &mut rustls::RootCertStore, file: &str, p: &KeyPath) {
        let path = relative_to(self.file, file);
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

    pub(super) fn credential(
        &mut self,
        name: &str,
        r: &RawCredential,
        p: &KeyPath,
    ) -> Option<CredentialSettings> {
        let kind = self.required(&r.kind, &p.key("type")).cloned()?;
        // Keys each type accepts; anything else set is an error, so a key
        // meant for another type never silently does nothing.
        let Some(allowed) = credential_keys(&kind) else {
            self.err(
                &p.key("type"),
                format!(
                    "unknown credential type \"{kind}\" ({})",
                    CREDENTIAL_TYPES
                        .iter()
                        .map(|(t, _)| *t)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return None;
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
            ("zoom_user", r.zoom_user.is_some()),
            ("application_id", r.application_id.is_some()),
            ("private_key", r.private_key.is_some()),
            ("client_ttl_secs", r.client_ttl_secs.is_some()),
            ("client_token_format", r.client_token_format.is_some()),
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
                let client_ttl = self.client_ttl(r, p);
                let client_format = match r.client_token_format.as_deref() {
                    None | Some("jwt") => OpenTokFormat::Jwt,
                    Some("t1") => OpenTokFormat::T1,
                    Some(other) => {
                        self.err(
                            &p.key("client_token_format"),
                            format!("\"{other}\" is not \"jwt\" or \"t1\""),
                        );
                        OpenTokFormat::Jwt
                    }
                };
                CredentialKind::OpenTokProject {
                    api_key: api_key?,
                    api_secret: api_secret?,
                    ttl: Duration::from_secs(ttl),
                    client_ttl,
                    client_format,
                }
            }
            "vonage_application" => {
                let application_id = s(self, &r.application_id, "application_id");
                if application_id
                    .as_deref()
                    .is_some_and(|id| uuid::Uuid::parse_str(id).is_err())
                {
                    self.err(
                        &p.key("application_id"),
                        "must be the application's UUID (from the dashboard)",
                    );
                }
                let key = sec(self, &r.private_key, "private_key").and_then(|pem| {
                    match crate::credentials::vonage::AppKey::from_pkcs8_pem(pem.expose_secret()) {
                        Ok(k) => Some(Arc::new(k)),
                        Err(e) => {
                            self.err(&p.key("private_key"), e);
                            None
                        }
                    }
                });
                // Vonage's JWT guide: 15 minutes by default, at most 24 hours.
                let ttl = r.ttl_secs.unwrap_or(900);
                if !(1..=86_400).contains(&ttl) {
                    self.err(
                        &p.key("ttl_secs"),
                        format!("{ttl} is outside the platform's window 1..=86400 seconds"),
                    );
                }
                let client_ttl = self.client_ttl(r, p);
                CredentialKind::VonageApplication {
                    application_id: application_id?,
                    private_key: key?,
                    ttl: Duration::from_secs(ttl),
                    client_ttl,
                }
            }
            "oauth_client_credentials" => {
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
            "zoom_zak" | "zoom_obf" => {
                let app = self
                    .required(&r.zoom_user, &p.key("zoom_user"))
                    .and_then(|n| {
                        let found = self.zoom_users.get(n).cloned();
                        if found.is_none() && !self.declared_zoom_users.contains(n) {
                            let msg = super::route::undefined(
                                "zoom_user",
                                n,
                                self.declared_zoom_users.iter(),
                            );
                            self.err(&p.key("zoom_user"), msg);
                        }
                        found
                    });
                // Zoom: default 7200 s, at most a year.
                let ttl = r.ttl_secs.unwrap_or(7200);
                if !(60..=31_536_000).contains(&ttl) {
                    self.err(
                        &p.key("ttl_secs"),
                        format!("{ttl} is outside Zoom's window 60..=31536000 seconds"),
                    );
                }
                let (app, ttl) = (app?, Duration::from_secs(ttl));
                if kind == "zoom_zak" {
                    CredentialKind::ZoomZak { app, ttl }
                } else {
                    CredentialKind::ZoomObf { app, ttl }
                }
            }
            other => unreachable!("credential type {other} has keys but no builder"),
        };
        Some(CredentialSettings {
            name: name.to_owned(),
            kind,
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
        let application_id = match (&r.application_id, kind) {
            (Some(id), WebhookKind::Vonage) => {
                let id = self.string(id, &p.key("application_id"));
                if id
                    .as_deref()
                    .is_some_and(|id| uuid::Uuid::parse_str(id).is_err())
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

/// Every credential `type` and the keys it accepts besides `type`.
const CREDENTIAL_TYPES: &[(&str, &[&str])] = &[
    (
        "zoom_meeting_sdk",
        &["client_id", "client_secret", "ttl_secs"],
    ),
    (
        "zoom_video_sdk",
        &["client_id", "client_secret", "ttl_secs"],
    ),
    (
        "zoom_s2s_oauth",
        &[
            "account_id",
            "client_id",
            "client_secret",
            "token_url",
            "refresh_before_secs",
        ],
    ),
    (
        "opentok_project",
        &[
            "api_key",
            "api_secret",
            "ttl_secs",
            "client_ttl_secs",
            "client_token_format",
        ],
    ),
    (
        "vonage_application",
        &[
            "application_id",
            "private_key",
            "ttl_secs",
            "client_ttl_secs",
        ],
    ),
    ("zoom_zak", &["zoom_user", "ttl_secs"]),
    ("zoom_obf", &["zoom_user", "ttl_secs"]),
    (
        "oauth_client_credentials",
        &[
            "token_url",
            "client_id",
            "client_secret",
            "scope",
            "audience",
            "client_auth",
            "refresh_before_secs",
        ],
    ),
];

fn credential_keys(kind: &str) -> Option<&'static [&'static str]> {
    CREDENTIAL_TYPES
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(_, keys)| *keys)
}

impl Builder<'_, '_> {
    /// `client_ttl_secs`: session tokens live a day by default, at most the
    /// platform's 30 days.
    fn client_ttl(&mut self, r: &RawCredential, p: &KeyPath) -> Duration {
        let ttl = r.client_ttl_secs.unwrap_or(86_400);
        if !(60..=2_592_000).contains(&ttl) {
            self.err(
                &p.key("client_ttl_secs"),
                format!("{ttl} is outside the platform's window 60..=2592000 seconds"),
            );
        }
        Duration::from_secs(ttl)
    }
}
