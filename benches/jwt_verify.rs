//! Bearer verification: cold (signature verified: RS256, ES256) and cached
//! (hash + lookup), through the same `verify` the pipeline calls. Also Zoom
//! Apps context decryption.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{Algorithm, EncodingKey};
use meetgate::config::{build, BuildMode};
use meetgate::pipeline::authn::jwt::{verify, TokenCache};

const ISSUER: &str = "https://idp.example";

struct Key {
    kid: &'static str,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: serde_json::Value,
}

fn key(kid: &'static str, alg: Algorithm) -> Key {
    let kp = match alg {
        Algorithm::ES256 => rcgen::KeyPair::generate().unwrap(),
        _ => rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap(),
    };
    let pem = kp.serialize_pem();
    let enc = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut jwk =
        serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, alg).unwrap())
            .unwrap();
    jwk["kid"] = kid.into();
    Key { kid, alg, enc, jwk }
}

fn token(k: &Key, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut h = jsonwebtoken::Header::new(k.alg);
    h.kid = Some(k.kid.to_owned());
    let claims = serde_json::json!({ "iss": ISSUER, "sub": sub, "aud": "api", "iat": now, "exp": now + 3600, "groups": ["a", "b"] });
    jsonwebtoken::encode(&h, &claims, &k.enc).unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (rsa, ec) = (key("rsa", Algorithm::RS256), key("ec", Algorithm::ES256));

    // A JWKS server on loopback so the snapshot's keys are fetched for real.
    let jwks = serde_json::json!({ "keys": [rsa.jwk, ec.jwk] }).to_string();
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let body = jwks.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let body = body.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from(body)),
                            ))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        addr
    });
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c\"\ntls_key = \"k\"\n[identity.corp]\nissuer = \"{ISSUER}\"\njwks_uri = \"http://{addr}/jwks\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\", \"ES256\"]\nroles_claim = \"groups\"\n"
    );
    let env: HashMap<String, String> = HashMap::new();
    let lookup = move |k: &str| env.get(k).cloned();
    let snap = build(
        &text,
        std::path::Path::new("/nonexistent/m.toml"),
        BuildMode::Check,
        &lookup,
    )
    .unwrap();
    let registry = meetgate::jwks::JwksRegistry::new(
        Arc::new(|_: &str, _: &std::collections::HashSet<String>| {}),
        Arc::new(meetgate::metrics::Metrics::default()),
    );
    let _guard = rt.enter();
    let outbound = meetgate::pipeline::forward::new_client((*snap.outbound_roots).clone());
    let keys = registry.sync(&snap, &outbound);
    rt.block_on(async {
        while keys["corp"].usable().is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    let ids = vec![meetgate::live::LiveIdentity {
        settings: snap.identities["corp"].clone(),
        keys: keys["corp"].clone(),
    }];

    for (name, k) in [("verify_cold_rs256", &rsa), ("verify_cold_es256", &ec)] {
        let t = token(k, "bench");
        c.bench_function(name, |b| {
            b.iter(|| {
                // A fresh cache each time: every call verifies the signature.
                let cache = TokenCache::default();
                rt.block_on(verify(&t, &ids, &snap, &cache)).unwrap()
            })
        });
    }
    let cache = TokenCache::default();
    let t = token(&rsa, "cached");
    rt.block_on(verify(&t, &ids, &snap, &cache)).unwrap();
    c.bench_function("verify_cached", |b| {
        b.iter(|| rt.block_on(verify(&t, &ids, &snap, &cache)).unwrap())
    });

    // Zoom Apps context: decrypt and check.
    let secret = "bench-zoom-app-secret";
    let header = {
        use aes_gcm::aead::{Aead, Payload};
        use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let plain = serde_json::json!({"typ":"meeting","uid":"u","mid":"m","iss":"marketplace.zoom.us","ts":now,"exp":now + 3_600_000});
        let ct = Aes256Gcm::new(&key.into())
            .encrypt(
                &Nonce::try_from(&[1u8; 12][..]).unwrap(),
                Payload {
                    msg: plain.to_string().as_bytes(),
                    aad: b"",
                },
            )
            .unwrap();
        let mut blob = vec![12u8];
        blob.extend([1u8; 12]);
        blob.extend(0u16.to_le_bytes());
        blob.extend(((ct.len() - 16) as u32).to_le_bytes());
        blob.extend(ct);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob)
    };
    let app = meetgate::config::ZoomAppSettings {
        name: "b".into(),
        client_id: None,
        client_secret: secret.to_owned().into(),
        max_age: std::time::Duration::from_secs(3600),
        allow_guests: false,
        leeway: std::time::Duration::ZERO,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    c.bench_function("zoom_app_context_verify", |b| {
        b.iter(|| meetgate::pipeline::authn::zoom_app::verify(&header, &app, now).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
