//! Why authentication refused a request: one variant per stable reason code.

use super::zoom_app::ContextError;

/// An authentication failure (401). Each variant has one stable code, the
/// word operators alert on, and one description for the caller; neither
/// ever carries the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthnError {
    /// No `Authorization: Bearer` header.
    MissingToken,
    /// Larger than [`super::jwt::MAX_TOKEN_BYTES`].
    TokenTooLarge,
    /// Not three base64url parts of JSON, or not a string header value.
    MalformedToken,
    Expired,
    NotYetValid,
    WrongAudience,
    /// `iss` matches none of the route's identities, though it is one the
    /// gateway knows.
    WrongIssuer,
    /// `iss` matches no identity at all.
    UnknownIssuer,
    UnknownKid,
    InvalidSignature,
    AlgorithmNotAllowed,
    UnsupportedCrit,
    InvalidTyp,
    /// Claims missing, of the wrong type, or not forwardable as headers.
    InvalidClaims,
    /// No `x-zoom-app-context` header.
    MissingContext,
    InvalidContext,
    ContextExpired,
    GuestNotAllowed,
}

impl AuthnError {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            AuthnError::MissingToken => "missing_token",
            AuthnError::TokenTooLarge => "token_too_large",
            AuthnError::MalformedToken => "malformed_token",
            AuthnError::Expired => "expired",
            AuthnError::NotYetValid => "not_yet_valid",
            AuthnError::WrongAudience => "wrong_audience",
            AuthnError::WrongIssuer => "wrong_issuer",
            AuthnError::UnknownIssuer => "unknown_issuer",
            AuthnError::UnknownKid => "unknown_kid",
            AuthnError::InvalidSignature => "invalid_signature",
            AuthnError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthnError::UnsupportedCrit => "unsupported_crit",
            AuthnError::InvalidTyp => "invalid_typ",
            AuthnError::InvalidClaims => "invalid_claims",
            AuthnError::MissingContext => "missing_context",
            AuthnError::InvalidContext => "invalid_context",
            AuthnError::ContextExpired => "context_expired",
            AuthnError::GuestNotAllowed => "guest_not_allowed",
        }
    }

    /// What the caller is told.
    pub fn description(self) -> &'static str {
        match self {
            AuthnError::MissingToken => "a bearer token is required",
            AuthnError::TokenTooLarge => "the bearer token is too large",
            AuthnError::MalformedToken => "the bearer token is not a well-formed JWT",
            AuthnError::Expired => "the token has expired",
            AuthnError::NotYetValid => "the token is not valid yet",
            AuthnError::WrongAudience => "the token is not meant for this service",
            AuthnError::WrongIssuer | AuthnError::UnknownIssuer => {
                "the token's issuer is not accepted here"
            }
            AuthnError::UnknownKid => "the token was signed with an unknown key",
            AuthnError::InvalidSignature => "the token's signature is not valid",
            AuthnError::AlgorithmNotAllowed => "the token's algorithm is not accepted",
            AuthnError::UnsupportedCrit => {
                "the token requires header parameters this service does not understand"
            }
            AuthnError::InvalidTyp => "the token's type is not accepted",
            AuthnError::InvalidClaims => "the token's claims are malformed or incomplete",
            AuthnError::MissingContext => "an x-zoom-app-context header is required",
            AuthnError::InvalidContext => "the Zoom App context could not be verified",
            AuthnError::ContextExpired => "the Zoom App context has expired",
            AuthnError::GuestNotAllowed => "guest users are not allowed on this route",
        }
    }

    /// Whether the caller presented a credential at all: decides the
    /// `WWW-Authenticate` error attribute (RFC 6750 section 3).
    pub fn presented(self) -> bool {
        !matches!(self, AuthnError::MissingToken | AuthnError::MissingContext)
    }
}

impl From<ContextError> for AuthnError {
    fn from(e: ContextError) -> Self {
        match e {
            ContextError::Invalid | ContextError::Claims => AuthnError::InvalidContext,
            ContextError::Expired => AuthnError::ContextExpired,
            ContextError::Guest => AuthnError::GuestNotAllowed,
        }
    }
}

impl From<AuthnError> for crate::error::GatewayError {
    fn from(e: AuthnError) -> Self {
        crate::error::GatewayError::Unauthorized(e)
    }
}

/// The longest part of a caller-sent value (issuer, audience, kid) a
/// refusal's detail shows, in characters.
const SHOWN_CHARS: usize = 64;

/// A value the caller sent, as a refusal's detail shows it: quoted, control
/// characters escaped, cut to [`SHOWN_CHARS`] (so a log line stays one
/// bounded line whatever was sent).
pub fn shown(v: &str) -> String {
    let cut: String = v.chars().take(SHOWN_CHARS).collect();
    if cut.len() < v.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A list of values as a refusal's detail shows it: `["a", "b"]`.
pub fn shown_list<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    let mut values = values.into_iter();
    let mut items: Vec<String> = values.by_ref().take(8).map(shown).collect();
    let more = values.count();
    if more > 0 {
        items.push(format!("… {more} more"));
    }
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_values_are_quoted_escaped_and_bounded() {
        assert_eq!(shown("api"), r#""api""#);
        assert_eq!(shown("a\nb"), r#""a\nb""#);
        let long = "x".repeat(500);
        let s = shown(&long);
        assert!(
            s.starts_with(&format!("\"{}\"", "x".repeat(SHOWN_CHARS))),
            "{s}"
        );
        assert!(
            s.ends_with('…') && s.chars().count() == SHOWN_CHARS + 3,
            "{s}"
        );
        assert_eq!(shown_list(["a", "b"]), r#"["a", "b"]"#);
        let ten: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert!(
            shown_list(ten.iter().map(String::as_str)).ends_with(r#""7", … 2 more]"#),
            "{}",
            shown_list(ten.iter().map(String::as_str))
        );
    }
}
