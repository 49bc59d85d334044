//! Interop with the official Vonage SDKs from npm (tests/interop, pinned:
//! `@vonage/jwt` 1.17.1, `@vonage/video` 1.31.1, `opentok` 2.23.2), with an
//! RSA key, application id, API key and secrets made for the run; the node
//! side is tests/interop/vonage-check.mjs (spec: docs/platforms/
//! platforms-2026.md sections 4, 5 and 12).
//!
//! - Application JWTs meetgate injects upstream (`Authorization: Bearer`)
//!   pass @vonage/jwt `verifySignature` with the public key (not with
//!   another), have the header and claim names of the SDK's own REST JWT
//!   (`Auth.createBearerHeader`), and `tokenGenerate` at their `iat` with
//!   their `jti` makes the same bytes.
//! - Callbacks signed in node (jsonwebtoken HS256, Vonage's claims,
//!   `payload_hash` over the raw body) pass the `vonage` webhook and reach
//!   the app unchanged; a wrong secret or another body is 401
//!   `invalid_signature`. @vonage/jwt accepts the callbacks the Rust tests
//!   sign (`common::vonage_callback_authorization`).
//! - Client tokens: Vonage client tokens pass `verifySignature`, have the
//!   header, claim names and values of @vonage/video `generateClientToken`
//!   and of opentok in Vonage mode for the same session, role, data and
//!   classes, and re-mint to the same bytes; OpenTok JWT session tokens
//!   verify with the API secret (jsonwebtoken, as opentok signs) and match
//!   `generateToken`; T1 tokens pass opentok's own T1 helpers, carry a
//!   HMAC-SHA1 of their data, equal `generateToken(…, true)` field by field
//!   once the random parts (nonce, create_time, expire_time) are set aside,
//!   and byte for byte when the SDK is given ours.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use common::issuer::{now, Issuer, SigningKey};
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{json, Value};

/// A display name that needs JSON escaping and percent-encoding.
const NAME: &str = "Zoë O'Brien & co = 100% \"q\" (ok) *!~";

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

/// A session id in the platforms' shape: `1_`/`2_` and URL-safe base64 of
/// `1~OWNER~~CREATED_MS~RANDOM~~~` (OWNER the API key or application id).
fn session_id(prefix: char, owner: &str) -> String {
    let raw = format!("1~{owner}~~{}000~{}~~~", now(), random_hex(8));
    format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(raw))
}

type Calls = Arc<Mutex<Vec<(http::HeaderMap, Bytes)>>>;

/// An upstream that records each request's headers and body.
async fn body_recorder() -> (std::net::SocketAddr, Calls) {
    let calls: Calls = Arc::default();
    let c2 = calls.clone();
    let addr = upstream(move |req: Request<Incoming>| {
        let calls = c2.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            calls.lock().unwrap().push((parts.headers, body));
            Response::new(full("ok"))
        }
    })
    .await;
    (addr, calls)
}

struct Env {
    gw: TestGateway,
    issuer: Arc<Issuer>,
    key: SigningKey,
    rest: Arc<Mutex<Vec<(String, http::HeaderMap)>>>,
    callbacks: Calls,
    app_id: String,
    private_pem: String,
    api_key: String,
    api_secret: String,
    signature_secret: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    ensure_node_modules();
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (rest_up, rest) = header_recorder().await;
    let (callback_up, callbacks) = body_recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let private_pem =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .unwrap()
            .serialize_pem();
    assert!(
        private_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );
    let pem_path = dir.path().join("private.key");
    std::fs::write(&pem_path, &private_pem).unwrap();
    let app_id = uuid::Uuid::new_v4().to_string();
    let api_key = format!(
        "4{:07}",
        u32::from_str_radix(&random_hex(4), 16).unwrap() % 10_000_000
    );
    let api_secret = random_hex(20);
    let signature_secret = format!("vonage-signature-{}", random_hex(16));
    // Lifetimes left at their defaults, the SDKs' defaults (900 s for
    // application JWTs, 86400 s for client tokens).
    let gw = TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[credential.vonage]
type = "vonage_application"
application_id = "{app_id}"
private_key = "file:{pem}"

[credential.opentok]
type = "opentok_project"
api_key = "{api_key}"
api_secret = "{api_secret}"

[credential.opentok_t1]
type = "opentok_project"
api_key = "{api_key}"
api_secret = "{api_secret}"
client_token_format = "t1"

[webhook.vonage]
type = "vonage"
secret_tokens = ["{signature_secret}"]
application_id = "{app_id}"

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
respond = {{ credential = "opentok", moderator_roles = ["hosts"], publisher_roles = ["members"], connection_data = ["sub", "name"] }}

[[route]]
name = "opentok-t1"
path = "/opentok/t1"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "opentok_t1", moderator_roles = ["hosts"], publisher_roles = ["members"], connection_data = ["sub", "name"] }}

[[route]]
name = "vonage-rest"
path = "/vonage/api/*"
upstream = "http://{rest_up}"
authenticate = "none"
inject = [{{ credential = "vonage", header = "Authorization" }}]

[[route]]
name = "vonage-callbacks"
path = "/callbacks/vonage"
methods = ["POST"]
verify_webhook = "vonage"
upstream = "http://{callback_up}"
"#,
        iss = issuer.url,
        pem = pem_path.display()
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    Env {
        gw,
        issuer,
        key,
        rest,
        callbacks,
        app_id,
        private_pem,
        api_key,
        api_secret,
        signature_secret,
        _dir: dir,
    }
}

impl Env {
    /// A session token from a `respond` route, as `sub` alice with `groups`.
    async fn token(&self, path: &str, groups: &[&str], body: &Value) -> Value {
        let claims = self
            .issuer
            .claims("alice", json!({ "groups": groups, "name": NAME }));
        let auth = format!("Bearer {}", self.key.sign(&claims));
        let (s, _, b) = send(
            &self.gw.h1(),
            "POST",
            &self.gw.url(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            full(body.to_string()),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{path} {body}");
        json(&b)
    }

    /// POSTs a callback; the status and the error code, if any.
    async fn callback(&self, authorization: &str, body: &[u8]) -> (StatusCode, Option<String>) {
        let (s, _, b) = send(
            &self.gw.h1(),
            "POST",
            &self.gw.url("/callbacks/vonage"),
            &[
                ("authorization", authorization),
                ("content-type", "application/json"),
            ],
            full(body.to_vec()),
        )
        .await;
        let code = serde_json::from_slice::<Value>(&b)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        (s, code)
    }
}

/// Runs tests/interop/vonage-check.mjs with `input` on stdin.
fn node(input: &Value) -> Value {
    let mut child = Command::new("node")
        .arg(interop_dir().join("vonage-check.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "vonage-check.mjs failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// `jti`: a UUID v4, as the SDKs make them.
fn assert_uuid_v4(v: &Value) {
    let u = uuid::Uuid::parse_str(v.as_str().unwrap()).expect("a UUID");
    assert_eq!(u.get_version_num(), 4, "{v}");
}

/// What the route's `connection_data = ["sub", "name"]` must carry.
fn assert_connection_data(data: &Value) {
    let parsed: Value = serde_json::from_str(data.as_str().expect("connection data")).unwrap();
    assert_eq!(parsed, json!({ "sub": "alice", "name": NAME }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_jwts_injected_upstream_verify_with_vonage_jwt_and_equal_token_generate() {
    let env = setup().await;
    let mut jwts = Vec::new();
    for _ in 0..3 {
        let path = format!("/vonage/api/v2/project/{}/archive", env.app_id);
        let (s, _, _) = get(&env.gw.h1(), &env.gw.url(&path), &[]).await;
        assert_eq!(s, StatusCode::OK);
        let seen = env.rest.lock().unwrap();
        let sent = seen.last().unwrap().1["authorization"].to_str().unwrap();
        let jwt = sent
            .strip_prefix("Bearer ")
            .expect("Bearer, as the SDK sends");
        jwts.push(jwt.to_owned());
    }
    let out = node(&json!({
        "op": "check",
        "vonage": {
            "application_id": env.app_id, "private_key_pem": env.private_pem,
            "app_jwts": jwts, "client_tokens": [],
        },
    }));
    let v = &out["vonage"];
    assert_eq!(v["sdk_bearer_scheme"], "Bearer");
    let sdk = &v["sdk_app_jwt"];
    let sdk_ttl = int(&sdk["claims"]["exp"]) - int(&sdk["claims"]["iat"]);
    let checked = v["app_jwts"].as_array().unwrap();
    assert_eq!(checked.len(), jwts.len());
    for (jwt, o) in jwts.iter().zip(checked) {
        assert_eq!(
            o["verifies"], true,
            "@vonage/jwt verifySignature, public key"
        );
        assert_eq!(
            o["verifies_other_key"], false,
            "another key must not verify"
        );
        assert_eq!(o["header_json"], sdk["header_json"], "header bytes");
        assert_eq!(
            o["claim_names"], sdk["claim_names"],
            "claim names, in order"
        );
        let c = &o["claims"];
        assert_eq!(c["application_id"], env.app_id.as_str());
        assert_eq!(sdk["claims"]["application_id"], env.app_id.as_str());
        assert_uuid_v4(&c["jti"]);
        assert!(
            (int(&c["iat"]) - now() as i64).abs() <= 5,
            "iat is now: {c}"
        );
        assert_eq!(int(&c["exp"]) - int(&c["iat"]), sdk_ttl, "default lifetime");
        assert_eq!(
            o["remint"].as_str(),
            Some(jwt.as_str()),
            "tokenGenerate at our iat with our jti makes the same token"
        );
    }
    let jtis: std::collections::BTreeSet<String> = checked
        .iter()
        .map(|o| o["claims"]["jti"].to_string())
        .collect();
    assert_eq!(jtis.len(), jwts.len(), "a fresh jti per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_callbacks_interoperate_with_an_independent_signer_and_vonage_jwt() {
    let env = setup().await;
    // Raw bytes with spaces and a non-ASCII character: the hash covers them
    // as sent, not a re-serialisation.
    let body = format!(
        r#"{{"sessionId": "{}", "event": "connectionCreated", "connection": {{"data": "Zoë"}}}}"#,
        session_id('2', &env.app_id)
    );
    let sign = |wrong: &str| {
        node(&json!({
            "op": "sign_callbacks", "secret": env.signature_secret, "wrong_secret": wrong,
            "application_id": env.app_id, "api_key": "a1b2c3d4", "body": body,
        }))
    };
    let signed = sign("not-the-signature-secret");
    assert_eq!(signed["sdk_accepts_valid"], true, "the node signer is sane");
    assert_eq!(signed["sdk_accepts_wrong_secret"], false);

    let valid = signed["valid"].as_str().unwrap();
    assert_eq!(
        env.callback(valid, body.as_bytes()).await,
        (StatusCode::OK, None)
    );
    {
        let calls = env.callbacks.lock().unwrap();
        assert_eq!(calls.len(), 1, "forwarded once");
        assert_eq!(calls[0].0["x-webhook-verified"], "vonage");
        assert_eq!(calls[0].1, body.as_bytes(), "the raw body, unchanged");
    }

    let wrong_secret = signed["wrong_secret"].as_str().unwrap();
    let unauthorized = (
        StatusCode::UNAUTHORIZED,
        Some("invalid_signature".to_owned()),
    );
    assert_eq!(
        env.callback(wrong_secret, body.as_bytes()).await,
        unauthorized,
        "signed with another secret"
    );
    let compact = serde_json::to_string(&json(body.as_bytes())).unwrap();
    let tampered = [
        body.replace("connectionCreated", "connectionDestroyed"),
        compact,
        format!("{body}\n"),
    ];
    for other in tampered {
        let fresh = sign("unused");
        let auth = fresh["valid"].as_str().unwrap();
        assert_eq!(
            env.callback(auth, other.as_bytes()).await,
            unauthorized,
            "signed for another body: {other}"
        );
    }
    assert_eq!(
        env.callbacks.lock().unwrap().len(),
        1,
        "refusals never reach the app"
    );

    // The Rust tests' own signer, as @vonage/jwt sees it (and meetgate).
    let jti = uuid::Uuid::new_v4().to_string();
    let ours = vonage_callback_authorization(
        &env.signature_secret,
        body.as_bytes(),
        &env.app_id,
        &jti,
        now(),
    );
    assert_eq!(
        env.callback(&ours, body.as_bytes()).await,
        (StatusCode::OK, None)
    );
    let out = node(&json!({
        "op": "check",
        "callbacks": [{ "authorization": ours, "body": body, "secret": env.signature_secret }],
    }));
    let c = &out["callbacks"][0];
    assert_eq!(
        c["verifies"], true,
        "@vonage/jwt verifySignature, signature secret"
    );
    assert_eq!(c["verifies_wrong_secret"], false);
    assert_eq!(c["header"]["alg"], "HS256");
    assert_eq!(
        c["claims"]["payload_hash"], c["body_sha256"],
        "SHA-256 of the raw body"
    );
    assert_eq!(c["claims"]["iss"], "Vonage");
    assert_eq!(c["claims"]["application_id"], env.app_id.as_str());
    assert_eq!(c["claims"]["jti"], jti.as_str());
    assert!(
        (int(&c["claims"]["iat"]) - int(&c["now"])).abs() <= 300,
        "{c}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_client_tokens_match_vonage_video_and_opentok_in_vonage_mode() {
    let env = setup().await;
    let sid = session_id('2', &env.app_id);
    let path = format!("/vonage/sessions/{sid}/token");
    // (groups, request body, role expected, classes asked)
    let cases: [(&[&str], Value, &str, &[&str]); 4] = [
        (
            &["hosts"],
            json!({ "initialLayoutClassList": ["focus", "inactive"] }),
            "moderator",
            &["focus", "inactive"],
        ),
        (&["members"], json!({}), "publisher", &[]),
        (
            &["members"],
            json!({ "role": "publisheronly" }),
            "publisheronly",
            &[],
        ),
        (&["viewers"], json!({}), "subscriber", &[]),
    ];
    let mut tokens = Vec::new();
    for (groups, body, role, classes) in &cases {
        let v = env.token(&path, groups, body).await;
        assert_eq!(v["role"], *role);
        assert_eq!(v["applicationId"], env.app_id.as_str());
        assert_eq!(v["sessionId"], sid.as_str());
        tokens.push(json!({
            "token": v["token"], "session_id": sid, "role": role, "classes": classes,
        }));
    }
    let out = node(&json!({
        "op": "check",
        "vonage": {
            "application_id": env.app_id, "private_key_pem": env.private_pem,
            "app_jwts": [], "client_tokens": tokens,
        },
    }));
    let checked = out["vonage"]["client_tokens"].as_array().unwrap();
    assert_eq!(checked.len(), cases.len());
    for ((t, o), (_, _, role, classes)) in tokens.iter().zip(checked).zip(&cases) {
        assert_eq!(
            o["verifies"], true,
            "@vonage/jwt verifySignature, public key"
        );
        assert_eq!(
            o["verifies_other_key"], false,
            "another key must not verify"
        );
        let c = &o["claims"];
        assert_eq!(c["scope"], "session.connect");
        assert_eq!(c["session_id"], sid.as_str());
        assert_eq!(c["role"], *role);
        assert_eq!(c["initial_layout_class_list"], classes.join(" "));
        assert_eq!(c["application_id"], env.app_id.as_str());
        assert_connection_data(&c["connection_data"]);
        assert_uuid_v4(&c["jti"]);
        assert!(
            (int(&c["iat"]) - now() as i64).abs() <= 5,
            "iat is now: {c}"
        );
        assert_eq!(int(&c["exp"]) - int(&c["iat"]), 86_400, "the SDK's default");
        for (who, sdk) in [
            ("@vonage/video", &o["sdk"]),
            ("opentok (Vonage mode)", &o["opentok_vonage_mode"]),
        ] {
            assert_eq!(o["header_json"], sdk["header_json"], "{who}: header");
            assert_eq!(o["claim_names"], sdk["claim_names"], "{who}: claim names");
            for name in o["claim_names"].as_array().unwrap() {
                let name = name.as_str().unwrap();
                if name != "jti" && name != "iat" {
                    assert_eq!(c[name], sdk["claims"][name], "{who}: {name}");
                }
            }
        }
        assert_eq!(
            o["remint"], t["token"],
            "generateClientToken at our iat with our jti makes the same token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentok_jwt_session_tokens_match_the_opentok_sdk() {
    let env = setup().await;
    let sid = session_id('1', &env.api_key);
    let cases: [(&[&str], Value, &str, &[&str]); 3] = [
        (
            &["hosts"],
            json!({ "sessionId": sid, "initialLayoutClassList": ["focus"] }),
            "moderator",
            &["focus"],
        ),
        (&["members"], json!({ "sessionId": sid }), "publisher", &[]),
        (
            &["viewers"],
            json!({ "sessionId": sid, "role": "subscriber" }),
            "subscriber",
            &[],
        ),
    ];
    let mut tokens = Vec::new();
    for (groups, body, role, classes) in &cases {
        let v = env.token("/opentok/token", groups, body).await;
        assert_eq!(v["role"], *role);
        assert_eq!(v["apiKey"], env.api_key.as_str());
        tokens.push(json!({
            "token": v["token"], "session_id": sid, "role": role, "classes": classes,
        }));
    }
    let out = node(&json!({
        "op": "check",
        "opentok": {
            "api_key": env.api_key, "api_secret": env.api_secret,
            "jwt_tokens": tokens, "t1_tokens": [],
        },
    }));
    let checked = out["opentok"]["jwt_tokens"].as_array().unwrap();
    assert_eq!(checked.len(), cases.len());
    for ((t, o), (_, _, role, classes)) in tokens.iter().zip(checked).zip(&cases) {
        assert_eq!(o["verifies"], true, "HS256 with the API secret");
        assert_eq!(o["verifies_wrong_secret"], false);
        let sdk = &o["sdk"];
        assert_eq!(o["header_json"], sdk["header_json"], "header");
        assert_eq!(
            o["claim_names"], sdk["claim_names"],
            "claim names, in order"
        );
        let c = &o["claims"];
        for name in [
            "iss",
            "ist",
            "session_id",
            "role",
            "connection_data",
            "initial_layout_class_list",
            "scope",
        ] {
            assert_eq!(c[name], sdk["claims"][name], "{name}");
        }
        assert_eq!(c["iss"], env.api_key.as_str());
        assert_eq!(c["role"], *role);
        assert_eq!(c["initial_layout_class_list"], classes.join(" "));
        assert_connection_data(&c["connection_data"]);
        assert!(
            c["nonce"].is_f64(),
            "nonce, a JSON number as Math.random(): {c}"
        );
        assert!(sdk["claims"]["nonce"].is_f64());
        assert!((0.0..1.0).contains(&c["nonce"].as_f64().unwrap()), "{c}");
        assert!(
            (int(&c["iat"]) - now() as i64).abs() <= 5,
            "iat is now: {c}"
        );
        assert_eq!(c["create_time"], c["iat"]);
        assert_eq!(c["exp"], c["expire_time"]);
        let window = |c: &Value| int(&c["expire_time"]) - int(&c["create_time"]);
        assert_eq!(
            window(c),
            window(&sdk["claims"]),
            "the SDK's default window"
        );
        assert_eq!(
            o["remint"], t["token"],
            "generateToken with our nonce, create_time, expireTime and clock makes the same token"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentok_t1_tokens_match_the_opentok_sdk_field_by_field() {
    let env = setup().await;
    let sid = session_id('1', &env.api_key);
    let cases: [(&[&str], Value, &str, &[&str]); 2] = [
        (
            &["hosts"],
            json!({ "sessionId": sid, "initialLayoutClassList": ["focus", "inactive"] }),
            "moderator",
            &["focus", "inactive"],
        ),
        (&["viewers"], json!({ "sessionId": sid }), "subscriber", &[]),
    ];
    let mut tokens = Vec::new();
    for (groups, body, role, classes) in &cases {
        let v = env.token("/opentok/t1", groups, body).await;
        assert_eq!(v["role"], *role);
        tokens.push(json!({
            "token": v["token"], "session_id": sid, "role": role, "classes": classes,
        }));
    }
    let out = node(&json!({
        "op": "check",
        "opentok": {
            "api_key": env.api_key, "api_secret": env.api_secret,
            "jwt_tokens": [], "t1_tokens": tokens,
        },
    }));
    let checked = out["opentok"]["t1_tokens"].as_array().unwrap();
    assert_eq!(checked.len(), cases.len());
    const RANDOM: [&str; 3] = ["nonce", "create_time", "expire_time"];
    for ((t, o), (_, _, role, classes)) in tokens.iter().zip(checked).zip(&cases) {
        let (ours, sdk) = (&o["ours"], &o["sdk"]);
        assert_eq!(ours["prefix_ok"], true, "T1==");
        assert_eq!(ours["canonical_base64"], true, "standard padded base64");
        assert_eq!(ours["head_names"], json!(["partner_id", "sig"]));
        assert_eq!(ours["head_names"], sdk["head_names"]);
        assert_eq!(ours["partner_id"], env.api_key.as_str());
        assert_eq!(ours["partner_id"], sdk["partner_id"]);
        let sig = ours["sig"].as_str().unwrap();
        assert!(
            sig.len() == 40
                && sig
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "lowercase hex SHA-1: {sig}"
        );
        assert_eq!(
            o["sig_is_hmac_sha1_of_data"], true,
            "HMAC-SHA1 over the data string"
        );
        assert_eq!(o["verifies"], true, "opentok-token verifyTokenSignature");
        assert_eq!(o["verifies_wrong_secret"], false);

        let names = |p: &Value| -> Vec<Value> {
            p["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f[0].clone())
                .collect()
        };
        assert_eq!(names(ours), names(sdk), "fields, in order");
        for (a, b) in ours["fields"]
            .as_array()
            .unwrap()
            .iter()
            .zip(sdk["fields"].as_array().unwrap())
        {
            let name = a[0].as_str().unwrap();
            if !RANDOM.contains(&name) {
                assert_eq!(a[1], b[1], "{name}, as encoded");
            }
        }
        let field = |p: &Value, n: &str| -> String {
            p["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f[0] == n)
                .unwrap_or_else(|| panic!("{n}"))[1]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let num = |p: &Value, n: &str| -> f64 { field(p, n).parse().unwrap() };
        assert!((0.0..1.0).contains(&num(ours, "nonce")), "{ours}");
        assert!(
            (num(ours, "create_time") - now() as f64).abs() <= 5.0,
            "{ours}"
        );
        let window = |p: &Value| num(p, "expire_time") - num(p, "create_time");
        assert_eq!(window(ours), window(sdk), "the SDK's default window");

        let d = &o["decoded"];
        assert_eq!(d["session_id"], sid.as_str());
        assert_eq!(d["role"], *role);
        assert_eq!(d["initial_layout_class_list"], classes.join(" "));
        assert_eq!(d["scope"], "session.connect");
        assert_connection_data(&d["connection_data"]);
        assert_eq!(
            o["remint"], t["token"],
            "generateToken(…, true) with our nonce, create_time and expire_time makes the same token"
        );
    }
}
