//! Reload as Kubernetes updates mounted ConfigMaps and Secrets: each file
//! in the volume is a symlink `name -> ..data/name`, `..data` a symlink to
//! a timestamped directory, and an update writes a new directory and swaps
//! `..data` to it with one rename (the kubelet's atomic writer). No file's
//! own name changes; the gateway must notice the configuration, a `file:`
//! secret and a renewed certificate, each in its own volume.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

/// A volume laid out as the kubelet lays it out.
struct Volume {
    dir: PathBuf,
    version: usize,
}

impl Volume {
    fn new(dir: PathBuf) -> Self {
        std::fs::create_dir_all(&dir).unwrap();
        Volume { dir, version: 0 }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Publishes `files` as the volume's new content: a new timestamped
    /// directory, `..data` swapped to it by a rename, the old one removed.
    fn publish(&mut self, files: &[(&str, &[u8])]) {
        self.version += 1;
        let name = format!(
            "..2026_11_29_18_00_{:02}.{}",
            self.version,
            100 + self.version
        );
        let fresh = self.dir.join(&name);
        std::fs::create_dir(&fresh).unwrap();
        for (f, content) in files {
            std::fs::write(fresh.join(f), content).unwrap();
        }
        let old = std::fs::read_link(self.dir.join("..data")).ok();
        symlink(&name, self.dir.join("..data_tmp")).unwrap();
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data")).unwrap();
        for (f, _) in files {
            let link = self.dir.join(f);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(f), &link).unwrap();
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).unwrap();
        }
    }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// The configuration: TLS from the `tls` volume, a Zoom webhook whose
/// secret is `file:` in the `secrets` volume, and the given routes.
fn config_text(
    tls: &Volume,
    secrets: &Volume,
    up: std::net::SocketAddr,
    extra_route: &str,
) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
tls_cert = "{cert}"
tls_key = "{key}"

[webhook.zoom]
type = "zoom"
secret_tokens = ["file:{secret}"]

[[route]]
name = "hooks"
path = "/hooks"
verify_webhook = "zoom"
upstream = "http://{up}"

[[route]]
name = "a"
path = "/a"
upstream = "http://{up}"
authenticate = "none"
{extra_route}"#,
        cert = tls.path("tls.crt").display(),
        key = tls.path("tls.key").display(),
        secret = secrets.path("webhook-secret").display(),
    )
}

struct Setup {
    _root: tempfile::TempDir,
    config: Volume,
    tls: Volume,
    secrets: Volume,
    certs: Certs,
    up: std::net::SocketAddr,
    gw: meetgate::Gateway,
}

async fn setup() -> Setup {
    let root = tempfile::tempdir().unwrap();
    let up = echo_upstream().await;
    let certs = Certs::new();
    let mut tls = Volume::new(root.path().join("tls"));
    tls.publish(&[
        ("tls.crt", &read(&certs.cert)),
        ("tls.key", &read(&certs.key)),
    ]);
    let mut secrets = Volume::new(root.path().join("secrets"));
    secrets.publish(&[("webhook-secret", b"first-webhook-secret")]);
    let mut config = Volume::new(root.path().join("config"));
    config.publish(&[(
        "meetgate.toml",
        config_text(&tls, &secrets, up, "").as_bytes(),
    )]);
    let env: meetgate::Env = std::sync::Arc::new(|_: &str| None);
    let gw = meetgate::start(&config.path("meetgate.toml"), env)
        .await
        .unwrap_or_else(|e| panic!("start: {}", e.report()));
    Setup {
        _root: root,
        config,
        tls,
        secrets,
        certs,
        up,
        gw,
    }
}

fn generation(gw: &meetgate::Gateway) -> u64 {
    gw.state
        .generation
        .load(std::sync::atomic::Ordering::SeqCst)
}

async fn wait_generation(gw: &meetgate::Gateway, above: u64) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while generation(gw) <= above {
        assert!(Instant::now() < deadline, "no reload within 2 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn url(gw: &meetgate::Gateway, path: &str) -> String {
    format!("https://localhost:{}{path}", gw.tls_addr.port())
}

async fn post_hook(s: &Setup, secret: &str) -> StatusCode {
    let body = r#"{"event":"meeting.started","payload":{}}"#;
    let ts = meetgate::now_secs().to_string();
    let sig = zoom_webhook_signature(secret, &ts, body.as_bytes());
    let (status, _, _) = send(
        &client(&s.certs, false),
        "POST",
        &url(&s.gw, "/hooks"),
        &[
            ("x-zm-signature", &sig),
            ("x-zm-request-timestamp", &ts),
            ("content-type", "application/json"),
        ],
        full(body),
    )
    .await;
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_update_swapping_data_reloads_the_configuration() {
    let mut s = setup().await;
    let c = client(&s.certs, false);
    assert_eq!(
        get(&c, &url(&s.gw, "/b"), &[]).await.0,
        StatusCode::NOT_FOUND
    );
    let before = generation(&s.gw);
    let text = config_text(
        &s.tls,
        &s.secrets,
        s.up,
        "\n[[route]]\nname = \"b\"\npath = \"/b\"\nupstream = \"http://UP\"\nauthenticate = \"none\"\n"
            .replace("UP", &s.up.to_string())
            .as_str(),
    );
    s.config.publish(&[("meetgate.toml", text.as_bytes())]);
    wait_generation(&s.gw, before).await;
    assert_eq!(get(&c, &url(&s.gw, "/b"), &[]).await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_update_reaches_a_file_reference_though_the_configuration_is_unchanged() {
    let mut s = setup().await;
    assert_eq!(post_hook(&s, "first-webhook-secret").await, StatusCode::OK);
    let before = generation(&s.gw);
    s.secrets
        .publish(&[("webhook-secret", b"second-webhook-secret")]);
    wait_generation(&s.gw, before).await;
    assert_eq!(post_hook(&s, "second-webhook-secret").await, StatusCode::OK);
    assert_eq!(
        post_hook(&s, "first-webhook-secret").await,
        StatusCode::UNAUTHORIZED
    );

    // An event in a watched directory that changes no file reloads nothing.
    let now = generation(&s.gw);
    std::fs::write(s.secrets.dir.join("unrelated"), b"x").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(generation(&s.gw), now);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_serves_new_handshakes_without_a_restart() {
    let mut s = setup().await;
    let renewed = Certs::new(); // another CA: only the new chain verifies against it
    let old_ca = client_with_ca(&s.certs.ca);
    assert_eq!(get(&old_ca, &url(&s.gw, "/a"), &[]).await.0, StatusCode::OK);
    let before = generation(&s.gw);
    s.tls.publish(&[
        ("tls.crt", &read(&renewed.cert)),
        ("tls.key", &read(&renewed.key)),
    ]);
    wait_generation(&s.gw, before).await;
    // A fresh client: a new connection, a new handshake.
    let fresh = client_with_ca(&renewed.ca);
    assert_eq!(get(&fresh, &url(&s.gw, "/a"), &[]).await.0, StatusCode::OK);
    let stale = client_with_ca(&s.certs.ca);
    let refused = stale
        .request(http::Request::get(url(&s.gw, "/a")).body(empty()).unwrap())
        .await;
    assert!(refused.is_err(), "the old certificate is still served");
}
