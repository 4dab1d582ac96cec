//! TLS over real TCP sockets on 127.0.0.1, both ends torsion: echo, versions, ALPN, SNI,
//! client certificates, verification failures, resumption, timeouts, half-close, reloads.

mod support;

use support::pki::Pki;
use support::*;
use torsion_reactor::testing::{test_reactor, wait_for};
use torsion_reactor::{ConnectionLost, ErrorKind, TlsFailureKind};
use torsion_tls::rustls::version::{TLS12, TLS13};
use torsion_tls::{ClientOptions, ServerOptions, TrustRoots};

fn trusting(pki: &Pki) -> ClientOptions {
    ClientOptions::new().trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("the CA"))
}

#[test]
fn echo_over_tls13_and_tls12() {
    let reactor = test_reactor();
    let pki = Pki::new("echo");
    let server = pki.server("server", &["localhost", "127.0.0.1"]);
    let acceptor = ServerOptions::from_pem_files(&server.cert, &server.key)
        .expect("identity")
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    for (version, name) in [(&TLS13, "TLSv1.3"), (&TLS12, "TLSv1.2")] {
        let connector = trusting(&pki)
            .versions(&[version])
            .build()
            .expect("connector");
        let client = seen();
        let mut rec = Recorder::new(&client, b"hello over TLS");
        rec.close_after = Some(14);
        let t = wait_for(
            &reactor,
            connect(&reactor, &connector, &port, "localhost", rec),
        )
        .expect("handshake");
        assert!(t.extra::<torsion_tls::TlsInfo>().is_some());
        run_until(&reactor, "the echo and the close", || {
            client.borrow().lost.is_some()
        });
        let c = client.borrow();
        assert_eq!(c.data, b"hello over TLS");
        assert!(
            c.lost.as_ref().is_some_and(ConnectionLost::is_clean),
            "{:?}",
            c.lost
        );
        let info = c.info.as_ref().expect("client info");
        assert_eq!(info.version_name(), name);
        assert!(!info.is_server());
        assert_eq!(info.peer_certificates().len(), 1);
        run_until(&reactor, "the server side's close", || {
            server_side.borrow().lost.is_some()
        });
        let s = server_side.borrow();
        let sinfo = s.info.as_ref().expect("server info");
        assert_eq!(sinfo.version_name(), name);
        assert_eq!(sinfo.server_name(), Some("localhost"));
        assert!(sinfo.peer_certificates().is_empty());
        assert!(
            s.lost.as_ref().is_some_and(ConnectionLost::is_clean),
            "{:?}",
            s.lost
        );
    }
    port.stop_listening();
}

#[test]
fn a_wrong_host_name_is_rejected_as_a_certificate_failure() {
    let reactor = test_reactor();
    let pki = Pki::new("wrongname");
    let server = pki.server("server", &["localhost"]);
    let acceptor = ServerOptions::from_pem_files(&server.cert, &server.key)
        .expect("identity")
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let connector = trusting(&pki).build().expect("connector");
    let client = seen();
    let err = wait_for(
        &reactor,
        connect(
            &reactor,
            &connector,
            &port,
            "other.example",
            Recorder::new(&client, b"x"),
        ),
    )
    .expect_err("a certificate for another name");
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    let failure = err.tls_failure().expect("a TLS failure");
    assert_eq!(failure.kind(), TlsFailureKind::Certificate, "{err}");
    assert!(err.to_string().contains("other.example"), "{err}");
    assert!(!client.borrow().made, "the client protocol saw nothing");
    assert!(
        !server_side.borrow().made,
        "the server protocol saw nothing"
    );
}

#[test]
fn an_untrusted_ca_is_rejected() {
    let reactor = test_reactor();
    let pki = Pki::new("untrusted");
    let other = Pki::new("other");
    let server = pki.server("server", &["localhost"]);
    let acceptor = ServerOptions::from_pem_files(&server.cert, &server.key)
        .expect("identity")
        .build()
        .expect("acceptor");
    let port = echo_server(&reactor, &acceptor, &seen());
    let connector = trusting(&other).build().expect("connector");
    let err = wait_for(
        &reactor,
        connect(
            &reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(&seen(), b""),
        ),
    )
    .expect_err("an unknown issuer");
    assert_eq!(
        err.tls_failure().map(|f| f.kind()),
        Some(TlsFailureKind::Certificate),
        "{err}"
    );
    assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");
}
