//! TCP endpoints over real loopback sockets: `listen`, the `connect` Deferred and the
//! reconnecting `connector`, name resolution, Happy Eyeballs fallback, and the errors (in
//! use, no such interface, refused, unknown host, timeout, cancelled), each naming the
//! address.

mod common;

use common::{Hello, reactor, wait};
use torsion::protocols::services::Echo;

use std::cell::{Cell, RefCell};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::endpoints::happy_eyeballs::{self, RaceOptions};
use torsion::endpoints::{
    ClientEndpoint, ServerEndpoint, TcpClient, TcpServer, client_from_string, server_from_string,
};
use torsion::reactor::{
    Address, Backoff, ClientFactory, ConnectionLost, Connector, ConnectorState, Deferred, Error,
    ErrorKind, Factory, ListeningPort, Protocol, Reactor, Reconnecting, SharedFactory, Transport,
    factory_fn,
};

const LONG: Duration = Duration::from_secs(30);

fn echo_server(r: &Reactor, description: &str) -> (ListeningPort, SocketAddr) {
    let endpoint = server_from_string(r, description).expect("parses");
    let port = endpoint.listen(factory_fn(|_| Echo)).expect("listens");
    let addr = port.local_addr().socket_addr().expect("a TCP port");
    (port, addr)
}

/// Connects with `description` and checks that `hello` comes back; gives the transport.
fn hello(r: &Reactor, description: &str) -> Transport {
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let g = got.clone();
    let endpoint = client_from_string(r, description).expect("parses");
    let transport = wait(
        r,
        endpoint.connect(factory_fn(move |_| Some(Hello(g.clone())))),
    )
    .unwrap_or_else(|e| panic!("{description}: {e}"));
    r.run_until(LONG, || got.borrow().len() >= 5).unwrap();
    assert_eq!(*got.borrow(), b"hello");
    transport
}

/// A port on 127.0.0.1 where nothing listens (it was free a moment ago).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A listener whose accept queue is full: new connection attempts to it hang (their SYNs
/// are dropped), as with a host that does not answer.
struct Unresponsive {
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
    addr: SocketAddr,
}

fn unresponsive() -> Unresponsive {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: a valid listening socket; listening again only changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    loop {
        assert!(queued.len() < 64, "the accept queue never filled");
        // Never accepted: once the queue is full, the next connect cannot complete.
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    Unresponsive {
        _listener: listener,
        _queued: queued,
        addr,
    }
}

fn localhost_addresses(port: u16) -> Vec<SocketAddr> {
    ("localhost", port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default()
}

#[test]
fn listen_returns_the_port_and_connect_a_deferred_and_they_echo() {
    let r = reactor();
    let (port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let t = hello(&r, &format!("tcp:127.0.0.1:{}", addr.port()));
    assert_eq!(t.peer_addr(), Address::Tcp(addr));
    let t2 = hello(
        &r,
        &format!("tcp:host=127.0.0.1:port={}:timeout=5", addr.port()),
    );
    assert!(!t.same_connection(&t2));
    // The client's protocol is boxed once on its way through the endpoint: reachable as
    // the type the factory built.
    assert!(t.with_protocol(|_: &mut Hello| ()).is_ok());
    t.lose_connection();
    t2.lose_connection();
    port.stop_listening();
}

#[test]
fn tcp6_over_the_ipv6_loopback() {
    let r = reactor();
    let endpoint = server_from_string(&r, r"tcp6:0:interface=\:\:1").unwrap();
    let port = match endpoint.listen(factory_fn(|_| Echo)) {
        Ok(port) => port,
        Err(e) => {
            eprintln!("skipped: this machine has no ::1 ({e})");
            return;
        }
    };
    let addr = port.local_addr().socket_addr().unwrap();
    assert!(addr.is_ipv6());
    let t = hello(&r, &format!(r"tcp6:\:\:1:{}", addr.port()));
    assert_eq!(t.peer_addr(), Address::Tcp(addr));
    let t = hello(&r, &format!(r"tcp:host=\:\:1:port={}", addr.port()));
    assert_eq!(t.peer_addr(), Address::Tcp(addr));
}

#[test]
fn a_host_name_is_resolved_off_the_reactor_thread_and_connected() {
    let r = reactor();
    let (_port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    let found = localhost_addresses(addr.port());
    if !found.iter().any(|a| a.is_ipv4()) {
        eprintln!("skipped: localhost has no IPv4 address here ({found:?})");
        return;
    }
    // If localhost is also ::1, that attempt is refused (nothing listens there) and the
    // IPv4 address wins at once.
    let t = hello(&r, &format!("tcp:localhost:{}", addr.port()));
    assert_eq!(t.peer_addr(), Address::Tcp(addr));
    assert!(r.thread_pool_threads() >= 1, "resolved on the thread pool");
}

#[test]
fn happy_eyeballs_falls_back_from_a_refused_address_and_starts_the_factory_once() {
    #[derive(Default)]
    struct Counting {
        started: Cell<u32>,
        stopped: Cell<u32>,
        built: Cell<u32>,
    }
    impl Factory for Counting {
        type Protocol = Echo;
        fn build_protocol(&self, _: &Address) -> Option<Echo> {
            self.built.set(self.built.get() + 1);
            Some(Echo)
        }
        fn start_factory(&self) {
            self.started.set(self.started.get() + 1);
        }
        fn stop_factory(&self) {
            self.stopped.set(self.stopped.get() + 1);
        }
    }

    let r = reactor();
    let (_port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    let refused4: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let v6: SocketAddr = format!("[::1]:{}", addr.port()).parse().unwrap();
    let factory = SharedFactory::new(Counting::default());
    let t0 = Instant::now();
    let connecting = happy_eyeballs::connect_tcp(
        &r,
        RaceOptions::new(format!("dual.test:{}", addr.port())),
        // IPv6 goes first; nothing listens on ::1 at this port, nor at `refused4`.
        Deferred::succeed(vec![refused4, addr, v6]),
        None,
        factory.clone(),
    );
    let t = wait(&r, connecting).expect("the working address wins");
    assert_eq!(t.peer_addr(), Address::Tcp(addr));
    assert!(
        t0.elapsed() < Duration::from_millis(250) * 2 + Duration::from_secs(5),
        "refusals start the next attempt at once: {:?}",
        t0.elapsed()
    );
    assert_eq!(factory.built.get(), 1, "one protocol, for the winner only");
    assert_eq!(factory.started.get(), 1, "started once for the whole race");
    assert_eq!(factory.stopped.get(), 0, "the winner is still connected");
    t.lose_connection();
    r.run_until(LONG, || factory.stopped.get() == 1).unwrap();
    assert_eq!(factory.started.get(), 1);
    // Nothing of the race is left: no timer, no socket, no reference to the factory.
    r.run_until(LONG, || SharedFactory::handle_count(&factory) == 1)
        .unwrap();
    assert_eq!(r.pending_timers(), 0);
    assert_eq!(r.registered_sources(), 1, "only the listener");
}

#[test]
fn refused_connections_name_the_host_and_port() {
    let r = reactor();
    let port = free_port();
    let endpoint = client_from_string(&r, &format!("tcp:127.0.0.1:{port}")).unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot connect to 127.0.0.1:{port}: connection refused")
    );
    assert!(matches!(err.kind(), ErrorKind::Io));
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::ConnectionRefused)
    );
    assert_eq!(r.registered_sources(), 0, "nothing is left registered");
    assert_eq!(r.pending_timers(), 0, "no timer is left");

    if localhost_addresses(port).is_empty() {
        return;
    }
    let endpoint = client_from_string(&r, &format!("tcp:localhost:{port}")).unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("cannot connect to localhost:{port} (tried "))
            && message.contains(&format!("127.0.0.1:{port}"))
            && message.ends_with("): connection refused"),
        "{message}"
    );
}

#[test]
fn an_unknown_host_fails_naming_it() {
    let r = reactor();
    let endpoint = client_from_string(&r, "tcp:nosuch.invalid:80:timeout=20").unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("cannot connect to nosuch.invalid:80: ")
            && (message.contains("cannot resolve the host name") || message.contains("timed out")),
        "{message}"
    );
}

#[test]
fn tcp6_clients_use_ipv6_addresses_only() {
    let r = reactor();
    let found = localhost_addresses(80);
    if found.iter().any(|a| a.is_ipv6()) {
        eprintln!("skipped: localhost has an IPv6 address here");
        return;
    }
    let endpoint = client_from_string(&r, "tcp6:localhost:80").unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::InvalidInput));
    assert_eq!(
        err.to_string(),
        "cannot connect to localhost:80: the host name has no IPv6 address (tcp6)"
    );
}

#[test]
fn an_address_that_does_not_answer_times_out_naming_it() {
    let r = reactor();
    let silent = unresponsive();
    let port = silent.addr.port();
    let endpoint = client_from_string(&r, &format!("tcp:127.0.0.1:{port}:timeout=0.5")).unwrap();
    let t0 = Instant::now();
    let err = wait(&r, endpoint.connect(factory_fn(|_| Echo))).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::TimedOut), "{err}");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to 127.0.0.1:{port}: timed out after 0.5s")
    );
    assert!(t0.elapsed() >= Duration::from_millis(500));
    r.run_until(LONG, || r.registered_sources() == 0).unwrap();
}

#[test]
fn cancelling_a_connect_stops_the_attempt() {
    let r = reactor();
    let silent = unresponsive();
    let port = silent.addr.port();
    let endpoint = client_from_string(&r, &format!("tcp:127.0.0.1:{port}")).unwrap();
    let outcome: Rc<RefCell<Option<Result<Transport, Error>>>> = Rc::default();
    let o = outcome.clone();
    let handle = endpoint
        .connect(factory_fn(|_| -> Option<Echo> {
            panic!("no connection may be made")
        }))
        .then(move |result| {
            *o.borrow_mut() = Some(result);
            Ok::<(), Error>(())
        });
    r.run_until(LONG, || r.registered_sources() == 1)
        .expect("the attempt started");
    handle.cancel();
    r.run_until(LONG, || outcome.borrow().is_some()).unwrap();
    let err = outcome.borrow_mut().take().unwrap().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Cancelled), "{err}");
    assert_eq!(
        err.to_string(),
        format!("connecting to 127.0.0.1:{port} was cancelled")
    );
    assert_eq!(r.registered_sources(), 0, "the attempt's socket is gone");
    assert_eq!(r.pending_timers(), 0, "and so are its timers");
}

#[test]
fn connect_protocol_uses_one_protocol_without_a_factory() {
    let r = reactor();
    let (_port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    let endpoint = client_from_string(&r, &format!("tcp:127.0.0.1:{}", addr.port())).unwrap();
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let t = wait(&r, endpoint.connect_protocol(Hello(got.clone()))).unwrap();
    r.run_until(LONG, || got.borrow().len() >= 5).unwrap();
    assert_eq!(*got.borrow(), b"hello");
    t.lose_connection();
}

#[test]
fn a_factory_that_builds_no_protocol_fails_the_connect() {
    let r = reactor();
    let (_port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    let endpoint = client_from_string(&r, &format!("tcp:127.0.0.1:{}", addr.port())).unwrap();
    let err = wait(&r, endpoint.connect(factory_fn(|_| None::<Echo>))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot connect to {addr}: the factory built no protocol for the connection")
    );
}

#[test]
fn bind_address_sets_the_local_end() {
    let r = reactor();
    let (_port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    let t = hello(
        &r,
        &format!("tcp:127.0.0.1:{}:bindAddress=127.0.0.1", addr.port()),
    );
    let local = t.local_addr().socket_addr().unwrap();
    assert_eq!(local.ip().to_string(), "127.0.0.1");
}

#[test]
fn listen_errors_name_the_address() {
    let r = reactor();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let endpoint =
        server_from_string(&r, &format!("tcp:{}:interface=127.0.0.1", addr.port())).unwrap();
    let err = endpoint.listen(factory_fn(|_| Echo)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on {addr}: address already in use")
    );

    let endpoint = server_from_string(&r, "tcp:0:interface=192.0.2.1").unwrap();
    let err = endpoint.listen(factory_fn(|_| Echo)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot listen on 192.0.2.1:0: address not available on this machine"
    );

    // SAFETY: a plain getter.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("skipped the permission check: running as root");
        return;
    }
    let endpoint = server_from_string(&r, "tcp:1:interface=127.0.0.1").unwrap();
    let err = endpoint.listen(factory_fn(|_| Echo)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot listen on 127.0.0.1:1: permission denied"
    );
}

#[test]
fn endpoints_made_in_rust_without_strings() {
    let r = reactor();
    let server = ServerEndpoint::new(
        &r,
        TcpServer {
            interface: "127.0.0.1".parse().unwrap(),
            ..TcpServer::new(0)
        },
    );
    let port = server.listen(factory_fn(|_| Echo)).unwrap();
    let addr = port.local_addr().socket_addr().unwrap();
    let client = ClientEndpoint::new(
        &r,
        TcpClient {
            timeout: Duration::from_secs(5),
            ..TcpClient::new("127.0.0.1", addr.port())
        },
    );
    let got: Rc<RefCell<Vec<u8>>> = Rc::default();
    let t = wait(&r, client.connect_protocol(Hello(got.clone()))).unwrap();
    r.run_until(LONG, || got.borrow().len() >= 5).unwrap();
    assert_eq!(t.peer_addr(), Address::Tcp(addr));
    // A parsed spec works as well as one made in Rust.
    let parsed = torsion::endpoints::parse_server("tcp:0:interface=127.0.0.1").unwrap();
    let again = ServerEndpoint::new(&r, parsed)
        .listen(factory_fn(|_| Echo))
        .unwrap();
    assert_eq!(again.local_addr().socket_addr().unwrap().ip(), addr.ip());
}

/// A client factory that records what it is told; its protocols do nothing.
#[derive(Default)]
struct Watch {
    started: Cell<u32>,
    stopped: Cell<u32>,
    connecting: Cell<u32>,
    made: Cell<u32>,
    lost: Cell<u32>,
    failures: RefCell<Vec<ConnectionLost>>,
    peers: RefCell<Vec<Address>>,
}

struct Quiet;

impl Protocol for Quiet {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

impl Factory for Watch {
    type Protocol = Quiet;
    fn build_protocol(&self, _: &Address) -> Option<Quiet> {
        Some(Quiet)
    }
    fn start_factory(&self) {
        self.started.set(self.started.get() + 1);
    }
    fn stop_factory(&self) {
        self.stopped.set(self.stopped.get() + 1);
    }
}

impl ClientFactory for Watch {
    fn started_connecting(&self, _: &Connector) {
        self.connecting.set(self.connecting.get() + 1);
    }
    fn client_connection_failed(&self, _: &Connector, reason: &ConnectionLost) {
        self.failures.borrow_mut().push(reason.clone());
    }
    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        assert_eq!(connector.state(), ConnectorState::Connected);
        self.peers.borrow_mut().push(transport.peer_addr());
        self.made.set(self.made.get() + 1);
    }
    fn client_connection_lost(&self, _: &Connector, _: &ConnectionLost) {
        self.lost.set(self.lost.get() + 1);
    }
}

/// A server that keeps its connections' transports, so the test can drop them.
fn keeping_server(r: &Reactor, port: u16) -> (ListeningPort, Rc<RefCell<Vec<Transport>>>) {
    struct Keep(Rc<RefCell<Vec<Transport>>>);
    impl Protocol for Keep {
        fn connection_made(&mut self, t: &Transport) {
            self.0.borrow_mut().push(t.clone());
        }
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }
    let kept: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let k = kept.clone();
    let endpoint = server_from_string(r, &format!("tcp:{port}:interface=127.0.0.1")).unwrap();
    let listening = endpoint
        .listen(factory_fn(move |_| Keep(k.clone())))
        .expect("listens");
    (listening, kept)
}

#[test]
fn a_reconnecting_client_reconnects_by_host_name_when_the_server_comes_back() {
    let r = reactor();
    let (listening, kept) = keeping_server(&r, 0);
    let port = listening.local_addr().socket_addr().unwrap().port();
    if !localhost_addresses(port).iter().any(|a| a.is_ipv4()) {
        eprintln!("skipped: localhost has no IPv4 address here");
        return;
    }
    let backoff = Backoff::default()
        .with_initial(Duration::from_millis(20))
        .with_max(Duration::from_millis(100))
        .with_jitter(0.0);
    let client = SharedFactory::new(Reconnecting::new(Watch::default(), backoff));
    let endpoint =
        client_from_string(&r, &format!("tcp:host=localhost:port={port}:timeout=5")).unwrap();
    let connector = endpoint.connector(client.clone());
    assert_eq!(connector.state(), ConnectorState::Disconnected);
    assert_eq!(
        connector.destination(),
        Address::Other(format!("localhost:{port}"))
    );
    connector.connect();
    let watch = client.inner();
    assert_eq!(connector.state(), ConnectorState::Connecting);
    assert_eq!(
        watch.connecting.get(),
        0,
        "factory callbacks start from the loop"
    );

    r.run_until(LONG, || watch.made.get() == 1)
        .expect("the first connection is made");
    assert_eq!(connector.state(), ConnectorState::Connected);
    let server_addr = Address::Tcp(format!("127.0.0.1:{port}").parse().unwrap());
    assert_eq!(
        connector.transport().map(|t| t.peer_addr()),
        Some(server_addr.clone())
    );
    assert!(
        r.thread_pool_threads() >= 1,
        "the name was resolved on the thread pool"
    );
    assert_eq!(watch.started.get(), 1);

    // The server goes away: the connection is lost and reconnecting is refused.
    listening.stop_listening();
    for t in kept.borrow_mut().drain(..) {
        t.abort_connection();
    }
    r.run_until(LONG, || {
        watch.lost.get() == 1 && !watch.failures.borrow().is_empty()
    })
    .expect("the loss is seen and a reconnect attempt is refused");
    let failure = watch.failures.borrow()[0].clone();
    let ConnectionLost::Refused(e) = failure else {
        panic!("a refusal, not {failure}")
    };
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        e.to_string()
            .starts_with(&format!("cannot connect to localhost:{port}")),
        "the reason names the host and port: {e}"
    );
    assert!(client.retries() >= 1);

    // It comes back on the same port: the next retry resolves the name again and connects.
    let (_back, kept) = keeping_server(&r, port);
    r.run_until(LONG, || watch.made.get() == 2 && kept.borrow().len() == 1)
        .expect("the client reconnects");
    assert_eq!(connector.state(), ConnectorState::Connected);
    assert_eq!(client.retries(), 0, "the backoff resets once connected");
    assert_eq!(*watch.peers.borrow(), [server_addr.clone(), server_addr]);
    assert_eq!(watch.started.get(), 1, "the factory is started once");
    assert!(watch.connecting.get() >= 3);

    // Stopping: no more attempts once the connection ends.
    client.stop_trying();
    connector.disconnect();
    r.run_until(LONG, || watch.lost.get() == 2)
        .expect("the connection ends");
    assert_eq!(connector.state(), ConnectorState::Disconnected);
    r.run_until(LONG, || r.registered_sources() == 1)
        .expect("only the listener is left");
    assert_eq!(r.pending_timers(), 0, "no retry is scheduled");
}

#[test]
fn a_connector_can_be_stopped_and_tells_the_factory_as_a_reactor_connector_does() {
    let r = reactor();
    let silent = unresponsive();
    let endpoint =
        client_from_string(&r, &format!("tcp:127.0.0.1:{}", silent.addr.port())).unwrap();
    let watch = SharedFactory::new(Watch::default());
    let connector = endpoint.connector(watch.clone());
    assert_eq!(connector.destination(), Address::Tcp(silent.addr));
    connector.connect();
    connector.connect(); // already connecting: nothing more
    r.run_until(LONG, || r.registered_sources() == 1)
        .expect("the attempt started");
    assert_eq!(watch.connecting.get(), 1);
    assert_eq!(watch.started.get(), 1);
    connector.stop_connecting();
    assert_eq!(connector.state(), ConnectorState::Disconnected);
    assert!(
        watch.failures.borrow().is_empty(),
        "told from the loop, not now"
    );
    r.run_until(LONG, || !watch.failures.borrow().is_empty())
        .expect("the factory is told");
    assert!(matches!(
        watch.failures.borrow().as_slice(),
        [ConnectionLost::Cancelled]
    ));
    r.run_until(LONG, || {
        r.registered_sources() == 0 && r.pending_timers() == 0
    })
    .expect("the attempt's socket and timers are gone");
    assert_eq!(watch.made.get(), 0);
    assert_eq!(watch.stopped.get(), 0);
    drop(connector);
    r.run_until(LONG, || watch.stopped.get() == 1)
        .expect("a dropped connector stops the factory");

    // Another connects, and disconnects when asked.
    let (_port, addr) = echo_server(&r, "tcp:0:interface=127.0.0.1");
    let endpoint = client_from_string(&r, &format!("tcp:127.0.0.1:{}", addr.port())).unwrap();
    let connector = endpoint.connector(watch.clone());
    connector.connect();
    r.run_until(LONG, || watch.made.get() == 1)
        .expect("connects");
    assert_eq!(watch.started.get(), 2, "one start per connector");
    connector.disconnect();
    r.run_until(LONG, || watch.lost.get() == 1)
        .expect("disconnects");
    drop(connector);
    r.run_until(LONG, || watch.stopped.get() == 2)
        .expect("a dropped connector stops the factory");
}
