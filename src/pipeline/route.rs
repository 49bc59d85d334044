//! Path normalization and route selection: host + method + normalized path →
//! route and path captures. Patterns are compiled at config build; matching
//! allocates only for captured values.

use http::Method;

pub use crate::config::pattern::{Captures, PathPattern};
use crate::config::{Route, ANY_METHOD};
pub use crate::net::never_forwarded;

/// Why a path is refused before routing (docs/BEHAVIOUR.md item 9).
pub type PathRejection = &'static str;

/// Percent-decodes and validates a request path. Refuses encoded `/` or `\`,
/// raw `\`, dot segments (also encoded), empty segments, control characters,
/// invalid percent-encoding and invalid UTF-8. A single trailing `/` is kept.
pub fn normalize(raw: &str) -> Result<String, PathRejection> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("the path must start with /");
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err("invalid percent-encoding");
                };
                let d = (h * 16 + l) as u8;
                if d == b'/' || d == b'\\' {
                    return Err("encoded / or \\ in the path");
                }
                out.push(d);
                i += 3;
            }
            b'\\' => return Err("\\ in the path"),
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    let path = String::from_utf8(out).map_err(|_| "the decoded path is not valid UTF-8")?;
    if path.chars().any(char::is_control) {
        return Err("control character in the path");
    }
    let parts = path[1..].split('/');
    let mut n = path[1..].split('/').count();
    for part in parts {
        n -= 1;
        // The last segment may be empty: "/" itself or a trailing slash.
        if part.is_empty() && n > 0 {
            return Err("empty path segment");
        }
        if part == "." || part == ".." {
            return Err("dot segment in the path");
        }
    }
    Ok(path)
}

/// The outcome of route selection.
#[derive(Debug)]
pub enum Selection<'r, R> {
    /// The first route matching host, path and method.
    Found { route: &'r R, captures: Captures },
    /// Routes match host and path, none the method; their methods.
    MethodNotAllowed(Vec<Method>),
    /// Nothing matches host and path.
    NotFound,
}

/// Picks the first route in file order whose host, path and method match.
/// `host` is the request's host, lower-cased, without port. TRACE and
/// CONNECT match no route ([`never_forwarded`]): a path that exists answers
/// 405 with the route's methods.
pub fn select<'r, R: AsRef<Route>>(
    routes: &'r [R],
    host: Option<&str>,
    method: &Method,
    path: &str,
) -> Selection<'r, R> {
    let mut allow: Vec<Method> = Vec::new();
    let refused = never_forwarded(method);
    for entry in routes {
        let route = entry.as_ref();
        if let Some(h) = &route.host {
            if host != Some(h.as_str()) {
                continue;
            }
        }
        let Some(captures) = route.pattern.matches(path) else {
            continue;
        };
        let accepts = match &route.methods {
            Some(ms) => ms.contains(method),
            None => !refused,
        };
        if accepts {
            return Selection::Found {
                route: entry,
                captures,
            };
        }
        let methods = route.methods.as_deref().unwrap_or(&ANY_METHOD);
        for m in methods {
            if !allow.contains(m) {
                allow.push(m.clone());
            }
        }
    }
    if allow.is_empty() {
        Selection::NotFound
    } else {
        Selection::MethodNotAllowed(allow)
    }
}

/// The path sent upstream: `strip_prefix` removed (segment-aligned), then
/// re-encoded canonically so the upstream sees exactly what was matched.
pub fn upstream_path(normalized: &str, strip_prefix: Option<&str>) -> String {
    let rest = match strip_prefix {
        Some(sp) => match normalized.strip_prefix(sp) {
            Some("") => "/",
            Some(r) if r.starts_with('/') => r,
            _ => normalized,
        },
        None => normalized,
    };
    let mut out = String::with_capacity(rest.len() + 8);
    for seg in rest[1..].split('/') {
        out.push('/');
        out.extend(percent_encoding::utf8_percent_encode(seg, SEGMENT));
    }
    out
}

/// Characters encoded in an upstream path segment: everything but RFC 3986
/// unreserved characters and the sub-delimiters other than `;` (which some
/// servers treat as a parameter separator), plus `:` and `@`.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b'=')
    .remove(b':')
    .remove(b'@');

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn normalization_rejects_what_behaviour_item_9_lists() {
        let rejected = [
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a%5Cb",
            "/a\\b",
            "/a/../b",
            "/a/./b",
            "/a/%2e%2e/b",
            "/a/%2E/b",
            "/a/.%2e",
            "//a",
            "/a//b",
            "/a%00b",
            "/a%0ab",
            "/a%1fb",
            "/a%7fb",
            "/a%zz",
            "/a%4",
            "/a%",
            "/%c0%af",
            "/%ff",
            "/..",
            "/.",
            "*",
            "a/b",
            "/a%c2%85b",
        ];
        for p in rejected {
            assert!(normalize(p).is_err(), "{p} should be rejected");
        }
    }

    #[test]
    fn normalization_decodes_the_rest() {
        assert_eq!(normalize("/").unwrap(), "/");
        assert_eq!(normalize("/a/b/").unwrap(), "/a/b/");
        assert_eq!(normalize("/caf%C3%A9/%41").unwrap(), "/café/A");
        assert_eq!(normalize("/a;b/c%3Fd").unwrap(), "/a;b/c?d");
        assert_eq!(normalize("/a/.b/..c").unwrap(), "/a/.b/..c");
    }

    #[test]
    fn exact_prefix_and_capture_patterns() {
        let p = PathPattern::parse("/api/orgs/{tenant}/meetings").unwrap();
        let caps = p.matches("/api/orgs/acme/meetings").unwrap();
        assert_eq!(caps, vec![(Arc::from("tenant"), "acme".to_owned())]);
        assert!(p.matches("/api/orgs/acme/meetings/1").is_none());
        assert!(p.matches("/api/orgs//meetings").is_none());
        assert!(p.matches("/api/orgs/acme").is_none());

        let p = PathPattern::parse("/x/*").unwrap();
        for ok in ["/x", "/x/", "/x/a", "/x/a/b"] {
            assert!(p.matches(ok).is_some(), "{ok}");
        }
        for no in ["/", "/xy", "/y/x"] {
            assert!(p.matches(no).is_none(), "{no}");
        }
        let all = PathPattern::parse("/*").unwrap();
        assert!(all.matches("/").is_some() && all.matches("/a/b").is_some());
        let root = PathPattern::parse("/").unwrap();
        assert!(root.matches("/").is_some() && root.matches("/a").is_none());
    }

    #[test]
    fn bad_patterns_are_refused() {
        for p in [
            "x",
            "/a/*/b",
            "/a//b",
            "/a/{}",
            "/a/{x}/{x}",
            "/a/b{x}",
            "/a/..",
            "/a*",
        ] {
            assert!(PathPattern::parse(p).is_err(), "{p}");
        }
    }

    #[test]
    fn literal_prefixes() {
        let p = PathPattern::parse("/opentok/v2/*").unwrap();
        assert!(p.has_literal_prefix("/opentok"));
        assert!(p.has_literal_prefix("/opentok/v2"));
        assert!(!p.has_literal_prefix("/open"));
        assert!(!p.has_literal_prefix("/opentok/v2/x"));
    }

    #[test]
    fn upstream_path_strips_and_reencodes() {
        assert_eq!(upstream_path("/opentok/v2/x", Some("/opentok")), "/v2/x");
        assert_eq!(upstream_path("/opentok", Some("/opentok")), "/");
        assert_eq!(upstream_path("/café/a b", None), "/caf%C3%A9/a%20b");
        assert_eq!(upstream_path("/a;b/c?d#e", None), "/a%3Bb/c%3Fd%23e");
        assert_eq!(upstream_path("/a/", None), "/a/");
    }
}
