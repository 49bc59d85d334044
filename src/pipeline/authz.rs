//! Authorization: the route's claim rules checked against a [`Principal`].
//! 403 with a stable reason; the response never says which value failed
//! (the operator's log does, see [`GatewayError::Explained`]).

use serde_json::Value;

use super::authn::{claim_at, shown, shown_list, Principal};
use super::route::Captures;
use crate::config::Authorize;
use crate::error::GatewayError;

/// Why the route's rules refused an authenticated caller (403). The answer
/// never says which value failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    InsufficientRole,
    InsufficientScope,
    TenantMismatch,
    ClaimMismatch,
    /// Host role (Meeting SDK role 1) asked without a `host_roles` role.
    HostRoleNotPermitted,
    /// A session role (moderator, publisher) asked without the route's
    /// role for it.
    RoleNotPermitted,
}

impl Denial {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Denial::InsufficientRole => "insufficient_role",
            Denial::InsufficientScope => "insufficient_scope",
            Denial::TenantMismatch => "tenant_mismatch",
            Denial::ClaimMismatch => "claim_mismatch",
            Denial::HostRoleNotPermitted => "host_role_not_permitted",
            Denial::RoleNotPermitted => "role_not_permitted",
        }
    }
}

impl From<Denial> for crate::error::GatewayError {
    fn from(d: Denial) -> Self {
        crate::error::GatewayError::Forbidden(d)
    }
}

/// Checks every rule of `rules`; the first that fails decides the reason
/// (and the refusal's detail names the rule and what it looked at).
pub fn check(rules: &Authorize, p: &Principal, captures: &Captures) -> Result<(), GatewayError> {
    let roles = || shown_list(p.roles.iter().map(String::as_str));
    if !rules.roles_any.is_empty() && !p.has_any_role(&rules.roles_any) {
        return Err(
            GatewayError::from(Denial::InsufficientRole).explained(format!(
                "rule roles_any {}: the caller's roles are {}",
                shown_list(rules.roles_any.iter().map(String::as_str)),
                roles()
            )),
        );
    }
    if let Some(missing) = rules.roles_all.iter().find(|r| !p.roles.contains(r)) {
        return Err(
            GatewayError::from(Denial::InsufficientRole).explained(format!(
                "rule roles_all: role {} missing from the caller's roles {}",
                shown(missing),
                roles()
            )),
        );
    }
    if let Some(missing) = rules.scopes_all.iter().find(|s| !p.scopes.contains(s)) {
        return Err(
            GatewayError::from(Denial::InsufficientScope).explained(format!(
                "rule scopes_all: scope {} missing from the token's scope claim",
                shown(missing)
            )),
        );
    }
    if let Some(param) = &rules.tenant_param {
        let wanted = captures
            .iter()
            .find(|(n, _)| &**n == param)
            .map(|(_, v)| v.as_str());
        if wanted.is_none() || wanted != p.tenant.as_deref() {
            return Err(GatewayError::from(Denial::TenantMismatch).explained(format!(
                "rule tenant_param {}: the path names tenant {}, the caller's tenant claim holds {}",
                shown(param),
                wanted.map_or_else(|| "none".to_owned(), shown),
                p.tenant.as_deref().map_or_else(|| "nothing".to_owned(), shown)
            )));
        }
    }
    for (path, expected) in &rules.claims_equal {
        if claim_at(&p.claims, path) != Some(expected)
            && !loosely_equal(claim_at(&p.claims, path), expected)
        {
            // The claim's value is not shown: it may be personal data.
            let got = match claim_at(&p.claims, path) {
                None => "is missing",
                Some(v) if std::mem::discriminant(v) != std::mem::discriminant(expected) => {
                    "is of another JSON type than the rule's value"
                }
                Some(_) => "differs from the rule's value",
            };
            return Err(GatewayError::from(Denial::ClaimMismatch)
                .explained(format!("rule claims_equal: claim {} {got}", shown(path))));
        }
    }
    Ok(())
}

/// Integers written in TOML compare equal to the same JSON number even when
/// one side is a float representation.
fn loosely_equal(actual: Option<&Value>, expected: &Value) -> bool {
    match (actual.and_then(Value::as_f64), expected.as_f64()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn principal(claims: Value) -> Principal {
        let id = crate::config::IdentitySettings {
            name: "corp".into(),
            issuer: "https://idp.example".into(),
            jwks_uri: None,
            audiences: vec!["api".into()],
            algorithms: vec!["RS256".into()],
            leeway: std::time::Duration::ZERO,
            jwks_refresh: std::time::Duration::from_secs(300),
            jwks_max_stale: std::time::Duration::from_secs(300),
            roles_claim: Some("realm_access.roles".into()),
            tenant_claim: Some("org_id".into()),
            verified_token_cache: true,
        };
        Principal::from_claims(&id, None, claims.as_object().unwrap().clone(), u64::MAX)
    }

    fn rules(f: impl FnOnce(&mut Authorize)) -> Authorize {
        let mut a = Authorize::default();
        f(&mut a);
        a
    }

    #[test]
    fn claim_rules_table() {
        let p = principal(json!({
            "sub": "alice", "org_id": "acme", "scope": "meetings:read meetings:write",
            "realm_access": { "roles": ["host", "viewer"] }, "email_verified": true, "level": 3
        }));
        let caps = |t: &str| vec![(Arc::from("tenant"), t.to_owned())];
        let cases: Vec<(Authorize, Captures, Result<(), &str>)> = vec![
            (
                rules(|a| a.roles_any = vec!["host".into(), "admin".into()]),
                vec![],
                Ok(()),
            ),
            (
                rules(|a| a.roles_any = vec!["admin".into()]),
                vec![],
                Err("insufficient_role"),
            ),
            (
                rules(|a| a.roles_all = vec!["host".into(), "viewer".into()]),
                vec![],
                Ok(()),
            ),
            (
                rules(|a| a.roles_all = vec!["host".into(), "admin".into()]),
                vec![],
                Err("insufficient_role"),
            ),
            (
                rules(|a| a.scopes_all = vec!["meetings:read".into()]),
                vec![],
                Ok(()),
            ),
            (
                rules(|a| a.scopes_all = vec!["meetings:admin".into()]),
                vec![],
                Err("insufficient_scope"),
            ),
            (
                rules(|a| a.tenant_param = Some("tenant".into())),
                caps("acme"),
                Ok(()),
            ),
            (
                rules(|a| a.tenant_param = Some("tenant".into())),
                caps("globex"),
                Err("tenant_mismatch"),
            ),
            (
                rules(|a| a.claims_equal = vec![("email_verified".into(), json!(true))]),
                vec![],
                Ok(()),
            ),
            (
                rules(|a| a.claims_equal = vec![("email_verified".into(), json!(false))]),
                vec![],
                Err("claim_mismatch"),
            ),
            (
                rules(|a| a.claims_equal = vec![("level".into(), json!(3.0))]),
                vec![],
                Ok(()),
            ),
            (
                rules(|a| a.claims_equal = vec![("missing".into(), json!("x"))]),
                vec![],
                Err("claim_mismatch"),
            ),
        ];
        for (i, (r, caps, want)) in cases.into_iter().enumerate() {
            let got = check(&r, &p, &caps).map_err(|e| e.code());
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn a_single_string_roles_claim_is_one_role() {
        let p = principal(json!({ "realm_access": { "roles": "host" } }));
        assert_eq!(p.roles, vec!["host".to_owned()]);
        let p = principal(json!({ "scp": ["a", "b"] }));
        assert_eq!(p.scopes, vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn no_tenant_never_matches() {
        let p = principal(json!({ "sub": "x" }));
        let r = rules(|a| a.tenant_param = Some("tenant".into()));
        let caps = vec![(Arc::from("tenant"), "acme".to_owned())];
        assert_eq!(
            check(&r, &p, &caps).map_err(|e| e.code()),
            Err("tenant_mismatch")
        );
    }
}
