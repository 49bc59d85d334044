//! 50 MiB bodies stream through the real binary byte-exact, both ways, over
//! HTTP/1.1 and HTTP/2, without the gateway's memory growing with body size.

mod common;

use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;

const SIZE: u64 = 50 * 1024 * 1024;

async fn streaming_upstream() -> std::net::SocketAddr {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        match req.uri().path() {
            "/upload" => {
                let result = check_pattern(req.into_body()).await;
                Response::new(full(
                    serde_json::json!({ "result": format!("{result:?}") }).to_string(),
                ))
            }
            _ => Response::new(
                PatternBody {
                    offset: 0,
                    len: SIZE,
                }
                .boxed(),
            ),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_both_ways_byte_exact_with_bounded_memory() {
    let up = streaming_upstream().await;
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &certs,
        dir.path(),
        "",
        &format!("\n[[route]]\nname = \"stream\"\npath = \"/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n"),
    );
    let gw = BinaryGateway::spawn(&config);

    // Warm up both protocols so the baseline includes connection buffers.
    for c in [client(&certs, false), client(&certs, true)] {
        let (s, _, _) = send(&c, "POST", &gw.url("/upload"), &[], full("x")).await;
        assert_eq!(s, StatusCode::OK);
    }
    let baseline = gw.peak_rss_kib();

    for c in [client(&certs, false), client(&certs, true)] {
        // Upload: the upstream checks every byte.
        let (s, _, b) = send(
            &c,
            "POST",
            &gw.url("/upload"),
            &[],
            PatternBody {
                offset: 0,
                len: SIZE,
            }
            .boxed(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(json(&b)["result"], format!("Ok({SIZE})"));

        // Download: the client checks every byte.
        let resp = c
            .request(Request::get(gw.url("/download")).body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(check_pattern(resp.into_body()).await, Ok(SIZE));
    }

    let peak = gw.peak_rss_kib();
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    assert!(
        growth_mib < 24,
        "gateway peak RSS grew by {growth_mib} MiB while streaming {} MiB bodies",
        SIZE / 1024 / 1024
    );
}
