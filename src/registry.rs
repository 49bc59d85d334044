//! State that outlives configuration snapshots: one entry per configured
//! item (an identity's keys, a credential's token source), each with its
//! background task, kept across reloads while its settings are unchanged.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The one fingerprint function for registry keys: SHA-256 over the parts,
/// each length-prefixed (so `["ab", "c"]` and `["a", "bc"]` differ), as hex.
/// Secrets may be among the parts: only the digest is ever stored or shown.
pub fn fingerprint(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Entries keyed by a digest of their settings, each with a running task.
pub struct TaskRegistry<T> {
    entries: Mutex<HashMap<String, (Arc<T>, tokio::task::AbortHandle)>>,
}

impl<T> Default for TaskRegistry<T> {
    fn default() -> Self {
        TaskRegistry {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Send + Sync + 'static> TaskRegistry<T> {
    /// Makes the registry hold exactly the `wanted` entries `(name,
    /// settings)`, each keyed by the [`fingerprint`] of its name, settings
    /// and `trust` (the fingerprint of the roots its client trusts, so a
    /// changed CA file starts a new entry): an entry whose key is already
    /// held is kept (its task keeps running); a new key gets `make()` and
    /// `run(entry)` spawned; entries no longer wanted have their task
    /// stopped. Returns name → entry.
    pub fn sync<F, Fut>(
        &self,
        wanted: impl IntoIterator<Item = (String, String)>,
        trust: &str,
        mut make: impl FnMut(&str) -> Arc<T>,
        run: F,
    ) -> HashMap<String, Arc<T>>
    where
        F: Fn(Arc<T>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut entries = self.entries.lock().expect("registry lock");
        let mut out = HashMap::new();
        let mut keep = HashSet::new();
        for (name, settings) in wanted {
            let key = fingerprint(&[name.as_bytes(), settings.as_bytes(), trust.as_bytes()]);
            keep.insert(key.clone());
            let (entry, _) = entries.entry(key).or_insert_with(|| {
                let entry = make(&name);
                let task = tokio::spawn(run(entry.clone()));
                (entry, task.abort_handle())
            });
            out.insert(name, entry.clone());
        }
        entries.retain(|k, (_, task)| {
            let kept = keep.contains(k);
            if !kept {
                task.abort();
            }
            kept
        });
        out
    }
}

impl<T> Drop for TaskRegistry<T> {
    fn drop(&mut self) {
        if let Ok(entries) = self.entries.lock() {
            for (_, task) in entries.values() {
                task.abort();
            }
        }
    }
}
