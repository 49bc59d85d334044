//! The gateway's error types and the one place they become HTTP responses.
//!
//! Every error the gateway itself produces is answered as
//! `{"error": "<code>", "error_description": "<text>"}` with
//! `content-type: application/json` (docs/BEHAVIOUR.md item 13). The code is a
//! stable reason code operators can alert on; the description helps the caller
//! and never carries a secret, token or key. Details go to the log.

use http::header::{HeaderValue, ALLOW, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Method, Response, StatusCode};

use crate::body::ResBody;
use crate::pipeline::authn::AuthnError;
use crate::pipeline::authz::Denial;
use crate::pipeline::webhook::WebhookError;

/// An error produced while handling one request.
///
/// Each variant maps to exactly one status in [`GatewayError::status`]; the
/// mapping has no wildcard arm so a new variant cannot silently become a 500.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request target is not a path the gateway will route (docs/BEHAVIOUR.md
    /// item 9): encoded separators, dot segments, empty segments, control
    /// characters or invalid encoding.
    #[error("invalid request path: {reason}")]
    InvalidPath { reason: &'static str },

    /// Any other malformed request.
    #[error("bad request: {description}")]
    BadRequest {
        code: &'static str,
        description: String,
    },

    /// No route matches host and path.
    #[error("no route")]
    NoRoute,

    /// A route matches the path, but not the method.
    #[error("method not allowed")]
    MethodNotAllowed { allow: Vec<Method> },

    /// The request head is larger than `limits.max_header_bytes`.
    #[error("request header fields too large")]
    HeadersTooLarge,

    /// A body the gateway buffers is larger than `limits.max_body_bytes`.
    #[error("payload too large")]
    PayloadTooLarge,

    /// Authentication failed (401). `reason` is the stable code; whether a
    /// credential was presented decides the `WWW-Authenticate` error
    /// attribute (RFC 6750 section 3).
    #[error("unauthorized: {}", .0.code())]
    Unauthorized(AuthnError),

    /// A webhook delivery failed verification (401, no `WWW-Authenticate`:
    /// it is not a bearer challenge). The platform does not retry 4xx.
    #[error("webhook rejected: {}", .0.code())]
    WebhookRejected(WebhookError),

    /// The request body did not arrive in time (buffered bodies only).
    #[error("request body timed out")]
    RequestTimeout,

    /// Authenticated, but the route's rules refuse the caller (403).
    #[error("forbidden: {}", .0.code())]
    Forbidden(Denial),

    /// A credential to inject could not be obtained (token endpoint down
    /// or refusing the client): 503 so callers retry.
    #[error("credential {credential} is unavailable")]
    CredentialUnavailable { credential: String },

    /// The identity's signing keys are not available (never fetched, or
    /// older than `jwks_max_stale_secs`): 503, not 401, so clients retry.
    #[error("no usable signing keys for identity {identity}")]
    KeysUnavailable { identity: String },

    /// The route needs a stage its snapshot cannot run (an internal
    /// inconsistency); it fails closed rather than passing traffic
    /// unauthenticated.
    #[error("route {route} needs the {stage} stage, which is not available")]
    StageUnavailable { route: String, stage: &'static str },

    /// The upstream could not be reached or broke the exchange.
    #[error("upstream {upstream} failed")]
    UpstreamFailed {
        upstream: String,
        #[source]
        source: crate::body::BoxError,
    },

    /// A caller's Zoom grant could not serve the request (connect,
    /// callback, ZAK or OBF); its own status and code.
    #[error("zoom user: {0}")]
    ZoomUser(crate::live::zoom_users::ZoomUserFailure),

    /// The upstream did not answer within `limits.upstream_timeout_ms`.
    #[error("upstream {upstream} timed out")]
    UpstreamTimeout { upstream: String },

    /// A refusal with what exactly was wrong, in safe terms, for the
    /// operator's log (expected vs received issuer or audience, how long
    /// ago the token expired, the failing rule): the caller is answered as
    /// for `error` alone.
    #[error("{error} ({detail})")]
    Explained {
        error: Box<GatewayError>,
        detail: String,
    },
}

impl GatewayError {
    /// This refusal with `detail` for the operator's log (see
    /// [`GatewayError::Explained`]).
    pub fn explained(self, detail: impl Into<String>) -> Self {
        GatewayError::Explained {
            error: Box::new(self),
            detail: detail.into(),
        }
    }

    /// What exactly was wrong, when the stage that refused said so.
    pub fn detail(&self) -> Option<&str> {
        match self {
            GatewayError::Explained { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Explained { error, .. } => error.status(),
            GatewayError::InvalidPath { .. } => StatusCode::BAD_REQUEST,
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::WebhookRejected(_) => StatusCode::UNAUTHORIZED,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::KeysUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::CredentialUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::StageUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::ZoomUser(f) => f.status(),
        }
    }

    /// The stable reason code written in the body, logs and audit lines.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Explained { error, .. } => error.code(),
            GatewayError::InvalidPath { .. } => "invalid_path",
            GatewayError::BadRequest { code, .. } => code,
            GatewayError::NoRoute => "no_route",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::PayloadTooLarge => "payload_too_large",
            GatewayError::Unauthorized(e) => e.code(),
            GatewayError::WebhookRejected(e) => e.code(),
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::Forbidden(d) => d.code(),
            GatewayError::KeysUnavailable { .. } => "keys_unavailable",
            GatewayError::CredentialUnavailable { .. } => "credential_unavailable",
            GatewayError::StageUnavailable { .. } => "stage_unavailable",
            GatewayError::UpstreamFailed { .. } => "upstream_unavailable",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::ZoomUser(f) => f.code(),
        }
    }

    /// A description for the caller. Never includes upstream addresses,
    /// tokens or secrets: those stay in the log.
    pub fn description(&self) -> String {
        match self {
            GatewayError::Explained { error, .. } => error.description(),
            GatewayError::InvalidPath { reason } => {
                format!("the request path is not allowed: {reason}")
            }
            GatewayError::BadRequest { description, .. } => description.clone(),
            GatewayError::NoRoute => "no route matches this request".to_owned(),
            GatewayError::MethodNotAllowed { .. } => {
                "the route does not accept this method".to_owned()
            }
            GatewayError::HeadersTooLarge => "the request head is too large".to_owned(),
            GatewayError::PayloadTooLarge => "the request body is too large".to_owned(),
            GatewayError::WebhookRejected(e) => e.description().to_owned(),
            GatewayError::RequestTimeout => "the request body did not arrive in time".to_owned(),
            GatewayError::Unauthorized(e) => e.description().to_owned(),
            GatewayError::Forbidden(_) => "the caller is not allowed to use this route".to_owned(),
            GatewayError::KeysUnavailable { .. } => {
                "the identity provider's signing keys are not available; retry later".to_owned()
            }
            GatewayError::CredentialUnavailable { .. } => {
                "a credential for the upstream service is not available; retry later".to_owned()
            }
            GatewayError::StageUnavailable { .. } => {
                "this route is not available on this gateway".to_owned()
            }
            GatewayError::UpstreamFailed { .. } => {
                "the upstream service could not be reached".to_owned()
            }
            GatewayError::UpstreamTimeout { .. } => {
                "the upstream service did not answer in time".to_owned()
            }
            GatewayError::ZoomUser(f) => f.description().to_owned(),
        }
    }

    /// Builds the JSON error response.
    pub fn to_response(&self) -> Response<ResBody> {
        if let GatewayError::Explained { error, .. } = self {
            return error.to_response();
        }
        let mut resp = json_error(self.status(), self.code(), &self.description());
        let headers = resp.headers_mut();
        match self {
            GatewayError::MethodNotAllowed { allow } => {
                let list = allow
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&list) {
                    headers.insert(ALLOW, v);
                }
            }
            GatewayError::Unauthorized(e) => {
                let v = if e.presented() {
                    r#"Bearer realm="meetgate", error="invalid_token""#
                } else {
                    r#"Bearer realm="meetgate""#
                };
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(v));
            }
            GatewayError::KeysUnavailable { .. } | GatewayError::CredentialUnavailable { .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
            }
            GatewayError::StageUnavailable { .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
            }
            GatewayError::Forbidden(_)
            | GatewayError::WebhookRejected(_)
            | GatewayError::RequestTimeout
            | GatewayError::InvalidPath { .. }
            | GatewayError::BadRequest { .. }
            | GatewayError::NoRoute
            | GatewayError::HeadersTooLarge
            | GatewayError::PayloadTooLarge
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::UpstreamTimeout { .. }
            | GatewayError::ZoomUser(_)
            | GatewayError::Explained { .. } => {}
        }
        resp
    }
}

/// A JSON error response with the given status, code and description.
pub fn json_error(status: StatusCode, code: &str, description: &str) -> Response<ResBody> {
    let body = serde_json::json!({ "error": code, "error_description": description });
    crate::body::json_response(status, body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_are_json_with_code_and_status() {
        let err = GatewayError::MethodNotAllowed {
            allow: vec![Method::GET, Method::POST],
        };
        let resp = err.to_response();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[ALLOW], "GET, POST");
        assert_eq!(
            resp.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "method_not_allowed");
        assert!(v["error_description"].as_str().unwrap().len() > 5);
    }
}
