//! What an operator troubleshooting the gateway relies on: options that
//! refuse a typo rather than silently doing something else.

use std::process::{Command, Output};

fn meetgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_meetgate"));
    cmd.args(args).env_remove("MEETGATE_LOG_FORMAT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the meetgate binary runs")
}

#[test]
fn a_misspelled_log_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let missing = missing.to_str().unwrap();
    for (args, env) in [
        (
            vec!["--log-format", "jsn", "check", "--config", missing],
            vec![],
        ),
        (
            vec!["check", "--config", missing],
            vec![("MEETGATE_LOG_FORMAT", "txt")],
        ),
    ] {
        let out = meetgate(&args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains("invalid value"), "{stderr}");
        assert!(
            stderr.contains("json") && stderr.contains("text"),
            "{stderr}"
        );
    }
    // Both spellings of a valid format pass parsing: `check` then runs and
    // fails on the missing file (exit 1), not on the option.
    for format in ["json", "TEXT"] {
        let out = meetgate(&["--log-format", format, "check", "--config", missing], &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
