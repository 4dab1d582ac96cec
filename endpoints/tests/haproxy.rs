//! The PROXY protocol over real sockets: a torsion client sending a header to a torsion
//! `haproxy:` server (TCP, Unix, TLS), headers dribbled byte by byte, every way a header
//! can be wrong (each closes the connection with one warning and builds no protocol), the
//! header timeout on a `Clock`, and the layer over a transport that cannot switch protocols.
//! HAProxy itself is in the facade's `tests/haproxy_interop.rs`.

use std::cell::RefCell;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

#[path = "../../tls/tests/support/pki.rs"]
mod pki;

use torsion_endpoints::haproxy::{
    HeaderReader, ProxyClientFactory, ProxyHeader, ProxyServerFactory, Version, tlv,
};
use torsion_endpoints::{quote, server_from_string};
use torsion_reactor::testing::{PATIENCE, StringTransport, capture_logs, test_reactor};
use torsion_reactor::{Address, Clock, Factory, Protocol, Reactor, Transport, factory_fn};
use torsion_tls::{ClientOptions, TlsInfo, TrustRoots};

/// What the server side saw.
#[derive(Default)]
struct Seen {
    /// The address each `build_protocol` was given.
    built_for: Vec<Address>,
    /// `peer_addr()` in each `connection_made`.
    peers: Vec<Address>,
    headers: Vec<Option<Rc<ProxyHeader>>>,
    tls: Vec<bool>,
    transports: Vec<Transport>,
    data: Vec<u8>,
}

type Shared = Rc<RefCell<Seen>>;

struct Echo(Shared);

impl Protocol for Echo {
    fn connection_made(&mut self, t: &Transport) {
        let mut seen = self.0.borrow_mut();
        seen.peers.push(t.peer_addr());
        seen.headers.push(t.extra::<ProxyHeader>());
        seen.tls.push(TlsInfo::of(t).is_some());
        seen.transports.push(t.clone());
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.0.borrow_mut().data.extend_from_slice(data);
        t.write(data);
    }
}

fn echo_factory(seen: &Shared) -> impl Factory<Protocol = Echo> + use<> {
    let seen = Rc::clone(seen);
    factory_fn(move |peer: &Address| {
        seen.borrow_mut().built_for.push(peer.clone());
        Echo(Rc::clone(&seen))
    })
}

/// Writes `hello` as soon as it is connected (so that it leaves with the header) and
/// keeps what comes back.
struct Hello(Rc<RefCell<Vec<u8>>>);

impl Protocol for Hello {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"hello");
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.0.borrow_mut().extend_from_slice(data);
    }
}

fn listen(reactor: &Reactor, description: &str, seen: &Shared) -> Address {
    let port = server_from_string(reactor, description)
        .expect("a valid description")
        .listen(echo_factory(seen))
        .expect("listens");
    let addr = port.local_addr();
    std::mem::forget(port); // listens until the test's reactor is closed
    addr
}

fn tcp_addr(a: &Address) -> SocketAddr {
    a.socket_addr().expect("a TCP address")
}

fn client_header(version: Version) -> ProxyHeader {
    let source = "203.0.113.9:4242".parse().expect("an address");
    let destination = "198.51.100.1:443".parse().expect("an address");
    match version {
        Version::V1 => ProxyHeader::v1(source, destination),
        Version::V2 => ProxyHeader::v2(source, destination)
            .with_tlv(tlv::ALPN, "h2")
            .with_tlv(tlv::AUTHORITY, "example.org")
            .with_tlv(tlv::UNIQUE_ID, "conn-42")
            .with_tlv(0xE1, [9, 9])
            .with_crc32c(),
    }
}

#[test]
fn a_torsion_client_sends_the_header_and_the_server_sees_the_client() {
    for version in [Version::V1, Version::V2] {
        let reactor = test_reactor();
        let seen = Shared::default();
        let addr = listen(&reactor, "haproxy:tcp:0:interface=127.0.0.1", &seen);
        let echoed = Rc::new(RefCell::new(Vec::new()));
        let e = Rc::clone(&echoed);
        let factory = ProxyClientFactory::with_header(
            factory_fn(move |_| Hello(Rc::clone(&e))),
            client_header(version),
        )
        .expect("encodable");
        reactor.connect_tcp(tcp_addr(&addr), factory);
        reactor
            .run_until(PATIENCE, || echoed.borrow().as_slice() == b"hello")
            .expect("the echo comes back through the PROXY layer");
        let seen = seen.borrow();
        let client = Address::Tcp("203.0.113.9:4242".parse().expect("an address"));
        assert_eq!(seen.built_for, std::slice::from_ref(&client), "{version:?}");
        assert_eq!(seen.peers, [client], "{version:?}");
        let header = seen.headers[0]
            .as_ref()
            .expect("the header is on the transport");
        assert_eq!(header.version, version);
        // The layer handed the connection over: the connection runs Echo itself.
        let server_side = seen.transports[0].clone();
        server_side
            .with_protocol::<Echo, _>(|_| ())
            .expect("the connection's protocol is the application's");
        assert_eq!(
            header.destination().map(|d| d.to_string()).as_deref(),
            Some("198.51.100.1:443")
        );
        if version == Version::V2 {
            assert_eq!(header.alpn(), Some(&b"h2"[..]));
            assert_eq!(header.authority(), Some("example.org"));
            assert_eq!(header.unique_id(), Some(&b"conn-42"[..]));
            assert_eq!(header.tlv(0xE1), Some(&[9, 9][..]));
        }
    }
}

#[test]
fn local_and_unknown_headers_keep_the_socket_peer() {
    for header in [ProxyHeader::local(), ProxyHeader::unknown(Version::V1)] {
        let reactor = test_reactor();
        let seen = Shared::default();
        let addr = listen(&reactor, "haproxy:tcp:0:interface=127.0.0.1", &seen);
        let echoed = Rc::new(RefCell::new(Vec::new()));
        let e = Rc::clone(&echoed);
        let client_local = Rc::new(RefCell::new(None));
        let cl = Rc::clone(&client_local);
        let factory = ProxyClientFactory::new(
            factory_fn(move |_| Hello(Rc::clone(&e))),
            move |t: &Transport| {
                *cl.borrow_mut() = Some(t.local_addr());
                header.clone()
            },
        );
        reactor.connect_tcp(tcp_addr(&addr), factory);
        reactor
            .run_until(PATIENCE, || echoed.borrow().as_slice() == b"hello")
            .expect("echoed");
        let local = client_local.borrow().clone().expect("the header was made");
        assert_eq!(seen.borrow().peers, std::slice::from_ref(&local));
        assert_eq!(seen.borrow().built_for, [local]);
    }
}

#[test]
fn over_a_unix_socket_the_peer_is_the_headers_tcp_client() {
    let reactor = test_reactor();
    let dir = std::env::temp_dir().join(format!("torsion-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let path = dir.join("s.sock");
    let seen = Shared::default();
    listen(
        &reactor,
        &format!(
            "haproxy:unix:{}:lockfile=0",
            quote(path.to_str().expect("UTF-8"))
        ),
        &seen,
    );
    let echoed = Rc::new(RefCell::new(Vec::new()));
    let e = Rc::clone(&echoed);
    let factory = ProxyClientFactory::with_header(
        factory_fn(move |_| Hello(Rc::clone(&e))),
        client_header(Version::V2),
    )
    .expect("encodable");
    reactor.connect_unix(&path, factory);
    let done = reactor.run_until(PATIENCE, || echoed.borrow().as_slice() == b"hello");
    let _ = std::fs::remove_dir_all(&dir);
    done.expect("echoed over the Unix socket");
    assert_eq!(seen.borrow().peers[0].to_string(), "203.0.113.9:4242");
}

#[test]
fn over_tls_the_header_comes_before_the_handshake() {
    let reactor = test_reactor();
    let pki = pki::Pki::new("haproxy");
    let issued = pki.server("server", &["localhost"]);
    let seen = Shared::default();
    let description = format!(
        "haproxy:ssl:0:interface=127.0.0.1:privateKey={}:certKey={}",
        quote(issued.key.to_str().expect("UTF-8")),
        quote(issued.cert.to_str().expect("UTF-8"))
    );
    let addr = listen(&reactor, &description, &seen);
    let echoed = Rc::new(RefCell::new(Vec::new()));
    let e = Rc::clone(&echoed);
    let connector = ClientOptions::new()
        .trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("the CA"))
        .build()
        .expect("a connector");
    let tls = connector
        .wrap("localhost", factory_fn(move |_| Hello(Rc::clone(&e))))
        .expect("a TLS factory");
    // The header goes under TLS: first on the wire, in the clear.
    let factory = ProxyClientFactory::with_header(tls, client_header(Version::V2)).expect("ok");
    reactor.connect_tcp(tcp_addr(&addr), factory);
    reactor
        .run_until(PATIENCE, || echoed.borrow().as_slice() == b"hello")
        .expect("the TLS echo comes back");
    let seen = seen.borrow();
    assert_eq!(seen.built_for[0].to_string(), "203.0.113.9:4242");
    assert_eq!(seen.peers[0].to_string(), "203.0.113.9:4242");
    assert_eq!(seen.tls, [true]);
    let header = seen.headers[0]
        .as_ref()
        .expect("the header, through the TLS transport");
    assert_eq!(header.unique_id(), Some(&b"conn-42"[..]));
}

/// A raw client: a non-blocking std socket the test writes to between reactor turns.
fn raw_client(addr: &Address) -> TcpStream {
    let s = TcpStream::connect(tcp_addr(addr)).expect("connects");
    s.set_nodelay(true).expect("nodelay");
    s.set_nonblocking(true).expect("non-blocking");
    s
}

/// Whether the server closed `s` (end of file or a reset).
fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != IoErrorKind::WouldBlock,
    }
}

#[test]
fn a_header_dribbled_one_byte_at_a_time_works() {
    let reactor = test_reactor();
    let seen = Shared::default();
    let addr = listen(&reactor, "haproxy:tcp:0:interface=127.0.0.1", &seen);
    let mut s = raw_client(&addr);
    let header = client_header(Version::V2).encode().expect("encodable");
    let (last, most) = header.split_last().expect("not empty");
    for b in most {
        s.write_all(std::slice::from_ref(b)).expect("write");
        reactor
            .iterate(Duration::from_millis(1))
            .expect("an iteration");
    }
    assert!(
        seen.borrow().built_for.is_empty(),
        "nothing built before the header is done"
    );
    s.write_all(&[*last]).expect("write");
    reactor
        .run_until(PATIENCE, || seen.borrow().built_for.len() == 1)
        .expect("built once the last byte arrives");
    s.write_all(b"ping").expect("write");
    reactor
        .run_until(PATIENCE, || seen.borrow().data == b"ping")
        .expect("the bytes after the header arrive");
    assert_eq!(seen.borrow().peers[0].to_string(), "203.0.113.9:4242");
    let mut back = Vec::new();
    reactor
        .run_until(PATIENCE, || {
            let mut buf = [0; 16];
            if let Ok(n) = s.read(&mut buf) {
                back.extend_from_slice(&buf[..n]);
            }
            back == b"ping"
        })
        .expect("echoed");
}

#[test]
fn bytes_after_the_header_in_the_same_write_are_kept() {
    let reactor = test_reactor();
    let seen = Shared::default();
    let addr = listen(&reactor, "haproxy:tcp:0:interface=127.0.0.1", &seen);
    let mut s = raw_client(&addr);
    let mut bytes = b"PROXY TCP6 2001:db8::7 2001:db8::1 5000 80\r\n".to_vec();
    bytes.extend_from_slice(b"first bytes");
    s.write_all(&bytes).expect("write");
    reactor
        .run_until(PATIENCE, || seen.borrow().data == b"first bytes")
        .expect("the application's first bytes arrive");
    assert_eq!(seen.borrow().peers[0].to_string(), "[2001:db8::7]:5000");
}

#[test]
fn a_bad_header_closes_the_connection_with_one_warning() {
    let logs = capture_logs();
    let mut oversized = ProxyHeader::v2("1.2.3.4:1".parse().unwrap(), "1.2.3.4:2".parse().unwrap())
        .encode()
        .expect("encodable");
    oversized[14..16].copy_from_slice(&0xfff0u16.to_be_bytes());
    let mut bad_version = ProxyHeader::local().encode().expect("encodable");
    bad_version[12] = 0x10;
    let cases: [(&str, Vec<u8>, bool, &str); 6] = [
        (
            "missing",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            false,
            "no PROXY protocol header",
        ),
        (
            "malformed",
            b"PROXY TCP4 192.0.2.1 192.0.2.2 0123 80\r\n".to_vec(),
            false,
            "is not a port",
        ),
        ("oversized", oversized, false, "at most 4096 are accepted"),
        (
            "unsupported version",
            bad_version,
            false,
            "only 2 is defined",
        ),
        (
            "truncated",
            b"PROXY TCP4 192.0.2.1 192.0".to_vec(),
            true,
            "closed before its PROXY header was complete (26 bytes of it received)",
        ),
        (
            "too long",
            [&b"PROXY UNKNOWN "[..], &[b'x'; 100]].concat(),
            false,
            "no CRLF",
        ),
    ];
    for (what, bytes, then_close, message) in cases {
        let reactor = test_reactor();
        let seen = Shared::default();
        let addr = listen(&reactor, "haproxy:tcp:0:interface=127.0.0.1", &seen);
        let mut s = raw_client(&addr);
        let me = s.local_addr().expect("an address").to_string();
        s.write_all(&bytes).expect("write");
        if then_close {
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
        }
        reactor
            .run_until(PATIENCE, || closed(&mut s))
            .unwrap_or_else(|e| panic!("{what}: the server should close the connection: {e}"));
        assert!(
            seen.borrow().built_for.is_empty(),
            "{what}: no protocol built"
        );
        let lines = logs.lines_with(&format!("from {me}"));
        assert_eq!(lines.len(), 1, "{what}: one line about it: {lines:?}");
        assert!(lines[0].starts_with("WARN "), "{what}: {lines:?}");
        assert!(lines[0].contains(message), "{what}: {lines:?}");
    }
}

#[test]
fn a_client_that_sends_nothing_is_closed_after_the_timeout() {
    let logs = capture_logs();
    let reactor = test_reactor();
    let clock = Clock::new();
    let seen = Shared::default();
    let factory = ProxyServerFactory::new(echo_factory(&seen))
        .timeout(Duration::from_secs(3))
        .with_scheduler(clock.scheduler());
    let port = reactor
        .listen_tcp("127.0.0.1:0".parse().expect("an address"), factory)
        .expect("listens");
    let mut s = raw_client(&port.local_addr());
    let me = s.local_addr().expect("an address").to_string();
    reactor
        .run_until(PATIENCE, || clock.pending() == 1)
        .expect("the header timer is set when the connection is made");
    clock.advance(Duration::from_millis(2999));
    for _ in 0..3 {
        reactor.iterate(Duration::ZERO).expect("an iteration");
    }
    assert!(!closed(&mut s), "still open before the timeout");
    clock.advance(Duration::from_millis(1));
    reactor
        .run_until(PATIENCE, || closed(&mut s))
        .expect("closed at the timeout");
    assert!(seen.borrow().built_for.is_empty());
    let lines = logs.lines_with(&format!("from {me}"));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("no complete PROXY header within 3s (0 bytes of it received)"),
        "{lines:?}"
    );

    // A header that arrives in time cancels the timer.
    let mut s = raw_client(&port.local_addr());
    reactor
        .run_until(PATIENCE, || clock.pending() == 1)
        .expect("a timer for the second connection");
    s.write_all(b"PROXY UNKNOWN\r\n").expect("write");
    reactor
        .run_until(PATIENCE, || seen.borrow().built_for.len() == 1)
        .expect("built once the header is read");
    assert_eq!(clock.pending(), 0, "the timer is cancelled");
}

#[test]
fn over_a_transport_that_cannot_switch_protocols_the_layer_forwards() {
    let seen = Shared::default();
    let factory = ProxyServerFactory::new(echo_factory(&seen));
    let clock = Clock::new();
    let factory = factory.with_scheduler(clock.scheduler());
    let mut layer = factory
        .build_protocol(&Address::Other("test".into()))
        .expect("a layer");
    let st = StringTransport::new();
    let t = st.transport();
    layer.connection_made(&t);
    let mut input = client_header(Version::V1).encode().expect("encodable");
    input.extend_from_slice(b"after");
    for b in &input[..input.len() - 5] {
        layer.data_received(&t, std::slice::from_ref(b));
    }
    assert_eq!(t.peer_addr().to_string(), "203.0.113.9:4242");
    layer.data_received(&t, b"after");
    layer.data_received(&t, b" more");
    assert_eq!(st.written(), b"after more", "echoed through the layer");
    assert_eq!(seen.borrow().built_for.len(), 1);
    assert_eq!(clock.pending(), 0);
    // A reader the layer is built on, fed the same way, agrees.
    let (h, _) = HeaderReader::new()
        .feed(&input)
        .expect("ok")
        .expect("complete");
    assert_eq!(seen.borrow().headers[0].as_deref(), Some(&h));
}

/// Switches to `Echo` in `connection_made`, or pauses reading there, and records what it
/// was given itself.
struct Edge {
    seen: Shared,
    switch: bool,
    transports: Rc<RefCell<Vec<Transport>>>,
    got: Rc<RefCell<Vec<u8>>>,
}

impl Protocol for Edge {
    fn connection_made(&mut self, t: &Transport) {
        self.transports.borrow_mut().push(t.clone());
        if self.switch {
            t.set_protocol(Echo(Rc::clone(&self.seen)))
                .expect("switches");
        } else {
            t.pause_reading();
        }
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
    }
}

#[test]
fn after_the_header_the_connection_calls_the_protocol_directly() {
    for switch in [false, true] {
        let reactor = test_reactor();
        let seen = Shared::default();
        let transports = Rc::new(RefCell::new(Vec::new()));
        let got = Rc::new(RefCell::new(Vec::new()));
        let (s2, t2, g2) = (Rc::clone(&seen), Rc::clone(&transports), Rc::clone(&got));
        let factory = ProxyServerFactory::new(factory_fn(move |_| Edge {
            seen: Rc::clone(&s2),
            switch,
            transports: Rc::clone(&t2),
            got: Rc::clone(&g2),
        }));
        let port = reactor
            .listen_tcp("127.0.0.1:0".parse().expect("an address"), factory)
            .expect("listens");
        let mut s = raw_client(&port.local_addr());
        s.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\r\nabc")
            .expect("write");
        reactor
            .run_until(PATIENCE, || transports.borrow().len() == 1)
            .expect("connected");
        for _ in 0..3 {
            reactor.iterate(Duration::ZERO).expect("an iteration");
        }
        let t = transports.borrow()[0].clone();
        assert_eq!(t.peer_addr().to_string(), "192.0.2.1:1000");
        if switch {
            // The bytes of the header's read went to the protocol that was told
            // connection_made; everything later goes to its replacement, called directly.
            assert_eq!(got.borrow().as_slice(), b"abc");
            s.write_all(b"def").expect("write");
            reactor
                .run_until(PATIENCE, || seen.borrow().data == b"def")
                .expect("the replacement gets the next bytes");
            t.with_protocol::<Echo, _>(|_| ())
                .expect("the connection runs Echo itself");
        } else {
            // Paused in connection_made: the bytes that came with the header wait.
            assert!(got.borrow().is_empty(), "nothing delivered while paused");
            assert!(!t.is_reading());
            t.resume_reading();
            reactor
                .run_until(PATIENCE, || got.borrow().as_slice() == b"abc")
                .expect("delivered once reading resumes");
        }
    }
}
