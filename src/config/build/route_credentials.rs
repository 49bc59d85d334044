//! What a route does with credentials: `inject` entries and `respond`,
//! with the rules that tie their keys to the credential's type.

use super::route::{undefined, Refs};
use super::*;

impl Builder<'_, '_> {
    pub(super) fn credential_ref<'r>(
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

    pub(super) fn inject(
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
                Ok(name) if crate::net::is_hop_by_hop(&name) || name == http::header::HOST => {
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
        let for_meeting = |k: &str| matches!(k, "zoom_meeting_sdk" | "zoom_obf");
        if r.meeting_query.is_some() && kind.is_some_and(|k| !for_meeting(k)) {
            self.err(
                &p.key("meeting_query"),
                "only applies to a zoom_meeting_sdk or zoom_obf credential",
            );
        }
        if let Some(k) = kind.filter(|k| for_meeting(k)) {
            if r.meeting_param.is_none() && r.meeting_query.is_none() {
                self.err(
                    p,
                    format!("a {k} injection needs `meeting_param` or `meeting_query`"),
                );
            }
        }
        if let Some(k) = kind.filter(|k| matches!(*k, "zoom_zak" | "zoom_obf")) {
            if !has_identity {
                self.err(
                    p,
                    format!("a {k} credential is fetched for the caller's own Zoom grant: the route needs `authenticate` with a bearer-token identity"),
                );
            }
        }
        if kind == Some("zoom_video_sdk") && r.session_param.is_none() {
            self.err(p, "a zoom_video_sdk injection needs `session_param`");
        }
        self.host_roles_rules(p, kind, r.host_roles.as_ref(), has_identity);
        Some(Inject {
            credential: cred?.clone(),
            header: header?,
            meeting_param: r.meeting_param.clone(),
            meeting_query: r.meeting_query.clone(),
            session_param: r.session_param.clone(),
            host_roles: r.host_roles.clone().unwrap_or_default(),
        })
    }

    pub(super) fn respond(
        &mut self,
        r: &RawRespond,
        p: &KeyPath,
        refs: &Refs<'_>,
        captures: &[&str],
        has_identity: bool,
    ) -> Option<Respond> {
        let cred = self.credential_ref(&r.credential, &p.key("credential"), refs)?;
        let kind = cred.kind.type_name();
        let session_tokens = matches!(kind, "vonage_application" | "opentok_project");
        if !matches!(kind, "zoom_meeting_sdk" | "zoom_video_sdk") && !session_tokens {
            self.err(
                &p.key("credential"),
                format!("a route can respond with a zoom_meeting_sdk, zoom_video_sdk, vonage_application or opentok_project credential, not {kind}"),
            );
        }
        for (key, set) in [
            ("moderator_roles", r.moderator_roles.is_some()),
            ("publisher_roles", r.publisher_roles.is_some()),
            ("connection_data", r.connection_data.is_some()),
        ] {
            if set && !session_tokens {
                self.err(
                    &p.key(key),
                    "only applies to vonage_application and opentok_project session tokens",
                );
            }
        }
        if session_tokens && r.host_roles.is_some() {
            self.err(
                &p.key("host_roles"),
                "session tokens take `moderator_roles` and `publisher_roles` (everyone else subscribes)",
            );
        }
        if !has_identity {
            self.err(
                p,
                "a `respond` route needs `authenticate` with a bearer-token identity",
            );
        }
        // Vonage/OpenTok sessions may come from a capture or the body.
        let session_kind = if session_tokens { None } else { Some(kind) };
        self.param_rules(p, session_kind, None, r.session_param.as_deref(), captures);
        if kind == "zoom_video_sdk" && r.session_param.is_none() {
            self.err(p, "a zoom_video_sdk respond needs `session_param`");
        }
        self.host_roles_rules(p, Some(kind), r.host_roles.as_ref(), has_identity);
        let user_token = |b: &mut Self, name: &Option<String>, key: &str, want: &str| {
            name.as_ref()?;
            let c = b.credential_ref(name, &p.key(key), refs)?.clone();
            if c.kind.type_name() != want {
                b.err(
                    &p.key(key),
                    format!(
                        "names a {} credential; `{key}` takes a {want} one",
                        c.kind.type_name()
                    ),
                );
            }
            if kind != "zoom_meeting_sdk" {
                b.err(
                    &p.key(key),
                    "only applies to a zoom_meeting_sdk answer (the Meeting SDK joins with it)",
                );
            }
            Some(c)
        };
        let zak = user_token(self, &r.zak, "zak", "zoom_zak");
        let obf = user_token(self, &r.obf, "obf", "zoom_obf");
        Some(Respond {
            zak,
            obf,
            moderator_roles: r.moderator_roles.clone().unwrap_or_default(),
            publisher_roles: r.publisher_roles.clone().unwrap_or_default(),
            connection_data: r.connection_data.clone().unwrap_or_default(),
            credential: cred.clone(),
            host_roles: r.host_roles.clone().unwrap_or_default(),
            session_param: r.session_param.clone(),
        })
    }

    pub(super) fn param_rules(
        &mut self,
        p: &KeyPath,
        kind: Option<&str>,
        meeting: Option<&str>,
        session: Option<&str>,
        captures: &[&str],
    ) {
        for (key, value, for_kinds) in [
            (
                "meeting_param",
                meeting,
                &["zoom_meeting_sdk", "zoom_obf"][..],
            ),
            ("session_param", session, &["zoom_video_sdk"][..]),
        ] {
            let Some(v) = value else { continue };
            if !captures.contains(&v) {
                self.err(
                    &p.key(key),
                    format!("\"{v}\" is not a `{{{v}}}` capture in the route's `path`"),
                );
            }
            if kind.is_some_and(|k| !for_kinds.contains(&k)) {
                self.err(
                    &p.key(key),
                    format!("only applies to a {} credential", for_kinds.join(" or ")),
                );
            }
        }
    }

    pub(super) fn host_roles_rules(
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
}
