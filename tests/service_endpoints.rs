//! ServerService and ClientService over real loopback sockets: a server drains its
//! connections on stop (and aborts what is left after its drain timeout, on a `Clock`), a
//! listen error is the start's error, a client reconnects after its server goes away and
//! comes back (backoff driven by a `Clock`), waits fail after N attempts and on stop.

mod common;

use std::cell::RefCell;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use common::{reactor, wait};
use torsion::endpoints::{ClientService, ServerService};
use torsion::reactor::testing::PATIENCE;
use torsion::reactor::{
    Backoff, Clock, ConnectionLost, ErrorKind, Protocol, Reactor, Service, Transport, factory_fn,
};

const BIG: usize = 8 << 20;

/// Sends `BIG` bytes as soon as it is connected, and records how it ended.
struct Flood(Rc<RefCell<Vec<ConnectionLost>>>);

impl Protocol for Flood {
    fn connection_made(&mut self, t: &Transport) {
        t.write(&vec![b'x'; BIG]);
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.0.borrow_mut().push(reason.clone());
    }
}

struct Echo;
impl Protocol for Echo {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

fn started_server<P: Protocol>(
    r: &Reactor,
    build: impl Fn() -> P + 'static,
) -> (Rc<ServerService>, SocketAddr) {
    let service =
        ServerService::from_string(r, "tcp:0:interface=127.0.0.1", factory_fn(move |_| build()))
            .expect("a valid description");
    wait(r, service.start()).expect("the server starts");
    let addr = service
        .port()
        .expect("listening")
        .local_addr()
        .socket_addr()
        .expect("a TCP address");
    (service, addr)
}

#[test]
fn a_server_service_drains_an_open_connection_on_stop() {
    let r = reactor();
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let (service, addr) = started_server(&r, move || Flood(l.clone()));
    let mut client = TcpStream::connect(addr).unwrap();
    let port = service.port().unwrap();
    r.run_until(PATIENCE, || port.open_connections() == 1)
        .expect("the connection is accepted");

    let stopping = service.stop();
    assert!(!service.is_running() && service.port().is_none());
    assert!(!port.is_listening(), "it stops listening at once");
    // The client reads slowly, on its own thread: the stop waits for the flush.
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        client.read_to_end(&mut all).map(|_| all.len())
    });
    wait(&r, stopping).expect("the stop fires once the connection is gone");
    assert_eq!(reader.join().unwrap().unwrap(), BIG, "every byte, then EOF");
    assert!(lost.borrow()[0].is_clean(), "{:?}", lost.borrow());
    assert!(
        TcpStream::connect(addr).is_err(),
        "nothing listens there any more"
    );

    // Started again: a new port.
    wait(&r, service.start()).expect("it starts again");
    assert!(service.port().unwrap().is_listening());
    wait(&r, service.stop()).unwrap();
}

#[test]
fn a_server_service_aborts_what_is_left_after_its_drain_timeout() {
    let r = reactor();
    let clock = Rc::new(Clock::new());
    let lost = Rc::new(RefCell::new(Vec::new()));
    let l = lost.clone();
    let (service, addr) = started_server(&r, move || Flood(l.clone()));
    service.set_scheduler(clock.clone());
    service.set_drain_timeout(Duration::from_secs(5));
    let client = TcpStream::connect(addr).unwrap(); // never reads
    let port = service.port().unwrap();
    r.run_until(PATIENCE, || port.open_connections() == 1)
        .unwrap();

    let stopped = Rc::new(RefCell::new(None));
    let s = stopped.clone();
    service
        .stop()
        .on_result(move |result| *s.borrow_mut() = Some(result));
    for _ in 0..5 {
        r.iterate(Duration::from_millis(10)).unwrap();
    }
    assert!(
        stopped.borrow().is_none(),
        "still draining: the peer reads nothing"
    );
    clock.advance(Duration::from_secs(5));
    r.run_until(PATIENCE, || stopped.borrow().is_some())
        .expect("the stop fires after the abort");
    assert!(stopped.borrow_mut().take().unwrap().is_ok());
    assert!(
        matches!(lost.borrow()[0], ConnectionLost::Aborted),
        "{:?}",
        lost.borrow()
    );
    drop(client);
}

#[test]
fn a_listen_error_is_the_start_error() {
    let r = reactor();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let service = ServerService::from_string(
        &r,
        &format!("tcp:{port}:interface=127.0.0.1"),
        factory_fn(|_| Echo),
    )
    .unwrap();
    assert_eq!(service.name(), format!("tcp:{port}:interface=127.0.0.1"));
    let err = wait(&r, service.start()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on 127.0.0.1:{port}: address already in use")
    );
    assert!(!service.is_running());
}

/// A client service to `addr` with a jitter-free backoff (1 s, then 1.5 s, ...) on `clock`.
fn client(r: &Reactor, addr: SocketAddr, clock: &Rc<Clock>) -> Rc<ClientService> {
    let service = ClientService::from_string(
        r,
        &format!("tcp:127.0.0.1:{}:timeout=5", addr.port()),
        factory_fn(|_| Echo),
    )
    .unwrap();
    service.set_scheduler(clock.clone());
    service.set_backoff(
        Backoff::default()
            .with_jitter(0.0)
            .with_initial(Duration::from_secs(1))
            .with_factor(1.5),
    );
    service
}

#[test]
fn a_client_service_reconnects_after_its_server_goes_away_and_comes_back() {
    let r = reactor();
    let clock = Rc::new(Clock::new());
    let server = r
        .listen_tcp("127.0.0.1:0".parse().unwrap(), factory_fn(|_| Echo))
        .unwrap();
    let addr = server.local_addr().socket_addr().unwrap();
    let service = client(&r, addr, &clock);
    let first = service.when_connected(None); // made before the start: waits for it
    wait(&r, service.start()).unwrap();
    let transport = wait(&r, first).expect("connected");
    assert_eq!(transport.peer_addr().socket_addr(), Some(addr));
    assert!(service.connection().is_some());

    // The server goes away: the connection is lost, and a retry is due in 1 s.
    server.stop_listening();
    server.abort_connections();
    r.run_until(PATIENCE, || service.connection().is_none())
        .expect("the loss is seen");
    clock.advance(Duration::from_millis(999));
    r.iterate(Duration::from_millis(10)).unwrap();
    assert_eq!(service.failed_attempts(), 0, "no attempt before the delay");
    clock.advance(Duration::from_millis(1));
    r.run_until(PATIENCE, || service.failed_attempts() == 1)
        .expect("the retry is refused");

    // One failure so far: a wait that gives up after one fails at once, naming the cause.
    let err = wait(&r, service.when_connected(Some(1))).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "service \"tcp:127.0.0.1:{}:timeout=5\" could not connect to 127.0.0.1:{} (1 failed attempt(s)): ",
            addr.port(),
            addr.port()
        )) && text.contains("connection refused"),
        "{text}"
    );

    // The server comes back on the same port; the next attempt is 1.5 s after the failure.
    let back = r
        .listen_tcp(addr, factory_fn(|_| Echo))
        .expect("the port is free again");
    let again = service.when_connected(None);
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    again.on_result(move |t| *g.borrow_mut() = Some(t));
    clock.advance(Duration::from_millis(1499));
    r.iterate(Duration::from_millis(10)).unwrap();
    assert!(got.borrow().is_none(), "not before the backoff delay");
    clock.advance(Duration::from_millis(1));
    r.run_until(PATIENCE, || got.borrow().is_some())
        .expect("reconnected");
    let transport = got.borrow_mut().take().unwrap().unwrap();
    assert_eq!(transport.peer_addr().socket_addr(), Some(addr));
    assert_eq!(service.failed_attempts(), 0, "reset by the connection");
    r.run_until(PATIENCE, || back.open_connections() == 1)
        .unwrap();

    // Stopping closes the connection and waits until it is gone.
    wait(&r, service.stop()).unwrap();
    assert!(service.connection().is_none());
    r.run_until(PATIENCE, || back.open_connections() == 0)
        .expect("the server sees the close");
}

#[test]
fn pending_waits_fail_when_the_client_service_stops() {
    let r = reactor();
    let clock = Rc::new(Clock::new());
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free); // nothing listens there: every attempt is refused
    let service = client(&r, addr, &clock);
    wait(&r, service.start()).unwrap();
    let pending = service.when_connected(None);
    r.run_until(PATIENCE, || service.failed_attempts() == 1)
        .unwrap();
    wait(&r, service.stop()).unwrap();
    let err = wait(&r, pending).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let expected = format!(
        "service \"tcp:127.0.0.1:{port}:timeout=5\" was stopped before it connected to 127.0.0.1:{port}",
        port = addr.port()
    );
    assert_eq!(err.to_string(), expected);
    let late = wait(&r, service.when_connected(None)).unwrap_err();
    assert_eq!(
        late.to_string(),
        expected,
        "a wait after the stop fails at once"
    );
    // No retry after the stop.
    clock.advance(Duration::from_secs(10));
    r.iterate(Duration::from_millis(10)).unwrap();
    assert_eq!(service.failed_attempts(), 1);
}

#[test]
fn a_client_service_gives_up_when_its_backoff_runs_out() {
    let r = reactor();
    let clock = Rc::new(Clock::new());
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let service = client(&r, addr, &clock);
    service.set_backoff(
        Backoff::default()
            .with_jitter(0.0)
            .with_max_retries(Some(1)),
    );
    let waiting = service.when_connected(None);
    wait(&r, service.start()).unwrap();
    r.run_until(PATIENCE, || service.failed_attempts() == 1)
        .unwrap();
    clock.advance(Duration::from_secs(1));
    let err = wait(&r, waiting).unwrap_err();
    assert_eq!(service.failed_attempts(), 2);
    assert!(
        err.to_string()
            .contains("(2 failed attempt(s); it gave up retrying)"),
        "{err}"
    );
    wait(&r, service.stop()).unwrap();
}
