//! HTTP/1.1 connections that hold no HTTP state while idle.
//!
//! hyper keeps an 8 KiB read buffer, a write buffer and its connection
//! state for as long as a keep-alive connection lives, busy or not. Here a
//! connection quiet for [`PARK_AFTER`] (one to two of them) is handed back
//! by hyper (`without_shutdown`) and *parked*: only the stream (for TLS,
//! rustls' session) is kept, in a small task, until the client sends again;
//! then a new hyper connection takes over, with any bytes hyper had read
//! but not used put back in front.
//!
//! Keep-alive timing stays what hyper gives: an idle connection must begin
//! its next request head within `header_read_timeout` of going idle
//! (parked or not), or it is closed.
//!
//! A response that makes no progress (the client reads nothing for
//! `send_timeout`, or the upstream sends nothing for
//! `upstream_body_timeout`; see [`super::progress`]) closes the connection:
//! HTTP/1.1 has no way to end one response and keep the connection.
//!
//! WebSocket upgrades are handed over here too, since hyper cannot do it on
//! a connection it returns: a request carrying `Upgrade` gets a
//! [`ClientUpgrade`] slot, filled with the stream after the 101.

use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::listen::Session;
use super::progress::{Bounds, Progress, Stall, Watched, WriteBlock, WriteClock};
use super::stream::{Park, Prefixed};
use crate::body::BoxError;
use crate::config::Limits;
use crate::pipeline;

/// How long a connection must be quiet (no request in flight, none begun)
/// before it is parked; the check runs on a timer of this period, so a
/// connection parks after one to two of these.
pub const PARK_AFTER: Duration = Duration::from_millis(200);

/// A client stream after a WebSocket upgrade.
pub trait UpgradedStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpgradedStream for T {}

/// What a connection's requests report to the task driving it.
struct Activity {
    /// Requests whose response body has not been dropped by hyper yet.
    in_flight: AtomicUsize,
    /// Requests begun on this connection, ever.
    started: AtomicU64,
    /// Where the stream goes after a 101, while a request waits for it.
    upgrade: Mutex<Option<oneshot::Sender<Box<dyn UpgradedStream>>>>,
    /// The response body in flight (one at a time on HTTP/1.1).
    progress: Arc<Progress>,
    /// Writes to the client blocked, body in flight or not (its last bytes
    /// may wait in hyper's buffer after it ended).
    write_block: Arc<WriteBlock>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            upgrade: Mutex::new(None),
            progress: Arc::new(Progress::new()),
            write_block: Arc::new(WriteBlock::new()),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn take_upgrade(&self) -> Option<oneshot::Sender<Box<dyn UpgradedStream>>> {
        self.upgrade
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// One request, from the service call until hyper drops its response body.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Request extension: the connection's upgrade slot.
#[derive(Clone)]
struct UpgradeSlot(Arc<Activity>);

/// The client side of a WebSocket upgrade: the stream once the 101 has been
/// written.
pub enum ClientUpgrade {
    /// A connection served by this module.
    Parked(oneshot::Receiver<Box<dyn UpgradedStream>>),
    /// A connection served by hyper's own upgrade machinery (HTTP/2 and
    /// sniffed connections).
    Hyper(hyper::upgrade::OnUpgrade),
}

impl ClientUpgrade {
    /// Registers for the upgrade of `req`'s connection. Call before the
    /// response is returned.
    pub fn on<B>(req: &mut Request<B>) -> Self {
        match req.extensions_mut().remove::<UpgradeSlot>() {
            Some(UpgradeSlot(activity)) => {
                let (tx, rx) = oneshot::channel();
                *activity
                    .upgrade
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
                ClientUpgrade::Parked(rx)
            }
            None => ClientUpgrade::Hyper(hyper::upgrade::on(req)),
        }
    }

    /// The upgraded stream.
    pub async fn stream(self) -> Result<Box<dyn UpgradedStream>, BoxError> {
        match self {
            ClientUpgrade::Parked(rx) => rx
                .await
                .map_err(|_| "the connection closed before the upgrade".into()),
            ClientUpgrade::Hyper(on) => Ok(Box::new(TokioIo::new(on.await?))),
        }
    }
}

/// Why hyper handed the connection back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Handback {
    /// Closed, by the client or by `Connection: close`, or upgraded.
    Ended,
    /// Asked to stop after going quiet.
    Park,
    /// Asked to stop for shutdown.
    Shutdown,
}

/// Serves HTTP/1.1 on `io` until the client closes, parking the connection
/// whenever it goes quiet.
pub(super) async fn serve<S: Park>(
    mut io: Prefixed<S>,
    session: Session<'_>,
) -> Result<(), BoxError> {
    let Session {
        limits,
        first_head_by,
        state,
        conn,
        mut shutdown,
    } = session;
    let activity = Arc::new(Activity::new());
    let metrics = state.metrics.clone();
    let mut service = {
        let activity = activity.clone();
        // Boxed: hyper keeps room for one request future per connection; a
        // box costs one allocation per request instead of ~6 KB held by
        // every connection.
        service_fn(move |mut req: Request<Incoming>| {
            let state = state.clone();
            let guard = activity.begin();
            if req.headers().contains_key(http::header::UPGRADE) {
                req.extensions_mut().insert(UpgradeSlot(activity.clone()));
            }
            Box::pin(async move {
                let (resp, audit) = pipeline::respond(state, req, conn).await;
                let progress = guard.0.progress.clone();
                Ok::<_, std::convert::Infallible>(
                    resp.map(|body| Watched::new(body, progress, guard, audit)),
                )
            })
        })
    };
    // Set while no request has begun since the connection went idle: the
    // instant by which one must, as hyper's header timer would have it.
    let mut idle_deadline = Some(first_head_by);
    let header_read_timeout = limits.header_read_timeout;
    let bounds = Bounds::from(limits);
    let builder = builder(limits);
    loop {
        let clocked = WriteClock::new(io, activity.write_block.clone());
        let mut http = Box::new(builder.serve_connection(TokioIo::new(clocked), service));
        let resumed = activity.started();
        let mut seen = resumed;
        let mut quiet = false;
        let mut tick = Box::pin(tokio::time::sleep(PARK_AFTER));
        let mut handback = Handback::Ended;
        let served = loop {
            tokio::select! {
                r = poll_fn(|cx| http.poll_without_shutdown(cx)) => break r,
                () = tick.as_mut() => {
                    let now = Instant::now();
                    // Checked whatever the hand-back state: a stalled
                    // response would hold a park or a shutdown drain too.
                    if let Some(stall) = stalled(&activity, &bounds, now) {
                        tracing::debug!(client = %conn.remote, reason = stall, "response cut");
                        return Err(stall.into());
                    }
                    tick.as_mut().reset(now + PARK_AFTER);
                    if handback != Handback::Ended {
                        continue;
                    }
                    let started = activity.started();
                    if started != resumed {
                        idle_deadline = None;
                    } else if idle_deadline.is_some_and(|d| now >= d) {
                        return Err("no request within header_read_timeout".into());
                    }
                    // Quiet: nothing in flight, nothing begun since the last
                    // tick, and one request served by this hyper connection
                    // at least (hyper only lets a connection go between
                    // requests; asked before its first it would close after
                    // that one).
                    if started > resumed && started == seen && activity.in_flight() == 0 {
                        if quiet {
                            Pin::new(&mut *http).graceful_shutdown();
                            handback = Handback::Park;
                            continue;
                        }
                        quiet = true;
                    } else {
                        quiet = false;
                        seen = started;
                    }
                }
                () = super::stop_requested(&mut shutdown), if handback != Handback::Shutdown => {
                    Pin::new(&mut *http).graceful_shutdown();
                    handback = Handback::Shutdown;
                }
            }
        };
        served?;
        // Nothing of the served connection stays for the parked state.
        drop(tick);
        let parts = http.into_parts();
        service = parts.service;
        io = parts.io.into_inner().into_inner();
        io.put_back(parts.read_buf);
        match handback {
            Handback::Shutdown => return close(io, header_read_timeout).await,
            Handback::Ended => {
                if let Some(tx) = activity.take_upgrade() {
                    if !tx.is_closed() {
                        let _ = tx.send(Box::new(io));
                        return Ok(());
                    }
                }
                return close(io, header_read_timeout).await;
            }
            Handback::Park => {}
        }
        // Parked: the stream alone, until the client sends (or closes).
        let deadline = *idle_deadline
            .get_or_insert_with(|| Instant::now() + header_read_timeout.saturating_sub(PARK_AFTER));
        metrics.connections_parked.inc();
        let woke = tokio::select! {
            woke = poll_fn(|cx| io.poll_wake(cx)) => Some(woke),
            () = tokio::time::sleep_until(deadline) => None,
            () = super::stop_requested(&mut shutdown) => None,
        };
        metrics.connections_parked.dec();
        match woke {
            Some(woke) => woke?,
            None => return close(io, header_read_timeout).await,
        }
    }
}

/// Why the connection's response must be cut at `now`, if it must.
fn stalled(activity: &Activity, bounds: &Bounds, now: Instant) -> Option<&'static str> {
    if let Some(stall) = activity.progress.stalled(bounds, now) {
        return Some(stall.describe());
    }
    activity
        .write_block
        .stalled(bounds.send, now)
        .then_some(Stall::Client.describe())
}

/// Ends the stream cleanly (TLS close_notify, then FIN), within `within`.
/// The client may be gone already: nothing to report then.
async fn close<S: AsyncWrite + Unpin>(mut io: S, within: Duration) -> Result<(), BoxError> {
    let _ = tokio::time::timeout(within, io.shutdown()).await;
    Ok(())
}

/// hyper's read buffer bound: hyper answers 431 itself when a head
/// outgrows it; the pipeline checks the exact limit below hyper's 8 KiB
/// minimum.
fn h1_max_buf(limits: &Limits) -> usize {
    limits.max_header_bytes.max(8192)
}

/// The HTTP/1.1 server settings derived from `[limits]`.
fn builder(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(h1_max_buf(limits));
    b
}
