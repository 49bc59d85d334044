//! Authentication: who is calling. Bearer JWTs from OIDC issuers
//! ([`jwt`]) or Zoom Apps contexts ([`zoom_app`]), producing a
//! [`Principal`], and the identity headers the upstream receives.

mod error;
pub mod jwt;
pub mod zoom_app;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::{Map, Value};

use crate::config::{IdentitySettings, Route, Snapshot, ZoomAppSettings};
use crate::error::GatewayError;
pub use error::{shown, shown_list, AuthnError};
pub use zoom_app::ZoomContext;

/// Who a request was authenticated as.
#[derive(Debug)]
pub struct Principal {
    /// The `[identity.NAME]` or `[zoom_app.NAME]` that vouched for it.
    pub identity: String,
    /// Issuer URL (bearer tokens).
    pub issuer: Option<String>,
    /// Key id that signed the token (bearer tokens).
    pub kid: Option<String>,
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// The token's claims (bearer tokens), for `claims_equal` and
    /// `claims_to_headers`.
    pub claims: Map<String, Value>,
    /// Unix seconds until which the identity may be used.
    pub valid_until: u64,
    /// The verified Zoom App context (Zoom Apps routes).
    pub zoom: Option<ZoomContext>,
}

impl Principal {
    /// Builds a principal from verified claims.
    pub fn from_claims(
        id: &IdentitySettings,
        kid: Option<String>,
        claims: Map<String, Value>,
        valid_until: u64,
    ) -> Self {
        let roles = id
            .roles_claim
            .as_deref()
            .and_then(|p| claim_at(&claims, p))
            .map(strings)
            .unwrap_or_default();
        let scopes = match (claims.get("scope"), claims.get("scp")) {
            (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_owned).collect(),
            (_, Some(v)) => strings(v),
            _ => Vec::new(),
        };
        let tenant = id
            .tenant_claim
            .as_deref()
            .and_then(|p| claim_at(&claims, p))
            .and_then(scalar);
        Principal {
            identity: id.name.clone(),
            issuer: Some(id.issuer.clone()),
            kid,
            subject: claims.get("sub").and_then(scalar),
            tenant,
            roles,
            scopes,
            claims,
            valid_until,
            zoom: None,
        }
    }

    /// Estimated heap and inline bytes this principal holds: what it weighs
    /// in the verified-token cache. An estimate (allocator rounding and
    /// map nodes are approximated per value), meant to be proportional to
    /// the real footprint, never exact.
    pub fn approx_bytes(&self) -> usize {
        const STRING: usize = 24;
        let text = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len());
        let list = |l: &[String]| l.iter().map(|s| STRING + s.len()).sum::<usize>();
        std::mem::size_of::<Self>()
            + self.identity.len()
            + text(&self.issuer)
            + text(&self.kid)
            + text(&self.subject)
            + text(&self.tenant)
            + list(&self.roles)
            + list(&self.scopes)
            + self
                .claims
                .iter()
                .map(|(k, v)| STRING + k.len() + json_bytes(v))
                .sum::<usize>()
    }

    /// Whether the caller holds any of `roles`.
    pub fn has_any_role(&self, roles: &[String]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }
}

/// Estimated bytes of a JSON value as `serde_json` holds it.
fn json_bytes(v: &Value) -> usize {
    const VALUE: usize = std::mem::size_of::<Value>();
    VALUE
        + match v {
            Value::String(s) => s.len(),
            Value::Array(a) => a.iter().map(json_bytes).sum(),
            // A map entry: its key and the node around it.
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| 24 + k.len() + 16 + json_bytes(v))
                .sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

/// The value at a dotted path (`realm_access.roles`) in the claims.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A string, number or boolean claim as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A claim holding one string or an array of strings (a single string is
/// one role: docs/BEHAVIOUR.md item 15).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// The bearer token of a request: exactly one `Authorization` header with
/// the `Bearer` scheme (any case). Tokens in query strings are never read.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, GatewayError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(GatewayError::from(AuthnError::MissingToken));
    };
    if values.next().is_some() {
        return Err(GatewayError::BadRequest {
            code: "invalid_request",
            description: "more than one Authorization header".to_owned(),
        });
    }
    let value = value
        .to_str()
        .map_err(|_| GatewayError::from(AuthnError::MalformedToken))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(GatewayError::from(AuthnError::MissingToken));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(GatewayError::from(AuthnError::MalformedToken));
    }
    Ok(token)
}

/// Authenticates a Zoom Apps request from its `x-zoom-app-context` header.
pub fn zoom_app(
    headers: &HeaderMap,
    app: &ZoomAppSettings,
) -> Result<Arc<Principal>, GatewayError> {
    let header = headers
        .get("x-zoom-app-context")
        .and_then(|v| v.to_str().ok())
        .ok_or(GatewayError::from(AuthnError::MissingContext))?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ctx = zoom_app::verify(header, app, now_ms).map_err(|e| {
        let e = AuthnError::from(e);
        tracing::debug!(zoom_app = %app.name, reason = e.code(), "zoom app context rejected");
        GatewayError::from(e)
    })?;
    Ok(Arc::new(Principal {
        identity: app.name.clone(),
        issuer: None,
        kid: None,
        subject: ctx.user_id.clone(),
        tenant: None,
        roles: ctx.attend_role.clone().into_iter().collect(),
        scopes: Vec::new(),
        claims: Map::new(),
        valid_until: ctx.expires_ms / 1000,
        zoom: Some(ctx),
    }))
}

/// Bearer authentication for a route accepting `identities`.
pub async fn bearer(
    headers: &HeaderMap,
    identities: &[crate::live::LiveIdentity],
    snap: &Snapshot,
    cache: &jwt::TokenCache,
) -> Result<Arc<Principal>, GatewayError> {
    let token = bearer_token(headers)?;
    jwt::verify(token, identities, snap, cache).await
}

static X_AUTH_SUBJECT: HeaderName = HeaderName::from_static("x-auth-subject");
static X_AUTH_ISSUER: HeaderName = HeaderName::from_static("x-auth-issuer");
static X_AUTH_TENANT: HeaderName = HeaderName::from_static("x-auth-tenant");
static X_AUTH_ROLES: HeaderName = HeaderName::from_static("x-auth-roles");
static X_ZOOM_USER_ID: HeaderName = HeaderName::from_static("x-zoom-user-id");
static X_ZOOM_MEETING_ID: HeaderName = HeaderName::from_static("x-zoom-meeting-id");
static X_ZOOM_CONTEXT_TYPE: HeaderName = HeaderName::from_static("x-zoom-context-type");
static X_ZOOM_ATTEND_ROLE: HeaderName = HeaderName::from_static("x-zoom-attend-role");
static X_ZOOM_GUEST: HeaderName = HeaderName::from_static("x-zoom-guest");

/// The headers telling the upstream who called. A value that cannot be a
/// header (control characters) refuses the request rather than being
/// altered.
pub fn identity_headers(
    p: &Principal,
    route: &Route,
) -> Result<Vec<(HeaderName, HeaderValue)>, GatewayError> {
    let mut out = Vec::with_capacity(4);
    let mut add = |name: &HeaderName, value: &str| -> Result<(), GatewayError> {
        let v = header_value(value)?;
        out.push((name.clone(), v));
        Ok(())
    };
    if let Some(ctx) = &p.zoom {
        if let Some(uid) = &ctx.user_id {
            add(&X_ZOOM_USER_ID, uid)?;
        } else {
            add(&X_ZOOM_GUEST, "true")?;
        }
        if let Some(mid) = &ctx.meeting_id {
            add(&X_ZOOM_MEETING_ID, mid)?;
        }
        add(&X_ZOOM_CONTEXT_TYPE, &ctx.context_type)?;
        if let Some(role) = &ctx.attend_role {
            add(&X_ZOOM_ATTEND_ROLE, role)?;
        }
        return Ok(out);
    }
    if let Some(s) = &p.subject {
        add(&X_AUTH_SUBJECT, s)?;
    }
    if let Some(i) = &p.issuer {
        add(&X_AUTH_ISSUER, i)?;
    }
    if let Some(t) = &p.tenant {
        add(&X_AUTH_TENANT, t)?;
    }
    if !p.roles.is_empty() {
        out.push((X_AUTH_ROLES.clone(), list_value(&p.roles)?));
    }
    for (name, path) in &route.claims_to_headers {
        let Some(v) = claim_at(&p.claims, path) else {
            continue;
        };
        let value = match v {
            Value::Array(a) => list_value(&a.iter().filter_map(scalar).collect::<Vec<_>>())?,
            other => match scalar(other) {
                Some(s) => header_value(&s)?,
                // Objects and null: no header (the client's was removed).
                None => continue,
            },
        };
        out.push((name.clone(), value));
    }
    Ok(out)
}

fn invalid_claims() -> GatewayError {
    GatewayError::from(AuthnError::InvalidClaims)
}

/// A claim value as a header value, unaltered or refused: control
/// characters, and leading or trailing whitespace (HTTP trims it, so
/// `" admin "` would reach the app as `admin`, another principal).
fn header_value(v: &str) -> Result<HeaderValue, GatewayError> {
    if !forwardable(v) {
        return Err(invalid_claims());
    }
    HeaderValue::from_str(v).map_err(|_| invalid_claims())
}

fn forwardable(v: &str) -> bool {
    !v.chars().any(char::is_control) && v.trim_matches([' ', '\t']) == v
}

/// A list claim (roles, array claims) as one comma-separated header value.
/// An element that is empty or holds the delimiter is refused rather than
/// encoded: `["employees,video-admins"]` must not reach the app as two roles.
fn list_value(items: &[String]) -> Result<HeaderValue, GatewayError> {
    if items
        .iter()
        .any(|i| i.is_empty() || i.contains(',') || !forwardable(i))
    {
        return Err(invalid_claims());
    }
    HeaderValue::from_str(&items.join(",")).map_err(|_| invalid_claims())
}
