//! What an operator troubleshooting the gateway relies on: options that
//! refuse a typo rather than silently doing something else, refusals that
//! say what was wrong (never with the token), counters for what fails
//! before HTTP.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::issuer::{now, Issuer, SigningKey};
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

fn meetgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetgate"));
    cmd.args(args).env_remove("MEETGATE_LOG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the meetgate binary runs")
}

#[test]
fn a_misspelled_log_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let missing = missing.to_str().unwrap();
    for (args, env) in [
        (
            vec!["--log-format", "jsn", "check", "--config", missing],
            vec![],
        ),
        (
            vec!["check", "--config", missing],
            vec![("MEETGATE_LOG_FORMAT", "txt")],
        ),
    ] {
        let out = meetgate(&args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{stderr}");
        assert!(
            stderr.contains("json") && stderr.contains("text"),
            "{stderr}"
        );
    }
    // Both spellings of a valid format pass parsing: `check` then runs and
    // fails on the missing file (exit 1), not on the option.
    for format in ["json", "TEXT"] {
        let out = meetgate(&["--log-format", format, "check", "--config", missing], &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `request refused` lines logged at info so far.
fn refusals(gw: &BinaryGateway) -> Vec<Value> {
    gw.log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request refused" && v["level"] == "INFO")
        .collect()
}

#[tokio::test]
async fn a_refusal_is_logged_at_info_with_what_was_wrong_and_rate_limited() {
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(vec![key.clone()]).await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &certs,
        dir.path(),
        "",
        &format!(
            r#"
[identity.corp]
issuer = "{}"
audiences = ["api://meetings"]
algorithms = ["RS256"]
roles_claim = "groups"

[[route]]
name = "admin"
path = "/admin/*"
authenticate = "corp"
authorize = {{ roles_any = ["admins"], claims_equal = {{ "email_verified" = true }} }}
upstream = "http://127.0.0.1:9"

[[route]]
name = "verified"
path = "/verified/*"
authenticate = "corp"
authorize = {{ claims_equal = {{ "email" = "alice@example.com" }} }}
upstream = "http://127.0.0.1:9"
"#,
            issuer.url
        ),
    );
    let gw = BinaryGateway::spawn_with(&config, "info", &[]);
    let c = client(&certs, false);
    let call = |path: &str, token: Option<String>| {
        let (c, url) = (c.clone(), gw.url(path));
        async move {
            let auth = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            get(&c, &url, &headers).await.0
        }
    };
    let n = now();
    let wrong_aud = key.sign(&issuer.claims("a", json!({ "aud": ["other", "api://meeting"] })));
    let expired = key.sign(&issuer.claims("a", json!({ "iat": n - 400, "exp": n - 300 })));
    let viewer = key.sign(&issuer.claims("a", json!({ "groups": ["viewers"] })));
    let private = key.sign(&issuer.claims("a", json!({ "email": "mallory@example.com" })));
    for (path, token, status) in [
        ("/admin/x", &wrong_aud, StatusCode::UNAUTHORIZED),
        ("/admin/x", &expired, StatusCode::UNAUTHORIZED),
        ("/admin/x", &viewer, StatusCode::FORBIDDEN),
        ("/verified/x", &private, StatusCode::FORBIDDEN),
    ] {
        assert_eq!(call(path, Some(token.clone())).await, status, "{path}");
    }
    wait_until("four refusals logged", Duration::from_secs(5), || {
        refusals(&gw).len() >= 4
    })
    .await;
    let lines = refusals(&gw);
    let by_code = |code: &str| {
        lines
            .iter()
            .find(|l| l["code"] == code)
            .unwrap_or_else(|| panic!("{code}: {lines:?}"))["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("{code} has no detail: {lines:?}"))
            .to_owned()
    };
    assert_eq!(
        by_code("wrong_audience"),
        r#"aud ["other", "api://meeting"] is none of identity corp's audiences ["api://meetings"]"#
    );
    let expired_detail = by_code("expired");
    let ago: u64 = expired_detail
        .strip_prefix("expired ")
        .and_then(|d| d.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{expired_detail}"));
    assert!((300..330).contains(&ago), "{expired_detail}");
    assert!(
        expired_detail.ends_with(&format!("(exp {}, leeway 30 s)", n - 300)),
        "{expired_detail}"
    );
    assert_eq!(
        by_code("insufficient_role"),
        r#"rule roles_any ["admins"]: the caller's roles are ["viewers"]"#
    );
    assert_eq!(
        by_code("claim_mismatch"),
        r#"rule claims_equal: claim "email" differs from the rule's value"#
    );
    for l in &lines {
        assert!(l["route"].is_string() && l["status"].is_u64(), "{l}");
    }
    // Never a token, and never a claims_equal value (personal data).
    let everything = gw.log.lock().unwrap().join("\n");
    for secret in [&wrong_aud, &expired, &viewer, &private] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!everything.contains(signature), "a token in the log");
    }
    assert!(!everything.contains("mallory"), "a claim value in the log");

    // A flood: at most REFUSALS_LOGGED_PER_SECOND (10) lines a second at
    // info; the first line after it says how many were left out.
    let before = refusals(&gw).len();
    let started = std::time::Instant::now();
    for _ in 0..60 {
        assert_eq!(call("/admin/x", None).await, StatusCode::UNAUTHORIZED);
    }
    let seconds = started.elapsed().as_secs() + 1;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood = refusals(&gw).len() - before;
    assert!(
        flood >= 1 && flood as u64 <= 10 * (seconds + 1),
        "{flood} lines in {seconds} s"
    );
    assert!(flood < 60, "not rate-limited: {flood}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call("/admin/x", None).await, StatusCode::UNAUTHORIZED);
    wait_until("the line after the flood", Duration::from_secs(5), || {
        refusals(&gw).len() > before + flood
    })
    .await;
    // Every refusal is accounted for: written, or counted in the next
    // line written.
    let after: Vec<Value> = refusals(&gw)[before..].to_vec();
    let left_out: u64 = after.iter().filter_map(|l| l["not_logged"].as_u64()).sum();
    assert!(left_out >= 1, "{after:?}");
    assert_eq!(after.len() as u64 + left_out, 61, "{after:?}");
    assert_eq!(after.last().unwrap()["code"], "missing_token");
}

/// The failed-handshake counter of one reason.
fn handshakes_failed(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!(r#"meetgate_tls_handshake_failures_total{{listener="https",reason="{reason}"}}"#),
    )
}

#[tokio::test]
async fn failed_tls_handshakes_are_counted_by_reason_and_logged_at_debug() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &certs,
        dir.path(),
        "",
        "[limits]\nheader_read_timeout_ms = 300\n",
    );
    let gw = BinaryGateway::spawn_with(&config, "meetgate=debug", &[]);
    let admin = gw.admin_addr.unwrap();
    let tls = |cfg: rustls::ClientConfig| {
        let addr = gw.tls_addr;
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
                .connect("localhost".try_into().unwrap(), tcp)
                .await
        }
    };
    // A good handshake counts nothing.
    assert!(tls(certs.client_tls(&[b"http/1.1"])).await.is_ok());
    // Plain HTTP sent to the TLS port.
    let mut tcp = tokio::net::TcpStream::connect(gw.tls_addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let _ = tcp.read(&mut [0u8; 64]).await;
    // Connected and hung up (a TCP health check).
    drop(tokio::net::TcpStream::connect(gw.tls_addr).await.unwrap());
    // Only an ALPN protocol the gateway does not speak.
    assert!(tls(certs.client_tls(&[b"h3"])).await.is_err());
    // A client that does not trust the certificate refuses it (an alert).
    let distrustful = meetgate::tls::client_config(rustls::RootCertStore::empty());
    assert!(tls(distrustful).await.is_err());
    // Silent past header_read_timeout_ms.
    let mut silent = tokio::net::TcpStream::connect(gw.tls_addr).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut [0u8; 8])).await;

    let mut text = String::new();
    for _ in 0..50 {
        text = scrape(admin).await;
        if handshakes_failed(&text, "timeout") >= 1.0 && handshakes_failed(&text, "closed") >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for reason in [
        "invalid_message",
        "closed",
        "no_shared_protocol",
        "alert",
        "timeout",
    ] {
        assert_eq!(handshakes_failed(&text, reason), 1.0, "{reason}: {text}");
    }
    assert_eq!(handshakes_failed(&text, "other"), 0.0, "{text}");
    let logged: Vec<Value> = gw
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "TLS handshake failed")
        .collect();
    assert_eq!(logged.len(), 5, "{logged:?}");
    for l in &logged {
        assert_eq!(l["level"], "DEBUG", "{l}");
        assert!(l["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{l}");
        assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}");
    }
}

/// `notAfter` of a PEM certificate, in Unix seconds, as openssl reads it.
fn not_after(cert: &std::path::Path) -> i64 {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let date = text.trim().strip_prefix("notAfter=").unwrap().to_owned();
    let out = Command::new("date")
        .args(["-u", "-d", &date, "+%s"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A self-signed certificate for localhost valid `days` days, written by
/// openssl to `cert` and `key`.
fn openssl_cert(cert: &std::path::Path, key: &std::path::Path, days: u32) {
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-days", &days.to_string(), "-keyout"])
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test]
async fn certificate_expiry_is_a_metric_and_a_check_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    openssl_cert(&cert, &key, 10);
    let config = dir.path().join("meetgate.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n",
    )
    .unwrap();

    // `check` warns ten days ahead (14 is the threshold), naming the key.
    let out = meetgate(
        &[
            "check",
            "--format",
            "json",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{report}");
    let warning = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == "tls_cert_expiring")
        .unwrap_or_else(|| panic!("{report}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains(" days: renew it"),
        "{warning}"
    );
    assert!(
        warning["key"].as_str().unwrap().contains("tls_cert"),
        "{warning}"
    );

    let gw = BinaryGateway::spawn(&config);
    let admin = gw.admin_addr.unwrap();
    let series = "meetgate_tls_certificate_expiry_timestamp_seconds{}";
    let first = not_after(&cert);
    assert_eq!(metric(&scrape(admin).await, series), first as f64);
    // Both reload results are there from the start.
    let text = scrape(admin).await;
    for result in ["ok", "error"] {
        let line = format!(r#"meetgate_config_reloads_total{{result="{result}"}} 0"#);
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }

    // Renewed (as cert-manager does: new files, then the reload).
    let (new_cert, new_key) = (dir.path().join("new.crt"), dir.path().join("new.key"));
    openssl_cert(&new_cert, &new_key, 90);
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    let renewed = not_after(&cert);
    assert!(renewed > first + 70 * 86_400);
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = metric(&scrape(admin).await, series);
        if seen == renewed as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, renewed as f64);
}
