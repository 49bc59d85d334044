//! Listeners: the public TLS listener, the optional plaintext listener and
//! the admin listener.

pub mod admin;
pub mod h1;
mod h2;
pub mod listen;
mod progress;
mod proxy_header;
mod readiness;
mod stream;

/// Resolves once `shutdown` is set (or its sender is gone). Nothing borrowed
/// from the channel outlives it, so a `select!` arm on it keeps the
/// enclosing future `Send`.
async fn stop_requested(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Pause after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// After a failed accept (out of file descriptors and similar): log and back
/// off, so a connection that keeps failing to be accepted cannot spin the
/// accept loop; serving goes on.
async fn accept_failed(listener: &'static str, error: &std::io::Error) {
    tracing::warn!(listener, %error, "accept failed");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
