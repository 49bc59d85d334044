//! What the upstream learns about the caller comes from the gateway only:
//! headers filled from claims cannot be supplied by the client, list values
//! are unambiguous, claim values are forwarded unaltered or refused, and
//! method-override headers never reach the app.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::issuer::{Issuer, SigningKey};
use common::*;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

struct Env {
    gw: TestGateway,
    issuer: Arc<Issuer>,
    key: SigningKey,
    seen: Arc<std::sync::Mutex<Vec<(String, HeaderMap)>>>,
}

async fn setup() -> Env {
    let key = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let (up, seen) = header_recorder().await;
    let gw = TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[[route]]
name = "app"
path = "/app/*"
upstream = "http://{up}"
authenticate = "corp"
claims_to_headers = {{ "X-User-Email" = "email", "Remote-User" = "preferred_username", "X-User-Teams" = "teams" }}
"#,
        iss = issuer.url
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    Env {
        gw,
        issuer,
        key,
        seen,
    }
}

impl Env {
    /// Sends `extra` headers with a token holding `claims`; returns the
    /// status and, when the request was forwarded, the upstream's headers.
    async fn call(&self, claims: Value, extra: &[(&str, &str)]) -> (StatusCode, Option<HeaderMap>) {
        let token = self.key.sign(&self.issuer.claims("alice", claims));
        let auth = format!("Bearer {token}");
        let mut h: Vec<(&str, &str)> = vec![("authorization", &auth)];
        h.extend_from_slice(extra);
        let before = self.seen.lock().unwrap().len();
        let (s, _, _) = get(&self.gw.h1(), &self.gw.url("/app/x"), &h).await;
        let seen = self.seen.lock().unwrap();
        (s, seen.get(before).map(|(_, h)| h.clone()))
    }
}

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

#[tokio::test]
async fn client_headers_named_by_claims_to_headers_never_reach_the_upstream() {
    let env = setup().await;
    let spoof = [
        ("x-user-email", "ceo@example.com"),
        ("x_user_email", "ceo@example.com"),
        ("remote-user", "ceo"),
        ("Remote_User", "ceo"),
        ("x-user-teams", "board"),
    ];
    // A token without those claims: the headers are absent, not the client's.
    let (s, h) = env.call(json!({}), &spoof).await;
    assert_eq!(s, StatusCode::OK);
    let h = h.expect("forwarded");
    for name in [
        "x-user-email",
        "x_user_email",
        "remote-user",
        "remote_user",
        "x-user-teams",
    ] {
        assert!(values(&h, name).is_empty(), "{name} reached the upstream");
    }
    // A non-scalar value gives no header either.
    let (s, h) = env
        .call(json!({ "email": { "work": "a@example.com" } }), &spoof)
        .await;
    assert_eq!(s, StatusCode::OK);
    let h = h.expect("forwarded");
    assert!(values(&h, "x-user-email").is_empty());
    assert!(values(&h, "x_user_email").is_empty());
    // With the claims: exactly the gateway's values, no look-alike beside them.
    let (s, h) = env
        .call(
            json!({ "email": "a@example.com", "preferred_username": "alice", "teams": ["red", "blue"] }),
            &spoof,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let h = h.expect("forwarded");
    assert_eq!(values(&h, "x-user-email"), ["a@example.com"]);
    assert_eq!(values(&h, "remote-user"), ["alice"]);
    assert_eq!(values(&h, "x-user-teams"), ["red,blue"]);
    assert!(values(&h, "x_user_email").is_empty());
    assert!(values(&h, "remote_user").is_empty());
}

#[tokio::test]
async fn list_values_holding_the_delimiter_are_refused() {
    let env = setup().await;
    for claims in [
        json!({ "groups": ["employees,video-admins"] }),
        json!({ "groups": "employees,video-admins" }),
        json!({ "groups": ["employees", ""] }),
        json!({ "teams": ["red,blue"] }),
    ] {
        let (s, h) = env.call(claims.clone(), &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{claims}");
        assert!(h.is_none(), "{claims} was forwarded");
    }
    // Plain lists still pass, joined with commas.
    let (s, h) = env
        .call(json!({ "groups": ["employees", "video-admins"] }), &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        values(&h.unwrap(), "x-auth-roles"),
        ["employees,video-admins"]
    );
}

#[tokio::test]
async fn claim_values_with_surrounding_whitespace_are_refused() {
    let env = setup().await;
    for claims in [
        json!({ "sub": " admin " }),
        json!({ "sub": "admin\t" }),
        json!({ "groups": [" admins"] }),
        json!({ "email": "a@example.com " }),
        json!({ "teams": ["red", " blue"] }),
    ] {
        let (s, h) = env.call(claims.clone(), &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{claims}");
        assert!(h.is_none(), "{claims} was forwarded");
    }
    // Inner spaces are part of the value.
    let (s, h) = env
        .call(json!({ "email": "Alice Doe <a@example.com>" }), &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        values(&h.unwrap(), "x-user-email"),
        ["Alice Doe <a@example.com>"]
    );
}

#[tokio::test]
async fn method_override_headers_are_removed() {
    let env = setup().await;
    let (s, h) = env
        .call(
            json!({}),
            &[
                ("x-http-method-override", "DELETE"),
                ("x_http_method_override", "DELETE"),
                ("x-method-override", "DELETE"),
                ("x-http-method", "DELETE"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let h = h.expect("forwarded");
    for name in [
        "x-http-method-override",
        "x_http_method_override",
        "x-method-override",
        "x-http-method",
    ] {
        assert!(values(&h, name).is_empty(), "{name} reached the upstream");
    }
}
