//! Small helpers about hosts and addresses.

use std::net::IpAddr;

/// Whether `host` (a URI host, IPv6 possibly in brackets) is a loopback host:
/// 127.0.0.0/8, ::1 or `localhost` (docs/BEHAVIOUR.md item 1).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` → `host` (IPv6 literals keep their brackets).
pub fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => &authority[..=end],
            None => authority,
        };
    }
    match authority.rfind(':') {
        Some(i) if authority[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &authority[..i],
        _ => authority,
    }
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1) and the `Proxy-*` family.
pub fn is_hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.as_str().starts_with("proxy-")
}

/// Identity and forwarding headers only the gateway may set. Underscore
/// look-alikes (`X_Auth_Subject`) count too: some frameworks fold `_` and `-`
/// into the same variable.
pub fn is_reserved(name: &http::HeaderName) -> bool {
    let n = name.as_str();
    let has_underscore = n.contains('_');
    let folded;
    let n = if has_underscore {
        folded = n.replace('_', "-");
        folded.as_str()
    } else {
        n
    };
    n.starts_with("x-auth-")
        || n.starts_with("x-zoom-")
        || n.starts_with("x-webhook-")
        || n.starts_with("x-forwarded-")
        || n == "forwarded"
        || n == "x-real-ip"
        // Method overrides: routes authorize by the request method, so an
        // app must not act on another one named in a header.
        || n == "x-http-method-override"
        || n == "x-method-override"
        || n == "x-http-method"
        // Underscore spellings of headers we do forward are dropped too.
        || (has_underscore && (n == "authorization" || n == "host" || n == "x-request-id"))
}

/// Methods no route ever forwards: TRACE would reflect the injected
/// credentials back to the caller (RFC 9110 section 9.3.8), CONNECT would
/// turn the gateway into a tunnel. `check` refuses them in `methods`; a
/// route without `methods` takes every other method.
pub fn never_forwarded(method: &http::Method) -> bool {
    *method == http::Method::TRACE || *method == http::Method::CONNECT
}

/// Checks a base URL: `https://host[:port]` (or `http://` to a loopback
/// host), no path beyond `/`, no query, no user info. Returns it without a
/// trailing slash.
pub fn check_base_url(url: &str) -> Result<String, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    let host = uri.host().ok_or_else(|| format!("`{url}` has no host"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if crate::net::is_loopback_host(host) => {}
        Some("http") => {
            return Err(format!(
                "`{url}`: http:// is only allowed for loopback hosts"
            ))
        }
        _ => return Err(format!("`{url}` must be an https:// URL")),
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if authority.contains('@') || uri.query().is_some() || !matches!(uri.path(), "" | "/") {
        return Err(format!("`{url}` must be scheme://host[:port] only"));
    }
    Ok(format!(
        "{}://{authority}",
        uri.scheme_str().unwrap_or("https")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.8.0.1",
            "localhost",
            "LOCALHOST",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["10.0.0.1", "example.com", "localhost.example.com", "[::2]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("Example.com:8443"), "Example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:443"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}
