//! TLS of `https` requests: rustls (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`) over
//! the connection [`super::send`] opened to a checked address.
//!
//! The server is verified against the name in the URL (never the address it resolved to),
//! with the trust roots of [`TlsRoots`]: the system's store (read the way OpenSSL does, so
//! `SSL_CERT_FILE` and `SSL_CERT_DIR` apply) and any extra PEM files the runtime is given.
//! The client configuration is built once per runtime, at the first `https` request; a
//! store that cannot be read or holds no root fails that request with a message naming
//! the files, never silently trusting nothing or everything.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use labhit_protocol::manifest::network::Host;
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

/// Where the roots that `https` servers are verified against come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRoots {
    /// Trust the system's store (`/etc/ssl/certs` on Debian; `SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` override where it is read from).
    pub system: bool,
    /// More PEM files of certificates to trust (a company CA, a test CA).
    pub extra_pem_files: Vec<PathBuf>,
}

impl Default for TlsRoots {
    fn default() -> Self {
        Self {
            system: true,
            extra_pem_files: Vec::new(),
        }
    }
}

/// The client side of TLS for one runtime: the roots, and the configuration built from them
/// on first use.
#[derive(Debug)]
pub struct TlsClient {
    roots: TlsRoots,
    config: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl TlsClient {
    /// A client that will trust `roots`; nothing is read yet.
    pub fn new(roots: TlsRoots) -> Self {
        Self {
            roots,
            config: OnceLock::new(),
        }
    }

    /// The connector, building the configuration on the first call. The error says which
    /// roots could not be read, or that there are none.
    pub fn connector(&self) -> Result<TlsConnector, String> {
        self.config
            .get_or_init(|| build(&self.roots).map(Arc::new))
            .clone()
            .map(TlsConnector::from)
    }
}

fn build(roots: &TlsRoots) -> Result<ClientConfig, String> {
    let mut store = rustls::RootCertStore::empty();
    let mut problems = String::new();
    if roots.system {
        let found = rustls_native_certs::load_native_certs();
        for err in &found.errors {
            let _ = write!(problems, "; system store: {err}");
        }
        store.add_parsable_certificates(found.certs);
    }
    for path in &roots.extra_pem_files {
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            CertificateDer::pem_file_iter(path).and_then(Iterator::collect);
        match certs {
            Ok(certs) if certs.is_empty() => {
                let _ = write!(problems, "; `{}` holds no certificate", path.display());
            }
            Ok(certs) => {
                for cert in certs {
                    if let Err(err) = store.add(cert) {
                        let _ = write!(problems, "; `{}`: {err}", path.display());
                    }
                }
            }
            Err(err) => {
                let _ = write!(problems, "; cannot read `{}`: {err}", path.display());
            }
        }
    }
    if store.is_empty() {
        return Err(format!(
            "no trusted root certificate for `https`{problems}; install the system's CA \
             certificates (Debian: `ca-certificates`) or point `SSL_CERT_FILE` at a PEM file"
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The name the server's certificate must carry: the URL's host (a name or an address).
pub fn server_name(host: &Host) -> Result<ServerName<'static>, String> {
    match host {
        Host::Ip(ip) => Ok(ServerName::IpAddress((*ip).into())),
        Host::Name(name) => ServerName::try_from(name.clone())
            .map_err(|e| format!("`{name}` is not a name TLS can verify: {e}")),
    }
}

/// What went wrong in a TLS handshake, in words: the certificate problem when there is one.
pub fn describe(err: &std::io::Error) -> String {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!("the server's certificate is not accepted: {why:?}")
        }
        Some(other) => other.to_string(),
        None => err.to_string(),
    }
}

/// Whether a handshake failed on the server's certificate (the guest sees
/// `tls-certificate-error`) rather than on the protocol.
pub fn is_certificate_error(err: &std::io::Error) -> bool {
    matches!(
        err.get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_roots_at_all_is_an_error_naming_the_fix() {
        let client = TlsClient::new(TlsRoots {
            system: false,
            extra_pem_files: Vec::new(),
        });
        let err = client.connector().err().unwrap_or_default();
        assert!(err.contains("no trusted root certificate"), "{err}");
        assert!(err.contains("SSL_CERT_FILE"), "{err}");
    }

    #[test]
    fn an_unreadable_or_empty_pem_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let missing = dir.path().join("missing.pem");
        let client = TlsClient::new(TlsRoots {
            system: false,
            extra_pem_files: vec![empty, missing],
        });
        let err = client.connector().err().unwrap_or_default();
        assert!(err.contains("empty.pem` holds no certificate"), "{err}");
        assert!(err.contains("cannot read `"), "{err}");
        assert!(err.contains("missing.pem"), "{err}");
    }

    #[test]
    fn the_server_name_is_the_url_host() {
        let name = server_name(&Host::Name("hooks.example.com".into())).ok();
        assert_eq!(
            name,
            Some(ServerName::try_from("hooks.example.com").expect("valid"))
        );
        let ip = server_name(&Host::Ip("127.0.0.1".parse().expect("ip"))).ok();
        assert!(matches!(ip, Some(ServerName::IpAddress(_))));
    }
}
