//! Minted HS256 credentials: Zoom Meeting SDK signatures, Zoom Video SDK
//! tokens and Vonage/OpenTok project JWTs (spec sections 0-3).
//!
//! Every token uses the exact header bytes `{"alg":"HS256","typ":"JWT"}`,
//! compact claims in the order of the platforms' official samples (struct
//! field order), optional claims left out rather than `null`, and the raw
//! UTF-8 bytes of the secret as the HMAC key (never hex- or base64-decoded).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

/// base64url of `{"alg":"HS256","typ":"JWT"}`.
const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// Signs `claims` as a compact HS256 JWT with the raw bytes of `secret`.
pub fn sign_hs256(claims: &impl Serialize, secret: &[u8]) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    sign_payload(&payload, secret)
}

/// Signs an already-serialized payload (exact bytes).
pub fn sign_payload(payload: &[u8], secret: &[u8]) -> String {
    let mut out = String::with_capacity(HEADER_B64.len() + payload.len() * 4 / 3 + 48);
    out.push_str(HEADER_B64);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut out);
    out
}

/// A meeting number as it appears in the `mn` claim. The gateway emits a
/// digit string (the type Zoom's sample uses); a number is kept for
/// reproducing tokens made by others.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum MeetingNumber {
    Digits(String),
    Number(u64),
}

/// Meeting SDK claims, in the order of zoom/meetingsdk-auth-endpoint-sample.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingSdkClaims<'a> {
    pub app_key: &'a str,
    pub sdk_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mn: Option<MeetingNumber>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<u8>,
    pub iat: u64,
    pub exp: u64,
    pub token_exp: u64,
    #[serde(rename = "video_webrtc_mode", skip_serializing_if = "Option::is_none")]
    pub video_webrtc_mode: Option<u8>,
}

/// Gateway policy for the Meeting SDK: `iat = now - 30` (absorbs clock drift
/// between the gateway and Zoom), `exp = iat + ttl`, `tokenExp = exp`.
pub fn meeting_sdk(
    client_id: &str,
    secret: &[u8],
    meeting: &str,
    role: u8,
    ttl_secs: u64,
    now: u64,
) -> String {
    let iat = now.saturating_sub(30);
    sign_hs256(
        &MeetingSdkClaims {
            app_key: client_id,
            sdk_key: client_id,
            mn: Some(MeetingNumber::Digits(meeting.to_owned())),
            role: Some(role),
            iat,
            exp: iat + ttl_secs,
            token_exp: iat + ttl_secs,
            video_webrtc_mode: None,
        },
        secret,
    )
}

/// Video SDK claims, in the order of zoom/videosdk-auth-endpoint-sample.
#[derive(Debug, Default, Serialize)]
pub struct VideoSdkClaims<'a> {
    pub app_key: &'a str,
    pub role_type: u8,
    pub tpc: &'a str,
    pub version: u8,
    pub iat: u64,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_identity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geo_regions: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_recording_option: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_recording_election: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_tracking_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video_webrtc_mode: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_webrtc_mode: Option<u8>,
}

/// The Video SDK's `user_identity` limit.
pub const MAX_USER_IDENTITY: usize = 35;
/// The Video SDK's `session_key` limit.
pub const MAX_SESSION_KEY: usize = 36;
/// The Video SDK's `tpc` (session name) limit.
pub const MAX_SESSION_NAME: usize = 200;

/// Cuts `s` to at most `max` characters (not bytes).
pub fn cut_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Gateway policy for the Video SDK: `iat = now - 30`, `exp = iat + ttl`,
/// `version = 1`.
#[allow(clippy::too_many_arguments)]
pub fn video_sdk(
    app_key: &str,
    secret: &[u8],
    session: &str,
    role: u8,
    user_identity: Option<&str>,
    session_key: Option<&str>,
    ttl_secs: u64,
    now: u64,
) -> String {
    let iat = now.saturating_sub(30);
    sign_hs256(
        &VideoSdkClaims {
            app_key,
            role_type: role,
            tpc: session,
            version: 1,
            iat,
            exp: iat + ttl_secs,
            user_identity,
            session_key,
            ..Default::default()
        },
        secret,
    )
}

/// OpenTok project JWT claims (REST reference order).
#[derive(Debug, Serialize)]
pub struct OpenTokClaims<'a> {
    pub iss: &'a str,
    pub ist: &'a str,
    pub iat: u64,
    pub exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<&'a str>,
}

/// A fresh project JWT: `iat = now`, `exp = now + ttl`, a random UUID v4
/// `jti`. Minted per upstream request, never cached.
pub fn opentok_project(api_key: &str, secret: &[u8], ttl_secs: u64, now: u64) -> String {
    let jti = uuid::Uuid::new_v4().to_string();
    sign_hs256(
        &OpenTokClaims {
            iss: api_key,
            ist: "project",
            iat: now,
            exp: now + ttl_secs,
            jti: Some(&jti),
        },
        secret,
    )
}

/// A meeting number from a request: 9 to 12 ASCII digits.
pub fn valid_meeting_number(s: &str) -> bool {
    (9..=12).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    use crate::test_vectors::vector;

    fn s<'a>(v: &'a Value, k: &str) -> &'a str {
        v["inputs"][k].as_str().unwrap()
    }

    fn expected(v: &Value) -> &str {
        v["expected"]["jwt"].as_str().unwrap()
    }

    #[test]
    fn meeting_sdk_vectors_byte_for_byte() {
        // Gateway policy with a fixed clock: now = iat + 30.
        let v = vector("zoom_meeting_sdk_jwt_web_participant");
        let t = meeting_sdk(
            s(&v, "sdk_key"),
            s(&v, "sdk_secret").as_bytes(),
            "123456789",
            0,
            7200,
            1_700_000_030,
        );
        assert_eq!(t, expected(&v));

        let v = vector("zoom_meeting_sdk_jwt_web_host_webrtc");
        let claims = MeetingSdkClaims {
            app_key: s(&v, "sdk_key"),
            sdk_key: s(&v, "sdk_key"),
            mn: Some(MeetingNumber::Digits("123456789".into())),
            role: Some(1),
            iat: 1_700_000_000,
            exp: 1_700_007_200,
            token_exp: 1_700_007_200,
            video_webrtc_mode: Some(1),
        };
        assert_eq!(
            sign_hs256(&claims, s(&v, "sdk_secret").as_bytes()),
            expected(&v)
        );

        let v = vector("zoom_meeting_sdk_jwt_native_no_meeting");
        let claims = MeetingSdkClaims {
            mn: None,
            role: None,
            video_webrtc_mode: None,
            ..claims
        };
        assert_eq!(
            sign_hs256(&claims, s(&v, "sdk_secret").as_bytes()),
            expected(&v)
        );

        let v = vector("zoom_meeting_sdk_jwt_numeric_mn");
        let claims = MeetingSdkClaims {
            mn: Some(MeetingNumber::Number(85_746_065_432)),
            role: Some(0),
            ..claims
        };
        assert_eq!(
            sign_hs256(&claims, s(&v, "sdk_secret").as_bytes()),
            expected(&v)
        );
    }

    #[test]
    fn every_minting_vector_payload_matches_our_serialization() {
        for name in [
            "zoom_meeting_sdk_jwt_web_participant",
            "zoom_meeting_sdk_jwt_web_host_webrtc",
            "zoom_meeting_sdk_jwt_native_no_meeting",
            "zoom_meeting_sdk_jwt_numeric_mn",
            "zoom_video_sdk_jwt_host",
            "zoom_video_sdk_jwt_participant_options",
            "opentok_project_jwt",
            "opentok_project_jwt_no_jti_300s",
        ] {
            let v = vector(name);
            assert_eq!(v["inputs"]["header_json"], r#"{"alg":"HS256","typ":"JWT"}"#);
            let secret = v["inputs"]
                .get("sdk_secret")
                .or(v["inputs"].get("api_secret"))
                .unwrap()
                .as_str()
                .unwrap();
            let t = sign_payload(s(&v, "payload_json").as_bytes(), secret.as_bytes());
            assert_eq!(t, expected(&v), "{name}");
        }
    }

    #[test]
    fn video_sdk_vectors_byte_for_byte() {
        let v = vector("zoom_video_sdk_jwt_host");
        let t = video_sdk(
            s(&v, "sdk_key"),
            s(&v, "sdk_secret").as_bytes(),
            "Cool Cars",
            1,
            Some("user123"),
            Some("session123"),
            7200,
            1_700_000_030,
        );
        assert_eq!(t, expected(&v));
        let v = vector("zoom_video_sdk_jwt_participant_options");
        let claims = VideoSdkClaims {
            app_key: s(&v, "sdk_key"),
            role_type: 0,
            tpc: "Cool Cars",
            version: 1,
            iat: 1_700_000_000,
            exp: 1_700_007_200,
            geo_regions: Some("US,DE"),
            cloud_recording_option: Some(1),
            cloud_recording_election: Some(0),
            video_webrtc_mode: Some(1),
            audio_webrtc_mode: Some(1),
            ..Default::default()
        };
        assert_eq!(
            sign_hs256(&claims, s(&v, "sdk_secret").as_bytes()),
            expected(&v)
        );
    }

    #[test]
    fn opentok_vectors_byte_for_byte_and_fresh_jti() {
        let v = vector("opentok_project_jwt");
        let claims = OpenTokClaims {
            iss: s(&v, "api_key"),
            ist: "project",
            iat: 1_700_000_000,
            exp: 1_700_000_180,
            jti: Some("5f0c7e1e-3b7a-4c55-9d0e-8a1b2c3d4e5f"),
        };
        assert_eq!(
            sign_hs256(&claims, s(&v, "api_secret").as_bytes()),
            expected(&v)
        );
        let v = vector("opentok_project_jwt_no_jti_300s");
        let claims = OpenTokClaims {
            jti: None,
            exp: 1_700_000_300,
            ..claims
        };
        assert_eq!(
            sign_hs256(&claims, s(&v, "api_secret").as_bytes()),
            expected(&v)
        );
        // Minted tokens always carry a fresh jti.
        let a = opentok_project("12345678", b"secret", 180, 1_700_000_000);
        let b = opentok_project("12345678", b"secret", 180, 1_700_000_000);
        assert_ne!(a, b);
        let payload: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(a.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
            180
        );
        assert_eq!(
            uuid::Uuid::parse_str(payload["jti"].as_str().unwrap())
                .unwrap()
                .get_version_num(),
            4
        );
        assert_eq!(payload["iss"], "12345678", "the API key as a string");
    }

    #[test]
    fn secrets_are_raw_utf8_never_hex_decoded() {
        let v = vector("jsrsasign_hex_secret_pitfall");
        let t = sign_payload(s(&v, "payload_json").as_bytes(), s(&v, "secret").as_bytes());
        assert_eq!(t, v["expected"]["jwt_with_raw_utf8_key"].as_str().unwrap());
        assert_ne!(
            t,
            v["expected"]["jwt_with_hex_decoded_key"].as_str().unwrap()
        );
    }

    #[test]
    fn meeting_numbers_and_identity_cuts() {
        for ok in ["123456789", "85746065432", "123456789012"] {
            assert!(valid_meeting_number(ok), "{ok}");
        }
        for bad in [
            "12345678",
            "1234567890123",
            "123 OR 1",
            "１２３４５６７８９",
            "12345678a",
            "",
            &"9".repeat(40),
        ] {
            assert!(!valid_meeting_number(bad), "{bad}");
        }
        assert_eq!(cut_chars(&"é".repeat(40), 35).chars().count(), 35);
        assert_eq!(cut_chars("short", 35), "short");
    }
}
