//! Authorization: the route's claim rules checked against a [`Principal`].
//! 403 with a stable reason; the response never says which value failed.

use serde_json::Value;

use super::authn::{claim_at, Principal};
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

/// Checks every rule of `rules`; the first that fails decides the reason.
pub fn check(rules: &Authorize, p: &Principal, captures: &Captures) -> Result<(), GatewayError> {
    if !rules.roles_any.is_empty() && !p.has_any_role(&rules.roles_any) {
        return Err(Denial::InsufficientRole.into());
    }
    if !rules.roles_all.iter().all(|r| p.roles.contains(r)) {
        return Err(Denial::InsufficientRole.into());
    }
    if !rules.scopes_all.iter().all(|s| p.scopes.contains(s)) {
        return Err(Denial::InsufficientScope.into());
    }
    if let Some(param) = &rules.tenant_param {
        let wanted = captures
            .iter()
            .find(|(n, _)| &**n == param)
            .map(|(_, v)| v.as_str());
        if wanted.is_none() || wanted != p.tenant.as_deref() {
            return Err(Denial::TenantMismatch.into());
        }
    }
    for (path, expected) in &rules.claims_equal {
        if claim_at(&p.claims, path) != Some(expected)
            && !loosely_equal(claim_at(&p.claims, path), expected)
        {
            return Err(Denial::ClaimMismatch.into());
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
