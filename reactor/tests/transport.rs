//! The transport handle beyond reading and writing: swapping the protocol of a live
//! connection, reaching it from elsewhere, the socket's descriptor and options.

mod common;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::time::Duration;

use common::{PATIENCE, listen, reactor};
use torsion_reactor::{ConnectionLost, ErrorKind, Protocol, Transport, factory_fn};

type Log = Rc<RefCell<Vec<String>>>;

/// Echoes words until `upgrade`, then hands the connection to `Shout`. The client sends
/// one word and waits for the answer, but a word may still arrive in pieces (TCP keeps no
/// message boundaries; the fault-injection suite reads one byte at a time now and then),
/// so both protocols collect a whole word before they act on it.
struct Plain(Log, Vec<u8>);

impl Protocol for Plain {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.1.extend_from_slice(data);
        if !matches!(&self.1[..], b"hello" | b"upgrade") {
            return; // not a whole word yet
        }
        let word = std::mem::take(&mut self.1);
        self.0
            .borrow_mut()
            .push(format!("plain: {}", String::from_utf8_lossy(&word)));
        if word == b"upgrade" {
            t.write(b"ok\n");
            t.set_protocol(Shout(self.0.clone(), Vec::new())).unwrap();
            // Still this protocol until the callback returns.
            let busy = t.with_protocol(|_: &mut Plain| ()).unwrap_err();
            assert_eq!(busy.kind(), ErrorKind::Busy);
        } else {
            t.write(&word);
        }
    }
    fn connection_lost(&mut self, _: &ConnectionLost) {
        self.0.borrow_mut().push("plain lost".into());
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.0.borrow_mut().push("plain dropped".into());
    }
}

struct Shout(Log, Vec<u8>);

impl Protocol for Shout {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.1.extend_from_slice(data);
        if self.1 != b"quiet" {
            return; // not a whole word yet
        }
        let word = std::mem::take(&mut self.1);
        self.0
            .borrow_mut()
            .push(format!("shout: {}", String::from_utf8_lossy(&word)));
        t.write(&word.to_ascii_uppercase());
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.0.borrow_mut().push(format!("shout lost: {reason}"));
    }
}

fn read_exactly(c: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    c.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn set_protocol_hands_the_next_callbacks_to_the_new_protocol() {
    let r = reactor();
    let log: Log = Rc::default();
    let l = log.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| Plain(l.clone(), Vec::new())));
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let talk = std::thread::spawn(move || {
        c.write_all(b"hello").unwrap();
        let a = read_exactly(&mut c, 5);
        c.write_all(b"upgrade").unwrap();
        let b = read_exactly(&mut c, 3);
        c.write_all(b"quiet").unwrap();
        let d = read_exactly(&mut c, 5);
        drop(c);
        (a, b, d)
    });
    r.run_until(PATIENCE, || talk.is_finished())
        .expect("the conversation ends");
    let (a, b, d) = talk.join().unwrap();
    assert_eq!(
        (&a[..], &b[..], &d[..]),
        (&b"hello"[..], &b"ok\n"[..], &b"QUIET"[..])
    );
    r.run_until(PATIENCE, || {
        log.borrow().iter().any(|l| l.starts_with("shout lost"))
    })
    .expect("the new protocol hears the loss");
    assert_eq!(
        *log.borrow(),
        [
            "plain: hello",
            "plain: upgrade",
            "plain dropped",
            "shout: quiet",
            "shout lost: the connection was closed cleanly",
        ],
        "the old protocol is dropped after its callback; connection_lost once, to the new one"
    );
}

/// Keeps its transport where the test can reach it, and counts what it received.
struct Counter {
    transports: Rc<RefCell<Vec<Transport>>>,
    bytes: usize,
}

impl Protocol for Counter {
    fn connection_made(&mut self, t: &Transport) {
        self.transports.borrow_mut().push(t.clone());
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.bytes += data.len();
    }
}

#[test]
fn with_protocol_reaches_a_connections_protocol_by_type() {
    let r = reactor();
    let transports: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let t = transports.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Counter {
            transports: t.clone(),
            bytes: 0,
        }),
    );
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"12345").unwrap();
    r.run_until(PATIENCE, || {
        transports
            .borrow()
            .first()
            .is_some_and(|t| t.with_protocol(|p: &mut Counter| p.bytes).unwrap() == 5)
    })
    .expect("five bytes counted");
    let t = transports.borrow()[0].clone();
    let wrong = t.with_protocol(|_: &mut Shout| ()).unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::InvalidInput);
    assert!(wrong.to_string().contains("Shout"), "{wrong}");
    t.set_protocol(Shout(Rc::default(), Vec::new())).unwrap();
    assert!(
        t.with_protocol(|_: &mut Shout| ()).is_ok(),
        "swapped at once from outside"
    );
    t.abort_connection();
    r.run_until(PATIENCE, || t.with_protocol(|_: &mut Shout| ()).is_err())
        .expect("the protocol is gone once connection_lost ran");
    assert_eq!(
        t.with_protocol(|_: &mut Shout| ()).unwrap_err().kind(),
        ErrorKind::ConnectionClosed
    );
    assert_eq!(
        t.set_protocol(Shout(Rc::default(), Vec::new()))
            .unwrap_err()
            .kind(),
        ErrorKind::ConnectionClosed
    );
}

#[test]
fn the_socket_and_its_options_are_reachable_while_open() {
    let r = reactor();
    let transports: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let t = transports.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Counter {
            transports: t.clone(),
            bytes: 0,
        }),
    );
    let mut c = TcpStream::connect(addr).unwrap();
    r.run_until(PATIENCE, || !transports.borrow().is_empty())
        .expect("accepted");
    let t = transports.borrow()[0].clone();
    let fd = t
        .with_fd(|fd| std::os::fd::AsRawFd::as_raw_fd(&fd))
        .unwrap();
    assert!(fd > 2);
    assert!(
        t.with_socket(|s| s.tcp_nodelay()).unwrap(),
        "TCP_NODELAY is on by default"
    );
    t.with_socket(|s| s.set_linger(Some(Duration::ZERO)))
        .unwrap();
    assert_eq!(t.with_socket(|s| s.linger()).unwrap(), Some(Duration::ZERO));
    // With SO_LINGER 0, closing resets the connection: the peer sees ECONNRESET.
    t.lose_connection();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let reader = std::thread::spawn(move || c.read(&mut [0u8; 16]).map_err(|e| e.kind()));
    r.run_until(PATIENCE, || reader.is_finished())
        .expect("the peer sees the close");
    assert_eq!(
        reader.join().unwrap(),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(
        t.with_fd(|_| ()).unwrap_err().kind(),
        ErrorKind::ConnectionClosed
    );
    let double = torsion_reactor::testing::StringTransport::new().transport();
    assert_eq!(
        double.with_fd(|_| ()).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn a_type_erased_factorys_protocol_is_boxed_once() {
    // Were the protocol boxed twice, it would be a `Box<dyn Protocol>` inside the
    // connection's box, and not reachable as a `Counter`.
    let r = reactor();
    let transports: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let t = transports.clone();
    let erased = torsion_reactor::BoxedFactory::new(factory_fn(move |_| Counter {
        transports: t.clone(),
        bytes: 0,
    }));
    let (_port, addr) = listen(&r, torsion_reactor::BoxedFactory::new(erased));
    let _c = TcpStream::connect(addr).unwrap();
    r.run_until(PATIENCE, || !transports.borrow().is_empty())
        .expect("accepted");
    let t = transports.borrow()[0].clone();
    assert_eq!(t.with_protocol(|p: &mut Counter| p.bytes).unwrap(), 0);
}

/// What a layer learned about a connection (the PROXY protocol's client), for the test.
#[derive(Debug, PartialEq)]
struct Learned(&'static str);

#[test]
fn a_layer_sets_the_peer_address_once_and_attaches_what_it_learned() {
    let r = reactor();
    let transports: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let t = transports.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Counter {
            transports: t.clone(),
            bytes: 0,
        }),
    );
    let c = TcpStream::connect(addr).unwrap();
    r.run_until(PATIENCE, || !transports.borrow().is_empty())
        .expect("connected");
    let t = transports.borrow()[0].clone();
    let socket_peer = t.peer_addr();
    assert_eq!(socket_peer.socket_addr(), Some(c.local_addr().unwrap()));
    assert!(t.extra::<Learned>().is_none());

    let client: torsion_reactor::Address = "192.0.2.7:4000"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();
    t.set_peer_addr(client.clone()).unwrap();
    assert_eq!(t.peer_addr(), client);
    let again = t.set_peer_addr(socket_peer.clone()).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::InvalidInput);
    assert!(again.to_string().contains("already set"), "{again}");
    assert_eq!(t.peer_addr(), client, "set once");

    t.attach_extra(Learned("first")).unwrap();
    t.attach_extra(7u32).unwrap();
    t.attach_extra(Learned("second")).unwrap();
    assert_eq!(t.extra::<Learned>().as_deref(), Some(&Learned("second")));
    assert_eq!(t.extra::<u32>().as_deref(), Some(&7));
    assert!(t.extra::<String>().is_none());
}
