//! Interop: Standard Webhooks payloads signed by the reference library (npm
//! `standardwebhooks`) are accepted; tampered or replayed ones are not.
//! GitHub-style signatures are checked too.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use http::StatusCode;
use sha2::Sha256;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn reference_sign(id: &str, ts: u64, payload: &str) -> Vec<(String, String)> {
    let mut child = Command::new("node")
        .arg(interop_dir().join("standard-webhooks-sign.mjs"))
        .args([SECRET, id, &ts.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

async fn gateway() -> TestGateway {
    let up = echo_upstream().await;
    TestGateway::start(&format!(
        r#"
[webhook.billing]
type = "standard"
secret_tokens = ["{SECRET}"]
tolerance_secs = 300

[webhook.repo]
type = "github"
secret_tokens = ["gh-secret"]

[[route]]
name = "billing"
path = "/webhooks/billing"
verify_webhook = "billing"
upstream = "http://{up}"

[[route]]
name = "repo"
path = "/webhooks/github"
verify_webhook = "repo"
upstream = "http://{up}"
"#
    ))
    .await
}

async fn post(
    gw: &TestGateway,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (s, _, b) = send(&gw.h1(), "POST", &gw.url(path), &h, full(body.to_owned())).await;
    (s, json(&b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_signed_standard_webhooks_are_accepted_and_tampering_refused() {
    ensure_node_modules();
    let gw = gateway().await;
    let now = common::issuer::now();
    let payload = r#"{"type":"invoice.paid","data":{"amount":4200,"note":"café"}}"#;
    let headers = reference_sign("msg_2Kxy", now, payload);
    let (s, v) = post(&gw, "/webhooks/billing", &headers, payload).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["headers"]["x-webhook-verified"], "billing");
    assert_eq!(v["body_bytes"], payload.len());

    // Same id again (a retry): delivered already.
    let again = reference_sign("msg_2Kxy", now, payload);
    assert_eq!(
        post(&gw, "/webhooks/billing", &again, payload).await.1,
        serde_json::json!({ "status": "duplicate" })
    );

    // Tampered payload, another id's signature, stale timestamp.
    let tampered = payload.replace("4200", "1");
    assert_eq!(
        post(
            &gw,
            "/webhooks/billing",
            &reference_sign("msg_3", now, payload),
            &tampered
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let mut swapped = reference_sign("msg_4", now, payload);
    swapped
        .iter_mut()
        .filter(|(k, _)| k == "webhook-id")
        .for_each(|(_, v)| *v = "msg_5".into());
    assert_eq!(
        post(&gw, "/webhooks/billing", &swapped, payload).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = post(
        &gw,
        "/webhooks/billing",
        &reference_sign("msg_6", now - 600, payload),
        payload,
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("stale_timestamp"))
    );
}

#[tokio::test]
async fn github_signatures_and_delivery_dedup() {
    let gw = gateway().await;
    let body = r#"{"action":"opened","number":7}"#;
    let mut m = Hmac::<Sha256>::new_from_slice(b"gh-secret").unwrap();
    m.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(m.finalize().into_bytes()));
    let h = vec![
        ("x-hub-signature-256".to_owned(), sig.clone()),
        ("x-github-delivery".to_owned(), "d-42".to_owned()),
    ];
    let (s, v) = post(&gw, "/webhooks/github", &h, body).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["headers"]["x-webhook-verified"], "repo");
    assert_eq!(
        post(&gw, "/webhooks/github", &h, body).await.1["status"],
        "duplicate"
    );
    let bad = vec![
        ("x-hub-signature-256".to_owned(), sig),
        ("x-github-delivery".to_owned(), "d-43".to_owned()),
    ];
    assert_eq!(
        post(&gw, "/webhooks/github", &bad, r#"{"action":"closed"}"#)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}
