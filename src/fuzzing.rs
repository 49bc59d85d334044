//! Entry points for the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/fuzz_corpus.rs`). Not part of the gateway's
//! API.
//!
//! Each `pub fn NAME(data: &[u8])` feeds bytes to the same functions the
//! gateway calls, against a fixed snapshot built once from [`FIXTURE`]
//! through the configuration builder, and asserts cheap invariants. A panic
//! is a finding. Inputs are laid out so that seeds stay readable: a first
//! byte selecting a mode or variant, then text.
//!
//! Some modes sign or encrypt what the fuzzer wrote with the fixture's keys
//! (a private ES256 key that exists only for this; the fixture snapshot is
//! the only thing trusting it), so the checks after a signature (claims,
//! timestamps, minting) are reached by mutated inputs too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::config::{build, Action, BuildMode, CredentialKind, Snapshot, WebhookKind};
use crate::jwks::{discovered_jwks_uri, parse_jwks, IssuerKeys, KeySet};
use crate::live::LiveIdentity;
use crate::pipeline::authn::{self, jwt, zoom_app, Principal};
use crate::pipeline::route::{self, PathPattern, Selection};
use crate::pipeline::{inject, webhook};

mod fixture;

pub use fixture::FIXTURE;
use fixture::{fixture, runtime, EC_KID, ISSUER, NOW_MS, NOW_SECS, SESSION, ZOOM_APP_SECRET};

/// Route selection: `[method selector] host "\n" path`. An empty host is a
/// request without one. Checks that a normalized path survives the trip to
/// the upstream unchanged and that a selected route really matches it.
pub fn route(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let (host, raw_path) = text.split_once('\n').unwrap_or(("", &text));
    let host = (!host.is_empty()).then(|| crate::net::strip_port(host).to_ascii_lowercase());
    const METHODS: [&str; 8] = [
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PURGE",
    ];
    let method = Method::from_bytes(METHODS[usize::from(sel % 8)].as_bytes()).expect("valid");

    // The path as a pattern too (the configuration compiles these).
    let pattern = PathPattern::parse(raw_path);
    let Ok(path) = route::normalize(raw_path) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.chars().any(char::is_control), "{path:?}");
    let sent = route::upstream_path(&path, None);
    assert_eq!(
        route::normalize(&sent).as_deref(),
        Ok(path.as_str()),
        "the upstream must see the path that was matched ({sent:?})"
    );
    if let Ok(p) = pattern {
        let _ = p.matches(&path);
    }
    let snap = &fixture().snap;
    match route::select(&snap.routes, host.as_deref(), &method, &path) {
        Selection::Found { route, captures } => {
            assert_eq!(route.pattern.matches(&path), Some(captures.clone()));
            assert!(route.host.is_none() || route.host == host);
            assert!(route.methods.as_ref().is_none_or(|m| m.contains(&method)));
            assert!(captures
                .iter()
                .all(|(_, v)| !v.is_empty() && !v.contains('/')));
            let strip = route
                .action
                .forwarding()
                .and_then(|f| f.strip_prefix.as_deref());
            let up = route::upstream_path(&path, strip);
            assert!(route::normalize(&up).is_ok(), "{up:?} from {path:?}");
        }
        Selection::MethodNotAllowed(allow) => {
            assert!(!allow.is_empty() && !allow.contains(&method));
        }
        Selection::NotFound => {}
    }
}

/// A configuration file's text through `meetgate check`'s builder. The
/// environment holds one secret; it must never appear in a problem report
/// or in the snapshot's `Debug` output.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return; // `load_file` refuses files that are not UTF-8.
    };
    // Paths in the file are opened (TLS, CA and `file:` secrets): keep the
    // fuzzer away from device and process files that never end or block
    // (`/dev/zero`, `/dev/stdin`), also when spelled with escapes.
    if ["/dev", "/proc", "/sys", "/run", "\\u", "\\U", "\\x"]
        .iter()
        .any(|s| text.contains(s))
    {
        return;
    }
    const ENV_SECRET: &str = "fuzz-env-secret-8d31c0";
    let env = |name: &str| match name {
        "SECRET" => Some(ENV_SECRET.to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let _rt = runtime().enter();
    let leaked = |s: &str| !text.contains(ENV_SECRET) && s.contains(ENV_SECRET);
    let lines = text.lines().count() + 1;
    let path = Path::new("/nonexistent-meetgate-fuzz/meetgate.toml");
    match build(text, path, BuildMode::Check, &env) {
        Ok(snap) => {
            for w in &snap.warnings {
                assert!(!leaked(&w.to_string()), "secret in a warning: {w}");
            }
            assert!(!leaked(&format!("{snap:?}")));
            for (name, w) in &snap.webhooks {
                assert!(!leaked(&format!("{w:?}")), "secret in webhook {name}");
            }
            for (name, c) in &snap.credentials {
                assert!(!leaked(&format!("{c:?}")), "secret in credential {name}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty());
            for e in &errors {
                assert!(!leaked(&e.to_string()), "secret in an error: {e}");
                assert!(e.line.is_none_or(|l| (1..=lines).contains(&l)), "{e}");
            }
        }
    }
}

/// Bearer token verification. First byte: bit 0 picks the route's
/// identities (one or two), bits 1-2 the mode: 0 the rest is an
/// `Authorization` header value; 1 the rest is the claims JSON, signed by
/// the harness (ES256); 2 `[header length] header claims`, both signed.
pub fn jwt(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let ids: &[LiveIdentity] = if sel & 1 == 0 {
        &f.one_identity
    } else {
        &f.two_identities
    };
    let rt = runtime();
    let cache = jwt::TokenCache::default();
    match (sel >> 1) & 3 {
        0 => {
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(rest) {
                headers.insert(http::header::AUTHORIZATION, v);
            }
            let first = rt.block_on(authn::bearer(&headers, ids, &f.snap, &cache));
            if let Ok(p) = first {
                // Verified once: the cache answers the same token alike.
                let again = rt.block_on(authn::bearer(&headers, ids, &f.snap, &cache));
                assert!(again.is_ok_and(|q| q.subject == p.subject));
            }
        }
        mode => {
            let (header, claims) = if mode == 1 {
                let h = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{EC_KID}"}}"#);
                (h.into_bytes(), rest)
            } else {
                let Some((&n, rest)) = rest.split_first() else {
                    return;
                };
                let (h, c) = rest.split_at(usize::from(n).min(rest.len()));
                (h.to_vec(), c)
            };
            let signed = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(&header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let sig = jsonwebtoken::crypto::sign(signed.as_bytes(), &f.signer, Algorithm::ES256)
                .expect("ES256 signs any message");
            let token = format!("{signed}.{sig}");
            let result = rt.block_on(jwt::verify(&token, ids, &f.snap, &cache));
            if let Ok(p) = result {
                let claims: Map<String, Value> =
                    serde_json::from_slice(claims).expect("verified claims are JSON");
                assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
                assert_eq!(p.issuer.as_deref(), Some(ISSUER));
                // Any other signature is refused, cached or not.
                let mut forged = token.clone().into_bytes();
                let i = signed.len() + 1;
                forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
                let forged = String::from_utf8(forged).expect("ASCII");
                assert!(rt
                    .block_on(jwt::verify(&forged, ids, &f.snap, &cache))
                    .is_err());
            }
        }
    }
}

/// A JWKS or OpenID discovery document, parsed as after a fetch.
pub fn jwks(data: &[u8]) {
    let Ok(doc) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(uri) = discovered_jwks_uri(&doc, ISSUER) {
        assert!(matches!(uri.scheme_str(), Some("https" | "http")));
    }
    let Ok(keys) = parse_jwks(&doc) else {
        return;
    };
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(k.alg.is_none_or(|a| k.family.accepts(a)));
    }
    let set = KeySet {
        keys,
        fetched_at: std::time::Instant::now(),
    };
    for k in &set.keys {
        if let (Some(kid), Some(alg)) = (k.kid.as_deref(), k.alg) {
            let found = set.find(Some(kid), alg).expect("a listed kid is found");
            assert_eq!(found.kid.as_deref(), Some(kid));
        }
    }
}

/// `x-zoom-app-context`. First byte: bit 0 picks the app (client id and
/// no guests, or guests and no client id); bit 1 the mode: 0 the rest is
/// the header value; 1 the rest is `[aad length] aad plaintext`, encrypted
/// by the harness with the app's key (bit 2: standard padded base64).
pub fn zoom_app_context(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let app = if sel & 1 == 0 {
        &f.snap.zoom_apps["app"]
    } else {
        &f.snap.zoom_apps["guests"]
    };
    if sel & 2 == 0 {
        let header = String::from_utf8_lossy(rest);
        let _ = zoom_app::verify(&header, app, NOW_MS);
        if let Ok(v) = HeaderValue::from_bytes(rest) {
            let mut headers = HeaderMap::new();
            headers.insert("x-zoom-app-context", v);
            let _ = authn::zoom_app(&headers, app);
        }
        return;
    }
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let (aad, plain) = rest.split_at(usize::from(n).min(rest.len()));
    let key = zoom_app::context_key(ZOOM_APP_SECRET);
    let header = fixture::encrypt_context(&key, aad, plain, sel & 4 != 0);
    assert_eq!(
        zoom_app::decrypt(&header, &key).as_deref(),
        Ok(plain),
        "decrypt(encrypt(x)) == x"
    );
    let result = zoom_app::verify(&header, app, NOW_MS);
    if let Ok(ctx) = &result {
        assert!(ctx.user_id.is_some() || app.allow_guests);
    }
    // One flipped bit anywhere in the blob: refused, never another context.
    let mut blob = fixture::decode_any(&header);
    let i = usize::from(sel) * 7 % blob.len();
    blob[i] ^= 0x10;
    let tampered = URL_SAFE_NO_PAD.encode(&blob);
    assert!(zoom_app::verify(&tampered, app, NOW_MS).is_err());
}

/// A webhook delivery: `[selector] headers "\n\n" body`, headers written
/// `name: value` one per line. Selector bits 0-1 pick the scheme (Zoom,
/// Standard Webhooks, GitHub, Vonage); bit 7 has the harness sign the delivery
/// with the last configured secret (after rotation), so the checks after
/// the signature are reached.
pub fn webhook(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let names = ["zoom", "standard", "github", "vonage"];
    let settings = &f.snap.webhooks[names[usize::from(sel & 3) % names.len()]];
    let split = rest.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(n, v);
    }
    let sign = sel & 0x80 != 0;
    if sign {
        fixture::sign_webhook(settings, &mut headers, body);
    }
    let result = webhook::verify(settings, &headers, body, NOW_SECS);
    if sign {
        assert_ne!(result, Err(webhook::WebhookError::InvalidSignature));
    }
    let Ok(verified) = result else {
        return;
    };
    assert!(verified.secret < settings.secrets.len());
    // What the pipeline does next with a verified delivery.
    let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if settings.kind == WebhookKind::Zoom {
        if let Some(plain) = event.pointer("/payload/plainToken").and_then(Value::as_str) {
            let secret = &settings.secrets[verified.secret].0;
            let answer = webhook::url_validation_answer(secret, plain);
            let v: Value = serde_json::from_str(&answer).expect("the answer is JSON");
            assert_eq!(v["plainToken"], plain);
            assert_eq!(v["encryptedToken"].as_str().map(str::len), Some(64));
        }
    }
}

/// A signature/token request body (`respond` routes). First byte: bit 0
/// picks the credential (Meeting SDK, Video SDK); bits 1-2 the caller (none,
/// holding the host role, without it); bit 3: for the Video SDK the rest is
/// `session "\n" body` (the session path capture), otherwise all body.
pub fn respond_body(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let route = &f.respond_routes[usize::from(sel & 1)];
    let Action::Respond(resp) = &route.action else {
        panic!("a respond route")
    };
    let caller = match (sel >> 1) & 3 {
        1 => Some(&f.host),
        2 => Some(&f.guest),
        _ => None,
    };
    let (session, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) if sel & 8 != 0 => (String::from_utf8_lossy(&rest[..i]), &rest[i + 1..]),
        _ => (SESSION.into(), rest),
    };
    let captures: route::Captures = vec![(Arc::from("session"), session.into_owned())];
    let body = Bytes::copy_from_slice(body);
    let respond = inject::respond(
        resp,
        inject::UserApps::default(),
        caller.map(|p| &**p),
        &captures,
        &body,
    );
    let Ok((answer, name, role)) = runtime().block_on(respond) else {
        return;
    };
    let role = role.expect("Zoom answers grant a numeric role");
    assert_eq!(name, resp.credential.name);
    assert!(role == 0 || caller.is_some_and(|p| p.has_any_role(&resp.host_roles)));
    let bytes = runtime()
        .block_on(answer.into_body().collect())
        .expect("a full body")
        .to_bytes();
    let v: Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
    assert_eq!(v["role"], u64::from(role));
    let (jwt, secret) = match &resp.credential.kind {
        CredentialKind::ZoomMeetingSdk { client_secret, .. } => (&v["signature"], client_secret),
        CredentialKind::ZoomVideoSdk { client_secret, .. } => (&v["token"], client_secret),
        other => panic!("unexpected credential {}", other.type_name()),
    };
    let jwt = jwt.as_str().expect("a minted token");
    let (signed, sig) = jwt.rsplit_once('.').expect("a JWT");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("key");
    mac.update(signed.as_bytes());
    assert_eq!(
        URL_SAFE_NO_PAD.decode(sig).ok(),
        Some(mac.finalize().into_bytes().to_vec()),
        "the minted token is signed with the credential's secret"
    );
    let payload = signed.split_once('.').map(|(_, p)| p).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64"))
        .expect("minted claims are JSON");
    assert_eq!(
        claims["role"].as_u64().or(claims["role_type"].as_u64()),
        Some(u64::from(role))
    );
}

/// What the fixture is made of, shared by the targets.
struct Fixture {
    snap: Snapshot,
    one_identity: Vec<LiveIdentity>,
    two_identities: Vec<LiveIdentity>,
    signer: EncodingKey,
    respond_routes: [Arc<crate::config::Route>; 2],
    host: Arc<Principal>,
    guest: Arc<Principal>,
}

/// Builds the fixture snapshot and attaches the static keys.
fn make_fixture() -> Fixture {
    let _rt = runtime().enter();
    let env: HashMap<String, String> = HashMap::new();
    let text = fixture::text();
    let snap = build(
        &text,
        Path::new("/nonexistent-meetgate-fuzz/fixture.toml"),
        BuildMode::Check,
        &|k: &str| env.get(k).cloned(),
    )
    .unwrap_or_else(|e| panic!("the fuzz fixture builds: {e:?}"));
    let doc: Value = serde_json::from_str(fixture::JWKS).expect("fixture JWKS");
    let keys = parse_jwks(&doc).expect("fixture keys");
    let corp = snap.identities["corp"].clone();
    let client = crate::pipeline::forward::new_client((*snap.outbound_roots).clone());
    let corp_keys = LiveIdentity {
        settings: corp.clone(),
        keys: Arc::new(IssuerKeys::preloaded(corp.clone(), client.clone(), keys)),
    };
    // "other" has no keys: its tokens are 503 keys_unavailable.
    let other = snap.identities["other"].clone();
    let other_keys = LiveIdentity {
        settings: other.clone(),
        keys: Arc::new(IssuerKeys::new(
            other,
            client,
            Arc::new(|_: &str, _: &std::collections::HashSet<String>| {}),
            Arc::new(crate::metrics::Metrics::default()),
        )),
    };
    let by_name = |n: &str| {
        snap.routes
            .iter()
            .find(|r| r.name == n)
            .cloned()
            .unwrap_or_else(|| panic!("route {n}"))
    };
    let respond_routes = [by_name("sdk-signature"), by_name("video-token")];
    let principal = |roles: &[&str]| {
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": "fuzz-user", "realm_access": { "roles": roles }
        });
        let Value::Object(claims) = claims else {
            unreachable!()
        };
        Arc::new(Principal::from_claims(&corp, None, claims, u64::MAX))
    };
    Fixture {
        one_identity: vec![corp_keys.clone()],
        two_identities: vec![other_keys, corp_keys],
        signer: EncodingKey::from_ec_pem(fixture::EC_PRIVATE_PEM.as_bytes()).expect("EC key"),
        host: principal(&["hosts"]),
        guest: principal(&["viewers"]),
        respond_routes,
        snap,
    }
}
