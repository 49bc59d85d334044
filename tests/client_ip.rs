//! The real client address behind load balancers (docs/BEHAVIOUR.md items
//! 10, 36, 37): `trusted_proxies` and the `X-Forwarded-For` walk, PROXY
//! protocol v1 and v2 on the TLS and plaintext listeners, and what the audit
//! line and the upstream see. The test client is always 127.0.0.1: a
//! configuration trusting 10.0.0.0/8 makes it an untrusted peer, one
//! trusting 127.0.0.1/32 a trusted proxy.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use http::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

type Seen = Arc<Mutex<Vec<(String, HeaderMap)>>>;

/// A gateway whose every path forwards to a header recorder, with the audit
/// trail in `audit.log` beside its configuration.
async fn gateway(server_extra: &str, limits: &str) -> (TestGateway, Seen) {
    let (up, seen) = header_recorder().await;
    let rest = format!(
        "{limits}\n[audit]\npath = \"audit.log\"\n\n[[route]]\nname = \"app\"\npath = \"/*\"\nupstream = \"http://{up}\"\nauthenticate = \"none\"\n"
    );
    let gw = TestGateway::start_with(&rest, server_extra, Default::default()).await;
    (gw, seen)
}

/// The audit line of request `id` (waits for the writer).
async fn audit(gw: &TestGateway, id: &str) -> serde_json::Value {
    let path = gw.dir.path().join("audit.log");
    for _ in 0..250 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Some(v) = text.lines().map(json_line).find(|v| v["request_id"] == id) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no audit line for {id}");
}

fn json_line(l: &str) -> serde_json::Value {
    serde_json::from_str(l).unwrap()
}

/// Whether any audit line was written for request `id` within a short wait.
async fn audited(gw: &TestGateway, id: &str) -> bool {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = std::fs::read_to_string(gw.dir.path().join("audit.log")).unwrap_or_default();
    text.contains(id)
}

/// The `X-Forwarded-For` the upstream got with request `id`, and whether
/// any client-sent forwarding header reached it.
fn upstream_xff(seen: &Seen, id: &str) -> String {
    let seen = seen.lock().unwrap();
    let (_, h) = seen
        .iter()
        .find(|(_, h)| h["x-request-id"] == id)
        .unwrap_or_else(|| panic!("{id} was not forwarded"));
    for gone in ["forwarded", "x-real-ip"] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream");
    }
    let all: Vec<_> = h.get_all("x-forwarded-for").iter().collect();
    assert_eq!(all.len(), 1, "one X-Forwarded-For line");
    all[0].to_str().unwrap().to_owned()
}

/// GET /x through the gateway's client with extra headers; returns the id.
async fn request(gw: &TestGateway, h2: bool, id: &str, headers: &[(&str, &str)]) {
    let c = if h2 { gw.h2() } else { gw.h1() };
    let mut all = vec![("x-request-id", id)];
    all.extend_from_slice(headers);
    let (s, _, _) = get(&c, &gw.url("/x"), &all).await;
    assert_eq!(s, StatusCode::OK, "{id}");
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_change_nothing() {
    for extra in ["", "trusted_proxies = [\"10.0.0.0/8\", \"fd00::/8\"]"] {
        let (gw, seen) = gateway(extra, "").await;
        for h2 in [false, true] {
            let id = format!("untrusted-{}-{h2}", extra.len());
            request(
                &gw,
                h2,
                &id,
                &[
                    ("x-forwarded-for", "203.0.113.9, 10.0.0.2"),
                    ("x-real-ip", "203.0.113.9"),
                    ("forwarded", "for=203.0.113.9"),
                ],
            )
            .await;
            assert_eq!(audit(&gw, &id).await["client_ip"], "127.0.0.1", "{id}");
            assert_eq!(upstream_xff(&seen, &id), "127.0.0.1", "{id}");
        }
    }
}

#[tokio::test]
async fn a_trusted_peer_s_chain_is_walked_right_to_left() {
    let trusted = "trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\", \"fd00::/8\"]";
    let (gw, seen) = gateway(trusted, "").await;
    // (X-Forwarded-For lines, client, what the upstream is told)
    let cases: &[(&[&str], &str, &str)] = &[
        // Several trusted hops; the spoofed entry left of the client dropped.
        (
            &["6.6.6.6, 198.51.100.7, 10.1.1.1", "10.2.2.2"],
            "198.51.100.7",
            "198.51.100.7, 10.1.1.1, 10.2.2.2, 127.0.0.1",
        ),
        // Every entry trusted: the leftmost.
        (
            &["10.3.3.3, 10.4.4.4"],
            "10.3.3.3",
            "10.3.3.3, 10.4.4.4, 127.0.0.1",
        ),
        // No header from a trusted peer: the peer.
        (&[], "127.0.0.1", "127.0.0.1"),
        // IPv6, with and without a port, and an IPv4-mapped entry.
        (
            &["2001:db8::7, fd00::1"],
            "2001:db8::7",
            "2001:db8::7, fd00::1, 127.0.0.1",
        ),
        (
            &["[2001:db8::8]:5555"],
            "2001:db8::8",
            "2001:db8::8, 127.0.0.1",
        ),
        (&["::ffff:192.0.2.1"], "192.0.2.1", "192.0.2.1, 127.0.0.1"),
        (&["192.0.2.2:4711"], "192.0.2.2", "192.0.2.2, 127.0.0.1"),
    ];
    for (i, (lines, client, told)) in cases.iter().enumerate() {
        for h2 in [false, true] {
            let id = format!("walk-{i}-{h2}");
            let headers: Vec<_> = lines.iter().map(|l| ("x-forwarded-for", *l)).collect();
            request(&gw, h2, &id, &headers).await;
            assert_eq!(audit(&gw, &id).await["client_ip"], *client, "{lines:?}");
            assert_eq!(upstream_xff(&seen, &id), *told, "{lines:?}");
        }
    }
}

#[tokio::test]
async fn a_malformed_entry_stops_the_walk_at_the_hop_that_passed_it_on() {
    let (gw, seen) = gateway("trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]", "").await;
    let cases = [
        // The trusted hop right of the garbage is as far as can be believed.
        (
            "198.51.100.7, not-an-address, 10.1.1.1",
            "10.1.1.1",
            "10.1.1.1, 127.0.0.1",
        ),
        // The rightmost entry malformed: the peer.
        ("198.51.100.7, unknown", "127.0.0.1", "127.0.0.1"),
        ("198.51.100.7,,", "127.0.0.1", "127.0.0.1"),
        ("198.51.100.7, 300.1.1.1", "127.0.0.1", "127.0.0.1"),
        ("198.51.100.7, 192.0.2.1:99999", "127.0.0.1", "127.0.0.1"),
        // Garbage left of the client is never read.
        (
            "garbage, 198.51.100.7",
            "198.51.100.7",
            "198.51.100.7, 127.0.0.1",
        ),
    ];
    for (i, (chain, client, told)) in cases.iter().enumerate() {
        let id = format!("malformed-{i}");
        request(&gw, false, &id, &[("x-forwarded-for", chain)]).await;
        assert_eq!(audit(&gw, &id).await["client_ip"], *client, "{chain}");
        assert_eq!(upstream_xff(&seen, &id), *told, "{chain}");
    }
}

// ---- PROXY protocol, headers written by hand from the spec
// (haproxy.org/download/3.0/doc/proxy-protocol.txt) ----

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: version/command byte, family/protocol byte, address block
/// and TLVs.
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut b = SIG.to_vec();
    b.extend([ver_cmd, fam]);
    b.extend((block.len() as u16).to_be_bytes());
    b.extend_from_slice(block);
    b
}

/// A v2 PROXY TCP header from `src:sport` to `dst:443`, with one NOOP TLV.
fn v2_tcp(src: std::net::IpAddr, sport: u16, dst: std::net::IpAddr) -> Vec<u8> {
    let (fam, mut block) = match (src, dst) {
        (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) => {
            (0x11, [s.octets(), d.octets()].concat())
        }
        (std::net::IpAddr::V6(s), std::net::IpAddr::V6(d)) => {
            (0x21, [s.octets(), d.octets()].concat())
        }
        _ => unreachable!("one family"),
    };
    block.extend(sport.to_be_bytes());
    block.extend(443u16.to_be_bytes());
    block.extend([0x04, 0x00, 0x02, 0xab, 0xcd]); // PP2_TYPE_NOOP
    v2(0x21, fam, &block)
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

/// Sends one HTTP/1.1 (or HTTP/2) GET over `io`; returns the status.
async fn get_over<S>(io: S, h2: bool, id: &str, xff: Option<&str>) -> StatusCode
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/2 names the authority in the target, HTTP/1.1 in Host.
    let mut req = if h2 {
        Request::get("https://localhost/x")
    } else {
        Request::get("/x").header("host", "localhost")
    }
    .header("x-request-id", id);
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let req = req.body(empty()).unwrap();
    if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, TestBody>(
            TokioExecutor::new(),
            TokioIo::new(io),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap().status()
    } else {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake::<_, TestBody>(TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap().status()
    }
}

/// Connects to the TLS (`tls`) or plaintext listener and writes `header`
/// first (possibly in two pieces, `split` bytes apart, to show the gateway
/// waits for the rest).
async fn connect(gw: &TestGateway, tls: bool, header: &[u8], split: usize) -> TcpStream {
    let addr = if tls {
        gw.gw.tls_addr
    } else {
        gw.gw.plain_addr.unwrap()
    };
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (a, b) = header.split_at(split.min(header.len()));
    tcp.write_all(a).await.unwrap();
    if !b.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        tcp.write_all(b).await.unwrap();
    }
    tcp
}

/// One request through a PROXY protocol connection; returns the status.
async fn via_proxy(
    gw: &TestGateway,
    tls: bool,
    h2: bool,
    header: &[u8],
    id: &str,
    xff: Option<&str>,
) -> StatusCode {
    let tcp = connect(gw, tls, header, header.len() / 2).await;
    if !tls {
        return get_over(tcp, false, id, xff).await;
    }
    let alpn: &[&[u8]] = if h2 { &[b"h2"] } else { &[b"http/1.1"] };
    let cfg = gw.certs.client_tls(alpn);
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS after the PROXY header");
    get_over(stream, h2, id, xff).await
}

/// (name, header, client's X-Forwarded-For, client, upstream XFF)
type ProxyCase = (
    &'static str,
    Vec<u8>,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const PROXY_BOTH: &str =
    "plain_listen = \"127.0.0.1:0\"\nproxy_protocol = [\"listen\", \"plain_listen\"]\n";

#[tokio::test]
async fn proxy_protocol_v1_and_v2_name_the_client_over_tls_and_plain() {
    let server = format!("{PROXY_BOTH}trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]");
    let (gw, seen) = gateway(&server, "").await;
    let cases: Vec<ProxyCase> = vec![
        // (name, header, client's X-Forwarded-For, client, upstream XFF)
        (
            "v1-tcp4",
            b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 443\r\n".to_vec(),
            None,
            "203.0.113.9",
            "203.0.113.9",
        ),
        (
            "v1-tcp6",
            b"PROXY TCP6 2001:db8::9 2001:db8::1 51234 443\r\n".to_vec(),
            None,
            "2001:db8::9",
            "2001:db8::9",
        ),
        (
            "v1-unknown",
            b"PROXY UNKNOWN\r\n".to_vec(),
            None,
            "127.0.0.1",
            "127.0.0.1",
        ),
        (
            "v2-tcp4",
            v2_tcp(ip("203.0.113.10"), 40000, ip("127.0.0.1")),
            None,
            "203.0.113.10",
            "203.0.113.10",
        ),
        (
            "v2-tcp6",
            v2_tcp(ip("2001:db8::10"), 40000, ip("2001:db8::1")),
            None,
            "2001:db8::10",
            "2001:db8::10",
        ),
        // LOCAL (health checks): the peer, whatever the block says.
        (
            "v2-local",
            v2(0x20, 0x11, &[203, 0, 113, 11, 127, 0, 0, 1, 0, 1, 1, 187]),
            None,
            "127.0.0.1",
            "127.0.0.1",
        ),
        // The header's source is an untrusted client: its XFF is ignored.
        (
            "v1-spoof",
            b"PROXY TCP4 203.0.113.12 127.0.0.1 5 443\r\n".to_vec(),
            Some("1.1.1.1"),
            "203.0.113.12",
            "203.0.113.12",
        ),
        // The header's source is a trusted L7 proxy: its XFF is walked.
        (
            "v2-chain",
            v2_tcp(ip("10.9.9.9"), 40000, ip("127.0.0.1")),
            Some("6.6.6.6, 198.51.100.7"),
            "198.51.100.7",
            "198.51.100.7, 10.9.9.9",
        ),
    ];
    for (name, header, xff, client, told) in &cases {
        for (tls, h2) in [(true, false), (true, true), (false, false)] {
            let id = format!("{name}-{tls}-{h2}");
            let s = via_proxy(&gw, tls, h2, header, &id, *xff).await;
            assert_eq!(s, StatusCode::OK, "{id}");
            assert_eq!(audit(&gw, &id).await["client_ip"], *client, "{id}");
            assert_eq!(upstream_xff(&seen, &id), *told, "{id}");
        }
    }
    // The header and the request in one write: nothing past the header is
    // taken from the request.
    let mut tcp = connect(&gw, false, b"", 0).await;
    tcp.write_all(b"PROXY TCP4 203.0.113.13 127.0.0.1 1 80\r\nGET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: one-write\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_response(&mut tcp).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(audit(&gw, "one-write").await["client_ip"], "203.0.113.13");
}

/// Writes `bytes` to a fresh connection and reports whether the gateway
/// closed it without answering.
async fn closed_without_answer(gw: &TestGateway, tls: bool, bytes: &[u8]) -> bool {
    let mut tcp = connect(gw, tls, bytes, bytes.len()).await;
    let (got, closed) = read_until_closed(&mut tcp, Duration::from_secs(3)).await;
    closed && got.is_empty()
}

fn refused(text: &str, listener: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!(
            "meetgate_proxy_protocol_refused_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        ),
    )
}

#[tokio::test]
async fn a_connection_without_a_valid_header_is_closed() {
    let server = format!("{PROXY_BOTH}trusted_proxies = [\"127.0.0.1/32\"]");
    let (gw, _) = gateway(&server, "[limits]\nheader_read_timeout_ms = 400\n").await;
    let bad: &[&[u8]] = &[
        // No header: a request, or (over TLS) a ClientHello.
        b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: no-header\r\n\r\n",
        b"PROXY TCP4 garbage 127.0.0.1 1 443\r\nGET /x HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 203.0.113.9 127.0.0.1 1 443\nGET /x HTTP/1.1\r\n\r\n",
        b"PROXY TCP4 203.0.113.9 127.0.0.1 1 443 and on and on and on and on and on and on and on and on and on and on and on and on",
        &v2(0x11, 0x11, &[0; 12]), // version 1 in the binary form
        &v2(0x21, 0x12, &[203, 0, 113, 9, 127, 0, 0, 1, 0, 1, 1, 187]), // UDP
        &v2(0x21, 0x11, &[203, 0, 113, 9]),                            // block cut short
    ];
    for (i, b) in bad.iter().enumerate() {
        assert!(closed_without_answer(&gw, false, b).await, "plain case {i}");
        assert!(closed_without_answer(&gw, true, b).await, "TLS case {i}");
    }
    // A TLS client that does not send the header cannot even handshake.
    let tcp = TcpStream::connect(gw.gw.tls_addr).await.unwrap();
    let cfg = gw.certs.client_tls(&[b"http/1.1"]);
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await;
    assert!(tls.is_err(), "handshake without a PROXY header");
    // Silence, or a header that never ends: closed at header_read_timeout.
    for tls in [false, true] {
        assert!(closed_without_answer(&gw, tls, b"").await);
        assert!(closed_without_answer(&gw, tls, b"PROXY TCP4 203.0.113.9").await);
        assert!(closed_without_answer(&gw, tls, &SIG[..10]).await);
    }
    assert!(!audited(&gw, "no-header").await, "nothing was served");
    let text = scrape(gw.gw.admin_addr.unwrap()).await;
    assert_eq!(
        refused(&text, "http", "invalid_header"),
        bad.len() as f64,
        "{text}"
    );
    assert_eq!(
        refused(&text, "https", "invalid_header"),
        bad.len() as f64 + 1.0,
        "{text}"
    );
    for l in ["http", "https"] {
        assert_eq!(refused(&text, l, "timeout"), 3.0, "{text}");
    }
}

#[tokio::test]
async fn a_proxy_header_from_an_untrusted_peer_is_refused() {
    let server = format!("{PROXY_BOTH}trusted_proxies = [\"10.0.0.0/8\"]");
    let (gw, _) = gateway(&server, "").await;
    for tls in [false, true] {
        // A client naming itself someone else, header perfectly valid.
        let mut spoof = b"PROXY TCP4 203.0.113.9 127.0.0.1 51234 443\r\n".to_vec();
        spoof.extend_from_slice(b"GET /x HTTP/1.1\r\nHost: a\r\nX-Request-Id: spoofed\r\n\r\n");
        assert!(closed_without_answer(&gw, tls, &spoof).await, "tls {tls}");
        let v2 = v2_tcp(ip("10.1.1.1"), 1, ip("127.0.0.1"));
        assert!(closed_without_answer(&gw, tls, &v2).await, "tls {tls}");
    }
    assert!(!audited(&gw, "spoofed").await);
    let text = scrape(gw.gw.admin_addr.unwrap()).await;
    for l in ["http", "https"] {
        assert_eq!(refused(&text, l, "untrusted_peer"), 2.0, "{text}");
    }
}

#[tokio::test]
async fn the_client_address_is_in_the_request_logs() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &certs,
        dir.path(),
        "trusted_proxies = [\"127.0.0.1/32\"]\nproxy_protocol = [\"listen\"]",
        "[audit]\npath = \"-\"\n",
    );
    let gw = BinaryGateway::spawn_with(&config, "meetgate=debug", &[]);
    let mut tcp = TcpStream::connect(gw.tls_addr).await.unwrap();
    tcp.write_all(b"PROXY TCP4 203.0.113.77 127.0.0.1 51234 443\r\n")
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(certs.client_tls(&[b"http/1.1"])))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    // No route: refused (404), logged at debug inside the request's span.
    assert_eq!(
        get_over(tls, false, "logged", None).await,
        StatusCode::NOT_FOUND
    );
    wait_until("the audit line", Duration::from_secs(5), || {
        gw.stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("logged"))
    })
    .await;
    let audit = gw
        .stdout
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("logged"))
        .map(|l| json_line(l))
        .unwrap();
    assert_eq!(audit["client_ip"], "203.0.113.77");
    let log = gw.log.lock().unwrap().clone();
    let refused = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "request refused")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert_eq!(refused["span"]["client"], "203.0.113.77", "{refused}");
}

#[test]
fn check_reports_bad_proxy_settings_with_file_and_line() {
    let certs = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let server = "trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n  \"10.1.2.3/8\",\n  \"not-an-address\",\n  \"::ffff:10.0.0.0/104\",\n]\nproxy_protocol = [\"listen\", \"plain_listen\", \"admin\"]";
    let config = write_config(&certs, dir.path(), server, "");
    let text = std::fs::read_to_string(&config).unwrap();
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(["check", "--config"])
        .arg(&config)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = config.display().to_string();
    for (needle, says) in [
        ("\"10.0.0.0/33\"", "0 to 32"),
        ("\"10.1.2.3/8\"", "write 10.0.0.0/8"),
        ("\"not-an-address\"", "not an address"),
        ("\"::ffff:10.0.0.0/104\"", "write it as IPv4"),
        ("proxy_protocol", "`plain_listen` is not set"),
        ("proxy_protocol", "`admin` is not a listener key"),
    ] {
        let l = line(needle);
        let found = err
            .lines()
            .any(|e| e.starts_with(&format!("{file}:{l}: error")) && e.contains(says));
        assert!(found, "{says} at line {l}:\n{err}");
    }
    let good = format!("{file}:{}:", line("\"10.0.0.0/8\","));
    assert!(!err.contains(&good), "the good entry is fine: {err}");

    // PROXY protocol without trusted proxies could never accept a
    // connection; trusting everything is allowed with a warning.
    let config = write_config(&certs, dir.path(), "proxy_protocol = [\"listen\"]", "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let l = at_line(&config, "proxy_protocol");
    assert!(
        err.contains(&format!(":{l}: error")) && err.contains("needs `trusted_proxies`"),
        "{err}"
    );
    let config = write_config(&certs, dir.path(), "trusted_proxies = [\"0.0.0.0/0\"]", "");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meetgate"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    let l = at_line(&config, "0.0.0.0/0");
    assert!(
        said.contains(&format!(":{l}: warning")) && said.contains("trusts every address"),
        "{said}"
    );
}

/// The 1-based line of the first line of `config` containing `needle`.
fn at_line(config: &std::path::Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(config).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}
