//! Timing rules for fetched tokens that bound how often the token endpoint
//! is asked, whatever an upstream answers.

use std::time::{Duration, Instant};

/// After an upstream's 401 made this replica drop its token, further 401s
/// drop nothing for this long (the 10 s of unknown-kid JWKS refetches): an
/// upstream path answering 401 to every token would otherwise turn each
/// request into a token request, and the platform's rate limit on its token
/// endpoint into an outage of every route using the credential. Per replica:
/// with `[cluster]`, N replicas refetch at most N times per cooldown.
pub const REJECTION_COOLDOWN: Duration = Duration::from_secs(10);

/// Whether a 401 seen at `now` may drop the token, the previous 401-driven
/// drop having happened at `last` (if ever).
pub fn rejection_may_drop(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|l| now.saturating_duration_since(l) >= REJECTION_COOLDOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rejection_drop_per_cooldown() {
        let t0 = Instant::now();
        assert!(rejection_may_drop(None, t0), "the first 401 drops");
        for inside in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_secs(9),
        ] {
            assert!(!rejection_may_drop(Some(t0), t0 + inside), "{inside:?}");
        }
        assert!(rejection_may_drop(Some(t0), t0 + REJECTION_COOLDOWN));
        assert!(rejection_may_drop(Some(t0), t0 + Duration::from_secs(60)));
        // A clock read before `last` (another thread's Instant) is inside.
        assert!(!rejection_may_drop(Some(t0 + Duration::from_secs(1)), t0));
    }
}
