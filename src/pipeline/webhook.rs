//! Webhook signatures, checked on the raw body bytes before anything reaches
//! the app: Zoom (`x-zm-signature`), Standard Webhooks and GitHub. Secrets
//! are tried in order (rotation); MACs are compared in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::{WebhookKind, WebhookSettings};

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused (all 401: the platform must not retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookError {
    /// A signature, timestamp or id header is missing or malformed.
    MissingSignature,
    /// No configured secret produces the signature.
    InvalidSignature,
    /// The timestamp is further from now than `tolerance_secs`.
    StaleTimestamp { age_secs: i64 },
}

impl WebhookError {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            WebhookError::MissingSignature => "missing_signature",
            WebhookError::InvalidSignature => "invalid_signature",
            WebhookError::StaleTimestamp { .. } => "stale_timestamp",
        }
    }

    /// What the sender is told.
    pub fn description(self) -> &'static str {
        match self {
            WebhookError::MissingSignature => {
                "the webhook signature headers are missing or malformed"
            }
            WebhookError::InvalidSignature => "the webhook signature is not valid",
            WebhookError::StaleTimestamp { .. } => {
                "the webhook timestamp is outside the accepted window"
            }
        }
    }
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Index of the secret that verified it (the one that answers a Zoom
    /// URL validation).
    pub secret: usize,
    /// What identifies this event for duplicate detection (docs/BEHAVIOUR.md
    /// item 25). Every scheme has one: a delivery that lacks its scheme's
    /// id is refused (`missing_signature`), never forwarded undeduplicated.
    pub dedup_key: String,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

pub(super) fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m
}

fn check_time(ts: &str, now: i64, settings: &WebhookSettings) -> Result<(), WebhookError> {
    let ts: i64 = ts.parse().map_err(|_| WebhookError::MissingSignature)?;
    let age = now - ts;
    if age.unsigned_abs() > settings.tolerance.as_secs() {
        return Err(WebhookError::StaleTimestamp { age_secs: age });
    }
    Ok(())
}

/// Verifies a delivery for `settings` at `now` (Unix seconds).
pub fn verify(
    settings: &WebhookSettings,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Verified, WebhookError> {
    match settings.kind {
        WebhookKind::Zoom => {
            let sig = header(headers, "x-zm-signature").ok_or(WebhookError::MissingSignature)?;
            let ts =
                header(headers, "x-zm-request-timestamp").ok_or(WebhookError::MissingSignature)?;
            let hex_sig = sig
                .strip_prefix("v0=")
                .ok_or(WebhookError::MissingSignature)?;
            let want = hex::decode(hex_sig).map_err(|_| WebhookError::MissingSignature)?;
            if want.len() != 32 {
                return Err(WebhookError::MissingSignature);
            }
            // Signature before timestamp: an unsigned request learns nothing
            // about the window.
            let secret = settings
                .secrets
                .iter()
                .position(|s| {
                    mac(&s.0, &[b"v0:", ts.as_bytes(), b":", body])
                        .verify_slice(&want)
                        .is_ok()
                })
                .ok_or(WebhookError::InvalidSignature)?;
            check_time(ts, now, settings)?;
            let digest = Sha256::digest(body);
            Ok(Verified {
                secret,
                dedup_key: hex::encode(digest),
            })
        }
        WebhookKind::Standard => {
            let id = header(headers, "webhook-id").ok_or(WebhookError::MissingSignature)?;
            let ts = header(headers, "webhook-timestamp").ok_or(WebhookError::MissingSignature)?;
            let sigs =
                header(headers, "webhook-signature").ok_or(WebhookError::MissingSignature)?;
            let candidates: Vec<Vec<u8>> = sigs
                .split(' ')
                .filter_map(|s| s.strip_prefix("v1,"))
                .filter_map(|b| STANDARD.decode(b).ok())
                .collect();
            if candidates.is_empty() || id.is_empty() {
                return Err(WebhookError::MissingSignature);
            }
            let secret = settings
                .secrets
                .iter()
                .position(|s| {
                    let m = mac(&s.0, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                    candidates.iter().any(|c| m.clone().verify_slice(c).is_ok())
                })
                .ok_or(WebhookError::InvalidSignature)?;
            check_time(ts, now, settings)?;
            Ok(Verified {
                secret,
                dedup_key: id.to_owned(),
            })
        }
        WebhookKind::Vonage => super::webhook_vonage::verify(settings, headers, body, now),
        WebhookKind::Github => {
            let sig =
                header(headers, "x-hub-signature-256").ok_or(WebhookError::MissingSignature)?;
            let want = sig
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .filter(|w| w.len() == 32)
                .ok_or(WebhookError::MissingSignature)?;
            // The delivery id is the dedup key (docs/BEHAVIOUR.md item 25) and
            // GitHub always sends one: without it a redelivered event would
            // skip duplicate detection.
            let delivery = header(headers, "x-github-delivery")
                .filter(|d| !d.is_empty())
                .ok_or(WebhookError::MissingSignature)?;
            let secret = settings
                .secrets
                .iter()
                .position(|s| mac(&s.0, &[body]).verify_slice(&want).is_ok())
                .ok_or(WebhookError::InvalidSignature)?;
            Ok(Verified {
                secret,
                dedup_key: delivery.to_owned(),
            })
        }
    }
}

/// The answer to Zoom's `endpoint.url_validation`, byte for byte as the
/// platform's samples write it:
/// `{"plainToken":"..","encryptedToken":"<hex HMAC-SHA256(secret, plainToken)>"}`.
pub fn url_validation_answer(secret: &[u8], plain_token: &str) -> String {
    let tag = mac(secret, &[plain_token.as_bytes()])
        .finalize()
        .into_bytes();
    let plain = serde_json::Value::String(plain_token.to_owned());
    format!(
        "{{\"plainToken\":{plain},\"encryptedToken\":\"{}\"}}",
        hex::encode(tag)
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::SecretBytes;
    use serde_json::Value;
    use std::time::Duration;

    use crate::test_vectors::vector;

    /// A webhook of `kind` with the default tolerance and dedup window.
    pub(in crate::pipeline) fn settings(
        kind: WebhookKind,
        secrets: &[&str],
        application_id: Option<&str>,
    ) -> WebhookSettings {
        WebhookSettings {
            name: format!("{kind:?}").to_lowercase(),
            kind,
            secrets: secrets
                .iter()
                .map(|s| SecretBytes(s.as_bytes().to_vec()))
                .collect(),
            tolerance: Duration::from_secs(300),
            dedup: Duration::from_secs(86_400),
            application_id: application_id.map(str::to_owned),
        }
    }

    fn zoom(secrets: &[&str]) -> WebhookSettings {
        settings(WebhookKind::Zoom, secrets, None)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn input<'a>(v: &'a Value, k: &str) -> &'a str {
        v["inputs"][k]
            .as_str()
            .unwrap_or_else(|| panic!("inputs.{k}"))
    }

    #[test]
    fn zoom_signature_vector_verifies_with_rotation() {
        let v = vector("zoom_webhook_signature");
        let (secret, ts, body) = (
            input(&v, "secret_token"),
            input(&v, "x_zm_request_timestamp"),
            input(&v, "raw_body_utf8"),
        );
        let sig = "v0=cf4d63ea481260a909674e315d27d56e025db18486cc64ad127a57d199b7de3a";
        assert!(v.to_string().contains(sig));
        let h = headers(&[("x-zm-signature", sig), ("x-zm-request-timestamp", ts)]);
        let now: i64 = ts.parse().unwrap();
        let ok = verify(&zoom(&["another", secret]), &h, body.as_bytes(), now).unwrap();
        assert_eq!(ok.secret, 1, "the second secret verified (rotation)");
        assert_eq!(ok.dedup_key, hex::encode(Sha256::digest(body.as_bytes())));
        assert_eq!(
            verify(&zoom(&["wrong"]), &h, body.as_bytes(), now),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn reserialized_body_and_other_timestamp_do_not_verify() {
        for name in [
            "zoom_webhook_signature_reserialized_body_mismatch",
            "zoom_webhook_signature_timestamp_mismatch",
        ] {
            let v = vector(name);
            let ts = input(&v, "x_zm_request_timestamp");
            let h = headers(&[
                ("x-zm-signature", input(&v, "x_zm_signature_header")),
                ("x-zm-request-timestamp", ts),
            ]);
            let r = verify(
                &zoom(&[input(&v, "secret_token")]),
                &h,
                input(&v, "raw_body_utf8").as_bytes(),
                ts.parse().unwrap(),
            );
            assert_eq!(r, Err(WebhookError::InvalidSignature), "{name}");
            // What the vector says the signature for these bytes would be does verify.
            let computed = v["expected"]
                .as_object()
                .unwrap()
                .values()
                .find_map(|x| x.as_str().filter(|s| s.starts_with("v0=")))
                .unwrap();
            let h = headers(&[("x-zm-signature", computed), ("x-zm-request-timestamp", ts)]);
            assert!(
                verify(
                    &zoom(&[input(&v, "secret_token")]),
                    &h,
                    input(&v, "raw_body_utf8").as_bytes(),
                    ts.parse().unwrap()
                )
                .is_ok(),
                "{name}"
            );
        }
    }

    #[test]
    fn tolerance_policy_vector() {
        let base = vector("zoom_webhook_signature");
        let (secret, body) = (input(&base, "secret_token"), input(&base, "raw_body_utf8"));
        let sig = "v0=cf4d63ea481260a909674e315d27d56e025db18486cc64ad127a57d199b7de3a";
        let v = vector("zoom_webhook_timestamp_tolerance_policy");
        let h = headers(&[
            ("x-zm-signature", sig),
            (
                "x-zm-request-timestamp",
                input(&v, "x_zm_request_timestamp"),
            ),
        ]);
        let cases = v["inputs"]["now_unix_cases"].as_array().unwrap();
        let accept = v["expected"]["accept"].as_array().unwrap();
        for (now, ok) in cases.iter().zip(accept) {
            let r = verify(&zoom(&[secret]), &h, body.as_bytes(), now.as_i64().unwrap());
            assert_eq!(r.is_ok(), ok.as_bool().unwrap(), "now = {now}");
            if r.is_err() {
                assert!(matches!(r, Err(WebhookError::StaleTimestamp { .. })));
            }
        }
    }

    #[test]
    fn url_validation_vector() {
        let v = vector("zoom_webhook_url_validation");
        let (secret, ts, body) = (
            input(&v, "secret_token"),
            input(&v, "x_zm_request_timestamp"),
            input(&v, "raw_body_utf8"),
        );
        let h = headers(&[
            (
                "x-zm-signature",
                v["expected"]["x_zm_signature_of_request"].as_str().unwrap(),
            ),
            ("x-zm-request-timestamp", ts),
        ]);
        let ok = verify(&zoom(&[secret]), &h, body.as_bytes(), ts.parse().unwrap()).unwrap();
        assert_eq!(ok.secret, 0);
        let plain: Value = serde_json::from_str(body).unwrap();
        let answer = url_validation_answer(
            secret.as_bytes(),
            plain["payload"]["plainToken"].as_str().unwrap(),
        );
        assert_eq!(
            answer,
            v["expected"]["response_body_json"].as_str().unwrap()
        );
    }

    #[test]
    fn malformed_headers_are_missing_signature() {
        let s = zoom(&["k"]);
        for h in [
            headers(&[]),
            headers(&[("x-zm-signature", "v0=abc")]),
            headers(&[("x-zm-signature", "v1=00"), ("x-zm-request-timestamp", "1")]),
            headers(&[
                ("x-zm-signature", &format!("v0={}", "zz".repeat(32))),
                ("x-zm-request-timestamp", "1"),
            ]),
        ] {
            assert_eq!(
                verify(&s, &h, b"{}", 1),
                Err(WebhookError::MissingSignature)
            );
        }
    }

    #[test]
    fn standard_and_github_schemes() {
        let key = b"standard-key-bytes".to_vec();
        let s = WebhookSettings {
            name: "billing".into(),
            kind: WebhookKind::Standard,
            secrets: vec![SecretBytes(key.clone())],
            tolerance: Duration::from_secs(300),
            dedup: Duration::from_secs(60),
            application_id: None,
        };
        let body = br#"{"type":"invoice.paid"}"#;
        let sig = STANDARD.encode(
            mac(&key, &[b"msg_1.1700000000.", body])
                .finalize()
                .into_bytes(),
        );
        let h = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "1700000000"),
            ("webhook-signature", &format!("v1,AAAA v1,{sig}")),
        ]);
        let ok = verify(&s, &h, body, 1_700_000_010).unwrap();
        assert_eq!(ok.dedup_key, "msg_1");
        assert_eq!(
            verify(&s, &h, b"{}", 1_700_000_010),
            Err(WebhookError::InvalidSignature)
        );
        assert!(matches!(
            verify(&s, &h, body, 1_700_000_400),
            Err(WebhookError::StaleTimestamp { .. })
        ));

        let g = WebhookSettings {
            kind: WebhookKind::Github,
            name: "repo".into(),
            ..s
        };
        let hex_sig = hex::encode(mac(&key, &[body]).finalize().into_bytes());
        let h = headers(&[
            ("x-hub-signature-256", &format!("sha256={hex_sig}")),
            ("x-github-delivery", "d-1"),
        ]);
        assert_eq!(verify(&g, &h, body, 0).unwrap().dedup_key, "d-1");
        assert_eq!(verify(&g, &h, b"x", 0), Err(WebhookError::InvalidSignature));
        for delivery in [None, Some(""), Some("  ")] {
            let mut h = headers(&[("x-hub-signature-256", &format!("sha256={hex_sig}"))]);
            if let Some(d) = delivery {
                h.insert("x-github-delivery", d.parse().unwrap());
            }
            assert_eq!(
                verify(&g, &h, body, 0),
                Err(WebhookError::MissingSignature),
                "delivery id {delivery:?}"
            );
        }
    }
}
