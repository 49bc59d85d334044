//! Route upstreams and the trust roots their certificates must chain to:
//! the outbound roots, plus a route's `upstream_ca`.

use super::*;

impl Builder<'_, '_> {
    pub(super) fn upstream(
        &mut self,
        u: &str,
        ca: Option<&str>,
        p: &KeyPath,
        trust: &mut TrustCache,
    ) -> Option<Upstream> {
        let up = p.key("upstream");
        let uri = self.outbound_url(u, &up)?;
        if uri.query().is_some() {
            self.err(&up, "an upstream URL takes no query string");
            return None;
        }
        let parts = uri.into_parts();
        let (roots, fingerprint) = match ca {
            None => trust.default(),
            Some(ca) => {
                let path = relative_to(self.file, ca);
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
