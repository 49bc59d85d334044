//! Interop: a real, independent OpenID provider (npm `oidc-provider`) issues
//! JWT access tokens via client_credentials with a resource indicator; the
//! gateway discovers it, accepts its tokens and follows its key rotation.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use http::StatusCode;

struct Provider {
    child: Child,
    kid: String,
}

impl Provider {
    fn start(port: u16, keys: &Path, rotate: bool) -> Self {
        let mut cmd = Command::new("node");
        cmd.arg(interop_dir().join("oidc-provider.mjs"))
            .arg(port.to_string())
            .arg(keys)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if rotate {
            cmd.arg("rotate");
        }
        let mut child = cmd.spawn().expect("node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(kid) = line.strip_prefix("ready ") {
                    let _ = tx.send(kid.to_owned());
                }
            }
        });
        let kid = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("oidc-provider did not start");
        Provider { child, kid }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn access_token(issuer: &str) -> String {
    let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<TestBody>();
    let basic =
        base64::engine::general_purpose::STANDARD.encode("meetgate-interop:interop-client-secret");
    let (s, _, b) = send(
        &c,
        "POST",
        &format!("{issuer}/token"),
        &[
            ("authorization", &format!("Basic {basic}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        full("grant_type=client_credentials&resource=api%3A%2F%2Fmeetings&scope=meetings%3Aread"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    json(&b)["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_tokens_are_accepted_and_rotation_followed() {
    ensure_node_modules();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let keys_dir = tempfile::tempdir().unwrap();
    let keys = keys_dir.path().join("keys.json");
    let provider = Provider::start(port, &keys, false);
    let issuer = format!("http://127.0.0.1:{port}");

    let up = echo_upstream().await;
    let gw = TestGateway::start(&format!(
        r#"
[identity.op]
issuer = "{issuer}"
audiences = ["api://meetings"]
algorithms = ["ES256"]

[credential.op_token]
type = "oauth_client_credentials"
token_url = "{issuer}/token"
client_id = "meetgate-interop"
client_secret = "interop-client-secret"
scope = "meetings:read"

[[route]]
name = "meetings"
path = "/api/*"
upstream = "http://{up}"
authenticate = "op"
authorize = {{ scopes_all = ["meetings:read"] }}

[[route]]
name = "outbound"
path = "/out/*"
upstream = "http://{up}"
authenticate = "none"
inject = [{{ credential = "op_token", header = "Authorization" }}]
"#
    ))
    .await;
    let keys_of = || gw.gw.state.live.load().identity_keys["op"].clone();
    wait_until("discovery and JWKS", Duration::from_secs(10), || {
        keys_of().usable().is_some()
    })
    .await;

    let token = access_token(&issuer).await;
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/api/meetings"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let v = json(&b);
    assert_eq!(v["headers"]["x-auth-subject"], "meetgate-interop");
    assert_eq!(v["headers"]["x-auth-issuer"], issuer);

    // The gateway fetches its own client-credentials token from the provider
    // and injects it upstream.
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/out/x"),
        &[("authorization", "Bearer client-value")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
    let injected = json(&b)["headers"]["authorization"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwt = injected
        .strip_prefix("Bearer ")
        .expect("Bearer token injected");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (claims["iss"].as_str(), claims["client_id"].as_str()),
        (Some(issuer.as_str()), Some("meetgate-interop"))
    );
    assert_eq!(claims["scope"], "meetings:read");

    // Rotation: the provider restarts signing with a new key.
    let first_kid = provider.kid.clone();
    drop(provider);
    let provider = Provider::start(port, &keys, true);
    assert_ne!(provider.kid, first_kid);
    let fetched = keys_of().fetches_ok.load(Ordering::SeqCst);
    let token = access_token(&issuer).await;
    let (s, _, _) = get(
        &gw.h1(),
        &gw.url("/api/meetings"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        keys_of().fetches_ok.load(Ordering::SeqCst),
        fetched + 1,
        "exactly one refetch"
    );

    // A tampered provider token is refused.
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::json!({ "sub": "mallory", "aud": "api://meetings", "iss": issuer, "exp": 9_999_999_999u64, "scope": "meetings:read" })
            .to_string(),
    );
    parts[1] = &forged;
    let (s, _, b) = get(
        &gw.h1(),
        &gw.url("/api/meetings"),
        &[("authorization", &format!("Bearer {}", parts.join(".")))],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&b)["error"], "invalid_signature");
}
