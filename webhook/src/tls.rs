//! The serving certificate, read from PEM files and reloaded when they change on disk.
//!
//! cert-manager and the certs script rotate the certificate by rewriting the mounted Secret.
//! [`CertificateResolver::watch_files`] polls both files; when their contents change and the
//! new certificate and key parse and match each other, it swaps them in. Handshakes already
//! done keep their connection, new handshakes get the new certificate, so nothing is dropped.
//! A half-written pair (certificate updated, key not yet) is kept out until both match.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

use crate::metrics::Metrics;

/// Error that makes a certificate and key unusable.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file contains no PEM certificate.
    #[error("no PEM certificate found in the certificate file")]
    NoCertificate,
    /// The key file contains no PEM private key.
    #[error("no PEM private key found in the key file")]
    NoPrivateKey,
    /// A PEM block is malformed.
    #[error("malformed PEM: {0}")]
    Pem(std::io::Error),
    /// The key is unsupported or does not belong to the certificate.
    #[error("certificate and key cannot be used together: {0}")]
    Key(rustls::Error),
}

/// Returns the crypto provider (ring) of every TLS config of the webhook.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses a PEM certificate chain and private key, and checks that the key is the
/// certificate's.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Pem)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(TlsError::Pem)?
        .ok_or(TlsError::NoPrivateKey)?;

    let certified =
        CertifiedKey::from_der(chain, key, &crypto_provider()).map_err(TlsError::Key)?;
    // `from_der` accepts a key whose public half the provider cannot compute. A rotation
    // must not swap in a pair that might not match, so check again strictly.
    certified.keys_match().map_err(TlsError::Key)?;
    Ok(certified)
}

/// Reads and parses the certificate and key files.
pub fn certified_key_from_files(
    cert_path: &Path,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let (cert_pem, key_pem) = read_pair(cert_path, key_path)?;
    certified_key_from_pem(&cert_pem, &key_pem)
}

fn read_pair(cert_path: &Path, key_path: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(cert_path)?, read(key_path)?))
}

/// Hands every TLS handshake the certificate in force.
pub struct CertificateResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertificateResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateResolver")
            .finish_non_exhaustive()
    }
}

impl CertificateResolver {
    /// Creates a resolver that serves `initial` until it is replaced.
    pub fn new(initial: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    /// Puts `certified` in force for new handshakes.
    pub fn replace(&self, certified: CertifiedKey) {
        self.current.store(Arc::new(certified));
    }

    /// Polls the files every `interval` and swaps the certificate when both files changed
    /// into a valid, matching pair. Runs until the task is dropped.
    pub async fn watch_files(
        self: Arc<Self>,
        cert_path: PathBuf,
        key_path: PathBuf,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) {
        // The pair last seen, valid or not, so that one bad pair is reported once.
        let mut last_seen = read_pair(&cert_path, &key_path).ok();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let pair = match read_pair(&cert_path, &key_path) {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::debug!(%error, "cannot read TLS files; keeping the certificate in force");
                    continue;
                }
            };
            if last_seen.as_ref() == Some(&pair) {
                continue;
            }

            match certified_key_from_pem(&pair.0, &pair.1) {
                Ok(certified) => {
                    self.replace(certified);
                    metrics.count_certificate_reload(true);
                    tracing::info!(cert = %cert_path.display(), "TLS certificate reloaded");
                }
                Err(error) => {
                    metrics.count_certificate_reload(false);
                    tracing::warn!(%error, cert = %cert_path.display(), "TLS files changed but cannot be used; keeping the certificate in force");
                }
            }
            last_seen = Some(pair);
        }
    }
}

impl ResolvesServerCert for CertificateResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Builds the server config: TLS 1.3 and 1.2 only, HTTP/1.1, certificate from `resolver`,
/// no session resumption.
pub fn server_config(resolver: Arc<CertificateResolver>) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No session resumption: a resumed session skips the certificate, so a client could keep
    // presenting the old one long after a rotation. The API server keeps its connections
    // open, so full handshakes are rare.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a CA and serving certificate into `dir` with the certs script.
    fn certs_in(dir: &Path, extra: &[&str]) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../certs-script/certs.sh");
        let status = std::process::Command::new("bash")
            .arg(script)
            .args(["--files-only", "--dir"])
            .arg(dir)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    fn matching_pair_loads() {
        let dir = tempfile::tempdir().unwrap();
        certs_in(dir.path(), &[]);

        let certified =
            certified_key_from_files(&dir.path().join("tls.crt"), &dir.path().join("tls.key"));

        assert!(certified.is_ok(), "{:?}", certified.err());
    }

    #[test]
    fn mismatched_key_rejected() {
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        certs_in(first.path(), &[]);
        certs_in(second.path(), &[]);

        let result = certified_key_from_files(
            &first.path().join("tls.crt"),
            &second.path().join("tls.key"),
        );

        assert!(matches!(result, Err(TlsError::Key(_))), "{result:?}");
    }

    #[test]
    fn key_in_place_of_certificate_rejected() {
        let dir = tempfile::tempdir().unwrap();
        certs_in(dir.path(), &[]);

        let result =
            certified_key_from_files(&dir.path().join("tls.key"), &dir.path().join("tls.key"));

        assert!(matches!(result, Err(TlsError::NoCertificate)), "{result:?}");
    }

    #[test]
    fn missing_file_named_in_error() {
        let result = certified_key_from_files(
            Path::new("/nonexistent/tls.crt"),
            Path::new("/nonexistent/tls.key"),
        );

        let message = result.err().unwrap().to_string();
        assert!(
            message.starts_with("cannot read /nonexistent/tls.crt"),
            "{message}"
        );
    }
}
