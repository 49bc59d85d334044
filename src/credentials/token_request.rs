//! The token request of a fetched credential (Zoom Server-to-Server OAuth,
//! OAuth 2.0 client credentials) and the key its settings are known by.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use http::Uri;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ClientAuth, CredentialKind};

/// A token request: POST to `uri` with `headers` and a form `body`.
pub struct TokenRequest {
    pub uri: Uri,
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    pub body: String,
}

/// The token request for a fetched credential (spec section 4: POST,
/// `Authorization: Basic`, parameters in the body); `None` for minted kinds.
pub fn token_request(kind: &CredentialKind) -> Option<TokenRequest> {
    let basic = |id: &str, secret: &SecretString| {
        let v = format!(
            "Basic {}",
            STANDARD.encode(format!("{id}:{}", secret.expose_secret()))
        );
        let mut v = HeaderValue::from_str(&v).ok()?;
        v.set_sensitive(true);
        Some(v)
    };
    let form = HeaderValue::from_static("application/x-www-form-urlencoded");
    match kind {
        CredentialKind::ZoomS2sOAuth {
            account_id,
            client_id,
            client_secret,
            token_url,
            ..
        } => {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "account_credentials")
                .append_pair("account_id", account_id)
                .finish();
            let headers = vec![
                (AUTHORIZATION, basic(client_id, client_secret)?),
                (CONTENT_TYPE, form),
            ];
            Some(TokenRequest {
                uri: token_url.clone(),
                headers,
                body,
            })
        }
        CredentialKind::OAuthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            client_auth,
            ..
        } => {
            let mut ser = form_urlencoded::Serializer::new(String::new());
            ser.append_pair("grant_type", "client_credentials");
            if let Some(s) = scope {
                ser.append_pair("scope", s);
            }
            if let Some(a) = audience {
                ser.append_pair("audience", a);
            }
            let mut headers = vec![(CONTENT_TYPE, form)];
            match client_auth {
                ClientAuth::Basic => {
                    headers.push((AUTHORIZATION, basic(client_id, client_secret)?))
                }
                ClientAuth::Post => {
                    ser.append_pair("client_id", client_id);
                    ser.append_pair("client_secret", client_secret.expose_secret());
                }
            }
            Some(TokenRequest {
                uri: token_url.clone(),
                headers,
                body: ser.finish(),
            })
        }
        _ => None,
    }
}

/// A stable key for a credential's settings: a hash, so the secret itself is
/// never a key.
pub(super) fn settings_key(kind: &CredentialKind) -> String {
    let Some(r) = token_request(kind) else {
        return crate::registry::fingerprint(&[]);
    };
    let uri = r.uri.to_string();
    let mut parts: Vec<&[u8]> = vec![uri.as_bytes()];
    for (k, v) in &r.headers {
        parts.push(k.as_str().as_bytes());
        parts.push(v.as_bytes());
    }
    parts.push(r.body.as_bytes());
    crate::registry::fingerprint(&parts)
}
