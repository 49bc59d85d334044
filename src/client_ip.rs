//! The client's address behind load balancers: `[server] trusted_proxies`
//! (CIDRs) and the `X-Forwarded-For` walk (docs/BEHAVIOUR.md item 36).
//!
//! A connection's address is its TCP peer, or the source a PROXY protocol
//! header named (src/server/proxy_header.rs). When that address is a trusted
//! proxy, `X-Forwarded-For` is walked right to left: every trusted hop is
//! skipped and the first untrusted address is the client. Each entry was
//! written by the hop to its right, so only entries vouched for by trusted
//! hops are read; whatever the client wrote further left is never believed.
//!
//! Pure data and functions: the configuration builds [`TrustedProxies`], the
//! pipeline calls [`resolve`] once per request.

use std::fmt;
use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};

/// One `trusted_proxies` entry: an address block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x:y::z/n` or a bare address (a block of one).
    /// Bits set beyond the prefix, and IPv4-mapped IPv6 blocks, are refused
    /// as ambiguous: the message says what to write instead.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not an address or a CIDR block (like 10.0.0.0/8 or fd00::/8)")
        })?;
        if let IpAddr::V6(v6) = addr {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return Err(format!(
                    "`{s}` is an IPv4-mapped IPv6 block; write it as IPv4 ({v4}): peers are matched as IPv4"
                ));
            }
        }
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => {
                    return Err(format!(
                        "`{s}`: the prefix length must be a number from 0 to {max}"
                    ))
                }
            },
        };
        let cidr = Cidr { addr, prefix };
        let network = cidr.network();
        if network != addr {
            return Err(format!(
                "`{s}` has bits set beyond the /{prefix} prefix: write {network}/{prefix} for the block, or {addr} alone for the one address"
            ));
        }
        Ok(cidr)
    }

    /// How many leading bits are fixed.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The block's first address.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// Whether `ip` lies in the block (IPv4 and IPv6 never match each other;
    /// callers pass canonical addresses).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let same_family = ip.is_ipv4() == self.addr.is_ipv4();
        same_family && Cidr { addr: ip, ..*self }.network() == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `[server] trusted_proxies`: the peers whose `X-Forwarded-For` entries
/// and PROXY protocol headers are believed. Empty by default: no peer is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    pub fn new(blocks: Vec<Cidr>) -> Self {
        TrustedProxies(blocks)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 matched as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|c| c.contains(ip))
    }
}

/// Who made a request, as the gateway decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address: what the audit line, logs and rules see.
    pub ip: IpAddr,
    /// The trusted hops after the client, nearest to it first, ending with
    /// the connection's own address. Empty when the connection's address is
    /// the client.
    hops: Vec<IpAddr>,
}

impl ClientAddr {
    /// A client seen directly (no proxy believed).
    pub fn direct(ip: IpAddr) -> Self {
        ClientAddr {
            ip: ip.to_canonical(),
            hops: Vec::new(),
        }
    }

    /// The `X-Forwarded-For` the upstream receives: the client, then each
    /// trusted hop up to the gateway's own peer. Entries left of the client
    /// (which nobody trusted vouched for) are not passed on, so an upstream
    /// that reads the leftmost entry and one that walks from the right both
    /// find the same client.
    pub fn x_forwarded_for(&self) -> HeaderValue {
        let mut v = self.ip.to_string();
        for hop in &self.hops {
            v.push_str(", ");
            v.push_str(&hop.to_string());
        }
        // Addresses only: always a valid header value.
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    }
}

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The client of a request that arrived on a connection from `conn` (the
/// TCP peer or the PROXY protocol source).
///
/// From an untrusted `conn` the headers are not read. From a trusted one,
/// `X-Forwarded-For` (every line, in order) is walked right to left: trusted
/// entries are skipped, the first untrusted one is the client, and when
/// every entry is trusted the leftmost is. An entry that is not an address
/// (an optional port is allowed: `192.0.2.1:4711`, `[2001:db8::1]:443`)
/// stops the walk at the hop that passed it on: that trusted hop is the
/// client, since nothing it reported can be read.
pub fn resolve(trusted: &TrustedProxies, conn: IpAddr, headers: &HeaderMap) -> ClientAddr {
    let mut current = conn.to_canonical();
    if trusted.is_empty() || !trusted.trusts(current) {
        return ClientAddr::direct(current);
    }
    let mut lines = Vec::new();
    for v in headers.get_all(&X_FORWARDED_FOR) {
        match v.to_str() {
            Ok(s) => lines.push(s),
            // Bytes that are not text: nothing in the header can be read.
            Err(_) => return ClientAddr::direct(current),
        }
    }
    let mut hops = Vec::new();
    let entries = lines.iter().rev().flat_map(|l| l.rsplit(','));
    for entry in entries {
        if !trusted.trusts(current) {
            break;
        }
        let Some(next) = parse_entry(entry) else {
            break;
        };
        hops.push(current);
        current = next;
    }
    hops.reverse();
    ClientAddr { ip: current, hops }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`a.b.c.d:p`, `[v6]`, `[v6]:p`). `None` for anything else.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim_matches(|c| c == ' ' || c == '\t');
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = e.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(is_port);
        return port_ok
            .then(|| v6.parse::<std::net::Ipv6Addr>().ok())
            .flatten()
            .map(|a| IpAddr::V6(a).to_canonical());
    }
    let (v4, port) = e.split_once(':')?;
    if !is_port(port) {
        return None;
    }
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(p: &str) -> bool {
    p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(blocks: &[&str]) -> TrustedProxies {
        TrustedProxies::new(blocks.iter().map(|b| Cidr::parse(b).unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_match() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.1.2")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(!c.contains(ip("::ffff:10.0.0.1")), "callers canonicalize");
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert_eq!(one.prefix(), 32);
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert!(!Cidr::parse("::/0").unwrap().contains(ip("127.0.0.1")));
    }

    #[test]
    fn bad_blocks_say_what_to_write() {
        for (bad, says) in [
            ("10.0.0.0/33", "0 to 32"),
            ("fd00::/129", "0 to 128"),
            ("10.0.0.0/", "0 to 32"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/x", "0 to 32"),
            ("10.0.0/8", "not an address"),
            ("example.com", "not an address"),
            ("", "not an address"),
            ("10.1.2.3/8", "10.0.0.0/8"),
            ("fd00::1/8", "fd00::/8"),
            ("::ffff:10.0.0.0/104", "write it as IPv4"),
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let t = trusted(&["10.0.0.0/8"]);
        let c = resolve(&t, ip("127.0.0.1"), &xff(&["203.0.113.9, 10.0.0.1"]));
        assert_eq!(c, ClientAddr::direct(ip("127.0.0.1")));
        assert_eq!(c.x_forwarded_for(), "127.0.0.1");
        let none = resolve(
            &TrustedProxies::default(),
            ip("10.0.0.1"),
            &xff(&["1.2.3.4"]),
        );
        assert_eq!(none.ip, ip("10.0.0.1"));
    }

    #[test]
    fn the_walk_skips_trusted_hops_from_the_right() {
        let t = trusted(&["10.0.0.0/8", "fd00::/8"]);
        let c = resolve(
            &t,
            ip("10.0.0.1"),
            &xff(&["6.6.6.6, 198.51.100.7", "10.0.0.3,10.0.0.2"]),
        );
        assert_eq!(c.ip, ip("198.51.100.7"));
        assert_eq!(
            c.x_forwarded_for(),
            "198.51.100.7, 10.0.0.3, 10.0.0.2, 10.0.0.1",
            "the spoofed entry left of the client is not passed on"
        );
        // Every entry trusted: the leftmost.
        let all = resolve(&t, ip("10.0.0.1"), &xff(&["10.9.9.9, fd00::2"]));
        assert_eq!(all.ip, ip("10.9.9.9"));
        // No header: the peer.
        assert_eq!(
            resolve(&t, ip("10.0.0.1"), &HeaderMap::new()).ip,
            ip("10.0.0.1")
        );
        // IPv6, ports and IPv4-mapped forms.
        let v6 = resolve(
            &t,
            ip("fd00::1"),
            &xff(&["[2001:db8::5]:443, 10.0.0.2:8080"]),
        );
        assert_eq!(v6.ip, ip("2001:db8::5"));
        let mapped = resolve(&t, ip("::ffff:10.0.0.1"), &xff(&["::ffff:192.0.2.1"]));
        assert_eq!(mapped.ip, ip("192.0.2.1"));
        assert_eq!(mapped.x_forwarded_for(), "192.0.2.1, 10.0.0.1");
    }

    #[test]
    fn a_malformed_entry_stops_at_the_hop_that_passed_it_on() {
        let t = trusted(&["10.0.0.0/8"]);
        for (chain, client) in [
            ("1.2.3.4, garbage, 10.0.0.2", "10.0.0.2"),
            ("1.2.3.4, unknown", "10.0.0.1"),
            ("1.2.3.4,,10.0.0.2", "10.0.0.2"),
            ("1.2.3.4, 10.0.0.2,", "10.0.0.1"),
            ("1.2.3.4, 300.1.1.1", "10.0.0.1"),
            ("1.2.3.4, [2001:db8::1", "10.0.0.1"),
            ("1.2.3.4, 192.0.2.1:99999", "10.0.0.1"),
            ("1.2.3.4, 192.0.2.1:", "10.0.0.1"),
            // Malformed entries left of the client are never looked at.
            ("garbage, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        ] {
            let c = resolve(&t, ip("10.0.0.1"), &xff(&[chain]));
            assert_eq!(c.ip, ip(client), "{chain}");
        }
        let mut bad = HeaderMap::new();
        bad.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"1.2.3.4, \xff").unwrap(),
        );
        assert_eq!(resolve(&t, ip("10.0.0.1"), &bad).ip, ip("10.0.0.1"));
    }
}
