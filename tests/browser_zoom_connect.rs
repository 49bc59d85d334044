//! A real browser follows the whole Zoom connect flow once: the SPA's
//! `fetch` of `/zoom/connect` (bearer token) gives the authorize URL, then
//! headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/interop/browser-follow.mjs`) opens it: the stand-in Zoom's
//! authorize page (`tests/common/zoom_oauth.rs`) → 302 to the gateway's
//! callback on `meetgate.example.com` → 302 to `return_to`, a public
//! gateway route forwarded to the echo upstream (200). Then the grant is
//! there: status says connected and a Meeting SDK answer carries a ZAK.
//!
//! Chromium resolves `meetgate.example.com` to 127.0.0.1 by
//! `--host-resolver-rules`. Trust: the per-run test CAs are not in
//! Chromium's store, so `--ignore-certificate-errors-spki-list` names the
//! public keys of the gateway's and the stand-in's test certificates. A
//! server presenting any other key fails the navigation
//! (`ERR_CERT_AUTHORITY_INVALID`); for the listed keys Chromium waives
//! every certificate error, so the host name is not what is checked here
//! (the gateway's certificate names `meetgate.example.com` all the same).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::zoom_flow::{GrantStore, ZoomFlow, RETURN_TO};
use common::zoom_oauth::REDIRECT_URI;
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

/// The gateway's public name in the browser (mapped to 127.0.0.1).
const PUBLIC_HOST: &str = "meetgate.example.com";

/// `text` with `from` (present exactly once) replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "`{from}` in the config");
    text.replacen(from, to, 1)
}

/// The shared Zoom flow configuration for a gateway the browser reaches at
/// `public`: the redirect URI and the first `return_to` are on it, and
/// `/app/*` there is a public route to the echo upstream.
fn config(z: &ZoomFlow, public: &str) -> String {
    let c = z.config(GrantStore::File("grants.redb"));
    let c = replace_once(
        &c,
        &format!("redirect_uri = \"{REDIRECT_URI}\""),
        &format!("redirect_uri = \"{public}/zoom/oauth/callback\""),
    );
    let c = replace_once(
        &c,
        &format!("return_to = [\"{RETURN_TO}\""),
        &format!("return_to = [\"{public}/app/settings/zoom\""),
    );
    format!(
        "{c}\n[[route]]\nname = \"app\"\npath = \"/app/*\"\nauthenticate = \"none\"\nupstream = \"http://{}\"\n",
        z.echo
    )
}

/// Opens `url` in headless Chromium; returns the script's JSON report.
fn browse(url: &str, trust: &[&Path]) -> Value {
    let cfg = json!({
        "url": url,
        "host_rules": format!("MAP {PUBLIC_HOST} 127.0.0.1"),
        "trust_pem": trust.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    run_browser("browser-follow.mjs", cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_follows_connect_through_zoom_and_callback_to_return_to() {
    let z = ZoomFlow::start().await;
    let port = free_port();
    let public = format!("https://{PUBLIC_HOST}:{port}");
    let redirect_uri = format!("{public}/zoom/oauth/callback");
    let return_to = format!("{public}/app/settings/zoom");
    *z.zoom.redirect_uri.lock().unwrap() = redirect_uri.clone();

    let gw_certs = Certs::with_names(&[PUBLIC_HOST]);
    let gw_chain = gw_certs.cert.clone();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let gw = TestGateway::start_on(gw_certs, listen, &config(&z, &public)).await;
    wait_until("keys", Duration::from_secs(5), || z.issuer.fetches() >= 1).await;

    // The SPA's fetch: JSON with the authorize URL.
    let (s, v) = z.call(&gw, "GET", "/zoom/connect", "alice", "").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let authorize_url = v["authorize_url"].as_str().expect("authorize_url");
    assert!(authorize_url.starts_with(&format!("{}/oauth/authorize?", z.zoom_base)));

    // The user's browser follows it.
    let report = tokio::task::spawn_blocking({
        let url = authorize_url.to_owned();
        let trust = [z.zoom_certs.cert.clone(), gw_chain];
        move || browse(&url, &[&trust[0], &trust[1]])
    })
    .await
    .unwrap();

    assert_eq!(report["final_url"], return_to.as_str(), "{report:#}");
    assert_eq!(report["status"], 200, "{report:#}");
    let chain = report["chain"].as_array().expect("chain");
    let steps: Vec<(&str, u64)> = chain
        .iter()
        .map(|h| (h["url"].as_str().unwrap(), h["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(steps.len(), 3, "authorize, callback, return_to: {report:#}");
    assert_eq!(steps[0], (authorize_url, 302));
    assert!(
        steps[1].0.starts_with(&format!("{redirect_uri}?code=")),
        "{report:#}"
    );
    assert_eq!(steps[1].1, 302, "{report:#}");
    assert_eq!(steps[2], (return_to.as_str(), 200));
    // The page is the echo upstream's, reached through the gateway.
    let page: Value = serde_json::from_str(report["text"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("final page is not the echo ({e}): {report:#}"));
    assert_eq!(page["upstream"], "meetgate demo echo");
    assert_eq!(page["path"], "/app/settings/zoom");

    // Zoom saw one authorize and one code exchange; the grant is stored.
    assert_eq!(z.zoom.authorize.load(Ordering::SeqCst), 1);
    assert_eq!(z.zoom.token_code.load(Ordering::SeqCst), 1);
    let (s, v) = z.status(&gw, "alice").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["connected"], true, "{v}");
    assert_eq!(v["zoom_user_id"], "TESTzoomUser01");

    // A Meeting SDK answer with the user's ZAK (and OBF: alice is in it).
    z.join_meeting();
    let (s, v) = z.signature(&gw, "alice").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["signature"].is_string(), "{v}");
    assert!(
        v["zak"]
            .as_str()
            .is_some_and(|t| t.starts_with("TESTzakTOKEN.")),
        "{v}"
    );
    assert!(
        v["obfToken"]
            .as_str()
            .is_some_and(|t| t.starts_with("TESTobfTOKEN.")),
        "{v}"
    );
    assert_eq!(z.zoom.zak.load(Ordering::SeqCst), 1);
}
