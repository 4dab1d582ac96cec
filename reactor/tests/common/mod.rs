//! What the reactor's test files share, on top of `torsion_reactor::testing`: one deadline
//! for every wait, a strict reactor per test, the captured log, a TCP listener on a free
//! loopback port, and a way to wait for a Deferred's result.
#![allow(dead_code)] // each test file uses part of this

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use torsion_reactor::testing::{capture_logs, test_reactor};
use torsion_reactor::{Deferred, Error, Factory, ListeningPort, Reactor};

pub use torsion_reactor::testing::PATIENCE;

thread_local! {
    static MADE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// This test's reactor (each test runs on its own thread): made on the first call, with
/// signals off and fail-on-caught on (a panic caught in a callback fails the iteration, so
/// `run_until` returns it and the test fails with its message); later calls return it.
pub fn reactor() -> Reactor {
    if MADE.with(|m| m.replace(true)) {
        Reactor::current()
    } else {
        test_reactor()
    }
}

/// This thread's reactor, for code that runs while a test's reactor is installed.
pub fn current() -> Reactor {
    Reactor::current()
}

/// Every captured log line containing `needle` (the capturing logger is installed on
/// first use).
pub fn logged(needle: &str) -> Vec<String> {
    capture_logs().lines_with(needle)
}

/// Installs the capturing logger (call before the code whose logs a test reads).
pub fn logs() {
    capture_logs();
}

/// Listens on a free port of 127.0.0.1 with `factory`.
pub fn listen<F: Factory>(r: &Reactor, factory: F) -> (ListeningPort, SocketAddr) {
    let port = r
        .listen_tcp("127.0.0.1:0".parse().expect("an address"), factory)
        .expect("listening on a free loopback port");
    let addr = port.local_addr().socket_addr().expect("a TCP address");
    (port, addr)
}

/// Where a Deferred's result lands.
pub type Slot<T> = Rc<RefCell<Option<Result<T, Error>>>>;

/// Collects `d`'s result into a slot.
pub fn collect<T: 'static>(d: Deferred<T>) -> Slot<T> {
    let slot: Slot<T> = Rc::new(RefCell::new(None));
    let s = slot.clone();
    d.on_result(move |r| *s.borrow_mut() = Some(r));
    slot
}

/// Runs this thread's reactor until the slot is filled, and takes the result.
pub fn wait<T>(slot: &Slot<T>) -> Result<T, Error> {
    current()
        .run_until(PATIENCE, || slot.borrow().is_some())
        .expect("the Deferred fires in time");
    slot.borrow_mut()
        .take()
        .expect("run_until returned once the slot was filled")
}

/// Runs `r` until something stops it, failing the test (instead of hanging) if nothing has
/// after [`PATIENCE`].
pub fn run(r: &Reactor) {
    let timed_out = Rc::new(std::cell::Cell::new(false));
    let t = timed_out.clone();
    let watchdog = r.call_later(PATIENCE, move || {
        t.set(true);
        let _ = Reactor::current().stop();
    });
    r.run().expect("the reactor runs");
    let _ = watchdog.cancel();
    assert!(
        !timed_out.get(),
        "the reactor was still running after {PATIENCE:?}: nothing stopped it"
    );
}

/// What a [`Recorder`] saw, in order.
#[derive(Default)]
pub struct Seen {
    pub made: usize,
    pub datagrams: Vec<(Vec<u8>, torsion_reactor::Address)>,
    pub errors: Vec<torsion_reactor::DatagramError>,
    pub lost: Vec<torsion_reactor::ConnectionLost>,
    pub paused: usize,
    pub resumed: usize,
}

/// A datagram protocol that records everything it is told, and echoes each datagram to
/// its sender if `echo` is set.
pub struct Recorder {
    pub seen: Rc<RefCell<Seen>>,
    pub echo: bool,
}

impl Recorder {
    pub fn new(echo: bool) -> (Recorder, Rc<RefCell<Seen>>) {
        let seen = Rc::new(RefCell::new(Seen::default()));
        (
            Recorder {
                seen: seen.clone(),
                echo,
            },
            seen,
        )
    }
}

impl torsion_reactor::DatagramProtocol for Recorder {
    fn connection_made(&mut self, _: &torsion_reactor::DatagramTransport) {
        self.seen.borrow_mut().made += 1;
    }
    fn datagram_received(
        &mut self,
        t: &torsion_reactor::DatagramTransport,
        data: &[u8],
        from: torsion_reactor::Address,
    ) {
        if self.echo {
            t.send_to(data, &from).expect("the echo is accepted");
        }
        self.seen.borrow_mut().datagrams.push((data.to_vec(), from));
    }
    fn error_received(
        &mut self,
        _: &torsion_reactor::DatagramTransport,
        error: &torsion_reactor::DatagramError,
    ) {
        self.seen.borrow_mut().errors.push(error.clone());
    }
    fn connection_lost(&mut self, reason: &torsion_reactor::ConnectionLost) {
        self.seen.borrow_mut().lost.push(reason.clone());
    }
    fn pause_writing(&mut self, _: &torsion_reactor::DatagramTransport) {
        self.seen.borrow_mut().paused += 1;
    }
    fn resume_writing(&mut self, _: &torsion_reactor::DatagramTransport) {
        self.seen.borrow_mut().resumed += 1;
    }
}
