//! Replays the fuzz corpora and crash reproductions (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the same entry points the fuzz
//! targets call, without libFuzzer: every input that once mattered stays
//! covered by `cargo test`. A target whose corpus is missing or empty fails,
//! so this cannot silently test nothing.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is missing or empty: the replay would test nothing"
    );
    let regressions = files(&root.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a readable corpus file");
        // A panic names the file that caused it.
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{target}: {} panicked", path.display());
    }
}

#[test]
fn route() {
    replay("route", meetgate::fuzzing::route);
}

#[test]
fn config() {
    replay("config", meetgate::fuzzing::config);
}

#[test]
fn jwt() {
    replay("jwt", meetgate::fuzzing::jwt);
}

#[test]
fn jwks() {
    replay("jwks", meetgate::fuzzing::jwks);
}

#[test]
fn zoom_app_context() {
    replay("zoom_app_context", meetgate::fuzzing::zoom_app_context);
}

#[test]
fn webhook() {
    replay("webhook", meetgate::fuzzing::webhook);
}

#[test]
fn respond_body() {
    replay("respond_body", meetgate::fuzzing::respond_body);
}
