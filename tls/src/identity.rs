//! [`Identity`]: a certificate chain and its private key (what a server presents, or a
//! client presenting a certificate), checked when it is loaded: the key matches the
//! certificate, every certificate is within its validity period.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::files;

/// The files an identity was read from, to read them again on reload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdentityFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) extra_chain: Option<PathBuf>,
}

impl IdentityFiles {
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.cert.clone()];
        if self.key != self.cert {
            paths.push(self.key.clone());
        }
        paths.extend(self.extra_chain.clone());
        paths
    }
}

/// A certificate chain and the private key of its first certificate: what a server
/// presents (several, chosen by SNI, see [`ServerOptions`](crate::ServerOptions)), or what
/// a client presents when the server asks for a certificate.
///
/// Loading checks what would otherwise make every handshake fail: the files are readable
/// PEM, the key is one the crypto provider can use and belongs to the certificate, and
/// every certificate is within its validity period. The error names the file.
///
/// ```no_run
/// use torsion_tls::Identity;
///
/// // The key and the chain in separate files, or both in one (pass the same path twice).
/// let id = Identity::from_pem_files("/etc/ssl/example.org/fullchain.pem",
///                                   "/etc/ssl/example.org/privkey.pem")?;
/// println!("serves {:?}", id.names());
/// # Ok::<(), torsion_tls::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Identity {
    pub(crate) key: Arc<CertifiedKey>,
    names: Vec<String>,
    not_after: SystemTime,
    pub(crate) files: Option<IdentityFiles>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("names", &self.names)
            .field("not_after", &files::format_time(self.not_after))
            .field("files", &self.files)
            .finish()
    }
}

impl Identity {
    /// Reads the certificate chain from `cert` (the server's certificate first, then the
    /// intermediates) and the private key from `key` (which may be the same file).
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Identity, ConfigError> {
        Identity::from_pem_files_with_chain(cert, key, None::<&Path>)
    }

    /// As [`from_pem_files`](Identity::from_pem_files), with more chain certificates read
    /// from `extra_chain` and sent after those of `cert` (Twisted's `extraCertChain`).
    pub fn from_pem_files_with_chain(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        extra_chain: Option<impl AsRef<Path>>,
    ) -> Result<Identity, ConfigError> {
        let files = IdentityFiles {
            cert: cert.as_ref().to_path_buf(),
            key: key.as_ref().to_path_buf(),
            extra_chain: extra_chain.map(|p| p.as_ref().to_path_buf()),
        };
        Identity::load(files)
    }

    pub(crate) fn load(files: IdentityFiles) -> Result<Identity, ConfigError> {
        let mut chain = files::certificates("certificate file", &files.cert)?;
        let key = files::private_key(&files.key)?;
        if let Some(extra) = &files.extra_chain {
            chain.extend(files::certificates("certificate chain file", extra)?);
        }
        let mut id = Identity::build(chain, key, Some(&files.cert), Some(&files.key))?;
        id.files = Some(files);
        Ok(id)
    }

    /// The same files read again (after a renewal); `None` for an identity made in memory.
    pub(crate) fn reloaded(&self) -> Option<Result<Identity, ConfigError>> {
        self.files.clone().map(Identity::load)
    }

    /// An identity from PEM text: the chain (the certificate first) and the private key.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Identity, ConfigError> {
        let chain = files::certificates_in("certificate", None, cert_chain)?;
        let key = files::private_key_in(None, key)?;
        Identity::build(chain, key, None, None)
    }

    /// An identity from DER: the chain (the certificate first) and the private key.
    pub fn from_der(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Identity, ConfigError> {
        if cert_chain.is_empty() {
            return Err(ConfigError::option(
                "an identity needs at least one certificate",
            ));
        }
        Identity::build(cert_chain, key, None, None)
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_path: Option<&Path>,
        key_path: Option<&Path>,
    ) -> Result<Identity, ConfigError> {
        let facts = files::check_validity(&chain, cert_path, SystemTime::now())?;
        let provider = crate::provider();
        let certified = certified_key(chain, key, &provider, cert_path, key_path)?;
        Ok(Identity {
            key: Arc::new(certified),
            names: facts.names,
            not_after: facts.not_after,
            files: None,
        })
    }

    /// The names the certificate is for (its subject alternative names: DNS names, and IP
    /// addresses as text), lower-case.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The certificate chain, the certificate first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.key.cert
    }

    /// Whether the certificate is for `name` (a DNS name, `*.` wildcards matching one
    /// label, or an IP address).
    pub fn is_for(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.iter().any(|n| name_matches(n, &name))
    }
}

/// Whether certificate name `pattern` (possibly `*.example.org`) covers `name`.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
    cert_path: Option<&Path>,
    key_path: Option<&Path>,
) -> Result<CertifiedKey, ConfigError> {
    let key_label = key_path.map_or_else(
        || "the private key".to_owned(),
        |p| format!("the private key in {}", p.display()),
    );
    let cert_label = cert_path.map_or_else(
        || "the certificate".to_owned(),
        |p| format!("the certificate in {}", p.display()),
    );
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::InvalidKey,
            key_path,
            format!("{key_label} cannot be used: {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(ConfigError::new(
                ConfigErrorKind::KeyMismatch,
                key_path.or(cert_path),
                format!("{key_label} does not match {cert_label}"),
            ))
        }
        Err(e) => Err(ConfigError::new(
            ConfigErrorKind::InvalidCertificate,
            cert_path,
            format!("{cert_label} cannot be used: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches("example.org", "example.org"));
        assert!(name_matches("*.example.org", "www.example.org"));
        assert!(!name_matches("*.example.org", "example.org"));
        assert!(!name_matches("*.example.org", "a.b.example.org"));
        assert!(!name_matches("*.example.org", ".example.org"));
    }
}
