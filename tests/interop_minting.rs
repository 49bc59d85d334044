//! Interop: tokens minted by the gateway verify with independent
//! implementations — npm `jsrsasign` (KJUR.jws.JWS.verifyJWT, what Zoom's own
//! samples use) and PyJWT — and the OpenTok project JWT has the claim set and
//! types of the official `opentok` SDK's own (plus the documented `jti`).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::issuer::{Issuer, SigningKey};
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

// Hex-looking secrets on purpose: jsrsasign must be told they are UTF-8.
const SDK_SECRET: &str = "00112233445566778899aabbccddeeff";
const VIDEO_SECRET: &str = "TestVideoSdkSecret_AbC123dEf456gH";
const OPENTOK_SECRET: &str = "0123456789abcdef0123456789abcdef01234567";

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        _ => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_verify_with_jsrsasign_pyjwt_and_match_the_opentok_sdk() {
    ensure_node_modules();
    ensure_pyjwt();
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let up = echo_upstream().await;
    let gw = TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[credential.zoom_sdk]
type = "zoom_meeting_sdk"
client_id = "abcTESTsdkKEY123"
client_secret = "{SDK_SECRET}"

[credential.zoom_video]
type = "zoom_video_sdk"
client_id = "TESTvideoSDKkey01"
client_secret = "{VIDEO_SECRET}"

[credential.video]
type = "opentok_project"
api_key = "12345678"
api_secret = "{OPENTOK_SECRET}"
ttl_secs = 180

[[route]]
name = "sdk-signature"
path = "/api/sdk-signature"
authenticate = "corp"
respond = {{ credential = "zoom_sdk", host_roles = ["hosts"] }}

[[route]]
name = "video-session"
path = "/api/sessions/{{session}}/token"
authenticate = "corp"
respond = {{ credential = "zoom_video", session_param = "session", host_roles = ["hosts"] }}

[[route]]
name = "opentok"
path = "/opentok/*"
upstream = "http://{up}"
authenticate = "none"
inject = [{{ credential = "video", header = "X-OPENTOK-AUTH" }}]
"#,
        iss = issuer.url
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    let who = format!(
        "Bearer {}",
        key.sign(&issuer.claims("interop-user", json!({ "groups": ["hosts"] })))
    );

    let (s, _, b) = send(
        &gw.h1(),
        "POST",
        &gw.url("/api/sdk-signature"),
        &[("authorization", &who)],
        full(r#"{"meetingNumber":"85746065432","role":1}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let meeting = json(&b)["signature"].as_str().unwrap().to_owned();
    let (s, _, b) = send(
        &gw.h1(),
        "POST",
        &gw.url("/api/sessions/Cool%20Cars/token"),
        &[("authorization", &who)],
        full(r#"{"role":1}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let video = json(&b)["token"].as_str().unwrap().to_owned();
    let (s, _, b) = get(&gw.h1(), &gw.url("/opentok/v2/project"), &[]).await;
    assert_eq!(s, StatusCode::OK);
    let opentok = json(&b)["headers"]["x-opentok-auth"]
        .as_str()
        .unwrap()
        .to_owned();

    // jsrsasign, and the OpenTok SDK's generator.
    let input = json!({
        "tokens": [
            { "jwt": meeting, "secret": SDK_SECRET },
            { "jwt": video, "secret": VIDEO_SECRET },
            { "jwt": opentok, "secret": OPENTOK_SECRET },
        ],
        "opentok": { "apiKey": "12345678", "apiSecret": OPENTOK_SECRET, "expire": 180 },
    });
    let mut child = Command::new("node")
        .arg(interop_dir().join("verify-minted.mjs"))
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
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        result["jsrsasign"],
        json!([true, true, true]),
        "jsrsasign verifyJWT"
    );
    assert_eq!(result["opentok_verifies_ours"], json!([true]));
    let official = result["opentok_claims"].as_object().unwrap();
    let ours = jwt_claims(&opentok);
    let ours = ours.as_object().unwrap();
    for (k, v) in official {
        assert!(ours.contains_key(k), "official claim {k} missing from ours");
        assert_eq!(type_of(&ours[k]), type_of(v), "type of {k}");
    }
    let extra: Vec<&String> = ours.keys().filter(|k| !official.contains_key(*k)).collect();
    assert_eq!(extra, vec!["jti"], "only the documented jti is added");
    assert_eq!(
        ours["exp"].as_u64().unwrap() - ours["iat"].as_u64().unwrap(),
        180
    );

    // PyJWT, with its own checks of exp/iat.
    let script = r#"
import json, sys, jwt
for t in json.load(sys.stdin):
    jwt.decode(t["jwt"], t["secret"], algorithms=["HS256"], options={"require": ["exp", "iat"]})
print("ok")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input["tokens"].to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyJWT refused a minted token");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}
