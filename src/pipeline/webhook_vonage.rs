//! Vonage signed callbacks (docs/platforms/platforms-2026.md section 4):
//! an HS256 JWT in `Authorization` whose claims carry the SHA-256 of the
//! raw body. Checked in order: the MAC with each configured signature
//! secret (HS256 only), `iss` = `Vonage` and the configured
//! `application_id`, `payload_hash` over the exact bytes received, `iat`
//! within the tolerance (the token has no `exp`); `jti` is the dedup key,
//! so a replay inside the window is a duplicate.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::Mac;
use http::HeaderMap;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::webhook::{mac, Verified, WebhookError};
use crate::config::WebhookSettings;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    iat: Option<i64>,
    jti: Option<String>,
    iss: Option<String>,
    payload_hash: Option<String>,
    application_id: Option<String>,
}

fn part<T: for<'de> Deserialize<'de>>(b64: &str) -> Result<T, WebhookError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| WebhookError::MissingSignature)?;
    serde_json::from_slice(&bytes).map_err(|_| WebhookError::MissingSignature)
}

pub(super) fn verify(
    settings: &WebhookSettings,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Verified, WebhookError> {
    let auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(WebhookError::MissingSignature)?;
    let token = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
        Some(_) => return Err(WebhookError::MissingSignature),
        None => auth,
    };
    let mut parts = token.split('.');
    let (Some(h64), Some(c64), Some(s64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WebhookError::MissingSignature);
    };
    let header: Header = part(h64)?;
    if header.alg != "HS256" {
        return Err(WebhookError::InvalidSignature);
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s64)
        .map_err(|_| WebhookError::MissingSignature)?;
    let signed = &token.as_bytes()[..h64.len() + 1 + c64.len()];
    let secret = settings
        .secrets
        .iter()
        .position(|s| mac(&s.0, &[signed]).verify_slice(&sig).is_ok())
        .ok_or(WebhookError::InvalidSignature)?;
    let claims: Claims = part(c64)?;
    if claims.iss.as_deref() != Some("Vonage") {
        return Err(WebhookError::InvalidSignature);
    }
    if let Some(want) = &settings.application_id {
        if claims.application_id.as_deref() != Some(want.as_str()) {
            return Err(WebhookError::InvalidSignature);
        }
    }
    let hash = hex::encode(Sha256::digest(body));
    if claims.payload_hash.as_deref() != Some(hash.as_str()) {
        return Err(WebhookError::InvalidSignature);
    }
    let iat = claims.iat.ok_or(WebhookError::MissingSignature)?;
    let age = now - iat;
    if age.unsigned_abs() > settings.tolerance.as_secs() {
        return Err(WebhookError::StaleTimestamp { age_secs: age });
    }
    let jti = claims
        .jti
        .filter(|j| !j.is_empty())
        .ok_or(WebhookError::MissingSignature)?;
    Ok(Verified {
        secret,
        dedup_key: jti,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WebhookKind;
    use crate::test_vectors::vector;

    fn settings(secrets: &[&str], app: Option<&str>) -> WebhookSettings {
        crate::pipeline::webhook::tests::settings(WebhookKind::Vonage, secrets, app)
    }

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn the_vector_verifies_and_every_check_bites() {
        let v = vector("vonage_video_signed_callback");
        let secret = v["inputs"]["signature_secret"].as_str().unwrap();
        let body = v["inputs"]["raw_body_utf8"].as_str().unwrap().as_bytes();
        let jwt = v["expected"]["jwt"].as_str().unwrap();
        let auth = format!("Bearer {jwt}");
        let now = 1_767_225_600;
        let app = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";
        let ok = verify(
            &settings(&["old", secret], Some(app)),
            &headers(&auth),
            body,
            now + 10,
        )
        .expect("the vector verifies, second secret (rotation)");
        assert_eq!(ok.secret, 1);
        assert_eq!(ok.dedup_key, "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5");
        let s = settings(&[secret], Some(app));
        assert_eq!(
            verify(&settings(&["wrong"], None), &headers(&auth), body, now),
            Err(WebhookError::InvalidSignature)
        );
        assert_eq!(
            verify(
                &settings(&[secret], Some("other-app")),
                &headers(&auth),
                body,
                now
            ),
            Err(WebhookError::InvalidSignature)
        );
        let mut altered = body.to_vec();
        altered.push(b' ');
        assert_eq!(
            verify(&s, &headers(&auth), &altered, now),
            Err(WebhookError::InvalidSignature),
            "the body hash covers the exact bytes"
        );
        assert_eq!(
            verify(&s, &headers(&auth), body, now + 301),
            Err(WebhookError::StaleTimestamp { age_secs: 301 })
        );
        assert_eq!(
            verify(&s, &HeaderMap::new(), body, now),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify(&s, &headers("Basic abc"), body, now),
            Err(WebhookError::MissingSignature)
        );
        // Without the scheme word, as some samples send it.
        assert!(verify(&s, &headers(jwt), body, now).is_ok());
    }
}
