//! One refresh at a time per grant, in this process.
//!
//! The pattern is the one `src/credentials/oauth.rs` uses for fetched
//! tokens (`TokenSource::fetch_shared`): take a lock, then look again
//! before doing the work, because whoever held the lock may just have done
//! it. Here the lock is per (identity, subject), taken from a map whose
//! entries disappear when nobody holds or waits for them, and the "look
//! again" reads the grant store, where the first caller wrote its result:
//! so concurrent callers wait for one refresh and then share its outcome.
//!
//! Across replicas the same holds with the cluster lock
//! ([`ClusterLock`](super::ClusterLock): `Link::set_nx` on
//! [`grant_lock_key`](super::redis_store::grant_lock_key)), which
//! [`Vault`](super::Vault) takes inside this one, so one task per replica
//! waits on Redis; the store's compare-and-swap is the last line: a refresh
//! whose read is no longer current does not land.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::grant::GrantKey;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// Per-grant locks.
#[derive(Default)]
pub struct SingleFlight {
    slots: Mutex<HashMap<GrantKey, Slot>>,
}

impl std::fmt::Debug for SingleFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Held while one caller works on a grant; dropping it lets the next in.
pub struct FlightGuard<'a> {
    owner: &'a SingleFlight,
    key: GrantKey,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        // Release first, then forget the slot if nobody else holds a handle
        // to it (holders and waiters each keep one).
        drop(self.guard.take());
        let mut slots = self.owner.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            slots.remove(&self.key);
        }
    }
}

impl SingleFlight {
    /// An empty set of locks.
    pub fn new() -> Self {
        SingleFlight::default()
    }

    /// How many grants have a lock held or awaited (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Waits for, then holds, the lock of `key`.
    pub async fn lock(&self, key: &GrantKey) -> FlightGuard<'_> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = slot.lock_owned().await;
        FlightGuard {
            owner: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }

    /// Runs `work` for `key` unless `recheck` (run under the lock, after
    /// waiting for any other caller's work) already has the result. Of any
    /// number of concurrent callers whose `recheck` sees the first caller's
    /// result, exactly one runs `work`.
    ///
    /// # Errors
    /// Whatever `recheck` or `work` return.
    pub async fn run<T, E, C, CF, W, WF>(&self, key: &GrantKey, recheck: C, work: W) -> Result<T, E>
    where
        C: FnOnce() -> CF,
        CF: Future<Output = Result<Option<T>, E>>,
        W: FnOnce() -> WF,
        WF: Future<Output = Result<T, E>>,
    {
        let _guard = self.lock(key).await;
        if let Some(done) = recheck().await? {
            return Ok(done);
        }
        work().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let flights = Arc::new(SingleFlight::new());
        let runs = Arc::new(AtomicUsize::new(0));
        // The "store": what the first run wrote.
        let stored = Arc::new(Mutex::new(None::<u32>));
        let key = GrantKey::new("corp", "alice");
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (f, r, s, k) = (flights.clone(), runs.clone(), stored.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                f.run(
                    &k,
                    || async { Ok::<_, ()>(*s.lock().unwrap()) },
                    || async {
                        r.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        *s.lock().unwrap() = Some(42);
                        Ok(42)
                    },
                )
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(42));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flights.in_flight(), 0, "slots are forgotten when idle");
    }

    #[tokio::test]
    async fn different_grants_do_not_wait_for_each_other() {
        let flights = SingleFlight::new();
        let a = flights.lock(&GrantKey::new("corp", "alice")).await;
        let b = tokio::time::timeout(
            Duration::from_secs(1),
            flights.lock(&GrantKey::new("corp", "bob")),
        )
        .await
        .expect("bob's lock is independent");
        assert_eq!(flights.in_flight(), 2);
        drop((a, b));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_failed_run_lets_the_next_caller_try() {
        let flights = SingleFlight::new();
        let key = GrantKey::new("corp", "alice");
        let first: Result<u32, &str> = flights
            .run(
                &key,
                || async { Ok(None) },
                || async { Err("upstream_unavailable") },
            )
            .await;
        assert_eq!(first, Err("upstream_unavailable"));
        let second: Result<u32, &str> = flights
            .run(&key, || async { Ok(None) }, || async { Ok(7) })
            .await;
        assert_eq!(second, Ok(7));
    }
}
