//! [`StreamProtocol`]: the protocol behind an [`AsyncStream`]. It feeds the stream's bounded
//! read buffer and wakes the task waiting on it; the stream's handles take the bytes out.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::rc::Rc;
use std::task::Waker;

use super::buffer::{End, Flow, ReadBuffer};
use super::stream::AsyncStream;
use crate::net::protocol::{ConnectionLost, Protocol};
use crate::net::transport::Transport;

/// Default read-buffer limit of an async stream: reading from the peer pauses once this
/// much is buffered and not read (asyncio's `StreamReader` uses the same 64 KiB).
pub const DEFAULT_STREAM_LIMIT: usize = 64 * 1024;

/// What the protocol and the stream's handles share.
pub(crate) struct Shared {
    pub(crate) read: RefCell<ReadBuffer>,
    /// The task waiting to read.
    pub(crate) read_waker: RefCell<Option<Waker>>,
    /// The task waiting for the write buffer to drain.
    pub(crate) write_waker: RefCell<Option<Waker>>,
    /// The task waiting for the connection to close.
    pub(crate) closed_waker: RefCell<Option<Waker>>,
    /// Why the connection ended, once it has.
    pub(crate) lost: RefCell<Option<ConnectionLost>>,
    /// Live handles (a stream, or each half of a split one): the last one closes.
    pub(crate) handles: Cell<usize>,
}

impl Shared {
    pub(crate) fn new(limit: usize) -> Rc<Shared> {
        Rc::new(Shared {
            read: RefCell::new(ReadBuffer::new(limit)),
            read_waker: RefCell::new(None),
            write_waker: RefCell::new(None),
            closed_waker: RefCell::new(None),
            lost: RefCell::new(None),
            handles: Cell::new(0),
        })
    }

    fn wake(slot: &RefCell<Option<Waker>>) {
        let waker = slot.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub(crate) fn wake_reader(&self) {
        Shared::wake(&self.read_waker);
    }

    /// The error a read or write gets once the connection is gone (`None` for a clean
    /// close, which reads see as end of file).
    pub(crate) fn lost_error(&self) -> Option<io::Error> {
        self.lost.borrow().as_ref().and_then(lost_to_io)
    }
}

/// The `io::Error` for a connection that ended this way (`None` for a clean close).
pub(crate) fn lost_to_io(reason: &ConnectionLost) -> Option<io::Error> {
    let kind = match reason {
        ConnectionLost::Done => return None,
        ConnectionLost::Reset(e) | ConnectionLost::Refused(e) => e.kind(),
        ConnectionLost::Aborted => io::ErrorKind::ConnectionAborted,
        ConnectionLost::TimedOut => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    };
    Some(io::Error::new(kind, reason.to_string()))
}

/// Applies a flow decision to the connection.
pub(crate) fn apply(flow: Flow, transport: &Transport) {
    match flow {
        Flow::Keep => {}
        Flow::Pause => {
            // Said once per pause, at debug level: what an operator looks for when a
            // client does not read (and what the tests wait for instead of a duration).
            log::debug!(
                "{}: the stream's read buffer is full: pausing reading",
                transport.peer_addr()
            );
            transport.pause_reading();
        }
        Flow::Resume => transport.resume_reading(),
    }
}

type OnConnected = Box<dyn FnOnce(AsyncStream)>;

/// The protocol behind an [`AsyncStream`]: connect or listen with it as with any protocol,
/// and the stream is handed to `on_connected` when the connection is made. Most code uses
/// [`stream_factory`](crate::stream_factory) (servers) and [`stream_client`](crate::stream_client)
/// (clients), or the endpoints crate's `serve_streams` and `connect_stream`, which take an
/// endpoint string.
///
/// It keeps what arrives in a buffer bounded by its limit (see
/// [`with_limit`](StreamProtocol::with_limit)), pausing the connection's reading when the
/// buffer is full, and tells the stream when the peer half-closes (the stream's writing side
/// stays open until the stream closes it) and when the connection is lost.
pub struct StreamProtocol {
    shared: Rc<Shared>,
    on_connected: Option<OnConnected>,
}

impl StreamProtocol {
    /// A protocol that hands its connection, as an [`AsyncStream`], to `on_connected` once
    /// it is made (from `connection_made`).
    pub fn new<F: FnOnce(AsyncStream) + 'static>(on_connected: F) -> StreamProtocol {
        StreamProtocol {
            shared: Shared::new(DEFAULT_STREAM_LIMIT),
            on_connected: Some(Box::new(on_connected)),
        }
    }

    /// Sets the read-buffer limit (default [`DEFAULT_STREAM_LIMIT`]; at least 1): reading
    /// pauses once this much is buffered and not read. A read that needs more (a long line
    /// in `read_line(max)`, `read_exact` of a large buffer) raises it to what it needs, for
    /// as long as it waits.
    pub fn with_limit(self, limit: usize) -> StreamProtocol {
        let _ = self.shared.read.borrow_mut().set_limit(limit);
        self
    }
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        let stream = AsyncStream::new(Rc::clone(&self.shared), transport.clone());
        match self.on_connected.take() {
            Some(on_connected) => on_connected(stream),
            None => drop(stream),
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let flow = self.shared.read.borrow_mut().push(data);
        apply(flow, transport);
        self.shared.wake_reader();
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        self.shared.read.borrow_mut().end = End::Eof;
        self.shared.wake_reader();
        // Keep our writing side open: the task may still answer, and closes when done.
        true
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        *self.shared.lost.borrow_mut() = Some(reason.clone());
        self.shared.read.borrow_mut().end = End::Lost(reason.clone());
        self.shared.wake_reader();
        Shared::wake(&self.shared.write_waker);
        Shared::wake(&self.shared.closed_waker);
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        Shared::wake(&self.shared.write_waker);
    }
}

impl fmt::Debug for StreamProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamProtocol")
            .field("buffered", &self.shared.read.borrow().len())
            .finish()
    }
}
