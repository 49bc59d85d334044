//! Nothing of a user's Zoom authorization is written anywhere the gateway
//! writes: the app's client secret, the grant key, the authorization code,
//! the sealed state, the PKCE verifier, access and refresh tokens, ZAKs and
//! OBF tokens never appear in logs (debug level), stdout, the audit file,
//! metrics, or any answer other than the one carrying a ZAK or OBF token on
//! purpose. The gateway runs as the real binary.

mod common;

use base64::Engine as _;
use common::zoom_flow::{GrantStore, ZoomFlow, GRANT_KEY, MEETING, WEBHOOK_SECRET};
use common::zoom_oauth::{CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};
use common::*;
use http::StatusCode;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_of_a_zoom_grant_is_written_anywhere() {
    let flow = ZoomFlow::start().await;
    let (key, issuer, zoom, zoom_certs) = (&flow.key, &flow.issuer, &flow.zoom, &flow.zoom_certs);
    zoom.in_meeting.lock().unwrap().insert(MEETING.to_owned());
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.log");
    // The shared configuration with its secrets taken from the environment.
    let rest = flow
        .config(GrantStore::File("grants.redb"))
        .replace(&format!("key = \"{GRANT_KEY}\""), "key = \"${GRANT_KEY}\"")
        .replace(
            &format!("client_secret = \"{CLIENT_SECRET}\""),
            "client_secret = \"${ZOOM_USER_SECRET}\"",
        )
        .replace(
            &format!("secret_tokens = [\"{WEBHOOK_SECRET}\"]"),
            "secret_tokens = [\"${WEBHOOK_SECRET}\"]",
        );
    assert!(!rest.contains(CLIENT_SECRET) && !rest.contains(GRANT_KEY));
    let cfg = write_config(
        &certs,
        dir.path(),
        "",
        &format!("[audit]\npath = \"{}\"\n{rest}", audit.display()),
    );
    let env = [
        ("GRANT_KEY", GRANT_KEY),
        ("ZOOM_USER_SECRET", CLIENT_SECRET),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET),
    ];
    let gw = BinaryGateway::spawn_with(&cfg, "debug", &env);
    let admin = gw.admin_addr.unwrap();
    leak::wait_ready(admin).await;
    let c = client(&certs, false);
    let bearer = key.sign(&issuer.claims("alice", json!({})));
    let auth = format!("Bearer {bearer}");
    let mut answers: Vec<String> = Vec::new();
    let mut on_purpose: Vec<Value> = Vec::new();
    let call = |method: &'static str, path: String, body: String| {
        let c = c.clone();
        let auth = auth.clone();
        let url = gw.url(&path);
        async move {
            let h = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            send(&c, method, &url, &h, full(body)).await
        }
    };

    // Connect: the authorize URL carries the sealed state.
    let (s, h, b) = call("GET", "/zoom/connect".into(), String::new()).await;
    assert_eq!(s, StatusCode::OK);
    let url = json(&b)["authorize_url"].as_str().unwrap().to_owned();
    answers.push(format!("{h:?}"));
    let state = form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    // The browser at Zoom, then back to the gateway with code and state.
    let (s, h, _) = get(&client(zoom_certs, false), &url, &[]).await;
    assert_eq!(s, StatusCode::FOUND);
    let query = h["location"]
        .to_str()
        .unwrap()
        .strip_prefix(REDIRECT_URI)
        .unwrap()
        .to_owned();
    let code = form_urlencoded::parse(&query.as_bytes()[1..])
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let callback = gw.url(&format!("/zoom/oauth/callback{query}"));
    for _ in 0..2 {
        // The second time: a replayed state, refused.
        let (s, h, b) = get(&c, &callback, &[]).await;
        assert!(
            s == StatusCode::FOUND || s == StatusCode::BAD_REQUEST,
            "{s}"
        );
        answers.push(format!("{s} {h:?} {}", String::from_utf8_lossy(&b)));
    }

    // Status, answers with a ZAK and OBF token, injection, a refresh after
    // Zoom refuses the access token, disconnect.
    let (_, h, b) = call("GET", "/zoom/status".into(), String::new()).await;
    assert_eq!(json(&b)["connected"], true);
    answers.push(format!("{h:?} {}", String::from_utf8_lossy(&b)));
    let sig_body = json!({ "meetingNumber": MEETING }).to_string();
    for round in 0..2 {
        if round == 1 {
            zoom.expire_access_tokens();
        }
        let (s, h, b) = call("POST", "/sdk/signature".into(), sig_body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&b));
        answers.push(format!("{h:?}"));
        on_purpose.push(json(&b));
    }
    assert_eq!(
        zoom.token_refresh.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let (s, h, b) = call("GET", format!("/join/{MEETING}"), String::new()).await;
    assert_eq!(s, StatusCode::OK);
    answers.push(format!("{h:?}"));
    let echoed = json(&b);
    let (_, h, b) = call("POST", "/zoom/disconnect".into(), String::new()).await;
    answers.push(format!("{h:?} {}", String::from_utf8_lossy(&b)));
    let (s, h, b) = call("POST", "/sdk/signature".into(), sig_body.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT);
    answers.push(format!("{h:?} {}", String::from_utf8_lossy(&b)));

    let written = leak::Written::collect(&gw, admin, &audit).await;
    assert!(
        written.log.contains("Zoom user connected"),
        "debug logging was on"
    );

    let mut forbidden: Vec<(&str, String)> = vec![
        ("zoom client secret", CLIENT_SECRET.to_owned()),
        ("grant key", GRANT_KEY.to_owned()),
        ("webhook secret", WEBHOOK_SECRET.to_owned()),
        (
            "basic credentials",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")),
        ),
        ("authorization code", code),
        ("sealed state", state),
        ("bearer token", bearer.clone()),
    ];
    let tokens = zoom.issued_tokens();
    assert!(tokens.len() >= 2, "a grant and its refresh");
    forbidden.extend(
        tokens
            .into_iter()
            .map(|t| ("zoom access or refresh token", t)),
    );
    let verifiers = zoom.verifiers.lock().unwrap().clone();
    assert_eq!(verifiers.len(), 1);
    forbidden.extend(verifiers.into_iter().map(|v| ("PKCE verifier", v)));
    for answer in &on_purpose {
        for k in ["zak", "obfToken", "signature"] {
            let t = answer[k].as_str().expect("answered on purpose").to_owned();
            forbidden.push(("zak, obf token or signature", t));
        }
    }
    for h in ["x-zoom-zak", "x-zoom-obf"] {
        let t = echoed["headers"][h].as_str().expect("injected").to_owned();
        forbidden.push(("injected zak or obf token", t));
    }
    written.assert_none_of(&forbidden, &answers);
}
