//! Keep-alive connections to plain-HTTP upstreams (`http://`), pooled by hand.
//!
//! hyper-util's pooled client spawns a task for every HTTP/1.1 response with
//! a body, only to put the connection back once it is ready again, and
//! pays for a pool keyed by scheme and authority on every request. Here a
//! connection goes back when its response body ends (the body carries it),
//! and is checked for readiness when it is next taken: no task per request.
//! TLS and WebSocket upstream traffic keeps the hyper-util client (ALPN,
//! HTTP/2, upgrades).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::body::{BoxError, ReqBody};

/// A connection unused for longer than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream; more are closed when they go idle.
const MAX_IDLE: usize = 1024;
/// Connecting to an upstream (inside `upstream_timeout_ms`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections to one upstream authority.
pub struct H1Pool {
    authority: Authority,
    /// `Host` for requests that do not keep the client's (port only when
    /// not 80, as hyper-util writes it).
    host: HeaderValue,
    idle: Mutex<Vec<(SendRequest<ReqBody>, Instant)>>,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "H1Pool({})", self.authority)
    }
}

/// A pooled connection travelling with its response body: back to the pool
/// once the body has ended, closed if the body is dropped before.
pub struct Lease {
    pool: Arc<H1Pool>,
    sender: Option<SendRequest<ReqBody>>,
    /// The response body was read to its end.
    pub(crate) done: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.done {
            if let Some(sender) = self.sender.take() {
                self.pool.put(sender);
            }
        }
    }
}

impl H1Pool {
    /// A pool for `http://{authority}`.
    pub fn new(authority: Authority) -> Arc<Self> {
        let host = match authority.port_u16() {
            Some(80) | None => authority.host().to_owned(),
            Some(port) => format!("{}:{port}", authority.host()),
        };
        Arc::new(H1Pool {
            host: HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("")),
            authority,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn put(&self, sender: SendRequest<ReqBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    /// The most recently used open connection, if any.
    fn take(&self) -> Option<SendRequest<ReqBody>> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((sender, since)) = idle.pop() {
            if !sender.is_closed() && now.duration_since(since) < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<ReqBody>, BoxError> {
        // An IPv6 literal comes bracketed in an authority, not in a socket
        // address.
        let host = self.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addr = (host, self.authority.port_u16().unwrap_or(80));
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| "connect timed out")??;
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (origin-form target, `Host` set unless the caller set
    /// one) on a pooled connection or a new one. A request a reused
    /// connection could not take (it closed meanwhile) goes out once more
    /// on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ReqBody>,
    ) -> Result<(Response<Incoming>, Lease), BoxError> {
        if !req.headers().contains_key(HOST) {
            req.headers_mut().insert(HOST, self.host.clone());
        }
        let mut reused = self.take();
        loop {
            let fresh = reused.is_none();
            let mut sender = match reused.take() {
                Some(s) => s,
                None => self.connect().await?,
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return Err("the upstream closed the new connection".into());
                }
                reused = self.take();
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        pool: self.clone(),
                        sender: Some(sender),
                        done: false,
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(again) if !fresh => {
                        req = again;
                        reused = self.take();
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }
}
