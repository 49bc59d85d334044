//! Delivered-webhook memory behind a small store trait, so a shared store
//! (Redis) can replace the in-process one without touching the verifier.
//!
//! Protocol: [`ReplayStore::claim`] a key before forwarding. `Duplicate`
//! means an earlier delivery of it succeeded: answer without forwarding.
//! `Fresh` hands back a [`Delivery`]; await [`Delivery::delivered`] after the
//! upstream answered 2xx (before answering the platform), or drop it to
//! forget the attempt (so the platform's retry is delivered). A claim for a
//! key whose delivery is in flight waits for that outcome, so concurrent
//! duplicates are forwarded once.
//!
//! [`SharedReplayStore`] is what the gateway uses: Redis when `[cluster]` is
//! configured and answering, the in-process [`MemoryReplayStore`] otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// The outcome of a claim.
pub enum Claim {
    /// Nobody delivered this event yet: deliver it, then report.
    Fresh(Delivery),
    /// Already delivered (upstream answered 2xx).
    Duplicate,
}

/// Storage for delivered-event keys.
pub trait ReplayStore: Send + Sync {
    /// Claims `key` for delivery; remembered for `ttl` once delivered.
    fn claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Claim>;
}

/// A boxed future borrowed for `'a`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Reports how a claimed delivery ended.
pub trait Completion: Send + Sync {
    /// The upstream accepted the event: remember it for `ttl`.
    fn delivered<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, ()>;
    /// The delivery failed: forget the attempt.
    fn abandoned(&self, key: &str);
}

/// A claimed delivery. Dropping it without [`Delivery::delivered`] abandons
/// the claim.
pub struct Delivery {
    store: Arc<dyn Completion>,
    key: String,
    ttl: Duration,
    done: bool,
}

impl Delivery {
    /// Records the event as delivered.
    pub async fn delivered(mut self) {
        self.done = true;
        self.store.delivered(&self.key, self.ttl).await;
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if !self.done {
            self.store.abandoned(&self.key);
        }
    }
}

/// How many delivered keys the in-memory store keeps at most.
const MAX_KEYS: u64 = 200_000;

/// The in-process store: delivered keys in a bounded moka cache with a
/// per-entry lifetime, and a table of deliveries in flight.
#[derive(Clone)]
pub struct MemoryReplayStore {
    inner: Arc<Inner>,
}

struct Inner {
    delivered: moka::sync::Cache<String, Duration>,
    in_flight: Mutex<HashMap<String, watch::Sender<Option<bool>>>>,
}

struct TtlFromValue;

impl moka::Expiry<String, Duration> for TtlFromValue {
    fn expire_after_create(&self, _: &String, ttl: &Duration, _: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        MemoryReplayStore {
            inner: Arc::new(Inner {
                delivered: moka::sync::Cache::builder()
                    .max_capacity(MAX_KEYS)
                    .expire_after(TtlFromValue)
                    .build(),
                in_flight: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl Completion for Inner {
    fn delivered<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, ()> {
        // Remember first, then release waiters: a waiter re-checking sees it.
        self.delivered.insert(key.to_owned(), ttl);
        if let Some(tx) = self.in_flight.lock().expect("replay lock").remove(key) {
            let _ = tx.send(Some(true));
        }
        Box::pin(std::future::ready(()))
    }

    fn abandoned(&self, key: &str) {
        if let Some(tx) = self.in_flight.lock().expect("replay lock").remove(key) {
            let _ = tx.send(Some(false));
        }
    }
}

impl MemoryReplayStore {
    /// Whether `key` was delivered (through this store or recorded here).
    fn knows(&self, key: &str) -> bool {
        self.inner.delivered.contains_key(key)
    }

    /// Records a delivery made through the shared store, so this replica
    /// still knows it if Redis goes away.
    fn remember(&self, key: &str, ttl: Duration) {
        self.inner.delivered.insert(key.to_owned(), ttl);
    }
}

impl ReplayStore for MemoryReplayStore {
    fn claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            loop {
                let mut rx = {
                    let mut in_flight = self.inner.in_flight.lock().expect("replay lock");
                    if self.inner.delivered.contains_key(key) {
                        return Claim::Duplicate;
                    }
                    match in_flight.get(key) {
                        Some(tx) => tx.subscribe(),
                        None => {
                            in_flight.insert(key.to_owned(), watch::channel(None).0);
                            return Claim::Fresh(Delivery {
                                store: self.inner.clone(),
                                key: key.to_owned(),
                                ttl,
                                done: false,
                            });
                        }
                    }
                };
                // Another delivery of this key is in flight: wait for it.
                match rx.wait_for(Option::is_some).await.map(|v| *v) {
                    Ok(Some(true)) => return Claim::Duplicate,
                    // Failed or vanished: try to claim it ourselves.
                    _ => continue,
                }
            }
        })
    }
}

/// How long a delivery in flight holds its key in Redis at most (a replica
/// that dies mid-delivery frees it after this).
const IN_FLIGHT_LEASE: Duration = Duration::from_secs(60);
/// How often a claim re-checks a key another replica is delivering.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(25);
/// The Redis value of a delivered key.
const DELIVERED: &str = "delivered";

/// The gateway's replay store: Redis keys `PREFIX + "webhook:" + key` when
/// `[cluster]` answers (SET NX with the in-flight lease, then "delivered"
/// with the dedup window), the in-process store when it does not. Keys
/// delivered while Redis was away stay local; keys delivered through Redis
/// are also remembered locally.
pub struct SharedReplayStore {
    cluster: Arc<crate::cluster::Cluster>,
    local: MemoryReplayStore,
}

impl SharedReplayStore {
    pub fn new(cluster: Arc<crate::cluster::Cluster>) -> Self {
        SharedReplayStore {
            cluster,
            local: MemoryReplayStore::default(),
        }
    }
}

impl ReplayStore for SharedReplayStore {
    fn claim<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Claim> {
        Box::pin(async move {
            let Some(link) = self.cluster.link() else {
                return self.local.claim(key, ttl).await;
            };
            if self.local.knows(key) {
                return Claim::Duplicate;
            }
            let rkey = link.key("webhook", key);
            let owner = link.owner_token();
            loop {
                match link.set_nx(&rkey, &owner, IN_FLIGHT_LEASE).await {
                    Some(true) => {
                        return Claim::Fresh(Delivery {
                            store: Arc::new(RedisCompletion {
                                link,
                                rkey,
                                owner,
                                local: self.local.clone(),
                            }),
                            key: key.to_owned(),
                            ttl,
                            done: false,
                        })
                    }
                    Some(false) => match link.get(&rkey).await {
                        Some(Some(v)) if v == DELIVERED => {
                            self.local.remember(key, ttl);
                            return Claim::Duplicate;
                        }
                        // Freed since our SET: claim again at once.
                        Some(None) => {}
                        // In flight on some replica: look again shortly.
                        Some(Some(_)) => tokio::time::sleep(IN_FLIGHT_POLL).await,
                        None => return self.local.claim(key, ttl).await,
                    },
                    // Redis failed: this replica decides alone.
                    None => return self.local.claim(key, ttl).await,
                }
            }
        })
    }
}

/// Completes a delivery claimed in Redis.
struct RedisCompletion {
    link: Arc<crate::cluster::Link>,
    rkey: String,
    owner: String,
    local: MemoryReplayStore,
}

impl Completion for RedisCompletion {
    fn delivered<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.local.remember(key, ttl);
            // Written before the platform gets its answer; on failure the
            // local record stands (counted by the link).
            let _ = self.link.set(&self.rkey, DELIVERED, ttl).await;
        })
    }

    fn abandoned(&self, _key: &str) {
        // Free the key now so the platform's retry (on any replica) is
        // delivered; if Redis is away, the lease runs out instead.
        let (link, rkey, owner) = (self.link.clone(), self.rkey.clone(), self.owner.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = link.delete_if_equal(&rkey, &owner).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn delivered_keys_are_duplicates() {
        let s = MemoryReplayStore::default();
        let Claim::Fresh(d) = s.claim("a", TTL).await else {
            panic!("fresh")
        };
        d.delivered().await;
        assert!(matches!(s.claim("a", TTL).await, Claim::Duplicate));
        assert!(matches!(s.claim("b", TTL).await, Claim::Fresh(_)));
    }

    #[tokio::test]
    async fn abandoned_deliveries_are_forgotten() {
        let s = MemoryReplayStore::default();
        let Claim::Fresh(d) = s.claim("a", TTL).await else {
            panic!("fresh")
        };
        drop(d);
        assert!(matches!(s.claim("a", TTL).await, Claim::Fresh(_)));
    }

    #[tokio::test]
    async fn concurrent_claims_wait_for_the_first_outcome() {
        let s = MemoryReplayStore::default();
        let Claim::Fresh(first) = s.claim("k", TTL).await else {
            panic!("fresh")
        };
        let s2 = s.clone();
        let waiter =
            tokio::spawn(async move { matches!(s2.claim("k", TTL).await, Claim::Duplicate) });
        tokio::task::yield_now().await;
        first.delivered().await;
        assert!(waiter.await.unwrap(), "the waiter sees the delivery");

        // A failed first attempt lets the waiter deliver instead.
        let Claim::Fresh(first) = s.claim("j", TTL).await else {
            panic!("fresh")
        };
        let s3 = s.clone();
        let waiter =
            tokio::spawn(async move { matches!(s3.claim("j", TTL).await, Claim::Fresh(_)) });
        tokio::task::yield_now().await;
        drop(first);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn keys_expire_after_their_ttl() {
        let s = MemoryReplayStore::default();
        let Claim::Fresh(d) = s.claim("t", Duration::from_millis(50)).await else {
            panic!()
        };
        d.delivered().await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(matches!(s.claim("t", TTL).await, Claim::Fresh(_)));
    }
}
