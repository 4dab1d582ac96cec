//! [`Transport`]: the handle a protocol writes to and closes its connection with.

use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::error::Error;
use crate::protocol::Address;

/// Default write-buffer high-water mark: above it the protocol is told `pause_writing`.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default write-buffer low-water mark: at or below it the protocol is told `resume_writing`.
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;

/// What a transport does; implemented by the reactor's connections and by test doubles such
/// as [`StringTransport`](crate::testing::StringTransport). Applications use [`Transport`];
/// implement this only to provide a new kind of transport (an in-memory pipe, a wrapper that
/// counts or throttles bytes).
///
/// No method may call back into a protocol: they record intent or do I/O, and whatever user
/// code must hear about it is delivered later from the loop.
pub trait TransportBackend {
    /// See [`Transport::write`].
    fn write(&self, data: &[u8]) -> Result<(), Error>;
    /// See [`Transport::write_bytes`]. The default copies.
    fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.write(&data)
    }
    /// See [`Transport::write_vectored`]. The default writes each piece in turn.
    fn write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        parts.iter().try_for_each(|p| self.write(p))
    }
    /// See [`Transport::lose_connection`].
    fn lose_connection(&self);
    /// See [`Transport::abort_connection`].
    fn abort_connection(&self);
    /// See [`Transport::lose_write_connection`].
    fn lose_write_connection(&self) -> Result<(), Error>;
    /// See [`Transport::peer_addr`].
    fn peer_addr(&self) -> Address;
    /// See [`Transport::local_addr`].
    fn local_addr(&self) -> Address;
    /// See [`Transport::is_closing`].
    fn is_closing(&self) -> bool;
    /// See [`Transport::pause_reading`].
    fn pause_reading(&self);
    /// See [`Transport::resume_reading`].
    fn resume_reading(&self);
    /// See [`Transport::buffer_size`].
    fn buffer_size(&self) -> usize;
    /// See [`Transport::is_reading`].
    fn is_reading(&self) -> bool;
    /// See [`Transport::is_writing_paused`]. Default: never (a backend without a buffer).
    fn is_writing_paused(&self) -> bool {
        false
    }
    /// See [`Transport::set_write_buffer_limits`].
    fn set_write_buffer_limits(&self, high: usize, low: usize);
    /// See [`Transport::write_buffer_limits`].
    fn write_buffer_limits(&self) -> (usize, usize);
    /// See [`Transport::set_nodelay`]. Default: nothing to set.
    fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        let _ = on;
        Ok(())
    }
    /// See [`Transport::set_keepalive`]. Default: nothing to set.
    fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        let _ = idle;
        Ok(())
    }
    /// See [`Transport::peer_credentials`]. Default: not available.
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        None
    }
}

/// The user, group and process of the peer of a Unix socket (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's user id.
    pub uid: u32,
    /// The peer's group id.
    pub gid: u32,
    /// The peer's process id, where the OS reports it.
    pub pid: Option<i32>,
}

/// A cheap, clonable handle to one connection. Protocols keep it to write later (from a
/// timer, or from another connection's callback, as a chat room does).
///
/// Writes never block and never drop data: what the socket does not take at once is
/// buffered and sent when it can be; [`Protocol::pause_writing`](crate::Protocol) tells
/// the protocol when the buffer passes its high-water mark. A handle to a connection that
/// has closed is harmless: its writes return [`ErrorKind::ConnectionClosed`](crate::ErrorKind).
///
/// ```
/// use torsion_reactor::{Protocol, Transport};
///
/// struct Greeter;
/// impl Protocol for Greeter {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(b"hello, ");
///         t.write(t.peer_addr().to_string().as_bytes());
///         t.lose_connection(); // after the greeting is flushed
///     }
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
/// ```
#[derive(Clone)]
pub struct Transport(Rc<dyn TransportBackend>);

impl Transport {
    /// Wraps a backend.
    pub fn new(backend: Rc<dyn TransportBackend>) -> Transport {
        Transport(backend)
    }

    /// Sends `data`, or buffers what the socket does not take at once. Never blocks, never
    /// drops data, never calls back into a protocol. A write to a connection that is closing
    /// or closed is ignored (as in Twisted and asyncio); use
    /// [`try_write`](Transport::try_write) to be told. A failure of the socket itself
    /// arrives later, as `connection_lost`.
    ///
    /// Writes made while a callback runs are gathered and sent together when it returns
    /// (or, for another connection's writes, before the loop next waits for I/O): a protocol
    /// that answers sixteen pipelined requests in one `data_received` costs one `send`.
    pub fn write(&self, data: &[u8]) {
        let _ = self.0.write(data);
    }

    /// Like [`write`](Transport::write), without copying when the bytes must be buffered.
    pub fn write_bytes(&self, data: Bytes) {
        let _ = self.0.write_bytes(data);
    }

    /// Writes several pieces in order, in as few system calls as possible.
    pub fn write_vectored(&self, parts: &[&[u8]]) {
        let _ = self.0.write_vectored(parts);
    }

    /// Like [`write`](Transport::write), but says whether the bytes were accepted:
    /// [`ErrorKind::ConnectionClosed`](crate::ErrorKind) if the connection is closing or
    /// closed (nothing is written then).
    pub fn try_write(&self, data: &[u8]) -> Result<(), Error> {
        self.0.write(data)
    }

    /// Like [`write_bytes`](Transport::write_bytes), saying whether the bytes were accepted.
    pub fn try_write_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.0.write_bytes(data)
    }

    /// Like [`write_vectored`](Transport::write_vectored), saying whether the bytes were
    /// accepted.
    pub fn try_write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        self.0.write_vectored(parts)
    }

    /// Closes the connection after everything written so far is sent. Reading stops now.
    /// Calling it again, or on a closed connection, does nothing.
    pub fn lose_connection(&self) {
        self.0.lose_connection()
    }

    /// Closes the connection now, discarding unsent data.
    pub fn abort_connection(&self) {
        self.0.abort_connection()
    }

    /// Half-close: after the buffer is flushed, shut down the writing side (the peer reads
    /// end-of-file) while still reading what the peer sends.
    pub fn lose_write_connection(&self) -> Result<(), Error> {
        self.0.lose_write_connection()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Address {
        self.0.peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> Address {
        self.0.local_addr()
    }

    /// Whether the connection is closing or closed (writes are refused).
    pub fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    /// Stops reading from the peer until [`resume_reading`](Transport::resume_reading); the
    /// kernel's buffers then push back on the peer.
    pub fn pause_reading(&self) {
        self.0.pause_reading()
    }

    /// Resumes reading after [`pause_reading`](Transport::pause_reading).
    pub fn resume_reading(&self) {
        self.0.resume_reading()
    }

    /// Bytes written but not yet taken by the socket.
    pub fn buffer_size(&self) -> usize {
        self.0.buffer_size()
    }

    /// Whether the connection is reading from its peer: not paused with
    /// [`pause_reading`](Transport::pause_reading), not closing, not at end of file
    /// (asyncio's `is_reading`).
    pub fn is_reading(&self) -> bool {
        self.0.is_reading()
    }

    /// Whether the write buffer is above its high-water mark, or went above it and has not
    /// yet drained to the low mark: the state [`Protocol::pause_writing`](crate::Protocol)
    /// and `resume_writing` report, as of now rather than a loop turn later. When this
    /// returns `true`, the protocol is sure to be told `resume_writing` later (unless the
    /// connection is lost first), so a producer may stop here and wait for it.
    pub fn is_writing_paused(&self) -> bool {
        self.0.is_writing_paused()
    }

    /// Sets the write buffer's high- and low-water marks (defaults
    /// [`DEFAULT_HIGH_WATER`] / [`DEFAULT_LOW_WATER`]); `low` is clamped to `high`.
    pub fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.0.set_write_buffer_limits(high, low.min(high))
    }

    /// The write buffer's (high, low) marks.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        self.0.write_buffer_limits()
    }

    /// Turns Nagle's algorithm off (`true`, the default for TCP here, as in asyncio) or on.
    pub fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        self.0.set_nodelay(on)
    }

    /// Turns TCP keepalive on with the given idle time before probes, or off with `None`.
    pub fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        self.0.set_keepalive(idle)
    }

    /// The peer's credentials, for Unix sockets.
    pub fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.0.peer_credentials()
    }

    /// Whether two handles refer to the same connection.
    pub fn same_connection(&self, other: &Transport) -> bool {
        std::ptr::addr_eq(Rc::as_ptr(&self.0), Rc::as_ptr(&other.0))
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("peer", &self.peer_addr())
            .field("closing", &self.is_closing())
            .finish()
    }
}
