//! `[grants]`, `[zoom_user.NAME]` and route `zoom_user = { ... }`.

use super::*;

/// Key ids go into every sealed record: short, printable, no separators.
fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Builder<'_, '_> {
    /// A 32-byte key written base64 (standard or URL-safe, padded or not).
    fn grant_key(&mut self, v: &SecretString, p: &KeyPath) -> Option<SecretBytes> {
        let text = self.secret(v, p)?;
        if self.deferred(text.expose_secret()) {
            return Some(SecretBytes(vec![0; 32]));
        }
        let text = text.expose_secret().trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .ok();
        match bytes {
            Some(b) if b.len() == 32 => Some(SecretBytes(b)),
            Some(b) => {
                self.err(
                    p,
                    format!(
                        "must be 32 bytes (AES-256) written in base64; this is {} bytes (make one with: openssl rand -base64 32)",
                        b.len()
                    ),
                );
                None
            }
            None => {
                self.err(p, "is not base64 (make one with: openssl rand -base64 32)");
                None
            }
        }
    }

    pub(super) fn grants(
        &mut self,
        r: &RawGrants,
        p: &KeyPath,
        clustered: bool,
    ) -> Option<GrantSettings> {
        let key_id = self.required(&r.key_id, &p.key("key_id")).cloned();
        if key_id.as_deref().is_some_and(|id| !valid_key_id(id)) {
            self.err(&p.key("key_id"), "must be 1 to 32 of A-Z a-z 0-9 . _ -");
        }
        let key = self
            .required(&r.key, &p.key("key"))
            .cloned()
            .and_then(|k| self.grant_key(&k, &p.key("key")));
        let mut previous = Vec::new();
        for (id, v) in r.previous_keys.iter().flatten() {
            let kp = p.key("previous_keys").key(id);
            if !valid_key_id(id) {
                self.err(&kp, "a key id must be 1 to 32 of A-Z a-z 0-9 . _ -");
            } else if Some(id) == key_id.as_ref() {
                self.err(&kp, "is the current `key_id`; an old key needs its own id");
            }
            if let Some(k) = self.grant_key(v, &kp) {
                previous.push((id.clone(), k));
            }
        }
        let path = match (&r.path, clustered) {
            (Some(_), true) => None,
            (Some(path), false) => Some(relative_to(self.file, path)),
            (None, true) => None,
            (None, false) => {
                self.err(
                    &p.key("path"),
                    "is required without [cluster]: the file that keeps users' grants across restarts (e.g. \"/var/lib/meetgate/grants.redb\")",
                );
                return None;
            }
        };
        if r.path.is_some() && clustered {
            self.warn(
                "unused_key",
                &p.key("path"),
                "with [cluster] grants are kept in Redis; `path` is not used",
            );
        }
        Some(GrantSettings {
            key_id: key_id?,
            key: key?,
            previous_keys: previous,
            path,
        })
    }

    pub(super) fn zoom_user(
        &mut self,
        name: &str,
        r: &RawZoomUser,
        p: &KeyPath,
    ) -> Option<ZoomUserAppSettings> {
        let client_id = self
            .required(&r.client_id, &p.key("client_id"))
            .cloned()
            .and_then(|v| self.string(&v, &p.key("client_id")));
        let client_secret = self
            .required(&r.client_secret, &p.key("client_secret"))
            .cloned()
            .and_then(|v| self.secret(&v, &p.key("client_secret")));
        let redirect_uri = self
            .required(&r.redirect_uri, &p.key("redirect_uri"))
            .cloned()
            .filter(|u| self.outbound_url(u, &p.key("redirect_uri")).is_some());
        let base = |b: &mut Self, v: &Option<String>, default: &str, key: &str| {
            let v = v.clone().unwrap_or_else(|| default.to_owned());
            match crate::net::check_base_url(&v) {
                Ok(v) => Some(v),
                Err(e) => {
                    b.err(&p.key(key), e);
                    None
                }
            }
        };
        let oauth_base = base(self, &r.oauth_url, "https://zoom.us", "oauth_url");
        let api_base = base(self, &r.api_url, "https://api.zoom.us", "api_url");
        let return_to = r.return_to.clone().unwrap_or_default();
        if return_to.is_empty() {
            self.err(
                &p.key("return_to"),
                "list the exact URLs the browser may be sent back to after connecting (never an open redirect)",
            );
        }
        for (i, u) in return_to.iter().enumerate() {
            let _ = self.outbound_url(u, &p.key("return_to").index(i));
        }
        Some(ZoomUserAppSettings {
            name: name.to_owned(),
            client_id: client_id?,
            client_secret: client_secret?,
            redirect_uri: redirect_uri?,
            return_to,
            oauth_base: oauth_base?,
            api_base: api_base?,
        })
    }

    /// Route `zoom_user = { app, action }`.
    pub(super) fn zoom_user_route(
        &mut self,
        r: &RawZoomUserRoute,
        p: &KeyPath,
        has_identity: bool,
        public: bool,
    ) -> Option<ZoomUserRoute> {
        let app = self.required(&r.app, &p.key("app")).and_then(|n| {
            let found = self.zoom_users.get(n).cloned();
            if found.is_none() && !self.declared_zoom_users.contains(n) {
                let msg = route::undefined("zoom_user", n, self.declared_zoom_users.iter());
                self.err(&p.key("app"), msg);
            }
            found
        });
        let op = self.required(&r.action, &p.key("action")).and_then(|a| {
            let op = ZoomUserOp::ALL
                .iter()
                .find(|(n, _)| n == a)
                .map(|(_, op)| *op);
            if op.is_none() {
                self.err(
                    &p.key("action"),
                    format!("\"{a}\" is not connect, callback, status or disconnect"),
                );
            }
            op
        })?;
        match op {
            ZoomUserOp::Callback if !public => self.err(
                p,
                "the callback is where Zoom redirects the browser: it takes `authenticate = \"none\"` (the sealed state proves who started it)",
            ),
            ZoomUserOp::Connect | ZoomUserOp::Status | ZoomUserOp::Disconnect
                if !has_identity =>
            {
                self.err(
                    p,
                    "connect, status and disconnect need `authenticate` with a bearer-token identity: the grant belongs to the caller",
                )
            }
            _ => {}
        }
        Some(ZoomUserRoute { app: app?, op })
    }
}
