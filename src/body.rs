//! The body type used across the gateway, both ways.
//!
//! An enum rather than a boxed trait object so the hot path does not
//! allocate per request: either a streamed hyper body (proxied traffic, never
//! buffered) or bytes the gateway holds (its own answers, buffered webhooks
//! it must forward exactly as received).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::pipeline::pool::Lease;

/// Boxed error type for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// A request or response body: bytes the gateway holds, or a peer's
    /// stream passed through.
    #[project = GatewayBodyProj]
    pub enum GatewayBody {
        /// Bytes held by the gateway.
        Full { data: Option<Bytes> },
        /// A client's or upstream's body, streamed through; `count` (for
        /// an audited request's body) adds up its bytes.
        Stream { #[pin] inner: Incoming, count: Option<Arc<AtomicU64>> },
        /// A plain-HTTP upstream's body, streamed through; its connection
        /// goes back to the pool once the body has ended.
        Leased { #[pin] inner: Incoming, lease: Lease },
    }
}

/// A body sent upstream.
pub type ReqBody = GatewayBody;
/// A body answered to the client.
pub type ResBody = GatewayBody;

impl GatewayBody {
    /// A body holding the given bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        GatewayBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        GatewayBody::Full { data: None }
    }

    /// A peer's body streamed through, its bytes added to `count`.
    pub fn stream(inner: Incoming, count: Option<Arc<AtomicU64>>) -> Self {
        GatewayBody::Stream { inner, count }
    }

    /// A streamed upstream body holding its pooled connection.
    pub fn leased(inner: Incoming, mut lease: Lease) -> Self {
        lease.done = inner.is_end_stream();
        GatewayBody::Leased { inner, lease }
    }
}

/// A response the gateway answers itself, with a JSON body.
pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<GatewayBody> {
    let mut resp = Response::new(GatewayBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

impl Body for GatewayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            GatewayBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            GatewayBodyProj::Stream { inner, count } => {
                let frame = std::task::ready!(inner.poll_frame(cx));
                if let (Some(count), Some(Ok(f))) = (count.as_ref(), frame.as_ref()) {
                    if let Some(data) = f.data_ref() {
                        count.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            GatewayBodyProj::Leased { mut inner, lease } => {
                let frame = std::task::ready!(inner.as_mut().poll_frame(cx));
                if frame.is_none() || inner.is_end_stream() {
                    lease.done = true;
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            GatewayBody::Full { data } => data.is_none(),
            GatewayBody::Stream { inner, .. } | GatewayBody::Leased { inner, .. } => {
                inner.is_end_stream()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            GatewayBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            GatewayBody::Stream { inner, .. } | GatewayBody::Leased { inner, .. } => {
                inner.size_hint()
            }
        }
    }
}
