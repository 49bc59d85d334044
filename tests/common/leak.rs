//! The leak check: secrets, tokens and keys must appear nowhere a gateway
//! writes (logs, audit, metrics, answers).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::BinaryGateway;

/// Waits until the binary gateway's `/readyz?strict=1` answers 200: every
/// identity has keys, every credential a token (bounded).
pub async fn wait_ready(admin: SocketAddr) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while super::admin_get(admin, "/readyz?strict=1").await.0 != http::StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything a gateway wrote: its logs, stdout, audit file and metrics.
pub struct Written {
    pub log: String,
    pub stdout: String,
    pub audit: String,
    pub metrics: String,
}

impl Written {
    /// Scrapes the metrics, stops the gateway (SIGTERM) and reads the rest.
    pub async fn collect(gw: &BinaryGateway, admin: SocketAddr, audit: &Path) -> Written {
        let metrics = super::scrape(admin).await;
        tokio::time::sleep(Duration::from_millis(300)).await; // audit writer flush
        gw.signal("TERM");
        Written {
            audit: std::fs::read_to_string(audit).unwrap(),
            log: gw.log.lock().unwrap().join("\n"),
            stdout: gw.stdout.lock().unwrap().join("\n"),
            metrics,
        }
    }

    /// Asserts that none of `forbidden` (what, value) appears here or in
    /// `responses`.
    pub fn assert_none_of(&self, forbidden: &[(&str, String)], responses: &[String]) {
        let places = [
            ("stderr log", self.log.as_str()),
            ("stdout", self.stdout.as_str()),
            ("audit file", self.audit.as_str()),
            ("metrics", self.metrics.as_str()),
        ];
        assert_nowhere(forbidden, &places, responses);
    }
}

/// Asserts that none of `forbidden` (what, value) appears in any of
/// `places` or `responses`.
pub fn assert_nowhere(forbidden: &[(&str, String)], places: &[(&str, &str)], responses: &[String]) {
    for (what, needle) in forbidden {
        assert!(!needle.is_empty(), "{what}: an empty needle proves nothing");
        for (place, hay) in places {
            assert!(!hay.contains(needle.as_str()), "{what} found in {place}");
        }
        for t in responses {
            assert!(
                !t.contains(needle.as_str()),
                "{what} found in a response: {t}"
            );
        }
    }
}
