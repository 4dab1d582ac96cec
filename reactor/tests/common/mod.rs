//! What the reactor's test files share: a reactor that ignores signals, a capturing
//! logger, and a way to wait for a Deferred's result.
#![allow(dead_code)] // each test file uses part of this

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use torsion_reactor::{Deferred, Error, Reactor};

/// How long a test waits for something before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// This thread's reactor, with signal handling off (tests share a process).
pub fn reactor() -> Reactor {
    let r = Reactor::current();
    r.set_handle_signals(false);
    r
}

/// A logger that keeps every record, so tests can assert what was logged.
pub struct Capture(pub Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}", record.level(), record.args());
        self.0.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

/// The process's capturing logger, installed on first use.
pub fn logs() -> &'static Capture {
    static LOGGER: OnceLock<&'static Capture> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        log::set_logger(logger).unwrap();
        log::set_max_level(log::LevelFilter::Debug);
        logger
    })
}

/// Every captured line containing `needle`.
pub fn logged(needle: &str) -> Vec<String> {
    logs()
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
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

/// Runs the reactor until the slot is filled, and takes the result.
pub fn wait<T>(slot: &Slot<T>) -> Result<T, Error> {
    reactor()
        .run_until(PATIENCE, || slot.borrow().is_some())
        .expect("no result in time");
    slot.borrow_mut().take().unwrap()
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
