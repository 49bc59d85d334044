//! The Zoom user flow from outside, shared by `tests/zoom_user.rs` (one
//! gateway, file store) and `tests/zoom_user_cluster.rs` (replicas on
//! Redis): an issuer for the app's users, the stand-in Zoom of
//! `zoom_oauth.rs`, an echo upstream, the gateway configuration with every
//! Zoom user route, and the calls a user's app and browser make.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};

use super::issuer::{Issuer, SigningKey};
use super::zoom_oauth::{zoom_oauth, ZoomOAuth, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};
use super::{client, full, get, send, Certs, TestGateway};

pub const RETURN_TO: &str = "https://app.example.com/settings/zoom";
/// 32 bytes, base64 (a test key; never a real one).
pub const GRANT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub const WEBHOOK_SECRET: &str = "zoom-webhook-secret";
pub const MEETING: &str = "123456789";

/// Where the gateway keeps grants.
pub enum GrantStore<'a> {
    /// The embedded file store (`[grants] path`), relative to the config.
    File(&'a str),
    /// Redis: `[cluster]` with this URL, key prefix and `timeout_ms`.
    Redis {
        url: &'a str,
        prefix: &'a str,
        timeout_ms: u64,
    },
}

/// Everything around the gateway: the app's issuer, Zoom, an upstream.
pub struct ZoomFlow {
    pub issuer: Arc<Issuer>,
    pub key: SigningKey,
    pub zoom: Arc<ZoomOAuth>,
    pub zoom_certs: Certs,
    pub zoom_base: String,
    pub echo: SocketAddr,
}

impl ZoomFlow {
    pub async fn start() -> ZoomFlow {
        let key = SigningKey::ec("ec-1");
        let issuer = Issuer::start(vec![key.clone()]).await;
        let zoom_certs = Certs::new();
        let (zoom_base, zoom) = zoom_oauth(&zoom_certs).await;
        let echo = super::echo_upstream().await;
        ZoomFlow {
            issuer,
            key,
            zoom,
            zoom_certs,
            zoom_base,
            echo,
        }
    }

    /// The gateway configuration (after `[server]`): identity `corp`,
    /// `[grants]` on `store`, `[zoom_user.main]`, credentials `sdk`, `zak`,
    /// `obf`, and the routes `/zoom/connect`, `/zoom/oauth/callback`,
    /// `/zoom/status`, `/zoom/disconnect`, `/sdk/signature` and `/sdk/start` (respond with
    /// ZAK and OBF), `/join/{meeting}` (inject) and `/webhooks/zoom`.
    pub fn config(&self, store: GrantStore<'_>) -> String {
        let (grants_store, cluster) = match store {
            GrantStore::File(path) => (format!("path = \"{path}\"\n"), String::new()),
            GrantStore::Redis {
                url,
                prefix,
                timeout_ms,
            } => (
                String::new(),
                format!(
                    "[cluster]\nredis_url = \"{url}\"\nkey_prefix = \"{prefix}\"\ntimeout_ms = {timeout_ms}\n"
                ),
            ),
        };
        let (iss, zoom_base, echo) = (&self.issuer.url, &self.zoom_base, self.echo);
        let zoom_ca = self.zoom_certs.ca.display();
        format!(
            r#"
[outbound]
ca_file = "{zoom_ca}"

{cluster}
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings"]
algorithms = ["ES256"]
roles_claim = "groups"

[grants]
key_id = "k1"
key = "{GRANT_KEY}"
{grants_store}
[zoom_user.main]
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
redirect_uri = "{REDIRECT_URI}"
return_to = ["{RETURN_TO}", "https://app.example.com/other"]
oauth_url = "{zoom_base}"
api_url = "{zoom_base}"

[credential.sdk]
type = "zoom_meeting_sdk"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"

[credential.zak]
type = "zoom_zak"
zoom_user = "main"

[credential.obf]
type = "zoom_obf"
zoom_user = "main"

[webhook.zoom]
type = "zoom"
secret_tokens = ["{WEBHOOK_SECRET}"]

[[route]]
name = "connect"
path = "/zoom/connect"
authenticate = "corp"
zoom_user = {{ app = "main", action = "connect" }}

[[route]]
name = "callback"
path = "/zoom/oauth/callback"
authenticate = "none"
zoom_user = {{ app = "main", action = "callback" }}

[[route]]
name = "status"
path = "/zoom/status"
authenticate = "corp"
zoom_user = {{ app = "main", action = "status" }}

[[route]]
name = "disconnect"
path = "/zoom/disconnect"
methods = ["POST"]
authenticate = "corp"
zoom_user = {{ app = "main", action = "disconnect" }}

[[route]]
name = "signature"
path = "/sdk/signature"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "sdk", zak = "zak", obf = "obf" }}

[[route]]
name = "start"
path = "/sdk/start"
methods = ["POST"]
authenticate = "corp"
respond = {{ credential = "sdk", zak = "zak" }}

[[route]]
name = "join"
path = "/join/{{meeting}}"
authenticate = "corp"
upstream = "http://{echo}"
inject = [{{ credential = "zak", header = "X-Zoom-Zak" }}, {{ credential = "obf", header = "X-Zoom-Obf", meeting_param = "meeting" }}]

[[route]]
name = "zoom-events"
path = "/webhooks/zoom"
verify_webhook = "zoom"
upstream = "http://{echo}"
"#
        )
    }

    /// Marks `MEETING` as one the authorizing user is in (OBF allowed).
    pub fn join_meeting(&self) {
        self.zoom
            .in_meeting
            .lock()
            .unwrap()
            .insert(MEETING.to_owned());
    }

    /// `Authorization` for user `sub` of identity `corp`.
    pub fn bearer(&self, sub: &str) -> String {
        let token = self.key.sign(&self.issuer.claims(sub, json!({})));
        format!("Bearer {token}")
    }

    /// A JSON call to `gw` as user `sub`.
    pub async fn call(
        &self,
        gw: &TestGateway,
        method: &str,
        path: &str,
        sub: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let auth = self.bearer(sub);
        let (status, _, bytes) = send(
            &gw.h1(),
            method,
            &gw.url(path),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            full(body.to_owned()),
        )
        .await;
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, v)
    }

    /// The user's browser: connect, Zoom's authorize page, then the
    /// redirect to the gateway's callback. Returns the callback URL.
    pub async fn authorize(&self, gw: &TestGateway, sub: &str, return_to: Option<&str>) -> String {
        let path = match return_to {
            Some(r) => format!(
                "/zoom/connect?return_to={}",
                form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
            ),
            None => "/zoom/connect".to_owned(),
        };
        let (status, v) = self.call(gw, "GET", &path, sub, "").await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let url = v["authorize_url"]
            .as_str()
            .expect("authorize_url")
            .to_owned();
        let browser = client(&self.zoom_certs, false);
        let (status, headers, _) = get(&browser, &url, &[]).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = headers["location"].to_str().unwrap();
        let query = location
            .strip_prefix(REDIRECT_URI)
            .expect("Zoom redirects to the registered redirect URI");
        gw.url(&format!("/zoom/oauth/callback{query}"))
    }

    /// The browser arriving at the callback `url`.
    pub async fn callback(
        &self,
        gw: &TestGateway,
        url: &str,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let (status, headers, body) = get(&gw.h1(), url, &[]).await;
        (
            status,
            headers,
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    }

    /// The whole connect flow for `sub` through `gw`.
    pub async fn connect(&self, gw: &TestGateway, sub: &str) {
        let url = self.authorize(gw, sub, None).await;
        let (status, headers, body) = self.callback(gw, &url).await;
        assert_eq!(status, StatusCode::FOUND, "{body}");
        assert_eq!(headers["location"], RETURN_TO);
    }

    /// A Meeting SDK signature for `MEETING` (with ZAK and OBF).
    pub async fn signature(&self, gw: &TestGateway, sub: &str) -> (StatusCode, Value) {
        let body = json!({ "meetingNumber": MEETING, "role": 0 }).to_string();
        self.call(gw, "POST", "/sdk/signature", sub, &body).await
    }

    /// A Meeting SDK signature with the user's ZAK only (no OBF).
    pub async fn zak_signature(&self, gw: &TestGateway, sub: &str) -> (StatusCode, Value) {
        let body = json!({ "meetingNumber": MEETING, "role": 0 }).to_string();
        self.call(gw, "POST", "/sdk/start", sub, &body).await
    }

    /// `/zoom/disconnect` for `sub`.
    pub async fn disconnect(&self, gw: &TestGateway, sub: &str) -> (StatusCode, Value) {
        self.call(gw, "POST", "/zoom/disconnect", sub, "").await
    }

    /// `/zoom/status` for `sub`.
    pub async fn status(&self, gw: &TestGateway, sub: &str) -> (StatusCode, Value) {
        self.call(gw, "GET", "/zoom/status", sub, "").await
    }
}
