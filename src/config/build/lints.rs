//! Checks of built routes that no single key shows: a route that can never
//! match because an earlier one takes every request it would (an error
//! when the earlier route lets those requests through with less than this
//! one requires), role rules no caller could meet, and `claims_equal`
//! values of a type the claim is not issued with.

use serde_json::Value;

use super::*;

impl Builder<'_, '_> {
    /// `routes`: the routes that built, with their index in the file.
    pub(super) fn route_lints(&mut self, routes: &[(usize, Arc<Route>)]) {
        for (n, (i, route)) in routes.iter().enumerate() {
            let p = KeyPath::root().key("route").index(*i);
            let first = routes[..n].iter().find(|(_, e)| takes_all_of(e, route));
            if let Some((j, earlier)) = first {
                self.shadowed(route, &p, &[(*j, earlier)]);
            } else if let Some(together) = taken_together(&routes[..n], route) {
                self.shadowed(route, &p, &together);
            }
            self.roles_need_a_claim(route, &p);
            self.claims_equal_types(route, &p);
        }
    }

    /// `route` can never match: the `earlier` routes (one, or several
    /// that together take every method it does) come first.
    fn shadowed(&mut self, route: &Route, p: &KeyPath, earlier: &[(usize, &Arc<Route>)]) {
        let named: Vec<String> = earlier
            .iter()
            .map(|(at, e)| {
                match self
                    .map
                    .line(&KeyPath::root().key("route").index(*at).key("path"))
                {
                    Some(l) => format!("\"{}\" (line {l})", e.name),
                    None => format!("\"{}\"", e.name),
                }
            })
            .collect();
        let taken = match named.as_slice() {
            [one] => format!(
                "can never match: route {one} comes first and takes every request this one would (first match wins)"
            ),
            several => format!(
                "can never match: routes {} come first and together take every request this one would, each for its methods (first match wins)",
                several.join(" and ")
            ),
        };
        let is_weaker = |earlier: &Route| {
            !(gate_within(&gate(earlier), &gate(route))
                && rules_within(earlier.authorize.as_ref(), route.authorize.as_ref()))
        };
        let weaker = protected(route)
            .then(|| earlier.iter().find(|(_, e)| is_weaker(e)))
            .flatten();
        if let Some((_, earlier)) = weaker {
            self.err_as(
                "route_shadowed_by_weaker",
                &p.key("path"),
                format!(
                    "{taken}, and lets them through with {} where this route requires {}: move this route above \"{}\", or narrow \"{}\"",
                    describe(earlier),
                    describe(route),
                    earlier.name,
                    earlier.name
                ),
            );
        } else {
            self.warn(
                "route_shadowed",
                &p.key("path"),
                format!(
                    "{taken}: move it above {}, or remove it",
                    named.join(" and ")
                ),
            );
        }
    }

    /// Role rules on a route whose identity has no `roles_claim`: no caller
    /// has a role there, so the rule could never be met (as `tenant_param`
    /// without `tenant_claim`).
    fn roles_need_a_claim(&mut self, route: &Route, p: &KeyPath) {
        let Authenticate::Identities(ids) = &route.authenticate else {
            return;
        };
        let refused =
            "no caller would have one of these roles, so every request would be refused (403)";
        let never = "no caller would ever be granted this role";
        let mut uses: Vec<(KeyPath, &str)> = Vec::new();
        if let Some(a) = &route.authorize {
            let ap = p.key("authorize");
            if !a.roles_any.is_empty() {
                uses.push((ap.key("roles_any"), refused));
            }
            if !a.roles_all.is_empty() {
                uses.push((ap.key("roles_all"), refused));
            }
        }
        match &route.action {
            Action::Forward { inject, .. } => {
                for (j, inj) in inject.iter().enumerate() {
                    if !inj.host_roles.is_empty() {
                        uses.push((p.key("inject").index(j).key("host_roles"), never));
                    }
                }
            }
            Action::Respond(r) => {
                let rp = p.key("respond");
                for (key, roles) in [
                    ("host_roles", &r.host_roles),
                    ("moderator_roles", &r.moderator_roles),
                    ("publisher_roles", &r.publisher_roles),
                ] {
                    if !roles.is_empty() {
                        uses.push((rp.key(key), never));
                    }
                }
            }
            Action::Webhook { .. } | Action::ZoomUser(_) => {}
        }
        for id in ids.iter().filter(|i| i.roles_claim.is_none()) {
            for (key, effect) in &uses {
                self.err_as(
                    "roles_without_roles_claim",
                    key,
                    format!(
                        "identity \"{}\" has no `roles_claim` to read roles from: {effect}; set `roles_claim` in [identity.{}] (a dotted path such as \"roles\", \"groups\" or \"realm_access.roles\")",
                        id.name, id.name
                    ),
                );
            }
        }
    }

    fn claims_equal_types(&mut self, route: &Route, p: &KeyPath) {
        let Some(a) = &route.authorize else { return };
        for (claim, want) in &a.claims_equal {
            let key = p.key("authorize").key("claims_equal").key(claim);
            match claims_equal_problem(claim, want) {
                Some((true, msg)) => self.err_as("claims_equal_never_matches", &key, msg),
                Some((false, msg)) => self.warn("claims_equal_type", &key, msg),
                None => {}
            }
        }
    }
}

/// Whether `earlier` matches every request `later` would: the same host or
/// any host, a path pattern that covers `later`'s, and every method it
/// takes.
fn takes_all_of(earlier: &Route, later: &Route) -> bool {
    let methods = match (&earlier.methods, &later.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(e), Some(l)) => l.iter().all(|m| e.contains(m)),
    };
    methods && covers_path(earlier, later)
}

/// Whether `earlier` matches `later`'s host and every path it would.
fn covers_path(earlier: &Route, later: &Route) -> bool {
    (earlier.host.is_none() || earlier.host == later.host) && earlier.pattern.covers(&later.pattern)
}

/// Earlier routes that, each for some of `later`'s methods (listed), take
/// all of them between them: `later` never matches. `None` when none
/// alone does and together they leave a method (or, for a route taking
/// every method, any method outside the lists) to `later`.
fn taken_together<'a>(
    earlier: &'a [(usize, Arc<Route>)],
    later: &Route,
) -> Option<Vec<(usize, &'a Arc<Route>)>> {
    let wanted = later.methods.as_ref()?;
    let mut left: Vec<&Method> = wanted.iter().collect();
    let mut together = Vec::new();
    for (at, e) in earlier.iter().filter(|(_, e)| covers_path(e, later)) {
        let Some(takes) = &e.methods else { continue };
        let before = left.len();
        left.retain(|m| !takes.contains(m));
        if left.len() < before {
            together.push((*at, e));
        }
        if left.is_empty() {
            return Some(together);
        }
    }
    None
}

/// What lets a request into a route before its `authorize` rules.
#[derive(PartialEq)]
enum Gate<'a> {
    Public,
    Bearer(Vec<&'a str>),
    ZoomApp(&'a str),
    Webhook(&'a str),
}

fn gate(r: &Route) -> Gate<'_> {
    if let Action::Webhook { webhook, .. } = &r.action {
        return Gate::Webhook(&webhook.name);
    }
    match &r.authenticate {
        Authenticate::None => Gate::Public,
        Authenticate::Identities(ids) => {
            Gate::Bearer(ids.iter().map(|i| i.name.as_str()).collect())
        }
        Authenticate::ZoomApp(app) => Gate::ZoomApp(&app.name),
    }
}

/// A route that checks who calls (a token, a Zoom App context, a webhook
/// signature) or what they may do.
fn protected(r: &Route) -> bool {
    gate(r) != Gate::Public || r.authorize.as_ref().is_some_and(|a| !no_rules(a))
}

fn no_rules(a: &Authorize) -> bool {
    a.roles_any.is_empty()
        && a.roles_all.is_empty()
        && a.scopes_all.is_empty()
        && a.tenant_param.is_none()
        && a.claims_equal.is_empty()
}

/// Whether `e` lets in only requests `l` lets in.
fn gate_within(e: &Gate<'_>, l: &Gate<'_>) -> bool {
    match (e, l) {
        (_, Gate::Public) => true,
        (Gate::Bearer(es), Gate::Bearer(ls)) => es.iter().all(|n| ls.contains(n)),
        (Gate::ZoomApp(a), Gate::ZoomApp(b)) | (Gate::Webhook(a), Gate::Webhook(b)) => a == b,
        _ => false,
    }
}

/// Whether the rules `e` refuse every caller the rules `l` refuse.
fn rules_within(e: Option<&Authorize>, l: Option<&Authorize>) -> bool {
    let Some(l) = l else { return true };
    let none = Authorize::default();
    let e = e.unwrap_or(&none);
    let within = |a: &[String], b: &[String]| a.iter().all(|x| b.contains(x));
    let any = l.roles_any.is_empty()
        || (!e.roles_any.is_empty() && within(&e.roles_any, &l.roles_any))
        || e.roles_all.iter().any(|r| l.roles_any.contains(r));
    any && within(&l.roles_all, &e.roles_all)
        && within(&l.scopes_all, &e.scopes_all)
        && (l.tenant_param.is_none() || l.tenant_param == e.tenant_param)
        && l.claims_equal.iter().all(|c| e.claims_equal.contains(c))
}

/// What a route requires, in words.
fn describe(r: &Route) -> String {
    let names = |n: &[&str]| {
        n.iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let gate = match gate(r) {
        Gate::Public => "no authentication".to_owned(),
        Gate::Bearer(ids) => format!("a bearer token of identity {}", names(&ids)),
        Gate::ZoomApp(a) => format!("a Zoom App context of zoom_app \"{a}\""),
        Gate::Webhook(w) => format!("a signature of webhook \"{w}\""),
    };
    match &r.authorize {
        Some(a) if !no_rules(a) => format!("{gate} and its `authorize` rules"),
        _ => gate,
    }
}

/// Claims registered with a JSON type (RFC 7519, OpenID Connect Core 5.1).
fn registered_type(claim: &str) -> Option<&'static str> {
    Some(match claim {
        "email_verified" | "phone_number_verified" => "boolean",
        "exp" | "nbf" | "iat" | "auth_time" | "updated_at" => "number",
        "iss" | "sub" | "jti" | "azp" | "nonce" | "sid" | "acr" | "email" | "name"
        | "given_name" | "family_name" | "middle_name" | "nickname" | "preferred_username"
        | "phone_number" | "locale" | "zoneinfo" | "birthdate" | "gender" => "string",
        _ => return None,
    })
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "table",
    }
}

/// A `claims_equal` value that cannot (`true`: an error) or most likely
/// does not (`false`: a warning) equal the claim as issued. A type
/// mismatch is only a warning: the rule fails closed (403), and a few
/// issuers do send booleans as strings.
fn claims_equal_problem(claim: &str, want: &Value) -> Option<(bool, String)> {
    // How the TOML reader hands a date-time to a JSON value.
    if let Value::Object(m) = want {
        if m.contains_key("$__toml_private_datetime") {
            return Some((
                true,
                "a TOML date-time never equals a claim (claims are JSON strings, numbers and booleans): write it as a string, or as a number of seconds".to_owned(),
            ));
        }
    }
    let got = json_type(want);
    if let Some(issued) = registered_type(claim).filter(|t| *t != got) {
        return Some((
            false,
            format!(
                "`{claim}` is issued as a JSON {issued}, so this {got} never equals it and every caller would be refused (403), unless your issuer sends it as a {got}"
            ),
        ));
    }
    match want {
        Value::String(s) if s == "true" || s == "false" => Some((
            false,
            format!(
                "the string \"{s}\" never equals the JSON boolean {s}: write {s} without quotes if the token holds a boolean"
            ),
        )),
        Value::Array(_) | Value::Object(_) => Some((
            false,
            format!(
                "compares the whole {got}: a claim holding the same items in another order, or more of them, is refused"
            ),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_equal_values_of_the_wrong_type_are_told_apart() {
        assert_eq!(claims_equal_problem("email_verified", &json!(true)), None);
        assert_eq!(claims_equal_problem("org", &json!("acme")), None);
        assert_eq!(claims_equal_problem("level", &json!(3)), None);
        let warned = |c: &str, v: Value, says: &str| {
            let (error, msg) = claims_equal_problem(c, &v).unwrap();
            assert!(!error && msg.contains(says), "{c}: {msg}");
        };
        warned("email_verified", json!("true"), "issued as a JSON boolean");
        warned("sub", json!(12), "issued as a JSON string");
        warned("exp", json!("1700000000"), "issued as a JSON number");
        warned(
            "custom_flag",
            json!("false"),
            "never equals the JSON boolean false",
        );
        warned("teams", json!(["a", "b"]), "another order");
    }

    #[test]
    fn a_toml_date_time_can_never_equal_a_claim() {
        #[derive(serde::Deserialize)]
        struct T {
            v: Value,
        }
        let t: T = toml::from_str("v = 1979-05-27T07:32:00Z").unwrap();
        let (error, msg) = claims_equal_problem("updated", &t.v).unwrap();
        assert!(error, "{msg}");
    }
}
