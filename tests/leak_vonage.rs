//! Nothing secret of Vonage or OpenTok is written anywhere the gateway
//! writes: the application's private key, the API secret, the callback
//! signature secret, the tokens minted (answered on purpose or injected)
//! and the callers' bearer tokens never appear in logs (debug level),
//! stdout, the audit file, metrics or other answers. The real binary runs.

mod common;

use common::issuer::{Issuer, SigningKey};
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

const APP_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";
const API_SECRET: &str = "leakcheck-opentok-api-secret-for-sessions-01";
const SIGNATURE_SECRET: &str = "leakcheck-vonage-signature-secret-02";
const OT_SESSION: &str = "1_MX4xMjM0NTY3OH5-MTc2NzIyNTYwMDAwMH5hYmNkZWZnaGlqa2xtbn5-fg";
const VONAGE_SESSION: &str =
    "2_MX5hYWFhYWFhYS1iYmJiLTRjY2MtOGRkZC0wMTIzNDU2Nzg5YWJ-fjE3NjcyMjU2MDAwMDB-dGVzdHNlc3Npb25-fn4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_of_vonage_is_written_anywhere() {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (up, received) = header_recorder().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    let pem = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap()
        .serialize_pem();
    std::fs::write(dir.path().join("vonage.key"), &pem).unwrap();
    let cfg = write_config(
        &certs,
        dir.path(),
        "",
        &format!(
            r#"
[audit]
path = "{audit}"

[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[credential.vonage]
type = "vonage_application"
application_id = "{APP_ID}"
private_key = "file:vonage.key"

[credential.opentok]
type = "opentok_project"
api_key = "12345678"
api_secret = "${{OPENTOK_API_SECRET}}"

[credential.opentok_t1]
type = "opentok_project"
api_key = "12345678"
api_secret = "${{OPENTOK_API_SECRET}}"
client_token_format = "t1"

[webhook.vonage]
type = "vonage"
secret_tokens = ["${{VONAGE_SIGNATURE_SECRET}}"]
application_id = "{APP_ID}"

[[route]]
name = "vonage-token"
path = "/vonage/sessions/{{session}}/token"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "vonage", session_param = "session", moderator_roles = ["hosts"], connection_data = ["sub"] }}

[[route]]
name = "opentok-token"
path = "/opentok/token"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "opentok" }}

[[route]]
name = "opentok-t1"
path = "/opentok/t1"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "opentok_t1" }}

[[route]]
name = "vonage-rest"
path = "/vonage/api/*"
upstream = "http://{up}"
authenticate = "corp"
inject = [{{ credential = "vonage", header = "Authorization" }}, {{ credential = "opentok", header = "X-OPENTOK-AUTH" }}]

[[route]]
name = "callbacks"
path = "/callbacks/vonage"
verify_webhook = "vonage"
upstream = "http://{up}"
"#,
            audit = audit.display(),
            iss = issuer.url
        ),
    );
    let env = [
        ("OPENTOK_API_SECRET", API_SECRET),
        ("VONAGE_SIGNATURE_SECRET", SIGNATURE_SECRET),
    ];
    let gw = BinaryGateway::spawn_with(&cfg, "debug", &env);
    let admin = gw.admin_addr.unwrap();
    leak::wait_ready(admin).await;
    let c = client(&certs, false);
    let bearer = key.sign(&issuer.claims("alice", json!({ "groups": ["hosts"] })));
    let auth = format!("Bearer {bearer}");
    let mut answers: Vec<String> = Vec::new();
    let mut on_purpose: Vec<String> = Vec::new();
    let requests = [
        (
            "POST",
            format!("/vonage/sessions/{VONAGE_SESSION}/token"),
            "{}".to_owned(),
            true,
        ),
        (
            "POST",
            format!("/vonage/sessions/{VONAGE_SESSION}/token"),
            r#"{"role":"owner"}"#.to_owned(),
            false,
        ),
        (
            "POST",
            "/opentok/token".to_owned(),
            format!(r#"{{"sessionId":"{OT_SESSION}"}}"#),
            true,
        ),
        (
            "POST",
            "/opentok/t1".to_owned(),
            format!(r#"{{"sessionId":"{OT_SESSION}"}}"#),
            true,
        ),
        (
            "POST",
            "/opentok/t1".to_owned(),
            r#"{"sessionId":"1_bad"}"#.to_owned(),
            false,
        ),
        (
            "GET",
            "/vonage/api/v2/project/x".to_owned(),
            String::new(),
            false,
        ),
    ];
    for (method, path, body, minted) in requests {
        let h = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let (s, hd, b) = send(&c, method, &gw.url(&path), &h, full(body)).await;
        let text = String::from_utf8_lossy(&b).into_owned();
        if minted {
            assert_eq!(s, StatusCode::OK, "{path}: {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            on_purpose.push(v["token"].as_str().unwrap().to_owned());
            answers.push(format!("{s} {hd:?}"));
        } else {
            answers.push(format!("{s} {hd:?} {text}"));
        }
    }
    // A callback signed with the secret, and one that is not.
    let body = r#"{"event":"connectionCreated"}"#;
    let auth = common::vonage_callback_authorization(
        SIGNATURE_SECRET,
        body.as_bytes(),
        APP_ID,
        "leak-jti",
        common::issuer::now(),
    );
    let signed = auth.trim_start_matches("Bearer ").to_owned();
    for token in [signed.clone(), format!("{signed}x")] {
        let h = [("authorization", format!("Bearer {token}"))];
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (s, hd, b) = send(&c, "POST", &gw.url("/callbacks/vonage"), &h, full(body)).await;
        answers.push(format!("{s} {hd:?} {}", String::from_utf8_lossy(&b)));
    }

    let mut injected = Vec::new();
    for (_, h) in received.lock().unwrap().iter() {
        for name in ["authorization", "x-opentok-auth"] {
            if let Some(v) = h.get(name) {
                let v = v.to_str().unwrap();
                if !v.contains(&signed) {
                    injected.push(v.trim_start_matches("Bearer ").to_owned());
                }
            }
        }
    }
    assert!(injected.len() >= 2, "{injected:?}");

    let written = leak::Written::collect(&gw, admin, &audit).await;
    assert!(
        written.log.contains("session token minted"),
        "debug logging was on"
    );

    let mut forbidden: Vec<(&str, String)> = vec![
        ("opentok api secret", API_SECRET.to_owned()),
        ("signature secret", SIGNATURE_SECRET.to_owned()),
        ("bearer token", bearer.clone()),
        ("signed callback", signed.clone()),
    ];
    // Any line of the private key's base64 body.
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        forbidden.push(("private key", line.to_owned()));
    }
    for t in on_purpose {
        forbidden.push(("minted session token", t));
    }
    for t in injected {
        forbidden.push(("injected JWT", t));
    }
    written.assert_none_of(&forbidden, &answers);
}
