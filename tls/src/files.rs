//! Reading PEM files (certificates, private keys, CA bundles) with errors that name the file
//! and the problem, and checking a certificate's validity period and names.
//!
//! PEM is parsed by `rustls-pki-types` and certificates by `x509-parser`: nothing here
//! parses by hand.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{ConfigError, ConfigErrorKind};

/// Reads a whole file, or says which file could not be read and why.
pub(crate) fn read(what: &str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    fs::read(path).map_err(|e| ConfigError::read(what, path, &e))
}

fn pem_error(what: &str, path: &Path, err: &pem::Error) -> ConfigError {
    ConfigError::new(
        ConfigErrorKind::InvalidPem,
        Some(path),
        format!("the {what} {} is not valid PEM: {err}", path.display()),
    )
}

/// Every certificate in a PEM file (at least one).
pub(crate) fn certificates(
    what: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let bytes = read(what, path)?;
    let certs = certificates_in(what, Some(path), &bytes)?;
    Ok(certs)
}

/// Every certificate in PEM `bytes` (at least one); `path` names where they came from.
pub(crate) fn certificates_in(
    what: &str,
    path: Option<&Path>,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let named = |p: &Path| format!("{what} {}", p.display());
    let label = path.map_or_else(|| what.to_owned(), named);
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(
                ConfigErrorKind::InvalidPem,
                path,
                format!("the {label} is not valid PEM: {e}"),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            ConfigErrorKind::InvalidPem,
            path,
            format!("the {label} holds no certificate (no BEGIN CERTIFICATE block)"),
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let bytes = read("private key file", path)?;
    private_key_in(Some(path), &bytes)
}

/// The first private key in PEM `bytes`.
pub(crate) fn private_key_in(
    path: Option<&Path>,
    bytes: &[u8],
) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let label = path.map_or_else(
        || "private key".to_owned(),
        |p| format!("private key file {}", p.display()),
    );
    match PrivateKeyDer::from_pem_slice(bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(ConfigError::new(
            ConfigErrorKind::InvalidPem,
            path,
            format!("the {label} holds no private key (no BEGIN PRIVATE KEY block)"),
        )),
        Err(e) => Err(match path {
            Some(p) => pem_error("private key file", p, &e),
            None => ConfigError::new(
                ConfigErrorKind::InvalidPem,
                None,
                format!("the private key is not valid PEM: {e}"),
            ),
        }),
    }
}

/// What a certificate says about itself that a configuration checks.
#[derive(Clone, Debug)]
pub(crate) struct CertFacts {
    /// DNS names (and IP addresses, as text) from the subject alternative names.
    pub(crate) names: Vec<String>,
    pub(crate) not_before: SystemTime,
    pub(crate) not_after: SystemTime,
}

fn to_system_time(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// Parses `cert` and reads its names and validity period.
pub(crate) fn facts(cert: &CertificateDer<'_>, label: &str) -> Result<CertFacts, ConfigError> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).map_err(|e| {
        ConfigError::new(
            ConfigErrorKind::InvalidCertificate,
            None,
            format!("{label} cannot be parsed as an X.509 certificate: {e}"),
        )
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let validity = parsed.validity();
    Ok(CertFacts {
        names,
        not_before: to_system_time(validity.not_before.timestamp()),
        not_after: to_system_time(validity.not_after.timestamp()),
    })
}

/// A date as `YYYY-MM-DD HH:MM:SS UTC`, for messages.
pub(crate) fn format_time(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Checks that every certificate of `chain` is valid now; the error names `path` and which
/// certificate.
pub(crate) fn check_validity(
    chain: &[CertificateDer<'_>],
    path: Option<&Path>,
    now: SystemTime,
) -> Result<CertFacts, ConfigError> {
    let place = path.map_or_else(String::new, |p| format!(" in {}", p.display()));
    let mut leaf = None;
    for (i, cert) in chain.iter().enumerate() {
        let label = if i == 0 {
            format!("the certificate{place}")
        } else {
            format!("chain certificate {}{place}", i + 1)
        };
        let f = facts(cert, &label).map_err(|e| with_path(e, path))?;
        if now > f.not_after {
            return Err(ConfigError::new(
                ConfigErrorKind::Expired,
                path,
                format!(
                    "{label} expired on {}; renew it (see the TLS guide)",
                    format_time(f.not_after)
                ),
            ));
        }
        if now < f.not_before {
            return Err(ConfigError::new(
                ConfigErrorKind::NotYetValid,
                path,
                format!(
                    "{label} is not valid before {} (is the clock right?)",
                    format_time(f.not_before)
                ),
            ));
        }
        if i == 0 {
            leaf = Some(f);
        }
    }
    leaf.ok_or_else(|| {
        ConfigError::new(
            ConfigErrorKind::InvalidPem,
            path,
            format!("no certificate{place}"),
        )
    })
}

fn with_path(err: ConfigError, path: Option<&Path>) -> ConfigError {
    ConfigError::new(err.kind(), path, err.message().to_owned())
}

/// What a file looked like when it was read: a change of any of these means it was
/// replaced or rewritten (a renewal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamps of `paths` now (a missing file has none).
pub(crate) fn stamps(paths: &[PathBuf]) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|p| {
            fs::metadata(p).ok().map(|m| Stamp {
                modified: m.modified().ok(),
                len: m.len(),
                inode: m.ino(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_print_as_utc() {
        assert_eq!(format_time(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_time(to_system_time(1_709_210_096)),
            "2024-02-29 12:34:56 UTC"
        );
        assert_eq!(
            format_time(to_system_time(-86_400)),
            "1969-12-31 00:00:00 UTC"
        );
    }
}
