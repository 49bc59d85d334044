//! Logging set-up: tracing with `RUST_LOG`-style filtering, JSON or text.
//! Logs go to stderr so stdout stays free for the audit trail (`path = "-"`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (fields flattened).
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber: `format`, by default JSON when stderr
/// is not a terminal.
pub fn init_logging(format: Option<LogFormat>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(f) => f == LogFormat::Json,
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

/// A budget of log lines per second for events a client can cause at will
/// (refused requests): past it, lines are counted instead of written, and
/// the next line written says how many were left out.
pub struct LogBudget {
    per_second: u32,
    /// The second (since the process started) the count is for.
    second: AtomicU64,
    count: AtomicU32,
    skipped: AtomicU64,
}

impl LogBudget {
    pub const fn new(per_second: u32) -> Self {
        LogBudget {
            per_second,
            second: AtomicU64::new(0),
            count: AtomicU32::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Whether a line may be written now; `Some(n)`: yes, after `n` left
    /// out since the last one written.
    pub fn admit(&self) -> Option<u64> {
        static START: OnceLock<Instant> = OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_secs() + 1;
        let seen = self.second.load(Ordering::Relaxed);
        // Only forward: a thread that read the clock just before a second
        // began must not start that second's count again.
        if now > seen
            && self
                .second
                .compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.skipped.swap(0, Ordering::Relaxed))
        } else {
            self.skipped.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogBudget;

    #[test]
    fn a_budget_admits_its_lines_then_counts_the_rest() {
        let budget = LogBudget::new(3);
        let admitted: Vec<_> = (0..10).map(|_| budget.admit()).collect();
        // Within one second (the test takes far less; if it straddles a
        // second boundary, the new second's budget starts over).
        let written = admitted.iter().filter(|a| a.is_some()).count();
        assert!((3..=6).contains(&written), "{admitted:?}");
        assert_eq!(admitted[0], Some(0));
        assert!(admitted[3..].iter().any(Option::is_none), "{admitted:?}");
    }
}
