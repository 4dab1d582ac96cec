//! [`ConfigError`]: why a TLS configuration could not be built (a file missing, unreadable or
//! holding the wrong thing, a key that does not match its certificate, an expired
//! certificate, an impossible option), naming the file and the problem.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What was wrong with a TLS configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// A file does not exist.
    MissingFile,
    /// A file exists but cannot be read (permissions, a directory, an I/O error).
    UnreadableFile,
    /// A file is not PEM, or holds none of what it should (no certificate, no private key).
    InvalidPem,
    /// A certificate cannot be parsed, or is not one a server or client can use.
    InvalidCertificate,
    /// The private key is not one the crypto provider can use (an unsupported algorithm).
    InvalidKey,
    /// The private key does not belong to the certificate.
    KeyMismatch,
    /// A certificate's validity ended.
    Expired,
    /// A certificate's validity has not started yet.
    NotYetValid,
    /// The system's trust roots could not be loaded.
    SystemRoots,
    /// An option is invalid (an empty ALPN protocol name, a bad server name, ...).
    InvalidOption,
}

impl ConfigErrorKind {
    /// A short, stable, lower-case name for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigErrorKind::MissingFile => "missing file",
            ConfigErrorKind::UnreadableFile => "unreadable file",
            ConfigErrorKind::InvalidPem => "invalid PEM file",
            ConfigErrorKind::InvalidCertificate => "invalid certificate",
            ConfigErrorKind::InvalidKey => "invalid private key",
            ConfigErrorKind::KeyMismatch => "key does not match certificate",
            ConfigErrorKind::Expired => "expired certificate",
            ConfigErrorKind::NotYetValid => "certificate not yet valid",
            ConfigErrorKind::SystemRoots => "no system trust roots",
            ConfigErrorKind::InvalidOption => "invalid option",
        }
    }
}

impl fmt::Display for ConfigErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a TLS configuration could not be built: a kind to match on, the file concerned (if
/// any) and a sentence naming it and the problem.
///
/// ```
/// use torsion_tls::{ConfigErrorKind, ServerOptions};
///
/// let err = ServerOptions::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem")
///     .unwrap_err();
/// assert_eq!(err.kind(), ConfigErrorKind::MissingFile);
/// assert_eq!(err.path().unwrap().to_str(), Some("/nonexistent/cert.pem"));
/// assert_eq!(
///     err.to_string(),
///     "cannot read the certificate file /nonexistent/cert.pem: no such file or directory"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    kind: ConfigErrorKind,
    path: Option<PathBuf>,
    message: String,
}

impl ConfigError {
    /// An error of `kind` about `path` (if any), described by `message`: a whole sentence
    /// that already names the file.
    pub fn new(kind: ConfigErrorKind, path: Option<&Path>, message: impl Into<String>) -> Self {
        ConfigError {
            kind,
            path: path.map(Path::to_path_buf),
            message: message.into(),
        }
    }

    /// An invalid option (no file involved).
    pub(crate) fn option(message: impl Into<String>) -> Self {
        ConfigError::new(ConfigErrorKind::InvalidOption, None, message)
    }

    /// Reading `path` (described as `what`: "certificate file") failed with `err`.
    pub(crate) fn read(what: &str, path: &Path, err: &io::Error) -> Self {
        let (kind, why) = match err.kind() {
            io::ErrorKind::NotFound => (
                ConfigErrorKind::MissingFile,
                "no such file or directory".to_owned(),
            ),
            io::ErrorKind::PermissionDenied => (
                ConfigErrorKind::UnreadableFile,
                "permission denied".to_owned(),
            ),
            _ => (ConfigErrorKind::UnreadableFile, err.to_string()),
        };
        ConfigError::new(
            kind,
            Some(path),
            format!("cannot read the {what} {}: {why}", path.display()),
        )
    }

    /// What kind of problem it is.
    pub fn kind(&self) -> ConfigErrorKind {
        self.kind
    }

    /// The file concerned, if the problem is with a file.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The sentence describing the problem (the same as `to_string()`).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for torsion_reactor::Error {
    fn from(err: ConfigError) -> torsion_reactor::Error {
        torsion_reactor::Error::new(torsion_reactor::ErrorKind::InvalidInput, err.message)
    }
}
