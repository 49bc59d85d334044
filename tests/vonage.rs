//! Vonage Video and OpenTok through the gateway, from outside: client
//! session tokens answered with the role the caller's token allows,
//! connection data from claims only, application JWTs injected for REST
//! calls, and the refusals (role not held, malformed session ids, bodies,
//! missing claims) with their codes; `check` refuses a PKCS#1 key and a
//! lifetime outside the platform's window, naming line and key.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use common::issuer::{Issuer, SigningKey};
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

const APP_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";
const API_KEY: &str = "12345678";
const API_SECRET: &str = "0123456789abcdef0123456789abcdef01234567";
const OT_SESSION: &str = "1_MX4xMjM0NTY3OH5-MTc2NzIyNTYwMDAwMH5hYmNkZWZnaGlqa2xtbn5-fg";
const VONAGE_SESSION: &str =
    "2_MX5hYWFhYWFhYS1iYmJiLTRjY2MtOGRkZC0wMTIzNDU2Nzg5YWJ-fjE3NjcyMjU2MDAwMDB-dGVzdHNlc3Npb25-fn4";

/// Verifies an RS256 compact JWT with the public half of the vector key;
/// returns its claims.
fn verify_rs256(jwt: &str) -> Value {
    use aws_lc_rs::signature::{
        KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    };
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(vector_rsa_key().as_bytes()).unwrap();
    let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref());
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    public
        .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
        .expect("signed with the application's key");
    assert!(signed.starts_with("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."));
    jwt_claims(jwt)
}

struct Env {
    gw: TestGateway,
    issuer: Arc<Issuer>,
    key: SigningKey,
    seen: Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>>,
    _keys: tempfile::TempDir,
}

async fn setup() -> Env {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (up, seen) = header_recorder().await;
    let keys = tempfile::tempdir().unwrap();
    let pem = keys.path().join("private.key");
    std::fs::write(&pem, vector_rsa_key()).unwrap();
    let gw = TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[credential.vonage]
type = "vonage_application"
application_id = "{APP_ID}"
private_key = "file:{pem}"
ttl_secs = 300
client_ttl_secs = 3600

[credential.opentok]
type = "opentok_project"
api_key = "{API_KEY}"
api_secret = "{API_SECRET}"

[credential.opentok_t1]
type = "opentok_project"
api_key = "{API_KEY}"
api_secret = "{API_SECRET}"
client_token_format = "t1"

[[route]]
name = "vonage-token"
path = "/vonage/sessions/{{session}}/token"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "vonage", session_param = "session", moderator_roles = ["hosts"], publisher_roles = ["members"], connection_data = ["sub", "name"] }}

[[route]]
name = "opentok-token"
path = "/opentok/token"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "opentok", publisher_roles = ["members"] }}

[[route]]
name = "opentok-t1"
path = "/opentok/t1"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "opentok_t1", moderator_roles = ["hosts"] }}

[[route]]
name = "vonage-rest"
path = "/vonage/api/*"
upstream = "http://{up}"
authenticate = "corp"
inject = [{{ credential = "vonage", header = "Authorization" }}]
"#,
        iss = issuer.url,
        pem = pem.display()
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    Env {
        gw,
        issuer,
        key,
        seen,
        _keys: keys,
    }
}

impl Env {
    async fn post(&self, path: &str, claims: Value, body: &str) -> (StatusCode, Value) {
        let token = self.key.sign(&self.issuer.claims("alice", claims));
        let auth = format!("Bearer {token}");
        let (s, _, b) = send(
            &self.gw.h1(),
            "POST",
            &self.gw.url(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            full(body.to_owned()),
        )
        .await;
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }
}

fn vonage_path() -> String {
    format!("/vonage/sessions/{VONAGE_SESSION}/token")
}

#[tokio::test]
async fn vonage_client_tokens_carry_the_role_the_caller_holds() {
    let env = setup().await;
    let host = json!({ "groups": ["hosts"], "name": "Alice" });
    let (s, v) = env.post(&vonage_path(), host.clone(), "{}").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["role"], "moderator");
    assert_eq!(v["applicationId"], APP_ID);
    assert_eq!(v["sessionId"], VONAGE_SESSION);
    let claims = verify_rs256(v["token"].as_str().unwrap());
    assert_eq!(claims["scope"], "session.connect");
    assert_eq!(claims["session_id"], VONAGE_SESSION);
    assert_eq!(claims["role"], "moderator");
    assert_eq!(claims["sub"], "video");
    assert_eq!(claims["acl"], json!({ "paths": { "/session/**": {} } }));
    assert_eq!(claims["application_id"], APP_ID);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    let data: Value = serde_json::from_str(claims["connection_data"].as_str().unwrap()).unwrap();
    assert_eq!(data, json!({ "sub": "alice", "name": "Alice" }));
    // The claim order of @vonage/video: application_id last.
    let payload = String::from_utf8(
        URL_SAFE_NO_PAD
            .decode(v["token"].as_str().unwrap().split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        payload.starts_with(r#"{"scope":"session.connect","session_id":"#),
        "{payload}"
    );
    assert!(
        payload.ends_with(&format!(r#""application_id":"{APP_ID}"}}"#)),
        "{payload}"
    );

    // A host may ask for less; layout classes pass when well-formed.
    let (s, v) = env
        .post(
            &vonage_path(),
            host.clone(),
            r#"{"role":"subscriber","initialLayoutClassList":["focus","big"]}"#,
        )
        .await;
    assert_eq!(
        (s, v["role"].as_str()),
        (StatusCode::OK, Some("subscriber"))
    );
    let claims = jwt_claims(v["token"].as_str().unwrap());
    assert_eq!(claims["initial_layout_class_list"], "focus big");

    // No role held: subscriber; asking for more is refused.
    let nobody = json!({ "groups": ["viewers"], "name": "Bob" });
    let (s, v) = env.post(&vonage_path(), nobody.clone(), "{}").await;
    assert_eq!(
        (s, v["role"].as_str()),
        (StatusCode::OK, Some("subscriber"))
    );
    for asked in ["publisher", "moderator", "publisheronly"] {
        let (s, v) = env
            .post(
                &vonage_path(),
                nobody.clone(),
                &format!(r#"{{"role":"{asked}"}}"#),
            )
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("role_not_permitted")),
            "{asked}"
        );
    }
    let member = json!({ "groups": ["members"], "name": "Cy" });
    let (s, v) = env
        .post(
            &vonage_path(),
            member.clone(),
            r#"{"role":"publisheronly"}"#,
        )
        .await;
    assert_eq!(
        (s, v["role"].as_str()),
        (StatusCode::OK, Some("publisheronly"))
    );
    let (s, _) = env
        .post(&vonage_path(), member, r#"{"role":"moderator"}"#)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_session_tokens_requests_get_stable_codes() {
    let env = setup().await;
    let host = json!({ "groups": ["hosts"], "name": "Alice" });
    let cases: Vec<(String, Value, &str, StatusCode, &str)> = vec![
        (
            "/vonage/sessions/3_abc/token".into(),
            host.clone(),
            "{}",
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
        ),
        (
            format!("/vonage/sessions/1_{}/token", "a".repeat(300)),
            host.clone(),
            "{}",
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
        ),
        (
            vonage_path(),
            host.clone(),
            "not json",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vonage_path(),
            host.clone(),
            r#"{"role":"owner"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_role",
        ),
        (
            vonage_path(),
            host.clone(),
            r#"{"initialLayoutClassList":["a b"]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_layout_classes",
        ),
        (
            vonage_path(),
            json!({ "groups": ["hosts"] }),
            "{}",
            StatusCode::BAD_REQUEST,
            "missing_claims",
        ),
        (
            vonage_path(),
            json!({ "groups": ["hosts"], "name": "x".repeat(1100) }),
            "{}",
            StatusCode::BAD_REQUEST,
            "connection_data_too_long",
        ),
        // 611 characters but 1211 UTF-16 code units, which is what the
        // SDKs count (opentok's generateToken refuses such data).
        (
            vonage_path(),
            json!({ "groups": ["hosts"], "name": "\u{1F600}".repeat(600) }),
            "{}",
            StatusCode::BAD_REQUEST,
            "connection_data_too_long",
        ),
        (
            "/opentok/token".into(),
            host.clone(),
            r#"{"sessionId":"1_MX44NzY1NDMyMX5-fg"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
        ),
        (
            "/opentok/token".into(),
            host.clone(),
            "{}",
            StatusCode::BAD_REQUEST,
            "invalid_session_id",
        ),
    ];
    for (path, claims, body, status, code) in cases {
        let (s, v) = env.post(&path, claims, body).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(code)),
            "{path} {body}"
        );
    }
    let big = format!(r#"{{"pad":"{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let (s, _) = env.post(&vonage_path(), host, &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn opentok_session_tokens_in_both_formats() {
    let env = setup().await;
    let member = json!({ "groups": ["members"] });
    let body = format!(r#"{{"sessionId":"{OT_SESSION}"}}"#);
    let (s, v) = env.post("/opentok/token", member.clone(), &body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["apiKey"].as_str(), v["role"].as_str()),
        (Some(API_KEY), Some("publisher"))
    );
    let token = v["token"].as_str().unwrap();
    let claims = jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(API_SECRET.as_bytes()),
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256),
    )
    .expect("HS256 with the API secret")
    .claims;
    assert_eq!(claims["iss"], API_KEY);
    assert_eq!(claims["ist"], "project");
    assert_eq!(claims["session_id"], OT_SESSION);
    assert_eq!(claims["scope"], "session.connect");
    assert!(claims["nonce"].is_f64());
    assert_eq!(claims["exp"], claims["expire_time"]);

    // T1: base64 of partner_id, the HMAC-SHA1 of the data, the data.
    let (s, v) = env
        .post("/opentok/t1", json!({ "groups": ["hosts"] }), &body)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t1 = v["token"]
        .as_str()
        .unwrap()
        .strip_prefix("T1==")
        .expect("T1==");
    let inner = String::from_utf8(STANDARD.decode(t1).unwrap()).unwrap();
    let (head, data) = inner.split_once(':').unwrap();
    let sig = head
        .strip_prefix(&format!("partner_id={API_KEY}&sig="))
        .unwrap();
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, API_SECRET.as_bytes());
    hmac::verify(&key, data.as_bytes(), &hex::decode(sig).unwrap())
        .expect("HMAC-SHA1 over the data");
    assert!(
        data.starts_with(&format!("session_id={OT_SESSION}&create_time=")),
        "{data}"
    );
    assert!(data.contains("&role=moderator&"), "{data}");
}

#[tokio::test]
async fn application_jwts_are_injected_fresh_for_rest_calls() {
    let env = setup().await;
    let token = env.key.sign(&env.issuer.claims("alice", json!({})));
    let auth = format!("Bearer {token}");
    let mut jtis = Vec::new();
    for _ in 0..2 {
        let (s, _, _) = get(
            &env.gw.h1(),
            &env.gw.url("/vonage/api/v2/project/x/archive"),
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        let seen = env.seen.lock().unwrap();
        let sent = seen.last().unwrap().1["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        let jwt = sent.strip_prefix("Bearer ").expect("Bearer");
        let claims = verify_rs256(jwt);
        assert_eq!(claims["application_id"], APP_ID);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            300
        );
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
    }
    assert_ne!(jtis[0], jtis[1], "a fresh jti per request");
    assert!(uuid::Uuid::parse_str(&jtis[0]).is_ok());
}

#[test]
fn check_refuses_a_pkcs1_key_and_lifetimes_outside_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let pkcs1 = dir.path().join("rsa.key");
    std::fs::write(
        &pkcs1,
        "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c\"\ntls_key = \"k\"\n\n[credential.v]\ntype = \"vonage_application\"\napplication_id = \"{APP_ID}\"\nprivate_key = \"file:{}\"\nclient_ttl_secs = 9999999\n",
        pkcs1.display()
    );
    let env = |_: &str| None;
    let errors = meetgate::config::build(
        &text,
        &dir.path().join("m.toml"),
        meetgate::config::BuildMode::Check,
        &env,
    )
    .expect_err("refused");
    let find = |key: &str| {
        errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("{key}: {errors:?}"))
    };
    let e = find("credential.v.private_key");
    assert_eq!(e.line, Some(9));
    assert!(e.message.contains("PKCS#1"), "{}", e.message);
    let e = find("credential.v.client_ttl_secs");
    assert_eq!(e.line, Some(10));
}

/// A callback as Vonage signs it (tests/common; checked against @vonage/jwt
/// by tests/interop_vonage.rs).
fn vonage_callback(secret: &str, body: &str, jti: &str, iat: u64) -> String {
    vonage_callback_authorization(secret, body.as_bytes(), APP_ID, jti, iat)
}

#[tokio::test]
async fn signed_vonage_callbacks_are_verified_and_deduplicated() {
    let (up, seen) = header_recorder().await;
    let gw = TestGateway::start(&format!(
        r#"
[webhook.vonage]
type = "vonage"
secret_tokens = ["old-signature-secret", "current-signature-secret"]
application_id = "{APP_ID}"

[[route]]
name = "vonage-callbacks"
path = "/callbacks/vonage"
methods = ["POST"]
verify_webhook = "vonage"
upstream = "http://{up}"
"#
    ))
    .await;
    let body = r#"{"sessionId":"2_x","event":"connectionCreated"}"#;
    let now = common::issuer::now();
    let post = |auth: String, body: &'static str| {
        let c = gw.h1();
        let url = gw.url("/callbacks/vonage");
        async move {
            let h = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            send(&c, "POST", &url, &h, full(body)).await
        }
    };
    let auth = vonage_callback("current-signature-secret", body, "jti-1", now);
    let (s, _, _) = post(auth.clone(), body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(
        seen.lock().unwrap()[0].1["x-webhook-verified"],
        "vonage",
        "the app learns the callback was verified"
    );
    // The same jti again: answered, not forwarded twice.
    let (s, _, b) = post(auth, body).await;
    assert_eq!(
        (s, json(&b)["status"].as_str()),
        (StatusCode::OK, Some("duplicate"))
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Rotation: the old secret still verifies; refusals never reach the app.
    let (s, _, _) = post(
        vonage_callback("old-signature-secret", body, "jti-2", now),
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let refused = [
        (
            vonage_callback("wrong", body, "jti-3", now),
            body,
            "invalid_signature",
        ),
        (
            vonage_callback("current-signature-secret", "{}", "jti-4", now),
            body,
            "invalid_signature",
        ),
        (
            vonage_callback("current-signature-secret", body, "jti-5", now - 3600),
            body,
            "stale_timestamp",
        ),
        ("Bearer not.a.jwt".to_owned(), body, "missing_signature"),
    ];
    for (auth, body, code) in refused {
        let (s, _, b) = post(auth, body).await;
        assert_eq!(
            (s, json(&b)["error"].as_str()),
            (StatusCode::UNAUTHORIZED, Some(code))
        );
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}
