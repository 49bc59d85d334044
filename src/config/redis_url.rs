//! `[cluster] redis_url`, parsed: where Redis is and how to log in.

use redis::{IntoConnectionInfo, RedisConnectionInfo};
use rustls_pki_types::ServerName;
use secrecy::ExposeSecret;

use super::ClusterSettings;

/// Where and how to reach Redis. Its Debug shows host and port only: the
/// login may carry a password.
#[derive(Clone)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    /// `rediss://`: the name the server's certificate must hold.
    pub tls: Option<ServerName<'static>>,
    /// Database, user and password.
    pub login: RedisConnectionInfo,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Parses `redis_url` (with `redis_password` winning over a password in
/// the URL). Errors never quote the URL, which may hold a password.
pub fn redis_target(settings: &ClusterSettings) -> Result<RedisTarget, String> {
    let url = settings.redis_url.expose_secret();
    let (tls, plain_url) = match url.strip_prefix("rediss://") {
        Some(rest) => (true, format!("redis://{rest}")),
        None => (false, url.to_owned()),
    };
    let info = plain_url
        .as_str()
        .into_connection_info()
        .map_err(|_| "is not a valid redis:// or rediss:// URL".to_owned())?;
    let (host, port) = match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
        _ => return Err("must name a TCP host (redis:// or rediss://)".to_owned()),
    };
    if plain_url.contains('#') {
        return Err("URL fragments (such as #insecure) are not supported".to_owned());
    }
    let mut login = info.redis_settings().clone();
    if let Some(p) = &settings.redis_password {
        login = login.set_password(p.expose_secret());
    }
    let tls = if tls {
        Some(
            ServerName::try_from(host.clone())
                .map_err(|_| format!("host {host:?} is not a valid TLS server name"))?,
        )
    } else {
        None
    };
    Ok(RedisTarget {
        host,
        port,
        tls,
        login,
    })
}
