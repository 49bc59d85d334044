//! The real binary: graceful shutdown on SIGTERM, reload on SIGHUP, and
//! `meetgate check`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use http::StatusCode;

fn config_with(certs: &Certs, dir: &std::path::Path, routes: &str) -> std::path::PathBuf {
    write_config(certs, dir, "shutdown_grace_ms = 10000", routes)
}

fn route(name: &str, path: &str, up: std::net::SocketAddr) -> String {
    format!("\n[[route]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_then_exits_zero() {
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let up = upstream(move |_req| {
        let arrived_tx = arrived_tx.clone();
        async move {
            let _ = arrived_tx.send(());
            tokio::time::sleep(Duration::from_millis(1500)).await;
            http::Response::new(full("finished"))
        }
    })
    .await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(&certs, dir.path(), &route("slow", "/slow", up));
    let mut gw = BinaryGateway::spawn(&config);
    let c = client(&certs, false);
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&c, &url, &[]).await });
    let mut arrived = arrived;
    arrived.recv().await.unwrap();

    gw.signal("TERM");
    let (s, _, b) = in_flight.await.unwrap();
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&b[..], b"finished");

    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = gw.child.try_wait().unwrap() {
                return st;
            }
            assert!(std::time::Instant::now() < deadline, "gateway did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_rereads_certificates() {
    let up = echo_upstream().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(&certs, dir.path(), &route("a", "/a", up));
    let gw = BinaryGateway::spawn(&config);
    let admin = gw.admin_addr.expect("admin listener");
    let generation = || async move {
        admin_get(admin, "/readyz").await.1["config_generation"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(generation().await, 1);

    // Only the certificate files change: the file watcher does not look at
    // them, so what applies them is the signal.
    let fresh = meetgate::tls::generate_dev_certs(&["localhost", "127.0.0.1"]).unwrap();
    let new_dir = tempfile::tempdir().unwrap();
    let (new_ca, _, _) = fresh.write_to(new_dir.path()).unwrap();
    std::fs::write(&certs.cert, &fresh.chain_pem).unwrap();
    std::fs::write(&certs.key, &fresh.key_pem).unwrap();
    gw.signal("HUP");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while generation().await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP did not reload within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = client_with_ca(&new_ca);
    assert_eq!(get(&c, &gw.url("/a"), &[]).await.0, StatusCode::OK);
    let log = gw.log.lock().unwrap().join("\n");
    assert!(log.contains("SIGHUP"), "{log}");
}

const EXAMPLE_ENV: &[(&str, &str)] = &[
    ("ZOOM_APP_CLIENT_ID", "TESTCLIENTID0001"),
    ("ZOOM_APP_CLIENT_SECRET", "contract-zoom-app-secret-value"),
    ("ZOOM_SDK_CLIENT_ID", "abcTESTsdkKEY123"),
    (
        "ZOOM_SDK_CLIENT_SECRET",
        "contract-meeting-sdk-secret-value",
    ),
    ("ZOOM_VIDEO_SDK_KEY", "TESTvideoSDKkey01"),
    ("ZOOM_VIDEO_SDK_SECRET", "contract-video-sdk-secret-value"),
    ("ZOOM_ACCOUNT_ID", "TESTaccountID"),
    ("ZOOM_CLIENT_ID", "TESTclientID"),
    ("ZOOM_CLIENT_SECRET", "contract-s2s-secret-value"),
    ("OPENTOK_API_KEY", "12345678"),
    ("OPENTOK_API_SECRET", "contract-opentok-secret-value"),
    ("ZOOM_WEBHOOK_SECRET_TOKEN", "contract-webhook-secret-value"),
    (
        "VONAGE_APPLICATION_ID",
        "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
    ),
    (
        "VONAGE_SIGNATURE_SECRET",
        "contract-vonage-signature-secret",
    ),
    (
        "MEETGATE_GRANT_KEY",
        "Y29udHJhY3QtZ3JhbnQta2V5LXZhbHVlLTMyYnl0ZXM=",
    ),
];

fn example_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/meetgate.example.toml")
}

fn check(config: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetgate"));
    cmd.args(["check", "--config"]).arg(config).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn check_accepts_the_example_file_with_its_variables_set() {
    let key = vector_rsa_key();
    let mut env = EXAMPLE_ENV.to_vec();
    env.push(("VONAGE_PRIVATE_KEY", &key));
    let out = check(&example_config(), &env);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for (_, secret) in env
        .iter()
        .filter(|(k, _)| k.contains("SECRET") || k.contains("KEY"))
    {
        assert!(!text.contains(secret), "check printed a secret: {text}");
    }
}

#[test]
fn check_names_an_unknown_key_and_its_line() {
    let text = std::fs::read_to_string(example_config()).unwrap();
    let bad = text.replacen("tenant_claim = \"org_id\"", "tenant_claims = \"org_id\"", 1);
    let line = bad
        .lines()
        .position(|l| l.starts_with("tenant_claims"))
        .unwrap()
        + 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = check(&path, EXAMPLE_ENV);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tenant_claims"), "{err}");
    assert!(err.contains(&format!("line {line}")), "{err}");
    assert!(err.contains(&format!("bad.toml:{line}")), "{err}");
}

#[test]
fn check_lists_every_problem_and_never_a_secret_value() {
    let text = std::fs::read_to_string(example_config()).unwrap();
    let bad = text
        .replacen("leeway_secs = 30", "leeway_sec = 30", 1)
        .replacen("authenticate = \"corp\"", "authenticate = \"corpp\"", 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    // One variable missing: named, while the others' values never appear.
    let env: Vec<_> = EXAMPLE_ENV
        .iter()
        .copied()
        .filter(|(k, _)| *k != "ZOOM_CLIENT_SECRET")
        .collect();
    let out = check(&path, &env);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leeway_sec`"), "{err}");
    assert!(err.contains("identity \"corpp\" is not defined"), "{err}");
    assert!(err.contains("ZOOM_CLIENT_SECRET is not set"), "{err}");
    for (_, v) in &env {
        if v.len() > 12 {
            assert!(!err.contains(v), "value leaked: {err}");
        }
    }
}
