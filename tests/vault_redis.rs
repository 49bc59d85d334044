//! The grant vault's Redis store against a real `redis-server` on a
//! loopback port: records, compare-and-swap (also racing from two links, as
//! two replicas would), the Zoom-user index, Redis down being an error and
//! not "no grant", and no token in clear in anything Redis holds.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meetgate::cluster::Cluster;
use meetgate::config::ClusterSettings;
use meetgate::metrics::Metrics;
use meetgate::vault::{
    CasOutcome, FileStore, Grant, GrantKey, GrantStore, Keyring, RedisStore, StoreError,
    StoredGrant, Vault,
};
use secrecy::{ExposeSecret, SecretString};

const ACCESS: &str = "TESTaccessTOKEN.redis-plaintext-check";
const REFRESH: &str = "TESTrefreshTOKEN.redis-plaintext-check";

/// A `redis-server` on a loopback port, killed on drop.
struct Redis {
    port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server; .ci/run does)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let start = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Redis {
            port,
            _dir: dir,
            child,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster link to `url` under `prefix`, as one replica has it.
async fn cluster(url: &str, prefix: &str) -> Arc<Cluster> {
    let c = Arc::new(Cluster::new(Arc::new(Metrics::default())));
    c.sync(Some(&ClusterSettings {
        redis_url: SecretString::from(url.to_owned()),
        redis_password: None,
        key_prefix: prefix.to_owned(),
        timeout: Duration::from_millis(500),
        roots: rustls::RootCertStore::empty(),
    }));
    let start = Instant::now();
    while c.healthy() != Some(true) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "cluster link did not come up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c
}

fn grant(subject: &str, zoom: &str) -> Grant {
    Grant {
        identity: "corp".into(),
        subject: subject.into(),
        tenant: None,
        zoom_user_id: zoom.into(),
        access_token: SecretString::from(ACCESS),
        refresh_token: SecretString::from(REFRESH),
        access_expires_at: 1_767_229_199,
        scopes: vec!["user:read:token".into()],
        api_url: "https://api.zoom.us".into(),
        connected_since: 1_767_225_600,
        updated_at: 1_767_225_600,
    }
}

fn rec(zoom: &str, bytes: &[u8]) -> StoredGrant {
    StoredGrant {
        zoom_user_id: zoom.into(),
        sealed: bytes.to_vec(),
    }
}

#[tokio::test]
async fn grants_cas_and_index_in_redis_hold_no_plaintext() {
    let redis = Redis::start().await;
    let store = RedisStore::new(cluster(&redis.url(), "mg-test:").await);
    let ring = Arc::new(Keyring::new(("k1", &[5u8; 32]), &[]).unwrap());
    let vault = Vault::new(
        ring.clone(),
        Arc::new(RedisStore::new(cluster(&redis.url(), "mg-test:").await)),
    );

    // Through the vault: sealed, indexed, readable.
    let g = grant("alice", "zu-alice");
    vault.put(&g).await.unwrap();
    vault.put(&grant("alice@other", "zu-alice")).await.unwrap();
    let back = vault.get(&g.key()).await.unwrap().unwrap().grant;
    assert_eq!(back.refresh_token.expose_secret(), REFRESH);
    let mut listed = store.list_zoom_user("zu-alice").await.unwrap();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            GrantKey::new("corp", "alice"),
            GrantKey::new("corp", "alice@other")
        ]
    );

    // Nothing Redis holds has a token, the subject or the Zoom user id in
    // a key name; the values hold no token.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for k in &keys {
        assert!(k.starts_with("mg-test:grant"), "{k}");
        assert!(!k.contains("alice") && !k.contains("zu-alice"), "{k}");
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        for secret in [ACCESS, REFRESH] {
            assert!(
                !dump.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{k}"
            );
        }
    }

    // The store contract, as the file store meets it.
    let bob = GrantKey::new("corp", "bob");
    store.put(&bob, rec("zu-b", b"b1")).await.unwrap();
    assert_eq!(
        store
            .compare_and_swap(&bob, Some(b"b1"), rec("zu-b", b"b2"))
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert_eq!(
        store
            .compare_and_swap(&bob, Some(b"b1"), rec("zu-b", b"b3"))
            .await
            .unwrap(),
        CasOutcome::Conflict(Some(rec("zu-b", b"b2")))
    );
    assert_eq!(
        store
            .compare_and_swap(&bob, None, rec("zu-b", b"b4"))
            .await
            .unwrap(),
        CasOutcome::Conflict(Some(rec("zu-b", b"b2")))
    );
    let carol = GrantKey::new("corp", "carol");
    assert_eq!(
        store
            .compare_and_swap(&carol, None, rec("zu-b", b"c1"))
            .await
            .unwrap(),
        CasOutcome::Swapped
    );
    assert!(!store.compare_and_delete(&carol, b"zz").await.unwrap());
    assert!(store.compare_and_delete(&carol, b"c1").await.unwrap());
    assert_eq!(
        store
            .compare_and_swap(&carol, Some(b"c1"), rec("zu-b", b"c2"))
            .await
            .unwrap(),
        CasOutcome::Conflict(None)
    );
    // Moving a grant to another Zoom user moves its index entry.
    store.put(&bob, rec("zu-alice", b"b5")).await.unwrap();
    assert!(store.list_zoom_user("zu-b").await.unwrap().is_empty());
    assert_eq!(store.list_zoom_user("zu-alice").await.unwrap().len(), 3);

    // app_deauthorized: all of the Zoom user's grants go at once.
    let mut deleted = vault.delete_zoom_user("zu-alice").await.unwrap();
    deleted.sort();
    assert_eq!(
        deleted,
        vec![
            GrantKey::new("corp", "alice"),
            GrantKey::new("corp", "alice@other"),
            bob.clone()
        ]
    );
    assert!(vault.get(&g.key()).await.unwrap().is_none());
    assert!(store.get(&bob).await.unwrap().is_none());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_races_between_replicas_have_one_winner() {
    let redis = Redis::start().await;
    let a = RedisStore::new(cluster(&redis.url(), "p:").await);
    let b = RedisStore::new(cluster(&redis.url(), "p:").await);
    let key = GrantKey::new("corp", "alice");
    a.put(&key, rec("zu", b"v0")).await.unwrap();
    let stores = Arc::new([a, b]);
    let mut tasks = Vec::new();
    for i in 0..40u8 {
        let (s, k) = (stores.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            s[usize::from(i % 2)]
                .compare_and_swap(&k, Some(b"v0"), rec("zu", &[b'n', i]))
                .await
                .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() == CasOutcome::Swapped {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn redis_down_is_an_error_not_a_missing_grant() {
    let mut redis = Redis::start().await;
    let ring = Arc::new(Keyring::new(("k1", &[5u8; 32]), &[]).unwrap());
    let vault = Vault::new(
        ring,
        Arc::new(RedisStore::new(cluster(&redis.url(), "p:").await)),
    );
    let g = grant("alice", "zu");
    vault.put(&g).await.unwrap();
    redis.kill();
    let e = vault.get(&g.key()).await.unwrap_err();
    assert_eq!(e.code(), "grant_store_unavailable");
    // Without a [cluster] link at all, also unavailable.
    let unlinked = RedisStore::new(Arc::new(Cluster::new(Arc::new(Metrics::default()))));
    assert!(matches!(
        unlinked.get(&g.key()).await,
        Err(StoreError::Unavailable(_))
    ));
    // The embedded store is unaffected (sanity: same record type works there).
    let dir = tempfile::tempdir().unwrap();
    let file = FileStore::open_async(dir.path().join("g.redb"))
        .await
        .unwrap();
    file.put(&g.key(), rec("zu", b"x")).await.unwrap();
    assert!(file.get(&g.key()).await.unwrap().is_some());
}
