//! Request and response body types used across the gateway.
//!
//! Bodies are enums rather than boxed trait objects so the hot path does not
//! allocate per request: either a streamed hyper body (proxied traffic, never
//! buffered) or bytes the gateway holds (its own answers, buffered webhooks).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Boxed error type for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// A response body: the gateway's own bytes or an upstream's stream.
    #[project = ResBodyProj]
    pub enum ResBody {
        /// Bytes produced by the gateway (errors, health, gateway answers).
        Full { data: Option<Bytes> },
        /// An upstream response body, streamed through.
        Stream { #[pin] inner: Incoming },
    }
}

impl ResBody {
    /// A body holding the given bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ResBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResBody::Full { data: None }
    }

    /// A streamed upstream body.
    pub fn stream(inner: Incoming) -> Self {
        ResBody::Stream { inner }
    }
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ResBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ResBodyProj::Stream { inner } => inner.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResBody::Full { data } => data.is_none(),
            ResBody::Stream { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResBody::Stream { inner } => inner.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request body sent upstream: the client's stream, or bytes the
    /// gateway buffered (webhooks) and must forward exactly as received.
    #[project = ReqBodyProj]
    pub enum ReqBody {
        /// Bytes held by the gateway.
        Full { data: Option<Bytes> },
        /// The client's body, streamed through.
        Stream { #[pin] inner: Incoming },
    }
}

impl ReqBody {
    /// A body holding the given bytes.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ReqBody::Full {
            data: (!data.is_empty()).then_some(data),
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ReqBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ReqBodyProj::Stream { inner } => inner.poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Full { data } => data.is_none(),
            ReqBody::Stream { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ReqBody::Stream { inner } => inner.size_hint(),
        }
    }
}
