//! Raw HTTP/2 frames, to send exactly what a test needs (no client-side
//! checks, no flow control of its own).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// One frame: 9-byte header and payload.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A SETTINGS frame with the given (identifier, value) pairs.
pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (id, value) in pairs {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    h2_frame(SETTINGS, 0, 0, &payload)
}

/// An HPACK literal header field without indexing (no Huffman).
pub fn hpack_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    fn int7(out: &mut Vec<u8>, mut n: usize) {
        if n < 127 {
            out.push(n as u8);
            return;
        }
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.push(0x00);
    int7(out, name.len());
    out.extend_from_slice(name);
    int7(out, value.len());
    out.extend_from_slice(value);
}

/// The header block of `GET {path}` for `localhost` over `scheme`.
pub fn get_block(scheme: &str, path: &str) -> Vec<u8> {
    let mut block = Vec::new();
    for (n, v) in [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", scheme.as_bytes()),
        (b":authority", b"localhost"),
        (b":path", path.as_bytes()),
    ] {
        hpack_literal(&mut block, n, v);
    }
    block
}

/// A frame as read.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// The next frame, `Ok(None)` when the peer closed, `Err(())` when none came
/// within `limit`.
pub async fn read_frame(
    s: &mut (impl AsyncRead + Unpin),
    limit: Duration,
) -> Result<Option<Frame>, ()> {
    let read = async {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            return None;
        }
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        })
    };
    tokio::time::timeout(limit, read).await.map_err(|_| ())
}
