//! Configuration errors: each is typed and names the file and the problem.

mod support;

use support::pki::{Pki, combined};
use torsion_tls::{ClientOptions, ConfigErrorKind, Identity, ServerOptions, TrustRoots};

#[test]
fn a_missing_file_is_named() {
    let pki = Pki::new("missing");
    let server = pki.server("server", &["localhost"]);
    let gone = pki.path("gone.pem");
    let err = ServerOptions::from_pem_files(&gone, &server.key).expect_err("missing");
    assert_eq!(err.kind(), ConfigErrorKind::MissingFile);
    assert_eq!(err.path(), Some(gone.as_path()));
    assert!(err.to_string().contains("gone.pem"), "{err}");
    let err = Identity::from_pem_files(&server.cert, &gone).expect_err("missing key");
    assert_eq!(err.kind(), ConfigErrorKind::MissingFile);
    assert!(
        err.to_string()
            .starts_with("cannot read the private key file"),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let pki = Pki::new("unreadable");
    // A directory where a file should be cannot be read, even by root.
    let dir = pki.path("a-directory.pem");
    std::fs::create_dir(&dir).expect("mkdir");
    let server = pki.server("server", &["localhost"]);
    let err = Identity::from_pem_files(&dir, &server.key).expect_err("a directory");
    assert_eq!(err.kind(), ConfigErrorKind::UnreadableFile, "{err}");
    assert!(err.to_string().contains("a-directory.pem"), "{err}");
}

#[test]
fn not_pem_and_no_key_are_named() {
    let pki = Pki::new("notpem");
    let server = pki.server("server", &["localhost"]);
    let junk = pki.path("junk.pem");
    std::fs::write(&junk, "hello, not a certificate\n").expect("write");
    let err = Identity::from_pem_files(&junk, &server.key).expect_err("junk");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidPem);
    assert!(err.to_string().contains("holds no certificate"), "{err}");
    // A certificate file given as the key.
    let err = Identity::from_pem_files(&server.cert, &server.cert).expect_err("no key");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidPem);
    assert!(err.to_string().contains("holds no private key"), "{err}");
    assert!(err.to_string().contains("server.pem"), "{err}");
}

#[test]
fn a_key_for_another_certificate_is_refused() {
    let pki = Pki::new("mismatch");
    let one = pki.server("one", &["localhost"]);
    let two = pki.server("two", &["localhost"]);
    let err = Identity::from_pem_files(&one.cert, &two.key).expect_err("mismatch");
    assert_eq!(err.kind(), ConfigErrorKind::KeyMismatch);
    assert!(err.to_string().contains("two.key"), "{err}");
    assert!(err.to_string().contains("one.pem"), "{err}");
}

#[test]
fn an_expired_certificate_is_refused_with_its_date() {
    let pki = Pki::new("expired");
    let old = pki.expired_server("old", &["localhost"]);
    let err = Identity::from_pem_files(&old.cert, &old.key).expect_err("expired");
    assert_eq!(err.kind(), ConfigErrorKind::Expired);
    assert!(err.to_string().contains("expired on 2001-01-01"), "{err}");
    assert!(err.to_string().contains("old.pem"), "{err}");
}

#[test]
fn key_and_certificate_in_one_file() {
    let pki = Pki::new("combined");
    let server = pki.server("server", &["localhost", "127.0.0.1"]);
    let both = pki.path("both.pem");
    combined(&server, &both);
    let id = Identity::from_pem_files(&both, &both).expect("one file");
    assert_eq!(id.names(), ["localhost", "127.0.0.1"]);
    assert!(id.is_for("LOCALHOST") && id.is_for("127.0.0.1") && !id.is_for("example.org"));
    ServerOptions::new(id).build().expect("acceptor");
}

#[test]
fn trust_roots_from_a_file_or_a_directory() {
    let pki = Pki::new("roots");
    assert_eq!(TrustRoots::from_pem_file(&pki.ca).expect("file").len(), 1);
    assert_eq!(
        TrustRoots::from_pem_file(&pki.dir)
            .expect("directory")
            .len(),
        1
    );
    let empty = pki.path("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let err = TrustRoots::from_pem_file(&empty).expect_err("nothing there");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidPem);
}

#[test]
fn options_are_checked() {
    let pki = Pki::new("options");
    let server = pki.server("server", &["localhost"]);
    let err = ServerOptions::from_pem_files(&server.cert, &server.key)
        .expect("identity")
        .alpn([""])
        .build()
        .expect_err("empty ALPN name");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidOption);
    let connector = ClientOptions::new()
        .trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("CA"))
        .build()
        .expect("connector");
    let err = connector
        .wrap(
            "not a host name!",
            support::OneShot(std::cell::RefCell::new(Some(support::Echo))),
        )
        .err()
        .expect("a bad name");
    assert_eq!(err.kind(), ConfigErrorKind::InvalidOption);
}
