//! Claim-rule evaluation and request header hygiene, as run per request.

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderMap, HeaderValue};
use meetgate::config::{build, BuildMode};
use meetgate::pipeline::authn::Principal;
use meetgate::pipeline::{authz, forward};

fn bench(c: &mut Criterion) {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c\"\ntls_key = \"k\"\n\
        [identity.corp]\nissuer = \"https://idp.example\"\naudiences = [\"api\"]\nroles_claim = \"groups\"\ntenant_claim = \"org_id\"\n\
        [[route]]\nname = \"r\"\npath = \"/api/orgs/{tenant}/meetings\"\nupstream = \"http://127.0.0.1:3000\"\nauthenticate = \"corp\"\n\
        authorize = { roles_any = [\"meeting-creators\", \"admins\"], scopes_all = [\"meetings:write\"], tenant_param = \"tenant\", claims_equal = { \"email_verified\" = true } }\n";
    let env: HashMap<String, String> = HashMap::new();
    let lookup = move |k: &str| env.get(k).cloned();
    let snap = build(
        text,
        std::path::Path::new("/nonexistent/m.toml"),
        BuildMode::Check,
        &lookup,
    )
    .unwrap();
    let route = snap.routes[0].clone();
    let claims = serde_json::json!({
        "sub": "alice", "org_id": "acme", "groups": ["staff", "meeting-creators"],
        "scope": "meetings:read meetings:write", "email_verified": true
    });
    let principal = Principal::from_claims(
        &snap.identities["corp"],
        None,
        claims.as_object().unwrap().clone(),
        u64::MAX,
    );
    let captures = vec![(Arc::from("tenant"), "acme".to_owned())];
    let rules = route.authorize.as_ref().unwrap();
    c.bench_function("rule_eval_all_rules_pass", |b| {
        b.iter(|| authz::check(rules, &principal, &captures).unwrap())
    });

    let mut headers = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
        ),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("accept-language", "en-US,en;q=0.9"),
        (
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln",
        ),
        ("connection", "keep-alive"),
        ("cookie", "session=abc; theme=dark"),
        ("x-auth-subject", "spoofed"),
        ("content-type", "application/json"),
    ] {
        headers.append(
            http::HeaderName::from_static(k),
            HeaderValue::from_static(v),
        );
    }
    c.bench_function("header_hygiene_typical_request", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            forward::sanitize_request(&mut h, &route);
            h
        })
    });
    c.bench_function("header_map_clone_baseline", |b| b.iter(|| headers.clone()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
