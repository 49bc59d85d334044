//! Accept loops for the public listeners, with graceful shutdown.
//!
//! Each connection loads the current snapshot once for its TLS settings and
//! HTTP limits (so a reload applies to new connections, certificates
//! included); each request then loads the snapshot it will keep to the end.
//! A connection must complete its TLS handshake and send its first bytes
//! within `header_read_timeout`; hyper bounds each request head after that.
//!
//! TLS connections that did not negotiate h2 are served by hyper's HTTP/1.1
//! connection directly: no protocol sniffing, whose replayed bytes would
//! make hyper double the read buffer every idle keep-alive connection holds.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
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
                super::accept_failed(
                    match kind {
                        Kind::Tls => "https",
                        Kind::Plain => "http",
                    },
                    &e,
                )
                .await;
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
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(tcp, kind, conn, state, watcher, stop).await {
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
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let snap = state.snapshot.load_full();
    let limits = snap.limits;
    // One deadline from accept covers the TLS handshake and the first bytes
    // (which tell HTTP/1.1 from HTTP/2); hyper's own header timer takes over
    // from there. Without it a client that connects and then stays silent
    // would hold the connection forever: hyper-util's protocol detection
    // waits for those bytes with no timeout of its own.
    let deadline = tokio::time::Instant::now() + snap.limits.header_read_timeout;
    let service = {
        let state = state.clone();
        // Boxed: hyper keeps room for one request future per connection,
        // idle or not; a box costs one allocation per request instead of
        // ~6 KB held by every idle connection.
        service_fn(move |req| {
            let state = state.clone();
            Box::pin(async move {
                let snap = state.snapshot.load_full();
                Ok::<_, std::convert::Infallible>(pipeline::handle(&state, snap, req, conn).await)
            })
        })
    };
    match kind {
        Kind::Tls => {
            let Some(tls) = snap.server.tls.clone() else {
                return Err("no TLS configuration".into());
            };
            drop(snap);
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let stream = tokio::time::timeout_at(deadline, acceptor.accept(tcp))
                .await
                .map_err(|_| "TLS handshake timed out")??;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                // HTTP/1.1 (over TLS, h2 needs ALPN): hyper's header timer
                // bounds the first head too.
                let c = http1_builder(&limits)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades();
                tokio::pin!(c);
                let result = tokio::select! {
                    r = c.as_mut() => r,
                    _ = async { shutdown.wait_for(|s| *s).await.is_ok() } => {
                        c.as_mut().graceful_shutdown();
                        c.await
                    }
                };
                // Held until here: the drain waits for this connection.
                drop(watcher);
                return result.map_err(Into::into);
            }
            serve_sniffed(stream, deadline, &limits, service, watcher).await
        }
        Kind::Plain => {
            drop(snap);
            serve_sniffed(tcp, deadline, &limits, service, watcher).await
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2, told apart by the first bytes (which must
/// arrive before `deadline`).
async fn serve_sniffed<S, Svc, B>(
    io: S,
    deadline: tokio::time::Instant,
    limits: &Limits,
    service: Svc,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<B>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    Svc::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(stream) = first_bytes(io, deadline).await? else {
        return Ok(());
    };
    let builder = http_builder(limits);
    let c = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    watcher.watch(c.into_owned()).await
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads, before `deadline`, as many of the connection's first bytes as the
/// HTTP/1.1-or-HTTP/2 decision needs: the whole HTTP/2 preface, or up to
/// the first byte that differs from it. Returns the stream with those bytes
/// put back in front, or `None` when the client closed without a byte.
async fn first_bytes<S>(
    mut io: S,
    deadline: tokio::time::Instant,
) -> Result<Option<Prefixed<S>>, Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + Unpin,
{
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    let read = async {
        while filled < buf.len() {
            let n = io.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
            if buf[..filled] != H2_PREFACE[..filled] {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .map_err(|_| "no request within header_read_timeout")??;
    if filled == 0 {
        return Ok(None);
    }
    Ok(Some(Prefixed {
        prefix: Bytes::copy_from_slice(&buf[..filled]),
        inner: io,
    }))
}

/// A stream whose first bytes were already read: they are replayed before
/// the stream is read further. Writes go straight through.
struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// hyper's read buffer bound: hyper answers 431 itself when a head
/// outgrows it; the pipeline checks the exact limit below hyper's 8 KiB
/// minimum.
fn h1_max_buf(limits: &Limits) -> usize {
    limits.max_header_bytes.max(8192)
}

/// The HTTP/1.1 server settings derived from `[limits]` (TLS without h2).
fn http1_builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(h1_max_buf(limits));
    b
}

/// The HTTP/1.1 + HTTP/2 server settings derived from `[limits]`.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(h1_max_buf(limits));
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
