//! [`Loopback`]: two protocols connected in memory, bytes moved on [`pump`](Loopback::pump).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::string_transport::refused;
use crate::error::Error;
use crate::net::protocol::{Address, ConnectionLost, Protocol};
use crate::net::transport::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Transport, TransportBackend};

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
