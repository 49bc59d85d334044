//! `[credential.NAME]`: one table of types and the keys each accepts,
//! and one builder per type.

use super::*;

impl Builder<'_, '_> {
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
                    .is_some_and(|id| !self.deferred(id) && uuid::Uuid::parse_str(id).is_err())
                {
                    self.err(
                        &p.key("application_id"),
                        "must be the application's UUID (from the dashboard)",
                    );
                }
                let key = sec(self, &r.private_key, "private_key").and_then(|pem| {
                    let key = if self.deferred(pem.expose_secret()) {
                        crate::credentials::vonage::AppKey::stand_in()
                    } else {
                        crate::credentials::vonage::AppKey::from_pkcs8_pem(pem.expose_secret())
                    };
                    match key {
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
