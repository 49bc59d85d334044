//! Maps key paths in a TOML document to line numbers, so every configuration
//! error can say `line N` and the key, whatever stage found it.

use std::fmt;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One step of a key path: a table key or an array index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a value, e.g. `route[2].inject[0].credential`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// The root of the document.
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.0.clone();
        p.push(Seg::Key(k.to_owned()));
        KeyPath(p)
    }

    /// This path extended by an array index.
    pub fn index(&self, i: usize) -> Self {
        let mut p = self.0.clone();
        p.push(Seg::Index(i));
        KeyPath(p)
    }

    /// Builds a path from a `serde_ignored` path, dropping its wrapper steps.
    pub fn from_ignored(path: &serde_ignored::Path<'_>) -> Self {
        fn walk(p: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
            match p {
                serde_ignored::Path::Root => {}
                serde_ignored::Path::Seq { parent, index } => {
                    walk(parent, out);
                    out.push(Seg::Index(*index));
                }
                serde_ignored::Path::Map { parent, key } => {
                    walk(parent, out);
                    out.push(Seg::Key(key.clone()));
                }
                serde_ignored::Path::Some { parent }
                | serde_ignored::Path::NewtypeStruct { parent }
                | serde_ignored::Path::NewtypeVariant { parent } => walk(parent, out),
            }
        }
        let mut out = Vec::new();
        walk(path, &mut out);
        KeyPath(out)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    if k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        f.write_str(k)?;
                    } else {
                        write!(f, "{k:?}")?;
                    }
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A parsed document kept for span look-ups.
pub struct SourceMap<'i> {
    text: &'i str,
    root: Option<Spanned<DeTable<'i>>>,
}

impl<'i> SourceMap<'i> {
    /// Parses `text`; a document that does not parse yields a map that
    /// answers no key (the syntax error itself carries a span).
    pub fn new(text: &'i str) -> Self {
        SourceMap {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn position_of(&self, offset: usize) -> (usize, usize) {
        let end = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..end];
        let start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let column = self.text[start..end].chars().count() + 1;
        (self.line_of(offset), column)
    }

    /// The line where the deepest existing prefix of `path` is written: the
    /// key itself when it exists, else its nearest written parent.
    pub fn line(&self, path: &KeyPath) -> Option<usize> {
        self.position(path).map(|(line, _)| line)
    }

    /// [`SourceMap::line`] with the column where that key starts.
    pub fn position(&self, path: &KeyPath) -> Option<(usize, usize)> {
        let root = self.root.as_ref()?;
        let mut best: Option<usize> = None;
        let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in &path.0 {
            match seg {
                Seg::Key(k) => {
                    let t = match (table, value.map(|v| v.get_ref())) {
                        (Some(t), None) => t,
                        (_, Some(DeValue::Table(t))) => t,
                        _ => break,
                    };
                    let Some((key, v)) = t.get_key_value(k.as_str()) else {
                        break;
                    };
                    best = Some(key.span().start);
                    table = None;
                    value = Some(v);
                }
                Seg::Index(i) => {
                    let Some(DeValue::Array(a)) = value.map(|v| v.get_ref()) else {
                        break;
                    };
                    let Some(v) = a.get(*i) else { break };
                    best = Some(v.span().start);
                    value = Some(v);
                }
            }
        }
        best.map(|o| self.position_of(o))
    }

    /// The path of the deepest key whose key or value contains `offset`
    /// (used to name the key of a type error that only carries a span).
    /// Every branch is searched: an array of tables' span covers only its
    /// `[[header]]`, not the keys below it.
    pub fn path_at(&self, offset: usize) -> KeyPath {
        fn search(v: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>, best: &mut Vec<Seg>) {
            let mut visit = |seg: Seg, hit: bool, child: &DeValue<'_>, best: &mut Vec<Seg>| {
                path.push(seg);
                if hit && path.len() > best.len() {
                    *best = path.clone();
                }
                search(child, offset, path, best);
                path.pop();
            };
            match v {
                DeValue::Table(t) => {
                    for (k, val) in t.iter() {
                        let hit = k.span().contains(&offset) || val.span().contains(&offset);
                        visit(Seg::Key(k.get_ref().to_string()), hit, val.get_ref(), best);
                    }
                }
                DeValue::Array(a) => {
                    for (i, val) in a.iter().enumerate() {
                        visit(
                            Seg::Index(i),
                            val.span().contains(&offset),
                            val.get_ref(),
                            best,
                        );
                    }
                }
                _ => {}
            }
        }
        let mut best = Vec::new();
        if let Some(root) = &self.root {
            search(
                &DeValue::Table(root.get_ref().clone()),
                offset,
                &mut Vec::new(),
                &mut best,
            );
        }
        KeyPath(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[server]\nlisten = \"x\"\n\n[[route]]\nname = \"a\"\n\n[[route]]\nname = \"b\"\ninject = [{ credential = \"c\" }]\n";

    #[test]
    fn lines_of_keys_in_tables_and_arrays() {
        let m = SourceMap::new(DOC);
        assert_eq!(
            m.line(&KeyPath::root().key("server").key("listen")),
            Some(2)
        );
        assert_eq!(
            m.line(&KeyPath::root().key("route").index(1).key("name")),
            Some(8)
        );
        let cred = KeyPath::root()
            .key("route")
            .index(1)
            .key("inject")
            .index(0)
            .key("credential");
        assert_eq!(m.line(&cred), Some(9));
        assert_eq!(cred.to_string(), "route[1].inject[0].credential");
    }

    #[test]
    fn columns_count_characters_from_the_line_start() {
        let m = SourceMap::new("[server]\n  listen = \"x\"\n[t]\n\"é\" = 1\nk = 2\n");
        assert_eq!(
            m.position(&KeyPath::root().key("server").key("listen")),
            Some((2, 3))
        );
        assert_eq!(m.position_of(m.text.find("= 1").unwrap()), (4, 5));
    }

    #[test]
    fn missing_key_falls_back_to_its_parent() {
        let m = SourceMap::new(DOC);
        assert_eq!(
            m.line(&KeyPath::root().key("route").index(0).key("path")),
            Some(4)
        );
    }
}
