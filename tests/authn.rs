//! Bearer JWT authentication and authorization through the real server
//! against a local issuer on an ephemeral port: one behaviour per test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::issuer::{now, Issuer, SigningKey};
use common::*;
use http::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

struct Env {
    gw: TestGateway,
    issuer: Arc<Issuer>,
    rsa: SigningKey,
    ec: SigningKey,
}

async fn setup_with(identity_extra: &str) -> Env {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let issuer = Issuer::start(vec![rsa.clone(), ec.clone()]).await;
    let up = echo_upstream().await;
    let gw = TestGateway::start(&format!(
        r#"
[identity.corp]
issuer = "{iss}"
audiences = ["api://meetings", "api://other"]
algorithms = ["RS256", "PS256", "ES256"]
leeway_secs = 5
roles_claim = "groups"
tenant_claim = "org_id"
{identity_extra}

[[route]]
name = "orgs"
path = "/api/orgs/{{tenant}}/meetings"
upstream = "http://{up}"
authenticate = "corp"
authorize = {{ roles_any = ["meeting-creators"], tenant_param = "tenant" }}

[[route]]
name = "claims"
path = "/claims"
upstream = "http://{up}"
authenticate = "corp"
claims_to_headers = {{ "X-User-Email" = "email", "X-User-Teams" = "teams" }}
authorize = {{ scopes_all = ["meetings:read"], claims_equal = {{ "email_verified" = true }} }}

[[route]]
name = "api"
path = "/api/*"
upstream = "http://{up}"
authenticate = "corp"
"#,
        iss = issuer.url
    ))
    .await;
    // Wait for the first JWKS fetch so tests start with keys.
    wait_until("keys", Duration::from_secs(5), || issuer.fetches() >= 1).await;
    Env {
        gw,
        issuer,
        rsa,
        ec,
    }
}

async fn setup() -> Env {
    setup_with("jwks_refresh_secs = 300").await
}

async fn call(env: &Env, path: &str, token: Option<&str>) -> (StatusCode, http::HeaderMap, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h: Vec<(&str, &str)> = vec![("x-auth-subject", "spoofed"), ("x_auth_roles", "admin")];
    if let Some(a) = &auth {
        h.push(("authorization", a));
    }
    let (s, hd, b) = get(&env.gw.h1(), &env.gw.url(path), &h).await;
    let v = if b.is_empty() { Value::Null } else { json(&b) };
    (s, hd, v)
}

fn assert_401(r: &(StatusCode, http::HeaderMap, Value), reason: &str) {
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{:?}", r.2);
    assert_eq!(r.2["error"], reason, "{:?}", r.2);
    assert_eq!(
        r.1["www-authenticate"],
        r#"Bearer realm="meetgate", error="invalid_token""#
    );
}

#[tokio::test]
async fn rs256_es256_and_ps256_are_accepted_with_identity_headers() {
    let env = setup().await;
    let claims = env.issuer.claims(
        "alice",
        json!({ "groups": ["meeting-creators"], "org_id": "acme" }),
    );
    for token in [
        env.rsa.sign(&claims),
        env.rsa.sign_as(Algorithm::PS256, &claims),
        env.ec.sign(&claims),
    ] {
        let (s, _, v) = call(&env, "/api/orgs/acme/meetings", Some(&token)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let h = &v["headers"];
        assert_eq!(h["x-auth-subject"], "alice", "spoofed value replaced");
        assert_eq!(h["x-auth-issuer"], env.issuer.url);
        assert_eq!(h["x-auth-tenant"], "acme");
        assert_eq!(h["x-auth-roles"], "meeting-creators");
        assert!(h.get("x_auth_roles").is_none());
        assert!(h.get("authorization").is_none(), "bearer not forwarded");
    }
}

#[tokio::test]
async fn missing_token_is_401_without_error_attribute() {
    let env = setup().await;
    let (s, h, v) = call(&env, "/api/x", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(h["www-authenticate"], r#"Bearer realm="meetgate""#);
    assert_eq!(v["error"], "missing_token");
    // Scheme is case-insensitive; other schemes are no bearer token.
    let t = env.rsa.sign(&env.issuer.claims("a", json!({})));
    let (s, _, _) = get(
        &env.gw.h1(),
        &env.gw.url("/api/x"),
        &[("authorization", &format!("bearer {t}"))],
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = get(
        &env.gw.h1(),
        &env.gw.url("/api/x"),
        &[("authorization", "Basic YTpi")],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // A token in the query string is never read.
    let (s, _, _) = get(
        &env.gw.h1(),
        &env.gw.url(&format!("/api/x?access_token={t}")),
        &[],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_rejection_class() {
    let env = setup().await;
    let c = |extra: Value| env.issuer.claims("alice", extra);
    let n = now();
    let other_rsa = SigningKey::rsa("rsa-1"); // same kid, different key
    let rsa_pub_pem = {
        // HS256 "signed" with the RSA public key text (classic confusion).
        let jwk = &env.rsa.jwk;
        jwk.to_string()
    };
    let hs = {
        use base64::Engine as _;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"HS256","typ":"JWT","kid":"rsa-1"}"#);
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c(json!({})).to_string());
        let key = jsonwebtoken::EncodingKey::from_secret(rsa_pub_pem.as_bytes());
        let sig = jsonwebtoken::crypto::sign(format!("{h}.{p}").as_bytes(), &key, Algorithm::HS256)
            .unwrap();
        format!("{h}.{p}.{sig}")
    };
    let none = {
        use base64::Engine as _;
        let e = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.",
            e(r#"{"alg":"none","typ":"JWT"}"#.into()),
            e(c(json!({})).to_string())
        )
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            env.rsa.sign(&c(json!({ "exp": n - 60 }))),
            "expired",
        ),
        (
            "not before",
            env.rsa.sign(&c(json!({ "nbf": n + 600 }))),
            "not_yet_valid",
        ),
        (
            "issued in the future",
            env.rsa.sign(&c(json!({ "iat": n + 600 }))),
            "not_yet_valid",
        ),
        (
            "no exp",
            env.rsa.sign(&c(json!({ "exp": null }))),
            "invalid_claims",
        ),
        (
            "exp as string",
            env.rsa.sign(&c(json!({ "exp": (n + 600).to_string() }))),
            "invalid_claims",
        ),
        (
            "wrong audience",
            env.rsa.sign(&c(json!({ "aud": "api://elsewhere" }))),
            "wrong_audience",
        ),
        (
            "no audience",
            env.rsa.sign(&c(json!({ "aud": null }))),
            "wrong_audience",
        ),
        (
            "wrong issuer",
            env.rsa.sign(&c(json!({ "iss": "https://evil.example" }))),
            "wrong_issuer",
        ),
        ("alg none", none, "algorithm_not_allowed"),
        ("HS256 with the public key", hs, "algorithm_not_allowed"),
        (
            "kid names another key",
            other_rsa.sign(&c(json!({}))),
            "invalid_signature",
        ),
        (
            "ES256 under an RSA kid",
            env.ec.sign_raw(
                &json!({"alg":"ES256","kid":"rsa-1"}),
                &c(json!({})),
                Algorithm::ES256,
            ),
            "algorithm_not_allowed",
        ),
        (
            "unknown crit",
            env.rsa.sign_raw(
                &json!({"alg":"RS256","kid":"rsa-1","crit":["exp"],"exp":1}),
                &c(json!({})),
                Algorithm::RS256,
            ),
            "unsupported_crit",
        ),
        (
            "bad typ",
            env.rsa.sign_raw(
                &json!({"alg":"RS256","kid":"rsa-1","typ":"JWE"}),
                &c(json!({})),
                Algorithm::RS256,
            ),
            "invalid_typ",
        ),
        (
            "jku elsewhere",
            env.rsa.sign_raw(
                &json!({"alg":"RS256","kid":"attacker","jku":"https://evil.example/jwks"}),
                &c(json!({})),
                Algorithm::RS256,
            ),
            "unknown_kid",
        ),
        ("garbage", "not.a.jwt".to_owned(), "malformed_token"),
        (
            "empty signature",
            {
                let t = env.rsa.sign(&c(json!({})));
                format!("{}.", t.rsplit_once('.').unwrap().0)
            },
            "malformed_token",
        ),
        (
            "ECDSA r = s = 0",
            {
                use base64::Engine as _;
                let t = env.ec.sign(&c(json!({})));
                format!(
                    "{}.{}",
                    t.rsplit_once('.').unwrap().0,
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0u8; 64])
                )
            },
            "invalid_signature",
        ),
        (
            "trailing dot",
            format!("{}.", env.rsa.sign(&c(json!({})))),
            "malformed_token",
        ),
        (
            "too large",
            format!(
                "{}.{}.{}",
                "a".repeat(4000),
                "b".repeat(4000),
                "c".repeat(300)
            ),
            "token_too_large",
        ),
        (
            "tampered claims",
            {
                let t = env.rsa.sign(&c(json!({})));
                let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
                use base64::Engine as _;
                parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(c(json!({"sub": "mallory"})).to_string());
                parts.join(".")
            },
            "invalid_signature",
        ),
    ];
    for (what, token, reason) in cases {
        let r = call(&env, "/api/x", Some(&token)).await;
        assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.2);
        assert_eq!(r.2["error"], reason, "{what}");
        assert!(
            !r.2.to_string().contains(&token[..20.min(token.len())]),
            "{what}: token echoed"
        );
        assert_401(&r, reason);
    }
}

#[tokio::test]
async fn audience_may_be_an_array() {
    let env = setup().await;
    let t = env.rsa.sign(
        &env.issuer
            .claims("a", json!({ "aud": ["x", "api://other"] })),
    );
    assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn key_rotation_needs_exactly_one_refetch() {
    let env = setup().await;
    let before = env.issuer.fetches();
    let new_key = SigningKey::rsa("rsa-2");
    env.issuer.keys.lock().unwrap().push(new_key.clone());
    let t = new_key.sign(&env.issuer.claims("a", json!({})));
    assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
    assert_eq!(env.issuer.fetches(), before + 1);
    // Known now: no further fetch.
    assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
    assert_eq!(env.issuer.fetches(), before + 1);
}

#[tokio::test]
async fn a_flood_of_random_kids_costs_the_issuer_at_most_one_fetch() {
    let env = setup().await;
    let before = env.issuer.fetches();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let claims = env.issuer.claims("a", json!({}));
        let t = env.rsa.sign_raw(
            &json!({"alg":"RS256","kid": format!("random-{i}")}),
            &claims,
            Algorithm::RS256,
        );
        let c = env.gw.h2();
        let url = env.gw.url("/api/x");
        tasks.push(tokio::spawn(async move {
            get(&c, &url, &[("authorization", &format!("Bearer {t}"))]).await
        }));
    }
    for t in tasks {
        let (s, _, b) = t.await.unwrap();
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(json(&b)["error"], "unknown_kid");
    }
    assert!(
        env.issuer.fetches() - before <= 1,
        "{} fetches",
        env.issuer.fetches() - before
    );
}

#[tokio::test]
async fn issuer_down_keeps_cached_keys_until_max_stale_then_503() {
    let env = setup_with("jwks_refresh_secs = 1\njwks_max_stale_secs = 2").await;
    let token = |sub: &str| env.rsa.sign(&env.issuer.claims(sub, json!({})));
    env.issuer
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Fresh tokens (no cache hit) still verify with the cached keys.
    assert_eq!(
        call(&env, "/api/x", Some(&token("b"))).await.0,
        StatusCode::OK
    );
    // After max stale, no usable keys: 503 with Retry-After, not 401.
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    let (s, h, v) = loop {
        let r = call(&env, "/api/x", Some(&token("c"))).await;
        if r.0 != StatusCode::OK || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"], "keys_unavailable");
    assert!(h.contains_key("retry-after"));
    let (s, r) = admin_get(env.gw.gw.admin_addr.unwrap(), "/readyz?strict=1").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r["not_ready"][0].as_str().unwrap().contains("corp"), "{r}");
    // The issuer recovers: keys come back by themselves.
    env.issuer
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while call(&env, "/api/x", Some(&token("d"))).await.0 != StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "keys did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        admin_get(env.gw.gw.admin_addr.unwrap(), "/readyz?strict=1")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_keys_at_start_is_503_and_not_ready_while_other_routes_serve() {
    let rsa = SigningKey::rsa("rsa-1");
    let issuer = Issuer::start(vec![rsa.clone()]).await;
    issuer.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let up = echo_upstream().await;
    let gw = TestGateway::start(&format!(
        "[identity.corp]\nissuer = \"{}\"\naudiences = [\"api://meetings\"]\n\n[[route]]\nname = \"p\"\npath = \"/p\"\nupstream = \"http://{up}\"\nauthenticate = \"corp\"\n\n[[route]]\nname = \"pub\"\npath = \"/pub\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n",
        issuer.url
    ))
    .await;
    let t = rsa.sign(&issuer.claims("a", json!({})));
    let (s, h, b) = get(
        &gw.h1(),
        &gw.url("/p"),
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&b)["error"], "keys_unavailable");
    assert!(h.contains_key("retry-after"));
    assert_eq!(get(&gw.h1(), &gw.url("/pub"), &[]).await.0, StatusCode::OK);
    assert_eq!(
        admin_get(gw.gw.admin_addr.unwrap(), "/readyz?strict=1")
            .await
            .0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        admin_get(gw.gw.admin_addr.unwrap(), "/healthz").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn garbage_jwks_keeps_the_old_keys() {
    let env = setup_with("jwks_refresh_secs = 1").await;
    env.issuer
        .garbage
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let before = env.issuer.fetches();
    wait_until("a garbage fetch", Duration::from_secs(5), || {
        env.issuer.fetches() > before
    })
    .await;
    let t = env.rsa.sign(&env.issuer.claims("z", json!({})));
    assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn verified_tokens_are_served_from_the_cache_until_their_key_leaves() {
    let env = setup_with("jwks_refresh_secs = 1").await;
    let t = env.rsa.sign(&env.issuer.claims("cached", json!({})));
    assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
    let hits = env.gw.gw.state.tokens.hits();
    assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
    assert_eq!(env.gw.gw.state.tokens.hits(), hits + 1);
    // The key disappears from the JWKS: the next refresh drops the entry.
    env.issuer.keys.lock().unwrap().retain(|k| k.kid != "rsa-1");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = call(&env, "/api/x", Some(&t)).await;
        if r.0 == StatusCode::UNAUTHORIZED {
            assert_eq!(r.2["error"], "unknown_kid");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cached token still accepted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tenant_and_role_rules_answer_403() {
    let env = setup().await;
    let ok = env.rsa.sign(&env.issuer.claims(
        "a",
        json!({ "groups": ["meeting-creators"], "org_id": "acme" }),
    ));
    assert_eq!(
        call(&env, "/api/orgs/acme/meetings", Some(&ok)).await.0,
        StatusCode::OK
    );
    let (s, _, v) = call(&env, "/api/orgs/globex/meetings", Some(&ok)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("tenant_mismatch"))
    );
    let no_role = env.rsa.sign(
        &env.issuer
            .claims("a", json!({ "groups": "viewers", "org_id": "acme" })),
    );
    let (s, _, v) = call(&env, "/api/orgs/acme/meetings", Some(&no_role)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_role"))
    );
}

#[tokio::test]
async fn claims_to_headers_and_scope_rules() {
    let env = setup().await;
    let t = env.rsa.sign(&env.issuer.claims(
        "a",
        json!({ "scope": "meetings:read x", "email_verified": true, "email": "a@example.com", "teams": ["red", "blue"] }),
    ));
    let (s, _, v) = call(&env, "/claims", Some(&t)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["headers"]["x-user-email"], "a@example.com");
    assert_eq!(v["headers"]["x-user-teams"], "red,blue");
    let no_scope = env.rsa.sign(
        &env.issuer
            .claims("a", json!({ "scope": "x", "email_verified": true })),
    );
    let (s, _, v) = call(&env, "/claims", Some(&no_scope)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );
    let bad = env.rsa.sign(&env.issuer.claims(
        "a",
        json!({ "scope": "meetings:read", "email_verified": true, "email": "a@example.com\r\nX-Evil: 1" }),
    ));
    let (s, _, v) = call(&env, "/claims", Some(&bad)).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_claims"))
    );
}

#[tokio::test]
async fn a_list_of_identities_is_chosen_by_iss() {
    let a_key = SigningKey::rsa("a-1");
    let b_key = SigningKey::ec("b-1");
    let a = Issuer::start(vec![a_key.clone()]).await;
    let b = Issuer::start(vec![b_key.clone()]).await;
    let up = echo_upstream().await;
    let gw = TestGateway::start(&format!(
        "[identity.a]\nissuer = \"{}\"\naudiences = [\"api://meetings\"]\n[identity.b]\nissuer = \"{}\"\naudiences = [\"api://meetings\"]\nalgorithms = [\"ES256\"]\n\n[[route]]\nname = \"p\"\npath = \"/p\"\nupstream = \"http://{up}\"\nauthenticate = [\"a\", \"b\"]\n",
        a.url, b.url
    ))
    .await;
    wait_until("keys", Duration::from_secs(5), || {
        a.fetches() >= 1 && b.fetches() >= 1
    })
    .await;
    for (t, iss) in [
        (a_key.sign(&a.claims("x", json!({}))), &a.url),
        (b_key.sign(&b.claims("y", json!({}))), &b.url),
    ] {
        let (s, _, body) = get(
            &gw.h1(),
            &gw.url("/p"),
            &[("authorization", &format!("Bearer {t}"))],
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&body)["headers"]["x-auth-issuer"], iss.as_str());
    }
    // An iss that matches neither.
    let t = a_key.sign(&a.claims("x", json!({ "iss": "https://third.example" })));
    let (s, _, body) = get(
        &gw.h1(),
        &gw.url("/p"),
        &[("authorization", &format!("Bearer {t}"))],
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(json(&body)["error"], "unknown_issuer");
    // b's token signed with a's key type under b: refused.
    let t = a_key.sign(&b.claims("x", json!({})));
    assert_eq!(
        get(
            &gw.h1(),
            &gw.url("/p"),
            &[("authorization", &format!("Bearer {t}"))]
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_verified_token_cache_can_be_turned_off() {
    let env = setup_with("verified_token_cache = false").await;
    let t = env.rsa.sign(&env.issuer.claims("nocache", json!({})));
    for _ in 0..3 {
        assert_eq!(call(&env, "/api/x", Some(&t)).await.0, StatusCode::OK);
    }
    assert_eq!(
        env.gw.gw.state.tokens.hits(),
        0,
        "every request verified the signature"
    );
}
