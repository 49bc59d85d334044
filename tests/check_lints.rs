//! `meetgate check` catching dangerous and dead configurations
//! (docs/BEHAVIOUR.md items 39-42): the real binary on files with each
//! pattern, asserting the exit status, file:line, the route's name, the
//! message and, through `--format json`, the stable code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `meetgate check --config PATH ARGS` with only `env` set.
fn run_check(path: &Path, args: &[&str], env: &[(&str, &str)]) -> Checked {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetgate"));
    cmd.args(["check", "--config"])
        .arg(path)
        .args(args)
        .env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A file with a `[server]` section on real certificates, then `rest`.
struct File {
    _certs: Certs,
    _dir: tempfile::TempDir,
    path: PathBuf,
    text: String,
}

impl File {
    fn new(rest: &str) -> Self {
        let certs = Certs::new();
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(&certs, dir.path(), "", rest);
        let text = std::fs::read_to_string(&path).unwrap();
        File {
            _certs: certs,
            _dir: dir,
            path,
            text,
        }
    }

    /// The 1-based line of the first line containing `needle`, after line
    /// `after` (to tell routes apart).
    fn line(&self, needle: &str, after: usize) -> usize {
        self.text
            .lines()
            .enumerate()
            .skip(after)
            .find(|(_, l)| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{}", self.text))
            .0
            + 1
    }

    fn check(&self, args: &[&str]) -> Checked {
        run_check(&self.path, args, &[])
    }

    /// `check --format json`, parsed.
    fn json(&self, args: &[&str]) -> (Option<i32>, Value) {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.check(&all);
        assert!(
            out.stderr.is_empty(),
            "json mode wrote to stderr: {}",
            out.stderr
        );
        let doc = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));
        (out.code, doc)
    }
}

/// The problem with `code` in `doc[list]`.
fn find<'a>(doc: &'a Value, list: &str, code: &str) -> &'a Value {
    doc[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == code)
        .unwrap_or_else(|| panic!("no {list} `{code}` in {doc:#}"))
}

const IDENTITY: &str = r#"
[identity.corp]
issuer = "https://idp.example.com"
audiences = ["api://app"]
roles_claim = "groups"

[identity.partner]
issuer = "https://partner.example.com"
audiences = ["api://app"]
"#;

#[test]
fn a_protected_route_behind_a_weaker_one_is_an_error_naming_both_routes() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "everything"
path = "/*"
upstream = "http://127.0.0.1:3000"
authenticate = "none"

[[route]]
name = "admin"
path = "/admin/{{id}}"
methods = ["GET"]
upstream = "http://127.0.0.1:3001"
authenticate = "corp"
authorize = {{ roles_any = ["admins"] }}
"#
    ));
    let out = f.check(&[]);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    let first = f.line("path = \"/*\"", 0);
    let line = f.line("path = \"/admin/{id}\"", 0);
    let file = f.path.display();
    let hit = out
        .stderr
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "{file}:{line}: error: line {line}: key `route[1].path`"
            ))
        })
        .unwrap_or_else(|| panic!("no error on line {line}: {}", out.stderr));
    for says in [
        format!("route \"everything\" (line {first}) comes first"),
        "no authentication where this route requires a bearer token of identity \"corp\" and its `authorize` rules".to_owned(),
        "(route \"admin\")".to_owned(),
    ] {
        assert!(hit.contains(&says), "{hit}");
    }
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1));
    assert_eq!(doc["ok"], false);
    let e = find(&doc, "errors", "route_shadowed_by_weaker");
    assert_eq!(e["line"], line);
    assert_eq!(e["column"], 1);
    assert_eq!(e["route"], "admin");
    assert_eq!(e["key"], "route[1].path");
    assert_eq!(e["file"], file.to_string());
}

#[test]
fn a_dead_route_behind_an_equal_or_stronger_one_is_a_warning_that_strict_refuses() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "api"
host = "App.Example.com:8443"
path = "/api/*"
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
authorize = {{ roles_any = ["staff"] }}

[[route]]
name = "api-health"
host = "app.example.com"
path = "/api/health"
methods = ["GET", "HEAD"]
upstream = "http://127.0.0.1:3000"
authenticate = "none"

[[route]]
name = "api-users"
path = "/api/users"
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
"#
    ));
    let out = f.check(&[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let line = f.line("path = \"/api/health\"", 0);
    let warning = format!(
        "{}:{line}: warning: line {line}: key `route[1].path`: can never match: route \"api\"",
        f.path.display()
    );
    assert!(out.stdout.contains(&warning), "{}", out.stdout);
    // A route on any host is not covered by one on a single host.
    assert!(!out.stdout.contains("route[2]"), "{}", out.stdout);

    let strict = f.check(&["--strict"]);
    assert_eq!(strict.code, Some(1), "{}{}", strict.stdout, strict.stderr);
    assert!(
        strict.stderr.contains("refused by --strict: 1 warning"),
        "{}",
        strict.stderr
    );
    let (code, doc) = f.json(&["--strict"]);
    assert_eq!(code, Some(1));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"].as_array().unwrap().len(), 0);
    assert_eq!(
        find(&doc, "warnings", "route_shadowed")["route"],
        "api-health"
    );
    let (code, doc) = f.json(&[]);
    assert_eq!((code, &doc["ok"]), (Some(0), &Value::Bool(true)));
    assert_eq!(doc["summary"]["routes"], 3);
}

#[test]
fn bearer_of_another_identity_first_is_weaker() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "partner-api"
path = "/api/{{anything}}"
upstream = "http://127.0.0.1:3000"
authenticate = ["partner", "corp"]

[[route]]
name = "corp-only"
path = "/api/reports"
methods = ["POST"]
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
"#
    ));
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1), "{doc:#}");
    let e = find(&doc, "errors", "route_shadowed_by_weaker");
    assert_eq!(e["route"], "corp-only");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("identity \"partner\" or \"corp\""),
        "{e}"
    );
}

#[test]
fn routes_that_together_take_every_method_shadow_a_later_one() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "read-public"
path = "/reports/*"
methods = ["GET", "HEAD"]
upstream = "http://127.0.0.1:3000"
authenticate = "none"

[[route]]
name = "write-corp"
path = "/reports/{{id}}"
methods = ["POST", "PUT"]
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
authorize = {{ roles_any = ["staff"] }}

[[route]]
name = "reports-admin"
path = "/reports/annual"
methods = ["GET", "POST"]
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
authorize = {{ roles_any = ["staff"] }}

[[route]]
name = "reports-delete"
path = "/reports/annual"
methods = ["POST", "DELETE"]
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
"#
    ));
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1), "{doc:#}");
    // GET goes to the public route, POST to the other: the public one lets
    // GET through without the token this route requires.
    let e = find(&doc, "errors", "route_shadowed_by_weaker");
    assert_eq!(e["route"], "reports-admin");
    let message = e["message"].as_str().unwrap();
    let (first, second) = (
        f.line("path = \"/reports/*\"", 0),
        f.line("path = \"/reports/{id}\"", 0),
    );
    for says in [
        format!("routes \"read-public\" (line {first}) and \"write-corp\" (line {second}) come first and together take every request"),
        "move this route above \"read-public\"".to_owned(),
    ] {
        assert!(message.contains(&says), "{message}");
    }
    // DELETE is left to the last route: it can match, nothing to say.
    let all = doc.to_string();
    assert!(!all.contains("reports-delete"), "{doc:#}");
    assert_eq!(doc["errors"].as_array().unwrap().len(), 1, "{doc:#}");
}

#[test]
fn role_rules_need_the_identitys_roles_claim() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "partner-admin"
path = "/partner/admin"
upstream = "http://127.0.0.1:3000"
authenticate = "partner"
authorize = {{ roles_all = ["admin"] }}
"#
    ));
    let out = f.check(&[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let line = f.line("roles_all", 0);
    let want = format!("{}:{line}: error: line {line}: key `route[0].authorize.roles_all`: identity \"partner\" has no `roles_claim`", f.path.display());
    let hit = out.stderr.lines().find(|l| l.starts_with(&want));
    let hit = hit.unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(hit.contains("(route \"partner-admin\")"), "{hit}");
    assert_eq!(
        f.json(&[]).1["errors"][0]["code"],
        "roles_without_roles_claim"
    );
}

#[test]
fn foreign_host_and_path_syntax_is_refused_saying_ours() {
    let f = File::new(
        r#"
[[route]]
name = "wild"
host = "*.example.com"
path = "/a"
upstream = "http://127.0.0.1:3000"
authenticate = "none"

[[route]]
name = "express"
path = "/users/:id"
upstream = "http://127.0.0.1:3000"
authenticate = "none"

[[route]]
name = "regex"
path = "/items/\\d+"
upstream = "http://127.0.0.1:3000"
authenticate = "none"

[[route]]
name = "query"
path = "/search?q=x"
upstream = "http://127.0.0.1:3000"
authenticate = "none"
"#,
    );
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1));
    let errors = doc["errors"].as_array().unwrap();
    let by_route = |name: &str| {
        errors
            .iter()
            .find(|e| e["route"] == name)
            .unwrap_or_else(|| panic!("nothing about {name}: {doc:#}"))
    };
    let wild = by_route("wild");
    assert_eq!(wild["code"], "unsupported_host_syntax");
    assert_eq!(wild["line"], f.line("*.example.com", 0));
    assert!(wild["message"]
        .as_str()
        .unwrap()
        .contains("wildcard hosts are not supported"));
    for (name, needle, says) in [
        ("express", "/users/:id", "write `{id}`"),
        ("regex", "/items/", "regular expression"),
        ("query", "/search?q=x", "never holds `?`"),
    ] {
        let e = by_route(name);
        assert_eq!(e["code"], "unsupported_path_syntax", "{e}");
        assert_eq!(e["line"], f.line(needle, 0), "{e}");
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains(says) && msg.contains("`{name}` captures one segment"),
            "{msg}"
        );
    }
}

#[test]
fn secrets_that_look_like_failed_references_are_refused() {
    let f = File::new(
        r#"
[webhook.zoom]
type = "zoom"
secret_tokens = ["$ZOOM_WEBHOOK_SECRET", "${ZOOM_WEBHOOK_SECRET}-old"]

[[route]]
name = "hooks"
path = "/hooks"
verify_webhook = "zoom"
upstream = "http://127.0.0.1:3000"
"#,
    );
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1), "{doc:#}");
    let errors = doc["errors"].as_array().unwrap();
    let line = f.line("secret_tokens", 0);
    let says = [
        "write \"${ZOOM_WEBHOOK_SECRET}\"",
        "`${ZOOM_WEBHOOK_SECRET}` inside a longer value",
    ];
    for (i, says) in says.iter().enumerate() {
        let e = &errors[i];
        assert_eq!(e["code"], "reference_syntax", "{e}");
        assert_eq!(e["key"], format!("webhook.zoom.secret_tokens[{i}]"));
        assert_eq!(e["line"], line);
        let msg = e["message"].as_str().unwrap();
        assert!(
            msg.contains(says) && msg.contains("exactly \"${NAME}\""),
            "{msg}"
        );
    }
}

#[test]
fn admin_listen_on_a_public_listeners_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new();
    let path = dir.path().join("meetgate.toml");
    let text = format!(
        "[server]\nlisten = \"0.0.0.0:8443\"\nplain_listen = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8443\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        certs.cert.display(),
        certs.key.display()
    );
    std::fs::write(&path, &text).unwrap();
    let out = run_check(&path, &[], &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let want = "meetgate.toml:4: error: line 4: key `server.admin_listen`: 127.0.0.1:8443 overlaps `listen` (0.0.0.0:8443): the admin endpoints";
    assert!(out.stderr.contains(want), "{}", out.stderr);
    // Different ports (and port 0) are fine.
    std::fs::write(&path, text.replace("127.0.0.1:8443", "127.0.0.1:9901")).unwrap();
    let out = run_check(&path, &[], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("overlaps"), "{}", out.stdout);
}

#[test]
fn claims_to_headers_may_not_write_credentials_or_the_gateways_own_headers() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "app"
path = "/app/*"
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
claims_to_headers = {{ "Authorization" = "sub", "X-Auth-Subject" = "email", "X_Forwarded_For" = "ip", "Cookie" = "c", "Transfer-Encoding" = "te", "X-User-Email" = "email" }}
"#
    ));
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1), "{doc:#}");
    let refused: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["code"] == "reserved_header")
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    let want = |h: &str| format!("route[0].claims_to_headers.{h}");
    for h in [
        "Authorization",
        "X-Auth-Subject",
        "X_Forwarded_For",
        "Cookie",
        "Transfer-Encoding",
    ] {
        assert!(refused.contains(&want(h).as_str()), "{h}: {refused:?}");
    }
    assert!(!refused.contains(&want("X-User-Email").as_str()));
    assert_eq!(doc["errors"].as_array().unwrap().len(), 5, "{doc:#}");
}

#[test]
fn claims_equal_values_of_the_wrong_type_are_warned_about_and_dates_refused() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "verified"
path = "/v"
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
authorize = {{ claims_equal = {{ "email_verified" = "true" }} }}
"#
    ));
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(0), "{doc:#}");
    let w = find(&doc, "warnings", "claims_equal_type");
    assert_eq!(w["key"], "route[0].authorize.claims_equal.email_verified");
    assert_eq!(w["route"], "verified");
    assert!(w["message"]
        .as_str()
        .unwrap()
        .contains("issued as a JSON boolean"));

    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "dated"
path = "/d"
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
authorize = {{ claims_equal = {{ "hired" = 2020-01-01 }} }}
"#
    ));
    let (code, doc) = f.json(&[]);
    assert_eq!(code, Some(1), "{doc:#}");
    find(&doc, "errors", "claims_equal_never_matches");
}

#[test]
fn unknown_keys_get_a_did_you_mean() {
    let f = File::new(&format!(
        r#"{IDENTITY}
[[route]]
name = "app"
path = "/app"
upstream = "http://127.0.0.1:3000"
authenticate = "corp"
roles_any = ["staff"]
methds = ["GET"]
"#
    ));
    let out = f.check(&[]);
    assert_eq!(out.code, Some(1));
    let line = f.line("methds", 0);
    assert!(
        out.stderr.contains(&format!("{}:{line}: error: line {line}: key `route[0].methds`: unknown key `route[0].methds` (a typo must not silently disable a check); did you mean `methods`? (route \"app\")", f.path.display())),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("`roles_any` belongs in `authorize = { ... }`"),
        "{}",
        out.stderr
    );
    let (_, doc) = f.json(&[]);
    assert_eq!(
        find(&doc, "errors", "unknown_key")["line"],
        f.line("roles_any", 0)
    );
}

#[test]
fn an_unreadable_file_is_one_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = run_check(&missing, &["--format", "json"], &[]);
    assert_eq!(out.code, Some(1));
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["errors"][0]["code"], "unreadable_file");
    assert_eq!(doc["errors"][0]["line"], Value::Null);
}

/// A file whose every secret, address and URL is a reference, with TLS
/// files that do not exist: what CI has before the secrets do.
const UNPROVISIONED: &str = r#"[server]
listen = "${LISTEN}"
tls_cert = "/run/secrets/gateway.pem"
tls_key = "/run/secrets/gateway-key.pem"
trusted_proxies = ["${LB_CIDR}"]

[cluster]
redis_url = "${REDIS_URL}"

[identity.corp]
issuer = "${ISSUER}"
audiences = ["api://app"]
roles_claim = "groups"

[credential.vonage]
type = "vonage_application"
application_id = "${VONAGE_APPLICATION_ID}"
private_key = "file:/run/secrets/vonage.key"

[webhook.billing]
type = "standard"
secret_tokens = ["${BILLING_SECRET}"]

[grants]
key_id = "k1"
key = "file:/run/secrets/grant-key"

[[route]]
name = "app"
host = "${APP_HOST}"
path = "/app/*"
upstream = "${APP_UPSTREAM}"
authenticate = "corp"
authorize = { roles_any = ["staff"] }
"#;

#[test]
fn no_secrets_checks_the_structure_without_reading_variables_or_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meetgate.toml");
    std::fs::write(&path, UNPROVISIONED).unwrap();
    let out = run_check(&path, &["--no-secrets", "--strict"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("OK (1 routes, 1 identities"),
        "{}",
        out.stdout
    );

    // Without the flag the same file is refused, naming what is missing.
    let out = run_check(&path, &[], &[]);
    assert_eq!(out.code, Some(1));
    for missing in [
        "LISTEN is not set",
        "ISSUER is not set",
        "/run/secrets/vonage.key",
    ] {
        assert!(out.stderr.contains(missing), "{missing}: {}", out.stderr);
    }

    // The references' syntax, and everything else, is still checked.
    let broken = UNPROVISIONED
        .replace("${BILLING_SECRET}", "${billing-secret}")
        .replace("\"file:/run/secrets/grant-key\"", "\"$GRANT_KEY\"")
        .replace("roles_any", "roles_anyy");
    std::fs::write(&path, &broken).unwrap();
    let (code, doc) = {
        let out = run_check(&path, &["--no-secrets", "--format", "json"], &[]);
        (
            out.code,
            serde_json::from_str::<Value>(&out.stdout).unwrap(),
        )
    };
    assert_eq!(code, Some(1), "{doc:#}");
    assert_eq!(doc["secrets_read"], false);
    let codes: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        ["reference_syntax", "reference_syntax", "unknown_key"],
        "{doc:#}"
    );
}

#[test]
fn the_example_file_has_no_warning_without_its_secrets() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/meetgate.example.toml");
    let out = run_check(&example, &["--no-secrets", "--strict"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("warning"), "{}", out.stdout);
}

#[tokio::test]
async fn the_demo_file_has_no_warning() {
    let dir = tempfile::tempdir().unwrap();
    let setup = meetgate::demo::prepare(&meetgate::demo::DemoOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        dir: dir.path().to_owned(),
    })
    .await
    .unwrap();
    let out = run_check(&setup.config_path, &["--strict"], &[]);
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains("warning"), "{}", out.stdout);
}
