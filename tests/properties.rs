//! Property tests (the fuzzing fallback on a stable-only toolchain): the
//! parsers facing untrusted input never panic and keep their invariants.
//! `cargo test` runs a short pass, CI a longer one (`PROPTEST_CASES=40000`);
//! a 10-minute local run: `PROPTEST_CASES=3000000 cargo test --release --test properties`.
//! (cargo-fuzz needs a nightly toolchain, which this machine cannot fetch.)

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use meetgate::config::{
    build, BuildMode, SecretBytes, WebhookKind, WebhookSettings, ZoomAppSettings,
};
use meetgate::pipeline::authn::zoom_app;
use meetgate::pipeline::route::{normalize, upstream_path, PathPattern};
use meetgate::pipeline::webhook;
use proptest::prelude::*;

/// Cases per property: `PROPTEST_CASES`, or a short 2 000 for `cargo test`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2_000)
}

fn path_strategy() -> impl Strategy<Value = String> {
    // Paths built from the characters that matter: separators, dots, escapes.
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2F".to_owned()),
            Just("%5c".to_owned()),
            Just("%00".to_owned()),
            Just("%c0%af".to_owned()),
            Just(";".to_owned()),
            Just("%3F".to_owned()),
            "[a-zA-Z0-9_~-]{1,4}",
            "%[0-9a-fA-F]{2}",
            "\\PC{1,2}",
        ],
        0..12,
    )
    .prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn normalized_paths_have_no_ambiguous_segments(p in path_strategy()) {
        if let Ok(n) = normalize(&p) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.chars().any(char::is_control));
            prop_assert!(!n.contains('\\'));
            let segs: Vec<&str> = n[1..].split('/').collect();
            for (i, s) in segs.iter().enumerate() {
                prop_assert!(*s != "." && *s != "..", "{n}");
                prop_assert!(!s.is_empty() || i == segs.len() - 1, "{n}");
            }
            // What goes upstream decodes back to exactly what was matched.
            let up = upstream_path(&n, None);
            prop_assert_eq!(normalize(&up).ok(), Some(n.clone()));
        }
    }

    #[test]
    fn pattern_matching_never_panics(p in path_strategy(), pat in "(/[a-z{}*]{0,5}){1,4}") {
        if let (Ok(n), Ok(pattern)) = (normalize(&p), PathPattern::parse(&pat)) {
            let _ = pattern.matches(&n);
        }
    }

    #[test]
    fn config_parsing_never_panics(text in "\\PC{0,400}") {
        let env: HashMap<String, String> = HashMap::new();
        let lookup = move |k: &str| env.get(k).cloned();
        let _ = build(&text, Path::new("/nonexistent/m.toml"), BuildMode::Check, &lookup);
    }

    #[test]
    fn config_parsing_of_near_valid_files_never_panics(
        key in "[a-z_]{1,12}",
        value in prop_oneof![Just("\"x\"".to_owned()), Just("1".to_owned()), Just("[]".to_owned()), Just("{}".to_owned()), Just("\"${X}\"".to_owned()), Just("\"file:/nonexistent\"".to_owned())],
        section in prop_oneof![Just("[server]"), Just("[[route]]"), Just("[identity.a]"), Just("[credential.c]"), Just("[webhook.w]"), Just("[zoom_app.z]"), Just("[limits]")],
    ) {
        let text = format!("[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c\"\ntls_key = \"k\"\n{section}\n{key} = {value}\n");
        let env: HashMap<String, String> = HashMap::new();
        let lookup = move |k: &str| env.get(k).cloned();
        let _ = build(&text, Path::new("/nonexistent/m.toml"), BuildMode::Check, &lookup);
    }

    #[test]
    fn zoom_context_parsing_never_panics(header in "[A-Za-z0-9+/=_-]{0,600}", raw in proptest::collection::vec(any::<u8>(), 0..300)) {
        let app = ZoomAppSettings {
            name: "z".into(),
            client_id: None,
            client_secret: "secret".to_owned().into(),
            max_age: Duration::from_secs(300),
            allow_guests: true,
            leeway: Duration::ZERO,
        };
        let _ = zoom_app::verify(&header, &app, 1_700_000_000_000);
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(zoom_app::verify(&encoded, &app, 1_700_000_000_000).is_err(), "random bytes never verify");
    }

    #[test]
    fn webhook_verification_never_panics_and_random_signatures_fail(
        sig in "[ -~]{0,80}",
        ts in "[ -~]{0,12}",
        id in "[ -~]{0,20}",
        body in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        for kind in [WebhookKind::Zoom, WebhookKind::Standard, WebhookKind::Github] {
            let settings = WebhookSettings {
                name: "w".into(),
                kind,
                secrets: vec![SecretBytes(b"k".to_vec())],
                tolerance: Duration::from_secs(300),
                dedup: Duration::from_secs(60),
                application_id: None,
            };
            let mut h = http::HeaderMap::new();
            for name in ["x-zm-signature", "webhook-signature", "x-hub-signature-256"] {
                if let Ok(v) = http::HeaderValue::from_str(&sig) { h.insert(name, v); }
            }
            for name in ["x-zm-request-timestamp", "webhook-timestamp"] {
                if let Ok(v) = http::HeaderValue::from_str(&ts) { h.insert(name, v); }
            }
            // Ids too, so every scheme reaches its MAC check.
            for name in ["webhook-id", "x-github-delivery"] {
                if let Ok(v) = http::HeaderValue::from_str(&id) { h.insert(name, v); }
            }
            prop_assert!(webhook::verify(&settings, &h, &body, 1_700_000_000).is_err());
        }
    }
}

/// JWT parsing: random and mutated tokens are refused without panicking.
#[test]
fn jwt_parsing_never_panics_on_random_tokens() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c\"\ntls_key = \"k\"\n[identity.a]\nissuer = \"https://idp.example\"\naudiences = [\"api\"]\n";
    let env: HashMap<String, String> = HashMap::new();
    let lookup = move |k: &str| env.get(k).cloned();
    let snap = build(
        text,
        Path::new("/nonexistent/m.toml"),
        BuildMode::Check,
        &lookup,
    )
    .unwrap();
    let cache = meetgate::pipeline::authn::jwt::TokenCache::default();
    // Identity "a" with no keys fetched (as before its first fetch).
    let ids = {
        let _rt = rt.enter();
        let settings = snap.identities["a"].clone();
        vec![meetgate::live::LiveIdentity {
            keys: std::sync::Arc::new(meetgate::jwks::IssuerKeys::new(
                settings.clone(),
                meetgate::pipeline::forward::new_client((*snap.outbound_roots).clone()),
                std::sync::Arc::new(|_: &str, _: &std::collections::HashSet<String>| {}),
                std::sync::Arc::new(meetgate::metrics::Metrics::default()),
            )),
            settings,
        }]
    };
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        ..Config::default()
    });
    let token = prop_oneof![
        "[A-Za-z0-9_.-]{0,300}",
        (
            "[A-Za-z0-9_-]{0,80}",
            "[A-Za-z0-9_-]{0,200}",
            "[A-Za-z0-9_-]{0,100}"
        )
            .prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
        "\\PC{0,100}",
    ];
    runner
        .run(&token, |t| {
            let r = rt.block_on(meetgate::pipeline::authn::jwt::verify(
                &t, &ids, &snap, &cache,
            ));
            prop_assert!(r.is_err());
            Ok(())
        })
        .unwrap();
}
