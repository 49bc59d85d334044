//! OpenTok session tokens for apps still on OpenTok (docs/platforms/
//! platforms-2026.md section 5): the JWT format the current opentok SDK
//! issues by default (HS256 with the API secret) and the legacy T1 format
//! (HMAC-SHA1 over Node's `querystring` encoding). Token data fields in the
//! SDK's order; the random parts (`nonce`, clock) are the caller's, so fixed
//! inputs give the spec's vectors byte for byte.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use super::mint::sign_hs256;
use super::vonage::ClientRole;

/// What Node's `querystring.escape` leaves alone (as `encodeURIComponent`).
const QUERYSTRING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The token data, in the SDK's field order.
#[derive(Debug, Clone, Serialize)]
pub struct TokenData<'a> {
    pub session_id: &'a str,
    pub create_time: u64,
    /// A JSON number (the SDK's `Math.random()`).
    pub nonce: serde_json::Number,
    pub role: ClientRole,
    pub expire_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_data: Option<&'a str>,
    pub initial_layout_class_list: String,
    pub scope: &'a str,
}

impl TokenData<'_> {
    /// The `querystring.stringify` form the T1 MAC covers.
    fn query(&self) -> String {
        let enc = |s: &str| utf8_percent_encode(s, QUERYSTRING).to_string();
        let mut q = format!(
            "session_id={}&create_time={}&nonce={}&role={}&expire_time={}",
            enc(self.session_id),
            self.create_time,
            self.nonce,
            self.role.as_str(),
            self.expire_time
        );
        if let Some(d) = self.connection_data {
            q.push_str("&connection_data=");
            q.push_str(&enc(d));
        }
        q.push_str("&initial_layout_class_list=");
        q.push_str(&enc(&self.initial_layout_class_list));
        q.push_str("&scope=");
        q.push_str(&enc(self.scope));
        q
    }
}

/// A random nonce in [0.1, 1): always written in plain decimal (as
/// `Math.random()` values are), never in exponent form.
pub fn random_nonce() -> serde_json::Number {
    let bits = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .expect("8 bytes"),
    );
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    serde_json::Number::from_f64(0.1 + 0.9 * unit).expect("a finite number")
}

/// The T1 token: `T1==` + base64(`partner_id=KEY&sig=HEX:DATA`), `sig` the
/// lowercase hex HMAC-SHA1 of `DATA` with the API secret.
pub fn t1_token(api_key: &str, api_secret: &[u8], data: &TokenData<'_>) -> String {
    use aws_lc_rs::hmac;
    let query = data.query();
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, api_secret);
    let sig = hex::encode(hmac::sign(&key, query.as_bytes()).as_ref());
    let inner = format!("partner_id={api_key}&sig={sig}:{query}");
    format!("T1=={}", STANDARD.encode(inner))
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    ist: &'a str,
    iat: u64,
    exp: u64,
    #[serde(flatten)]
    data: &'a TokenData<'a>,
}

/// The JWT session token the opentok SDK issues by default.
pub fn jwt_token(api_key: &str, api_secret: &[u8], data: &TokenData<'_>, now: u64) -> String {
    sign_hs256(
        &JwtClaims {
            iss: api_key,
            ist: "project",
            iat: now,
            exp: data.expire_time,
            data,
        },
        api_secret,
    )
}

/// Whether an OpenTok session id belongs to `api_key` (the SDK refuses to
/// make a token otherwise): after the two-character prefix, URL-safe base64
/// whose second `~`-separated field is the API key.
pub fn session_belongs_to(session_id: &str, api_key: &str) -> bool {
    let Some(body) = session_id.get(2..) else {
        return false;
    };
    let mut b64 = body.to_owned();
    while b64.len() % 4 != 0 {
        b64.push('=');
    }
    let Ok(decoded) = URL_SAFE.decode(b64) else {
        return false;
    };
    String::from_utf8_lossy(&decoded).split('~').nth(1) == Some(api_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::vector;

    fn data<'a>(v: &'a serde_json::Value, classes: &'a mut String) -> TokenData<'a> {
        let i = &v["inputs"];
        let o = &i["options"];
        let now = i["now"].as_u64().unwrap();
        *classes = o["initialLayoutClassList"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        TokenData {
            session_id: i["session_id"].as_str().unwrap(),
            create_time: now,
            nonce: o["nonce"]
                .as_number()
                .or(i["math_random"].as_number())
                .unwrap()
                .clone(),
            role: ClientRole::parse(o["role"].as_str().unwrap_or("publisher")).unwrap(),
            expire_time: o["expireTime"].as_u64().unwrap_or(now + 86400),
            connection_data: o["data"].as_str(),
            initial_layout_class_list: classes.clone(),
            scope: "session.connect",
        }
    }

    fn secret(v: &serde_json::Value) -> &[u8] {
        v["inputs"]["api_secret"].as_str().unwrap().as_bytes()
    }

    #[test]
    fn t1_tokens_match_the_sdk_byte_for_byte() {
        for name in ["opentok_t1_token_default", "opentok_t1_token_options"] {
            let v = vector(name);
            let mut classes = String::new();
            let d = data(&v, &mut classes);
            let t = t1_token(v["inputs"]["api_key"].as_str().unwrap(), secret(&v), &d);
            assert_eq!(t, v["expected"]["token"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn jwt_session_tokens_match_the_sdk_byte_for_byte() {
        for name in [
            "opentok_jwt_session_token_default",
            "opentok_jwt_session_token_options",
            "opentok_jwt_session_token_explicit_nonce",
        ] {
            let v = vector(name);
            let mut classes = String::new();
            let d = data(&v, &mut classes);
            let now = v["inputs"]["now"].as_u64().unwrap();
            let t = jwt_token(
                v["inputs"]["api_key"].as_str().unwrap(),
                secret(&v),
                &d,
                now,
            );
            assert_eq!(t, v["expected"]["jwt"].as_str().unwrap(), "{name}");
        }
    }

    #[test]
    fn a_session_of_another_project_is_recognised() {
        let v = vector("opentok_t1_token_default");
        let sid = v["inputs"]["session_id"].as_str().unwrap();
        assert!(session_belongs_to(sid, "12345678"));
        assert!(!session_belongs_to(sid, "87654321"));
        assert!(!session_belongs_to("1_", "12345678"));
        assert!(!session_belongs_to("1_!!!!", "12345678"));
    }

    #[test]
    fn random_nonces_are_plain_decimals_below_one() {
        for _ in 0..1000 {
            let n = random_nonce();
            let s = n.to_string();
            let f = n.as_f64().unwrap();
            assert!(
                (0.1..1.0).contains(&f) && s.starts_with("0.") && !s.contains('e'),
                "{s}"
            );
        }
    }
}
