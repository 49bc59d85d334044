//! Live reload: watch the configuration file (in-place writes and
//! editor-style atomic renames) and rebuild on change or SIGHUP.
//!
//! The watcher debounces, builds a complete snapshot (certificates included)
//! and swaps it in only on success; a bad file is logged and the old snapshot
//! keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::State;

/// How long to wait for an editor's burst of events to settle.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Watches the directory holding the config file (so a rename over the file
/// is seen) and reloads when the file changes, until `shutdown` flips.
pub fn spawn_watcher(state: Arc<State>, mut shutdown: watch::Receiver<bool>) -> notify::Result<()> {
    let path = state.config_path().to_owned();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = path.file_name().map(|n| n.to_owned());
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let ours = ev.paths.iter().any(|p| p.file_name() == name.as_deref());
            let relevant = !matches!(ev.kind, notify::EventKind::Access(_));
            if ours && relevant {
                let _ = tx.send(());
            }
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { break },
                _ = shutdown.wait_for(|s| *s) => break,
            }
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            state.reload("file change").await;
        }
    });
    Ok(())
}
