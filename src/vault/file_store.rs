//! The embedded grant store: one redb file on the gateway's machine.
//!
//! Why redb (2.x): a pure-Rust embedded key-value store (no C library to
//! build or audit beside aws-lc), ACID with copy-on-write B-trees and
//! checksummed pages: a transaction is either fully on disk after
//! `commit` returns (`Durability::Immediate`, fsync) or not at all, and a
//! crash mid-write leaves the previous commit readable. It is actively
//! maintained, has a stable file format, and a write transaction is the
//! compare-and-swap primitive we need (one writer at a time). SQLite would
//! do the same but brings a C library and SQL for two tables; sled's
//! durability story is weaker and it is unmaintained. redb 2.x is the
//! newest line that builds with the crate's `rust-version` (1.85); files
//! are created in redb's v3 format, which redb 3 and 4 open as they are.
//!
//! The file is opened with two-phase commit (a torn commit slot cannot be
//! mistaken for a valid one) and quick repair (reopening after a crash does
//! not walk the whole file). redb locks the file: a second process opening
//! it gets an error rather than a corrupt store.
//!
//! Tables: `grants` maps (identity, subject) to (Zoom user id, sealed
//! bytes); `grants_by_zoom_user` is the multimap Zoom user id → (identity,
//! subject). Every write changes both in one transaction. redb's calls block
//! on disk I/O, so every operation runs in `tokio::task::spawn_blocking`.
//!
//! Reads of stored grants are served from memory once read: this process
//! is the file's only writer (redb's lock), so the copy in memory can only
//! go stale through a write made here, and every write empties it before it
//! starts and after it ends; a read that raced a write does not keep what it
//! read (a generation counter). A ZAK answer checks that its grant is still
//! stored on every request: from memory, not through the blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{
    AccessGuard, Database, MultimapTableDefinition, ReadableTable, TableDefinition,
    WriteTransaction,
};

use super::grant::GrantKey;
use super::store::{BoxFuture, CasOutcome, GrantStore, StoreError, StoredGrant};

const GRANTS: TableDefinition<(&str, &str), (&str, &[u8])> = TableDefinition::new("grants");
const BY_ZOOM_USER: MultimapTableDefinition<&str, (&str, &str)> =
    MultimapTableDefinition::new("grants_by_zoom_user");

/// Page cache for the grant file (grants are a few hundred bytes each).
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Grants in a redb file. Cheap to clone.
#[derive(Clone)]
pub struct FileStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
    read: Arc<Mutex<ReadCache>>,
}

/// Stored grants already read (absent ones are not remembered: their
/// number is not bounded by what is stored).
#[derive(Default)]
struct ReadCache {
    /// Bumped by every write, before and after it.
    generation: u64,
    records: HashMap<GrantKey, StoredGrant>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

type GrantValue = (&'static str, &'static [u8]);

/// A stored value of the `grants` table as a record.
fn decode(v: &AccessGuard<'_, GrantValue>) -> StoredGrant {
    let (zoom, sealed) = v.value();
    StoredGrant {
        zoom_user_id: zoom.to_owned(),
        sealed: sealed.to_vec(),
    }
}

/// The record of `key` in `table` (read-only or within a write).
fn stored_in(
    table: &impl ReadableTable<(&'static str, &'static str), GrantValue>,
    key: &GrantKey,
) -> Result<Option<StoredGrant>, StoreError> {
    let got = table
        .get((key.identity.as_str(), key.subject.as_str()))
        .map_err(|e| failed("read", e))?;
    Ok(got.map(|v| decode(&v)))
}

impl FileStore {
    /// Opens (or creates) the store at `path`. Blocking: call it at start-up
    /// or through `spawn_blocking`.
    ///
    /// # Errors
    /// The file cannot be created or opened, another process holds it, or
    /// it is not a redb file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder()
            .create_with_file_format_v3(true)
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| failed(&format!("opening {}", path.display()), e))?;
        let store = FileStore {
            db: Arc::new(db),
            path: Arc::new(path.to_owned()),
            read: Arc::default(),
        };
        // Create the tables now so that readers never meet a missing one.
        store.write(|txn| {
            txn.open_table(GRANTS)
                .map_err(|e| failed("grants table", e))?;
            txn.open_multimap_table(BY_ZOOM_USER)
                .map_err(|e| failed("index table", e))?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Opens the store off the runtime's worker threads.
    ///
    /// # Errors
    /// As [`FileStore::open`].
    pub async fn open_async(path: PathBuf) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || FileStore::open(&path))
            .await
            .map_err(|e| failed("open task", e))?
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one write transaction and commits it (durably). What
    /// was read into memory is forgotten before and after.
    fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.forget_reads();
        let result = (|| {
            let mut txn = self
                .db
                .begin_write()
                .map_err(|e| failed("begin write", e))?;
            txn.set_two_phase_commit(true);
            txn.set_quick_repair(true);
            let out = f(&txn)?;
            txn.commit().map_err(|e| failed("commit", e))?;
            Ok(out)
        })();
        self.forget_reads();
        result
    }

    fn forget_reads(&self) {
        let mut read = self.read.lock().expect("grant read cache lock");
        read.generation += 1;
        read.records.clear();
    }

    /// The record of `key` read before, if any.
    fn remembered(&self, key: &GrantKey) -> Option<StoredGrant> {
        let read = self.read.lock().expect("grant read cache lock");
        read.records.get(key).cloned()
    }

    /// Reads `key` from the file, remembering a stored record unless a
    /// write began or ended meanwhile.
    fn read_and_remember(&self, key: &GrantKey) -> Result<Option<StoredGrant>, StoreError> {
        let generation = self.read.lock().expect("grant read cache lock").generation;
        let got = self.read_one(key)?;
        if let Some(rec) = &got {
            let mut read = self.read.lock().expect("grant read cache lock");
            if read.generation == generation {
                read.records.insert(key.clone(), rec.clone());
            }
        }
        Ok(got)
    }

    /// Runs blocking `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| failed("store task", e))?
    }

    fn read_one(&self, key: &GrantKey) -> Result<Option<StoredGrant>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| failed("begin read", e))?;
        let table = txn
            .open_table(GRANTS)
            .map_err(|e| failed("grants table", e))?;
        stored_in(&table, key)
    }

    /// Within `txn`: the current record of `key`.
    fn current_in(
        txn: &WriteTransaction,
        key: &GrantKey,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let grants = txn
            .open_table(GRANTS)
            .map_err(|e| failed("grants table", e))?;
        stored_in(&grants, key)
    }

    /// Within `txn`: the current record, after writing `new` (or deleting
    /// when `None`) and keeping the index in step.
    fn replace_in(
        txn: &WriteTransaction,
        key: &GrantKey,
        new: Option<&StoredGrant>,
    ) -> Result<Option<StoredGrant>, StoreError> {
        let k = (key.identity.as_str(), key.subject.as_str());
        let mut grants = txn
            .open_table(GRANTS)
            .map_err(|e| failed("grants table", e))?;
        let mut index = txn
            .open_multimap_table(BY_ZOOM_USER)
            .map_err(|e| failed("index table", e))?;
        let old = match new {
            Some(rec) => grants.insert(k, (rec.zoom_user_id.as_str(), rec.sealed.as_slice())),
            None => grants.remove(k),
        }
        .map_err(|e| failed("write", e))?
        .map(|v| decode(&v));
        if let Some(old) = &old {
            index
                .remove(old.zoom_user_id.as_str(), k)
                .map_err(|e| failed("index write", e))?;
        }
        if let Some(rec) = new {
            index
                .insert(rec.zoom_user_id.as_str(), k)
                .map_err(|e| failed("index write", e))?;
        }
        Ok(old)
    }

    fn keys_of(&self, zoom_user_id: &str) -> Result<Vec<GrantKey>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| failed("begin read", e))?;
        let index = txn
            .open_multimap_table(BY_ZOOM_USER)
            .map_err(|e| failed("index table", e))?;
        let mut keys = Vec::new();
        for k in index
            .get(zoom_user_id)
            .map_err(|e| failed("index read", e))?
        {
            let k = k.map_err(|e| failed("index read", e))?;
            let (identity, subject) = k.value();
            keys.push(GrantKey::new(identity, subject));
        }
        Ok(keys)
    }
}

impl GrantStore for FileStore {
    fn get<'a>(
        &'a self,
        key: &'a GrantKey,
    ) -> BoxFuture<'a, Result<Option<StoredGrant>, StoreError>> {
        if let Some(rec) = self.remembered(key) {
            return Box::pin(std::future::ready(Ok(Some(rec))));
        }
        let key = key.clone();
        Box::pin(self.blocking(move |s| s.read_and_remember(&key)))
    }

    fn put<'a>(
        &'a self,
        key: &'a GrantKey,
        record: StoredGrant,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = key.clone();
        Box::pin(self.blocking(move |s| {
            s.write(|txn| FileStore::replace_in(txn, &key, Some(&record)).map(drop))
        }))
    }

    fn delete<'a>(&'a self, key: &'a GrantKey) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = key.clone();
        Box::pin(self.blocking(move |s| {
            s.write(|txn| FileStore::replace_in(txn, &key, None).map(|old| old.is_some()))
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a GrantKey,
        expected: Option<&'a [u8]>,
        new: StoredGrant,
    ) -> BoxFuture<'a, Result<CasOutcome, StoreError>> {
        let key = key.clone();
        let expected = expected.map(<[u8]>::to_vec);
        Box::pin(self.blocking(move |s| {
            // One write transaction at a time (redb serialises writers):
            // the read and the write below cannot interleave with another.
            s.write(|txn| {
                let current = FileStore::current_in(txn, &key)?;
                if current.as_ref().map(|c| c.sealed.as_slice()) != expected.as_deref() {
                    return Ok(CasOutcome::Conflict(current));
                }
                FileStore::replace_in(txn, &key, Some(&new))?;
                Ok(CasOutcome::Swapped)
            })
        }))
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a GrantKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let key = key.clone();
        let expected = expected.to_vec();
        Box::pin(self.blocking(move |s| {
            s.write(|txn| {
                let current = FileStore::current_in(txn, &key)?;
                let matches = current.is_some_and(|c| c.sealed == expected);
                if matches {
                    FileStore::replace_in(txn, &key, None)?;
                }
                Ok(matches)
            })
        }))
    }

    fn list_zoom_user<'a>(
        &'a self,
        zoom_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GrantKey>, StoreError>> {
        let zoom = zoom_user_id.to_owned();
        Box::pin(self.blocking(move |s| s.keys_of(&zoom)))
    }

    fn delete_zoom_user<'a>(
        &'a self,
        zoom_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GrantKey>, StoreError>> {
        let zoom = zoom_user_id.to_owned();
        Box::pin(self.blocking(move |s| {
            s.write(|txn| {
                let keys: Vec<GrantKey> = {
                    let mut index = txn
                        .open_multimap_table(BY_ZOOM_USER)
                        .map_err(|e| failed("index table", e))?;
                    let mut keys = Vec::new();
                    for k in index
                        .remove_all(zoom.as_str())
                        .map_err(|e| failed("index write", e))?
                    {
                        let k = k.map_err(|e| failed("index read", e))?;
                        let (identity, subject) = k.value();
                        keys.push(GrantKey::new(identity, subject));
                    }
                    keys
                };
                let mut grants = txn
                    .open_table(GRANTS)
                    .map_err(|e| failed("grants table", e))?;
                for k in &keys {
                    grants
                        .remove((k.identity.as_str(), k.subject.as_str()))
                        .map_err(|e| failed("write", e))?;
                }
                Ok(keys)
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::grant::tests::{grant, ring, ACCESS, REFRESH};
    use crate::vault::grant::Grant;
    use crate::vault::store::conformance;

    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_async(dir.path().join("grants.redb"))
            .await
            .unwrap();
        conformance::check(&store).await;
    }

    #[tokio::test]
    async fn grants_survive_reopening_and_hold_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.redb");
        let ring = ring();
        let g = grant("corp", "alice", "zu-alice");
        {
            let store = FileStore::open_async(path.clone()).await.unwrap();
            let rec = StoredGrant {
                zoom_user_id: g.zoom_user_id.clone(),
                sealed: g.seal(&ring).unwrap(),
            };
            store.put(&g.key(), rec).await.unwrap();
            // A second opener of the same file is refused while it is open.
            assert!(FileStore::open_async(path.clone()).await.is_err());
        }
        let store = FileStore::open_async(path.clone()).await.unwrap();
        let rec = store.get(&g.key()).await.unwrap().expect("grant kept");
        let (back, _) = Grant::open(&ring, &g.key(), &rec.sealed).unwrap();
        assert_eq!(back.zoom_user_id, "zu-alice");
        assert_eq!(
            store.list_zoom_user("zu-alice").await.unwrap(),
            vec![g.key()]
        );
        drop(store);
        let bytes = std::fs::read(&path).unwrap();
        for secret in [ACCESS, REFRESH] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
    }

    #[tokio::test]
    async fn concurrent_cas_lets_exactly_one_win() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open_async(dir.path().join("g.redb"))
            .await
            .unwrap();
        let key = GrantKey::new("corp", "alice");
        let rec = |b: &[u8]| StoredGrant {
            zoom_user_id: "zu".into(),
            sealed: b.to_vec(),
        };
        store.put(&key, rec(b"v0")).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..16u8 {
            let (s, k) = (store.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                s.compare_and_swap(&k, Some(b"v0"), rec(&[b'n', i]))
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
}
