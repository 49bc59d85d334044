//! meetgate: a TLS-terminating authentication gateway for apps built on Zoom
//! and Vonage/OpenTok.
//!
//! [`start`] binds the listeners for a configuration file and returns a
//! [`Gateway`] handle; [`run`] adds signal handling (SIGHUP reloads,
//! SIGTERM/SIGINT drain and stop) for the binary.

pub mod audit;
pub mod body;
pub mod cli;
pub mod client_ip;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod error;
/// Entry points for the fuzz targets and the corpus replay test; not part of
/// the gateway's API.
pub mod fuzzing;
pub mod jwks;
pub mod live;
pub mod metrics;
pub mod net;
pub mod pipeline;
pub mod registry;
pub mod replay;
pub mod secret;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod vault;
pub mod zoom_user;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use config::{BuildMode, LoadError, Snapshot};

/// Environment lookup used to resolve `${VAR}` references.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(secret::process_env)
}

/// State shared by every listener and task: the live snapshot and reload
/// bookkeeping.
pub struct State {
    /// The configuration in force, assembled with its live parts.
    /// Requests `load_full()` it once.
    pub live: ArcSwap<live::Live>,
    /// Bumped on every applied configuration (1 for the first).
    pub generation: AtomicU64,
    /// Reloads applied.
    pub reloads_ok: AtomicU64,
    /// Reloads refused (the old configuration kept serving).
    pub reloads_failed: AtomicU64,
    /// Signing keys of every identity (outlive snapshots).
    pub jwks: jwks::JwksRegistry,
    /// Verified bearer tokens (cleared when the configuration changes).
    pub tokens: pipeline::authn::jwt::TokenCache,
    /// Fetched credentials' token sources (outlive snapshots).
    pub credentials: credentials::oauth::CredentialRegistry,
    /// Delivered webhook events (outlive snapshots).
    pub replay: Arc<dyn replay::ReplayStore>,
    /// The `[cluster]` Redis link shared by the replay and token stores.
    pub cluster: Arc<cluster::Cluster>,
    /// Users' Zoom grants (`[grants]`), kept across reloads.
    pub vault: live::vaults::VaultSlot,
    /// Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The audit trail, when `[audit]` is configured.
    pub audit: arc_swap::ArcSwapOption<audit::AuditSink>,
    /// When the gateway started serving (readiness grace).
    pub started: std::time::Instant,
    /// Set on SIGTERM: `/readyz` fails while the listeners still accept.
    pub draining: AtomicBool,
    config_path: PathBuf,
    env: Env,
}

impl State {
    fn registries(&self, vault: Option<Arc<vault::Vault>>) -> live::Registries<'_> {
        live::Registries {
            jwks: &self.jwks,
            credentials: &self.credentials,
            vault,
        }
    }

    /// The configuration file this gateway reloads from.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Rebuilds from the file and swaps the snapshot in if it is valid and
    /// runnable; otherwise logs every problem and keeps the old one. Also
    /// reopens the audit file (log rotation) or switches to a new path.
    pub async fn reload(&self, cause: &str) -> bool {
        if let Some(sink) = self.audit.load_full() {
            sink.reopen();
        }
        let loaded = load_runnable(&self.config_path, &self.env).and_then(|snap| {
            let vault = self
                .vault
                .sync(snap.grants.as_ref())
                .map_err(StartError::Vault)?;
            Ok((snap, vault))
        });
        match loaded {
            Ok((snap, vault)) => {
                let previous = self.live.load_full();
                self.cluster.sync(snap.cluster.as_ref());
                // Upstream keep-alive connections survive the reload.
                let reg = self.registries(vault);
                let live = live::Live::assemble(snap, &reg, Some(&previous));
                let (old, snap) = (&previous.settings, &live.settings);
                // Audiences, algorithms or claims mapping may have changed
                // (entries are also tagged with the snapshot that verified
                // them: a verification finishing after this is not served).
                self.tokens.reset(snap.limits.token_cache_bytes);
                if old.server.listen != snap.server.listen
                    || old.server.admin_listen != snap.server.admin_listen
                    || old.server.plain_listen != snap.server.plain_listen
                {
                    tracing::warn!("listener addresses changed; they apply at the next restart");
                }
                let wanted = snap.audit.as_ref().map(|a| a.path.clone());
                let current = self.audit.load().as_ref().map(|a| a.path().to_owned());
                if wanted != current {
                    let sink = match &wanted {
                        Some(path) => {
                            let base = self
                                .config_path
                                .parent()
                                .unwrap_or(Path::new("."))
                                .to_owned();
                            match audit::AuditSink::start(
                                path,
                                &base,
                                self.metrics.audit_dropped.clone(),
                            )
                            .await
                            {
                                Ok(s) => Some(Arc::new(s)),
                                Err(e) => {
                                    tracing::error!(path, error = %e, "cannot open the new audit path; keeping the configuration without it");
                                    None
                                }
                            }
                        }
                        None => None,
                    };
                    self.audit.store(sink);
                }
                self.live.store(Arc::new(live));
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                self.reloads_ok.fetch_add(1, Ordering::SeqCst);
                self.metrics
                    .config_reloads
                    .get_or_create(&metrics::ResultLabel { result: "ok" })
                    .inc();
                self.metrics.config_generation.set(generation as i64);
                self.metrics
                    .set_tls_certificate_expiry(self.live.load().settings.server.tls_not_after);
                tracing::info!(cause, generation, "configuration reloaded");
                true
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::SeqCst);
                self.metrics
                    .config_reloads
                    .get_or_create(&metrics::ResultLabel { result: "error" })
                    .inc();
                tracing::error!(cause, problems = %e.report().replace('\n', "; "), "configuration reload refused; the previous configuration keeps serving");
                false
            }
        }
    }
}

/// Why the gateway could not start (or a reload was refused).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] LoadError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch the configuration file: {0}")]
    Watch(#[from] notify::Error),
    #[error("cannot open the grant vault: {0}")]
    Vault(String),
}

impl StartError {
    /// Every problem, one per line.
    pub fn report(&self) -> String {
        match self {
            StartError::Config(e) => e.report(),
            other => other.to_string(),
        }
    }
}

/// Loads a snapshot to serve.
fn load_runnable(path: &Path, env: &Env) -> Result<Snapshot, StartError> {
    let snap = config::load_file(path, BuildMode::Run, &**env)?;
    // What `check` warns about (an upstream in plaintext, ...) is logged
    // each time such a file is put in service.
    for w in &snap.warnings {
        tracing::warn!(config = %path.display(), "configuration warning: {w}");
    }
    Ok(snap)
}

/// A running gateway.
pub struct Gateway {
    /// The bound TLS listener.
    pub tls_addr: SocketAddr,
    /// The bound plaintext listener, if configured.
    pub plain_addr: Option<SocketAddr>,
    /// The bound admin listener, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// Shared state (snapshot, reload counters).
    pub state: Arc<State>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// How many connections the kernel queues before they are accepted: bursts
/// of new connections (a load balancer reconnecting, a reconnect storm after
/// a deploy) wait in the queue instead of in SYN retries.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with address reuse (restarts do not wait out TIME_WAIT) and
/// a [`LISTEN_BACKLOG`] queue.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Loads `config_path`, binds every listener and starts serving and watching
/// the file for changes.
pub async fn start(config_path: &Path, env: Env) -> Result<Gateway, StartError> {
    let snap = load_runnable(config_path, &env)?;
    let metrics = Arc::new(metrics::Metrics::default());
    let tokens = pipeline::authn::jwt::TokenCache::new(
        metrics.token_cache_hits.clone(),
        snap.limits.token_cache_bytes,
    );
    let jwks = {
        let tokens = tokens.clone();
        jwks::JwksRegistry::new(
            Arc::new(
                move |identity: &str, kids: &std::collections::HashSet<String>| {
                    tokens.forget_kids(identity, kids)
                },
            ),
            metrics.clone(),
        )
    };
    let bind = |addr: SocketAddr| async move {
        listen(addr).map_err(|source| StartError::Bind { addr, source })
    };
    let tls = bind(snap.server.listen).await?;
    let plain = match snap.server.plain_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin = match snap.server.admin_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let local = |l: &TcpListener| l.local_addr().expect("bound listener has an address");
    let (tls_addr, plain_addr, admin_addr) = (
        local(&tls),
        plain.as_ref().map(local),
        admin.as_ref().map(local),
    );

    let cluster = Arc::new(cluster::Cluster::new(metrics.clone()));
    cluster.sync(snap.cluster.as_ref());
    let credentials = credentials::oauth::CredentialRegistry::new(cluster.clone(), metrics.clone());
    let audit = match &snap.audit {
        Some(a) => {
            let base = config_path.parent().unwrap_or(Path::new(".")).to_owned();
            let sink = audit::AuditSink::start(&a.path, &base, metrics.audit_dropped.clone())
                .await
                .map_err(|source| StartError::Audit {
                    path: a.path.clone(),
                    source,
                })?;
            Some(Arc::new(sink))
        }
        None => None,
    };
    metrics.config_generation.set(1);
    metrics.set_tls_certificate_expiry(snap.server.tls_not_after);
    let vault_slot = live::vaults::VaultSlot::new(cluster.clone());
    let vault = vault_slot
        .sync(snap.grants.as_ref())
        .map_err(StartError::Vault)?;
    let live = live::Live::assemble(
        snap,
        &live::Registries {
            jwks: &jwks,
            credentials: &credentials,
            vault,
        },
        None,
    );
    let state = Arc::new(State {
        credentials,
        live: ArcSwap::from_pointee(live),
        jwks,
        tokens,
        replay: Arc::new(replay::SharedReplayStore::new(cluster.clone())),
        vault: vault_slot,
        cluster,
        metrics,
        audit: arc_swap::ArcSwapOption::new(audit),
        started: std::time::Instant::now(),
        draining: AtomicBool::new(false),
        generation: AtomicU64::new(1),
        reloads_ok: AtomicU64::new(0),
        reloads_failed: AtomicU64::new(0),
        config_path: config_path.to_owned(),
        env,
    });
    let (shutdown, rx) = watch::channel(false);
    let watcher = live::reload::watcher(state.clone(), rx.clone())?;
    let mut tasks = JoinSet::new();
    tasks.spawn(watcher);
    tasks.spawn(server::listen::serve(
        tls,
        server::listen::Kind::Tls,
        state.clone(),
        rx.clone(),
    ));
    if let Some(l) = plain {
        tasks.spawn(server::listen::serve(
            l,
            server::listen::Kind::Plain,
            state.clone(),
            rx.clone(),
        ));
    }
    if let Some(l) = admin {
        tasks.spawn(server::admin::serve(l, state.clone(), rx.clone()));
    }
    let show = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    tracing::info!(
        https = %tls_addr,
        plain = %show(plain_addr),
        admin = %show(admin_addr),
        routes = state.live.load().routes.len(),
        "meetgate listening"
    );
    Ok(Gateway {
        tls_addr,
        plain_addr,
        admin_addr,
        state,
        shutdown,
        tasks,
    })
}

impl Gateway {
    /// Reloads the configuration now (what SIGHUP does).
    pub async fn reload(&self) -> bool {
        self.state.reload("reload requested").await
    }

    /// Stops accepting, lets in-flight requests finish (bounded by
    /// `server.shutdown_grace_ms`), and returns when every listener is done.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        // The listeners drained: every response that ended has queued its
        // audit line; write them out before the process exits.
        if let Some(sink) = self.state.audit.load_full() {
            sink.flush(std::time::Duration::from_secs(5)).await;
        }
    }

    /// What SIGTERM does: `/readyz` answers 503 from now on, the listeners
    /// keep accepting for `server.drain_ms` (or until `cut_short` resolves:
    /// a second signal), then [`Gateway::shutdown`].
    pub async fn drain(self, cut_short: impl std::future::Future<Output = ()>) {
        self.state.draining.store(true, Ordering::SeqCst);
        let window = self.state.live.load().settings.server.drain;
        if !window.is_zero() {
            tracing::info!(
                drain_ms = window.as_millis() as u64,
                "draining: /readyz fails, the listeners accept until the window ends"
            );
            tokio::select! {
                () = tokio::time::sleep(window) => {}
                () = cut_short => tracing::info!("drain cut short by a second signal"),
            }
        }
        tracing::info!("shutting down: no new connections, in-flight requests finish");
        self.shutdown().await;
    }
}

/// The runtime the binary serves on: one thread per available CPU
/// (work-stealing), or, when the process may use a single CPU (pinned or
/// limited), the cheaper current-thread scheduler.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()
    }
}

/// Unix seconds now (0 before the epoch): the one clock token lifetimes,
/// caches and minted credentials are judged by.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An error and its sources, joined for one log field.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        s.push_str(": ");
        s.push_str(&e.to_string());
        src = e.source();
    }
    s
}

/// Runs until SIGTERM or SIGINT, reloading on SIGHUP; then drains and returns.
pub async fn run(gateway: Gateway) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => { gateway.state.reload("SIGHUP").await; }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    let again = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    gateway.drain(again).await;
    tracing::info!("stopped");
    Ok(())
}

/// The platform test vectors (`tests/data/vectors.json`), by name.
#[cfg(test)]
pub(crate) mod test_vectors {
    /// The vector `name` from `tests/data/vectors.json` or
    /// `tests/data/vectors-2026.json`.
    pub fn vector(name: &str) -> serde_json::Value {
        for file in ["vectors.json", "vectors-2026.json"] {
            let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect("test vectors");
            let all: serde_json::Value = serde_json::from_str(&text).expect("vectors are JSON");
            let found = all["vectors"]
                .as_array()
                .expect("a vectors array")
                .iter()
                .find(|v| v["name"] == name);
            if let Some(v) = found {
                return v.clone();
            }
        }
        panic!("vector {name}")
    }
}
