//! Zoom Apps `x-zoom-app-context`: decode, strict parse, AES-256-GCM decrypt
//! with key SHA-256(client secret), then `iss`, `aud`, `exp` and age checks
//! (spec section 6). The blob and the plaintext are never logged.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::GeneralPurposeConfig;
use base64::engine::{DecodePaddingMode, GeneralPurpose};
use base64::Engine as _;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ZoomAppSettings;

/// The only IV length accepted (the GCM standard nonce size).
const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Largest header value considered (contexts are a few hundred bytes).
pub const MAX_CONTEXT_BYTES: usize = 8 * 1024;

/// A verified Zoom App context: the fields the gateway forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoomContext {
    /// `uid`; `None` for guest-mode users.
    pub user_id: Option<String>,
    /// `mid`, when running in a meeting.
    pub meeting_id: Option<String>,
    /// `typ`: `panel`, `meeting`, `webinar`, `chat`, ...
    pub context_type: String,
    /// `attendrole`, when present.
    pub attend_role: Option<String>,
    /// `exp` in milliseconds.
    pub expires_ms: u64,
}

/// Why a context was refused (its reason code: [`super::AuthnError`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextError {
    /// Not base64, bad layout, wrong IV length, or decryption failed.
    Invalid,
    /// `iss`, `aud`, missing `exp`/`ts`, or malformed plaintext.
    Claims,
    /// `exp` passed, `ts` too old or in the future.
    Expired,
    /// No `uid` and the app does not allow guests.
    Guest,
}

/// Accepts both base64 alphabets, padded or not.
fn decode_b64(s: &str) -> Option<Vec<u8>> {
    const LENIENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let url = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
    let std = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
    url.decode(s).or_else(|_| std.decode(s)).ok()
}

/// The AES key of an app: SHA-256 of the client secret's UTF-8 bytes.
pub fn context_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits the decoded blob into (iv, aad, ciphertext||tag), strictly.
fn split(blob: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (&iv_len, rest) = blob.split_first()?;
    let iv_len = iv_len as usize;
    if iv_len != IV_LEN || rest.len() < iv_len + 2 {
        return None;
    }
    let (iv, rest) = rest.split_at(iv_len);
    let aad_len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if rest.len() < aad_len + 4 {
        return None;
    }
    let (aad, rest) = rest.split_at(aad_len);
    let ct_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    if ct_len & 0x8000_0000 != 0 {
        return None;
    }
    let rest = &rest[4..];
    if rest.len() != ct_len as usize + TAG_LEN {
        return None;
    }
    Some((iv, aad, rest))
}

/// Decrypts a header value with `key`; returns the plaintext JSON bytes.
pub fn decrypt(header: &str, key: &[u8; 32]) -> Result<Vec<u8>, ContextError> {
    if header.len() > MAX_CONTEXT_BYTES {
        return Err(ContextError::Invalid);
    }
    let blob = decode_b64(header.trim()).ok_or(ContextError::Invalid)?;
    let (iv, aad, ct_and_tag) = split(&blob).ok_or(ContextError::Invalid)?;
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Nonce::try_from(iv).map_err(|_| ContextError::Invalid)?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ct_and_tag,
                aad,
            },
        )
        .map_err(|_| ContextError::Invalid)
}

#[derive(Deserialize)]
struct Plain {
    typ: Option<String>,
    uid: Option<String>,
    mid: Option<String>,
    ts: Option<u64>,
    exp: Option<u64>,
    iss: Option<String>,
    aud: Option<String>,
    attendrole: Option<String>,
}

/// Decrypts and checks a context for `app` at `now_ms` (milliseconds).
pub fn verify(
    header: &str,
    app: &ZoomAppSettings,
    now_ms: u64,
) -> Result<ZoomContext, ContextError> {
    let key = context_key(app.client_secret.expose_secret());
    let plain = decrypt(header, &key)?;
    let p: Plain = serde_json::from_slice(&plain).map_err(|_| ContextError::Claims)?;
    if p.iss.as_deref() != Some("marketplace.zoom.us") {
        return Err(ContextError::Claims);
    }
    if let Some(client_id) = &app.client_id {
        if p.aud.as_deref() != Some(client_id.as_str()) {
            return Err(ContextError::Claims);
        }
    }
    let leeway_ms = app.leeway.as_millis() as u64;
    let exp = p.exp.ok_or(ContextError::Claims)?;
    if now_ms > exp.saturating_add(leeway_ms) {
        return Err(ContextError::Expired);
    }
    let ts = p.ts.ok_or(ContextError::Claims)?;
    if ts > now_ms.saturating_add(leeway_ms)
        || now_ms.saturating_sub(ts) > app.max_age.as_millis() as u64
    {
        return Err(ContextError::Expired);
    }
    if p.uid.is_none() && !app.allow_guests {
        return Err(ContextError::Guest);
    }
    Ok(ZoomContext {
        user_id: p.uid,
        meeting_id: p.mid,
        context_type: p.typ.ok_or(ContextError::Claims)?,
        attend_role: p.attendrole,
        expires_ms: exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::Value;
    use std::time::Duration;

    use crate::test_vectors::vector;

    fn app(secret: &str, client_id: Option<&str>, guests: bool) -> ZoomAppSettings {
        ZoomAppSettings {
            name: "speaker".into(),
            client_id: client_id.map(str::to_owned),
            client_secret: secret.to_owned().into(),
            max_age: Duration::from_secs(300),
            allow_guests: guests,
            leeway: Duration::ZERO,
        }
    }

    const SECRET: &str = "TestZoomAppClientSecret_0123456789";
    const NOW: u64 = 1_700_000_000_000;

    fn forms(v: &Value) -> [String; 2] {
        [
            v["expected"]["header_base64url_nopad"]
                .as_str()
                .unwrap()
                .to_owned(),
            v["expected"]["header_base64_std"]
                .as_str()
                .unwrap()
                .to_owned(),
        ]
    }

    #[test]
    fn key_is_sha256_of_the_secret() {
        let v = vector("zoom_app_context_with_aad");
        let hex: String = context_key(SECRET)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, v["intermediate"]["aes_key_hex_sha256_of_secret"]);
    }

    #[test]
    fn vectors_decrypt_in_both_alphabets_padded_or_not() {
        for name in ["zoom_app_context_with_aad", "zoom_app_context_empty_aad"] {
            let v = vector(name);
            let want = &v["expected"]["decrypted_json"];
            for h in forms(&v) {
                let plain: Value =
                    serde_json::from_slice(&decrypt(&h, &context_key(SECRET)).unwrap()).unwrap();
                assert_eq!(&plain, want, "{name}");
                let ctx = verify(&h, &app(SECRET, Some("TESTCLIENTID0001"), false), NOW).unwrap();
                assert_eq!(ctx.user_id.as_deref(), want["uid"].as_str());
                assert_eq!(ctx.meeting_id.as_deref(), want["mid"].as_str());
                assert_eq!(ctx.context_type, "meeting");
                assert_eq!(ctx.attend_role.as_deref(), Some("host"));
                let padded = format!(
                    "{}{}",
                    h.trim_end_matches('='),
                    "=".repeat((4 - h.trim_end_matches('=').len() % 4) % 4)
                );
                assert!(verify(&padded, &app(SECRET, None, false), NOW).is_ok());
                let unpadded = h.trim_end_matches('=');
                assert!(verify(unpadded, &app(SECRET, None, false), NOW).is_ok());
            }
        }
    }

    #[test]
    fn wrong_secret_fails_authentication() {
        let v = vector("zoom_app_context_wrong_key_fails");
        let h = v["inputs"]["header_base64url_nopad"].as_str().unwrap();
        let wrong = v["inputs"]["client_secret"].as_str().unwrap();
        assert_eq!(
            verify(h, &app(wrong, None, false), NOW),
            Err(ContextError::Invalid)
        );
        assert!(verify(h, &app(SECRET, None, false), NOW).is_ok());
    }

    #[test]
    fn tampering_and_bad_layout_fail() {
        let v = vector("zoom_app_context_with_aad");
        let h = &forms(&v)[0];
        let a = app(SECRET, None, false);
        let refused = |header: &str| verify(header, &a, NOW) == Err(ContextError::Invalid);
        let mut bytes = decode_b64(h).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(refused(&URL_SAFE_NO_PAD.encode(&bytes)), "tag flipped");
        bytes[last] ^= 1;
        assert!(verify(&URL_SAFE_NO_PAD.encode(&bytes), &a, NOW).is_ok());
        bytes.push(0);
        assert!(refused(&URL_SAFE_NO_PAD.encode(&bytes)), "byte added");
        bytes.truncate(bytes.len() - 2);
        assert!(refused(&URL_SAFE_NO_PAD.encode(&bytes)), "byte removed");
        assert!(refused("%%%"), "not base64url");
        assert!(refused(""), "empty");
    }

    #[test]
    fn expiry_is_checked_in_milliseconds() {
        let v = vector("zoom_app_context_expiry_check");
        let h = &forms(&vector("zoom_app_context_empty_aad"))[0];
        let a = app(SECRET, None, false);
        let cases = v["inputs"]["now_ms_cases"].as_array().unwrap();
        let valid = v["expected"]["valid"].as_array().unwrap();
        for (now, ok) in cases.iter().zip(valid) {
            let r = verify(h, &a, now.as_u64().unwrap());
            assert_eq!(r.is_ok(), ok.as_bool().unwrap(), "now={now}: {r:?}");
        }
    }

    #[test]
    fn age_is_limited_by_max_age() {
        let h = &forms(&vector("zoom_app_context_empty_aad"))[0];
        let mut a = app(SECRET, None, false);
        a.max_age = Duration::from_secs(60);
        assert!(verify(h, &a, NOW + 60_000).is_ok());
        assert_eq!(verify(h, &a, NOW + 60_001), Err(ContextError::Expired));
        assert_eq!(
            verify(h, &a, NOW - 1),
            Err(ContextError::Expired),
            "ts in the future"
        );
    }

    #[test]
    fn audience_must_match_a_configured_client_id() {
        let h = &forms(&vector("zoom_app_context_empty_aad"))[0];
        assert_eq!(
            verify(h, &app(SECRET, Some("OTHER"), false), NOW),
            Err(ContextError::Claims)
        );
    }

    #[test]
    fn guests_need_allow_guests() {
        let v = vector("zoom_app_context_guest_mode");
        for h in forms(&v) {
            assert_eq!(
                verify(&h, &app(SECRET, None, false), NOW),
                Err(ContextError::Guest)
            );
            let ctx = verify(&h, &app(SECRET, None, true), NOW).unwrap();
            assert_eq!(ctx.user_id, None);
            assert_eq!(ctx.attend_role.as_deref(), Some("participant"));
        }
    }

    #[test]
    fn iv_must_be_twelve_bytes() {
        let mut blob = vec![8u8];
        blob.extend([0u8; 8]);
        blob.extend([0u8, 0]);
        blob.extend(0u32.to_le_bytes());
        blob.extend([0u8; 16]);
        assert!(split(&blob).is_none());
    }
}
