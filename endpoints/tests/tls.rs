//! `ssl`/`tls` servers and `tls` clients: parsing (with the files read and checked), the
//! canonical form, errors that name the file and the parameter, and a real connection.

#[path = "../../tls/tests/support/pki.rs"]
mod pki;

use std::cell::RefCell;
use std::rc::Rc;

use pki::{Pki, combined};
use torsion_endpoints::{
    ErrorKind, TlsClient, TlsServer, client_from_string, parse_client, parse_server, quote,
    server_from_string,
};
use torsion_reactor::testing::{test_reactor, wait_for};
use torsion_reactor::{Protocol, Transport, factory_fn};
use torsion_tls::TlsInfo;

fn q(p: &std::path::Path) -> String {
    quote(p.to_str().expect("utf-8"))
}

#[test]
fn server_descriptions_parse_and_print_back() {
    let pki = Pki::new("ep-parse");
    let s = pki.server("server", &["localhost"]);
    let both = pki.path("both.pem");
    combined(&s, &both);
    // Twisted's positional order: port, privateKey, certKey, sslmethod, interface, backlog.
    let d = format!(
        "ssl:8443:{}:{}:TLSv1_2_METHOD:127.0.0.1:7",
        q(&s.key),
        q(&s.cert)
    );
    let spec = parse_server(&d).expect("parses");
    let tls = spec.downcast_ref::<TlsServer>().expect("a TlsServer");
    assert_eq!(tls.tcp.port, 8443);
    assert_eq!(tls.private_key, s.key);
    assert_eq!(tls.cert_key.as_ref(), Some(&s.cert));
    assert!(tls.tls12_only);
    assert_eq!(tls.tcp.interface.to_string(), "127.0.0.1");
    assert_eq!(tls.tcp.backlog, 7);
    let again = parse_server(&tls.to_string()).expect("the canonical form parses");
    assert_eq!(again.downcast_ref::<TlsServer>(), Some(tls));

    // tls: is a synonym; one file with both; our extensions.
    let d = format!(
        "tls:port=0:privateKey={}:caCerts={}:requireClientCert=1:alpn=h2,http/1.1",
        q(&both),
        q(&pki.ca)
    );
    let spec = parse_server(&d).expect("parses");
    assert_eq!(spec.type_name(), "tls");
    let tls = spec.downcast_ref::<TlsServer>().expect("a TlsServer");
    assert_eq!(tls.certificate_file(), both);
    assert!(tls.require_client_cert);
    assert_eq!(tls.alpn, ["h2", "http/1.1"]);
    let names: Vec<String> = spec.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "port",
            "privateKey",
            "certKey",
            "sslmethod",
            "interface",
            "backlog",
            "extraCertChain",
            "dhParameters",
            "caCerts",
            "requireClientCert",
            "alpn",
            "reuseport"
        ]
    );
}

#[test]
fn file_problems_name_the_file_and_the_parameter() {
    let pki = Pki::new("ep-files");
    let s = pki.server("server", &["localhost"]);
    let other = pki.server("other", &["localhost"]);
    let old = pki.expired_server("old", &["localhost"]);
    let cases = [
        (
            format!(
                "ssl:0:privateKey={}:certKey={}",
                q(&s.key),
                q(&pki.path("nope.pem"))
            ),
            ErrorKind::BadFile,
            "certKey",
            "nope.pem",
        ),
        (
            format!("ssl:0:privateKey={}:certKey={}", q(&other.key), q(&s.cert)),
            ErrorKind::BadCertificate,
            "privateKey",
            "does not match",
        ),
        (
            format!("ssl:0:privateKey={}:certKey={}", q(&old.key), q(&old.cert)),
            ErrorKind::BadCertificate,
            "certKey",
            "expired on 2001-01-01",
        ),
        (
            format!("ssl:0:privateKey={}:caCerts={}", q(&s.key), q(&s.key)),
            ErrorKind::BadFile,
            "privateKey",
            "holds no certificate",
        ),
        (
            format!("tls:localhost:443:trustRoots={}", q(&pki.path("gone.pem"))),
            ErrorKind::BadFile,
            "trustRoots",
            "gone.pem",
        ),
        (
            format!(
                "tls:localhost:443:certificate={}:privateKey={}",
                q(&s.cert),
                q(&other.key)
            ),
            ErrorKind::BadCertificate,
            "privateKey",
            "does not match",
        ),
    ];
    for (d, kind, param, text) in cases {
        let err = if d.starts_with("tls:localhost") {
            parse_client(&d).expect_err("a bad file")
        } else {
            parse_server(&d).expect_err("a bad file")
        };
        assert_eq!(err.kind(), kind, "{d}: {err}");
        assert_eq!(err.param(), Some(param), "{d}: {err}");
        assert!(err.to_string().contains(text), "{d}: {err}");
    }
}

#[test]
fn client_descriptions_parse_and_print_back() {
    let pki = Pki::new("ep-client");
    let c = pki.client("client", "alice");
    let d = format!(
        "tls:host=example.org:443:trustRoots={}:certificate={}:privateKey={}:timeout=5:alpn=h2",
        q(&pki.ca),
        q(&c.cert),
        q(&c.key)
    );
    let spec = parse_client(&d).expect("parses");
    let tls = spec.downcast_ref::<TlsClient>().expect("a TlsClient");
    assert_eq!(tls.tcp.host, "example.org");
    assert_eq!(tls.tcp.timeout.as_secs(), 5);
    assert_eq!(tls.alpn, ["h2"]);
    let again = parse_client(&tls.to_string()).expect("the canonical form parses");
    assert_eq!(again.downcast_ref::<TlsClient>(), Some(tls));
}

struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, d: &[u8]) {
        t.write(d);
    }
}

struct Ask(Rc<RefCell<Vec<u8>>>);
impl Protocol for Ask {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"over an endpoint");
    }
    fn data_received(&mut self, t: &Transport, d: &[u8]) {
        self.0.borrow_mut().extend_from_slice(d);
        if self.0.borrow().len() == 16 {
            t.lose_connection();
        }
    }
}

#[test]
fn an_ssl_server_and_a_tls_client_talk() {
    let reactor = test_reactor();
    let pki = Pki::new("ep-talk");
    let s = pki.server("server", &["localhost", "127.0.0.1"]);
    let d = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}:alpn=echo",
        q(&s.key),
        q(&s.cert)
    );
    let port = server_from_string(&reactor, &d)
        .expect("parses")
        .listen(factory_fn(|_| Echo))
        .expect("listens");
    let addr = port.local_addr().socket_addr().expect("addr");
    for host in ["localhost", "127.0.0.1"] {
        let got = Rc::new(RefCell::new(Vec::new()));
        let d = format!(
            "tls:{host}:{}:trustRoots={}:alpn=echo",
            addr.port(),
            q(&pki.ca)
        );
        let t = wait_for(
            &reactor,
            client_from_string(&reactor, &d)
                .expect("parses")
                .connect_protocol(Ask(Rc::clone(&got))),
        )
        .expect("connects and shakes hands");
        let info = TlsInfo::of(&t).expect("a TLS transport");
        assert_eq!(info.alpn_protocol(), Some(&b"echo"[..]));
        reactor
            .run_until(torsion_reactor::testing::PATIENCE, || {
                got.borrow().len() == 16
            })
            .expect("the echo");
        assert_eq!(*got.borrow(), b"over an endpoint");
    }
    // Trusting the system's roots only, the test CA's certificate is refused.
    let d = format!("tls:localhost:{}", addr.port());
    let err = wait_for(
        &reactor,
        client_from_string(&reactor, &d)
            .expect("parses")
            .connect_protocol(Ask(Rc::default())),
    )
    .expect_err("an unknown issuer");
    assert_eq!(err.kind(), torsion_reactor::ErrorKind::Tls, "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot connect to localhost:{}: TLS failed:",
            addr.port()
        )),
        "{err}"
    );
}

/// A certificate issued by an intermediate CA: with `extraCertChain` naming the
/// intermediate, the server sends the whole chain and a client trusting only the root
/// connects; without it, the client cannot build the chain and refuses the server.
#[test]
fn extra_cert_chain_sends_the_intermediate() {
    let reactor = test_reactor();
    let root = Pki::new("ep-chain-root");
    let intermediate = root.intermediate("ep-chain-intermediate");
    let s = intermediate.server("server", &["localhost"]);
    let connect = |server: &str| {
        let port = server_from_string(&reactor, server)
            .expect("parses")
            .listen(factory_fn(|_| Echo))
            .expect("listens");
        let addr = port.local_addr().socket_addr().expect("addr");
        let d = format!("tls:localhost:{}:trustRoots={}", addr.port(), q(&root.ca));
        let got = Rc::new(RefCell::new(Vec::new()));
        let outcome = wait_for(
            &reactor,
            client_from_string(&reactor, &d)
                .expect("parses")
                .connect_protocol(Ask(Rc::clone(&got))),
        );
        port.stop_listening();
        outcome
    };
    let chained = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}:extraCertChain={}",
        q(&s.key),
        q(&s.cert),
        q(&intermediate.ca)
    );
    let t = connect(&chained).expect("the chain reaches the root the client trusts");
    let info = TlsInfo::of(&t).expect("a TLS transport");
    assert_eq!(
        info.peer_certificates().len(),
        2,
        "the leaf and the intermediate"
    );
    t.abort_connection();
    let alone = format!(
        "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        q(&s.key),
        q(&s.cert)
    );
    let err = connect(&alone).expect_err("no way from the leaf to the root");
    assert_eq!(
        err.tls_failure().map(|f| f.kind()),
        Some(torsion_reactor::TlsFailureKind::Certificate),
        "{err}"
    );
}
