//! Client streams as the HTTP/1.1 driver sees them: bytes already read put
//! back in front ([`Prefixed`]), and a way to wait for the next bytes
//! without holding any HTTP state ([`Park`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream that can wait for its next bytes while nothing else (no HTTP
/// connection, no buffer) is attached to it.
pub(super) trait Park: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Ready once a read would not block: bytes (or end of stream, or an
    /// error) are waiting. Anything the stream owes the peer is written
    /// first.
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Park for TcpStream {
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A peek, not just readiness: readiness can be left over from the
        // last read, which returned data without draining the socket.
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        self.poll_peek(cx, &mut buf).map_ok(|_| ())
    }
}

impl<S: Park> Park for Box<S> {
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_wake(cx)
    }
}

impl Park for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // TLS records rustls still has to send (a key update answered while
        // reading, say) go out before waiting.
        if self.get_ref().1.wants_write() {
            std::task::ready!(Pin::new(&mut *self).poll_flush(cx))?;
        }
        let (tcp, tls) = self.get_mut();
        loop {
            match tls.process_new_packets() {
                // Plaintext already decrypted, or the peer's close_notify:
                // the next read returns at once.
                Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
                    return Poll::Ready(Ok(()));
                }
                Ok(_) if tls.wants_write() => return Poll::Ready(Ok(())),
                Ok(_) => {}
                // The next read reports it.
                Err(_) => return Poll::Ready(Ok(())),
            }
            // Records that carry no data (session tickets, key updates) are
            // taken in here, so only data (or the end) wakes the connection.
            std::task::ready!(tcp.poll_read_ready(cx))?;
            match tls.read_tls(&mut TryRead(tcp)) {
                Ok(0) => return Poll::Ready(Ok(())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// `io::Read` over a non-blocking `TcpStream`: a read that would block
/// clears its readiness, so the next `poll_read_ready` waits.
struct TryRead<'a>(&'a TcpStream);

impl io::Read for TryRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

/// A stream whose first bytes were already read: they are replayed before
/// the stream is read further. Writes go straight through.
pub(super) struct Prefixed<S> {
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

impl<S> Prefixed<S> {
    /// `inner` with nothing put back yet.
    pub(super) fn new(inner: S) -> Self {
        Prefixed {
            prefix: Bytes::new(),
            inner,
        }
    }

    /// `inner` with `prefix` to be read first.
    pub(super) fn with_prefix(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }

    /// The bytes put back, not read yet.
    pub(super) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Puts `bytes` back behind whatever is still waiting to be read.
    pub(super) fn put_back(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.prefix.is_empty() {
            self.prefix = bytes;
        } else {
            let mut joined = BytesMut::with_capacity(self.prefix.len() + bytes.len());
            joined.extend_from_slice(&self.prefix);
            joined.extend_from_slice(&bytes);
            self.prefix = joined.freeze();
        }
    }
}

impl<S: Park> Park for Prefixed<S> {
    fn poll_wake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.inner.poll_wake(cx)
    }
}
