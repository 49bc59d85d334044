//! Secret handling: re-exports of the `secrecy` types and the resolution of
//! `${VAR}` and `file:PATH` references in configuration values.
//!
//! Secrets are `SecretString` from deserialization on, so a derived `Debug`
//! prints nothing of them. Resolution errors name the variable or path, never
//! a value.

use std::path::Path;

pub use secrecy::{ExposeSecret, SecretString};

/// Looks up an environment variable. Injected so tests never touch the
/// process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for the binary.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why a configuration value could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("environment variable {name} is not set")]
    MissingVar { name: String },
    #[error("environment variable {name} is not valid UTF-8 or is empty")]
    EmptyVar { name: String },
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("`${{...}}` reference `{reference}` is not a valid variable name")]
    BadReference { reference: String },
}

/// The most a file named by the configuration (a `file:` secret, a
/// certificate, a key, a CA bundle) may hold.
pub const MAX_REFERENCED_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a file the configuration names: a regular file (symlinks, as in
/// Kubernetes secret volumes, are followed) of at most
/// [`MAX_REFERENCED_FILE_BYTES`]. A device, FIFO or directory is refused
/// before it is opened for reading, so `/dev/zero` or `/dev/stdin` cannot
/// hang `check` or a reload.
pub fn read_referenced_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut data = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_REFERENCED_FILE_BYTES + 1)
        .read_to_end(&mut data)?;
    if data.len() as u64 > MAX_REFERENCED_FILE_BYTES {
        return Err(Error::new(ErrorKind::InvalidData, "larger than 1 MiB"));
    }
    Ok(data)
}

/// Resolves a configuration string: exactly `${NAME}` reads the environment
/// variable NAME, `file:PATH` reads PATH (relative to `base`) with one
/// trailing newline trimmed; anything else is returned as written.
pub fn resolve(value: &str, base: &Path, env: EnvLookup<'_>) -> Result<String, ResolveError> {
    reference_syntax(value)?;
    if let Some(name) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        return match env(name) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(ResolveError::EmptyVar {
                name: name.to_owned(),
            }),
            None => Err(ResolveError::MissingVar {
                name: name.to_owned(),
            }),
        };
    }
    if let Some(path) = value.strip_prefix("file:") {
        let full = base.join(path);
        let text = read_referenced_file(&full).and_then(|b| {
            String::from_utf8(b)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
        });
        return match text {
            Ok(mut s) => {
                if s.ends_with('\n') {
                    s.pop();
                    if s.ends_with('\r') {
                        s.pop();
                    }
                }
                Ok(s)
            }
            Err(e) => Err(ResolveError::File {
                path: full.display().to_string(),
                reason: match e.kind() {
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                        e.to_string()
                    }
                    kind => kind.to_string(),
                },
            }),
        };
    }
    Ok(value.to_owned())
}

/// Whether `value` is a reference (`${...}` or `file:...`) rather than a
/// literal.
pub fn is_reference(value: &str) -> bool {
    (value.starts_with("${") && value.ends_with('}')) || value.starts_with("file:")
}

/// Checks a reference's syntax without reading the variable or the file
/// (`check --no-secrets`, and [`resolve`] before it reads).
pub fn reference_syntax(value: &str) -> Result<(), ResolveError> {
    if let Some(name) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        if !is_var_name(name) {
            return Err(ResolveError::BadReference {
                reference: value.to_owned(),
            });
        }
    }
    if value == "file:" {
        return Err(ResolveError::File {
            path: String::new(),
            reason: "no path after `file:`".to_owned(),
        });
    }
    Ok(())
}

/// A value that looks like a `${NAME}` reference written wrong and would
/// be used as written: `$NAME` without braces (an upper-case name, as
/// environment variables are spelled), or `${NAME}` inside a longer value
/// (nothing is interpolated). Says which forms are read; quotes the
/// variable's name, never the value.
pub fn reference_mistake(value: &str) -> Option<String> {
    const FORMS: &str = "only a value that is exactly \"${NAME}\" is read from the environment \
                         variable NAME (and \"file:PATH\" from a file); nothing is substituted \
                         inside a longer value";
    let shell_style = value.strip_prefix('$').filter(|n| {
        n.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    });
    if let Some(name) = shell_style {
        return Some(format!(
            "`${name}` would be used as written, not read from the environment: write \"${{{name}}}\"; {FORMS}"
        ));
    }
    if value.starts_with("${") && value.ends_with('}') {
        return None; // A whole reference: `resolve` judges its name.
    }
    let inner = &value[value.find("${")? + 2..];
    let name = inner.split('}').next().unwrap_or_default();
    is_var_name(name).then(|| {
        format!(
            "holds `${{{name}}}` inside a longer value, which would be used as written; {FORMS}"
        )
    })
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Compares two byte strings in constant time (for MACs and tokens). The
/// length is not secret; the contents are.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_files_must_be_small_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        for (path, reason) in [
            ("/dev/zero", "not a regular file"),
            (dir.path().to_str().unwrap(), "not a regular file"),
        ] {
            let e = resolve(&format!("file:{path}"), Path::new("/"), &env).unwrap_err();
            assert!(e.to_string().contains(reason), "{path}: {e}");
        }
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_REFERENCED_FILE_BYTES as usize + 1]).unwrap();
        let e = resolve(&format!("file:{}", big.display()), Path::new("/"), &env).unwrap_err();
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
        // A symlink to a regular file (Kubernetes secret volumes) is read.
        let real = dir.path().join("real");
        std::fs::write(&real, "v\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(
            resolve(&format!("file:{}", link.display()), Path::new("/"), &env).unwrap(),
            "v"
        );
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("s3cr3t-value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variable_reference_reads_the_environment() {
        assert_eq!(
            resolve("${SET}", Path::new("."), &env).unwrap(),
            "s3cr3t-value"
        );
    }

    #[test]
    fn missing_variable_names_it_and_no_value() {
        let err = resolve("${NOPE}", Path::new("."), &env).unwrap_err();
        assert_eq!(err.to_string(), "environment variable NOPE is not set");
    }

    #[test]
    fn empty_variable_is_an_error() {
        assert!(resolve("${EMPTY}", Path::new("."), &env).is_err());
    }

    #[test]
    fn partial_references_are_literal() {
        assert_eq!(resolve("a${SET}", Path::new("."), &env).unwrap(), "a${SET}");
        assert!(resolve("${1X}", Path::new("."), &env).is_err());
    }

    #[test]
    fn references_written_wrong_are_named_without_the_value() {
        for (v, says) in [
            ("$ZOOM_SECRET", "write \"${ZOOM_SECRET}\""),
            ("${ZOOM_SECRET}-x", "`${ZOOM_SECRET}` inside a longer value"),
            ("prefix-${TOKEN}", "`${TOKEN}` inside a longer value"),
            ("${UNCLOSED", "`${UNCLOSED}` inside a longer value"),
        ] {
            let m = reference_mistake(v).unwrap_or_else(|| panic!("{v} passed"));
            assert!(m.contains(says), "{v}: {m}");
        }
        for v in [
            "${ZOOM_SECRET}",
            "file:secret",
            "$ecretPassw0rd",
            "plain",
            "a$b",
            "${1X}",
        ] {
            assert_eq!(reference_mistake(v), None, "{v}");
        }
    }

    #[test]
    fn file_reference_trims_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "abc\n").unwrap();
        assert_eq!(resolve("file:s", dir.path(), &env).unwrap(), "abc");
        let err = resolve("file:missing", dir.path(), &env).unwrap_err();
        assert!(err.to_string().contains("missing"));
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
