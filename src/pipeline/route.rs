//! Path normalization and route selection: host + method + normalized path →
//! route and path captures. Patterns are compiled at config build; matching
//! allocates only for captured values.

use std::sync::Arc;

use http::Method;

use crate::config::Route;

/// One segment of a compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    Capture(Box<str>),
}

/// A compiled route `path`: exact segments, `{name}` captures, and an
/// optional `/*` tail that matches the base itself and everything under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segs: Vec<Seg>,
    prefix: bool,
}

/// Captured path segments, in pattern order.
pub type Captures = Vec<(Arc<str>, String)>;

impl PathPattern {
    /// Compiles a pattern as written in the file.
    pub fn parse(p: &str) -> Result<Self, String> {
        if !p.starts_with('/') {
            return Err(format!("\"{p}\" must start with /"));
        }
        let (base, prefix) = match p.strip_suffix("/*") {
            Some(base) => (base, true),
            None => (p, false),
        };
        if base.contains('*') {
            return Err(format!("\"{p}\": `*` is only allowed as a final `/*`"));
        }
        let mut segs = Vec::new();
        if base == "/" && !prefix {
            return Ok(PathPattern {
                segs: vec![Seg::Lit("".into())],
                prefix,
            });
        }
        if base.is_empty() {
            return Ok(PathPattern { segs, prefix });
        }
        let mut names: Vec<&str> = Vec::new();
        let parts: Vec<&str> = base[1..].split('/').collect();
        let last = parts.len() - 1;
        for (i, s) in parts.iter().enumerate() {
            if s.is_empty() && !(i == last && !prefix && i > 0) {
                return Err(format!("\"{p}\" has an empty segment"));
            }
            if *s == "." || *s == ".." {
                return Err(format!("\"{p}\" has a dot segment"));
            }
            if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let valid =
                    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(format!(
                        "\"{p}\": capture `{{{name}}}` needs a name of letters, digits and _"
                    ));
                }
                if names.contains(&name) {
                    return Err(format!("\"{p}\": capture `{{{name}}}` appears twice"));
                }
                names.push(name);
                segs.push(Seg::Capture(name.into()));
            } else if s.contains('{') || s.contains('}') {
                return Err(format!(
                    "\"{p}\": a capture must be a whole segment like `{{name}}`"
                ));
            } else {
                segs.push(Seg::Lit((*s).into()));
            }
        }
        Ok(PathPattern { segs, prefix })
    }

    /// Names of the `{name}` captures.
    pub fn capture_names(&self) -> Vec<&str> {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Capture(n) => Some(&**n),
                Seg::Lit(_) => None,
            })
            .collect()
    }

    /// Whether `prefix` (like `/opentok`) is made of this pattern's leading
    /// literal segments, so stripping it is always segment-aligned.
    pub fn has_literal_prefix(&self, prefix: &str) -> bool {
        if prefix.is_empty() {
            return false;
        }
        let parts: Vec<&str> = prefix[1..].split('/').collect();
        parts.len() <= self.segs.len()
            && parts
                .iter()
                .zip(&self.segs)
                .all(|(p, s)| matches!(s, Seg::Lit(l) if &**l == *p))
    }

    /// Matches a normalized path; returns captured values on success.
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let mut caps = Vec::new();
        let mut it = path[1..].split('/');
        for seg in &self.segs {
            let part = it.next()?;
            match seg {
                Seg::Lit(l) if **l == *part => {}
                Seg::Lit(_) => return None,
                Seg::Capture(_) if part.is_empty() => return None,
                Seg::Capture(name) => caps.push((Arc::from(&**name), part.to_owned())),
            }
        }
        match it.next() {
            None => Some(caps),
            Some(_) if self.prefix => Some(caps),
            Some(_) => None,
        }
    }
}

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
pub enum Selection {
    /// The first route matching host, path and method.
    Found {
        route: Arc<Route>,
        captures: Captures,
    },
    /// Routes match host and path, none the method; their methods.
    MethodNotAllowed(Vec<Method>),
    /// Nothing matches host and path.
    NotFound,
}

/// Methods no route ever forwards: TRACE would reflect the injected
/// credentials back to the caller (RFC 9110 section 9.3.8), CONNECT would
/// turn the gateway into a tunnel. `check` refuses them in `methods`; a
/// route without `methods` takes every other method.
pub fn never_forwarded(method: &Method) -> bool {
    *method == Method::TRACE || *method == Method::CONNECT
}

/// What a route without `methods` accepts, as announced in `Allow`.
pub const ANY_METHOD: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Picks the first route in file order whose host, path and method match.
/// `host` is the request's host, lower-cased, without port. TRACE and
/// CONNECT match no route ([`never_forwarded`]): a path that exists answers
/// 405 with the route's methods.
pub fn select(routes: &[Arc<Route>], host: Option<&str>, method: &Method, path: &str) -> Selection {
    let mut allow: Vec<Method> = Vec::new();
    let refused = never_forwarded(method);
    for route in routes {
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
                route: route.clone(),
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
