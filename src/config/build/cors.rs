//! `[cors.NAME]` policies and a route's `cors = "NAME"`.

use super::route::undefined;
use super::*;
use crate::config::cors::{parse_rule, CorsPolicy, OriginRule, RouteCors};
use crate::config::ANY_METHOD;

/// The longest `max_age_secs`: a day (browsers cap it lower: Chromium at
/// two hours, Firefox at a day).
const MAX_CORS_MAX_AGE_SECS: u64 = 86_400;

impl Builder<'_, '_> {
    pub(super) fn cors(&mut self, name: &str, r: &RawCors, p: &KeyPath) -> Option<CorsPolicy> {
        let op = p.key("origins");
        let before = self.errors.len();
        let mut origins = Vec::new();
        match self.required(&r.origins, &op).cloned() {
            Some(list) if list.is_empty() => {
                self.err(&op, "list at least one origin (or \"*\" for every origin)");
            }
            Some(list) => {
                for (i, o) in list.iter().enumerate() {
                    let ip = op.index(i);
                    let Some(o) = self.string(o, &ip).filter(|o| !self.deferred(o)) else {
                        continue;
                    };
                    match parse_rule(&o) {
                        Ok(rule) if !origins.contains(&rule) => origins.push(rule),
                        Ok(_) => {}
                        Err(e) => self.err(&ip, e),
                    }
                }
            }
            None => {}
        }
        let any = origins.contains(&OriginRule::Any);
        if any && origins.len() > 1 {
            self.err(&op, "\"*\" allows every origin: write it alone");
        }
        let credentials = r.credentials.unwrap_or(false);
        if any && credentials {
            self.err(
                &p.key("credentials"),
                "`credentials = true` with origin \"*\" would let every web site read the answers to its visitors' credentialed requests: list the origins instead",
            );
        }
        let methods = r.methods.as_ref().map(|ms| {
            let mp = p.key("methods");
            if ms.is_empty() {
                self.err(
                    &mp,
                    "must list at least one method (leave it out for the route's methods)",
                );
            }
            let mut out: Vec<Method> = Vec::new();
            for m in ms {
                match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                    Ok(m) if crate::net::never_forwarded(&m) => {
                        self.err(&mp, format!("`{m}` is never forwarded"));
                    }
                    Ok(m) if !out.contains(&m) => out.push(m),
                    Ok(_) => {}
                    Err(_) => self.err(&mp, format!("`{m}` is not an HTTP method")),
                }
            }
            out
        });
        let headers = self.header_names(r.headers.as_deref(), &p.key("headers"));
        let expose_headers =
            self.header_names(r.expose_headers.as_deref(), &p.key("expose_headers"));
        if r.max_age_secs.is_some_and(|s| s > MAX_CORS_MAX_AGE_SECS) {
            self.err(
                &p.key("max_age_secs"),
                format!("must lie in 0..={MAX_CORS_MAX_AGE_SECS} (browsers cap it lower still)"),
            );
        }
        (self.errors.len() == before).then(|| CorsPolicy {
            name: name.to_owned(),
            origins,
            methods,
            headers,
            credentials,
            max_age_secs: r.max_age_secs,
            expose_headers,
        })
    }

    /// A list of header names (lower-cased); `*` is refused, so what is
    /// allowed or exposed is always written out.
    fn header_names(&mut self, names: Option<&[String]>, p: &KeyPath) -> Vec<HeaderName> {
        let mut out: Vec<HeaderName> = Vec::new();
        for h in names.unwrap_or_default() {
            if h == "*" {
                self.err(
                    p,
                    "\"*\" is not accepted: list the header names (a wildcard never covers Authorization, and means a literal `*` with credentials)",
                );
                continue;
            }
            match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) if !out.contains(&n) => out.push(n),
                Ok(_) => {}
                Err(_) => self.err(p, format!("`{h}` is not a header name")),
            }
        }
        out
    }

    /// Route `cors = "NAME"`: the policy, and the methods a preflight may
    /// allow on this route (the policy's that the route accepts).
    pub(super) fn route_cors(
        &mut self,
        name: &str,
        p: &KeyPath,
        refs: &Refs<'_>,
        route_methods: Option<&[Method]>,
        authenticate: Option<&Authenticate>,
    ) -> Option<RouteCors> {
        let Some(policy) = refs.cors.get(name) else {
            if !refs.declared.cors.contains(name) {
                self.err(p, undefined("cors", name, refs.declared.cors.iter()));
            }
            return None;
        };
        let accepted = route_methods.unwrap_or(&ANY_METHOD);
        let methods: Vec<Method> = match &policy.methods {
            Some(ms) => ms
                .iter()
                .filter(|m| accepted.contains(m))
                .cloned()
                .collect(),
            None => accepted.to_vec(),
        };
        if methods.is_empty() {
            let list = |ms: &[Method]| ms.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
            self.err(
                p,
                format!(
                    "none of cors \"{name}\"'s methods ({}) is one this route accepts ({})",
                    list(policy.methods.as_deref().unwrap_or_default()),
                    list(accepted)
                ),
            );
            return None;
        }
        let needed = match authenticate {
            Some(Authenticate::Identities(_)) => Some(("authorization", "bearer token")),
            Some(Authenticate::ZoomApp(_)) => Some(("x-zoom-app-context", "Zoom Apps context")),
            _ => None,
        };
        if let Some((header, what)) = needed {
            if !policy.headers.iter().any(|h| h.as_str() == header) {
                self.warn(
                    "cors_header_missing",
                    p,
                    format!("cors \"{name}\" does not allow the `{header}` request header: a browser page on another origin cannot send this route's {what} (add it to `headers`)"),
                );
            }
        }
        Some(RouteCors {
            policy: policy.clone(),
            methods,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n";
    const ROUTE: &str = "[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"i\"\ncors = \"p\"\n";

    fn try_build(policy: &str) -> Result<Snapshot, Vec<ConfigError>> {
        let text = format!("{HEAD}[cors.p]\n{policy}\n{ROUTE}");
        build(
            &text,
            Path::new("/nonexistent/meetgate.toml"),
            BuildMode::Check,
            &|_: &str| None,
        )
    }

    #[test]
    fn policies_that_would_surprise_are_refused_naming_the_key() {
        for (policy, key, says) in [
            ("origins = []", "cors.p.origins", "at least one origin"),
            (
                "headers = [\"authorization\"]",
                "cors.p.origins",
                "is required",
            ),
            (
                "origins = [\"*\", \"https://a.example\"]",
                "cors.p.origins",
                "write it alone",
            ),
            (
                "origins = [\"*\"]\ncredentials = true",
                "cors.p.credentials",
                "origin \"*\"",
            ),
            (
                "origins = [\"https://a.example\"]\nheaders = [\"*\"]",
                "cors.p.headers",
                "list the header names",
            ),
            (
                "origins = [\"https://a.example\"]\nexpose_headers = [\"bad header\"]",
                "cors.p.expose_headers",
                "not a header name",
            ),
            (
                "origins = [\"https://a.example\"]\nmethods = [\"TRACE\"]",
                "cors.p.methods",
                "never forwarded",
            ),
            (
                "origins = [\"https://a.example\"]\nmethods = []",
                "cors.p.methods",
                "at least one method",
            ),
            (
                "origins = [\"https://a.example\"]\nmax_age_secs = 86401",
                "cors.p.max_age_secs",
                "0..=86400",
            ),
            (
                "origins = [\"${UNSET}\"]",
                "cors.p.origins[0]",
                "UNSET is not set",
            ),
        ] {
            let errors = match try_build(policy) {
                Ok(_) => panic!("accepted: {policy}"),
                Err(e) => e,
            };
            assert!(
                errors
                    .iter()
                    .any(|e| e.key == key && e.message.contains(says) && e.line.is_some()),
                "{policy}: {errors:#?}"
            );
        }
    }

    #[test]
    fn a_bearer_route_whose_policy_cannot_carry_the_token_is_warned_about() {
        let snap = try_build("origins = [\"https://a.example\"]").unwrap();
        assert!(
            snap.warnings
                .iter()
                .any(|w| w.key == "route[0].cors" && w.message.contains("`authorization`")),
            "{:?}",
            snap.warnings
        );
        let snap = try_build("origins = [\"https://a.example\"]\nheaders = [\"Authorization\"]\nmethods = [\"get\", \"PATCH\"]").unwrap();
        assert!(snap.warnings.iter().all(|w| w.key != "route[0].cors"));
        let cors = snap.routes[0].cors.as_ref().unwrap();
        assert_eq!(cors.methods, [Method::GET, Method::PATCH]);
        assert_eq!(
            cors.policy.headers,
            [HeaderName::from_static("authorization")]
        );
    }
}
