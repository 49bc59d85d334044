//! One refresh per grant across replicas: the `[cluster]` lock a vault on
//! the Redis store takes (inside its in-process [`SingleFlight`]) before it
//! reads the grant it refreshes.
//!
//! The protocol is the one `src/credentials/oauth.rs` uses for fetched
//! tokens: `SET NX PX` on [`grant_lock_key`] with a value unique to this
//! replica and call ([`Link::owner_token`]), polled while another replica
//! holds it, released with a compare-and-delete ([`Link::delete_if_equal`])
//! so a replica never frees a lock that expired and was taken by another.
//!
//! Unlike fetched tokens, a replica never goes ahead without the lock:
//! Zoom rotates refresh tokens, so a second refresh of the same pair would
//! be refused (`invalid_grant`). Redis failing while taking the lock, or
//! the lock not coming free in time, is [`StoreError::Unavailable`]: the
//! request gets 503 `grant_store_unavailable` and nothing is refreshed or
//! deleted.
//!
//! [`SingleFlight`]: super::SingleFlight

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::grant::GrantKey;
use super::redis_store::grant_lock_key;
use super::store::StoreError;
use crate::cluster::{Cluster, Link};

/// How often a replica waiting for another one's refresh looks again.
pub const POLL: Duration = Duration::from_millis(50);

/// The cluster and the bound on one refresh (the token request's timeout).
pub struct ClusterLock {
    cluster: Arc<Cluster>,
    refresh_timeout: Duration,
}

impl ClusterLock {
    pub fn new(cluster: Arc<Cluster>, refresh_timeout: Duration) -> Self {
        ClusterLock {
            cluster,
            refresh_timeout,
        }
    }

    /// The live link; none (no `[cluster]` now) means the Redis grant
    /// store cannot answer either.
    pub fn link(&self) -> Result<Arc<Link>, StoreError> {
        self.cluster
            .link()
            .ok_or_else(|| StoreError::Unavailable("no [cluster] link".to_owned()))
    }

    /// How long a lock lives at most: the refresh plus the store operations
    /// around it (re-read, compare-and-swap or compare-and-delete, release),
    /// each bounded by `timeout_ms`, and a second of margin. A replica that
    /// dies holding it frees it after this.
    pub fn ttl(&self, link: &Link) -> Duration {
        self.refresh_timeout + link.timeout() * 4 + Duration::from_secs(1)
    }

    /// How long a replica waits for another one's lock before answering
    /// 503: until that lock must have expired, plus one operation and one
    /// poll.
    pub fn wait_limit(&self, link: &Link) -> Duration {
        self.ttl(link) + link.timeout() + POLL
    }

    /// One attempt: `Ok(Some(lock))` taken, `Ok(None)` held elsewhere.
    ///
    /// # Errors
    /// Redis did not answer within `timeout_ms`.
    pub async fn try_take(
        &self,
        link: &Arc<Link>,
        key: &GrantKey,
    ) -> Result<Option<HeldLock>, StoreError> {
        let redis_key = grant_lock_key(link, key);
        let owner = link.owner_token();
        match link.set_nx(&redis_key, &owner, self.ttl(link)).await {
            Some(true) => Ok(Some(HeldLock {
                link: link.clone(),
                key: redis_key,
                owner,
                released: false,
            })),
            Some(false) => Ok(None),
            None => Err(StoreError::Unavailable(
                "Redis did not answer taking the grant's refresh lock".to_owned(),
            )),
        }
    }

    /// The error when another replica's lock did not come free in time.
    pub fn timed_out(&self, since: Instant) -> StoreError {
        StoreError::Unavailable(format!(
            "the grant's refresh lock stayed held by another replica for {} ms",
            since.elapsed().as_millis()
        ))
    }
}

/// A held cluster lock. [`HeldLock::release`] frees it; dropped unreleased
/// (the request was cancelled) it is freed from a spawned task, and failing
/// that its TTL frees it.
pub struct HeldLock {
    link: Arc<Link>,
    key: String,
    owner: String,
    released: bool,
}

impl HeldLock {
    /// Frees the lock if it is still ours.
    pub async fn release(mut self) {
        self.released = true;
        let _ = self.link.delete_if_equal(&self.key, &self.owner).await;
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (link, key, owner) = (
                self.link.clone(),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.owner),
            );
            rt.spawn(async move {
                let _ = link.delete_if_equal(&key, &owner).await;
            });
        }
    }
}
