//! Route `path` patterns, compiled at build: exact segments, `{name}`
//! captures and an optional `/*` tail. Matching allocates only for captured
//! values.

use std::sync::Arc;

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
        if let Some(e) = foreign_syntax(p) {
            return Err(e);
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

    /// Whether every path this pattern's `other` matches is matched by this
    /// one too (captures aside): `/*` covers everything, `/a/*` covers `/a`,
    /// `/a/b` and `/a/{id}/*`, a `{param}` segment covers any literal one
    /// (but not an empty one), a literal covers only itself.
    pub fn covers(&self, other: &PathPattern) -> bool {
        let (mine, theirs) = (self.segs.len(), other.segs.len());
        // Fewer segments cover more only as a prefix; more never cover fewer
        // (a path with exactly `theirs` segments is always matched by
        // `other`).
        let lengths = match mine.cmp(&theirs) {
            std::cmp::Ordering::Less => self.prefix,
            std::cmp::Ordering::Equal => self.prefix || !other.prefix,
            std::cmp::Ordering::Greater => false,
        };
        lengths
            && self.segs.iter().zip(&other.segs).all(|pair| match pair {
                (Seg::Capture(_), Seg::Capture(_)) => true,
                (Seg::Capture(_), Seg::Lit(l)) => !l.is_empty(),
                (Seg::Lit(a), Seg::Lit(b)) => a == b,
                (Seg::Lit(_), Seg::Capture(_)) => false,
            })
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

/// What a pattern written in another router's syntax looks like, said with
/// ours: `:id` and `<id>` parameters, regular expressions, a query or
/// fragment (never part of the matched path), typed or catch-all captures.
/// `None` when nothing foreign is seen.
pub fn foreign_syntax(p: &str) -> Option<String> {
    const OURS: &str = "paths here are literal segments, `{name}` captures one segment and a \
                        final `/*` matches the rest (no regular expressions)";
    let what = if let Some(seg) = p.split('/').find(|s| {
        s.strip_prefix(':')
            .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
    }) {
        format!(
            "`{seg}` is a parameter in another router's syntax: write `{{{}}}`",
            &seg[1..]
        )
    } else if let Some(seg) = p
        .split('/')
        .find(|s| s.starts_with('<') && s.ends_with('>') && s.len() > 2)
    {
        let name = seg[1..seg.len() - 1].rsplit(':').next().unwrap_or_default();
        format!("`{seg}` is a parameter in another router's syntax: write `{{{name}}}`")
    } else if let Some(seg) = p
        .split('/')
        .find(|s| s.starts_with('{') && s.ends_with('}') && s[1..].contains([':', '*', '.']))
    {
        format!("`{seg}`: a capture takes a plain name and no pattern or `*` (a final `/*` matches the rest)")
    } else if p.contains(['?', '#']) {
        "a request path never holds `?` or `#` here (the query and fragment are not matched): the \
         route could never match"
            .to_owned()
    } else if p.contains(['(', ')', '[', ']', '\\', '^', '|'])
        || p.contains(".*")
        || p.contains(".+")
        || p.ends_with('$')
    {
        "looks like a regular expression, which is not supported".to_owned()
    } else {
        return None;
    };
    Some(format!("\"{p}\": {what}; {OURS}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_exact() {
        let covers = |a: &str, b: &str| {
            PathPattern::parse(a)
                .unwrap()
                .covers(&PathPattern::parse(b).unwrap())
        };
        for (a, b) in [
            ("/*", "/"),
            ("/*", "/anything/{x}/*"),
            ("/a/*", "/a"),
            ("/a/*", "/a/b"),
            ("/a/*", "/a/{id}"),
            ("/a/*", "/a/*"),
            ("/a/{x}", "/a/b"),
            ("/a/{x}", "/a/{y}"),
            ("/{x}/*", "/a/b/c"),
            ("/a/b", "/a/b"),
            ("/", "/"),
        ] {
            assert!(covers(a, b), "{a} should cover {b}");
        }
        for (a, b) in [
            ("/a", "/a/*"),
            ("/a/b", "/a/{id}"),
            ("/a/{x}", "/a/{x}/*"),
            ("/a/{x}", "/a/"),
            ("/a/{x}", "/a"),
            ("/a/*", "/ab"),
            ("/a/b/*", "/a/*"),
            ("/", "/*"),
            ("/{x}", "/"),
        ] {
            assert!(!covers(a, b), "{a} should not cover {b}");
        }
    }

    #[test]
    fn other_routers_syntax_is_named() {
        for (p, says) in [
            ("/users/:id", "write `{id}`"),
            ("/users/<int:id>", "write `{id}`"),
            ("/users/{id:[0-9]+}", "no pattern"),
            ("/files/{*rest}", "final `/*`"),
            ("/^api", "regular expression"),
            ("/api/(v1|v2)", "regular expression"),
            ("/api/.*", "regular expression"),
            ("/api/users$", "regular expression"),
            ("/search?q=1", "`?` or `#`"),
        ] {
            let e = PathPattern::parse(p).unwrap_err();
            assert!(
                e.contains(says) && e.contains("`{name}` captures"),
                "{p}: {e}"
            );
        }
        for p in ["/odata/$metadata", "/v1/things:batch", "/a-b_c.d/{x}/*"] {
            assert!(PathPattern::parse(p).is_ok(), "{p}");
        }
    }
}
