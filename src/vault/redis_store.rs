//! Grants in Redis, for replicas sharing a `[cluster]` link.
//!
//! Layout under the cluster's `key_prefix`:
//! - `grant:<hex SHA-256 of the encoded (identity, subject)>`: a hash with
//!   `s` (the sealed grant), `z` (the Zoom user id), `i` (the name of the
//!   index set it is in) and `k` (the encoded key, for listing);
//! - `grant-zoom-user:<hex SHA-256 of the Zoom user id>`: a set of the grant
//!   hashes of that Zoom user (`app_deauthorized` deletes them all).
//!
//! Records carry no expiry: a grant lives until it is deleted. Every write
//! is one Lua script, so the record and its index change atomically and a
//! compare-and-swap cannot interleave with another writer on any replica.
//! The scripts touch the index keys they read from the hashes, which
//! standalone Redis (what `[cluster]` connects to) allows.
//!
//! Every call goes through [`Link::query`](crate::cluster::Link::query),
//! bounded by `timeout_ms`. A failure is [`StoreError::Unavailable`], never
//! "no grant": Redis being down must not look like a disconnected user. For
//! the grants to survive a Redis restart, Redis must persist (AOF with
//! `appendfsync everysec` or `always`).

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::grant::GrantKey;
use super::store::{BoxFuture, CasOutcome, GrantStore, StoreError, StoredGrant};
use crate::cluster::{Cluster, Link};

/// Writes a record and moves its index entry. `ARGV[4]`: `put` (always),
/// `cas` (only while `s` equals `ARGV[5]`), `create` (only while absent).
/// Returns `{1}` when written, else `{0, current s, current z}`.
const WRITE: &str = r#"
local cur = redis.call('HGET', KEYS[1], 's')
if (ARGV[4] == 'cas' and cur ~= ARGV[5]) or (ARGV[4] == 'create' and cur) then
  return {0, cur, redis.call('HGET', KEYS[1], 'z')}
end
local old = redis.call('HGET', KEYS[1], 'i')
if old and old ~= KEYS[2] then redis.call('SREM', old, KEYS[1]) end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'z', ARGV[2], 'i', KEYS[2], 'k', ARGV[3])
redis.call('SADD', KEYS[2], KEYS[1])
return {1, false, false}
"#;

/// Deletes a record and its index entry; returns 1 if there was one.
/// With `ARGV[1] == 'if'`, only while `s` equals `ARGV[2]`.
const DELETE: &str = r#"
if ARGV[1] == 'if' and redis.call('HGET', KEYS[1], 's') ~= ARGV[2] then return 0 end
local old = redis.call('HGET', KEYS[1], 'i')
if old then redis.call('SREM', old, KEYS[1]) end
return redis.call('DEL', KEYS[1])
"#;

/// The encoded keys of the records in index set `KEYS[1]`; with
/// `ARGV[1] == 'delete'` also deletes them and the set.
const MEMBERS: &str = r#"
local out = {}
for _, g in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('HGET', g, 'i') == KEYS[1] then
    local k = redis.call('HGET', g, 'k')
    if k then table.insert(out, k) end
    if ARGV[1] == 'delete' then redis.call('DEL', g) end
  end
end
if ARGV[1] == 'delete' then redis.call('DEL', KEYS[1]) end
return out
"#;

/// Grants in the `[cluster]` Redis. Follows the cluster's current link, so
/// a reload that changes `[cluster]` needs no new store.
pub struct RedisStore {
    cluster: Arc<Cluster>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

fn hex_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The Redis key of a grant.
pub fn grant_key(link: &Link, key: &GrantKey) -> String {
    link.key("grant", &hex_sha256(&key.encode()))
}

/// The Redis key of a Zoom user's index set.
pub fn index_key(link: &Link, zoom_user_id: &str) -> String {
    link.key("grant-zoom-user", &hex_sha256(zoom_user_id))
}

/// The Redis key of a grant's cross-replica refresh lock: take it with
/// `Link::set_nx(&grant_lock_key(..), &link.owner_token(), ttl)` and free
/// it with `Link::delete_if_equal`, as `src/credentials/oauth.rs` does for
/// fetched tokens.
pub fn grant_lock_key(link: &Link, key: &GrantKey) -> String {
    link.key("grant-lock", &hex_sha256(&key.encode()))
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("Redis did not answer (see the cluster store log)".to_owned())
}

impl RedisStore {
    /// A store on `cluster`'s link.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        RedisStore { cluster }
    }

    fn link(&self) -> Result<Arc<Link>, StoreError> {
        self.cluster
            .link()
            .ok_or_else(|| StoreError::Unavailable("no [cluster] link".to_owned()))
    }

    async fn write(
        &self,
        key: &GrantKey,
        record: &StoredGrant,
        mode: &str,
        expected: &[u8],
    ) -> Result<CasOutcome, StoreError> {
        let link = self.link()?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(WRITE)
            .arg(2)
            .arg(grant_key(&link, key))
            .arg(index_key(&link, &record.zoom_user_id))
            .arg(record.sealed.as_slice())
            .arg(record.zoom_user_id.as_str())
            .arg(key.encode())
            .arg(mode)
            .arg(expected);
        let (done, sealed, zoom) = link
            .query::<(i64, Option<Vec<u8>>, Option<String>)>(&cmd)
            .await
            .ok_or_else(unavailable)?;
        if done == 1 {
            return Ok(CasOutcome::Swapped);
        }
        let current = match (sealed, zoom) {
            (Some(sealed), Some(zoom_user_id)) => Some(StoredGrant {
                zoom_user_id,
                sealed,
            }),
            (None, _) => None,
            (Some(_), None) => {
                return Err(StoreError::Corrupt(
                    "grant without a Zoom user id".to_owned(),
                ))
            }
        };
        Ok(CasOutcome::Conflict(current))
    }

    /// Deletes `key`'s grant (and its index entry): always, or only while
    /// its sealed bytes are `expected`. Whether one was deleted.
    async fn delete_if(&self, key: &GrantKey, expected: Option<&[u8]>) -> Result<bool, StoreError> {
        let link = self.link()?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(DELETE).arg(1).arg(grant_key(&link, key));
        match expected {
            Some(bytes) => cmd.arg("if").arg(bytes),
            None => cmd.arg("always"),
        };
        let n = link.query::<i64>(&cmd).await.ok_or_else(unavailable)?;
        Ok(n == 1)
    }

    async fn members(&self, zoom_user_id: &str, delete: bool) -> Result<Vec<GrantKey>, StoreError> {
        let link = self.link()?;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(MEMBERS)
            .arg(1)
            .arg(index_key(&link, zoom_user_id))
            .arg(if delete { "delete" } else { "list" });
        let encoded = link
            .query::<Vec<String>>(&cmd)
            .await
            .ok_or_else(unavailable)?;
        encoded
            .iter()
            .map(|e| {
                GrantKey::decode(e)
                    .ok_or_else(|| StoreError::Corrupt("unreadable grant key".to_owned()))
            })
            .collect()
    }
}

impl GrantStore for RedisStore {
    fn get<'a>(
        &'a self,
        key: &'a GrantKey,
    ) -> BoxFuture<'a, Result<Option<StoredGrant>, StoreError>> {
        Box::pin(async move {
            let link = self.link()?;
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(grant_key(&link, key)).arg("s").arg("z");
            let (sealed, zoom) = link
                .query::<(Option<Vec<u8>>, Option<String>)>(&cmd)
                .await
                .ok_or_else(unavailable)?;
            match (sealed, zoom) {
                (Some(sealed), Some(zoom_user_id)) => Ok(Some(StoredGrant {
                    zoom_user_id,
                    sealed,
                })),
                (None, _) => Ok(None),
                (Some(_), None) => Err(StoreError::Corrupt(
                    "grant without a Zoom user id".to_owned(),
                )),
            }
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a GrantKey,
        record: StoredGrant,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.write(key, &record, "put", b"").await.map(drop) })
    }

    fn delete<'a>(&'a self, key: &'a GrantKey) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.delete_if(key, None))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a GrantKey,
        expected: Option<&'a [u8]>,
        new: StoredGrant,
    ) -> BoxFuture<'a, Result<CasOutcome, StoreError>> {
        Box::pin(async move {
            match expected {
                Some(bytes) => self.write(key, &new, "cas", bytes).await,
                None => self.write(key, &new, "create", b"").await,
            }
        })
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a GrantKey,
        expected: &'a [u8],
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.delete_if(key, Some(expected)))
    }

    fn list_zoom_user<'a>(
        &'a self,
        zoom_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GrantKey>, StoreError>> {
        Box::pin(self.members(zoom_user_id, false))
    }

    fn delete_zoom_user<'a>(
        &'a self,
        zoom_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<GrantKey>, StoreError>> {
        Box::pin(self.members(zoom_user_id, true))
    }
}
