//! The grant vault of the process: one, kept across reloads while its
//! store (the file, or Redis with `[cluster]`) is unchanged; a reload that
//! changes only the keys gives it the new keyring. On Redis its refreshes
//! hold the cluster lock of the grant (one refresh across replicas); the
//! file store is one replica's own, so its in-process single-flight is
//! enough.

use std::sync::{Arc, Mutex};

use crate::cluster::Cluster;
use crate::config::GrantSettings;
use crate::vault::{FileStore, GrantStore, Keyring, RedisStore, Vault};

/// Holds the vault and what its store was opened from.
pub struct VaultSlot {
    held: Mutex<Option<(String, Arc<Vault>)>>,
    cluster: Arc<Cluster>,
}

impl VaultSlot {
    pub fn new(cluster: Arc<Cluster>) -> Self {
        VaultSlot {
            held: Mutex::new(None),
            cluster,
        }
    }

    /// The vault for `grants` (none without `[grants]`).
    ///
    /// # Errors
    /// The keys do not make a keyring, or the file store cannot be opened.
    pub fn sync(&self, grants: Option<&GrantSettings>) -> Result<Option<Arc<Vault>>, String> {
        let mut held = self.held.lock().expect("vault slot lock");
        let Some(g) = grants else {
            *held = None;
            return Ok(None);
        };
        let previous: Vec<(&str, &[u8])> = g
            .previous_keys
            .iter()
            .map(|(id, k)| (id.as_str(), k.0.as_slice()))
            .collect();
        let keyring =
            Keyring::new((&g.key_id, &g.key.0), &previous).map_err(|e| format!("[grants]: {e}"))?;
        let store_key = match &g.path {
            Some(p) => format!("file:{}", p.display()),
            None => "cluster".to_owned(),
        };
        if let Some((k, vault)) = held.as_ref() {
            if *k == store_key {
                vault.set_keyring(Arc::new(keyring));
                return Ok(Some(vault.clone()));
            }
        }
        let vault = match &g.path {
            Some(p) => {
                let store: Arc<dyn GrantStore> = Arc::new(
                    FileStore::open(p)
                        .map_err(|e| format!("[grants] path {}: {e}", p.display()))?,
                );
                Vault::new(Arc::new(keyring), store)
            }
            // Shared by the replicas: refreshes also take the cluster lock.
            None => Vault::new(
                Arc::new(keyring),
                Arc::new(RedisStore::new(self.cluster.clone())),
            )
            .with_cluster_lock(self.cluster.clone(), crate::zoom_user::DEFAULT_TIMEOUT),
        };
        let vault = Arc::new(vault);
        *held = Some((store_key, vault.clone()));
        Ok(Some(vault))
    }

    /// The vault in use.
    pub fn current(&self) -> Option<Arc<Vault>> {
        self.held
            .lock()
            .expect("vault slot lock")
            .as_ref()
            .map(|(_, v)| v.clone())
    }
}
