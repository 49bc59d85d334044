//! Interop: meetgate's `ZoomUserClient` (authorize URL, code + PKCE
//! exchange, refresh with rotation) against an independent authorization
//! server, npm `oidc-provider` (`tests/interop/zoom-oauth-provider.mjs`):
//! routes `/oauth/authorize`, `/oauth/token`, `/oauth/revoke`, PKCE
//! required (S256), a confidential client with `client_secret_basic`,
//! refresh tokens rotated on every refresh.
//!
//! The user's browser is played over HTTP: the authorize URL, then
//! oidc-provider's dev interactions (login form, consent form) with a
//! cookie jar, until the redirect to the registered redirect URI.
//!
//! What differs from Zoom, and how it is bridged (see the script): Zoom
//! grants the app's configured scopes without a `scope` parameter and adds
//! `api_url` to token answers; the script gives scope-less authorize
//! requests the app's scopes and adds `api_url`, everything else (codes,
//! PKCE check, client authentication, rotation, refusals) is oidc-provider's
//! own. Revocation: RFC 7009's answer is 200 with an empty body
//! (oidc-provider's), Zoom's is `{"status":"success"}`; the client takes
//! both.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::zoom_oauth::{CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};
use common::*;
use http::StatusCode;
use meetgate::zoom_user::{PkceVerifier, ZoomUserClient, ZoomUserError, ZoomUserSettings};
use secrecy::{ExposeSecret, SecretString};

/// What oidc-provider grants the app (Zoom: the app's configured scopes).
const APP_SCOPES: [&str; 2] = ["user:read:token", "user:read:zak"];

struct Provider {
    child: Child,
    base: String,
}

impl Provider {
    fn start() -> Self {
        ensure_node_modules();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("node")
            .arg(interop_dir().join("zoom-oauth-provider.mjs"))
            .args([&port.to_string(), CLIENT_ID, CLIENT_SECRET, REDIRECT_URI])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (Node.js 20+) runs oidc-provider");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("oidc-provider did not start");
        Provider {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zoom_client(base: &str, secret: &str) -> ZoomUserClient {
    let settings = ZoomUserSettings {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(secret.to_owned()),
        redirect_uri: REDIRECT_URI.into(),
        oauth_base: base.into(),
        api_base: base.into(),
        timeout: Duration::from_secs(5),
    };
    ZoomUserClient::new(
        Arc::new(settings),
        meetgate::pipeline::forward::new_client(rustls::RootCertStore::empty()),
    )
}

/// A browser's cookies, by name (the provider scopes them by path; the
/// newest of a name is the one that matters in this flow).
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn take(&mut self, headers: &http::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || v.contains("1970") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The user at oidc-provider: opens `authorize_url`, signs in as `login`
/// on the dev login form, confirms the consent form, and returns the query
/// of the final redirect to the registered redirect URI.
async fn authorize(base: &str, authorize_url: &str, login: &str) -> Vec<(String, String)> {
    let browser = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<TestBody>();
    let mut jar = Jar::default();
    let absolute = |l: &str| {
        if l.starts_with('/') {
            format!("{base}{l}")
        } else {
            l.to_owned()
        }
    };
    let mut url = authorize_url.to_owned();
    let mut form: Option<String> = None;
    let mut forms_posted = Vec::new();
    for _ in 0..12 {
        let cookie = jar.header();
        let (status, headers, body) = match form.take() {
            Some(body) => {
                send(
                    &browser,
                    "POST",
                    &url,
                    &[
                        ("cookie", &cookie),
                        ("content-type", "application/x-www-form-urlencoded"),
                    ],
                    full(body),
                )
                .await
            }
            None => get(&browser, &url, &[("cookie", &cookie)]).await,
        };
        jar.take(&headers);
        if status.is_redirection() {
            let location = absolute(headers["location"].to_str().unwrap());
            if let Some(query) = location.strip_prefix(&format!("{REDIRECT_URI}?")) {
                assert_eq!(forms_posted, ["login", "consent"]);
                return form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
            }
            url = location;
            continue;
        }
        let page = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        // The dev interaction page: one form, posted back to its action.
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no form at {url}: {page}"));
        let prompt = page
            .split("name=\"prompt\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or_else(|| panic!("no prompt at {url}: {page}"));
        form = Some(match prompt {
            "login" => format!("prompt=login&login={login}&password=any"),
            "consent" => "prompt=consent".to_owned(),
            other => panic!("unexpected prompt {other}: {page}"),
        });
        forms_posted.push(prompt.to_owned());
        url = absolute(action);
    }
    panic!("no redirect to {REDIRECT_URI} after 12 steps");
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    q.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {k} in {q:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_pkce_exchange_and_rotating_refresh_with_oidc_provider() {
    let provider = Provider::start();
    let client = zoom_client(&provider.base, CLIENT_SECRET);

    let verifier = PkceVerifier::generate().unwrap();
    let url = client.authorize_url("state-1", &verifier);
    assert!(url.starts_with(&format!("{}/oauth/authorize?", provider.base)));
    let q = authorize(&provider.base, &url, "zoom-user-1").await;
    assert_eq!(param(&q, "state"), "state-1");
    let code = param(&q, "code");

    // PKCE is checked by the provider: another verifier is refused (the
    // code survives that: oidc-provider checks PKCE before consuming it).
    let other = PkceVerifier::generate().unwrap();
    let err = client.exchange_code(code, &other).await.unwrap_err();
    assert!(matches!(err, ZoomUserError::InvalidGrant), "{err:?}");
    // So is a wrong client secret (client_secret_basic).
    let err = zoom_client(&provider.base, "not-the-secret")
        .exchange_code(code, &verifier)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ZoomUserError::ClientRefused { error } if error == "invalid_client"),
        "{err:?}"
    );

    let first = client.exchange_code(code, &verifier).await.unwrap();
    assert_eq!(first.expires_in, 3599);
    assert_eq!(first.scopes, APP_SCOPES);
    assert_eq!(first.api_url, provider.base);
    assert!(!first.access_token.expose_secret().is_empty());
    assert!(!first.refresh_token.expose_secret().is_empty());

    // Refresh rotates the refresh token; the new one refreshes again.
    let second = client.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    assert_ne!(
        second.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    assert_eq!(second.scopes, APP_SCOPES);
    assert_eq!(second.expires_in, 3599);
    let third = client.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(
        third.refresh_token.expose_secret(),
        second.refresh_token.expose_secret()
    );

    // A used refresh token is refused afterwards: invalid_grant, which the
    // vault reads as "connect again".
    let err = client.refresh(&first.refresh_token).await.unwrap_err();
    assert!(matches!(err, ZoomUserError::InvalidGrant), "{err:?}");
    let err = client.refresh(&second.refresh_token).await.unwrap_err();
    assert!(matches!(err, ZoomUserError::InvalidGrant), "{err:?}");

    // The code was single use.
    let err = client.exchange_code(code, &verifier).await.unwrap_err();
    assert!(matches!(err, ZoomUserError::InvalidGrant), "{err:?}");

    // Revocation (RFC 7009: 200, empty body) ends the grant.
    client.revoke(&third.refresh_token).await.expect("revoked");
    let err = client.refresh(&third.refresh_token).await.unwrap_err();
    assert!(matches!(err, ZoomUserError::InvalidGrant), "{err:?}");
}
