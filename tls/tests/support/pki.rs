//! Test certificates made on the fly with rcgen (no private key is committed): a CA, and
//! certificates it signs for servers and clients, written to a fresh directory.

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A certificate authority and a directory its files go to.
pub struct Pki {
    pub dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate's file.
    pub ca: PathBuf,
}

/// A certificate and key written to files.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

fn fresh_dir(label: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "torsion-tls-{label}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

impl Pki {
    /// A new CA named `name`, its certificate written to `DIR/ca.pem`.
    pub fn new(name: &str) -> Pki {
        let dir = fresh_dir(name);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("torsion test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("a CA certificate");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, issuer.pem()).expect("write the CA");
        Pki { dir, issuer, ca }
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        for name in names {
            params.subject_alt_names.push(match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().expect("a DNS name")),
            });
        }
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let issued = Issued {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&issued.cert, &issued.cert_pem).expect("write the certificate");
        std::fs::write(&issued.key, &issued.key_pem).expect("write the key");
        issued
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, file: &str, names: &[&str]) -> Issued {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A client certificate.
    pub fn client(&self, file: &str, name: &str) -> Issued {
        self.issue(file, &[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A server certificate that expired in 2001.
    pub fn expired_server(&self, file: &str, names: &[&str]) -> Issued {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// An intermediate CA signed by this one, with a directory of its own: what it issues
    /// chains up to this CA only through the intermediate's certificate (its `ca` file),
    /// which a server must send along (`extraCertChain`).
    pub fn intermediate(&self, name: &str) -> Pki {
        let dir = fresh_dir(name);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(
            DnType::CommonName,
            format!("torsion test intermediate {name}"),
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("an intermediate key");
        let issuer =
            CertifiedIssuer::signed_by(params, key, &self.issuer).expect("an intermediate");
        let ca = dir.join("intermediate.pem");
        std::fs::write(&ca, issuer.pem()).expect("write the intermediate");
        Pki { dir, issuer, ca }
    }

    /// A file `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Both files concatenated into `to` (a key and certificate in one file).
pub fn combined(issued: &Issued, to: &Path) {
    std::fs::write(to, format!("{}{}", issued.key_pem, issued.cert_pem)).expect("write");
}
