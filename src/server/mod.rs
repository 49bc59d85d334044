//! Listeners: the public TLS listener, the optional plaintext listener and
//! the admin listener.

pub mod admin;
pub mod h1;
pub mod listen;
mod stream;

/// Pause after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// After a failed accept (out of file descriptors and similar): log and back
/// off, so a connection that keeps failing to be accepted cannot spin the
/// accept loop; serving goes on.
async fn accept_failed(listener: &'static str, error: &std::io::Error) {
    tracing::warn!(listener, %error, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
