//! Credentials the gateway mints ([`mint`]) or fetches ([`oauth`]) and puts
//! into upstream requests (`inject`) or answers with (`respond`), so apps
//! never hold platform secrets.

pub mod lifetime;
pub mod mint;
pub mod oauth;
pub mod opentok;
pub mod token_request;
pub mod token_store;
pub mod vonage;

use crate::error::GatewayError;
use crate::pipeline::authn::Principal;

/// The role granted for a Meeting SDK or Video SDK token: 1 (host) only when
/// asked for and the caller holds a role in `host_roles`; asking for 1
/// without one is 403 `host_role_not_permitted`; nothing asked is 0.
pub fn granted_role(
    requested: Option<u8>,
    host_roles: &[String],
    caller: Option<&Principal>,
) -> Result<u8, GatewayError> {
    match requested {
        None | Some(0) => Ok(0),
        Some(1) if caller.is_some_and(|p| p.has_any_role(host_roles)) => Ok(1),
        Some(1) => Err(
            GatewayError::from(crate::pipeline::authz::Denial::HostRoleNotPermitted).explained(
                format!(
                    "role 1 (host) asked; host_roles {} and the caller's roles {} share none",
                    crate::pipeline::authn::shown_list(host_roles.iter().map(String::as_str)),
                    crate::pipeline::authn::shown_list(
                        caller
                            .iter()
                            .flat_map(|p| p.roles.iter().map(String::as_str))
                    )
                ),
            ),
        ),
        Some(_) => Err(GatewayError::BadRequest {
            code: "invalid_request",
            description: "role must be 0 or 1".to_owned(),
        }),
    }
}

pub use crate::now_secs;
