//! [`StringTransport`]: a transport that records what a protocol writes and how it closes.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{Error, ErrorKind};
use crate::net::protocol::Address;
use crate::net::transport::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, Transport, TransportBackend};

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
    /// Set by `set_peer_addr`.
    learned_peer: RefCell<Option<Address>>,
    /// Attached by `attach_extra`.
    extras: RefCell<Vec<Rc<dyn Any>>>,
}

pub(super) fn refused() -> Error {
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
        self.learned_peer
            .borrow()
            .clone()
            .unwrap_or_else(|| self.peer.clone())
    }
    fn set_peer_addr(&self, peer: Address) -> Result<(), Error> {
        let mut learned = self.learned_peer.borrow_mut();
        if learned.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "the peer address was already set",
            ));
        }
        *learned = Some(peer);
        Ok(())
    }
    fn attach_extra(&self, value: Rc<dyn Any>) -> Result<(), Error> {
        let mut extras = self.extras.borrow_mut();
        let kind = (*value).type_id();
        extras.retain(|e| (**e).type_id() != kind);
        extras.push(value);
        Ok(())
    }
    fn extra(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        let extras = self.extras.borrow();
        extras.iter().find(|e| (***e).type_id() == what).cloned()
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
                learned_peer: RefCell::new(None),
                extras: RefCell::new(Vec::new()),
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
