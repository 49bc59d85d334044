//! HTTP/2 connections: hyper's server, plus the bounds it does not have.
//!
//! - **First request.** The first request head must be complete within
//!   `header_read_timeout` of accept, as on HTTP/1.1: a client that sends
//!   the preface and SETTINGS (or half a header block) and then nothing gets
//!   GOAWAY. hyper has no header timer for HTTP/2 and its keep-alive pings
//!   only catch clients that stop answering them.
//! - **Idle.** A connection with no open stream for `http2_idle_timeout`
//!   gets GOAWAY, however many pings the client answers.
//! - **Stalled responses.** A stream whose response body makes no progress
//!   (see [`super::progress`]) is reset (`RST_STREAM(CANCEL)`), its upstream
//!   body dropped with its connection; the other streams go on.
//!
//! Streams are counted, and stalls watched, by wrapping the future hyper
//! spawns for each stream ([`StreamExec`]): dropping that future is how a
//! stream is reset from outside hyper, and it runs for exactly as long as
//! the stream is open on hyper's side.
//!
//! After GOAWAY, hyper closes once the client acknowledges the PING that
//! comes with it and no stream is left; a client that never does is
//! dropped after [`GOAWAY_GRACE`] without open streams.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::time::{Instant, Sleep};

use super::listen::Session;
use super::progress::{Bounds, Progress, Watched};
use super::stream::{Park, Prefixed};
use crate::body::BoxError;
use crate::config::Limits;
use crate::pipeline;

/// How long a connection that was sent GOAWAY may stay without open
/// streams before it is dropped: time for the client to acknowledge the
/// GOAWAY's PING and for the last frames to go out.
pub const GOAWAY_GRACE: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// The progress record of the stream whose future is being polled: how
    /// the response body, built inside that future, finds it.
    static STREAM_PROGRESS: Arc<Progress>;
}

/// Serves HTTP/2 (ALPN h2, or h2c with prior knowledge) until the client
/// closes, the connection stays idle too long, or the drain ends it.
pub(super) async fn serve<S: Park>(io: Prefixed<S>, session: Session<'_>) -> Result<(), BoxError> {
    let (limits, first_head_by, conn) = (session.limits, session.first_head_by, session.conn);
    let (state, mut shutdown) = (session.state, session.shutdown);
    let streams = Arc::new(Streams::new());
    // Boxed: hyper keeps room for one request future per stream.
    let service = service_fn(move |req| {
        let state = state.clone();
        Box::pin(async move {
            let (resp, audit) = pipeline::respond(state, req, conn).await;
            // Always set: this future runs inside a [`Watch`].
            let progress = STREAM_PROGRESS
                .try_with(Arc::clone)
                .unwrap_or_else(|_| Arc::new(Progress::new()));
            Ok::<_, std::convert::Infallible>(
                resp.map(|body| Watched::new(body, progress, (), audit)),
            )
        })
    });
    let exec = StreamExec {
        streams: streams.clone(),
        bounds: Bounds::from(limits),
    };
    let c = builder(limits, exec).serve_connection(TokioIo::new(io), service);
    tokio::pin!(c);
    let mut check = Box::pin(tokio::time::sleep_until(first_head_by));
    let mut goaway_at: Option<Instant> = None;
    loop {
        tokio::select! {
            r = c.as_mut() => return r.map_err(Into::into),
            () = check.as_mut() => {
                let now = Instant::now();
                let deadline = match (streams.quiet(), goaway_at) {
                    (Quiet::Busy, None) => now + limits.http2_idle_timeout,
                    (Quiet::Busy, Some(_)) => now + GOAWAY_GRACE,
                    (Quiet::Never, None) => first_head_by,
                    (Quiet::Since(t), None) => t + limits.http2_idle_timeout,
                    (Quiet::Never, Some(at)) => at + GOAWAY_GRACE,
                    (Quiet::Since(t), Some(at)) => t.max(at) + GOAWAY_GRACE,
                };
                if now < deadline {
                    check.as_mut().reset(deadline);
                } else if goaway_at.is_some() {
                    // GOAWAY was sent and nothing is left to finish.
                    return Ok(());
                } else {
                    tracing::debug!(client = %conn.remote, "idle HTTP/2 connection: GOAWAY");
                    c.as_mut().graceful_shutdown();
                    goaway_at = Some(now);
                    check.as_mut().reset(now + GOAWAY_GRACE);
                }
            }
            () = super::stop_requested(&mut shutdown), if goaway_at.is_none() => {
                // GOAWAY, then the streams in flight finish.
                c.as_mut().graceful_shutdown();
                let now = Instant::now();
                goaway_at = Some(now);
                check.as_mut().reset(now + GOAWAY_GRACE);
            }
        }
    }
}

/// The HTTP/2 server settings derived from `[limits]`.
fn builder(limits: &Limits, exec: StreamExec) -> http2::Builder<StreamExec> {
    let mut b = http2::Builder::new(exec);
    // Same headroom as HTTP/1.1 (the list size also counts 32 bytes per
    // field), so the exact limit is answered with the JSON error.
    let cap = limits.max_header_bytes.max(8192) + 4096;
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cap).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30))
        .max_concurrent_streams(256);
    b
}

/// A connection's open streams.
struct Streams {
    base: Instant,
    open: AtomicUsize,
    /// When the last stream closed, in milliseconds since `base` plus one;
    /// 0 while no stream ever opened.
    closed_at: AtomicU64,
}

/// Whether a connection has open streams.
enum Quiet {
    Busy,
    /// No stream opened yet.
    Never,
    /// None open since then.
    Since(Instant),
}

impl Streams {
    fn new() -> Self {
        Streams {
            base: Instant::now(),
            open: AtomicUsize::new(0),
            closed_at: AtomicU64::new(0),
        }
    }

    fn quiet(&self) -> Quiet {
        if self.open.load(Ordering::Acquire) > 0 {
            return Quiet::Busy;
        }
        match self.closed_at.load(Ordering::Acquire) {
            0 => Quiet::Never,
            ms => Quiet::Since(self.base + Duration::from_millis(ms - 1)),
        }
    }
}

/// One open stream; closing it stamps the connection's `closed_at`.
struct OpenStream(Arc<Streams>);

impl OpenStream {
    fn new(streams: Arc<Streams>) -> Self {
        streams.open.fetch_add(1, Ordering::AcqRel);
        OpenStream(streams)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        // Stamped first: whoever sees no stream open sees this close.
        let ms = self.0.base.elapsed().as_millis() as u64 + 1;
        self.0.closed_at.store(ms, Ordering::Release);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The executor hyper spawns each stream's future with (one per
/// connection): every stream runs inside a [`Watch`].
#[derive(Clone)]
pub(super) struct StreamExec {
    streams: Arc<Streams>,
    bounds: Bounds,
}

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(Watch {
            fut,
            progress: Arc::new(Progress::new()),
            bounds: self.bounds,
            timer: None,
            _open: OpenStream::new(self.streams.clone()),
        });
    }
}

pin_project_lite::pin_project! {
    /// A stream's future (hyper's, serving one request and sending its
    /// response), ended early when its response body stalls: dropping it
    /// resets the stream and drops the body, with the upstream's connection.
    struct Watch<F> {
        #[pin]
        fut: F,
        progress: Arc<Progress>,
        bounds: Bounds,
        timer: Option<Pin<Box<Sleep>>>,
        _open: OpenStream,
    }
}

impl<F: Future<Output = ()>> Future for Watch<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let fut = this.fut;
        if STREAM_PROGRESS
            .sync_scope(this.progress.clone(), || fut.poll(cx))
            .is_ready()
        {
            return Poll::Ready(());
        }
        // The body only changes its record when polled, which happens in
        // `fut` above: the deadline holds until the next wake-up.
        loop {
            let Some((at, stall)) = this.progress.deadline(this.bounds) else {
                *this.timer = None;
                return Poll::Pending;
            };
            if Instant::now() >= at {
                tracing::debug!(reason = stall.describe(), "HTTP/2 stream reset");
                return Poll::Ready(());
            }
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}
