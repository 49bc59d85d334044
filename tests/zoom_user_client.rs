//! The Zoom user-authorization client (`src/zoom_user/`) against the
//! stand-in Zoom (`tests/common/zoom_oauth.rs`) over real HTTPS: the code
//! exchange with PKCE, refresh rotation, users/me, ZAK, OBF, revoke, the
//! errors each refusal maps to, and the vault's one-refresh-per-grant rule
//! with real refreshes.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::zoom_oauth::{zoom_oauth, ZoomOAuth, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};
use common::*;
use meetgate::vault::{FileStore, Grant, GrantKey, Keyring, RefreshFailure, Vault};
use meetgate::zoom_user::{
    PkceVerifier, TokenSet, ZoomUserClient, ZoomUserError, ZoomUserSettings,
};
use secrecy::{ExposeSecret, SecretString};

struct Setup {
    certs: Certs,
    base: String,
    zoom: Arc<ZoomOAuth>,
    client: ZoomUserClient,
}

fn make_client(certs: &Certs, base: &str, secret: &str, timeout: Duration) -> ZoomUserClient {
    let settings = ZoomUserSettings {
        client_id: CLIENT_ID.into(),
        client_secret: SecretString::from(secret.to_owned()),
        redirect_uri: REDIRECT_URI.into(),
        oauth_base: base.into(),
        api_base: base.into(),
        timeout,
    };
    ZoomUserClient::new(
        Arc::new(settings),
        meetgate::pipeline::forward::new_client(certs.roots()),
    )
}

async fn setup() -> Setup {
    let certs = Certs::new();
    let (base, zoom) = zoom_oauth(&certs).await;
    let client = make_client(&certs, &base, CLIENT_SECRET, Duration::from_secs(5));
    Setup {
        certs,
        base,
        zoom,
        client,
    }
}

/// The browser step: GET the authorize URL, return the callback's query.
async fn authorize(s: &Setup, url: &str) -> (http::StatusCode, Vec<(String, String)>) {
    let browser = client(&s.certs, false);
    let (status, headers, _) = get(&browser, url, &[]).await;
    let query = headers
        .get("location")
        .map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.starts_with(REDIRECT_URI), "{l}");
            let q = l.split_once('?').map(|(_, q)| q).unwrap_or("");
            form_urlencoded::parse(q.as_bytes()).into_owned().collect()
        })
        .unwrap_or_default();
    (status, query)
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> &'a str {
    q.iter()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// A full connect: authorize, exchange. Returns the verifier and tokens.
async fn connect(s: &Setup) -> TokenSet {
    let verifier = PkceVerifier::generate().unwrap();
    let (status, q) = authorize(s, &s.client.authorize_url("st-1", &verifier)).await;
    assert_eq!(status, 302);
    s.client
        .exchange_code(param(&q, "code"), &verifier)
        .await
        .unwrap()
}

#[tokio::test]
async fn code_exchange_with_pkce_then_users_me() {
    let s = setup().await;
    let verifier = PkceVerifier::generate().unwrap();
    let url = s.client.authorize_url("st_8c1f2e7a9b3d4c5e", &verifier);
    assert!(url.starts_with(&format!(
        "{}/oauth/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri=",
        s.base
    )));
    assert!(url.ends_with(&format!(
        "&code_challenge={}&code_challenge_method=S256",
        verifier.challenge()
    )));
    let (status, q) = authorize(&s, &url).await;
    assert_eq!(status, 302);
    assert_eq!(param(&q, "state"), "st_8c1f2e7a9b3d4c5e");
    let code = param(&q, "code").to_owned();

    let tokens = s.client.exchange_code(&code, &verifier).await.unwrap();
    assert_eq!(tokens.expires_in, 3599);
    assert_eq!(tokens.scopes, ["user:read:token", "user:read:zak"]);
    assert_eq!(tokens.api_url, s.base);
    let id = s
        .client
        .user_id(&tokens.api_url, &tokens.access_token)
        .await
        .unwrap();
    assert_eq!(id, "TESTzoomUser01");
    assert_eq!(s.zoom.token_code.load(Ordering::SeqCst), 1);
    assert_eq!(s.zoom.users_me.load(Ordering::SeqCst), 1);

    // The code is single use.
    let e = s.client.exchange_code(&code, &verifier).await.unwrap_err();
    assert_eq!(e, ZoomUserError::InvalidGrant);
    assert!(!e.to_string().contains(&code));
}

#[tokio::test]
async fn a_wrong_verifier_is_refused() {
    let s = setup().await;
    let verifier = PkceVerifier::generate().unwrap();
    let (_, q) = authorize(&s, &s.client.authorize_url("st", &verifier)).await;
    let other = PkceVerifier::generate().unwrap();
    let e = s
        .client
        .exchange_code(param(&q, "code"), &other)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_grant");
    assert_eq!(s.zoom.invalid_grant.load(Ordering::SeqCst), 1);
    // And the code is spent by the failed attempt.
    let e = s
        .client
        .exchange_code(param(&q, "code"), &verifier)
        .await
        .unwrap_err();
    assert_eq!(e, ZoomUserError::InvalidGrant);
    // A redirect URI the app did not register gets no redirect at all.
    let bad = s
        .client
        .authorize_url("st", &verifier)
        .replace("meetgate.example.com", "evil.example");
    let (status, q) = authorize(&s, &bad).await;
    assert_eq!(status, 400);
    assert!(q.is_empty());
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_refused() {
    let s = setup().await;
    let first = connect(&s).await;
    let second = s.client.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(
        second.refresh_token.expose_secret(),
        first.refresh_token.expose_secret()
    );
    assert_ne!(
        second.access_token.expose_secret(),
        first.access_token.expose_secret()
    );
    let e = s.client.refresh(&first.refresh_token).await.unwrap_err();
    assert_eq!(e, ZoomUserError::InvalidGrant);
    assert!(e.needs_reconnect());
    for text in [e.to_string(), format!("{e:?}"), format!("{second:?}")] {
        assert!(
            !text.contains(first.refresh_token.expose_secret()),
            "{text}"
        );
        assert!(
            !text.contains(second.access_token.expose_secret()),
            "{text}"
        );
    }
    let third = s.client.refresh(&second.refresh_token).await.unwrap();
    assert_eq!(s.zoom.token_refresh.load(Ordering::SeqCst), 3);
    // The newest access token works; the replaced one does not.
    s.client
        .user_id(&third.api_url, &third.access_token)
        .await
        .unwrap();
    let e = s
        .client
        .user_id(&third.api_url, &first.access_token)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "zoom_access_token_rejected");
}

#[tokio::test]
async fn zak_and_obf_tokens() {
    let s = setup().await;
    let t = connect(&s).await;
    let zak = s
        .client
        .zak(&t.api_url, &t.access_token, None)
        .await
        .unwrap();
    assert!(zak.token.expose_secret().starts_with("TESTzakTOKEN."));
    assert_eq!(*s.zoom.last_token_query.lock().unwrap(), "type=zak");
    assert!(!format!("{zak:?}").contains(zak.token.expose_secret()));

    // The authorizing user is not in the meeting: a distinct error.
    let e = s
        .client
        .obf(&t.api_url, &t.access_token, "85746065432", None)
        .await
        .unwrap_err();
    assert_eq!(e, ZoomUserError::ObfUserNotInMeeting);
    assert_eq!(e.code(), "obf_user_not_in_meeting");
    s.zoom
        .in_meeting
        .lock()
        .unwrap()
        .insert("85746065432".into());
    let obf = s
        .client
        .obf(&t.api_url, &t.access_token, "85746065432", Some(7200))
        .await
        .unwrap();
    assert!(obf.token.expose_secret().starts_with("TESTobfTOKEN."));
    assert_eq!(
        *s.zoom.last_token_query.lock().unwrap(),
        "type=onbehalf&meeting_id=85746065432&ttl=7200"
    );
    assert_eq!(s.zoom.onbehalf.load(Ordering::SeqCst), 2);
    // Not a meeting number: refused before any request.
    let e = s
        .client
        .obf(&t.api_url, &t.access_token, "85746&type=zak", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    assert_eq!(s.zoom.onbehalf.load(Ordering::SeqCst), 2);

    // A grant without user:read:token.
    *s.zoom.scopes.lock().unwrap() = "user:read:zak".into();
    let narrow = connect(&s).await;
    let e = s
        .client
        .zak(&narrow.api_url, &narrow.access_token, None)
        .await
        .unwrap_err();
    assert_eq!(e, ZoomUserError::MissingScope);
    // An expired access token: refresh, then retry.
    s.zoom.expire_access_tokens();
    let e = s
        .client
        .zak(&t.api_url, &t.access_token, None)
        .await
        .unwrap_err();
    assert_eq!(e, ZoomUserError::AccessTokenRejected);
}

#[tokio::test]
async fn revoke_ends_the_grant() {
    let s = setup().await;
    let t = connect(&s).await;
    s.client.revoke(&t.access_token).await.unwrap();
    assert_eq!(s.zoom.live_grants(), 0);
    let e = s
        .client
        .user_id(&t.api_url, &t.access_token)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "zoom_access_token_rejected");
    assert_eq!(
        s.client.refresh(&t.refresh_token).await.unwrap_err(),
        ZoomUserError::InvalidGrant
    );
    let again = s.client.revoke(&t.access_token).await.unwrap_err();
    assert_eq!(again.code(), "zoom_refused");
}

#[tokio::test]
async fn client_refusal_outage_and_timeout_are_typed() {
    let s = setup().await;
    let t = connect(&s).await;
    let wrong = make_client(&s.certs, &s.base, "not-the-secret", Duration::from_secs(5));
    let e = wrong.refresh(&t.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), "zoom_client_refused");
    assert!(!e.to_string().contains("not-the-secret"));

    s.zoom.down.store(true, Ordering::SeqCst);
    let e = s.client.refresh(&t.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), "upstream_unavailable");
    let e = s
        .client
        .zak(&t.api_url, &t.access_token, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "upstream_unavailable");
    s.zoom.down.store(false, Ordering::SeqCst);

    s.zoom.delay_ms.store(1500, Ordering::SeqCst);
    let impatient = make_client(&s.certs, &s.base, CLIENT_SECRET, Duration::from_millis(300));
    let e = impatient.refresh(&t.refresh_token).await.unwrap_err();
    assert_eq!(e.code(), "upstream_unavailable");
    assert!(e.to_string().contains("no answer within 300 ms"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_callers_needing_a_refresh_cause_exactly_one() {
    let s = setup().await;
    let t = connect(&s).await;
    let zoom_user_id = s.client.user_id(&t.api_url, &t.access_token).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_async(dir.path().join("grants.redb"))
        .await
        .unwrap();
    let ring = Keyring::new(("k1", &[8u8; 32]), &[]).unwrap();
    let vault = Arc::new(Vault::new(Arc::new(ring), Arc::new(store)));
    let now = meetgate::now_secs();
    let grant = Grant {
        identity: "corp".into(),
        subject: "alice".into(),
        tenant: None,
        zoom_user_id,
        access_token: t.access_token,
        refresh_token: t.refresh_token,
        // Inside the refresh margin: every caller needs a refresh.
        access_expires_at: now + 30,
        scopes: t.scopes,
        api_url: t.api_url,
        connected_since: now,
        updated_at: now,
    };
    vault.put(&grant).await.unwrap();
    let key = GrantKey::new("corp", "alice");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (v, c, k) = (vault.clone(), s.client.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            v.refreshed(
                &k,
                |g: &Grant| {
                    g.needs_refresh(meetgate::now_secs(), meetgate::vault::REFRESH_MARGIN_SECS)
                },
                |old| async move {
                    let new = c.refresh(&old.refresh_token).await?;
                    Ok::<_, ZoomUserError>(Grant {
                        access_token: new.access_token,
                        refresh_token: new.refresh_token,
                        access_expires_at: new.expires_at,
                        scopes: new.scopes,
                        api_url: new.api_url,
                        updated_at: meetgate::now_secs(),
                        ..old
                    })
                },
                ZoomUserError::needs_reconnect,
            )
            .await
            .unwrap()
            .unwrap()
        }));
    }
    let mut access = std::collections::HashSet::new();
    for task in tasks {
        access.insert(task.await.unwrap().access_token.expose_secret().to_owned());
    }
    assert_eq!(access.len(), 1, "every caller got the one refreshed token");
    assert_eq!(s.zoom.token_refresh.load(Ordering::SeqCst), 1);
    let fresh = vault.get(&key).await.unwrap().unwrap().grant;
    s.client
        .zak(&fresh.api_url, &fresh.access_token, None)
        .await
        .unwrap();

    // The refresh token dies at Zoom (revoked): invalid_grant drops the grant.
    s.client.revoke(&fresh.access_token).await.unwrap();
    let r = vault
        .refreshed(
            &key,
            |g: &Grant| {
                g.needs_refresh(
                    meetgate::now_secs() + 4000,
                    meetgate::vault::REFRESH_MARGIN_SECS,
                )
            },
            |old| {
                let c = s.client.clone();
                async move { c.refresh(&old.refresh_token).await.map(|_| old) }
            },
            ZoomUserError::needs_reconnect,
        )
        .await;
    match r {
        Err(RefreshFailure::Refresh { error, dropped }) => {
            assert_eq!(error, ZoomUserError::InvalidGrant);
            assert!(dropped);
        }
        other => panic!("expected invalid_grant, got {other:?}"),
    }
    assert!(vault.get(&key).await.unwrap().is_none());
}
