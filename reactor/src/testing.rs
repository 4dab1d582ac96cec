//! Test doubles: drive a protocol without sockets or a running reactor.
//!
//! [`StringTransport`] records what a protocol writes and how it closes;
//! [`Loopback`] connects two protocols in memory and moves bytes between them on
//! [`pump`](Loopback::pump). Use them with [`Clock`](crate::Clock) for time.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::error::{Error, ErrorKind};
use crate::protocol::{Address, ConnectionLost, Protocol};
use crate::transport::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Transport, TransportBackend};

#[derive(Default)]
struct Record {
    written: Vec<u8>,
    lose_called: bool,
    aborted: bool,
    write_shut: bool,
    read_paused: bool,
    limits: Option<(usize, usize)>,
}

struct StringBackend {
    record: RefCell<Record>,
    peer: Address,
    local: Address,
}

fn refused() -> Error {
    Error::new(
        ErrorKind::ConnectionClosed,
        "cannot write: the connection is closed or closing",
    )
}

impl TransportBackend for StringBackend {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        let mut r = self.record.borrow_mut();
        if r.lose_called || r.aborted || r.write_shut {
            return Err(refused());
        }
        r.written.extend_from_slice(data);
        Ok(())
    }
    fn lose_connection(&self) {
        self.record.borrow_mut().lose_called = true;
    }
    fn abort_connection(&self) {
        self.record.borrow_mut().aborted = true;
    }
    fn lose_write_connection(&self) -> Result<(), Error> {
        let mut r = self.record.borrow_mut();
        if r.lose_called || r.aborted {
            return Err(refused());
        }
        r.write_shut = true;
        Ok(())
    }
    fn peer_addr(&self) -> Address {
        self.peer.clone()
    }
    fn local_addr(&self) -> Address {
        self.local.clone()
    }
    fn is_closing(&self) -> bool {
        let r = self.record.borrow();
        r.lose_called || r.aborted
    }
    fn pause_reading(&self) {
        self.record.borrow_mut().read_paused = true;
    }
    fn resume_reading(&self) {
        self.record.borrow_mut().read_paused = false;
    }
    fn buffer_size(&self) -> usize {
        0
    }
    fn is_reading(&self) -> bool {
        let r = self.record.borrow();
        !(r.read_paused || r.lose_called || r.aborted)
    }
    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.record.borrow_mut().limits = Some((high, low));
    }
    fn write_buffer_limits(&self) -> (usize, usize) {
        self.record
            .borrow()
            .limits
            .unwrap_or((DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER))
    }
}

/// A transport that records writes and close calls instead of using a socket
/// (Twisted's `StringTransport`).
///
/// ```
/// use torsion_reactor::{Protocol, Transport, testing::StringTransport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(b"hello\r\n");
///         t.lose_connection();
///     }
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
///
/// let t = StringTransport::new();
/// let mut p = Hello;
/// p.connection_made(&t.transport());
/// assert_eq!(t.written(), b"hello\r\n");
/// assert!(t.lose_connection_called());
/// ```
#[derive(Clone)]
pub struct StringTransport {
    backend: Rc<StringBackend>,
}

impl Default for StringTransport {
    fn default() -> Self {
        StringTransport::new()
    }
}

impl StringTransport {
    /// A transport between `127.0.0.1:12345` (peer) and `127.0.0.1:8000` (local).
    pub fn new() -> StringTransport {
        StringTransport::with_addresses(
            Address::Tcp(([127, 0, 0, 1], 12345).into()),
            Address::Tcp(([127, 0, 0, 1], 8000).into()),
        )
    }

    /// A transport with the given peer and local addresses.
    pub fn with_addresses(peer: Address, local: Address) -> StringTransport {
        StringTransport {
            backend: Rc::new(StringBackend {
                record: RefCell::new(Record::default()),
                peer,
                local,
            }),
        }
    }

    /// The [`Transport`] to hand to the protocol under test.
    pub fn transport(&self) -> Transport {
        Transport::new(self.backend.clone() as Rc<dyn TransportBackend>)
    }

    /// Everything written so far.
    pub fn written(&self) -> Vec<u8> {
        self.backend.record.borrow().written.clone()
    }

    /// Everything written so far, clearing the record.
    pub fn take_written(&self) -> Vec<u8> {
        std::mem::take(&mut self.backend.record.borrow_mut().written)
    }

    /// Whether `lose_connection` was called.
    pub fn lose_connection_called(&self) -> bool {
        self.backend.record.borrow().lose_called
    }

    /// Whether `abort_connection` was called.
    pub fn aborted(&self) -> bool {
        self.backend.record.borrow().aborted
    }

    /// Whether `lose_write_connection` was called.
    pub fn write_shut(&self) -> bool {
        self.backend.record.borrow().write_shut
    }

    /// Whether reading is paused.
    pub fn reading_paused(&self) -> bool {
        self.backend.record.borrow().read_paused
    }
}

/// A protocol that ignores what it receives (for tests that only need a connection).
#[derive(Debug, Default)]
pub struct Sink;

impl Protocol for Sink {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

struct PipeEnd {
    outbox: RefCell<Vec<u8>>,
    closing: Cell<bool>,
    aborted: Cell<bool>,
    write_shut: Cell<bool>,
    read_paused: Cell<bool>,
    local: Address,
    peer: Address,
}

impl TransportBackend for PipeEnd {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        if self.closing.get() || self.aborted.get() || self.write_shut.get() {
            return Err(refused());
        }
        self.outbox.borrow_mut().extend_from_slice(data);
        Ok(())
    }
    fn lose_connection(&self) {
        self.closing.set(true);
    }
    fn abort_connection(&self) {
        self.aborted.set(true);
    }
    fn lose_write_connection(&self) -> Result<(), Error> {
        if self.closing.get() || self.aborted.get() {
            return Err(refused());
        }
        self.write_shut.set(true);
        Ok(())
    }
    fn peer_addr(&self) -> Address {
        self.peer.clone()
    }
    fn local_addr(&self) -> Address {
        self.local.clone()
    }
    fn is_closing(&self) -> bool {
        self.closing.get() || self.aborted.get()
    }
    fn pause_reading(&self) {
        self.read_paused.set(true);
    }
    fn resume_reading(&self) {
        self.read_paused.set(false);
    }
    fn buffer_size(&self) -> usize {
        self.outbox.borrow().len()
    }
    fn is_reading(&self) -> bool {
        !(self.read_paused.get() || self.closing.get() || self.aborted.get())
    }
    fn set_write_buffer_limits(&self, _high: usize, _low: usize) {}
    fn write_buffer_limits(&self) -> (usize, usize) {
        (DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER)
    }
}

struct Side {
    protocol: Box<dyn Protocol>,
    end: Rc<PipeEnd>,
    eof_delivered: bool,
}

impl Side {
    fn transport(&self) -> Transport {
        Transport::new(self.end.clone() as Rc<dyn TransportBackend>)
    }
}

/// Two protocols connected in memory, with no reactor: bytes one writes reach the other's
/// `data_received` when the test calls [`pump`](Loopback::pump).
///
/// ```
/// use torsion_reactor::{Protocol, Transport, testing::Loopback};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { t.write(d); }
/// }
/// struct Ask(Vec<u8>);
/// impl Protocol for Ask {
///     fn connection_made(&mut self, t: &Transport) { t.write(b"ping"); }
///     fn data_received(&mut self, _: &Transport, d: &[u8]) { self.0.extend_from_slice(d); }
/// }
///
/// let mut pair = Loopback::new(Ask(Vec::new()), Echo);
/// pair.pump();
/// assert!(pair.is_open());
/// ```
pub struct Loopback {
    sides: [Option<Side>; 2],
    lost: [Option<ConnectionLost>; 2],
}

impl Loopback {
    /// Connects `a` and `b` and calls both `connection_made`s (`a` first).
    pub fn new(a: impl Protocol, b: impl Protocol) -> Loopback {
        let addr = |n: u16| Address::Other(format!("loopback:{n}"));
        let end = |local, peer| {
            Rc::new(PipeEnd {
                outbox: RefCell::new(Vec::new()),
                closing: Cell::new(false),
                aborted: Cell::new(false),
                write_shut: Cell::new(false),
                read_paused: Cell::new(false),
                local,
                peer,
            })
        };
        let mut sides = [
            Some(Side {
                protocol: Box::new(a),
                end: end(addr(1), addr(2)),
                eof_delivered: false,
            }),
            Some(Side {
                protocol: Box::new(b),
                end: end(addr(2), addr(1)),
                eof_delivered: false,
            }),
        ];
        for side in sides.iter_mut().flatten() {
            let t = side.transport();
            side.protocol.connection_made(&t);
        }
        Loopback {
            sides,
            lost: [None, None],
        }
    }

    /// Moves bytes both ways and delivers half-closes and closes until nothing changes.
    /// Returns the number of bytes moved.
    pub fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut progress = false;
            for from in 0..2 {
                let to = 1 - from;
                let (Some(src), Some(dst)) = (&self.sides[from], &self.sides[to]) else {
                    continue;
                };
                if src.end.aborted.get() {
                    self.close(ConnectionLost::Aborted, from);
                    progress = true;
                    continue;
                }
                if !dst.end.read_paused.get() && !src.end.outbox.borrow().is_empty() {
                    let data = std::mem::take(&mut *src.end.outbox.borrow_mut());
                    moved += data.len();
                    if let Some(dst) = self.sides[to].as_mut() {
                        let t = dst.transport();
                        dst.protocol.data_received(&t, &data);
                    }
                    progress = true;
                    continue;
                }
                let drained = src.end.outbox.borrow().is_empty();
                if drained && src.end.closing.get() {
                    self.close(ConnectionLost::Done, from);
                    progress = true;
                } else if drained && src.end.write_shut.get() && !dst.eof_delivered {
                    if let Some(dst) = self.sides[to].as_mut() {
                        dst.eof_delivered = true;
                        let t = dst.transport();
                        if !dst.protocol.eof_received(&t) {
                            dst.end.closing.set(true);
                        }
                    }
                    progress = true;
                }
            }
            if !progress {
                return moved;
            }
        }
    }

    fn close(&mut self, reason: ConnectionLost, initiator: usize) {
        for i in [initiator, 1 - initiator] {
            if let Some(mut side) = self.sides[i].take() {
                side.protocol.connection_lost(&reason);
                self.lost[i] = Some(reason.clone());
            }
        }
    }

    /// Whether neither side has been closed.
    pub fn is_open(&self) -> bool {
        self.sides.iter().all(Option::is_some)
    }

    /// The reason each side (`0` = `a`, `1` = `b`) got in `connection_lost`, once closed.
    pub fn lost_reason(&self, side: usize) -> Option<&ConnectionLost> {
        self.lost.get(side).and_then(Option::as_ref)
    }
}
