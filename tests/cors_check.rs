//! `meetgate check` on CORS policies (docs/BEHAVIOUR.md item 38): `"*"`
//! with credentials and malformed origins are refused with file:line, as
//! are a route naming no policy and a policy whose methods the route never
//! takes.

use std::process::Command;

/// `meetgate check` on `text`; returns (exit code, stderr).
fn check(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cors.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(["check", "--config"])
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The 1-based line of the first line of `text` starting with `prefix`.
fn line_of(text: &str, prefix: &str) -> usize {
    text.lines().position(|l| l.starts_with(prefix)).unwrap() + 1
}

#[test]
fn check_refuses_star_with_credentials_and_malformed_origins_with_file_and_line() {
    let text = r#"[server]
listen = "127.0.0.1:8443"
tls_cert = "gateway.pem"
tls_key = "gateway-key.pem"

[cors.everyone]
origins = ["*"]
credentials = true

[cors.typos]
origins = [
  "https://app.example.com/",
  "app.example.com",
  "https://app.example.com/spa",
  "https://app.example.com:443",
  "https://app-*.example.com",
  "https://*.com",
]

[[route]]
name = "sig"
path = "/sig"
upstream = "http://127.0.0.1:3000"
authenticate = "none"
cors = "everyone"
"#;
    let (code, err) = check(text);
    assert_eq!(code, Some(1), "{err}");
    let expect = |prefix: &str, key: &str, says: &str| {
        let line = line_of(text, prefix);
        let want = format!("cors.toml:{line}: error: line {line}: key `{key}`: ");
        let hit = err
            .lines()
            .find(|l| l.contains(&want))
            .unwrap_or_else(|| panic!("no `{want}` in:\n{err}"));
        assert!(hit.contains(says), "{hit}");
    };
    expect(
        "credentials = true",
        "cors.everyone.credentials",
        "origin \"*\"",
    );
    expect(
        "  \"https://app.example.com/\"",
        "cors.typos.origins[0]",
        "trailing /",
    );
    expect(
        "  \"app.example.com\"",
        "cors.typos.origins[1]",
        "has no scheme",
    );
    expect(
        "  \"https://app.example.com/spa\"",
        "cors.typos.origins[2]",
        "no path",
    );
    expect(
        "  \"https://app.example.com:443\"",
        "cors.typos.origins[3]",
        "default port",
    );
    expect(
        "  \"https://app-*",
        "cors.typos.origins[4]",
        "whole first label",
    );
    expect("  \"https://*.com\"", "cors.typos.origins[5]", "two labels");
    assert_eq!(
        err.lines().filter(|l| l.contains(": error: ")).count(),
        7,
        "{err}"
    );

    // A route naming no policy, and a policy whose methods the route never
    // takes, are refused on the route's `cors` line.
    let text = r#"[server]
listen = "127.0.0.1:8443"
tls_cert = "gateway.pem"
tls_key = "gateway-key.pem"

[cors.spa]
origins = ["https://app.example.com"]
methods = ["PUT"]

[[route]]
name = "a"
path = "/a"
methods = ["POST"]
upstream = "http://127.0.0.1:3000"
authenticate = "none"
cors = "spa"

[[route]]
name = "b"
path = "/b"
upstream = "http://127.0.0.1:3000"
authenticate = "none"
cors = "sap"
"#;
    let (code, err) = check(text);
    assert_eq!(code, Some(1), "{err}");
    let a = line_of(text, "cors = \"spa\"");
    assert!(
        err.contains(&format!("cors.toml:{a}: error: line {a}: key `route[0].cors`: none of cors \"spa\"'s methods (PUT)")),
        "{err}"
    );
    let b = line_of(text, "cors = \"sap\"");
    assert!(
        err.contains(&format!("cors.toml:{b}: error: line {b}: key `route[1].cors`: cors \"sap\" is not defined (defined: spa)")),
        "{err}"
    );
}
