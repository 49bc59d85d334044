//! Minting each credential type, and the warm Server-to-Server OAuth path
//! (a cached token handed out without any request).

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion};
use meetgate::config::{build, BuildMode};
use meetgate::credentials::oauth::CredentialRegistry;
use meetgate::credentials::{mint, opentok, vonage};

fn bench(c: &mut Criterion) {
    let now = 1_700_000_000;
    c.bench_function("mint_meeting_sdk", |b| {
        b.iter(|| {
            mint::meeting_sdk(
                "abcTESTsdkKEY123",
                b"TestMeetingSdkSecret_9xYzAbCdEfG",
                "85746065432",
                1,
                7200,
                now,
            )
        })
    });
    c.bench_function("mint_video_sdk", |b| {
        b.iter(|| {
            mint::video_sdk(
                "TESTvideoSDKkey01",
                b"TestVideoSdkSecret",
                "Cool Cars",
                0,
                Some("user123"),
                None,
                7200,
                now,
            )
        })
    });
    c.bench_function("mint_opentok_project", |b| {
        b.iter(|| {
            mint::opentok_project(
                "12345678",
                b"0123456789abcdef0123456789abcdef01234567",
                180,
                now,
            )
        })
    });

    // OpenTok client tokens in both formats, as the respond route makes
    // them (a fresh nonce each).
    let ot_session = "1_MX4xMjM0NTY3OH5-MTc2NzIyNTYwMDAwMH5hYmNkZWZnaGlqa2xtbn5-fg";
    let ot_secret: &[u8] = b"0123456789abcdef0123456789abcdef01234567";
    let ot_data = || opentok::TokenData {
        session_id: ot_session,
        create_time: now,
        nonce: opentok::random_nonce(),
        role: vonage::ClientRole::Publisher,
        expire_time: now + 86_400,
        connection_data: Some(r#"{"sub":"user123"}"#),
        initial_layout_class_list: String::new(),
        scope: "session.connect",
    };
    c.bench_function("mint_opentok_t1", |b| {
        b.iter(|| opentok::t1_token("12345678", ot_secret, &ot_data()))
    });
    c.bench_function("mint_opentok_jwt", |b| {
        b.iter(|| opentok::jwt_token("12345678", ot_secret, &ot_data(), now))
    });

    // Vonage: the RS256 signature a client token or an application JWT
    // costs is the ceiling of a respond route answering them.
    let pem = rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .unwrap()
        .serialize_pem();
    let key = vonage::AppKey::from_pkcs8_pem(&pem).unwrap();
    let app = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab";
    c.bench_function("mint_vonage_client_token", |b| {
        b.iter(|| {
            vonage::client_token(
                app,
                &key,
                &vonage::ClientGrant {
                    session_id: "2_MX5hYWFhYWFhYS1iYmJiLTRjY2MtOGRkZC0wMTIzNDU2Nzg5YWJ-fjE3NjcyMjU2MDAwMDB-dGVzdHNlc3Npb25-fn4",
                    role: vonage::ClientRole::Publisher,
                    connection_data: Some("user123"),
                    layout_classes: &[],
                    expires_at: now + 86_400,
                },
                "8f1c9e0a-4b7d-4f5e-9a3c-2d6b1e0f7a89",
                now,
            )
        })
    });
    c.bench_function("mint_vonage_application_jwt", |b| {
        b.iter(|| {
            vonage::application_jwt(app, &key, "8f1c9e0a-4b7d-4f5e-9a3c-2d6b1e0f7a89", now, 900)
        })
    });

    // Warm S2S: a local token endpoint, one fetch, then cached hand-outs.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else { continue };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        let body = r#"{"access_token":"bench-token","token_type":"bearer","expires_in":3600}"#;
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body))))
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
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c\"\ntls_key = \"k\"\n[credential.zoom_api]\ntype = \"zoom_s2s_oauth\"\naccount_id = \"a\"\nclient_id = \"b\"\nclient_secret = \"c\"\ntoken_url = \"http://{addr}/oauth/token\"\n"
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
    let metrics = std::sync::Arc::new(meetgate::metrics::Metrics::default());
    let registry = CredentialRegistry::new(
        std::sync::Arc::new(meetgate::cluster::Cluster::new(metrics.clone())),
        metrics,
    );
    let source = {
        let _guard = rt.enter();
        let outbound = meetgate::pipeline::forward::new_client((*snap.outbound_roots).clone());
        registry.sync(&snap, &outbound)["zoom_api"].clone()
    };
    rt.block_on(async {
        while source.token().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    c.bench_function("s2s_token_warm", |b| {
        b.iter(|| rt.block_on(source.token()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
