//! The demo's Zoom stand-in (OAuth authorize/token/revoke and the user and
//! user-token API of docs/platforms/platforms-2026.md section 1) on its own,
//! with a fixed latency on the user-token API: the Zoom of
//! benches/credentials.sh.
//!
//!   zoom_stand_in ADDR CLIENT_ID CLIENT_SECRET LATENCY_MS [ACCESS_TOKEN]
//!
//! ACCESS_TOKEN, if given, is accepted as one it issued, so the bench can
//! time the stand-in called directly beside the same call through the gateway.

use std::time::Duration;

use meetgate::demo::DevZoom;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, id, secret, latency, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: zoom_stand_in ADDR CLIENT_ID CLIENT_SECRET LATENCY_MS [ACCESS_TOKEN]".into(),
        );
    };
    let listener = tokio::net::TcpListener::bind(addr.as_str()).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let mut zoom = DevZoom::new(url.clone(), id, secret)
        .with_token_latency(Duration::from_millis(latency.parse()?));
    if let Some(token) = rest.first() {
        zoom = zoom.with_access_token(token);
    }
    println!("zoom stand-in on {url}");
    zoom.serve(listener).await;
    Ok(())
}
