//! The PROXY protocol header (v1 text, v2 binary) a load balancer sends
//! before anything else on a connection it passes on
//! (docs/BEHAVIOUR.md item 37).
//!
//! Read off the TCP stream before the TLS handshake (or the first HTTP
//! bytes), byte-exact: nothing after the header is consumed, so the stream
//! is handed on untouched. Parsing is `ppp`'s; framing (how many bytes to
//! read) is done here, so no byte of the client's own data is taken.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::metrics::{ListenerReason, Metrics};

/// The v2 signature (spec section 2.2).
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 line is at most 107 bytes, CRLF included (spec section 2.1).
const V1_MAX: usize = 107;
/// Both versions are at least this long ("PROXY UNKNOWN\r\n"; the v2 fixed
/// part is 16): reading this many first never takes a byte past a header.
const SHORTEST: usize = 15;

/// The start of a connection on a listener with `proxy_protocol`: the
/// client address its header names, or `None` when the connection is to be
/// closed. Only a `trusted` peer may send a header: any other is closed
/// before a byte is read, so a client cannot name its own address. A
/// header missing, malformed, or not complete by `deadline` closes the
/// connection too. Each refusal is logged at debug and counted in
/// `meetgate_proxy_protocol_refused_total` (a peer closing before its first
/// byte, as TCP health checks do, is neither).
pub(super) async fn accept(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    trusted: bool,
    deadline: Instant,
    listener: &'static str,
    metrics: &Metrics,
) -> Option<SocketAddr> {
    let refused = if !trusted {
        (
            "untrusted_peer",
            "a peer outside trusted_proxies".to_owned(),
        )
    } else {
        match tokio::time::timeout_at(deadline, read(tcp, peer)).await {
            Ok(Ok(client)) => return Some(client),
            Ok(Err(Refused::Silent)) => return None,
            Ok(Err(Refused::Invalid(why))) => ("invalid_header", why.to_owned()),
            Ok(Err(Refused::Io(kind))) => ("invalid_header", kind.to_string()),
            Err(_) => (
                "timeout",
                "no complete header within header_read_timeout".to_owned(),
            ),
        }
    };
    let (reason, detail) = refused;
    tracing::debug!(%peer, listener, reason, detail, "PROXY protocol header refused; connection closed");
    metrics
        .proxy_protocol_refused
        .get_or_create(&ListenerReason { listener, reason })
        .inc();
    None
}

/// Why a header was not read.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    /// Closed before sending a byte.
    Silent,
    /// Missing, malformed or cut short.
    Invalid(&'static str),
    /// Transport error while reading.
    Io(std::io::ErrorKind),
}

impl From<std::io::Error> for Refused {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Refused::Invalid("the connection closed inside the header")
        } else {
            Refused::Io(e.kind())
        }
    }
}

/// Reads one header off `tcp` and returns the client address it names: its
/// source, or `peer` for a v2 `LOCAL` command, a v1 `UNKNOWN` line or an
/// address family other than IPv4/IPv6 (the spec's "use the real
/// connection's addresses"). The caller bounds the time it takes.
async fn read(tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, Refused> {
    let mut head = [0u8; V1_MAX];
    let mut filled = 0;
    while filled < SHORTEST {
        let n = tcp.read(&mut head[filled..SHORTEST]).await?;
        if n == 0 {
            return Err(if filled == 0 {
                Refused::Silent
            } else {
                Refused::Invalid("the connection closed inside the header")
            });
        }
        filled += n;
    }
    if head.starts_with(V2_SIGNATURE) {
        tcp.read_exact(&mut head[SHORTEST..16]).await?;
        let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
        let mut bytes = Vec::with_capacity(16 + len);
        bytes.extend_from_slice(&head[..16]);
        bytes.resize(16 + len, 0);
        tcp.read_exact(&mut bytes[16..]).await?;
        return v2_source(&bytes, peer);
    }
    if !head.starts_with(b"PROXY ") {
        return Err(Refused::Invalid("no PROXY protocol header"));
    }
    // Up to the first LF: peek at what has arrived, take the bytes up to and
    // including an LF (or all of them when none is there yet: they all
    // belong to the line), so a read never reaches past the line.
    while !head[..filled].contains(&b'\n') {
        if filled == V1_MAX {
            return Err(Refused::Invalid("a v1 header line longer than 107 bytes"));
        }
        let seen = tcp.peek(&mut head[filled..]).await?;
        if seen == 0 {
            return Err(Refused::Invalid("the connection closed inside the header"));
        }
        let take = head[filled..filled + seen]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(seen, |i| i + 1);
        tcp.read_exact(&mut head[filled..filled + take]).await?;
        filled += take;
    }
    v1_source(&head[..filled], peer)
}

/// The client of a complete v1 line (CRLF-terminated, nothing after it).
fn v1_source(line: &[u8], peer: SocketAddr) -> Result<SocketAddr, Refused> {
    use ppp::v1::{Addresses, Header};
    if !line.ends_with(b"\r\n") || line[..line.len() - 2].contains(&b'\n') {
        return Err(Refused::Invalid("a v1 header line must end with CRLF"));
    }
    let header = Header::try_from(line).map_err(|_| Refused::Invalid("a malformed v1 header"))?;
    Ok(match header.addresses {
        Addresses::Tcp4(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::Tcp6(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::Unknown => peer,
    })
}

/// The client of a complete v2 header (exactly its announced length).
fn v2_source(bytes: &[u8], peer: SocketAddr) -> Result<SocketAddr, Refused> {
    use ppp::v2::{Addresses, Command, Header, Protocol};
    let header = Header::try_from(bytes).map_err(|_| Refused::Invalid("a malformed v2 header"))?;
    if header.command == Command::Local {
        // Health checks and the proxy's own connections.
        return Ok(peer);
    }
    if header.protocol == Protocol::Datagram {
        return Err(Refused::Invalid(
            "a v2 header announcing a datagram (UDP) source",
        ));
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::IPv6(a) => SocketAddr::from((a.source_address, a.source_port)),
        Addresses::Unspecified | Addresses::Unix(_) => peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "10.0.0.1:40000".parse().unwrap()
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(command);
        b.push(family);
        b.extend((addresses.len() as u16).to_be_bytes());
        b.extend_from_slice(addresses);
        b
    }

    #[test]
    fn v1_lines() {
        let ok = |l: &str| v1_source(l.as_bytes(), peer());
        assert_eq!(
            ok("PROXY TCP4 203.0.113.9 10.0.0.5 51234 443\r\n"),
            Ok("203.0.113.9:51234".parse().unwrap())
        );
        assert_eq!(
            ok("PROXY TCP6 2001:db8::9 2001:db8::1 51234 443\r\n"),
            Ok("[2001:db8::9]:51234".parse().unwrap())
        );
        assert_eq!(ok("PROXY UNKNOWN\r\n"), Ok(peer()));
        for bad in [
            "PROXY TCP4 203.0.113.9 10.0.0.5 51234 443\n",
            "PROXY TCP4 203.0.113.9 10.0.0.5 51234\r\n",
            "PROXY TCP4 2001:db8::9 10.0.0.5 51234 443\r\n",
            "PROXY TCP4 203.0.113.900 10.0.0.5 51234 443\r\n",
            "PROXY TCP4 203.0.113.9 10.0.0.5 512345 443\r\n",
            "PROXY UDP4 203.0.113.9 10.0.0.5 51234 443\r\n",
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v2_headers() {
        let mut v4 = vec![203, 0, 113, 9, 10, 0, 0, 5];
        v4.extend(51234u16.to_be_bytes());
        v4.extend(443u16.to_be_bytes());
        assert_eq!(
            v2_source(&v2(0x21, 0x11, &v4), peer()),
            Ok("203.0.113.9:51234".parse().unwrap())
        );
        // TLVs after the addresses are allowed (and ignored).
        let mut with_tlv = v4.clone();
        with_tlv.extend([0x04, 0x00, 0x01, 0x2a]);
        assert_eq!(
            v2_source(&v2(0x21, 0x11, &with_tlv), peer()),
            Ok("203.0.113.9:51234".parse().unwrap())
        );
        let mut v6 = Vec::new();
        v6.extend(
            "2001:db8::9"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend(
            "2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        v6.extend(51234u16.to_be_bytes());
        v6.extend(443u16.to_be_bytes());
        assert_eq!(
            v2_source(&v2(0x21, 0x21, &v6), peer()),
            Ok("[2001:db8::9]:51234".parse().unwrap())
        );
        // LOCAL: the peer, whatever the addresses say.
        assert_eq!(v2_source(&v2(0x20, 0x11, &v4), peer()), Ok(peer()));
        assert_eq!(v2_source(&v2(0x20, 0x00, &[]), peer()), Ok(peer()));
        // PROXY with AF_UNSPEC: the peer.
        assert_eq!(v2_source(&v2(0x21, 0x00, &[]), peer()), Ok(peer()));
        // UDP, a bad version or command, addresses cut short: refused.
        assert!(v2_source(&v2(0x21, 0x12, &v4), peer()).is_err());
        assert!(v2_source(&v2(0x11, 0x11, &v4), peer()).is_err());
        assert!(v2_source(&v2(0x2f, 0x11, &v4), peer()).is_err());
        assert!(v2_source(&v2(0x21, 0x11, &v4[..8]), peer()).is_err());
    }
}
