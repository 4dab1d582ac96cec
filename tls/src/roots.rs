//! [`TrustRoots`]: the certificate authorities a client trusts for servers (the system's,
//! or a CA file), or a server trusts for client certificates.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use crate::error::{ConfigError, ConfigErrorKind};
use crate::files;

/// A set of trusted certificate authorities.
///
/// [`system`](TrustRoots::system) reads the operating system's store once per process
/// (`rustls-native-certs`: `/etc/ssl/certs` and friends on Linux, honouring `SSL_CERT_FILE`
/// and `SSL_CERT_DIR`); [`from_pem_file`](TrustRoots::from_pem_file) reads a CA bundle or a
/// directory of PEM files.
///
/// ```no_run
/// use torsion_tls::TrustRoots;
///
/// let company = TrustRoots::from_pem_file("/etc/company/ca.pem")?;
/// assert!(company.len() >= 1);
/// # Ok::<(), torsion_tls::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct TrustRoots {
    pub(crate) store: Arc<RootCertStore>,
    pub(crate) path: Option<PathBuf>,
}

impl fmt::Debug for TrustRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustRoots")
            .field("certificates", &self.store.len())
            .field("path", &self.path)
            .finish()
    }
}

impl TrustRoots {
    /// The system's trust roots, read once per process. Errors: [`ConfigErrorKind::SystemRoots`]
    /// if the system has none that can be read.
    pub fn system() -> Result<TrustRoots, ConfigError> {
        static SYSTEM: OnceLock<Result<Arc<RootCertStore>, ConfigError>> = OnceLock::new();
        let store = SYSTEM.get_or_init(load_system).clone()?;
        Ok(TrustRoots { store, path: None })
    }

    /// The certificates of a PEM file (a CA bundle), or of every `*.pem`/`*.crt` file in a
    /// directory.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<TrustRoots, ConfigError> {
        let path = path.as_ref();
        let certs = if path.is_dir() {
            directory_certificates(path)?
        } else {
            files::certificates("CA certificate file", path)?
        };
        let mut roots = TrustRoots::from_der(certs).map_err(|e| {
            ConfigError::new(
                e.kind(),
                Some(path),
                format!("in {}: {}", path.display(), e.message()),
            )
        })?;
        roots.path = Some(path.to_path_buf());
        Ok(roots)
    }

    /// These certificates, as trust anchors.
    pub fn from_der(certs: Vec<CertificateDer<'static>>) -> Result<TrustRoots, ConfigError> {
        let mut store = RootCertStore::empty();
        for (i, cert) in certs.into_iter().enumerate() {
            store.add(cert).map_err(|e| {
                ConfigError::new(
                    ConfigErrorKind::InvalidCertificate,
                    None,
                    format!(
                        "CA certificate {} cannot be used as a trust anchor: {e}",
                        i + 1
                    ),
                )
            })?;
        }
        Ok(TrustRoots {
            store: Arc::new(store),
            path: None,
        })
    }

    /// How many authorities it holds.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The same file read again (after it changed); `None` for roots not read from a file.
    pub(crate) fn reloaded(&self) -> Option<Result<TrustRoots, ConfigError>> {
        self.path.as_ref().map(TrustRoots::from_pem_file)
    }
}

fn directory_certificates(dir: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::read("CA certificate directory", dir, &e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "pem" || x == "crt" || x == "cer")
        })
        .collect();
    paths.sort();
    let mut certs = Vec::new();
    for p in &paths {
        certs.extend(files::certificates("CA certificate file", p)?);
    }
    if certs.is_empty() {
        return Err(ConfigError::new(
            ConfigErrorKind::InvalidPem,
            Some(dir),
            format!(
                "the CA certificate directory {} holds no .pem, .crt or .cer file with a certificate",
                dir.display()
            ),
        ));
    }
    Ok(certs)
}

fn load_system() -> Result<Arc<RootCertStore>, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    for err in &found.errors {
        log::debug!("while reading the system's trust roots: {err}");
    }
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(found.certs);
    if ignored > 0 {
        log::debug!("{ignored} of the system's trust roots could not be used");
    }
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none was found".to_owned(), |e| e.to_string());
        return Err(ConfigError::new(
            ConfigErrorKind::SystemRoots,
            None,
            format!(
                "cannot load the system's trust roots ({why}); install the ca-certificates \
                 package, set SSL_CERT_FILE, or give a CA file"
            ),
        ));
    }
    Ok(Arc::new(store))
}
