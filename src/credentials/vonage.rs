//! Vonage Video credentials signed with the application's RSA private key
//! (docs/platforms/platforms-2026.md section 4): the application JWT for
//! REST calls and the client token a browser or mobile client connects to a
//! session with. RS256 over the exact header `{"alg":"RS256","typ":"JWT"}`,
//! claims in @vonage/jwt's order (struct field order), `application_id`
//! last. RSASSA-PKCS1-v1_5 is deterministic, so fixed inputs give the
//! spec's vectors byte for byte.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use serde::Serialize;

/// base64url of `{"alg":"RS256","typ":"JWT"}`.
const HEADER_B64: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9";

/// Longest `connection_data` and joined class list the platform accepts.
pub const MAX_CONNECTION_DATA: usize = 1024;

/// A Vonage application's signing key, parsed and checked once at
/// configuration time. (jsonwebtoken's `crypto::sign` re-parses and
/// re-validates the RSA key on every signature, which costs as much as the
/// signature itself; a respond route answering client tokens signs on every
/// request.)
pub struct AppKey(aws_lc_rs::signature::RsaKeyPair);

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey([REDACTED])")
    }
}

impl AppKey {
    /// A freshly generated key standing in for one `check --no-secrets`
    /// does not read: it lets the rest of the file be checked and never
    /// signs anything.
    ///
    /// # Errors
    /// When the key cannot be generated.
    pub fn stand_in() -> Result<Self, String> {
        aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map(AppKey)
            .map_err(|_| "cannot generate a stand-in key".to_owned())
    }

    /// An RSA private key in PKCS#8 PEM (`BEGIN PRIVATE KEY`, as the
    /// dashboard's `private.key`). PKCS#1 (`BEGIN RSA PRIVATE KEY`) is
    /// refused with the conversion to run: the SDKs expect PKCS#8 too.
    ///
    /// # Errors
    /// What is wrong with the PEM (never its content).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, String> {
        let pem = pem.trim();
        if pem.starts_with("-----BEGIN RSA PRIVATE KEY") {
            return Err("is a PKCS#1 key (BEGIN RSA PRIVATE KEY); convert it with: openssl pkcs8 -topk8 -nocrypt -in private.key -out private-pkcs8.key".to_owned());
        }
        if !pem.starts_with("-----BEGIN PRIVATE KEY") {
            return Err("is not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)".to_owned());
        }
        // jsonwebtoken's PEM reader hands over the RSAPrivateKey (PKCS#1)
        // DER inside the PKCS#8 envelope.
        let key = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| "is not an RSA private key in PKCS#8 PEM".to_owned())?;
        let pair = aws_lc_rs::signature::RsaKeyPair::from_der(key.as_bytes())
            .map_err(|_| "is not an RSA private key in PKCS#8 PEM".to_owned())?;
        let key = AppKey(pair);
        // A key that cannot sign fails here, not at the first request.
        key.sign(b"probe")
            .ok_or_else(|| "cannot sign RS256 with this key".to_owned())?;
        Ok(key)
    }

    /// The RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message`,
    /// base64url without padding.
    fn sign(&self, message: &[u8]) -> Option<String> {
        let mut sig = vec![0; self.0.public_modulus_len()];
        self.0
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut sig,
            )
            .ok()?;
        Some(URL_SAFE_NO_PAD.encode(sig))
    }
}

/// Signs `claims` as a compact RS256 JWT.
pub fn sign_rs256(claims: &impl Serialize, key: &AppKey) -> String {
    let payload = serde_json::to_vec(claims).expect("claims serialize");
    let mut out = String::with_capacity(HEADER_B64.len() + payload.len() * 4 / 3 + 360);
    out.push_str(HEADER_B64);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut out);
    let sig = key
        .sign(out.as_bytes())
        .expect("the key signed a probe at configuration time");
    out.push('.');
    out.push_str(&sig);
    out
}

/// Application JWT claims (@vonage/jwt `tokenGenerate` with no options).
#[derive(Serialize)]
struct AppClaims<'a> {
    jti: &'a str,
    iat: u64,
    exp: u64,
    application_id: &'a str,
}

/// The application JWT for REST calls (`Authorization: Bearer …`), fresh
/// per request with a random `jti` in the SDK: `jti` is the caller's.
pub fn application_jwt(app_id: &str, key: &AppKey, jti: &str, now: u64, ttl_secs: u64) -> String {
    sign_rs256(
        &AppClaims {
            jti,
            iat: now,
            exp: now + ttl_secs,
            application_id: app_id,
        },
        key,
    )
}

/// Roles a client may connect with, least privilege first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientRole {
    Subscriber,
    Publisher,
    /// Publish without subscribing.
    Publisheronly,
    Moderator,
}

impl ClientRole {
    pub const ALL: [ClientRole; 4] = [
        ClientRole::Subscriber,
        ClientRole::Publisher,
        ClientRole::Publisheronly,
        ClientRole::Moderator,
    ];

    /// The name the platform uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Subscriber => "subscriber",
            ClientRole::Publisher => "publisher",
            ClientRole::Publisheronly => "publisheronly",
            ClientRole::Moderator => "moderator",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What a client token carries besides the session.
#[derive(Debug, Clone)]
pub struct ClientGrant<'a> {
    pub session_id: &'a str,
    pub role: ClientRole,
    /// At most [`MAX_CONNECTION_DATA`] characters.
    pub connection_data: Option<&'a str>,
    /// Joined with one space, at most [`MAX_CONNECTION_DATA`] characters.
    pub layout_classes: &'a [String],
    /// Absolute expiry, unix seconds.
    pub expires_at: u64,
}

#[derive(Serialize)]
struct Acl {
    paths: SessionPaths,
}

#[derive(Serialize)]
struct SessionPaths {
    #[serde(rename = "/session/**")]
    session: Empty,
}

#[derive(Serialize)]
struct Empty {}

/// Client token claims, in @vonage/video `generateClientToken` order.
#[derive(Serialize)]
struct ClientClaims<'a> {
    scope: &'a str,
    session_id: &'a str,
    role: ClientRole,
    initial_layout_class_list: String,
    exp: u64,
    sub: &'a str,
    acl: Acl,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_data: Option<&'a str>,
    jti: &'a str,
    iat: u64,
    application_id: &'a str,
}

/// A Vonage Video client token (`session.connect`) for `grant`.
pub fn client_token(
    app_id: &str,
    key: &AppKey,
    grant: &ClientGrant<'_>,
    jti: &str,
    now: u64,
) -> String {
    sign_rs256(
        &ClientClaims {
            scope: "session.connect",
            session_id: grant.session_id,
            role: grant.role,
            initial_layout_class_list: grant.layout_classes.join(" "),
            exp: grant.expires_at,
            sub: "video",
            acl: Acl {
                paths: SessionPaths { session: Empty {} },
            },
            connection_data: grant.connection_data,
            jti,
            iat: now,
            application_id: app_id,
        },
        key,
    )
}

/// A session id as the platforms issue them: `1_` or `2_` and URL-safe
/// base64, at most 256 characters.
pub fn valid_session_id(s: &str) -> bool {
    (3..=256).contains(&s.len())
        && (s.starts_with("1_") || s.starts_with("2_"))
        && s[2..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vector;

    fn key(v: &serde_json::Value) -> AppKey {
        AppKey::from_pkcs8_pem(v["inputs"]["private_key_pem"].as_str().unwrap()).unwrap()
    }

    fn s<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
        v["inputs"][k].as_str().unwrap_or_else(|| panic!("{k}"))
    }

    #[test]
    fn application_jwt_matches_the_sdk_byte_for_byte() {
        let v = vector("vonage_app_jwt_default");
        let now = v["inputs"]["now"].as_u64().unwrap();
        let t = application_jwt(s(&v, "application_id"), &key(&v), s(&v, "jti"), now, 900);
        assert_eq!(t, v["expected"]["jwt"].as_str().unwrap());
    }

    #[test]
    fn client_tokens_match_the_sdk_byte_for_byte() {
        for name in [
            "vonage_video_client_token_default",
            "vonage_video_client_token_options",
        ] {
            let v = vector(name);
            let opts = &v["inputs"]["token_options"];
            let now = v["inputs"]["now"].as_u64().unwrap();
            let classes: Vec<String> = opts["initialLayoutClassList"]
                .as_array()
                .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
                .unwrap_or_default();
            let grant = ClientGrant {
                session_id: s(&v, "session_id"),
                role: ClientRole::parse(opts["role"].as_str().unwrap_or("publisher")).unwrap(),
                connection_data: opts["data"].as_str(),
                layout_classes: &classes,
                expires_at: opts["expireTime"].as_u64().unwrap_or(now + 86400),
            };
            let t = client_token(s(&v, "application_id"), &key(&v), &grant, s(&v, "jti"), now);
            assert_eq!(t, v["expected"]["jwt"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn pkcs1_and_non_rsa_keys_are_refused_by_name() {
        let e = AppKey::from_pkcs8_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----",
        )
        .unwrap_err();
        assert!(e.contains("PKCS#1") && e.contains("openssl pkcs8"), "{e}");
        let ec = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let e = AppKey::from_pkcs8_pem(&ec).unwrap_err();
        assert!(e.contains("RSA"), "{e}");
        assert!(AppKey::from_pkcs8_pem("not a key").is_err());
    }

    #[test]
    fn session_ids_are_checked_for_shape_and_length() {
        let v = vector("vonage_video_client_token_default");
        assert!(valid_session_id(s(&v, "session_id")));
        for bad in [
            "",
            "1_",
            "3_abc",
            "1_ab/c",
            "1_ab c",
            &format!("1_{}", "a".repeat(255)),
        ] {
            assert!(!valid_session_id(bad), "{bad:?}");
        }
    }
}
