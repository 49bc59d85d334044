//! TLS settings: the server configuration (rustls with the aws-lc-rs
//! provider, ALPN h2 and http/1.1), trust roots for outbound connections, and
//! development certificates made with rcgen.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {reason}")]
    Certs { path: PathBuf, reason: String },
    #[error("cannot read a private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("certificate and key do not form a usable TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot make development certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The crypto provider used everywhere (one backend across rustls and JWT).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

/// Loads a PEM chain and key into a server configuration offering h2 and
/// http/1.1; also returns the leaf certificate's `notAfter` (Unix seconds).
pub fn server_config(cert: &Path, key: &Path) -> Result<(ServerConfig, i64), TlsError> {
    let certs = load_certs(cert)?;
    let not_after = x509_parser::parse_x509_certificate(&certs[0])
        .map(|(_, leaf)| leaf.validity().not_after.timestamp())
        .map_err(|e| TlsError::Certs {
            path: cert.to_owned(),
            reason: format!("the first certificate is not valid X.509: {e}"),
        })?;
    let key_err = |reason: String| TlsError::Key {
        path: key.to_owned(),
        reason,
    };
    let pem = crate::secret::read_referenced_file(key).map_err(|e| key_err(e.to_string()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| key_err(pem_reason(&e)))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((cfg, not_after))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certs {
        path: path.to_owned(),
        reason,
    };
    let pem = crate::secret::read_referenced_file(path).map_err(|e| err(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

fn pem_reason(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.kind().to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no matching PEM block found".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The webpki (Mozilla) roots.
pub fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// Adds every certificate of a PEM bundle to `roots`.
pub fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::Certs {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// What a set of trust roots is, as a fingerprint: two stores with the same
/// anchors (subject, key, name constraints) have the same one. Part of the
/// key of everything that holds a client built on them, so a changed
/// `ca_file` reaches it.
pub fn trust_fingerprint(roots: &RootCertStore) -> String {
    let mut anchors: Vec<Vec<u8>> = roots
        .roots
        .iter()
        .map(|a| {
            let parts: [&[u8]; 3] = [
                a.subject.as_ref(),
                a.subject_public_key_info.as_ref(),
                a.name_constraints.as_ref().map_or(&[], |n| n.as_ref()),
            ];
            crate::registry::fingerprint(&parts).into_bytes()
        })
        .collect();
    anchors.sort();
    let parts: Vec<&[u8]> = anchors.iter().map(Vec::as_slice).collect();
    crate::registry::fingerprint(&parts)
}

/// A client configuration trusting `roots`, offering h2 and http/1.1.
pub fn client_config(roots: RootCertStore) -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A development CA and a server certificate it signed.
pub struct DevCerts {
    /// The CA certificate (PEM), to hand to clients (`curl --cacert`).
    pub ca_pem: String,
    /// The server certificate chain (PEM): leaf then CA.
    pub chain_pem: String,
    /// The server's private key (PKCS#8 PEM).
    pub key_pem: String,
}

/// Makes a fresh development CA and a server certificate for `names` (DNS
/// names or IP addresses). Used by `meetgate demo`, `meetgate dev-certs` and
/// the tests; never for production.
pub fn generate_dev_certs(names: &[&str]) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "meetgate development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut leaf_params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    leaf_params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("localhost"),
    );
    let leaf_key = KeyPair::generate()?;
    let leaf = leaf_params.signed_by(&leaf_key, &ca)?;
    Ok(DevCerts {
        ca_pem: ca.pem(),
        chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        key_pem: leaf_key.serialize_pem(),
    })
}

impl DevCerts {
    /// Writes `ca.pem`, `gateway.pem` and `gateway-key.pem` (mode 0600) into
    /// `dir`, returning their paths in that order.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let ca = dir.join("ca.pem");
        let cert = dir.join("gateway.pem");
        let key = dir.join("gateway-key.pem");
        std::fs::write(&ca, &self.ca_pem)?;
        std::fs::write(&cert, &self.chain_pem)?;
        write_private(&key, self.key_pem.as_bytes())?;
        Ok((ca, cert, key))
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_fingerprint_follows_the_anchors_not_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_dev_certs(&["localhost"]).unwrap();
        let b = generate_dev_certs(&["localhost"]).unwrap();
        let (ca_a, _, _) = a.write_to(&dir.path().join("a")).unwrap();
        let (ca_b, _, _) = b.write_to(&dir.path().join("b")).unwrap();
        let with = |paths: &[&Path]| {
            let mut roots = RootCertStore::empty();
            for p in paths {
                add_pem_roots(&mut roots, p).unwrap();
            }
            trust_fingerprint(&roots)
        };
        assert_eq!(with(&[&ca_a, &ca_b]), with(&[&ca_b, &ca_a]));
        assert_ne!(with(&[&ca_a]), with(&[&ca_b]), "same count, other CA");
        assert_ne!(with(&[&ca_a]), with(&[&ca_a, &ca_b]));
        assert_eq!(with(&[&ca_a]), with(&[&ca_a]));
    }

    #[test]
    fn dev_certs_make_a_working_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev_certs(&["localhost", "127.0.0.1"]).unwrap();
        let (_, cert, key) = certs.write_to(dir.path()).unwrap();
        let (cfg, _) = server_config(&cert, &key).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[test]
    fn the_leaf_certificates_not_after_is_read() {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let ca = CertifiedIssuer::self_signed(
            {
                let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p
            },
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        leaf.not_after = rcgen::date_time_ymd(2031, 1, 2);
        let key = KeyPair::generate().unwrap();
        let leaf = leaf.signed_by(&key, &ca).unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        // The chain's leaf comes first; the CA (valid far longer) after it.
        std::fs::write(&cert_path, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let (_, not_after) = server_config(&cert_path, &key_path).unwrap();
        assert_eq!(not_after, 1_925_078_400, "2031-01-02T00:00:00Z");
    }

    #[test]
    fn missing_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev_certs(&["localhost"]).unwrap();
        let (_, cert, _) = certs.write_to(dir.path()).unwrap();
        let err = server_config(&cert, &dir.path().join("nope.pem")).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
