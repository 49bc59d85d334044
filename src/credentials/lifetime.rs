//! Timing rules for fetched tokens that bound how often the token endpoint
//! is asked, whatever it or an upstream answers.

use std::time::{Duration, Instant};

/// Lifetime assumed when a token answer has no `expires_in` (RFC 6749
/// section 5.1 makes it optional).
pub const DEFAULT_EXPIRES_IN: u64 = 300;

/// No token is refreshed sooner than this after it was fetched: 3 s, the
/// shortest refresh the contract names (a 63 s token with a 60 s margin is
/// refreshed after 3 s, docs/BEHAVIOUR.md item 29), so one credential costs its
/// token endpoint at most one refresh per 3 s.
pub const MIN_REFRESH_SECS: u64 = 3;

/// The longest lifetime taken from a token endpoint: 366 days. Anything
/// longer (up to `u64::MAX`, which used to wrap the expiry) is a broken or
/// hostile answer.
pub const MAX_EXPIRES_IN: u64 = 366 * 24 * 3600;

/// The lifetime a token answer's `expires_in` states, in seconds: absent or
/// `null` is [`DEFAULT_EXPIRES_IN`]; a JSON number or a string holding one
/// is taken (a fraction rounded down) when it lies in
/// `MIN_REFRESH_SECS..=MAX_EXPIRES_IN`. A token that cannot outlive the
/// minimum refresh interval (0, 1, 2) would be expired most of the time it
/// is held, so it is as unusable as a negative, huge or non-numeric value.
///
/// # Errors
/// Why the value is unusable; the fetch then fails and backs off like any
/// other failed fetch.
pub fn parse_expires_in(value: Option<&serde_json::Value>) -> Result<u64, String> {
    use serde_json::Value;
    let secs = match value {
        None | Some(Value::Null) => return Ok(DEFAULT_EXPIRES_IN),
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().and_then(whole_secs)),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .ok()
            .or_else(|| s.parse::<f64>().ok().and_then(whole_secs)),
        Some(_) => None,
    };
    match secs {
        Some(s) if (MIN_REFRESH_SECS..=MAX_EXPIRES_IN).contains(&s) => Ok(s),
        Some(s) => Err(format!(
            "absurd expires_in {s} (accepted: {MIN_REFRESH_SECS} to {MAX_EXPIRES_IN} seconds)"
        )),
        None => Err("expires_in is not a non-negative number".to_owned()),
    }
}

/// A finite, non-negative number of seconds rounded down (saturating).
fn whole_secs(f: f64) -> Option<u64> {
    (f.is_finite() && f >= 0.0).then_some(f as u64)
}

/// When to refresh a token fetched at `fetched_at` (Unix seconds) living
/// `expires_in` seconds: `refresh_before` seconds ahead of expiry (no
/// minimum lifetime: 63 s with a 60 s margin refreshes after 3 s); a token
/// shorter than the margin is refreshed half-way; never sooner than
/// [`MIN_REFRESH_SECS`] after the fetch. With `expires_in` from
/// [`parse_expires_in`] the result is never past the expiry. Saturating.
pub fn refresh_at(fetched_at: u64, expires_in: u64, refresh_before: u64) -> u64 {
    let ahead = if expires_in > refresh_before {
        expires_in - refresh_before
    } else {
        expires_in / 2
    };
    fetched_at.saturating_add(ahead.max(MIN_REFRESH_SECS))
}

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
    use serde_json::json;

    #[test]
    fn expires_in_bounds() {
        let parse = |v: serde_json::Value| parse_expires_in(Some(&v));
        assert_eq!(parse_expires_in(None), Ok(DEFAULT_EXPIRES_IN));
        assert_eq!(parse(json!(null)), Ok(DEFAULT_EXPIRES_IN));
        for (v, want) in [
            (json!(3599), 3599),
            (json!("3599"), 3599),
            (json!(3599.9), 3599),
            (json!("3599.5"), 3599),
            (json!(MIN_REFRESH_SECS), MIN_REFRESH_SECS),
            (json!(MAX_EXPIRES_IN), MAX_EXPIRES_IN),
        ] {
            assert_eq!(parse(v.clone()), Ok(want), "{v}");
        }
        for v in [
            json!(0),
            json!(1),
            json!(2),
            json!("0"),
            json!(0.5),
            json!(MAX_EXPIRES_IN + 1),
            json!(u64::MAX),
            json!(u64::MAX.to_string()),
            json!(1e300),
        ] {
            let e = parse(v.clone()).unwrap_err();
            assert!(e.starts_with("absurd expires_in"), "{v}: {e}");
        }
        for v in [
            json!(-1),
            json!(-3599),
            json!(-0.5),
            json!("-1"),
            json!("soon"),
            json!(""),
            json!("inf"),
            json!("NaN"),
            json!(true),
            json!([3599]),
            json!({ "s": 3599 }),
        ] {
            assert!(parse(v.clone()).is_err(), "{v}");
        }
    }

    #[test]
    fn refresh_time_has_a_floor_and_saturates() {
        assert_eq!(refresh_at(1000, 3599, 60), 4539);
        assert_eq!(refresh_at(1000, 63, 60), 1003, "docs/BEHAVIOUR.md item 29");
        assert_eq!(refresh_at(1000, 62, 60), 1003, "2 s raised to the floor");
        assert_eq!(refresh_at(1000, 30, 60), 1015, "half-way");
        assert_eq!(
            refresh_at(1000, 4, 60),
            1003,
            "half-way raised to the floor"
        );
        for e in [MIN_REFRESH_SECS, 5, 61, 120, MAX_EXPIRES_IN] {
            let r = refresh_at(1000, e, 60);
            assert!((1003..=1000 + e).contains(&r), "{e}: {r}");
        }
        // Unreachable through parse_expires_in, but no wrap all the same.
        assert_eq!(refresh_at(1000, 0, 60), 1003);
        assert_eq!(refresh_at(u64::MAX - 1, 3599, 60), u64::MAX);
        assert_eq!(refresh_at(1000, u64::MAX, 60), u64::MAX);
        assert_eq!(refresh_at(1000, u64::MAX, u64::MAX), 1000 + u64::MAX / 2);
    }

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
