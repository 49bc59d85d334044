//! Unit tests of token requests, lifetimes and the in-process store.

use super::*;
use crate::config::ClientAuth;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use crate::test_vectors::vector;

#[test]
fn s2s_token_request_vector() {
    let v = vector("zoom_s2s_oauth_token_request");
    let i = &v["inputs"];
    let kind = CredentialKind::ZoomS2sOAuth {
        account_id: i["account_id"].as_str().unwrap().into(),
        client_id: i["client_id"].as_str().unwrap().into(),
        client_secret: i["client_secret"].as_str().unwrap().to_owned().into(),
        token_url: "https://zoom.us/oauth/token".parse().unwrap(),
        refresh_before: Duration::from_secs(60),
    };
    let TokenRequest { uri, headers, body } = token_request(&kind).unwrap();
    let e = &v["expected"];
    assert_eq!(uri.path(), e["url_path"]);
    assert_eq!(body, e["body"]);
    let get = |n: http::HeaderName| {
        headers
            .iter()
            .find(|(k, _)| *k == n)
            .unwrap()
            .1
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(get(AUTHORIZATION), e["authorization_header"]);
    assert_eq!(get(CONTENT_TYPE), e["content_type"]);
    assert!(headers
        .iter()
        .find(|(k, _)| *k == AUTHORIZATION)
        .unwrap()
        .1
        .is_sensitive());
}

#[test]
fn cache_window_vector_and_no_minimum_lifetime() {
    let v = vector("zoom_s2s_oauth_cache_window");
    let fetched = v["inputs"]["fetched_at_unix"].as_u64().unwrap();
    let resp: Value = serde_json::from_str(v["inputs"]["response_json"].as_str().unwrap()).unwrap();
    let expires_in = resp["expires_in"].as_u64().unwrap();
    let margin = v["inputs"]["refresh_margin_seconds"].as_u64().unwrap();
    assert_eq!(
        fetched + expires_in,
        v["expected"]["expires_at_unix"].as_u64().unwrap()
    );
    assert_eq!(
        refresh_at(fetched, expires_in, margin),
        v["expected"]["refresh_after_unix"].as_u64().unwrap()
    );
    assert_eq!(refresh_at(1000, 63, 60), 1003, "docs/BEHAVIOUR.md item 29");
    assert_eq!(
        refresh_at(1000, 30, 60),
        1015,
        "shorter than the margin: half-way"
    );
}

#[test]
fn client_credentials_post_puts_the_client_in_the_body() {
    let kind = CredentialKind::OAuthClientCredentials {
        token_url: "https://idp.example/token".parse().unwrap(),
        client_id: "cid".into(),
        client_secret: "s3cr3t&=".to_owned().into(),
        scope: Some("a b".into()),
        audience: Some("https://api.example".into()),
        client_auth: ClientAuth::Post,
        refresh_before: Duration::from_secs(60),
    };
    let TokenRequest { headers, body, .. } = token_request(&kind).unwrap();
    assert!(headers.iter().all(|(k, _)| *k != AUTHORIZATION));
    assert_eq!(
        body,
        "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fapi.example&client_id=cid&client_secret=s3cr3t%26%3D"
    );
}

/// A Zoom S2S token source with no cluster link (never fetches here).
fn source() -> TokenSource {
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let settings = Arc::new(CredentialSettings {
        name: "zoom_api".into(),
        kind: CredentialKind::ZoomS2sOAuth {
            account_id: "acc".into(),
            client_id: "cid".into(),
            client_secret: "secret".to_owned().into(),
            token_url: "https://zoom.us/oauth/token".parse().unwrap(),
            refresh_before: Duration::from_secs(60),
        },
    });
    TokenSource::new(
        settings,
        crate::pipeline::forward::new_client(rustls::RootCertStore::empty()),
        Arc::default(),
        Arc::new(crate::cluster::Cluster::new(metrics.clone())),
        metrics,
    )
}

fn cache(src: &TokenSource, value: &str) {
    let t = CachedToken {
        value: SecretString::from(value.to_owned()),
        expires_at: now_secs() + 3600,
        refresh_at: now_secs() + 3540,
    };
    src.store.put(&src.key, Arc::new(t));
}

fn cached(src: &TokenSource) -> Option<String> {
    src.current().map(|t| t.value.expose_secret().to_owned())
}

#[tokio::test]
async fn a_401_drops_the_token_at_most_once_per_cooldown() {
    let src = source();
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    cache(&src, "tok-1");
    assert!(src.invalidate_at("tok-1", t0).await, "the first 401 drops");
    assert_eq!(cached(&src), None);
    cache(&src, "tok-2");
    assert!(
        src.invalidate_at("tok-1", at(1)).await,
        "already replaced: a retry uses the new token"
    );
    assert_eq!(cached(&src).as_deref(), Some("tok-2"));
    assert!(
        !src.invalidate_at("tok-2", at(9)).await,
        "inside the cooldown the token is kept"
    );
    assert_eq!(cached(&src).as_deref(), Some("tok-2"));
    assert!(
        src.invalidate_at("tok-2", t0 + REJECTION_COOLDOWN).await,
        "after the cooldown a 401 drops again"
    );
    assert_eq!(cached(&src), None);
    cache(&src, "tok-3");
    assert!(
        !src.invalidate_at("tok-3", t0 + REJECTION_COOLDOWN + Duration::from_secs(5))
            .await,
        "the cooldown restarts with each drop"
    );
}

#[test]
fn cached_token_debug_hides_the_value() {
    let t = CachedToken {
        value: SecretString::from("tok-secret-value".to_owned()),
        expires_at: 1,
        refresh_at: 1,
    };
    assert!(!format!("{t:?}").contains("tok-secret-value"));
}
