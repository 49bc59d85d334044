//! The leak check: secrets, tokens and keys must appear nowhere a gateway
//! writes (logs, audit, metrics, answers).

/// Asserts that none of `forbidden` (what, value) appears in any of
/// `places` or `responses`.
pub fn assert_nowhere(forbidden: &[(&str, String)], places: &[(&str, &str)], responses: &[String]) {
    for (what, needle) in forbidden {
        assert!(!needle.is_empty(), "{what}: an empty needle proves nothing");
        for (place, hay) in places {
            assert!(!hay.contains(needle.as_str()), "{what} found in {place}");
        }
        for t in responses {
            assert!(
                !t.contains(needle.as_str()),
                "{what} found in a response: {t}"
            );
        }
    }
}
