//! Route selection over 100 routes: path normalization plus first-match
//! selection, for a hit near the end and a miss.

use std::collections::HashMap;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use meetgate::config::{build, BuildMode};
use meetgate::pipeline::route::{normalize, select};

fn snapshot() -> meetgate::config::Snapshot {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n",
    );
    for i in 0..100 {
        text.push_str(&format!(
            "[[route]]\nname = \"r{i}\"\npath = \"/api/v1/svc{i}/orgs/{{tenant}}/items/*\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"http://127.0.0.1:3000\"\nauthenticate = \"none\"\n"
        ));
    }
    let env: HashMap<String, String> = HashMap::new();
    let lookup = move |k: &str| env.get(k).cloned();
    build(
        &text,
        std::path::Path::new("/nonexistent/meetgate.toml"),
        BuildMode::Check,
        &lookup,
    )
    .expect("bench config builds")
}

fn bench(c: &mut Criterion) {
    let snap = snapshot();
    let hit = "/api/v1/svc97/orgs/acme/items/42/details";
    c.bench_function("normalize", |b| {
        b.iter(|| normalize(std::hint::black_box(hit)))
    });
    c.bench_function("select_100_routes_hit_97", |b| {
        b.iter(|| {
            let p = normalize(std::hint::black_box(hit)).unwrap();
            select(&snap.routes, None, &Method::GET, &p)
        })
    });
    c.bench_function("select_100_routes_miss", |b| {
        b.iter(|| {
            let p = normalize(std::hint::black_box("/nothing/here")).unwrap();
            select(&snap.routes, None, &Method::GET, &p)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
