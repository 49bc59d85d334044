use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::grant::tests::grant;
use super::*;

const NOW: u64 = 1_767_225_600;

/// Stale as the Zoom-user flows judge it: expiring within the margin at `now`.
fn stale_at(now: u64) -> impl Fn(&Grant) -> bool + Copy + Send {
    move |g: &Grant| g.needs_refresh(now, REFRESH_MARGIN_SECS)
}

async fn vault(ring: Keyring) -> (tempfile::TempDir, Arc<Vault>) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_async(dir.path().join("g.redb"))
        .await
        .unwrap();
    (dir, Arc::new(Vault::new(Arc::new(ring), Arc::new(store))))
}

fn ring(id: &str, byte: u8) -> Keyring {
    Keyring::new((id, &[byte; 32]), &[]).unwrap()
}

#[tokio::test]
async fn rotation_reseals_on_read() {
    let (_dir, v) = vault(ring("old", 1)).await;
    let g = grant("corp", "alice", "zu");
    v.put(&g).await.unwrap();
    v.set_keyring(Arc::new(
        Keyring::new(("new", &[2; 32]), &[("old", &[1; 32])]).unwrap(),
    ));
    let sealed_id = |v: &Vault| {
        let v = v.store.clone();
        let k = g.key();
        async move {
            let rec = v.get(&k).await.unwrap().unwrap();
            Keyring::sealed_key_id(&rec.sealed).unwrap().to_owned()
        }
    };
    assert_eq!(sealed_id(&v).await, "old");
    let loaded = v.get(&g.key()).await.unwrap().unwrap();
    assert_eq!(loaded.grant.zoom_user_id, "zu");
    assert_eq!(sealed_id(&v).await, "new");
    // The old key can now go.
    v.set_keyring(Arc::new(ring("new", 2)));
    assert!(v.get(&g.key()).await.unwrap().is_some());
    // A ring without the record's key: a clear, distinct error.
    v.set_keyring(Arc::new(ring("other", 3)));
    let e = v.get(&g.key()).await.unwrap_err();
    assert_eq!(e.code(), "grant_unreadable");
}

fn expiring(mut g: Grant) -> Grant {
    g.access_expires_at = NOW + 30;
    g
}

fn rotated(mut g: Grant, n: usize) -> Grant {
    g.access_token = SecretString::from(format!("access-{n}"));
    g.refresh_token = SecretString::from(format!("refresh-{n}"));
    g.access_expires_at = NOW + 3599;
    g.updated_at = NOW;
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_cause_one_refresh() {
    let (_dir, v) = vault(ring("k", 1)).await;
    let g = expiring(grant("corp", "alice", "zu"));
    v.put(&g).await.unwrap();
    let refreshes = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (v, r, k) = (v.clone(), refreshes.clone(), g.key());
        tasks.push(tokio::spawn(async move {
            v.refreshed(
                &k,
                stale_at(NOW),
                |old| async move {
                    let n = r.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Ok::<_, &str>(rotated(old, n))
                },
                |_| false,
            )
            .await
            .unwrap()
            .unwrap()
        }));
    }
    for t in tasks {
        let got = t.await.unwrap();
        assert_eq!(got.access_token.expose_secret(), "access-1");
    }
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let stored = v.get(&g.key()).await.unwrap().unwrap().grant;
    assert_eq!(stored.refresh_token.expose_secret(), "refresh-1");
}

#[tokio::test]
async fn a_fresh_grant_is_not_refreshed_and_a_missing_one_is_none() {
    let (_dir, v) = vault(ring("k", 1)).await;
    let g = grant("corp", "alice", "zu");
    v.put(&g).await.unwrap();
    let never = |_: Grant| async { Err::<Grant, _>("must not be called") };
    let got = v
        .refreshed(&g.key(), stale_at(NOW), never, |_| true)
        .await
        .unwrap();
    assert!(got.is_some());
    let missing = GrantKey::new("corp", "nobody");
    assert!(v
        .refreshed(&missing, stale_at(NOW), never, |_| true)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn invalid_grant_drops_only_the_grant_it_refreshed() {
    let (_dir, v) = vault(ring("k", 1)).await;
    let g = expiring(grant("corp", "alice", "zu"));
    v.put(&g).await.unwrap();
    let r = v
        .refreshed(
            &g.key(),
            stale_at(NOW),
            |_| async { Err::<Grant, _>("invalid_grant") },
            |e| *e == "invalid_grant",
        )
        .await;
    assert!(matches!(
        r,
        Err(RefreshFailure::Refresh { dropped: true, .. })
    ));
    assert!(v.get(&g.key()).await.unwrap().is_none());
    assert!(v.store.list_zoom_user("zu").await.unwrap().is_empty());

    // The user reconnects while a refresh with the old token is in flight:
    // its invalid_grant must not delete the new grant.
    v.put(&g).await.unwrap();
    let v2 = v.clone();
    let reconnected = rotated(g.clone(), 9);
    let r = v
        .refreshed(
            &g.key(),
            stale_at(NOW),
            |_| async move {
                v2.put(&reconnected).await.unwrap();
                Err::<Grant, _>("invalid_grant")
            },
            |_| true,
        )
        .await;
    assert!(matches!(
        r,
        Err(RefreshFailure::Refresh { dropped: false, .. })
    ));
    let kept = v.get(&g.key()).await.unwrap().unwrap().grant;
    assert_eq!(kept.refresh_token.expose_secret(), "refresh-9");
    // A transient failure keeps the grant.
    let r = v
        .refreshed(
            &g.key(),
            stale_at(NOW + 4000),
            |_| async { Err::<Grant, _>("upstream_unavailable") },
            |_| false,
        )
        .await;
    assert!(matches!(
        r,
        Err(RefreshFailure::Refresh { dropped: false, .. })
    ));
    assert!(v.get(&g.key()).await.unwrap().is_some());
}

#[tokio::test]
async fn deauthorization_deletes_every_grant_of_the_zoom_user() {
    let (_dir, v) = vault(ring("k", 1)).await;
    v.put(&grant("corp", "alice", "zu-1")).await.unwrap();
    v.put(&grant("partner", "alice@p", "zu-1")).await.unwrap();
    v.put(&grant("corp", "bob", "zu-2")).await.unwrap();
    let mut gone = v.delete_zoom_user("zu-1").await.unwrap();
    gone.sort();
    assert_eq!(
        gone,
        vec![
            GrantKey::new("corp", "alice"),
            GrantKey::new("partner", "alice@p")
        ]
    );
    assert!(v
        .get(&GrantKey::new("corp", "bob"))
        .await
        .unwrap()
        .is_some());
    assert!(v.delete(&GrantKey::new("corp", "bob")).await.unwrap());
}

/// A cluster whose Redis never answers (a closed loopback port).
async fn unreachable_cluster() -> Arc<crate::cluster::Cluster> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = Arc::new(crate::cluster::Cluster::new(Arc::default()));
    c.sync(Some(&crate::config::ClusterSettings {
        redis_url: SecretString::from(format!("redis://127.0.0.1:{port}/0")),
        redis_password: None,
        key_prefix: "t:".to_owned(),
        timeout: Duration::from_millis(100),
        roots: rustls::RootCertStore::empty(),
    }));
    c
}

#[tokio::test]
async fn cluster_lock_unreachable_refreshes_nothing_and_keeps_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_async(dir.path().join("g.redb"))
        .await
        .unwrap();
    let v = Vault::new(Arc::new(ring("k", 1)), Arc::new(store))
        .with_cluster_lock(unreachable_cluster().await, Duration::from_secs(10));
    let g = expiring(grant("corp", "alice", "zu"));
    v.put(&g).await.unwrap();
    let called = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let r = v
        .refreshed(
            &g.key(),
            stale_at(NOW),
            |_| async {
                called.fetch_add(1, Ordering::SeqCst);
                Err::<Grant, _>("invalid_grant")
            },
            |_| true,
        )
        .await;
    match r {
        Err(RefreshFailure::Vault(e)) => assert_eq!(e.code(), "grant_store_unavailable"),
        other => panic!("expected grant_store_unavailable, got {other:?}"),
    }
    // Bounded by the first connection attempt (at least 1 s) and one
    // operation: not retried in a loop.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        called.load(Ordering::SeqCst),
        0,
        "no refresh without the lock"
    );
    assert!(
        v.get(&g.key()).await.unwrap().is_some(),
        "the grant is kept"
    );
    // A fresh grant needs no lock: served while Redis is down.
    v.put(&rotated(g.clone(), 2)).await.unwrap();
    let never = |_: Grant| async { Err::<Grant, _>("must not be called") };
    assert!(v
        .refreshed(&g.key(), stale_at(NOW), never, |_| true)
        .await
        .unwrap()
        .is_some());
}

/// Reads are remembered, and every kind of write is seen by the next read
/// (the file store's read cache never serves a record a write replaced).
#[tokio::test]
async fn the_file_store_never_serves_a_replaced_record() {
    use super::store::{CasOutcome, GrantStore, StoredGrant};
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open_async(dir.path().join("g.redb"))
        .await
        .unwrap();
    let key = GrantKey::new("corp", "alice");
    let rec = |zoom: &str, b: u8| StoredGrant {
        zoom_user_id: zoom.to_owned(),
        sealed: vec![b; 16],
    };
    store.put(&key, rec("z1", 1)).await.unwrap();
    for _ in 0..2 {
        assert_eq!(store.get(&key).await.unwrap(), Some(rec("z1", 1)));
    }
    let swapped = store
        .compare_and_swap(&key, Some(&[1; 16]), rec("z1", 2))
        .await
        .unwrap();
    assert!(matches!(swapped, CasOutcome::Swapped));
    assert_eq!(store.get(&key).await.unwrap(), Some(rec("z1", 2)));
    store.put(&key, rec("z1", 3)).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(rec("z1", 3)));
    assert!(store.compare_and_delete(&key, &[3; 16]).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap(), None);
    store.put(&key, rec("z2", 4)).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(rec("z2", 4)));
    assert_eq!(
        store.delete_zoom_user("z2").await.unwrap(),
        vec![key.clone()]
    );
    assert_eq!(store.get(&key).await.unwrap(), None);
    store.put(&key, rec("z2", 5)).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(rec("z2", 5)));
    assert!(store.delete(&key).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap(), None);
}
