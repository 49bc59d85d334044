//! Route upstreams and the clients built for them: one per set of trust
//! roots, one HTTP/1.1 pool per plain-HTTP authority.

use super::*;

impl Builder<'_, '_> {
    pub(super) fn upstream(
        &mut self,
        u: &str,
        ca: Option<&str>,
        p: &KeyPath,
        clients: &mut ClientCache,
    ) -> Option<Upstream> {
        let up = p.key("upstream");
        let uri = self.outbound_url(u, &up)?;
        if uri.query().is_some() {
            self.err(&up, "an upstream URL takes no query string");
            return None;
        }
        let parts = uri.into_parts();
        let (client, trust) = match ca {
            None => clients.default(),
            Some(ca) => {
                let path = relative_to(self.file, ca);
                match clients.with_ca(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        self.err(&p.key("upstream_ca"), e.to_string());
                        return None;
                    }
                }
            }
        };
        let scheme = parts.scheme?;
        let authority = parts.authority?;
        Some(Upstream {
            plain: (scheme == http::uri::Scheme::HTTP).then(|| clients.plain(&authority)),
            scheme,
            authority,
            base_path: parts
                .path_and_query
                .map(|pq| pq.path().trim_end_matches('/').to_owned())
                .unwrap_or_default(),
            client,
            trust,
        })
    }
}

/// Upstream clients built for one snapshot: one for the common trust roots,
/// one per extra `upstream_ca` file.
pub(super) struct ClientCache {
    pub(super) roots: rustls::RootCertStore,
    /// [`tls::trust_fingerprint`] of `roots`.
    pub(super) trust: String,
    pub(super) default: Option<UpstreamClient>,
    pub(super) by_ca: HashMap<PathBuf, (UpstreamClient, String)>,
    pub(super) plain: HashMap<http::uri::Authority, Arc<H1Pool>>,
}

impl ClientCache {
    /// The client on the common roots, and their fingerprint.
    pub(super) fn default(&mut self) -> (UpstreamClient, String) {
        let client = self
            .default
            .get_or_insert_with(|| forward::new_client(self.roots.clone()))
            .clone();
        (client, self.trust.clone())
    }

    pub(super) fn plain(&mut self, authority: &http::uri::Authority) -> Arc<H1Pool> {
        self.plain
            .entry(authority.clone())
            .or_insert_with(|| H1Pool::new(authority.clone()))
            .clone()
    }

    /// The client on the common roots plus `path`, and their fingerprint.
    pub(super) fn with_ca(
        &mut self,
        path: &Path,
    ) -> Result<(UpstreamClient, String), tls::TlsError> {
        if let Some(c) = self.by_ca.get(path) {
            return Ok(c.clone());
        }
        let mut roots = self.roots.clone();
        tls::add_pem_roots(&mut roots, path)?;
        let trust = tls::trust_fingerprint(&roots);
        let c = (forward::new_client(roots), trust);
        self.by_ca.insert(path.to_owned(), c.clone());
        Ok(c)
    }
}
