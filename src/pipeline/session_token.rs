//! Vonage Video and OpenTok session tokens answered by a `respond` route.
//!
//! The role comes from the caller's roles through the route: a role in
//! `moderator_roles` may connect as moderator, one in `publisher_roles` as
//! publisher (or publisheronly), anyone else as subscriber. A role asked
//! for in the request is granted only if held (403 otherwise); nothing
//! asked grants the caller's highest. The session comes from the route's
//! `session_param` capture or the body's `sessionId`; connection data only
//! from the configured claims, as a JSON object.

use serde_json::{Map, Value};

use super::authn::{claim_at, Principal};
use super::route::Captures;
use crate::config::{CredentialKind, OpenTokFormat, Respond};
use crate::credentials::opentok::{self, TokenData};
use crate::credentials::vonage::{
    self, valid_session_id, ClientGrant, ClientRole, MAX_CONNECTION_DATA,
};
use crate::error::GatewayError;

fn bad(code: &'static str, description: &str) -> GatewayError {
    GatewayError::BadRequest {
        code,
        description: description.to_owned(),
    }
}

/// The most a caller may connect as on this route.
fn highest_role(resp: &Respond, p: Option<&Principal>) -> ClientRole {
    match p {
        Some(p) if p.has_any_role(&resp.moderator_roles) => ClientRole::Moderator,
        Some(p) if p.has_any_role(&resp.publisher_roles) => ClientRole::Publisher,
        _ => ClientRole::Subscriber,
    }
}

fn permitted(asked: ClientRole, highest: ClientRole) -> bool {
    match highest {
        ClientRole::Moderator => true,
        ClientRole::Publisher | ClientRole::Publisheronly => asked != ClientRole::Moderator,
        ClientRole::Subscriber => asked == ClientRole::Subscriber,
    }
}

/// The role granted for a request body's `role` (absent: the highest held).
fn granted(
    resp: &Respond,
    p: Option<&Principal>,
    asked: Option<&Value>,
) -> Result<ClientRole, GatewayError> {
    let highest = highest_role(resp, p);
    let asked = match asked {
        None | Some(Value::Null) => return Ok(highest),
        Some(Value::String(s)) => ClientRole::parse(s).ok_or_else(|| {
            bad(
                "invalid_role",
                "role must be subscriber, publisher, publisheronly or moderator",
            )
        })?,
        Some(_) => return Err(bad("invalid_role", "role must be a string")),
    };
    if permitted(asked, highest) {
        Ok(asked)
    } else {
        Err(
            GatewayError::from(super::authz::Denial::RoleNotPermitted).explained(format!(
                "role {} asked; the caller's roles give at most {}",
                asked.as_str(),
                highest.as_str()
            )),
        )
    }
}

/// Connection data: the configured claims of the caller, as a JSON object.
fn connection_data(resp: &Respond, p: Option<&Principal>) -> Result<Option<String>, GatewayError> {
    if resp.connection_data.is_empty() {
        return Ok(None);
    }
    let p = p.ok_or_else(|| {
        bad(
            "missing_claims",
            "connection data needs the caller's claims",
        )
    })?;
    let mut out = Map::new();
    for path in &resp.connection_data {
        let v = match path.as_str() {
            "sub" => p.subject.clone().map(Value::String),
            _ => claim_at(&p.claims, path).cloned(),
        };
        let v = v.filter(|v| !v.is_null()).ok_or_else(|| {
            bad(
                "missing_claims",
                "the caller's token lacks a claim this route puts in the connection data",
            )
        })?;
        out.insert(path.clone(), v);
    }
    let text = Value::Object(out).to_string();
    // Counted as the SDKs count (JavaScript string length: UTF-16 code
    // units), so every token answered here is one opentok's own
    // generateToken would also accept: an emoji counts twice.
    if text.encode_utf16().count() > MAX_CONNECTION_DATA {
        return Err(bad(
            "connection_data_too_long",
            "the connection data would exceed 1024 characters (UTF-16 code units, as the SDKs count)",
        ));
    }
    Ok(Some(text))
}

/// `initialLayoutClassList`: class names of `[A-Za-z0-9_-]`, joined at most
/// 1024 characters.
fn layout_classes(v: Option<&Value>) -> Result<Vec<String>, GatewayError> {
    let invalid = || {
        bad(
            "invalid_layout_classes",
            "initialLayoutClassList must be a list of class names ([A-Za-z0-9_-]), 1024 characters in all at most",
        )
    };
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = v.as_array().ok_or_else(invalid)?;
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let c = c.as_str().filter(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        out.push(c.ok_or_else(invalid)?.to_owned());
    }
    if out.join(" ").len() > MAX_CONNECTION_DATA {
        return Err(invalid());
    }
    Ok(out)
}

/// The answer body of a session-token route, and the role granted.
pub fn answer(
    resp: &Respond,
    principal: Option<&Principal>,
    captures: &Captures,
    body: &Map<String, Value>,
    now: u64,
) -> Result<(String, ClientRole), GatewayError> {
    let from_path = resp.session_param.as_deref().and_then(|name| {
        captures
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v.as_str())
    });
    let session = match from_path {
        Some(s) => s,
        None => body.get("sessionId").and_then(Value::as_str).unwrap_or(""),
    };
    if !valid_session_id(session) {
        return Err(bad(
            "invalid_session_id",
            "the session id must be a Vonage/OpenTok session id (1_ or 2_ and URL-safe base64, at most 256 characters)",
        ));
    }
    let role = granted(resp, principal, body.get("role"))?;
    let data = connection_data(resp, principal)?;
    let classes = layout_classes(body.get("initialLayoutClassList"))?;
    let jti = uuid::Uuid::new_v4().to_string();
    let answer = match &resp.credential.kind {
        CredentialKind::VonageApplication {
            application_id,
            private_key,
            client_ttl,
            ..
        } => {
            let expires_at = now + client_ttl.as_secs();
            let grant = ClientGrant {
                session_id: session,
                role,
                connection_data: data.as_deref(),
                layout_classes: &classes,
                expires_at,
            };
            let token = vonage::client_token(application_id, private_key, &grant, &jti, now);
            serde_json::json!({
                "token": token, "applicationId": application_id, "sessionId": session,
                "role": role.as_str(), "expiresAt": expires_at,
            })
        }
        CredentialKind::OpenTokProject {
            api_key,
            api_secret,
            client_ttl,
            client_format,
            ..
        } => {
            if !opentok::session_belongs_to(session, api_key) {
                return Err(bad(
                    "invalid_session_id",
                    "the session belongs to another OpenTok project",
                ));
            }
            let expires_at = now + client_ttl.as_secs();
            let data = TokenData {
                session_id: session,
                create_time: now,
                nonce: opentok::random_nonce(),
                role,
                expire_time: expires_at,
                connection_data: data.as_deref(),
                initial_layout_class_list: classes.join(" "),
                scope: "session.connect",
            };
            let secret = secrecy::ExposeSecret::expose_secret(api_secret).as_bytes();
            let token = match client_format {
                OpenTokFormat::Jwt => opentok::jwt_token(api_key, secret, &data, now),
                OpenTokFormat::T1 => opentok::t1_token(api_key, secret, &data),
            };
            serde_json::json!({
                "token": token, "apiKey": api_key, "sessionId": session,
                "role": role.as_str(), "expiresAt": expires_at,
            })
        }
        _ => {
            return Err(GatewayError::CredentialUnavailable {
                credential: resp.credential.name.clone(),
            })
        }
    };
    Ok((answer.to_string(), role))
}
