//! Shared by the TLS tests: certificates (`pki`), a recording protocol, an echo server.

#![allow(dead_code)]

pub mod pki;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use torsion_reactor::testing::PATIENCE;
use torsion_reactor::{
    ClientFactory, ConnectionLost, Deferred, Factory, ListeningPort, Protocol, Reactor, Transport,
    factory_fn,
};
use torsion_tls::{TlsAcceptor, TlsConnector, TlsInfo};

/// What a [`Recorder`] saw.
#[derive(Default)]
pub struct Seen {
    pub made: bool,
    pub info: Option<Rc<TlsInfo>>,
    pub data: Vec<u8>,
    pub eof: bool,
    pub lost: Option<ConnectionLost>,
    pub transport: Option<Transport>,
}

pub type Shared = Rc<RefCell<Seen>>;

/// Writes `send` when made; records everything; closes when `close_after` bytes arrived.
pub struct Recorder {
    pub seen: Shared,
    pub send: Vec<u8>,
    pub close_after: Option<usize>,
    pub keep_open_on_eof: bool,
}

impl Recorder {
    pub fn new(seen: &Shared, send: &[u8]) -> Recorder {
        Recorder {
            seen: Rc::clone(seen),
            send: send.to_vec(),
            close_after: None,
            keep_open_on_eof: false,
        }
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, t: &Transport) {
        let mut seen = self.seen.borrow_mut();
        seen.made = true;
        seen.info = TlsInfo::of(t);
        seen.transport = Some(t.clone());
        if !self.send.is_empty() {
            t.write(&self.send);
        }
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        let mut seen = self.seen.borrow_mut();
        seen.data.extend_from_slice(data);
        if self.close_after.is_some_and(|n| seen.data.len() >= n) {
            t.lose_connection();
        }
    }
    fn eof_received(&mut self, _t: &Transport) -> bool {
        self.seen.borrow_mut().eof = true;
        self.keep_open_on_eof
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.seen.borrow_mut().lost = Some(reason.clone());
    }
}

pub fn seen() -> Shared {
    Rc::new(RefCell::new(Seen::default()))
}

/// Echoes what it receives.
pub struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

/// Echoes, and records what the server side saw (made, info, lost).
pub struct RecordingEcho(pub Shared);

impl Protocol for RecordingEcho {
    fn connection_made(&mut self, t: &Transport) {
        let mut seen = self.0.borrow_mut();
        seen.made = true;
        seen.info = TlsInfo::of(t);
        seen.transport = Some(t.clone());
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.0.borrow_mut().data.extend_from_slice(data);
        t.write(data);
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.0.borrow_mut().lost = Some(reason.clone());
    }
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

/// A TLS echo server on 127.0.0.1; its last connection's server side is recorded.
pub fn echo_server(
    reactor: &Reactor,
    acceptor: &TlsAcceptor,
    server_side: &Shared,
) -> ListeningPort {
    let s = Rc::clone(server_side);
    reactor
        .listen_tcp(
            localhost(),
            acceptor.wrap(factory_fn(move |_| {
                *s.borrow_mut() = Seen::default();
                RecordingEcho(Rc::clone(&s))
            })),
        )
        .expect("listen")
}

/// Connects `protocol` over TLS to `port` checking `name`; the Deferred of its handshake.
pub fn connect<P: Protocol>(
    reactor: &Reactor,
    connector: &TlsConnector,
    port: &ListeningPort,
    name: &str,
    protocol: P,
) -> Deferred<Transport> {
    let addr = port.local_addr().socket_addr().expect("a TCP port");
    let slot = RefCell::new(Some(protocol));
    let factory = connector.wrap(name, OneShot(slot)).expect("a server name");
    let handshake = factory.next_handshake();
    reactor.connect_tcp(addr, factory);
    handshake
}

/// Builds the one protocol it holds.
pub struct OneShot<P>(pub RefCell<Option<P>>);

impl<P: Protocol> Factory for OneShot<P> {
    type Protocol = P;
    fn build_protocol(&self, _: &torsion_reactor::Address) -> Option<P> {
        self.0.borrow_mut().take()
    }
}

impl<P: Protocol> ClientFactory for OneShot<P> {}

/// Runs until `cond`, failing the test with `what` after the shared patience.
pub fn run_until(reactor: &Reactor, what: &str, cond: impl FnMut() -> bool) {
    reactor
        .run_until(PATIENCE, cond)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}
