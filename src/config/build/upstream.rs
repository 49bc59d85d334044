//! Route upstreams and the trust roots their certificates must chain to:
//! the outbound roots, plus a route's `upstream_ca`.

use super::*;

impl Builder<'_, '_> {
    pub(super) fn upstream(
        &mut self,
        u: &str,
        ca: Option<&str>,
        plaintext: bool,
        p: &KeyPath,
        trust: &mut TrustCache,
    ) -> Option<Upstream> {
        let up = p.key("upstream");
        let uri = if plaintext {
            self.plaintext_upstream(u, &p.key("insecure_plaintext_upstream"))?
        } else {
            self.outbound_url(u, &up)?
        };
        if uri.query().is_some() {
            self.err(&up, "an upstream URL takes no query string");
            return None;
        }
        let parts = uri.into_parts();
        let (roots, fingerprint) = match ca {
            None => trust.default(),
            Some(ca) => {
                let path = relative_to(self.file, ca);
                self.note_file(&path);
                match trust.with_ca(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        self.err(&p.key("upstream_ca"), e.to_string());
                        return None;
                    }
                }
            }
        };
        Some(Upstream {
            scheme: parts.scheme?,
            authority: parts.authority?,
            base_path: parts
                .path_and_query
                .map(|pq| pq.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            roots,
            trust: fingerprint,
        })
    }
}

impl Builder<'_, '_> {
    /// An upstream on a route with `insecure_plaintext_upstream = true`:
    /// `http://` to any host is accepted, with a warning saying what
    /// crosses the network in the clear; on an `https://` upstream the key
    /// is an error (it would read as if it did something).
    fn plaintext_upstream(&mut self, u: &str, key: &KeyPath) -> Option<Uri> {
        let v = self.string(u, key)?;
        if self.deferred(&v) {
            return Some(Uri::from_static("http://unread.invalid/"));
        }
        let uri: Uri = match v.parse::<Uri>() {
            Ok(uri)
                if uri.scheme_str() == Some("http")
                    && uri.host().is_some_and(|h| !h.is_empty()) =>
            {
                uri
            }
            Ok(uri) if uri.scheme_str() == Some("https") => {
                self.err(
                    key,
                    format!("`{v}` is https://: remove `insecure_plaintext_upstream`"),
                );
                return None;
            }
            _ => {
                self.err(key, format!("`{v}` must be an absolute http:// URL"));
                return None;
            }
        };
        if is_loopback_host(uri.host().unwrap_or_default()) {
            self.warn(
                "plaintext_upstream_no_effect",
                key,
                format!(
                    "`{v}` is on loopback, where http:// is allowed anyway: the key has no effect"
                ),
            );
        } else {
            self.warn(
                "plaintext_upstream",
                key,
                format!(
                    "requests to `{v}` cross the network unencrypted, with the identity headers and \
                     any injected credential: use it only on a network you trust (a cluster's pod network)"
                ),
            );
        }
        Some(uri)
    }
}

/// Trust roots read for one build: the common roots, and those plus each
/// `upstream_ca` file (read once however many routes name it).
pub(super) struct TrustCache {
    pub(super) roots: Arc<rustls::RootCertStore>,
    /// [`tls::trust_fingerprint`] of `roots`.
    pub(super) trust: String,
    pub(super) by_ca: HashMap<PathBuf, (Arc<rustls::RootCertStore>, String)>,
}

impl TrustCache {
    pub(super) fn new(roots: rustls::RootCertStore) -> Self {
        TrustCache {
            trust: tls::trust_fingerprint(&roots),
            roots: Arc::new(roots),
            by_ca: HashMap::new(),
        }
    }

    /// The common roots and their fingerprint.
    pub(super) fn default(&self) -> (Arc<rustls::RootCertStore>, String) {
        (self.roots.clone(), self.trust.clone())
    }

    /// The common roots plus `path`, and their fingerprint.
    pub(super) fn with_ca(
        &mut self,
        path: &Path,
    ) -> Result<(Arc<rustls::RootCertStore>, String), tls::TlsError> {
        if let Some(c) = self.by_ca.get(path) {
            return Ok(c.clone());
        }
        let mut roots = (*self.roots).clone();
        tls::add_pem_roots(&mut roots, path)?;
        let c = (Arc::new(roots.clone()), tls::trust_fingerprint(&roots));
        self.by_ca.insert(path.to_owned(), c.clone());
        Ok(c)
    }
}
