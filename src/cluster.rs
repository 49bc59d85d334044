//! `[cluster]`: replicas share delivered-webhook keys and fetched platform
//! tokens through Redis (docs/BEHAVIOUR.md item 34).
//!
//! One [`Cluster`] per process holds the live [`Link`] (none without
//! `[cluster]`). A link keeps one multiplexed Redis connection over our own
//! TCP or rustls stream (so `rediss://` trusts exactly the outbound roots:
//! webpki plus `[outbound] ca_file`). Every operation is bounded by
//! `timeout_ms`; a failed or slow operation counts in
//! `meetgate_cluster_store_errors_total`, drops the connection and tells the
//! caller to use its in-process store. A background task reconnects every
//! second, so sharing resumes within seconds of Redis answering again.
//!
//! What goes to Redis: delivered-webhook keys (no payload) and fetched
//! access tokens with their expiry, under `key_prefix`. Never client
//! secrets: token keys are a SHA-256 fingerprint of the token request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisConnectionInfo};
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;
use tokio::net::TcpStream;

use crate::config::ClusterSettings;
use crate::metrics::Metrics;

/// Pause between reconnection attempts while Redis is unreachable.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);
/// Lower bound for connecting (TCP, TLS, AUTH, SELECT, PING).
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Compare-and-delete: removes `KEYS[1]` only while it holds `ARGV[1]`.
const DELETE_IF_EQUAL: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// Compare-and-delete for a stored token: removes `KEYS[1]` only while its
/// JSON's `access_token` is `ARGV[1]`.
const DELETE_TOKEN_IF: &str = "local v = redis.call('GET', KEYS[1]) \
     if v then local ok, t = pcall(cjson.decode, v) \
     if ok and type(t) == 'table' and t.access_token == ARGV[1] then return redis.call('DEL', KEYS[1]) end end \
     return 0";

/// Where and how to reach Redis, parsed from `redis_url`.
pub struct Endpoint {
    host: String,
    port: u16,
    /// `rediss://`: TLS with the outbound roots.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    info: RedisConnectionInfo,
}

impl std::fmt::Debug for Endpoint {
    // Host and port only: the URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}:{}/{}",
            if self.tls.is_some() {
                "rediss"
            } else {
                "redis"
            },
            self.host,
            self.port,
            self.info.db()
        )
    }
}

/// The endpoint for `settings`: its parsed target, with a TLS connector on
/// the outbound roots for `rediss://`.
pub fn endpoint(settings: &ClusterSettings) -> Result<Endpoint, String> {
    let target = crate::config::redis_target(settings)?;
    let tls = target.tls.map(|name| {
        let mut config = crate::tls::client_config(settings.roots.clone());
        config.alpn_protocols.clear();
        (tokio_rustls::TlsConnector::from(Arc::new(config)), name)
    });
    Ok(Endpoint {
        host: target.host,
        port: target.port,
        tls,
        info: target.login,
    })
}

/// A fingerprint of the settings, to notice a changed `[cluster]` on reload.
/// The trust roots count by content: a changed `[outbound] ca_file`
/// reconnects a `rediss://` link.
fn fingerprint(s: &ClusterSettings) -> String {
    let password = s.redis_password.as_ref().map(|p| p.expose_secret());
    crate::registry::fingerprint(&[
        s.redis_url.expose_secret().as_bytes(),
        password.map_or(&b"\0none"[..], str::as_bytes),
        s.key_prefix.as_bytes(),
        &s.timeout.as_nanos().to_le_bytes(),
        crate::tls::trust_fingerprint(&s.roots).as_bytes(),
    ])
}

/// The byte stream a Redis connection runs over: TCP, or rustls over TCP.
trait RedisStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> RedisStream for T {}

/// Orders `meetgate_cluster_store_up` updates with links stopping.
static GAUGE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The process's view of the shared store.
pub struct Cluster {
    link: ArcSwapOption<Link>,
    metrics: Arc<Metrics>,
    /// Identifies this replica's locks and in-flight marks.
    replica: String,
}

impl Cluster {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Cluster {
            link: ArcSwapOption::empty(),
            metrics,
            replica: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Follows the snapshot's `[cluster]`: starts, replaces or stops the
    /// link. Call from within the runtime.
    pub fn sync(&self, settings: Option<&ClusterSettings>) {
        let wanted = settings.map(|s| (s, fingerprint(s)));
        if self.link.load().as_ref().map(|l| &l.fingerprint) == wanted.as_ref().map(|(_, f)| f) {
            return;
        }
        let new = match wanted {
            None => None,
            Some((s, fingerprint)) => match endpoint(s) {
                Ok(ep) => Some({
                    // Down until the new link connects.
                    self.metrics.set_cluster_store_up(Some(false));
                    Link::start(
                        ep,
                        s,
                        fingerprint,
                        self.metrics.clone(),
                        self.replica.clone(),
                    )
                }),
                Err(e) => {
                    // Validation catches this first; keep serving locally.
                    tracing::error!(error = %e, "cluster.redis_url unusable; stores stay in-process");
                    None
                }
            },
        };
        let configured = new.is_some();
        if let Some(old) = self.link.swap(new) {
            old.stop();
        }
        if !configured {
            // After the old link stopped: it cannot set the gauge again.
            let _gauge = GAUGE.lock().unwrap_or_else(|e| e.into_inner());
            self.metrics.set_cluster_store_up(None);
        }
    }

    /// The live link, if `[cluster]` is configured.
    pub fn link(&self) -> Option<Arc<Link>> {
        self.link.load_full()
    }

    /// `None` without `[cluster]`; otherwise whether Redis is answering.
    pub fn healthy(&self) -> Option<bool> {
        self.link
            .load()
            .as_ref()
            .map(|l| l.up.load(Ordering::Relaxed))
    }
}

/// One Redis endpoint with its connection and reconnect task.
pub struct Link {
    fingerprint: String,
    endpoint: Endpoint,
    prefix: String,
    timeout: Duration,
    conn: ArcSwapOption<MultiplexedConnection>,
    up: AtomicBool,
    /// Flips once the first connection attempt has ended (either way):
    /// operations issued at start-up wait for it rather than falling back.
    tried: tokio::sync::watch::Sender<bool>,
    wake: tokio::sync::Notify,
    stopped: AtomicBool,
    metrics: Arc<Metrics>,
    replica: String,
}

impl Link {
    fn start(
        endpoint: Endpoint,
        s: &ClusterSettings,
        fingerprint: String,
        metrics: Arc<Metrics>,
        replica: String,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            fingerprint,
            endpoint,
            prefix: s.key_prefix.clone(),
            timeout: s.timeout,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            tried: tokio::sync::watch::channel(false).0,
            wake: tokio::sync::Notify::new(),
            stopped: AtomicBool::new(false),
            metrics,
            replica,
        });
        tokio::spawn(link.clone().maintain());
        link
    }

    fn stop(&self) {
        {
            let _gauge = GAUGE.lock().unwrap_or_else(|e| e.into_inner());
            self.stopped.store(true, Ordering::SeqCst);
        }
        self.conn.store(None);
        self.wake.notify_one();
    }

    /// Sets `meetgate_cluster_store_up`, unless this link was stopped (a
    /// stopped link never brings the gauge back).
    fn set_gauge(&self, up: bool) {
        let _gauge = GAUGE.lock().unwrap_or_else(|e| e.into_inner());
        if !self.stopped.load(Ordering::SeqCst) {
            self.metrics.set_cluster_store_up(Some(up));
        }
    }

    /// A key under `key_prefix`.
    pub fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// A value unique to this replica and call (locks, in-flight marks).
    pub fn owner_token(&self) -> String {
        format!("{}:{}", self.replica, uuid::Uuid::new_v4().simple())
    }

    /// The bound on one operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Keeps a connection while the link lives: connect, wait until an
    /// operation fails, reconnect every [`RECONNECT_EVERY`].
    async fn maintain(self: Arc<Self>) {
        let mut logged_down = false;
        while !self.stopped.load(Ordering::SeqCst) {
            if self.conn.load().is_none() {
                let connect_timeout = self.timeout.max(MIN_CONNECT_TIMEOUT);
                match tokio::time::timeout(connect_timeout, self.connect()).await {
                    Ok(Ok(conn)) => {
                        if self.stopped.load(Ordering::SeqCst) {
                            break;
                        }
                        self.conn.store(Some(Arc::new(conn)));
                        self.up.store(true, Ordering::SeqCst);
                        self.set_gauge(true);
                        self.tried.send_replace(true);
                        tracing::info!(redis = ?self.endpoint, "cluster store: Redis connected; sharing webhook keys and tokens");
                        logged_down = false;
                    }
                    failed => {
                        self.metrics.cluster_store_errors.inc();
                        self.tried.send_replace(true);
                        if !logged_down {
                            let error = match failed {
                                Ok(Err(e)) => e,
                                _ => format!("no answer within {} ms", connect_timeout.as_millis()),
                            };
                            tracing::warn!(redis = ?self.endpoint, error, "cluster store: Redis unreachable; serving with in-process stores, retrying every second");
                            logged_down = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(RECONNECT_EVERY) => {}
                            _ = self.wake.notified() => {}
                        }
                        continue;
                    }
                }
            }
            self.wake.notified().await;
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection, String> {
        let ep = &self.endpoint;
        let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeout));
        let redis_error = |e: redis::RedisError| {
            // Kind and code only: the detail may quote the command.
            format!(
                "{:?}{}",
                e.kind(),
                e.code().map(|c| format!(" {c}")).unwrap_or_default()
            )
        };
        let stream: Box<dyn RedisStream> = match &ep.tls {
            Some((connector, name)) => Box::new(
                connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?,
            ),
            None => Box::new(tcp),
        };
        let (mut conn, driver) = MultiplexedConnection::new_with_config(&ep.info, stream, config)
            .await
            .map_err(redis_error)?;
        tokio::spawn(driver);
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_error)?;
        if pong != "PONG" {
            return Err("unexpected PING answer".to_owned());
        }
        Ok(conn)
    }

    /// Runs one command within `timeout_ms`. `None`: Redis failed (counted,
    /// connection dropped for reconnection); use the in-process store.
    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        if !*self.tried.borrow() {
            let mut tried = self.tried.subscribe();
            let bound = self.timeout.max(MIN_CONNECT_TIMEOUT) + self.timeout;
            let _ = tokio::time::timeout(bound, tried.wait_for(|t| *t)).await;
        }
        let Some(conn) = self.conn.load_full() else {
            self.metrics.cluster_store_errors.inc();
            return None;
        };
        let mut conn = (*conn).clone();
        let outcome = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn)).await;
        match outcome {
            Ok(Ok(v)) => Some(v),
            failed => {
                self.metrics.cluster_store_errors.inc();
                let error = match failed {
                    Ok(Err(e)) => format!("{:?}", e.kind()),
                    _ => format!("no answer within {} ms", self.timeout.as_millis()),
                };
                if self.up.swap(false, Ordering::SeqCst) {
                    self.set_gauge(false);
                    tracing::warn!(redis = ?self.endpoint, error, "cluster store: Redis operation failed; falling back to in-process stores");
                }
                self.conn.store(None);
                self.wake.notify_one();
                None
            }
        }
    }

    /// `SET key value NX PX ttl`: `Some(true)` if set, `Some(false)` if the
    /// key exists.
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Duration) -> Option<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.query::<Option<String>>(&cmd)
            .await
            .map(|r| r.is_some())
    }

    /// `SET key value PX ttl`.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Option<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
        self.query::<Option<String>>(&cmd).await.map(|_| ())
    }

    /// Deletes the token JSON under `key` only while its `access_token` is
    /// still `value`.
    pub async fn delete_token_if(&self, key: &str, value: &str) -> Option<bool> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_TOKEN_IF).arg(1).arg(key).arg(value);
        self.query::<i64>(&cmd).await.map(|n| n == 1)
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Option<Option<String>> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        self.query::<Option<String>>(&cmd).await
    }

    /// Deletes `key` only while it still holds `value`.
    pub async fn delete_if_equal(&self, key: &str, value: &str) -> Option<bool> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE_IF_EQUAL).arg(1).arg(key).arg(value);
        self.query::<i64>(&cmd).await.map(|n| n == 1)
    }
}
