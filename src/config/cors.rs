//! `[cors.NAME]`: which browser origins may call the routes that name the
//! policy, with which methods and headers. Pure data and the matching
//! rules; the pipeline answers preflights and adds the response headers
//! (`src/pipeline/cors.rs`).
//!
//! An origin is written exactly as browsers send it in `Origin`:
//! `scheme://host[:port]`, `http` or `https`, no path (not even a trailing
//! `/`), no default port. Two other forms exist: `*` (every origin; never
//! with credentials) and `scheme://*.domain[:port]`, where `*` is the whole
//! first label and stands for one or more labels: `https://*.example.com`
//! matches `https://a.example.com` and `https://a.b.example.com`, never
//! `https://example.com` nor another scheme or port. There is no other
//! wildcard and no regular expression.

use std::net::Ipv6Addr;
use std::sync::Arc;

use http::header::HeaderName;
use http::Method;

/// `[cors.NAME]`, validated.
#[derive(Debug)]
pub struct CorsPolicy {
    pub name: String,
    pub origins: Vec<OriginRule>,
    /// The methods a preflight may allow; `None`: whatever the route
    /// accepts.
    pub methods: Option<Vec<Method>>,
    /// Request headers a preflight may allow (lower case).
    pub headers: Vec<HeaderName>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Max-Age` on preflight answers.
    pub max_age_secs: Option<u64>,
    /// `Access-Control-Expose-Headers` on actual answers.
    pub expose_headers: Vec<HeaderName>,
}

/// One entry of `origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    /// `*`: every origin.
    Any,
    /// One origin, serialized as browsers send it.
    Exact(String),
    /// `scheme://*.domain[:port]`: that scheme and port, a host of one or
    /// more labels followed by `suffix` (`.domain`).
    Subdomains {
        scheme: &'static str,
        suffix: String,
        port: Option<u16>,
    },
}

/// A route's CORS: its policy and the methods a preflight may allow on it.
#[derive(Debug)]
pub struct RouteCors {
    pub policy: Arc<CorsPolicy>,
    /// The policy's methods that the route accepts (every method the route
    /// accepts when the policy lists none).
    pub methods: Vec<Method>,
}

impl CorsPolicy {
    /// Whether a request's `Origin` value is one of `origins`. Only the
    /// exact serialization browsers send matches (lower case, no default
    /// port); `null` matches only `*`.
    pub fn allows(&self, origin: &[u8]) -> bool {
        let text = std::str::from_utf8(origin).ok();
        let parsed = text.and_then(|t| parse_origin(t).ok().filter(|o| o.to_string() == t));
        self.origins.iter().any(|rule| match rule {
            OriginRule::Any => true,
            OriginRule::Exact(o) => o.as_bytes() == origin,
            OriginRule::Subdomains {
                scheme,
                suffix,
                port,
            } => parsed.as_ref().is_some_and(|o| {
                // Labels are never empty, so a match has one before `suffix`.
                o.scheme == *scheme && o.port == *port && o.host.ends_with(suffix.as_str())
            }),
        })
    }

    /// Whether the policy allows every origin (`*`).
    pub fn any_origin(&self) -> bool {
        self.origins.contains(&OriginRule::Any)
    }
}

/// An origin: scheme, host (lower case; an IPv6 address in brackets) and a
/// port other than the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: &'static str,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// Parses one `origins` entry, saying what is wrong with it otherwise.
pub fn parse_rule(entry: &str) -> Result<OriginRule, String> {
    if entry == "*" {
        return Ok(OriginRule::Any);
    }
    if !entry.contains('*') {
        return parse_origin(entry).map(|o| OriginRule::Exact(o.to_string()));
    }
    let wildcard = || {
        format!(
            "`{entry}`: `*` may only be the whole first label of the host, as in https://*.example.com (or `*` alone for every origin)"
        )
    };
    let (scheme, rest) = entry.split_once("://").ok_or_else(wildcard)?;
    let Some(domain) = rest.strip_prefix("*.").filter(|d| !d.contains('*')) else {
        return Err(wildcard());
    };
    if let Some(d) = domain.strip_suffix('/').filter(|d| !d.contains('/')) {
        return Err(format!(
            "`{entry}`: an origin has no path, not even a trailing /: write `{scheme}://*.{d}`"
        ));
    }
    let o = parse_origin(&format!("{scheme}://{domain}"))
        .map_err(|e| format!("`{entry}`: {}", e.split_once(": ").map_or(&*e, |(_, m)| m)))?;
    if o.host.starts_with('[') || o.host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(format!(
            "`{entry}`: `*.` needs a domain name, not an address"
        ));
    }
    if !o.host.contains('.') {
        return Err(format!(
            "`{entry}`: `*.{}` would allow every site under a top-level domain; keep at least two labels after `*.`",
            o.host
        ));
    }
    Ok(OriginRule::Subdomains {
        scheme: o.scheme,
        suffix: format!(".{}", o.host),
        port: o.port,
    })
}

/// Parses `scheme://host[:port]` as browsers serialize an origin. Scheme
/// and host are lower-cased; anything else out of that shape is refused.
pub fn parse_origin(s: &str) -> Result<Origin, String> {
    let shape = "an origin is scheme://host[:port], e.g. https://app.example.com";
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(format!("`{s}` has no scheme: {shape}"));
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" => "https",
        "http" => "http",
        _ => {
            return Err(format!(
                "`{s}`: only http:// and https:// origins can be allowed"
            ))
        }
    };
    if let Some(authority) = rest.strip_suffix('/').filter(|a| !a.contains('/')) {
        return Err(format!(
            "`{s}`: an origin has no path, not even a trailing /: write `{scheme}://{authority}`"
        ));
    }
    if let Some(c) = rest
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control())
    {
        let what = match c {
            '/' => "path",
            '?' => "query",
            '#' => "fragment",
            '@' => "user name",
            _ => "white space or control characters",
        };
        return Err(format!("`{s}`: an origin has no {what}: {shape}"));
    }
    let (host, port) = split_port(rest).map_err(|e| format!("`{s}`: {e}"))?;
    let host = host.to_ascii_lowercase();
    check_host(&host).map_err(|e| format!("`{s}`: {e}"))?;
    let default = if scheme == "https" { 443 } else { 80 };
    if port == Some(default) {
        return Err(format!(
            "`{s}`: browsers never send the default port {default}: write `{scheme}://{host}`"
        ));
    }
    Ok(Origin { scheme, host, port })
}

/// `host[:port]` (the host may be `[IPv6]`).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or("unclosed [ in the host")?;
        let (h, rest) = authority.split_at(end + 1);
        match (rest, rest.strip_prefix(':')) {
            ("", _) => (h, None),
            (_, Some(p)) => (h, Some(p)),
            (_, None) => return Err(format!("`{rest}` after the address")),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => return Err(format!("`{p}` is not a port")),
        },
    };
    if host.is_empty() {
        return Err("the host is missing".to_owned());
    }
    Ok((host, port))
}

/// A host name of letters, digits, `-` and `_` in non-empty labels, or an
/// IPv6 address in brackets written as browsers serialize it.
fn check_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match inner.parse::<Ipv6Addr>() {
            Ok(a) if a.to_string() == inner => Ok(()),
            Ok(a) => Err(format!("write the address as browsers send it: [{a}]")),
            Err(_) => Err(format!("`{inner}` is not an IPv6 address")),
        };
    }
    if !host.is_ascii() {
        return Err(
            "write an internationalized host name in its ASCII form (xn--...), as browsers send it"
                .to_owned(),
        );
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(format!("`{host}` is not a host name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> CorsPolicy {
        CorsPolicy {
            name: "p".to_owned(),
            origins: origins.iter().map(|o| parse_rule(o).unwrap()).collect(),
            methods: None,
            headers: Vec::new(),
            credentials: false,
            max_age_secs: None,
            expose_headers: Vec::new(),
        }
    }

    #[test]
    fn origins_are_written_as_browsers_send_them() {
        for (written, canonical) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("https://127.0.0.1:8443", "https://127.0.0.1:8443"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("http://my_host.internal", "http://my_host.internal"),
        ] {
            assert_eq!(
                parse_rule(written).unwrap(),
                OriginRule::Exact(canonical.to_owned()),
                "{written}"
            );
        }
        for (bad, says) in [
            ("app.example.com", "has no scheme"),
            ("//app.example.com", "has no scheme"),
            ("https://app.example.com/", "not even a trailing /"),
            ("https://app.example.com/spa", "has no path: an origin"),
            ("https://app.example.com?x=1", "no query"),
            ("https://app.example.com#x", "no fragment"),
            ("https://user@app.example.com", "no user name"),
            ("ftp://app.example.com", "only http:// and https://"),
            ("null", "has no scheme"),
            ("https://", "the host is missing"),
            ("https://:8443", "the host is missing"),
            ("https://app.example.com:443", "default port 443"),
            ("http://app.example.com:80", "default port 80"),
            ("https://app.example.com:0", "is not a port"),
            ("https://app.example.com:99999", "is not a port"),
            ("https://app.example.com:x", "is not a port"),
            ("https://app..example.com", "is not a host name"),
            ("https://app.example.com.", "is not a host name"),
            ("https://bücher.example", "xn--"),
            ("https://[::0:1]", "[::1]"),
            ("https://[nope]", "not an IPv6 address"),
            ("https://app example.com", "white space"),
        ] {
            let e = parse_rule(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_one_wildcard_is_a_whole_first_label() {
        assert_eq!(
            parse_rule("https://*.example.com").unwrap(),
            OriginRule::Subdomains {
                scheme: "https",
                suffix: ".example.com".to_owned(),
                port: None
            }
        );
        for bad in [
            "https://*example.com",
            "https://app-*.example.com",
            "https://example.*",
            "*://app.example.com",
            "https://*.*.example.com",
            "https://a.*.example.com",
            "https://*",
            "**",
        ] {
            assert!(
                parse_rule(bad).unwrap_err().contains("whole first label"),
                "{bad}"
            );
        }
        assert!(parse_rule("https://*.com")
            .unwrap_err()
            .contains("two labels"));
        assert!(parse_rule("https://*.127.0.0.1")
            .unwrap_err()
            .contains("not an address"));
        assert!(parse_rule("https://*.example.com/")
            .unwrap_err()
            .contains("trailing /"));
    }

    #[test]
    fn matching_is_exact_or_by_whole_labels() {
        let p = policy(&["https://app.example.com", "https://*.example.org:8443"]);
        for yes in [
            "https://app.example.com",
            "https://a.example.org:8443",
            "https://a.b.example.org:8443",
        ] {
            assert!(p.allows(yes.as_bytes()), "{yes}");
        }
        for no in [
            "https://app.example.com:8443",
            "http://app.example.com",
            "https://APP.example.com",
            "https://app.example.com/",
            "https://evil-app.example.com",
            "https://app.example.com.evil.net",
            "https://example.org:8443",
            "https://a.example.org",
            "http://a.example.org:8443",
            "https://aexample.org:8443",
            "https://a.example.org:8443/",
            "https://A.example.org:8443",
            "null",
            "",
        ] {
            assert!(!p.allows(no.as_bytes()), "{no}");
        }
        assert!(!p.allows(b"\xff"));
        let any = policy(&["*"]);
        assert!(any.allows(b"https://anything.example") && any.allows(b"null"));
        assert!(any.any_origin() && !p.any_origin());
    }
}
