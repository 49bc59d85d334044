//! Live reload: watch every file the configuration reads and rebuild when
//! one of them changes (or on SIGHUP).
//!
//! Watched: the configuration file, its `file:` references, the TLS
//! certificate and key, CA bundles ([`crate::config::Snapshot::files`]).
//! The watcher watches the directory holding each file as written and the
//! directory of the file it resolves to (symlinks followed), so it sees
//! in-place writes, an editor's rename over the file, and the way
//! Kubernetes updates ConfigMap and Secret volumes: the files are symlinks
//! through `..data`, and an update swaps the `..data` symlink to a new
//! directory, which changes none of the files' own names. An event naming
//! a watched file, or a `..`-prefixed entry (the kubelet's `..data`,
//! `..data_tmp` and timestamped directories), makes the watcher compare the
//! files' contents with what it saw last (a SHA-256 over them); a reload
//! happens only when they differ. Other files in the same directories (the
//! grant vault's redb file, an audit log) wake nothing. The debounced rebuild is complete (certificates included) and
//! swapped in only on success; a bad file is logged and the old
//! configuration keeps serving.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::State;

/// How long to wait for an editor's (or the kubelet's) burst of events to
/// settle.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// The directories to watch for `files`: each file's own directory and the
/// directory of the file it resolves to.
fn directories(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let parent = |p: &Path| {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()
        };
        dirs.insert(parent(f));
        if let Ok(real) = std::fs::canonicalize(f) {
            dirs.insert(parent(&real));
        }
    }
    dirs
}

/// What `files` hold now: their contents hashed in order (a missing or
/// unreadable file hashes as such, so its return is a change too).
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update([0]),
        }
    }
    h.finalize().into()
}

/// The files of the configuration in force (the configuration file alone
/// if none is loaded yet).
fn watched_files(state: &State) -> Vec<PathBuf> {
    let files = state.live.load().settings.files.clone();
    if files.is_empty() {
        vec![state.config_path().to_owned()]
    } else {
        files
    }
}

/// The names an event must carry to matter: the watched files' own names
/// and those of what they resolve to.
fn names(files: &[PathBuf]) -> HashSet<OsString> {
    let mut names = HashSet::new();
    for f in files {
        names.extend(f.file_name().map(ToOwned::to_owned));
        if let Ok(real) = std::fs::canonicalize(f) {
            names.extend(real.file_name().map(ToOwned::to_owned));
        }
    }
    names
}

/// Whether an event on `path` may have changed a watched file.
fn relevant(path: &Path, names: &HashSet<OsString>) -> bool {
    path.file_name()
        .is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b".."))
}

/// Keeps the watched directories equal to `wanted`.
fn sync_watches(
    watcher: &mut RecommendedWatcher,
    watching: &mut BTreeSet<PathBuf>,
    wanted: BTreeSet<PathBuf>,
) {
    for gone in watching.difference(&wanted) {
        let _ = watcher.unwatch(gone);
    }
    for dir in wanted.difference(watching) {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a configuration directory; changes there need SIGHUP");
        }
    }
    *watching = wanted;
}

/// Watches the configuration's files; the returned task reloads when their
/// contents change, until `shutdown` flips (the gateway's shutdown waits for
/// it: nothing it holds, such as the grant vault's file lock, outlives the
/// gateway).
pub fn watcher(
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) -> notify::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut files = watched_files(&state);
    let watched_names = Arc::new(RwLock::new(names(&files)));
    let filter = watched_names.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let names = filter.read().expect("watched names lock");
            if !matches!(ev.kind, notify::EventKind::Access(_))
                && ev.paths.iter().any(|p| relevant(p, &names))
            {
                let _ = tx.send(());
            }
        }
    })?;
    let mut watching = BTreeSet::new();
    sync_watches(&mut watcher, &mut watching, directories(&files));
    let mut seen = fingerprint(&files);
    Ok(async move {
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                _ = shutdown.wait_for(|s| *s) => break,
            }
            tokio::select! {
                () = tokio::time::sleep(DEBOUNCE) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
            while rx.try_recv().is_ok() {}
            // Taken before the rebuild reads the files: a change made
            // while it reads is seen by the next event.
            let now = fingerprint(&files);
            if now != seen {
                seen = now;
                state.reload("file change").await;
            }
            // A new configuration may read other files.
            let wanted = watched_files(&state);
            if wanted != files {
                files = wanted;
                *watched_names.write().expect("watched names lock") = names(&files);
                sync_watches(&mut watcher, &mut watching, directories(&files));
                seen = fingerprint(&files);
            }
        }
    })
}
