//! [`Transport`]: the handle a protocol writes to and closes its connection with, and
//! [`TransportBackend`], what a kind of connection implements to be one.

use std::any::{Any, TypeId};
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::protocol::{Address, Protocol};
use crate::error::{Error, ErrorKind};

/// Default write-buffer high-water mark: above it the protocol is told `pause_writing`.
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;
/// Default write-buffer low-water mark: at or below it the protocol is told `resume_writing`.
pub const DEFAULT_LOW_WATER: usize = 16 * 1024;

/// What a transport does; implemented by the reactor's connections and by test doubles such
/// as [`StringTransport`](crate::testing::StringTransport). Applications use [`Transport`];
/// implement this only to provide a new kind of transport (an in-memory pipe, a wrapper that
/// counts or throttles bytes).
///
/// No method may call back into a protocol: they change state or do I/O, and whatever user
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
    /// Calls `f` with the connection's descriptor. Default: [`ErrorKind::Unsupported`].
    fn with_fd(&self, f: &mut dyn FnMut(BorrowedFd<'_>)) -> Result<(), Error> {
        let _ = f;
        Err(unsupported("this transport has no descriptor"))
    }
    /// See [`Transport::set_protocol`]. Default: [`ErrorKind::Unsupported`].
    fn set_protocol(&self, protocol: Box<dyn Protocol>) -> Result<(), Error> {
        drop(protocol);
        Err(unsupported("this transport cannot change its protocol"))
    }
    /// Calls `f` with the connection's protocol (see [`Transport::with_protocol`]). Default:
    /// [`ErrorKind::Unsupported`].
    fn with_protocol(&self, f: &mut dyn FnMut(&mut dyn Protocol)) -> Result<(), Error> {
        let _ = f;
        Err(unsupported("this transport does not hold a protocol"))
    }
    /// Something more the transport knows, asked for by type (see [`Transport::extra`]).
    /// A layer answers for the types it knows (a TLS layer: its session's details) and
    /// passes other questions to the transport under it; a wrapper passes every question
    /// on. Default: nothing.
    fn extra(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        let _ = what;
        None
    }
    /// See [`Transport::set_peer_addr`]. Default: [`ErrorKind::Unsupported`].
    fn set_peer_addr(&self, peer: Address) -> Result<(), Error> {
        let _ = peer;
        Err(unsupported("this transport's peer address cannot be set"))
    }
    /// See [`Transport::attach_extra`]; `value`'s own type (`(*value).type_id()`) is the
    /// one [`extra`](TransportBackend::extra) answers for. Default:
    /// [`ErrorKind::Unsupported`].
    fn attach_extra(&self, value: Rc<dyn Any>) -> Result<(), Error> {
        drop(value);
        Err(unsupported("this transport cannot hold extra information"))
    }
}

fn unsupported(what: &str) -> Error {
    Error::new(ErrorKind::Unsupported, what)
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
    ///
    /// A paused socket connection still hears a reset (on Linux's epoll; the portable
    /// poller hears it at the resume): it is lost at once with the reset as the reason, and
    /// what the kernel held unread goes with it, since nothing could be answered. A peer
    /// that merely closes waits for the resume, which delivers everything it sent, then
    /// `eof_received`.
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

    /// Calls `f` with the connection's descriptor (to read a socket option, or pass it to a
    /// library). Errors: [`ErrorKind::ConnectionClosed`] once the connection is closed;
    /// [`ErrorKind::Unsupported`] for a transport without one (a test double).
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Result<R, Error> {
        let mut f = Some(f);
        let mut out = None;
        self.0.with_fd(&mut |fd| out = f.take().map(|f| f(fd)))?;
        out.ok_or_else(|| unsupported("the transport did not lend its descriptor"))
    }

    /// Gets or sets any socket option through [`socket2::SockRef`] (everything `setsockopt`
    /// can do: buffer sizes, `SO_LINGER`, `IP_TOS`, ...). Errors: those of
    /// [`with_fd`](Transport::with_fd), and the option's own, with context.
    ///
    /// ```
    /// # use torsion_reactor::{Protocol, Transport};
    /// struct Linger;
    /// impl Protocol for Linger {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         // Reset instead of a clean close when this connection is closed.
    ///         let _ = t.with_socket(|s| s.set_linger(Some(std::time::Duration::ZERO)));
    ///     }
    ///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    /// }
    /// ```
    pub fn with_socket<R>(
        &self,
        f: impl FnOnce(&socket2::SockRef<'_>) -> io::Result<R>,
    ) -> Result<R, Error> {
        self.with_fd(|fd| f(&socket2::SockRef::from(&fd)))?
            .map_err(|e| Error::io("the socket option call failed", e))
    }

    /// Replaces the connection's protocol: every later callback goes to `protocol` (for
    /// protocol upgrades, and STARTTLS). Called from inside the current protocol's own
    /// callback, the switch happens when that callback returns (and the old protocol is
    /// dropped then). The new protocol gets no `connection_made` (give it this transport
    /// yourself); it gets `connection_lost` when the connection ends.
    ///
    /// Errors: [`ErrorKind::ConnectionClosed`] if the connection is closed;
    /// [`ErrorKind::Unsupported`] for a transport that holds no protocol.
    pub fn set_protocol<P: Protocol>(&self, protocol: P) -> Result<(), Error> {
        self.0.set_protocol(
            crate::net::protocol::boxed(Some(protocol))
                .ok_or_else(|| unsupported("an empty protocol box"))?,
        )
    }

    /// Calls `f` with the connection's protocol, if it is a `P` (asyncio's
    /// `get_protocol`, typed). Errors: [`ErrorKind::Busy`] from inside one of that
    /// protocol's own callbacks (use `self` there); [`ErrorKind::InvalidInput`] if the
    /// protocol is not a `P`; [`ErrorKind::ConnectionClosed`] once it is gone.
    pub fn with_protocol<P: Protocol, R>(&self, f: impl FnOnce(&mut P) -> R) -> Result<R, Error> {
        let mut f = Some(f);
        let mut out = None;
        self.0.with_protocol(&mut |p| {
            let any: &mut dyn Any = p;
            if let (Some(p), Some(f)) = (any.downcast_mut::<P>(), f.take()) {
                out = Some(f(p));
            }
        })?;
        out.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the connection's protocol is not a {}",
                    std::any::type_name::<P>()
                ),
            )
        })
    }

    /// Something more the transport knows, by type (asyncio's `get_extra_info`): a TLS
    /// transport answers `transport.extra::<TlsInfo>()` with the handshake's outcome
    /// (version, cipher suite, ALPN protocol, the peer's certificates). `None` when the
    /// transport (and every one under it) knows nothing of the kind.
    ///
    /// ```
    /// use torsion_reactor::testing::StringTransport;
    ///
    /// struct TlsDetails;
    /// assert!(StringTransport::new().transport().extra::<TlsDetails>().is_none());
    /// ```
    pub fn extra<T: Any>(&self) -> Option<Rc<T>> {
        self.0
            .extra(TypeId::of::<T>())
            .and_then(|found| found.downcast::<T>().ok())
    }

    /// Sets the address [`peer_addr`](Transport::peer_addr) reports from now on, once:
    /// for a layer that learns who the peer really is before the protocol is built (a
    /// PROXY protocol header from a load balancer says which client it relays), as HAProxy
    /// and nginx replace a connection's source address. Log lines about the connection
    /// and the socket itself keep the socket's peer.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] if it was set already;
    /// [`ErrorKind::Unsupported`] for a transport that cannot. A layer (TLS) sets it on the
    /// connection under it.
    pub fn set_peer_addr(&self, peer: Address) -> Result<(), Error> {
        self.0.set_peer_addr(peer)
    }

    /// Attaches `value` to the connection: [`extra::<T>()`](Transport::extra) answers with
    /// it from now on (a second value of the same type replaces the first). A layer that
    /// learns something about the connection (the PROXY protocol header's TLVs) leaves it
    /// here for the protocol.
    ///
    /// Errors: [`ErrorKind::Unsupported`] for a transport that cannot hold one.
    pub fn attach_extra<T: Any>(&self, value: T) -> Result<(), Error> {
        self.0.attach_extra(Rc::new(value))
    }

    /// [`extra`](Transport::extra) by type id, for a [`TransportBackend`] that wraps this
    /// transport and passes the question on.
    pub fn extra_any(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        self.0.extra(what)
    }

    /// [`attach_extra`](Transport::attach_extra) of a value already shared, for a
    /// [`TransportBackend`] that wraps this transport and passes it on.
    pub fn attach_extra_any(&self, value: Rc<dyn Any>) -> Result<(), Error> {
        self.0.attach_extra(value)
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
