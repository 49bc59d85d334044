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
