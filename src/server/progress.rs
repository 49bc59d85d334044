//! Progress of a response on its way to the client, for the send and
//! upstream-body timeouts (`[limits] send_timeout_ms`,
//! `upstream_body_timeout_ms`).
//!
//! A response body is *stalled* when no frame went from the upstream to
//! the client for a bound: either the upstream sends nothing (the body's
//! `poll_frame` stays pending), or the client accepts nothing (hyper stops
//! asking the body for frames: it only does when the client's HTTP/2 window
//! or the socket has room for them). Slow is fine; stopped is not: each
//! frame starts the clock again.
//!
//! A stalled body cannot end itself (in the second case nothing polls it),
//! so [`Watched`] only records where the body waits and since when; the
//! task that drives the response ([`super::h1`]'s connection loop, or the
//! per-stream future of [`super::h2`]) checks the record and drops the
//! response, and with it the upstream body and its connection.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::config::Limits;
use crate::pipeline::AuditTail;

/// The bounds a response body's progress is held to (from `[limits]`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    /// For the client to take the next piece.
    pub send: Duration,
    /// For the upstream to send the next piece.
    pub upstream_body: Duration,
}

impl From<&Limits> for Bounds {
    fn from(l: &Limits) -> Self {
        Bounds {
            send: l.send_timeout,
            upstream_body: l.upstream_body_timeout,
        }
    }
}

/// Nothing to wait for: no body, or it ended.
const IDLE: u64 = 0;
/// The body waits for the upstream's next frame.
const UPSTREAM: u64 = 1;
/// The body handed a frame over and waits to be asked for the next.
const CLIENT: u64 = 2;
/// The phase sits in the top two bits, the milliseconds since `base` below.
const PHASE_SHIFT: u32 = 62;
const MILLIS_MASK: u64 = (1 << PHASE_SHIFT) - 1;

/// Where a response body waits, and since when. Shared between the body
/// and the task watching it; one atomic word, so a reader never sees a
/// phase with another phase's time.
#[derive(Debug)]
pub(super) struct Progress {
    base: Instant,
    state: AtomicU64,
}

/// Why a response was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stall {
    /// The client accepted nothing for `send_timeout`.
    Client,
    /// The upstream sent nothing for `upstream_body_timeout`.
    Upstream,
}

impl Stall {
    /// For logs.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Stall::Client => "the client accepted no part of the response within send_timeout",
            Stall::Upstream => {
                "the upstream sent no part of the response body within upstream_body_timeout"
            }
        }
    }
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress {
            base: Instant::now(),
            state: AtomicU64::new(IDLE),
        }
    }

    fn set(&self, phase: u64) {
        let ms = self.base.elapsed().as_millis() as u64 & MILLIS_MASK;
        self.state
            .store(phase << PHASE_SHIFT | ms, Ordering::Relaxed);
    }

    fn enter(&self, phase: u64) {
        // Waiting on, the clock keeps running from the first pending poll.
        if self.state.load(Ordering::Relaxed) >> PHASE_SHIFT != phase {
            self.set(phase);
        }
    }

    fn idle(&self) {
        self.state.store(IDLE, Ordering::Relaxed);
    }

    /// When the current wait runs out under `bounds`, and which side it
    /// waits on; `None` while no body waits.
    pub(super) fn deadline(&self, bounds: &Bounds) -> Option<(Instant, Stall)> {
        let state = self.state.load(Ordering::Relaxed);
        let since = self.base + Duration::from_millis(state & MILLIS_MASK);
        match state >> PHASE_SHIFT {
            UPSTREAM => Some((since + bounds.upstream_body, Stall::Upstream)),
            CLIENT => Some((since + bounds.send, Stall::Client)),
            _ => None,
        }
    }

    /// The wait that ran out at `now`, if any.
    pub(super) fn stalled(&self, bounds: &Bounds, now: Instant) -> Option<Stall> {
        self.deadline(bounds)
            .and_then(|(at, why)| (now >= at).then_some(why))
    }
}

pin_project_lite::pin_project! {
    /// A response body recording its progress in a [`Progress`], holding
    /// `guard` until hyper drops it (HTTP/1 counts the request in flight
    /// that long; HTTP/2 holds nothing), and the request's audit line,
    /// counting the bytes handed over, written when hyper drops it.
    pub(super) struct Watched<B, G> {
        #[pin]
        inner: B,
        progress: Arc<Progress>,
        guard: G,
        audit: Option<Box<AuditTail>>,
    }

    impl<B, G> PinnedDrop for Watched<B, G> {
        fn drop(this: Pin<&mut Self>) {
            this.progress.idle();
        }
    }
}

impl<B, G> Watched<B, G> {
    pub(super) fn new(
        inner: B,
        progress: Arc<Progress>,
        guard: G,
        audit: Option<Box<AuditTail>>,
    ) -> Self {
        Watched {
            inner,
            progress,
            guard,
            audit,
        }
    }
}

impl<B: Body, G> Body for Watched<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Pending => this.progress.enter(UPSTREAM),
            // A frame handed over: the clock starts again, now on the
            // client's side until hyper asks for the next one.
            Poll::Ready(Some(Ok(frame))) => {
                this.progress.set(CLIENT);
                if let (Some(audit), Some(data)) = (this.audit.as_mut(), frame.data_ref()) {
                    audit.sent(data.remaining());
                }
            }
            Poll::Ready(_) => this.progress.idle(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Since when writes to a client stream have been blocked (the client is
/// not reading), in milliseconds since `base` plus one; 0 while they are
/// not.
#[derive(Debug)]
pub(super) struct WriteBlock {
    base: Instant,
    since: AtomicU64,
}

impl WriteBlock {
    pub(super) fn new() -> Self {
        WriteBlock {
            base: Instant::now(),
            since: AtomicU64::new(0),
        }
    }

    fn note<T>(&self, polled: &Poll<io::Result<T>>, progressed: impl FnOnce(&T) -> bool) {
        match polled {
            Poll::Pending => {
                if self.since.load(Ordering::Relaxed) == 0 {
                    let ms = self.base.elapsed().as_millis() as u64 + 1;
                    self.since.store(ms, Ordering::Relaxed);
                }
            }
            Poll::Ready(Ok(v)) if !progressed(v) => {}
            Poll::Ready(_) => self.since.store(0, Ordering::Relaxed),
        }
    }

    /// Whether writes have been blocked for `bound` at `now`.
    pub(super) fn stalled(&self, bound: Duration, now: Instant) -> bool {
        match self.since.load(Ordering::Relaxed) {
            0 => false,
            ms => now >= self.base + Duration::from_millis(ms - 1) + bound,
        }
    }
}

/// A client stream noting in a [`WriteBlock`] when its writes block. For
/// HTTP/1.1, where the response's last bytes may still wait in hyper's
/// buffer after its body has ended.
pub(super) struct WriteClock<S> {
    inner: S,
    block: Arc<WriteBlock>,
}

impl<S> WriteClock<S> {
    pub(super) fn new(inner: S, block: Arc<WriteBlock>) -> Self {
        WriteClock { inner, block }
    }

    pub(super) fn into_inner(self) -> S {
        self.block.since.store(0, Ordering::Relaxed);
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteClock<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteClock<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.block.note(&polled, |n| *n > 0);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.block.note(&polled, |n| *n > 0);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.block.note(&polled, |()| true);
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds {
            send: Duration::from_secs(10),
            upstream_body: Duration::from_secs(20),
        }
    }

    #[test]
    fn the_clock_runs_on_the_side_the_body_waits_for() {
        let l = bounds();
        let p = Progress::new();
        assert_eq!(p.deadline(&l), None);
        p.enter(UPSTREAM);
        let t0 = Instant::now();
        let word = p.state.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        // Still waiting: the clock does not restart at each pending poll.
        p.enter(UPSTREAM);
        assert_eq!(p.state.load(Ordering::Relaxed), word);
        assert_eq!(p.stalled(&l, t0 + Duration::from_secs(19)), None);
        assert_eq!(
            p.stalled(&l, t0 + Duration::from_secs(20)),
            Some(Stall::Upstream)
        );
        // A frame: the client's turn, with its own bound, from now.
        p.set(CLIENT);
        let t1 = Instant::now();
        assert_eq!(p.stalled(&l, t1 + Duration::from_secs(9)), None);
        assert_eq!(
            p.stalled(&l, t1 + Duration::from_secs(10)),
            Some(Stall::Client)
        );
        p.idle();
        assert_eq!(p.deadline(&l), None);
    }

    #[test]
    fn blocked_writes_count_until_one_goes_through() {
        let b = WriteBlock::new();
        let t0 = Instant::now();
        b.note::<usize>(&Poll::Pending, |n| *n > 0);
        let bound = Duration::from_secs(10);
        assert!(!b.stalled(bound, t0 + Duration::from_secs(9)));
        assert!(b.stalled(bound, t0 + Duration::from_secs(11)));
        // A write that took nothing is no progress.
        b.note(&Poll::Ready(Ok(0usize)), |n| *n > 0);
        assert!(b.stalled(bound, t0 + Duration::from_secs(11)));
        b.note(&Poll::Ready(Ok(1usize)), |n| *n > 0);
        assert!(!b.stalled(bound, t0 + Duration::from_secs(60)));
    }
}
