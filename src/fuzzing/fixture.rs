//! The fixed configuration, keys and helpers the fuzz targets share. Built
//! once per process.

use std::sync::OnceLock;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit as _, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;

use super::Fixture;
use crate::config::{WebhookKind, WebhookSettings};

/// The issuer of the fixture's `corp` identity.
pub const ISSUER: &str = "https://idp.fuzz.example";
/// The kid of [`EC_PRIVATE_PEM`]'s public key in [`JWKS`].
pub const EC_KID: &str = "fz-es";
/// The Zoom App client secret (the one of the platform's test vectors, so
/// their contexts decrypt).
pub const ZOOM_APP_SECRET: &str = "TestZoomAppClientSecret_0123456789";
/// "Now" for Zoom App contexts: inside the test vectors' validity.
pub const NOW_MS: u64 = 1_700_000_060_000;
/// "Now" for webhooks: two seconds after the Zoom signature vector.
pub const NOW_SECS: i64 = 1_739_923_530;
/// The Video SDK session capture unless the input names one.
pub const SESSION: &str = "fuzz-session";

/// A P-256 key that exists only for fuzzing: the harness signs tokens with
/// it; only the fixture snapshot trusts it.
pub const EC_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgWnERMRhj89kgWLGA
BymKT3ouqUPVhT/WHTc/y7cmFJShRANCAATdhnsQCjnhFRHRrjWPRbTsVpueLzp8
BV6Am9pnT0VxrLbP4MVn5fbCrIVQ605hcmbNnVhDns+X9dBu1hTCdjq7
-----END PRIVATE KEY-----
";

/// The `corp` identity's keys: the EC key above and an RSA key (whose
/// private half signed the RS256 seeds and was thrown away).
pub const JWKS: &str = r#"{"keys": [
 {"kty": "EC", "crv": "P-256", "x": "3YZ7EAo54RUR0a41j0W07Fabni86fAVegJvaZ09Fcaw", "y": "ts_gxWfl9sKshVDrTmFyZs2dWEOez5f10G7WFMJ2Ors", "kid": "fz-es", "use": "sig", "alg": "ES256"},
 {"kty": "RSA", "n": "qxglLIBtXVIJpe5PpG3i-W2Qc8KZR7Kge9KxrTmjtIcOSDQRodGpuX1Ib_x7QYB1Me2aNiMXVNSMWRbkAeX-E1bfX6saMxaFgmmE5cpGGbNA9TTpqFxoma23U9qZKduL5RmMN31wOZboyDur43tq6nTJ9tJSYHL2wPT9sMSyIVRV32lTioIv5K3q3xmapkxFVJDUAV2yQwIvtAZEhTBVB3xi8DpO39XsTe5VHt3ppq8m7W6zmkFrBPqbzu6s5OfyfEpmAyzFZx6cnaCoBEcU94qRxNS2jTolN3t5Tl-npHEzMd8PymYSlPvq5mkyGmnI6r_ASitNVv1ZBhkG6hKcdQ", "e": "AQAB", "kid": "fz-rs", "use": "sig"}
]}"#;

/// The fixture configuration (`fixture.toml`); `{JWKS_PORT}` is a loopback
/// port nothing listens on (an unknown kid's refetch fails at once, then
/// cools down).
pub const FIXTURE: &str = include_str!("fixture.toml");

/// [`FIXTURE`] with a closed loopback port filled in.
pub(super) fn text() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(1, |a| a.port());
    FIXTURE.replace("{JWKS_PORT}", &port.to_string())
}

/// The shared fixture.
pub(super) fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(super::make_fixture)
}

/// A current-thread runtime for the async entry points (JWT verification,
/// collecting an answer's body).
pub(super) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// A Zoom App context as the platform builds it: AES-256-GCM under `key`
/// with `aad`, laid out `iv_len iv aad_len aad ct_len ct tag`.
pub(super) fn encrypt_context(key: &[u8; 32], aad: &[u8], plain: &[u8], std: bool) -> String {
    let iv = [7u8; 12];
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            &Nonce::try_from(&iv[..]).expect("12 bytes"),
            Payload { msg: plain, aad },
        )
        .expect("AES-GCM encrypts");
    let mut blob = vec![12u8];
    blob.extend(iv);
    blob.extend((aad.len() as u16).to_le_bytes());
    blob.extend(aad);
    blob.extend(((ct.len() - 16) as u32).to_le_bytes());
    blob.extend(ct);
    if std {
        STANDARD.encode(blob)
    } else {
        URL_SAFE_NO_PAD.encode(blob)
    }
}

/// The blob of a context built by [`encrypt_context`].
pub(super) fn decode_any(header: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(header)
        .or_else(|_| STANDARD.decode(header))
        .expect("our own encoding")
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The header value `name` as `verify` reads it, or `default` (inserted).
fn value_or(headers: &mut HeaderMap, name: &'static str, default: &str) -> String {
    match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(v) => v.trim().to_owned(),
        None => {
            headers.insert(name, HeaderValue::from_str(default).expect("ASCII"));
            default.to_owned()
        }
    }
}

/// The application the fixture's `vonage` webhook accepts.
const VONAGE_APP: &str = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";

/// Signs a delivery with the last secret of `settings` as the platform
/// would, keeping the timestamp and id headers the input has.
pub(super) fn sign_webhook(settings: &WebhookSettings, headers: &mut HeaderMap, body: &[u8]) {
    let key = &settings.secrets.last().expect("a secret").0;
    let now = NOW_SECS.to_string();
    let (name, value) = match settings.kind {
        WebhookKind::Zoom => {
            let ts = value_or(headers, "x-zm-request-timestamp", &now);
            let mac = hmac(key, &[b"v0:", ts.as_bytes(), b":", body]);
            ("x-zm-signature", format!("v0={}", hex::encode(mac)))
        }
        WebhookKind::Standard => {
            let id = value_or(headers, "webhook-id", "msg_fuzz");
            let ts = value_or(headers, "webhook-timestamp", &now);
            let mac = hmac(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
            ("webhook-signature", format!("v1,{}", STANDARD.encode(mac)))
        }
        WebhookKind::Vonage => {
            let claims = serde_json::json!({
                "iat": NOW_SECS, "jti": "fuzz-jti", "iss": "Vonage",
                "payload_hash": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body)),
                "application_id": VONAGE_APP,
            });
            let jwt = crate::credentials::mint::sign_hs256(&claims, key);
            ("authorization", format!("Bearer {jwt}"))
        }
        WebhookKind::Github => {
            let mac = hmac(key, &[body]);
            (
                "x-hub-signature-256",
                format!("sha256={}", hex::encode(mac)),
            )
        }
    };
    headers.insert(name, HeaderValue::from_str(&value).expect("ASCII"));
}
