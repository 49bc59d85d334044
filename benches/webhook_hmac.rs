//! Webhook verification (HMAC-SHA256 over the raw body, constant-time
//! compare) for 1 KiB and 64 KiB bodies.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hmac::{Hmac, KeyInit, Mac};
use meetgate::config::{SecretBytes, WebhookKind, WebhookSettings};
use meetgate::pipeline::webhook::verify;
use sha2::Sha256;

fn bench(c: &mut Criterion) {
    let secret = b"bench-webhook-secret";
    let settings = WebhookSettings {
        name: "zoom".into(),
        kind: WebhookKind::Zoom,
        secrets: vec![SecretBytes(secret.to_vec())],
        tolerance: std::time::Duration::from_secs(300),
        dedup: std::time::Duration::from_secs(60),
        application_id: None,
    };
    let mut group = c.benchmark_group("webhook_verify_zoom");
    for size in [1024usize, 64 * 1024] {
        let body = vec![b'a'; size];
        let mut m = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        m.update(b"v0:1700000000:");
        m.update(&body);
        let sig = format!("v0={}", hex::encode(m.finalize().into_bytes()));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-zm-signature", sig.parse().unwrap());
        headers.insert("x-zm-request-timestamp", "1700000000".parse().unwrap());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("{}KiB", size / 1024), |b| {
            b.iter(|| {
                verify(
                    &settings,
                    &headers,
                    std::hint::black_box(&body),
                    1_700_000_000,
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
