//! Accept loops for the public listeners, with graceful shutdown.
//!
//! Each connection loads the current snapshot once for its TLS settings and
//! HTTP limits (so a reload applies to new connections, certificates
//! included); each request then loads the snapshot it will keep to the end.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::config::Limits;
use crate::pipeline::{self, ConnInfo};
use crate::State;

/// Which kind of public listener an accept loop serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TLS with ALPN h2 / http/1.1.
    Tls,
    /// Plaintext HTTP/1.1 and h2c (behind a TLS-terminating load balancer).
    Plain,
}

/// Accepts connections until `shutdown` flips, then drains in-flight
/// requests for at most the snapshot's `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    kind: Kind,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (tcp, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and similar: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let conn = ConnInfo {
            remote,
            proto: match kind {
                Kind::Tls => "https",
                Kind::Plain => "http",
            },
        };
        let watcher = graceful.watcher();
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(tcp, kind, conn, state, watcher).await {
                tracing::debug!(client = %conn.remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = state.snapshot.load().server.shutdown_grace;
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "connections still open after the shutdown grace period"
        );
    }
}

async fn serve_connection(
    tcp: TcpStream,
    kind: Kind,
    conn: ConnInfo,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let snap = state.snapshot.load_full();
    let builder = http_builder(&snap.limits);
    let service = {
        let state = state.clone();
        service_fn(move |req| {
            let state = state.clone();
            async move {
                let snap = state.snapshot.load_full();
                Ok::<_, std::convert::Infallible>(pipeline::handle(&state, snap, req, conn).await)
            }
        })
    };
    match kind {
        Kind::Tls => {
            let Some(tls) = snap.server.tls.clone() else {
                return Err("no TLS configuration".into());
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let stream =
                tokio::time::timeout(snap.limits.header_read_timeout, acceptor.accept(tcp))
                    .await
                    .map_err(|_| "TLS handshake timed out")??;
            drop(snap);
            let c = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watcher.watch(c.into_owned()).await
        }
        Kind::Plain => {
            drop(snap);
            let c = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            watcher.watch(c.into_owned()).await
        }
    }
}

/// The HTTP/1.1 + HTTP/2 server settings derived from `[limits]`.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers 431 itself when the head outgrows its buffer; the
        // pipeline checks the exact limit below hyper's 8 KiB minimum.
        .max_buf_size(limits.max_header_bytes.max(8192));
    // Same headroom for HTTP/2 (whose list size also counts 32 bytes per
    // field), so the exact limit is answered with the JSON error.
    let h2_cap = limits.max_header_bytes.max(8192) + 4096;
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(h2_cap).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .max_concurrent_streams(256);
    b
}
