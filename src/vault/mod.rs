//! The encrypted grant vault (issue 16 part 2): users' Zoom OAuth grants,
//! sealed with AES-256-GCM at rest, keyed by (identity, subject).
//!
//! - [`Keyring`]: the keys (one current, older ones for rotation) and the
//!   sealed-record envelope;
//! - [`Grant`]: the record; [`GrantKey`]: what it is stored under;
//! - [`GrantStore`]: where sealed records live — [`FileStore`] (embedded,
//!   on disk) or [`RedisStore`] (`[cluster]`);
//! - [`SingleFlight`]: one refresh per grant at a time in this process;
//!   with `[cluster]` and the Redis store, also [`ClusterLock`]: one at a
//!   time across replicas;
//! - [`seal_state`] / [`open_state`]: the connect flow's OAuth `state`;
//! - [`Vault`]: the three together, with re-sealing under the current key
//!   on read and the refresh protocol ([`Vault::refreshed`]).
//!
pub mod cluster_lock;
pub mod file_store;
pub mod grant;
pub mod keyring;
pub mod redis_store;
pub mod single_flight;
pub mod state;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use cluster_lock::ClusterLock;
use cluster_lock::HeldLock;
pub use file_store::FileStore;
pub use grant::{Grant, GrantKey, GrantOpenError};
pub use keyring::{Keyring, KeyringError, OpenError, SealError};
pub use redis_store::RedisStore;
pub use single_flight::SingleFlight;
pub use state::{open_state, seal_state, StateClaims, StateError, MAX_STATE_LIFETIME_SECS};
pub use store::{CasOutcome, GrantStore, StoreError, StoredGrant};

/// Refresh an access token when this many seconds or fewer remain (Zoom's
/// Rivet uses 60; spec section 1).
pub const REFRESH_MARGIN_SECS: u64 = 60;

/// Why the vault could not answer.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record does not open with the keyring (its key was removed
    /// from the ring, or the record was altered).
    #[error("stored grant cannot be opened: {0}")]
    Unreadable(#[from] GrantOpenError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl VaultError {
    /// A stable code for answers, audit and logs.
    pub fn code(&self) -> &'static str {
        match self {
            VaultError::Store(e) => e.code(),
            VaultError::Unreadable(_) => "grant_unreadable",
            VaultError::Seal(_) => "grant_seal_failed",
        }
    }
}

/// A grant as read, with the exact stored bytes (the compare-and-swap
/// witness for writing its successor).
#[derive(Debug, Clone)]
pub struct LoadedGrant {
    pub grant: Grant,
    sealed: Vec<u8>,
}

/// What [`Vault::refreshed`] gives back when the refresh itself failed.
#[derive(Debug)]
pub enum RefreshFailure<E> {
    /// The vault failed (store down, unreadable record).
    Vault(VaultError),
    /// The refresh function failed; `dropped` is true when `drop_grant`
    /// said so and the grant that was refreshed has been deleted.
    Refresh { error: E, dropped: bool },
}

impl<E> From<VaultError> for RefreshFailure<E> {
    fn from(e: VaultError) -> Self {
        RefreshFailure::Vault(e)
    }
}

/// Keys, store and per-grant locks. One per process: the keyring is
/// swapped on reload ([`Vault::set_keyring`]); store and locks stay.
pub struct Vault {
    keyring: ArcSwap<Keyring>,
    store: Arc<dyn GrantStore>,
    flights: SingleFlight,
    /// With a store shared by replicas: the cross-replica refresh lock.
    cluster_lock: Option<ClusterLock>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring.load())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// A vault sealing with `keyring` into `store`.
    pub fn new(keyring: Arc<Keyring>, store: Arc<dyn GrantStore>) -> Self {
        Vault {
            keyring: ArcSwap::new(keyring),
            store,
            flights: SingleFlight::new(),
            cluster_lock: None,
        }
    }

    /// This vault's refreshes also hold the `[cluster]` lock of the grant
    /// (see [`cluster_lock`]), for a store that several replicas share
    /// (the Redis store). `refresh_timeout` bounds one refresh (the token
    /// request); the lock's TTL follows from it.
    pub fn with_cluster_lock(
        mut self,
        cluster: Arc<crate::cluster::Cluster>,
        refresh_timeout: Duration,
    ) -> Self {
        self.cluster_lock = Some(ClusterLock::new(cluster, refresh_timeout));
        self
    }

    /// Replaces the keyring (a reload changed the keys).
    pub fn set_keyring(&self, keyring: Arc<Keyring>) {
        self.keyring.store(keyring);
    }

    /// The keyring in use (also seals OAuth states).
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// The per-grant locks.
    pub fn flights(&self) -> &SingleFlight {
        &self.flights
    }

    fn stored(&self, grant: &Grant) -> Result<StoredGrant, VaultError> {
        Ok(StoredGrant {
            zoom_user_id: grant.zoom_user_id.clone(),
            sealed: grant.seal(&self.keyring.load())?,
        })
    }

    /// The Zoom user of the grant stored under `key`, without opening it:
    /// for checks that only ask whether the grant is still there (a cached
    /// ZAK is served while its grant is). The store's plaintext copy of the
    /// Zoom user id; anything that uses the grant opens it with [`Vault::get`].
    ///
    /// # Errors
    /// The store failed.
    pub async fn stored_zoom_user(&self, key: &GrantKey) -> Result<Option<String>, VaultError> {
        Ok(self.store.get(key).await?.map(|r| r.zoom_user_id))
    }

    /// The grant under `key`. One sealed under an older key is re-sealed
    /// under the current key (compare-and-swap; if that write fails the
    /// grant is still returned and re-sealed on a later read).
    ///
    /// # Errors
    /// The store failed, or the record does not open.
    pub async fn get(&self, key: &GrantKey) -> Result<Option<LoadedGrant>, VaultError> {
        let Some(rec) = self.store.get(key).await? else {
            return Ok(None);
        };
        let (grant, stale) = Grant::open(&self.keyring.load(), key, &rec.sealed)?;
        let loaded = LoadedGrant {
            grant,
            sealed: rec.sealed,
        };
        if !stale {
            return Ok(Some(loaded));
        }
        let new = self.stored(&loaded.grant)?;
        let sealed = new.sealed.clone();
        match self
            .store
            .compare_and_swap(key, Some(&loaded.sealed), new)
            .await
        {
            Ok(CasOutcome::Swapped) => {
                tracing::debug!(identity = %key.identity, "grant re-sealed under the current key");
                Ok(Some(LoadedGrant {
                    grant: loaded.grant,
                    sealed,
                }))
            }
            Ok(CasOutcome::Conflict(None)) => Ok(None),
            Ok(CasOutcome::Conflict(Some(cur))) => {
                let (grant, _) = Grant::open(&self.keyring.load(), key, &cur.sealed)?;
                Ok(Some(LoadedGrant {
                    grant,
                    sealed: cur.sealed,
                }))
            }
            Err(e) => {
                tracing::warn!(error = %e, code = e.code(), "could not re-seal a grant under the current key; will retry on a later read");
                Ok(Some(loaded))
            }
        }
    }

    /// Stores `grant` (a completed connect), replacing any earlier one.
    ///
    /// # Errors
    /// The store failed, or sealing did.
    pub async fn put(&self, grant: &Grant) -> Result<(), VaultError> {
        let rec = self.stored(grant)?;
        self.store.put(&grant.key(), rec).await?;
        Ok(())
    }

    /// Writes `new` in place of `current` only if `current` is still what
    /// is stored. `Ok(None)`: someone else wrote or deleted first.
    ///
    /// # Errors
    /// The store failed, or sealing did.
    pub async fn replace(
        &self,
        current: &LoadedGrant,
        new: &Grant,
    ) -> Result<Option<LoadedGrant>, VaultError> {
        let rec = self.stored(new)?;
        let sealed = rec.sealed.clone();
        match self
            .store
            .compare_and_swap(&current.grant.key(), Some(&current.sealed), rec)
            .await?
        {
            CasOutcome::Swapped => Ok(Some(LoadedGrant {
                grant: new.clone(),
                sealed,
            })),
            CasOutcome::Conflict(_) => Ok(None),
        }
    }

    /// Deletes the grant under `key` (disconnect); true if there was one.
    ///
    /// # Errors
    /// The store failed.
    pub async fn delete(&self, key: &GrantKey) -> Result<bool, VaultError> {
        Ok(self.store.delete(key).await?)
    }

    /// Deletes `current` only if it is still what is stored.
    ///
    /// # Errors
    /// The store failed.
    pub async fn delete_if_current(&self, current: &LoadedGrant) -> Result<bool, VaultError> {
        Ok(self
            .store
            .compare_and_delete(&current.grant.key(), &current.sealed)
            .await?)
    }

    /// Deletes every grant of a Zoom user (`app_deauthorized`).
    ///
    /// # Errors
    /// The store failed.
    pub async fn delete_zoom_user(&self, zoom_user_id: &str) -> Result<Vec<GrantKey>, VaultError> {
        Ok(self.store.delete_zoom_user(zoom_user_id).await?)
    }

    /// The grant under `key`, refreshed through `refresh` when `stale`
    /// says so (e.g. its access token expires within
    /// [`REFRESH_MARGIN_SECS`], or it holds the access token Zoom just
    /// refused: a concurrent caller that finds the pair already replaced
    /// uses it). One refresh per grant at a time in this process and, with
    /// a cluster lock ([`Vault::with_cluster_lock`]), across replicas:
    /// concurrent callers wait and then read the refreshed grant. The new
    /// pair is written (compare-and-swap) before it is returned. `Ok(None)`: no
    /// grant (never connected, disconnected, or deleted meanwhile).
    ///
    /// When `refresh` fails and `drop_grant(&error)` is true (Zoom answered
    /// `invalid_grant`: the refresh token is dead), the grant is deleted if
    /// it is still the one refreshed — never a pair another refresh wrote.
    ///
    /// With a cluster lock, Redis failing or another replica keeping the
    /// lock past its TTL is [`RefreshFailure::Vault`] with
    /// [`StoreError::Unavailable`]: nothing refreshed, nothing deleted.
    ///
    /// # Errors
    /// [`RefreshFailure`].
    pub async fn refreshed<E, F, Fut>(
        &self,
        key: &GrantKey,
        stale: impl Fn(&Grant) -> bool,
        refresh: F,
        drop_grant: impl FnOnce(&E) -> bool,
    ) -> Result<Option<Grant>, RefreshFailure<E>>
    where
        F: FnOnce(Grant) -> Fut,
        Fut: Future<Output = Result<Grant, E>>,
    {
        let fresh = |l: &LoadedGrant| !stale(&l.grant);
        if let Look::Settled(g) = self.look(key, &fresh).await? {
            return Ok(g);
        }
        let _flight = self.flights.lock(key).await;
        let held = match &self.cluster_lock {
            None => None,
            Some(lock) => match self.take_cluster_lock(lock, key, &fresh).await? {
                Ok(held) => Some(held),
                // Another replica refreshed (or the grant went) meanwhile.
                Err(done) => return Ok(done),
            },
        };
        // Under the locks: read the grant again (so the pair refreshed is
        // the one stored now; whoever held the locks before may have
        // refreshed already), refresh it and write the new pair.
        let outcome = async {
            let current = match self.look(key, &fresh).await? {
                Look::Settled(g) => return Ok(g),
                Look::Stale(current) => current,
            };
            match refresh(current.grant.clone()).await {
                Ok(new) => match self.replace(&current, &new).await? {
                    Some(written) => Ok(Some(written.grant)),
                    // Changed under us (a reconnect, a delete, or a replica
                    // whose lock expired): take what is there now.
                    None => Ok(self.get(key).await?.map(|l| l.grant)),
                },
                Err(error) => {
                    let dropped = if drop_grant(&error) {
                        self.delete_if_current(&current).await?
                    } else {
                        false
                    };
                    Err(RefreshFailure::Refresh { error, dropped })
                }
            }
        }
        .await;
        if let Some(held) = held {
            held.release().await;
        }
        outcome
    }

    /// The grant under `key` as it is now: settled (gone, or fresh) or
    /// stale (to be refreshed).
    async fn look(
        &self,
        key: &GrantKey,
        fresh: &impl Fn(&LoadedGrant) -> bool,
    ) -> Result<Look, VaultError> {
        Ok(match self.get(key).await? {
            None => Look::Settled(None),
            Some(l) if fresh(&l) => Look::Settled(Some(l.grant)),
            Some(l) => Look::Stale(l),
        })
    }

    /// Takes the grant's cluster lock, polling while another replica holds
    /// it. `Ok(Err(..))`: no need any more, the grant is fresh (or gone).
    async fn take_cluster_lock(
        &self,
        lock: &ClusterLock,
        key: &GrantKey,
        fresh: &impl Fn(&LoadedGrant) -> bool,
    ) -> Result<Result<HeldLock, Option<Grant>>, VaultError> {
        let link = lock.link()?;
        let start = Instant::now();
        loop {
            if let Some(held) = lock.try_take(&link, key).await? {
                return Ok(Ok(held));
            }
            if start.elapsed() >= lock.wait_limit(&link) {
                return Err(lock.timed_out(start).into());
            }
            tokio::time::sleep(cluster_lock::POLL).await;
            if let Look::Settled(g) = self.look(key, fresh).await? {
                return Ok(Err(g));
            }
        }
    }
}

/// A grant read to decide whether it needs a refresh.
enum Look {
    /// Nothing to refresh: no grant, or a fresh one.
    Settled(Option<Grant>),
    /// To be refreshed.
    Stale(LoadedGrant),
}

#[cfg(test)]
#[path = "vault_tests.rs"]
mod tests;
