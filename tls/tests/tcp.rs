//! TLS over real TCP sockets on 127.0.0.1, both ends torsion: echo, versions, ALPN, SNI,
//! client certificates, verification failures, resumption, timeouts, half-close, reloads.

mod support;

use std::rc::Rc;

use support::pki::Pki;
use support::*;
use torsion_reactor::testing::{test_reactor, wait_for};
use torsion_reactor::{
    Address, ConnectionLost, Error, ErrorKind, ListeningPort, Protocol, Reactor, TlsFailureKind,
    Transport,
};
use torsion_tls::rustls::version::{TLS12, TLS13};
use torsion_tls::{ClientOptions, ServerOptions, TlsConnector, TrustRoots};

fn trusting(pki: &Pki) -> ClientOptions {
    ClientOptions::new().trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("the CA"))
}

/// Server options for an identity named `names`, issued by the PKI's CA.
fn acceptor_for(pki: &Pki, names: &[&str]) -> ServerOptions {
    let server = pki.server("server", names);
    ServerOptions::from_pem_files(&server.cert, &server.key).expect("identity")
}

/// Connects to `port` as `host` with `protocol`, expects the handshake to fail with a TLS
/// failure of `kind`, and returns the error (for what its message says).
fn refused(
    reactor: &Reactor,
    connector: &TlsConnector,
    port: &ListeningPort,
    host: &str,
    protocol: impl Protocol,
    kind: TlsFailureKind,
) -> Error {
    let err = wait_for(reactor, connect(reactor, connector, port, host, protocol))
        .expect_err("the handshake fails");
    assert_eq!(err.tls_failure().map(|f| f.kind()), Some(kind), "{err}");
    err
}

#[test]
fn echo_over_tls13_and_tls12() {
    let reactor = test_reactor();
    let pki = Pki::new("echo");
    let acceptor = acceptor_for(&pki, &["localhost", "127.0.0.1"])
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
fn what_a_layer_learns_is_set_through_tls_on_the_connection_under_it() {
    let reactor = test_reactor();
    let pki = Pki::new("learned");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let port = echo_server(&reactor, &acceptor, &seen());
    let connector = trusting(&pki).build().expect("connector");
    let t = wait_for(
        &reactor,
        connect(
            &reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(&seen(), b""),
        ),
    )
    .expect("handshake");
    let real = Address::Other("203.0.113.7:4711 (from a PROXY header)".into());
    t.set_peer_addr(real.clone())
        .expect("set through the layer");
    assert_eq!(t.peer_addr(), real);
    let again = t.set_peer_addr(Address::Other("another".into()));
    assert_eq!(again.map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
    #[derive(Debug, PartialEq)]
    struct Tag(u32);
    t.attach_extra(Tag(7)).expect("attached through the layer");
    assert_eq!(t.extra::<Tag>().as_deref(), Some(&Tag(7)));
    assert!(
        t.extra::<torsion_tls::TlsInfo>().is_some(),
        "the layer still answers for its own"
    );
    t.abort_connection();
}

#[test]
fn turning_verification_off_connects_to_anyone_and_says_so() {
    let logs = torsion_reactor::testing::capture_logs();
    let reactor = test_reactor();
    let pki = Pki::new("noverify");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let port = echo_server(&reactor, &acceptor, &seen());
    // No trust roots, and a name the certificate does not carry: still connected.
    let connector = ClientOptions::new()
        .danger_accept_invalid_certificates()
        .build()
        .expect("connector");
    let warned = logs.lines_with("certificate verification OFF");
    assert_eq!(warned.len(), 1, "one warning per connector: {warned:?}");
    let client = seen();
    let mut rec = Recorder::new(&client, b"ping");
    rec.close_after = Some(4);
    wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "not-the-name.example", rec),
    )
    .expect("connected without checking the certificate");
    run_until(&reactor, "the echo", || client.borrow().lost.is_some());
    assert_eq!(client.borrow().data, b"ping");
}

/// Connects `client` to a TLS echo server that, once the handshake is done, does `then`
/// with the raw TCP transport under its TLS layer (where a broken or hostile peer acts).
fn after_the_handshake(
    reactor: &Reactor,
    pki: &Pki,
    client: &Shared,
    then: impl Fn(&Transport) + 'static,
) {
    struct Switch {
        acceptor: torsion_tls::TlsAcceptor,
        then: Rc<dyn Fn(&Transport)>,
    }
    impl Protocol for Switch {
        fn connection_made(&mut self, t: &Transport) {
            let raw = t.clone();
            let then = Rc::clone(&self.then);
            self.acceptor
                .start_tls(t, RecordingEcho(seen()), b"")
                .expect("start_tls")
                .on_result(move |done| {
                    if done.is_ok() {
                        then(&raw);
                    }
                });
        }
        fn data_received(&mut self, _t: &Transport, _data: &[u8]) {}
    }
    let acceptor = acceptor_for(pki, &["localhost"]).build().expect("acceptor");
    let then: Rc<dyn Fn(&Transport)> = Rc::new(then);
    let port = reactor
        .listen_tcp(
            localhost(),
            torsion_reactor::factory_fn(move |_| Switch {
                acceptor: acceptor.clone(),
                then: Rc::clone(&then),
            }),
        )
        .expect("listen");
    let connector = trusting(pki).build().expect("connector");
    wait_for(
        reactor,
        connect(
            reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(client, b""),
        ),
    )
    .expect("handshake");
    run_until(reactor, "the connection's end", || {
        client.borrow().lost.is_some()
    });
    port.stop_listening();
}

fn tls_failure(lost: &Option<ConnectionLost>) -> Option<TlsFailureKind> {
    match lost {
        Some(ConnectionLost::Tls(failure)) => Some(failure.kind()),
        _ => None,
    }
}

#[test]
fn a_peer_that_closes_without_close_notify_is_a_truncation() {
    let reactor = test_reactor();
    let pki = Pki::new("truncated");
    let client = seen();
    // The server's socket closes under its TLS layer: a FIN with no close_notify before it.
    after_the_handshake(&reactor, &pki, &client, |raw| raw.abort_connection());
    let c = client.borrow();
    assert_eq!(
        tls_failure(&c.lost),
        Some(TlsFailureKind::Truncated),
        "{:?}",
        c.lost
    );
    assert!(!c.lost.as_ref().is_some_and(ConnectionLost::is_clean));
}

#[test]
fn garbage_after_the_handshake_fails_the_connection_as_a_protocol_error() {
    let reactor = test_reactor();
    let pki = Pki::new("garbage");
    let client = seen();
    // Bytes that are no TLS record, written under the server's layer.
    after_the_handshake(&reactor, &pki, &client, |raw| {
        raw.write(b"this is not a TLS record\r\n")
    });
    let c = client.borrow();
    assert_eq!(
        tls_failure(&c.lost),
        Some(TlsFailureKind::Protocol),
        "{:?}",
        c.lost
    );
}

#[test]
fn a_wrong_host_name_is_rejected_as_a_certificate_failure() {
    let reactor = test_reactor();
    let pki = Pki::new("wrongname");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let connector = trusting(&pki).build().expect("connector");
    let client = seen();
    let err = refused(
        &reactor,
        &connector,
        &port,
        "other.example",
        Recorder::new(&client, b"x"),
        TlsFailureKind::Certificate,
    );
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
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
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let port = echo_server(&reactor, &acceptor, &seen());
    let connector = trusting(&other).build().expect("connector");
    let err = refused(
        &reactor,
        &connector,
        &port,
        "localhost",
        Recorder::new(&seen(), b""),
        TlsFailureKind::Certificate,
    );
    assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");
}

#[test]
fn alpn_is_negotiated_and_visible_on_both_sides() {
    let reactor = test_reactor();
    let pki = Pki::new("alpn");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .alpn(["h2", "http/1.1"])
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let connector = trusting(&pki)
        .alpn(["http/1.1"])
        .build()
        .expect("connector");
    let client = seen();
    let mut rec = Recorder::new(&client, b"ping");
    rec.close_after = Some(4);
    wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "localhost", rec),
    )
    .expect("handshake");
    run_until(&reactor, "the close", || {
        server_side.borrow().lost.is_some()
    });
    {
        let c = client.borrow();
        assert_eq!(
            c.info.as_ref().and_then(|i| i.alpn_protocol()),
            Some(&b"http/1.1"[..])
        );
        let s = server_side.borrow();
        assert_eq!(
            s.info.as_ref().and_then(|i| i.alpn_protocol()),
            Some(&b"http/1.1"[..])
        );
    }

    // Nothing in common: the handshake fails, as a protocol failure.
    let connector = trusting(&pki).alpn(["spdy/1"]).build().expect("connector");
    refused(
        &reactor,
        &connector,
        &port,
        "localhost",
        Recorder::new(&seen(), b""),
        TlsFailureKind::Protocol,
    );
}

#[test]
fn sni_chooses_the_identity() {
    let reactor = test_reactor();
    let pki = Pki::new("sni");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test", "*.wild.test"]);
    let acceptor =
        ServerOptions::new(torsion_tls::Identity::from_pem_files(&a.cert, &a.key).expect("a"))
            .add_identity(torsion_tls::Identity::from_pem_files(&b.cert, &b.key).expect("b"))
            .build()
            .expect("acceptor");
    let b_der = torsion_tls::Identity::from_pem_files(&b.cert, &b.key)
        .expect("b")
        .chain()[0]
        .clone();
    let a_der = torsion_tls::Identity::from_pem_files(&a.cert, &a.key)
        .expect("a")
        .chain()[0]
        .clone();
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let connector = trusting(&pki).build().expect("connector");
    for (name, expected) in [
        ("b.test", &b_der),
        ("x.wild.test", &b_der),
        ("a.test", &a_der),
    ] {
        let client = seen();
        let mut rec = Recorder::new(&client, b"x");
        rec.close_after = Some(1);
        wait_for(&reactor, connect(&reactor, &connector, &port, name, rec)).expect("handshake");
        let peer = client
            .borrow()
            .info
            .as_ref()
            .expect("info")
            .peer_certificates()[0]
            .clone();
        assert_eq!(&peer, expected, "the certificate for {name}");
        run_until(&reactor, "the close", || {
            server_side.borrow().lost.is_some()
        });
        let s = server_side.borrow();
        assert_eq!(s.info.as_ref().and_then(|i| i.server_name()), Some(name));
    }
}

#[test]
fn required_client_certificates() {
    let reactor = test_reactor();
    let pki = Pki::new("mtls");
    let client_pki = Pki::new("mtls-clients");
    let alice = client_pki.client("alice", "alice");
    let stranger = pki.client("stranger", "stranger"); // signed by the server's CA, not the clients'
    let acceptor = acceptor_for(&pki, &["localhost"])
        .client_auth(torsion_tls::ClientAuth::Required(
            TrustRoots::from_pem_file(&client_pki.ca).expect("client CA"),
        ))
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);

    // With a certificate the server trusts: in, and the server sees it.
    let id = torsion_tls::Identity::from_pem_files(&alice.cert, &alice.key).expect("alice");
    let alice_der = id.chain()[0].clone();
    let connector = trusting(&pki).identity(id).build().expect("connector");
    let client = seen();
    let mut rec = Recorder::new(&client, b"hi");
    rec.close_after = Some(2);
    wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "localhost", rec),
    )
    .expect("handshake");
    run_until(&reactor, "the close", || {
        server_side.borrow().lost.is_some()
    });
    assert_eq!(client.borrow().data, b"hi");
    let s = server_side.borrow();
    assert_eq!(
        s.info.as_ref().expect("info").peer_certificates(),
        &[alice_der]
    );
    drop(s);

    // Without one, or with one from another CA: refused as a certificate failure. (In TLS
    // 1.3 the client finishes its side before the server checks, so it may see the refusal
    // as the connection's end rather than the handshake's.)
    for identity in [None, Some(&stranger)] {
        let mut options = trusting(&pki);
        if let Some(issued) = identity {
            options = options.identity(
                torsion_tls::Identity::from_pem_files(&issued.cert, &issued.key).expect("id"),
            );
        }
        let connector = options.build().expect("connector");
        *server_side.borrow_mut() = Default::default();
        let client = seen();
        let handshake = connect(
            &reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(&client, b"x"),
        );
        let outcome = wait_for(&reactor, handshake);
        let kind = match outcome {
            Err(err) => err.tls_failure().map(|f| f.kind()),
            Ok(_) => {
                run_until(&reactor, "the refusal", || client.borrow().lost.is_some());
                match client.borrow().lost.as_ref() {
                    Some(ConnectionLost::Tls(f)) => Some(f.kind()),
                    other => panic!("expected a TLS failure, got {other:?}"),
                }
            }
        };
        assert_eq!(kind, Some(TlsFailureKind::Certificate));
        assert!(
            !server_side.borrow().made,
            "the server's protocol saw nothing"
        );
    }
}

#[test]
fn optional_client_certificates_let_anonymous_clients_in() {
    let reactor = test_reactor();
    let pki = Pki::new("optional");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .client_auth(torsion_tls::ClientAuth::Optional(
            TrustRoots::from_pem_file(&pki.ca).expect("CA"),
        ))
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let connector = trusting(&pki).build().expect("connector");
    let client = seen();
    let mut rec = Recorder::new(&client, b"anon");
    rec.close_after = Some(4);
    wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "localhost", rec),
    )
    .expect("handshake");
    run_until(&reactor, "the close", || {
        server_side.borrow().lost.is_some()
    });
    assert!(
        server_side
            .borrow()
            .info
            .as_ref()
            .expect("info")
            .peer_certificates()
            .is_empty()
    );
    assert_eq!(client.borrow().data, b"anon");
}

#[test]
fn a_second_connection_resumes_the_session() {
    let reactor = test_reactor();
    let pki = Pki::new("resume");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    for version in [&TLS13, &TLS12] {
        let connector = trusting(&pki)
            .versions(&[version])
            .build()
            .expect("connector");
        let mut resumed = Vec::new();
        for _ in 0..2 {
            let client = seen();
            let mut rec = Recorder::new(&client, b"round trip");
            rec.close_after = Some(10);
            wait_for(
                &reactor,
                connect(&reactor, &connector, &port, "localhost", rec),
            )
            .expect("handshake");
            run_until(&reactor, "the close", || client.borrow().lost.is_some());
            resumed.push(client.borrow().info.as_ref().expect("info").resumed());
        }
        assert_eq!(resumed, [false, true], "{version:?}");
    }
}

#[test]
fn a_stalled_handshake_times_out_on_both_sides() {
    use std::time::Duration;
    let reactor = test_reactor();
    let pki = Pki::new("timeout");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let addr = port.local_addr().socket_addr().expect("addr");

    // A client that connects and never says hello is closed by the server.
    let raw = seen();
    reactor.connect_tcp(
        addr,
        OneShot(std::cell::RefCell::new(Some(Recorder::new(&raw, b"")))),
    );
    run_until(&reactor, "the server to give up", || {
        raw.borrow().lost.is_some()
    });
    assert!(raw.borrow().made && !server_side.borrow().made);

    // A server that accepts and never answers: the client gives up, as a TLS timeout.
    let silent = reactor
        .listen_tcp(
            localhost(),
            torsion_reactor::factory_fn(|_| torsion_reactor::testing::Sink),
        )
        .expect("listen");
    let connector = trusting(&pki)
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .expect("connector");
    let client = seen();
    let err = refused(
        &reactor,
        &connector,
        &silent,
        "localhost",
        Recorder::new(&client, b""),
        TlsFailureKind::HandshakeTimeout,
    );
    assert!(
        err.to_string().contains("did not finish within 0.2s"),
        "{err}"
    );
    assert!(!client.borrow().made);
}

/// Writes `size` bytes when made, then closes (after the flush: with close_notify).
struct Blast(usize);

impl torsion_reactor::Protocol for Blast {
    fn connection_made(&mut self, t: &torsion_reactor::Transport) {
        let data: Vec<u8> = (0..self.0).map(|i| (i % 251) as u8).collect();
        t.write(&data);
        t.lose_connection();
    }
    fn data_received(&mut self, _: &torsion_reactor::Transport, _: &[u8]) {}
}

#[test]
fn lose_connection_flushes_then_sends_close_notify() {
    let reactor = test_reactor();
    let pki = Pki::new("flush");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let size = 3 * 1024 * 1024 + 17;
    let port = reactor
        .listen_tcp(
            localhost(),
            acceptor.wrap(torsion_reactor::factory_fn(move |_| Blast(size))),
        )
        .expect("listen");
    let connector = trusting(&pki).build().expect("connector");
    let client = seen();
    wait_for(
        &reactor,
        connect(
            &reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(&client, b""),
        ),
    )
    .expect("handshake");
    run_until(&reactor, "everything and the close", || {
        client.borrow().lost.is_some()
    });
    let c = client.borrow();
    assert_eq!(c.data.len(), size);
    assert!(
        c.data
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8)
    );
    assert!(c.eof, "the close_notify arrived as end of file");
    assert!(
        c.lost.as_ref().is_some_and(ConnectionLost::is_clean),
        "{:?}",
        c.lost
    );
}

/// On end of file, answers and closes.
struct Answer;

impl torsion_reactor::Protocol for Answer {
    fn data_received(&mut self, _: &torsion_reactor::Transport, _: &[u8]) {}
    fn eof_received(&mut self, t: &torsion_reactor::Transport) -> bool {
        t.write(b"bye");
        t.lose_connection();
        true
    }
}

#[test]
fn half_close_sends_close_notify_and_keeps_reading() {
    let reactor = test_reactor();
    let pki = Pki::new("halfclose");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let port = reactor
        .listen_tcp(
            localhost(),
            acceptor.wrap(torsion_reactor::factory_fn(|_| Answer)),
        )
        .expect("listen");
    let connector = trusting(&pki)
        .versions(&[&TLS13])
        .build()
        .expect("connector");
    let client = seen();
    let mut rec = Recorder::new(&client, b"request");
    rec.keep_open_on_eof = true;
    let t = wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "localhost", rec),
    )
    .expect("handshake");
    t.lose_write_connection().expect("half-close");
    assert!(
        t.try_write(b"more").is_err(),
        "no writes after the half-close"
    );
    run_until(&reactor, "the answer and the close", || {
        client.borrow().lost.is_some()
    });
    let c = client.borrow();
    assert_eq!(c.data, b"bye");
    assert!(
        c.lost.as_ref().is_some_and(ConnectionLost::is_clean),
        "{:?}",
        c.lost
    );
}

#[test]
fn reloading_serves_the_new_certificate_and_keeps_open_connections() {
    let reactor = test_reactor();
    let pki = Pki::new("reload");
    let first = pki.server("server", &["localhost"]);
    let acceptor = ServerOptions::from_pem_files(&first.cert, &first.key)
        .expect("identity")
        .reload_check(None)
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let connector = trusting(&pki).build().expect("connector");
    let old = seen();
    let old_t = wait_for(
        &reactor,
        connect(
            &reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(&old, b"1"),
        ),
    )
    .expect("handshake");
    let old_cert = old
        .borrow()
        .info
        .as_ref()
        .expect("info")
        .peer_certificates()[0]
        .clone();

    // Renewal: new files in place, then reload.
    let renewed = pki.server("server", &["localhost"]);
    assert_eq!(renewed.cert, first.cert);
    acceptor.reload().expect("reload");
    // (A fresh connector: a resumed session would carry the old certificate.)
    let connector = trusting(&pki).build().expect("connector");
    let new = seen();
    let mut rec = Recorder::new(&new, b"2");
    rec.close_after = Some(1);
    wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "localhost", rec),
    )
    .expect("handshake");
    let new_cert = new
        .borrow()
        .info
        .as_ref()
        .expect("info")
        .peer_certificates()[0]
        .clone();
    assert_ne!(
        old_cert, new_cert,
        "new connections get the renewed certificate"
    );

    // The old connection still works.
    old_t.write(b"still here");
    run_until(&reactor, "the old connection's echo", || {
        old.borrow().data.len() == 11
    });
    assert_eq!(old.borrow().data, b"1still here");

    // A broken renewal is refused, naming the file; the acceptor keeps what it had.
    std::fs::write(&first.key, "not a key").expect("write");
    let err = acceptor.reload().expect_err("a broken key file");
    assert!(
        err.to_string().contains(first.key.to_str().expect("utf-8")),
        "{err}"
    );
    let connector = trusting(&pki).build().expect("connector");
    let again = seen();
    let mut rec = Recorder::new(&again, b"3");
    rec.close_after = Some(1);
    wait_for(
        &reactor,
        connect(&reactor, &connector, &port, "localhost", rec),
    )
    .expect("handshake");
    assert_eq!(
        again
            .borrow()
            .info
            .as_ref()
            .expect("info")
            .peer_certificates()[0],
        new_cert
    );
}

#[test]
fn changed_files_are_noticed_without_a_reload_call() {
    use std::time::Duration;
    let reactor = test_reactor();
    let pki = Pki::new("watch");
    let first = pki.server("server", &["localhost"]);
    let acceptor = ServerOptions::from_pem_files(&first.cert, &first.key)
        .expect("identity")
        .reload_check(Some(Duration::ZERO))
        .build()
        .expect("acceptor");
    let port = echo_server(&reactor, &acceptor, &seen());
    let cert_of = |reactor: &torsion_reactor::Reactor| {
        let connector = trusting(&pki).build().expect("connector");
        let client = seen();
        let mut rec = Recorder::new(&client, b"x");
        rec.close_after = Some(1);
        wait_for(
            reactor,
            connect(reactor, &connector, &port, "localhost", rec),
        )
        .expect("handshake");
        let info = client.borrow().info.clone().expect("info");
        info.peer_certificates()[0].clone()
    };
    let before = cert_of(&reactor);
    pki.server("server", &["localhost"]);
    let after = cert_of(&reactor);
    assert_ne!(before, after);
}

/// A line protocol that switches to TLS on `STARTTLS` (announcing it with `220` when
/// `announce`), passing on what it read past that line; records the plaintext it saw.
struct StartTlsServer {
    acceptor: torsion_tls::TlsAcceptor,
    announce: bool,
    buf: Vec<u8>,
    plaintext: Shared,
    inner: Shared,
}

impl torsion_reactor::Protocol for StartTlsServer {
    fn data_received(&mut self, t: &torsion_reactor::Transport, data: &[u8]) {
        self.plaintext.borrow_mut().data.extend_from_slice(data);
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.buf.drain(..end + 2).collect();
            if line == b"STARTTLS\r\n" {
                if self.announce {
                    t.write(b"220 go ahead\r\n");
                }
                let rest = std::mem::take(&mut self.buf);
                self.acceptor
                    .start_tls(t, RecordingEcho(Rc::clone(&self.inner)), &rest)
                    .expect("start_tls");
                return;
            }
            t.write(b"250 ok\r\n");
        }
    }
}

/// Says HELO, asks for STARTTLS, and switches on `220` (or at once when `pipelined`).
struct StartTlsClient {
    connector: torsion_tls::TlsConnector,
    pipelined: bool,
    buf: Vec<u8>,
    inner: Shared,
}

impl StartTlsClient {
    fn switch(&mut self, t: &torsion_reactor::Transport, rest: &[u8]) {
        let mut rec = Recorder::new(&self.inner, b"secret");
        rec.close_after = Some(6);
        self.connector
            .start_tls(t, "localhost", rec, rest)
            .expect("start_tls");
    }
}

impl torsion_reactor::Protocol for StartTlsClient {
    fn connection_made(&mut self, t: &torsion_reactor::Transport) {
        if self.pipelined {
            t.write(b"STARTTLS\r\n");
            self.switch(t, b"");
        } else {
            t.write(b"HELO me\r\n");
        }
    }
    fn data_received(&mut self, t: &torsion_reactor::Transport, data: &[u8]) {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = self.buf.drain(..end + 2).collect();
            if line.starts_with(b"250") {
                t.write(b"STARTTLS\r\n");
            } else if line.starts_with(b"220") {
                let rest = std::mem::take(&mut self.buf);
                self.switch(t, &rest);
                return;
            }
        }
    }
}

#[test]
fn starttls_switches_a_live_connection_both_ways() {
    let reactor = test_reactor();
    let pki = Pki::new("starttls");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let connector = trusting(&pki).build().expect("connector");
    for pipelined in [false, true] {
        let plaintext = seen();
        let server_inner = seen();
        let (a, p, si) = (
            acceptor.clone(),
            Rc::clone(&plaintext),
            Rc::clone(&server_inner),
        );
        let port = reactor
            .listen_tcp(
                localhost(),
                torsion_reactor::factory_fn(move |_| StartTlsServer {
                    acceptor: a.clone(),
                    announce: !pipelined,
                    buf: Vec::new(),
                    plaintext: Rc::clone(&p),
                    inner: Rc::clone(&si),
                }),
            )
            .expect("listen");
        let client_inner = seen();
        let client = StartTlsClient {
            connector: connector.clone(),
            pipelined,
            buf: Vec::new(),
            inner: Rc::clone(&client_inner),
        };
        reactor.connect_tcp(
            port.local_addr().socket_addr().expect("addr"),
            OneShot(std::cell::RefCell::new(Some(client))),
        );
        run_until(&reactor, "the TLS echo after STARTTLS", || {
            client_inner.borrow().lost.is_some()
        });
        let c = client_inner.borrow();
        assert_eq!(c.data, b"secret", "pipelined: {pipelined}");
        assert!(c.info.is_some());
        assert!(server_inner.borrow().made);
        assert_eq!(server_inner.borrow().data, b"secret");
        let seen_plain = plaintext.borrow().data.clone();
        assert!(
            !seen_plain.windows(6).any(|w| w == b"secret"),
            "no plaintext after the switch"
        );
        assert!(seen_plain.starts_with(if pipelined {
            b"STARTTLS\r\n"
        } else {
            b"HELO me\r\n"
        }));
        port.stop_listening();
    }
}

#[test]
fn tls_over_a_unix_socket() {
    let reactor = test_reactor();
    let pki = Pki::new("unix");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let path = pki.path("tls.sock");
    let server_side = seen();
    let s = Rc::clone(&server_side);
    let port = reactor
        .listen_unix(
            &path,
            acceptor.wrap(torsion_reactor::factory_fn(move |_| {
                RecordingEcho(Rc::clone(&s))
            })),
        )
        .expect("listen");
    let connector = trusting(&pki).build().expect("connector");
    let client = seen();
    let mut rec = Recorder::new(&client, b"over unix");
    rec.close_after = Some(9);
    let factory = connector
        .wrap("localhost", OneShot(std::cell::RefCell::new(Some(rec))))
        .expect("name");
    let handshake = factory.next_handshake();
    reactor.connect_unix(&path, factory);
    let t = wait_for(&reactor, handshake).expect("handshake");
    assert!(matches!(t.peer_addr(), torsion_reactor::Address::Unix(_)));
    run_until(&reactor, "the echo", || client.borrow().lost.is_some());
    assert_eq!(client.borrow().data, b"over unix");
    assert_eq!(
        server_side.borrow().info.as_ref().map(|i| i.version_name()),
        Some("TLSv1.3")
    );
    port.stop_listening();
}

/// Panics on the first bytes.
struct Boom;

impl torsion_reactor::Protocol for Boom {
    fn data_received(&mut self, _: &torsion_reactor::Transport, _: &[u8]) {
        panic!("boom under TLS");
    }
}

#[test]
fn a_panic_under_tls_aborts_that_connection_only() {
    let reactor = test_reactor();
    let caught = Rc::new(std::cell::RefCell::new(Vec::new()));
    let c = Rc::clone(&caught);
    reactor.set_error_handler(move |what| c.borrow_mut().push(what.to_string()));
    reactor.set_fail_on_caught(false);
    let pki = Pki::new("panic");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let port = reactor
        .listen_tcp(
            localhost(),
            acceptor.wrap(torsion_reactor::factory_fn(|_| Boom)),
        )
        .expect("listen");
    let connector = trusting(&pki).build().expect("connector");
    let client = seen();
    wait_for(
        &reactor,
        connect(
            &reactor,
            &connector,
            &port,
            "localhost",
            Recorder::new(&client, b"x"),
        ),
    )
    .expect("handshake");
    run_until(&reactor, "the abort", || client.borrow().lost.is_some());
    assert!(
        !client
            .borrow()
            .lost
            .as_ref()
            .is_some_and(ConnectionLost::is_clean)
    );
    let caught = caught.borrow();
    assert!(
        caught.iter().any(|c| c.contains("boom under TLS")),
        "{caught:?}"
    );
}

#[test]
fn a_peer_gone_right_after_its_close_notify_is_a_clean_end() {
    // The peer sends data and close_notify, then resets its socket before our answer and
    // our own close_notify reach it. It said it was done, and the application let the
    // connection close: the end is clean, though writing to the reset socket fails.
    use std::io::Write;
    use torsion_tls::rustls::pki_types::ServerName;
    use torsion_tls::rustls::{ClientConnection, StreamOwned};

    let reactor = test_reactor();
    let pki = Pki::new("notifyreset");
    let acceptor = acceptor_for(&pki, &["localhost"])
        .build()
        .expect("acceptor");
    let server_side = seen();
    let port = echo_server(&reactor, &acceptor, &server_side);
    let addr = port.local_addr().socket_addr().expect("addr");

    // A plain rustls client (blocking, on its own thread), trusting what ours would.
    let config = trusting(&pki).build().expect("connector").config();
    let (handshaken_tx, handshaken_rx) = std::sync::mpsc::channel::<()>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let sock = std::net::TcpStream::connect(addr).expect("connects");
        sock.set_nodelay(true).expect("TCP_NODELAY");
        // (a server that never answers fails the handshake here, not forever)
        sock.set_read_timeout(Some(torsion_reactor::testing::PATIENCE))
            .expect("a read timeout");
        let name = ServerName::try_from("localhost").expect("a name");
        let conn = ClientConnection::new(config, name).expect("a session");
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("the handshake");
        }
        handshaken_tx.send(()).expect("the test waits");
        // While the server's reactor is not running: data, close_notify, and a reset.
        go_rx.recv().expect("the test says when");
        // Both records in one segment (Nagle would hold back a second small one, and the
        // reset would discard it).
        tls.conn.writer().write_all(b"last words").expect("writes");
        tls.conn.send_close_notify();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tls.sock).expect("sends");
        }
        socket2::SockRef::from(&tls.sock)
            .set_linger(Some(std::time::Duration::ZERO))
            .expect("SO_LINGER 0");
    });
    run_until(&reactor, "the handshake", || {
        server_side.borrow().made && handshaken_rx.try_recv().is_ok()
    });
    go_tx.send(()).expect("the client waits");
    client.join().expect("the client");
    run_until(&reactor, "the server side's end", || {
        server_side.borrow().lost.is_some()
    });
    let s = server_side.borrow();
    assert_eq!(s.data, b"last words");
    assert!(
        s.lost.as_ref().is_some_and(ConnectionLost::is_clean),
        "{:?}",
        s.lost
    );
    port.stop_listening();
}
