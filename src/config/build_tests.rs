//! Table-driven tests of the build rules: each broken snippet must be refused
//! with a message naming the key, and the line of that key.

use super::*;

const SERVER: &str =
    "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n";

fn env(name: &str) -> Option<String> {
    match name {
        "SET" => Some("value-from-env".to_owned()),
        _ => None,
    }
}

fn try_build(rest: &str) -> Result<Snapshot, Vec<ConfigError>> {
    build(
        &format!("{SERVER}{rest}"),
        Path::new("/nonexistent/meetgate.toml"),
        BuildMode::Check,
        &env,
    )
}

fn errors(rest: &str) -> Vec<ConfigError> {
    match try_build(rest) {
        Ok(_) => panic!("accepted:\n{rest}"),
        Err(e) => e,
    }
}

const ROUTE: &str =
    "[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:3000\"\n";

#[test]
fn broken_snippets_are_refused_naming_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        (ROUTE, "route[0].authenticate", "needs `authenticate`"),
        (
            "[webhook.w]\ntype = \"zoom\"\nsecret_tokens = [\"s\"]\n[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\nverify_webhook = \"w\"\n",
            "route[0].verify_webhook",
            "takes no `authenticate`",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://example.com\"\nauthenticate = \"none\"\n",
            "route[0].upstream",
            "only allowed for loopback",
        ),
        (
            "[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\", \"HS256\"]\n",
            "identity.i.algorithms",
            "\"HS256\" is never accepted",
        ),
        (
            "[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\nalgorithms = [\"none\"]\n",
            "identity.i.algorithms",
            "\"none\" is never accepted",
        ),
        (
            "[identity.i]\nissuer = \"http://idp.example\"\naudiences = [\"a\"]\n",
            "identity.i.issuer",
            "use https://",
        ),
        (
            "[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"b\"\nttl_secs = 1799\n",
            "credential.c.ttl_secs",
            "1800..=172800",
        ),
        (
            "[credential.c]\ntype = \"zoom_video_sdk\"\nclient_id = \"a\"\nclient_secret = \"b\"\nttl_secs = 172801\n",
            "credential.c.ttl_secs",
            "1800..=172800",
        ),
        (
            "[credential.c]\ntype = \"opentok_project\"\napi_key = \"a\"\napi_secret = \"b\"\nttl_secs = 301\n",
            "credential.c.ttl_secs",
            "1..=300",
        ),
        (
            "[credential.c]\ntype = \"zoom_s2s_oauth\"\naccount_id = \"a\"\nclient_id = \"b\"\nclient_secret = \"c\"\nttl_secs = 60\n",
            "credential.c.ttl_secs",
            "does not apply",
        ),
        (
            "[credential.c]\ntype = \"zoom_sdk\"\n",
            "credential.c.type",
            "unknown credential type",
        ),
        (
            "[webhook.w]\ntype = \"zoom\"\nsecret_tokens = [\"\"]\n",
            "webhook.w.secret_tokens[0]",
            "must not be empty",
        ),
        (
            "[webhook.w]\ntype = \"standard\"\nsecret_tokens = [\"not-whsec\"]\n",
            "webhook.w.secret_tokens[0]",
            "whsec_",
        ),
        (
            "[webhook.w]\ntype = \"zoom\"\nsecret_tokens = [\"${UNSET_VAR}\"]\n",
            "webhook.w.secret_tokens[0]",
            "UNSET_VAR is not set",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/a/*\"\nstrip_prefix = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\n",
            "route[0].strip_prefix",
            "not a literal prefix",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"ghost\"\n",
            "route[0].authenticate",
            "identity \"ghost\" is not defined",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = { zoom_app = \"ghost\" }\n",
            "route[0].authenticate",
            "zoom_app \"ghost\" is not defined",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = { zoom_ap = \"x\" }\n",
            "route[0].authenticate",
            "unknown field `zoom_ap`",
        ),
        (
            "[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n[[route]]\nname = \"r\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"i\"\ninject = [{ credential = \"ghost\", header = \"X-T\" }]\n",
            "route[0].inject[0].credential",
            "credential \"ghost\" is not defined",
        ),
        (
            "[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"b\"\n[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n[[route]]\nname = \"r\"\npath = \"/m/{id}\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"i\"\ninject = [{ credential = \"c\", header = \"X-S\", meeting_param = \"meeting\" }]\n",
            "route[0].inject[0].meeting_param",
            "not a `{meeting}` capture",
        ),
        (
            "[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"a\"\nclient_secret = \"b\"\n[[route]]\nname = \"r\"\npath = \"/s\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\nrespond = { credential = \"c\" }\n",
            "route[0].upstream",
            "takes no `upstream`",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/a\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\n[[route]]\nname = \"r\"\npath = \"/b\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\n",
            "route[1].name",
            "used twice",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/a/{x}/{x}\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\n",
            "route[0].path",
            "appears twice",
        ),
        ("[limits]\nmax_header_bytes = 10\n", "limits.max_header_bytes", "1024..=1048576"),
        ("[limits]\nupstream_timeout_ms = \"fast\"\n", "limits.upstream_timeout_ms", "invalid type"),
        ("[limits]\nsend_timeout_ms = 0\n", "limits.send_timeout_ms", "1..=86400000"),
        (
            "[limits]\nupstream_body_timeout_ms = 86400001\n",
            "limits.upstream_body_timeout_ms",
            "1..=86400000",
        ),
        ("[limits]\nhttp2_idle_timeout_ms = 0\n", "limits.http2_idle_timeout_ms", "1..=86400000"),
        ("[serverr]\nx = 1\n", "serverr", "unknown key"),
        (
            "[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\nmethods = [\"GET\", \"TRACE\"]\n",
            "route[0].methods",
            "`TRACE` is never forwarded",
        ),
        (
            "[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:1\"\nauthenticate = \"none\"\nmethods = [\"connect\"]\n",
            "route[0].methods",
            "`CONNECT` is never forwarded",
        ),
        ("[limits]\ntoken_cache_bytes = 1000\n", "limits.token_cache_bytes", "must lie in"),
        (
            "[limits]\nheader_read_timeout_ms = 18446744073709551615\n",
            "limits.header_read_timeout_ms",
            "must lie in 1..=86400000",
        ),
        (
            "[limits]\nupstream_timeout_ms = 0\n",
            "limits.upstream_timeout_ms",
            "must lie in 1..=86400000",
        ),
        (
            "[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n[credential.s]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[[route]]\nname = \"r\"\npath = \"/r\"\nauthenticate = \"i\"\nrespond = { credential = \"s\" }\ninject = [{ credential = \"s\", header = \"X-S\", meeting_query = \"m\" }]\n",
            "route[0].inject",
            "`inject` would never apply",
        ),
        (
            "[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n[credential.s]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[[route]]\nname = \"r\"\npath = \"/r\"\nauthenticate = \"i\"\nrespond = { credential = \"s\" }\nwebsocket = true\n",
            "route[0].websocket",
            "`websocket` would never apply",
        ),
        (
            "[identity.i]\nissuer = \"https://idp.example\"\naudiences = [\"a\"]\n[credential.s]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"c\"\nclient_secret = \"s\"\n[[route]]\nname = \"r\"\npath = \"/r\"\nauthenticate = \"i\"\nrespond = { credential = \"s\" }\nforward_bearer = true\n",
            "route[0].forward_bearer",
            "`forward_bearer` would never apply",
        ),
        (
            "[webhook.w]\ntype = \"zoom\"\nsecret_tokens = [\"s\"]\n[credential.o]\ntype = \"opentok_project\"\napi_key = \"k\"\napi_secret = \"s\"\n[[route]]\nname = \"r\"\npath = \"/r\"\nupstream = \"http://127.0.0.1:1\"\nverify_webhook = \"w\"\ninject = [{ credential = \"o\", header = \"X-O\" }]\n",
            "route[0].inject",
            "`inject` would never apply",
        ),
    ];
    for (snippet, key, needle) in cases {
        let errs = errors(snippet);
        let hit = errs
            .iter()
            .find(|e| e.key == *key && e.message.contains(needle));
        let hit = hit
            .unwrap_or_else(|| panic!("no error for `{key}` containing {needle:?} in {errs:#?}"));
        let text = format!("{SERVER}{snippet}");
        let key_name = key
            .rsplit(['.', ']'])
            .next()
            .unwrap()
            .trim_start_matches('[');
        let line = hit.line.expect("error has a line");
        let written = text.lines().nth(line - 1).unwrap();
        assert!(
            written.contains(key_name.split('[').next().unwrap()) || written.starts_with("[["),
            "line {line} ({written:?}) is not where `{key}` is written"
        );
    }
}

#[test]
fn every_unknown_key_is_listed() {
    let errs = errors("[limits]\nmax_body = 1\nmax_header = 2\n");
    let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["limits.max_body", "limits.max_header"]);
    assert_eq!(errs[0].line, Some(6));
    assert_eq!(errs[1].line, Some(7));
}

#[test]
fn secrets_resolve_and_never_appear_in_debug() {
    let snap = try_build("[credential.c]\ntype = \"zoom_meeting_sdk\"\nclient_id = \"${SET}\"\nclient_secret = \"${SET}\"\n")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let cred = &snap.credentials["c"];
    let CredentialKind::ZoomMeetingSdk {
        client_id,
        client_secret,
        ..
    } = &cred.kind
    else {
        panic!("kind");
    };
    assert_eq!(client_id, "value-from-env");
    assert_eq!(client_secret.expose_secret(), "value-from-env");
    let debug = format!("{cred:?}");
    assert_eq!(
        debug.matches("value-from-env").count(),
        1,
        "only the (public) client id: {debug}"
    );
}

#[test]
fn the_example_file_builds() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/meetgate.example.toml"
    ))
    .expect("config/meetgate.example.toml");
    let any = |k: &str| {
        Some(match k {
            // [grants] keys are 32 bytes in base64.
            "MEETGATE_GRANT_KEY" => "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned(),
            // The throwaway test key of the vectors (PKCS#8 RSA).
            "VONAGE_PRIVATE_KEY" => vector("vonage_app_jwt_default")["inputs"]["private_key_pem"]
                .as_str()
                .expect("a PEM")
                .to_owned(),
            "VONAGE_APPLICATION_ID" => "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab".to_owned(),
            _ => "x-test-value".to_owned(),
        })
    };
    let snap = build(
        &text,
        Path::new("/nonexistent/meetgate.toml"),
        BuildMode::Check,
        &any,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(snap.routes.len(), 16);
    assert!(matches!(
        &snap.routes[0].authenticate,
        Authenticate::Identities(ids) if ids.iter().map(|i| i.name.as_str()).eq(["corp"])
    ));
    assert!(matches!(snap.routes[15].authenticate, Authenticate::None));
}

/// The defaults the README's `[server]` and `[limits]` tables state are the
/// ones a configuration that leaves those keys out gets.
#[test]
fn the_readme_states_the_defaults_in_force() {
    let readme = include_str!("../../README.md");
    let stated = |key: &str| -> u64 {
        let row = format!("| `{key}` | ");
        let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with(&row)).collect();
        assert_eq!(rows.len(), 1, "README rows for `{key}`: {rows:?}");
        let default = rows[0].split('|').nth(2).unwrap_or_default().trim();
        default
            .parse()
            .unwrap_or_else(|_| panic!("`{key}` default {default:?}"))
    };
    let snap = try_build("").unwrap_or_else(|e| panic!("{e:#?}"));
    let (server, limits) = (&snap.server, &snap.limits);
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    for (key, in_force) in [
        ("shutdown_grace_ms", ms(server.shutdown_grace)),
        ("drain_ms", ms(server.drain)),
        ("readiness_grace_ms", ms(server.readiness_grace)),
        ("max_header_bytes", limits.max_header_bytes as u64),
        ("max_body_bytes", limits.max_body_bytes as u64),
        ("header_read_timeout_ms", ms(limits.header_read_timeout)),
        ("upstream_timeout_ms", ms(limits.upstream_timeout)),
        ("token_cache_bytes", limits.token_cache_bytes),
        ("send_timeout_ms", ms(limits.send_timeout)),
        ("upstream_body_timeout_ms", ms(limits.upstream_body_timeout)),
        ("http2_idle_timeout_ms", ms(limits.http2_idle_timeout)),
    ] {
        assert_eq!(stated(key), in_force, "`{key}`");
    }
}

use crate::test_vectors::vector;

#[test]
fn lifetime_policy_vectors_decide_ttl_secs() {
    for (name, kinds) in [
        (
            "zoom_sdk_jwt_lifetime_policy",
            &["zoom_meeting_sdk", "zoom_video_sdk"][..],
        ),
        ("opentok_jwt_lifetime_policy", &["opentok_project"][..]),
    ] {
        let v = vector(name);
        let cases = v["inputs"]["cases"].as_array().unwrap();
        let accept = v["expected"]["accept"].as_array().unwrap();
        for (case, ok) in cases.iter().zip(accept) {
            let ttl = case["exp"].as_u64().unwrap() - case["iat"].as_u64().unwrap();
            for kind in kinds {
                let keys = if *kind == "opentok_project" {
                    "api_key = \"k\"\napi_secret = \"s\""
                } else {
                    "client_id = \"k\"\nclient_secret = \"s\""
                };
                let r = try_build(&format!(
                    "[credential.c]\ntype = \"{kind}\"\n{keys}\nttl_secs = {ttl}\n"
                ));
                assert_eq!(r.is_ok(), ok.as_bool().unwrap(), "{name}: {kind} ttl {ttl}");
                if let Err(e) = r {
                    assert!(e.iter().any(|e| e.key == "credential.c.ttl_secs"), "{e:?}");
                }
            }
        }
    }
}
