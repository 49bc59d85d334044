//! Where sealed grants are kept: the [`GrantStore`] trait, implemented by
//! the embedded [`FileStore`](super::FileStore) and the `[cluster]`
//! [`RedisStore`](super::RedisStore).
//!
//! Stores see sealed bytes only (and the Zoom user id, for the index that
//! `app_deauthorized` needs); they never hold a key.

use std::future::Future;
use std::pin::Pin;

use super::grant::GrantKey;

/// A boxed future, so the trait can be used as `Arc<dyn GrantStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stored record: the sealed grant and the Zoom user it belongs to
/// (in clear for the secondary index; it is an id, not a secret).
#[derive(Clone, PartialEq, Eq)]
pub struct StoredGrant {
    pub zoom_user_id: String,
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for StoredGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredGrant")
            .field("zoom_user_id", &self.zoom_user_id)
            .field("sealed", &format_args!("[{} bytes]", self.sealed.len()))
            .finish()
    }
}

/// What a compare-and-swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CasOutcome {
    /// The expected record was there and is now replaced.
    Swapped,
    /// Someone else wrote (or deleted) first; this is what is stored now.
    Conflict(Option<StoredGrant>),
}

/// A store failure. Distinct from "no grant": a caller must never treat an
/// unreachable store as a disconnected user.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer (Redis down or slow, task cancelled).
    #[error("grant store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something it should not hold.
    #[error("grant store corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// A stable code for logs and answers.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "grant_store_unavailable",
            StoreError::Corrupt(_) => "grant_store_corrupt",
        }
    }
}

/// Sealed grants by (identity, subject), with a secondary index by Zoom
/// user id. Every write is atomic: record and index change together.
pub trait GrantStore: Send + Sync {
    /// The record under `key`.
    fn get<'a>(
        &'a self,
        key: &'a GrantKey,
    ) -> BoxFuture<'a, Result<Option<StoredGrant>, StoreError>>;

    /// Stores `record` under `key`, replacing any other (a new connect).
    fn put<'a>(
        &'a self,
        key: &'a GrantKey,
        record: StoredGrant,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes the record under `key`; true if there was one.
    fn delete<'a>(&'a self, key: &'a GrantKey) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Replaces the record under `key` with `new` only while its sealed
    /// bytes are exactly `expected` (`None`: only while there is none).
    /// A refresh writes its new token pair this way, so of two concurrent
    /// refreshes at most one lands.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a GrantKey,
        expected: Option<&'a [u8]>,
        new: StoredGrant,
    ) -> BoxFuture<'a, Result<CasOutcome, StoreError>>;

    /// Deletes the record under `key` only while its sealed bytes are
    /// exactly `expected`; true if it did. A refresh refused with
    /// `invalid_grant` drops the grant this way, so it never deletes a
    /// pair another refresh has just written.
    fn compare_and_delete<'a>(
        &'a self,
        key: &'a GrantKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The keys of every grant of `zoom_user_id`.
    fn list_zoom_user<'a>(
        &'a self,
        zoom_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GrantKey>, StoreError>>;

    /// Deletes every grant of `zoom_user_id` (`app_deauthorized`); returns
    /// their keys.
    fn delete_zoom_user<'a>(
        &'a self,
        zoom_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GrantKey>, StoreError>>;
}

/// Shared conformance checks run against every store implementation.
#[cfg(test)]
pub(crate) mod conformance {
    use super::*;

    fn rec(zoom: &str, bytes: &[u8]) -> StoredGrant {
        StoredGrant {
            zoom_user_id: zoom.into(),
            sealed: bytes.to_vec(),
        }
    }

    /// Puts, gets, CAS (success, conflict, create-only), index and deletes.
    pub(crate) async fn check(store: &dyn GrantStore) {
        let alice = GrantKey::new("corp", "alice");
        let alice2 = GrantKey::new("other-idp", "alice@x");
        let bob = GrantKey::new("corp", "bob");
        assert_eq!(store.get(&alice).await.unwrap(), None);
        store.put(&alice, rec("zu-a", b"v1")).await.unwrap();
        store.put(&alice2, rec("zu-a", b"w1")).await.unwrap();
        store.put(&bob, rec("zu-b", b"b1")).await.unwrap();
        assert_eq!(store.get(&alice).await.unwrap(), Some(rec("zu-a", b"v1")));

        // CAS: the expected bytes win once; a stale writer sees a conflict.
        let swapped = store
            .compare_and_swap(&alice, Some(b"v1"), rec("zu-a", b"v2"))
            .await
            .unwrap();
        assert_eq!(swapped, CasOutcome::Swapped);
        let lost = store
            .compare_and_swap(&alice, Some(b"v1"), rec("zu-a", b"v3"))
            .await
            .unwrap();
        assert_eq!(lost, CasOutcome::Conflict(Some(rec("zu-a", b"v2"))));
        assert_eq!(store.get(&alice).await.unwrap(), Some(rec("zu-a", b"v2")));
        // Create-only on an existing record conflicts; on a fresh key works.
        let exists = store
            .compare_and_swap(&bob, None, rec("zu-b", b"b2"))
            .await
            .unwrap();
        assert_eq!(exists, CasOutcome::Conflict(Some(rec("zu-b", b"b1"))));
        let carol = GrantKey::new("corp", "carol");
        let created = store
            .compare_and_swap(&carol, None, rec("zu-c", b"c1"))
            .await
            .unwrap();
        assert_eq!(created, CasOutcome::Swapped);
        // CAS on a deleted record does not resurrect it.
        assert!(store.delete(&carol).await.unwrap());
        assert!(!store.delete(&carol).await.unwrap());
        let gone = store
            .compare_and_swap(&carol, Some(b"c1"), rec("zu-c", b"c2"))
            .await
            .unwrap();
        assert_eq!(gone, CasOutcome::Conflict(None));
        assert_eq!(store.get(&carol).await.unwrap(), None);
        assert!(store.list_zoom_user("zu-c").await.unwrap().is_empty());

        // The index follows the record's Zoom user.
        let mut a = store.list_zoom_user("zu-a").await.unwrap();
        a.sort();
        assert_eq!(a, vec![alice.clone(), alice2.clone()]);
        store.put(&alice2, rec("zu-b", b"w2")).await.unwrap();
        assert_eq!(
            store.list_zoom_user("zu-a").await.unwrap(),
            vec![alice.clone()]
        );
        let mut b = store.list_zoom_user("zu-b").await.unwrap();
        b.sort();
        assert_eq!(b, vec![bob.clone(), alice2.clone()]);

        // app_deauthorized: every grant of the Zoom user goes, others stay.
        let mut deleted = store.delete_zoom_user("zu-b").await.unwrap();
        deleted.sort();
        assert_eq!(deleted, vec![bob.clone(), alice2.clone()]);
        assert_eq!(store.get(&bob).await.unwrap(), None);
        assert_eq!(store.get(&alice2).await.unwrap(), None);
        assert!(store.list_zoom_user("zu-b").await.unwrap().is_empty());
        assert!(store.delete_zoom_user("zu-b").await.unwrap().is_empty());
        assert_eq!(store.get(&alice).await.unwrap(), Some(rec("zu-a", b"v2")));

        // Compare-and-delete only deletes what the caller read.
        assert!(!store.compare_and_delete(&alice, b"v1").await.unwrap());
        assert_eq!(store.get(&alice).await.unwrap(), Some(rec("zu-a", b"v2")));
        store.put(&carol, rec("zu-a", b"c3")).await.unwrap();
        assert!(store.compare_and_delete(&carol, b"c3").await.unwrap());
        assert_eq!(store.get(&carol).await.unwrap(), None);
        assert_eq!(
            store.list_zoom_user("zu-a").await.unwrap(),
            vec![alice.clone()]
        );

        // A plain delete also leaves the index.
        assert!(store.delete(&alice).await.unwrap());
        assert!(store.list_zoom_user("zu-a").await.unwrap().is_empty());

        // Keys with separators and non-ASCII stay apart.
        let odd1 = GrantKey::new("a", "b:c\u{0}é");
        let odd2 = GrantKey::new("a:b", "c\u{0}é");
        store.put(&odd1, rec("zu-o", b"o1")).await.unwrap();
        store.put(&odd2, rec("zu-o", b"o2")).await.unwrap();
        assert_eq!(store.get(&odd1).await.unwrap(), Some(rec("zu-o", b"o1")));
        assert_eq!(store.get(&odd2).await.unwrap(), Some(rec("zu-o", b"o2")));
        assert_eq!(store.delete_zoom_user("zu-o").await.unwrap().len(), 2);
    }
}
