//! Test harness: a per-run CA, the gateway in-process or as the real binary,
//! HTTP/1.1 and HTTP/2 clients over real TLS, and upstreams on ephemeral
//! loopback ports. Config goes in as a temp file; nothing reads the process
//! environment.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type TestBody = BoxBody<Bytes, BoxError>;
pub type TestClient = Client<HttpsConnector<HttpConnector>, TestBody>;

/// Development certificates for `localhost` and 127.0.0.1 in a temp dir.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = meetgate::tls::generate_dev_certs(&["localhost", "127.0.0.1"]).unwrap();
        let (ca, cert, key) = certs.write_to(dir.path()).unwrap();
        Certs { dir, ca, cert, key }
    }

    /// Like [`Certs::new`], the leaf also valid for `extra` names (e.g. a
    /// public host name a browser is pointed at with a resolver rule).
    pub fn with_names(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut names = vec!["localhost", "127.0.0.1"];
        names.extend_from_slice(extra);
        let certs = meetgate::tls::generate_dev_certs(&names).unwrap();
        let (ca, cert, key) = certs.write_to(dir.path()).unwrap();
        Certs { dir, ca, cert, key }
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        meetgate::tls::add_pem_roots(&mut roots, &self.ca).unwrap();
        roots
    }

    /// A rustls client config trusting the test CA with the given ALPN.
    pub fn client_tls(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut cfg = meetgate::tls::client_config(self.roots());
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        cfg
    }
}

/// A client trusting only the CA in `ca` (HTTP/1.1).
pub fn client_with_ca(ca: &Path) -> TestClient {
    let mut roots = rustls::RootCertStore::empty();
    meetgate::tls::add_pem_roots(&mut roots, ca).unwrap();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(meetgate::tls::client_config(roots))
        .https_only()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// A raw TLS connection (ALPN http/1.1) to write requests byte by byte.
pub async fn raw_tls(
    addr: SocketAddr,
    certs: &Certs,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(certs.client_tls(&[b"http/1.1"])));
    tls.connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// GET on the plaintext admin listener; returns status and JSON body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (http::StatusCode, serde_json::Value) {
    let plain = Client::builder(TokioExecutor::new()).build_http::<TestBody>();
    let resp = plain
        .request(
            Request::get(format!("http://{admin}{path}"))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        json(&resp.into_body().collect().await.unwrap().to_bytes()),
    )
}

/// The admin listener's `/metrics` text (OpenMetrics, 200).
pub async fn scrape(admin: SocketAddr) -> String {
    let plain = Client::builder(TokioExecutor::new()).build_http::<TestBody>();
    let (s, h, b) = get(&plain, &format!("http://{admin}/metrics"), &[]).await;
    assert_eq!(s, http::StatusCode::OK);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .contains("openmetrics-text"));
    String::from_utf8_lossy(&b).into_owned()
}

/// The value of one metric series in a scrape (0 when absent).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Writes `meetgate.toml` in `dir`: the `[server]` section (plus
/// `server_extra`) followed by `rest`.
pub fn write_config(certs: &Certs, dir: &Path, server_extra: &str, rest: &str) -> PathBuf {
    let config = dir.join("meetgate.toml");
    std::fs::write(
        &config,
        format!("{}{rest}", server_section(certs, server_extra)),
    )
    .unwrap();
    config
}

/// The `[server]` section every test config starts with.
pub fn server_section(certs: &Certs, extra: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n{extra}\n",
        certs.cert.display(),
        certs.key.display()
    )
}

/// A gateway running in this process.
pub struct TestGateway {
    pub gw: meetgate::Gateway,
    pub certs: Certs,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    /// Starts the gateway with `[server]` (from [`server_section`]) followed by
    /// `rest`.
    pub async fn start(rest: &str) -> Self {
        Self::start_with(rest, "", HashMap::new()).await
    }

    pub async fn start_with(rest: &str, server_extra: &str, env: HashMap<String, String>) -> Self {
        let certs = Certs::new();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("meetgate.toml");
        std::fs::write(
            &config,
            format!("{}{rest}", server_section(&certs, server_extra)),
        )
        .unwrap();
        let env: meetgate::Env = Arc::new(move |k: &str| env.get(k).cloned());
        let gw = meetgate::start(&config, env)
            .await
            .unwrap_or_else(|e| panic!("start: {}", e.report()));
        TestGateway {
            gw,
            certs,
            config,
            dir,
        }
    }

    /// Starts the gateway with `certs` on a fixed `listen` address (for a
    /// URL that must be known before the start, such as a redirect URI).
    pub async fn start_on(certs: Certs, listen: SocketAddr, rest: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("meetgate.toml");
        let server = server_section(&certs, "").replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{listen}\""),
            1,
        );
        std::fs::write(&config, format!("{server}{rest}")).unwrap();
        let env: meetgate::Env = Arc::new(|_: &str| None);
        let gw = meetgate::start(&config, env)
            .await
            .unwrap_or_else(|e| panic!("start: {}", e.report()));
        TestGateway {
            gw,
            certs,
            config,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.gw.tls_addr.port())
    }

    pub fn h1(&self) -> TestClient {
        client(&self.certs, false)
    }

    pub fn h2(&self) -> TestClient {
        client(&self.certs, true)
    }

    /// Rewrites the config file (the `[server]` section is kept).
    pub fn rewrite(&self, rest: &str, atomic: bool) {
        let text = format!("{}{rest}", server_section(&self.certs, ""));
        if atomic {
            let tmp = self.dir.path().join(".meetgate.toml.tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &self.config).unwrap();
        } else {
            std::fs::write(&self.config, text).unwrap();
        }
    }

    pub fn generation(&self) -> u64 {
        self.gw
            .state
            .generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn reloads_failed(&self) -> u64 {
        self.gw
            .state
            .reloads_failed
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Waits (polling, bounded) until `f` holds.
pub async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client over TLS trusting the test CA: HTTP/1.1 only, or HTTP/2 only.
pub fn client(certs: &Certs, h2: bool) -> TestClient {
    // hyper-rustls sets ALPN itself from the enabled protocols.
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(certs.client_tls(&[]))
        .https_only();
    let https = if h2 {
        b.enable_http2().build()
    } else {
        b.enable_http1().build()
    };
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    builder.build(https)
}

pub fn empty() -> TestBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into())
        .map_err(|e: Infallible| match e {})
        .boxed()
}

/// GET `url` with extra headers; returns status, headers and body.
pub async fn get<C: Connect + Clone + Send + Sync + 'static>(
    c: &Client<C, TestBody>,
    url: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    send(c, "GET", url, headers, empty()).await
}

pub async fn send<C: Connect + Clone + Send + Sync + 'static>(
    c: &Client<C, TestBody>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: TestBody,
) -> (http::StatusCode, http::HeaderMap, Bytes) {
    let mut b = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c.request(b.body(body).unwrap()).await.expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

pub fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(b)))
}

/// The demo's echo upstream: answers JSON describing what it received.
pub async fn echo_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(meetgate::demo::echo_upstream(l));
    addr
}

/// An upstream served by `handler` (HTTP/1.1, with upgrades).
pub async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    serve_each(move |tcp| {
        let h = handler.clone();
        async move {
            let svc = service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, Infallible>(h(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await;
        }
    })
    .await
}

/// Binds an ephemeral loopback port and runs `serve` in its own task for
/// every accepted connection.
async fn serve_each<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(serve(tcp));
            }
        }
    });
    addr
}

/// A TLS front for a plaintext stand-in at `target`: terminates TLS with
/// `certs` (a `localhost` leaf of its own CA) and copies bytes both ways, so
/// the stand-in is reached as `https://localhost:PORT` by clients trusting
/// `certs.ca` only.
pub async fn tls_front(target: SocketAddr, certs: &Certs) -> SocketAddr {
    let (mut cfg, _) = meetgate::tls::server_config(&certs.cert, &certs.key).unwrap();
    // The stand-ins behind speak HTTP/1.1 only.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    serve_each(move |tcp| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        }
    })
    .await
}

/// The byte at offset `i` of the deterministic test stream.
pub fn pattern_byte(i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(i >> 13) % 251) as u8
}

/// A body of `len` pattern bytes generated lazily in 64 KiB chunks.
pub struct PatternBody {
    pub offset: u64,
    pub len: u64,
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.offset >= self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.offset).min(64 * 1024);
        let start = self.offset;
        let chunk: Vec<u8> = (start..start + n).map(pattern_byte).collect();
        self.offset += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// Reads a body to the end, checking every byte against the pattern;
/// returns the number of bytes, or the offset of the first mismatch.
pub async fn check_pattern(
    mut body: impl Body<Data = Bytes, Error: std::fmt::Debug> + Unpin,
) -> Result<u64, u64> {
    let mut off = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.expect("body frame");
        if let Ok(data) = frame.into_data() {
            for b in data.iter() {
                if *b != pattern_byte(off) {
                    return Err(off);
                }
                off += 1;
            }
        }
    }
    Ok(off)
}

/// The real binary, started with a config file; its listening addresses are
/// read from its JSON log.
pub struct BinaryGateway {
    pub child: std::process::Child,
    pub tls_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// stderr lines (logs).
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    /// stdout lines (the audit trail when `path = "-"`).
    pub stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryGateway {
    pub fn spawn(config: &Path) -> Self {
        Self::spawn_with(config, "info", &[])
    }

    /// Spawns with a log filter and extra environment variables.
    pub fn spawn_with(config: &Path, rust_log: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_meetgate"));
        cmd.args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout_lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let out = child.stdout.take().unwrap();
            let lines = stdout_lines.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("meetgate listening") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                log2.lock().unwrap().push(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("gateway did not start: {:?}", log.lock().unwrap()));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let tls_addr = v["https"].as_str().unwrap().parse().unwrap();
        let admin_addr = v["admin"].as_str().and_then(|s| {
            s.trim_start_matches("Some(")
                .trim_end_matches(')')
                .parse()
                .ok()
        });
        BinaryGateway {
            child,
            tls_addr,
            admin_addr,
            log,
            stdout: stdout_lines,
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.tls_addr.port())
    }
}

impl Drop for BinaryGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
/// The platform test vector `name` (`tests/data/vectors.json` or
/// `tests/data/vectors-2026.json`).
pub fn vector(name: &str) -> serde_json::Value {
    for file in ["vectors.json", "vectors-2026.json"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(file);
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if let Some(v) = all["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
        {
            return v.clone();
        }
    }
    panic!("vector {name}")
}

/// The throwaway PKCS#8 RSA key of the Vonage vectors.
pub fn vector_rsa_key() -> String {
    vector("vonage_app_jwt_default")["inputs"]["private_key_pem"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub mod h2;
pub mod issuer;
pub mod leak;
pub mod redis_server;
pub mod token_server;
pub mod zoom_flow;
pub mod zoom_oauth;

/// `tests/interop`: pinned independent implementations (npm).
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Debian's package `chromium` installs it here (.ci/run installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// A loopback port free right now (a server binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the playwright-core `script` (in tests/interop) against Debian's
/// headless Chromium with `cfg` (its `chromium` key is filled in); returns
/// the JSON report the script prints.
pub fn run_browser(script: &str, mut cfg: serde_json::Value) -> serde_json::Value {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's `chromium` package \
         (apt-get install chromium; .ci/run installs it)"
    );
    ensure_node_modules();
    cfg["chromium"] = CHROMIUM.into();
    let out = std::process::Command::new("node")
        .arg(interop_dir().join(script))
        .arg(cfg.to_string())
        .current_dir(interop_dir())
        .output()
        .expect("node (Node.js 20+) runs the browser script");
    assert!(
        out.status.success(),
        "browser script failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("browser report is not JSON ({e}): {line}"))
}

/// Installs the pinned npm packages when any is missing (one test binary at
/// a time runs `npm ci`; the lock file pins versions).
pub fn ensure_node_modules() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = interop_dir();
        let present = [
            "oidc-provider",
            "standardwebhooks",
            "jsrsasign",
            "opentok",
            "jsonwebtoken",
            "playwright-core",
            "@vonage/jwt",
            "@vonage/video",
        ]
        .iter()
        .all(|p| dir.join("node_modules").join(p).exists());
        if present {
            return;
        }
        let ok = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm is needed for the interop tests (Node.js 20+)")
            .success();
        assert!(ok, "npm ci in tests/interop failed");
    });
}

/// Makes sure PyJWT (pinned) is importable by `python3`.
pub fn ensure_pyjwt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let ok = std::process::Command::new("python3")
            .args([
                "-c",
                "import jwt, sys; sys.exit(0 if jwt.__version__ == '2.10.1' else 1)",
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let installed = std::process::Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "pyjwt==2.10.1"])
                .status()
                .expect("python3 with pip is needed for the PyJWT interop test")
                .success();
            assert!(installed, "pip install pyjwt==2.10.1 failed");
        }
    });
}

/// An upstream answering "ok" that records each request's target and headers.
pub async fn header_recorder() -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<(String, http::HeaderMap)>>>,
) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let addr = upstream(move |req: Request<Incoming>| {
        let seen = s2.clone();
        async move {
            seen.lock()
                .unwrap()
                .push((req.uri().to_string(), req.headers().clone()));
            Response::new(full("ok"))
        }
    })
    .await;
    (addr, seen)
}

/// An `x-zoom-app-context` header built exactly as spec section 6 lays it
/// out (12-byte IV, AAD, little-endian lengths, 16-byte tag, base64url),
/// independently of the gateway's parser.
pub fn zoom_context(plain: &serde_json::Value, secret: &str) -> String {
    use aes_gcm::aead::{Aead, Payload};
    use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
    use base64::Engine as _;
    use sha2::Digest;
    let key: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
    let iv = [7u8; 12];
    let aad = b"test-aad";
    let ct = Aes256Gcm::new(&key.into())
        .encrypt(
            &Nonce::try_from(&iv[..]).unwrap(),
            Payload {
                msg: plain.to_string().as_bytes(),
                aad,
            },
        )
        .unwrap();
    let (ct, tag) = ct.split_at(ct.len() - 16);
    let mut blob = vec![12u8];
    blob.extend(iv);
    blob.extend((aad.len() as u16).to_le_bytes());
    blob.extend(aad);
    blob.extend((ct.len() as u32).to_le_bytes());
    blob.extend(ct);
    blob.extend(tag);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(blob)
}

/// `x-zm-signature` for a Zoom webhook: `v0=` + hex HMAC-SHA256 over
/// `v0:{timestamp}:{body}`.
pub fn zoom_webhook_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("v0:{ts}:").as_bytes());
    m.update(body);
    format!("v0={}", hex::encode(m.finalize().into_bytes()))
}

/// `Authorization` of a Vonage signed callback as the Rust tests sign it
/// (docs/platforms/platforms-2026.md section 4): `Bearer` and an HS256 JWT
/// whose claims are `iat`, `jti`, `iss` (`Vonage`), `payload_hash` (lowercase
/// hex SHA-256 of the raw body), `api_key` and `application_id`.
pub fn vonage_callback_authorization(
    secret: &str,
    body: &[u8],
    application_id: &str,
    jti: &str,
    iat: u64,
) -> String {
    use sha2::Digest;
    let claims = serde_json::json!({
        "iat": iat, "jti": jti, "iss": "Vonage",
        "payload_hash": hex::encode(sha2::Sha256::digest(body)),
        "api_key": "a1b2c3d4", "application_id": application_id,
    });
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    format!("Bearer {jwt}")
}

/// The claims of a compact JWT (no verification).
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).expect("a compact JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// Reads one response (head and a `content-length` body) from `s`.
pub async fn read_response(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(s, &mut byte),
        )
        .await
        .expect("response head within 5 s")
        .unwrap();
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    tokio::io::AsyncReadExt::read_exact(s, &mut body)
        .await
        .unwrap();
    (head, body)
}

/// How many idle connections the gateway has parked (src/server/h1.rs).
pub async fn parked(gw: &TestGateway) -> f64 {
    metric(
        &scrape(gw.gw.admin_addr.unwrap()).await,
        "meetgate_connections_parked",
    )
}

/// Waits until exactly `n` connections are parked.
pub async fn wait_parked(gw: &TestGateway, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = parked(gw).await;
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} connections parked, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads until the peer closes (EOF or error) or `limit` passes; returns
/// what was read and whether the peer closed.
pub async fn read_until_closed(
    s: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, tokio::io::AsyncReadExt::read(s, &mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}
