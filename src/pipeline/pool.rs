//! Keep-alive connections to plain-HTTP upstreams (`http://`), pooled by hand.
//!
//! hyper-util's pooled client spawns a task for every HTTP/1.1 response with
//! a body, only to put the connection back once it is ready again, and
//! pays for a pool keyed by scheme and authority on every request. Here a
//! connection goes back when its response body ends (the body carries it),
//! and is checked for readiness when it is next taken: no task per request.
//! TLS and WebSocket upstream traffic keeps the hyper-util client (ALPN,
//! HTTP/2, upgrades).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use crate::body::{BoxError, ReqBody};

/// A connection unused for longer than this is closed (by a reaper task
/// running every half of it while the pool exists, and when taken).
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
    /// Oldest first; taken from the back (the warmest connection).
    idle: Mutex<VecDeque<(SendRequest<ReqBody>, Instant)>>,
    idle_timeout: Duration,
    /// The reaper task runs (started with the first idle connection: the
    /// pool may be built where there is no runtime, by `meetgate check`).
    reaper: AtomicBool,
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
        Self::with_idle_timeout(authority, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(authority: Authority, idle_timeout: Duration) -> Arc<Self> {
        let host = match authority.port_u16() {
            Some(80) | None => authority.host().to_owned(),
            Some(port) => format!("{}:{port}", authority.host()),
        };
        Arc::new(H1Pool {
            host: HeaderValue::from_str(&host).unwrap_or_else(|_| HeaderValue::from_static("")),
            authority,
            idle: Mutex::new(VecDeque::new()),
            idle_timeout,
            reaper: AtomicBool::new(false),
        })
    }

    fn put(self: &Arc<Self>, sender: SendRequest<ReqBody>) {
        if sender.is_closed() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push_back((sender, Instant::now()));
        }
        if !self.reaper.swap(true, Ordering::Relaxed) {
            let pool: Weak<Self> = Arc::downgrade(self);
            let period = self.idle_timeout / 2;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.expire();
                }
            });
        }
    }

    /// Closes the connections idle for `idle_timeout` (or closed by the
    /// upstream): dropping a sender ends its connection.
    fn expire(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|(sender, since)| {
            !sender.is_closed() && now.duration_since(*since) < self.idle_timeout
        });
    }

    /// The most recently used open connection, if any.
    fn take(&self) -> Option<SendRequest<ReqBody>> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((sender, since)) = idle.pop_back() {
            if !sender.is_closed() && now.duration_since(since) < self.idle_timeout {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;

    use super::*;
    use crate::body::ResBody;

    fn idle_len(pool: &H1Pool) -> usize {
        pool.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        // An upstream counting the connections that ended.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let ended = Arc::new(AtomicUsize::new(0));
        let count = ended.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(ResBody::full("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                    count.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        let pool = H1Pool::with_idle_timeout(
            addr.to_string().parse().unwrap(),
            Duration::from_millis(300),
        );
        for _ in 0..2 {
            let req = Request::get("/").body(ReqBody::empty()).unwrap();
            let (resp, lease) = pool.send(req).await.unwrap();
            let body = ResBody::leased(resp.into_body(), lease);
            assert_eq!(body.collect().await.unwrap().to_bytes(), "ok");
            assert_eq!(idle_len(&pool), 1, "back in the pool, reused");
        }
        assert_eq!(ended.load(Ordering::SeqCst), 0);
        let deadline = Instant::now() + Duration::from_secs(3);
        while ended.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the idle connection was never closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(idle_len(&pool), 0);
        // A pool that is gone stops its reaper; nothing else to observe.
        drop(pool);
    }
}
