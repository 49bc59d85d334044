//! Accept loops for the public listeners, with graceful shutdown.
//!
//! Each connection loads the current snapshot once for its TLS settings and
//! HTTP limits (so a reload applies to new connections, certificates
//! included); each request then loads the snapshot it will keep to the end.
//! A connection must send its PROXY protocol header (on a `proxy_protocol`
//! listener, see [`super::proxy_header`]), complete its TLS handshake and
//! send its first request head within `header_read_timeout`.
//!
//! HTTP/2 is told from HTTP/1.1 by ALPN over TLS and by the connection
//! preface in plaintext (h2c with prior knowledge); HTTP/1.1 connections are
//! served by [`super::h1`], which parks them while idle, HTTP/2 ones by
//! [`super::h2`].

use std::sync::Arc;

use bytes::Bytes;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use super::stream::Prefixed;
use super::{h1, h2, proxy_header};
use crate::body::BoxError;
use crate::pipeline::ConnInfo;
use crate::State;

/// A client's TLS stream.
type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

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
            () = super::stop_requested(&mut shutdown) => break,
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
                tracing::debug!(peer = %remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let grace = state.live.load().settings.server.shutdown_grace;
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
    mut tcp: TcpStream,
    kind: Kind,
    mut conn: ConnInfo,
    state: Arc<State>,
    watcher: hyper_util::server::graceful::Watcher,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    // Read once; the connection does not hold the configuration.
    let (limits, tls, proxy_protocol) = {
        let live = state.live.load();
        let server = &live.settings.server;
        let proxy_protocol = match kind {
            Kind::Tls => server.proxy_protocol_tls,
            Kind::Plain => server.proxy_protocol_plain,
        };
        (
            live.settings.limits,
            server.tls.clone(),
            // Whether the peer may send the header.
            proxy_protocol.then(|| server.trusted_proxies.trusts(conn.remote.ip())),
        )
    };
    // One deadline from accept covers the PROXY protocol header, the TLS
    // handshake, the first bytes (which tell HTTP/1.1 from HTTP/2) and, for
    // HTTP/1.1, the first request head (HTTP/2: the first complete request
    // head). Without it a client that connects and then stays silent would
    // hold the connection forever: hyper-util's protocol detection waits
    // for those bytes with no timeout of its own.
    let deadline = Instant::now() + limits.header_read_timeout;
    if let Some(trusted) = proxy_protocol {
        let read = proxy_header::accept(
            &mut tcp,
            conn.remote,
            trusted,
            deadline,
            conn.proto,
            &state.metrics,
        );
        match Box::pin(read).await {
            Some(client) => conn.remote = client,
            None => return Ok(()),
        }
    }
    let session = Session {
        limits: &limits,
        first_head_by: deadline,
        state,
        conn,
        shutdown,
    };
    let result = match kind {
        Kind::Tls => {
            let Some(tls) = tls else {
                return Err("no TLS configuration".into());
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            // The handshake and the TLS stream live in boxes of their own:
            // a task is as big as the largest state of its future, and a
            // parked connection should not carry room for a handshake or
            // several moved copies of a 1.2 KB stream.
            let handshake = tokio::time::timeout_at(deadline, Box::pin(acceptor.accept(tcp)));
            let stream: Box<TlsStream> = match handshake.await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => {
                    handshake_failed(&session, Some(&e));
                    return Ok(());
                }
                Err(_) => {
                    handshake_failed(&session, None);
                    return Ok(());
                }
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                // hyper waits for the connection preface without a timeout.
                match first_bytes(stream, deadline).await? {
                    None => Ok(()),
                    Some(io) => Box::pin(h2::serve(io, session)).await,
                }
            } else {
                // HTTP/1.1 (over TLS, h2 needs ALPN).
                let io = Prefixed::new(stream);
                h1::serve(io, session).await
            }
        }
        Kind::Plain => match first_bytes(tcp, deadline).await? {
            None => Ok(()),
            Some(io) if io.prefix() == H2_PREFACE => Box::pin(h2::serve(io, session)).await,
            Some(io) => h1::serve(io, session).await,
        },
    };
    // Held until here: the shutdown drain waits for this connection.
    drop(watcher);
    result
}

/// Counts and logs (debug) a failed handshake; `None`: it timed out.
fn handshake_failed(session: &Session<'_>, error: Option<&std::io::Error>) {
    let reason = error.map_or("timeout", handshake_failure);
    session
        .state
        .metrics
        .tls_handshake_failures
        .get_or_create(&crate::metrics::ListenerReason {
            listener: "https",
            reason,
        })
        .inc();
    let error = error.map_or_else(
        || "no handshake within header_read_timeout".to_owned(),
        ToString::to_string,
    );
    tracing::debug!(peer = %session.conn.remote, reason, error, "TLS handshake failed");
}

/// The bounded reason label of a failed TLS handshake.
fn handshake_failure(e: &std::io::Error) -> &'static str {
    use rustls::Error as E;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) {
        Some(E::PeerIncompatible(_) | E::NoApplicationProtocol) => "no_shared_protocol",
        // Not TLS (plain HTTP sent to the TLS port), or TLS broken.
        Some(
            E::InvalidMessage(_)
            | E::InappropriateHandshakeMessage { .. }
            | E::InappropriateMessage { .. }
            | E::PeerMisbehaved(_)
            | E::PeerSentOversizedRecord
            | E::DecryptError,
        ) => "invalid_message",
        Some(E::AlertReceived(_)) => "alert",
        Some(_) => "other",
        None if matches!(
            e.kind(),
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ) =>
        {
            "closed"
        }
        None => "other",
    }
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads, before `deadline`, as many of the connection's first bytes as the
/// HTTP/1.1-or-HTTP/2 decision needs: the whole HTTP/2 preface, or up to
/// the first byte that differs from it. Returns the stream with those bytes
/// put back in front, or `None` when the client closed without a byte.
async fn first_bytes<S>(mut io: S, deadline: Instant) -> Result<Option<Prefixed<S>>, BoxError>
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
    Ok(Some(Prefixed::with_prefix(
        Bytes::copy_from_slice(&buf[..filled]),
        io,
    )))
}

/// What serving one connection's HTTP needs beside its stream.
pub(super) struct Session<'a> {
    pub limits: &'a crate::config::Limits,
    /// Bounds the first request head: the connection's accept time plus
    /// `header_read_timeout`.
    pub first_head_by: Instant,
    pub state: Arc<State>,
    pub conn: ConnInfo,
    pub shutdown: watch::Receiver<bool>,
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn taking six arguments returns.
    fn future_size<F, A, B, C, D, E, G, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C, D, E, G) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// The size of the future an async fn taking two arguments returns.
    fn future_size_2<F, A, B, R>(_: F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every connection's task is as big as the largest state of its
    /// future, for as long as the connection lives, parked or not: the
    /// handshake, the TLS stream and HTTP/2 must stay boxed out of it.
    #[test]
    fn a_connection_task_stays_small() {
        let task = future_size(super::serve_connection);
        assert!(task <= 2048, "connection future is {task} bytes");
        let h1 = future_size_2(super::h1::serve::<Box<super::TlsStream>>);
        assert!(h1 <= 1280, "HTTP/1.1 future is {h1} bytes");
    }
}
