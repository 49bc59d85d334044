//! Logging set-up: tracing with `RUST_LOG`-style filtering, JSON or text.
//! Logs go to stderr so stdout stays free for the audit trail (`path = "-"`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `format` is `json` or `text`; by default
/// JSON when stderr is not a terminal.
pub fn init_logging(format: Option<&str>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(f) => f.eq_ignore_ascii_case("json"),
        None => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
