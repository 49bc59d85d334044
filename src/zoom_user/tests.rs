//! The request bytes and answer handling against the spec's vectors
//! (`tests/data/vectors-2026.json`, spec section 1).

use http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::parse::{self, api_error, oauth_error, token_set};
use super::*;

fn vector(name: &str) -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/vectors-2026.json"
    ))
    .expect("tests/data/vectors-2026.json");
    let all: Value = serde_json::from_str(&text).expect("JSON");
    all["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector {name}"))
        .clone()
}

fn s(v: &Value) -> &str {
    v.as_str().expect("string")
}

fn settings(client_id: &str, secret: &str, redirect: &str) -> ZoomUserSettings {
    ZoomUserSettings {
        client_id: client_id.into(),
        client_secret: SecretString::from(secret.to_owned()),
        redirect_uri: redirect.into(),
        oauth_base: ZOOM_OAUTH_BASE.into(),
        api_base: ZOOM_API_BASE.into(),
        timeout: DEFAULT_TIMEOUT,
    }
}

#[test]
fn pkce_s256_vector_and_generated_verifiers() {
    let v = vector("zoom_oauth_pkce_s256");
    let verifier = PkceVerifier::from_secret(SecretString::from(
        s(&v["inputs"]["code_verifier"]).to_owned(),
    ))
    .unwrap();
    assert_eq!(verifier.challenge(), s(&v["expected"]["code_challenge"]));
    let fresh = PkceVerifier::generate().unwrap();
    assert_eq!(fresh.secret().expose_secret().len(), 43);
    assert!(PkceVerifier::from_secret(fresh.secret().clone()).is_ok());
    assert_ne!(
        fresh.secret().expose_secret(),
        PkceVerifier::generate().unwrap().secret().expose_secret()
    );
    assert_eq!(fresh.challenge().len(), 43);
    for bad in ["short", &"a".repeat(129), &format!("{}+", "a".repeat(43))] {
        assert!(PkceVerifier::from_secret(SecretString::from(bad.to_owned())).is_err());
    }
    assert!(!format!("{verifier:?}").contains(s(&v["inputs"]["code_verifier"])));
}

#[test]
fn authorize_url_vector() {
    let v = vector("zoom_oauth_authorize_url");
    let i = &v["inputs"];
    let set = settings(s(&i["client_id"]), "unused", s(&i["redirect_uri"]));
    let url = authorize_url(&set, s(&i["state"]), s(&i["code_challenge"]));
    assert_eq!(url, s(&v["expected"]["url"]));
}

#[test]
fn token_request_vectors() {
    let v = vector("zoom_oauth_token_request_authorization_code");
    let i = &v["inputs"];
    let verifier = SecretString::from(s(&i["code_verifier"]).to_owned());
    let body = parse::code_request_body(s(&i["code"]), s(&i["redirect_uri"]), &verifier);
    assert_eq!(body.as_str(), s(&v["expected"]["body"]));
    let basic = parse::basic_auth(
        s(&i["client_id"]),
        &SecretString::from(s(&i["client_secret"]).to_owned()),
    );
    assert_eq!(basic.as_str(), s(&v["expected"]["authorization_header"]));

    let v = vector("zoom_oauth_token_request_refresh");
    let body = parse::refresh_request_body(&SecretString::from(
        s(&v["inputs"]["refresh_token"]).to_owned(),
    ));
    assert_eq!(body.as_str(), s(&v["expected"]["body"]));
}

#[test]
fn token_response_vector() {
    let v = vector("zoom_oauth_token_response_and_rotation");
    let i = &v["inputs"];
    let json: Value = serde_json::from_str(s(&i["response_body"])).unwrap();
    let t = token_set(&json, i["fetched_at"].as_u64().unwrap(), ZOOM_API_BASE).unwrap();
    let e = &v["expected"]["store"];
    assert_eq!(t.access_token.expose_secret(), s(&e["access_token"]));
    assert_eq!(t.refresh_token.expose_secret(), s(&e["refresh_token"]));
    assert_eq!(t.expires_at, e["access_expires_at"].as_u64().unwrap());
    assert_eq!(t.expires_at - 60, e["refresh_after"].as_u64().unwrap());
    assert_eq!(t.scopes, ["user:read:token", "user:read:zak"]);
    assert_eq!(format!("{}/v2", t.api_url), s(&e["api_base"]));
    let dbg = format!("{t:?}");
    assert!(
        !dbg.contains(s(&e["access_token"])) && !dbg.contains(s(&e["refresh_token"])),
        "{dbg}"
    );

    let reuse = &i["then_reuse_old_refresh_token_response"];
    let err_json: Value = serde_json::from_str(s(&reuse["body"])).unwrap();
    let status = StatusCode::from_u16(reuse["status"].as_u64().unwrap() as u16).unwrap();
    let err = oauth_error(status, &HeaderMap::new(), &err_json);
    assert_eq!(err, ZoomUserError::InvalidGrant);
    assert_eq!(err.code(), "invalid_grant");
    assert!(err.needs_reconnect());
    // The pre-2022 401 form is the same error.
    assert_eq!(
        oauth_error(StatusCode::UNAUTHORIZED, &HeaderMap::new(), &err_json),
        ZoomUserError::InvalidGrant
    );
}

#[test]
fn token_answers_missing_or_absurd_fields_are_refused() {
    let good = serde_json::json!({
        "access_token": "a", "token_type": "bearer", "refresh_token": "r",
        "expires_in": 3599, "scope": "user:read:token", "api_url": "https://api.zoom.us"
    });
    assert!(token_set(&good, 0, ZOOM_API_BASE).is_ok());
    let without = |field: &str| {
        let mut j = good.clone();
        j.as_object_mut().unwrap().remove(field);
        j
    };
    for field in ["access_token", "refresh_token", "expires_in", "scope"] {
        let e = token_set(&without(field), 0, ZOOM_API_BASE).unwrap_err();
        assert_eq!(e.code(), "malformed_response", "{field}");
    }
    // api_url absent: the configured base.
    assert_eq!(
        token_set(&without("api_url"), 0, ZOOM_API_BASE)
            .unwrap()
            .api_url,
        ZOOM_API_BASE
    );
    let with = |field: &str, value: Value| {
        let mut j = good.clone();
        j[field] = value;
        token_set(&j, 0, ZOOM_API_BASE)
    };
    for bad in [
        serde_json::json!(0),
        serde_json::json!(60),
        serde_json::json!(-5),
        serde_json::json!("3599"),
        serde_json::json!(3599.5),
        serde_json::json!(u64::MAX),
        serde_json::json!(null),
    ] {
        assert!(with("expires_in", bad.clone()).is_err(), "{bad}");
    }
    assert!(with("token_type", "mac".into()).is_err());
    assert!(with("access_token", "".into()).is_err());
    assert!(with("access_token", "has space".into()).is_err());
    assert!(with("api_url", "http://api.zoom.us".into()).is_err());
    assert!(with("api_url", "https://evil.example".into()).is_err());
    assert!(with("api_url", "https://api.zoom.us/v2?x".into()).is_err());
    assert_eq!(
        with("api_url", "https://api-eu.zoom.us/".into())
            .unwrap()
            .api_url,
        "https://api-eu.zoom.us"
    );
    assert!(with("api_url", "https://evilzoom.us".into()).is_err());
}

#[test]
fn user_token_api_fixtures_classify() {
    let v = vector("zoom_user_token_api_requests");
    let ok: Value = serde_json::from_str(s(&v["expected"]["success_response"]["body"])).unwrap();
    let t = parse::user_token(&ok, 99).unwrap();
    assert_eq!(
        t.token.expose_secret(),
        s(&v["expected"]["success_response"]["token"])
    );
    assert!(!format!("{t:?}").contains("TESTobfTOKENvalue"));
    let expected = [
        "zoom_access_token_rejected",
        "zoom_access_token_rejected",
        "zoom_missing_scope",
        "zoom_user_not_found",
        "zoom_rate_limited",
    ];
    let fixtures = v["expected"]["error_fixtures"].as_array().unwrap();
    assert_eq!(fixtures.len(), expected.len());
    for (f, code) in fixtures.iter().zip(expected) {
        let status = StatusCode::from_u16(f["status"].as_u64().unwrap() as u16).unwrap();
        let body: Value = serde_json::from_str(s(&f["body"])).unwrap();
        assert_eq!(
            api_error(status, &HeaderMap::new(), &body).code(),
            code,
            "{f}"
        );
    }
    let not_in_meeting =
        serde_json::json!({"code": 103041, "message": "Authorized user not in meeting."});
    let e = api_error(StatusCode::BAD_REQUEST, &HeaderMap::new(), &not_in_meeting);
    assert_eq!(e, ZoomUserError::ObfUserNotInMeeting);
    assert_eq!(e.code(), "obf_user_not_in_meeting");
    assert!(!e.needs_reconnect());
    let mut h = HeaderMap::new();
    h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
    assert_eq!(
        api_error(StatusCode::TOO_MANY_REQUESTS, &h, &Value::Null),
        ZoomUserError::RateLimited {
            retry_after_secs: Some(7)
        }
    );
    assert_eq!(
        api_error(StatusCode::BAD_GATEWAY, &h, &Value::Null).code(),
        "upstream_unavailable"
    );
    assert_eq!(
        oauth_error(StatusCode::SERVICE_UNAVAILABLE, &h, &Value::Null).code(),
        "upstream_unavailable"
    );
    let client = serde_json::json!({"error": "invalid_client", "reason": "Invalid client_id or client_secret"});
    assert_eq!(
        oauth_error(StatusCode::BAD_REQUEST, &h, &client).code(),
        "zoom_client_refused"
    );
    // Oversized or unprintable user tokens are refused.
    assert!(parse::user_token(&serde_json::json!({"token": "x".repeat(513)}), 0).is_err());
    assert!(parse::user_token(&serde_json::json!({"token": "a\nb"}), 0).is_err());
    assert!(parse::user_id(&serde_json::json!({"id": ""})).is_err());
    assert_eq!(
        parse::user_id(&serde_json::json!({"id": "z8yBXksaSfOk0bjDbUgjew"})).unwrap(),
        "z8yBXksaSfOk0bjDbUgjew"
    );
}

#[test]
fn bases_are_checked() {
    assert_eq!(check_base("https://zoom.us/").unwrap(), "https://zoom.us");
    assert_eq!(
        check_base("http://127.0.0.1:8080").unwrap(),
        "http://127.0.0.1:8080"
    );
    assert!(check_base("http://zoom.us").is_err());
    assert!(check_base("https://u:p@zoom.us").is_err());
    assert!(check_base("https://zoom.us/oauth").is_err());
    assert!(check_base("ftp://zoom.us").is_err());
}

#[test]
fn settings_debug_hides_the_secret() {
    let set = settings(
        "TESTzoomClientID01",
        "TESTzoomClientSecret0123456789ab",
        "https://x/cb",
    );
    let dbg = format!("{set:?}");
    assert!(
        dbg.contains("TESTzoomClientID01") && !dbg.contains("TESTzoomClientSecret0123456789ab"),
        "{dbg}"
    );
}
