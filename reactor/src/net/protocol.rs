//! What a user writes for each connection: a [`Protocol`]; and what it is told: the peer's
//! [`Address`], and why the connection ended ([`ConnectionLost`]).

use std::any::Any;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::transport::Transport;

/// Where a connection's (or a datagram's) end is: a TCP or UDP address, a Unix socket
/// path, or a Linux abstract socket name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port of a TCP connection.
    Tcp(SocketAddr),
    /// An IPv4 or IPv6 address and port of a UDP port or datagram.
    Udp(SocketAddr),
    /// A Unix socket path; `None` for an unnamed socket (a client that did not bind).
    Unix(Option<PathBuf>),
    /// A Linux abstract Unix socket name (without the leading NUL byte of the kernel's
    /// form); displayed as `@name`, the way `ss` and systemd write it.
    UnixAbstract(Vec<u8>),
    /// Anything else (test doubles, in-memory transports), described for humans.
    Other(String),
}

impl Address {
    /// The IP address and port, for TCP and UDP addresses.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) | Address::Udp(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) | Address::Udp(addr) => write!(f, "{addr}"),
            Address::Unix(Some(path)) => write!(f, "{}", path.display()),
            Address::Unix(None) => f.write_str("(unnamed unix socket)"),
            Address::UnixAbstract(name) => write!(f, "@{}", name.escape_ascii()),
            Address::Other(s) => f.write_str(s),
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(addr: SocketAddr) -> Address {
        Address::Tcp(addr)
    }
}

/// Why a connection ended (or, for clients, never started). Passed to
/// [`Protocol::connection_lost`] and the client factory's callbacks.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ConnectionLost {
    /// Closed cleanly: by `lose_connection`, or by the peer's orderly close.
    Done,
    /// The peer reset the connection, or a read or write failed.
    Reset(Arc<io::Error>),
    /// Closed locally with `abort_connection` (or by a shutdown that ran out of time).
    Aborted,
    /// A timeout closed it (connect timeout, idle timeout).
    TimedOut,
    /// A client could not connect: refused, unreachable, or another connect error.
    Refused(Arc<io::Error>),
    /// A client's connection attempt was cancelled with `stop_connecting`.
    Cancelled,
    /// The protocol panicked in a callback; the message is the panic's.
    Panicked(String),
    /// A TLS layer failed: the peer's certificate was rejected (or ours was), the
    /// handshake did not finish in time, or the peer broke the protocol. Network failures
    /// under a TLS layer are reported as they are for plain connections.
    Tls(TlsFailure),
}

/// What kind of TLS failure ended a connection ([`ConnectionLost::Tls`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailureKind {
    /// A certificate was rejected: the peer's (untrusted, expired, for another name) or,
    /// as the peer's alert said, ours.
    Certificate,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The peer broke the TLS protocol, offered nothing in common with us (versions,
    /// cipher suites, ALPN protocols), or closed the connection during the handshake.
    Protocol,
    /// The peer closed the connection without a TLS `close_notify`: what it sent may have
    /// been cut short by someone on the path. Many clients close this way; a protocol
    /// whose messages carry their own length (HTTP with `Content-Length`) can tell whether
    /// anything is missing.
    Truncated,
}

/// A TLS failure: its kind and a sentence saying what happened.
///
/// ```
/// use torsion_reactor::{ConnectionLost, TlsFailure, TlsFailureKind};
///
/// let lost = ConnectionLost::Tls(TlsFailure::new(
///     TlsFailureKind::Certificate,
///     "the peer's certificate is not valid for example.org",
/// ));
/// assert!(!lost.is_clean());
/// assert_eq!(
///     lost.to_string(),
///     "TLS failed: the peer's certificate is not valid for example.org"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFailure {
    kind: TlsFailureKind,
    message: String,
}

impl TlsFailure {
    /// A failure of `kind`, described by `message`.
    pub fn new(kind: TlsFailureKind, message: impl Into<String>) -> TlsFailure {
        TlsFailure {
            kind,
            message: message.into(),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> TlsFailureKind {
        self.kind
    }

    /// What happened, as a sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ConnectionLost {
    /// Whether this is a clean close ([`ConnectionLost::Done`]).
    pub fn is_clean(&self) -> bool {
        matches!(self, ConnectionLost::Done)
    }
}

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionLost::Done => f.write_str("the connection was closed cleanly"),
            ConnectionLost::Reset(e) => write!(
                f,
                "the connection was lost: {}",
                crate::error::describe_io(e)
            ),
            ConnectionLost::Aborted => f.write_str("the connection was aborted locally"),
            ConnectionLost::TimedOut => f.write_str("the connection timed out"),
            ConnectionLost::Refused(e) => {
                write!(f, "could not connect: {}", crate::error::describe_io(e))
            }
            ConnectionLost::Cancelled => f.write_str("the connection attempt was cancelled"),
            ConnectionLost::Panicked(msg) => write!(f, "the protocol panicked: {msg}"),
            ConnectionLost::Tls(failure) => write!(f, "TLS failed: {failure}"),
        }
    }
}

/// The code that runs one connection: told when it is made, when bytes arrive, when the peer
/// half-closes, when the write buffer fills and drains, and (exactly once) when it is lost.
///
/// The reactor never calls a protocol again while one of its methods is running: calls a
/// protocol makes into its transport (`write`, `lose_connection`, ...) may do I/O but never
/// call back into user code, and every callback starts from the loop. Writes made during a
/// callback are gathered and sent when it returns.
///
/// ```
/// use torsion_reactor::{Protocol, Transport};
///
/// /// Upper-cases what it receives and sends it back.
/// struct Shout;
///
/// impl Protocol for Shout {
///     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
///         transport.write(&data.to_ascii_uppercase());
///     }
/// }
///
/// // Tested without a socket:
/// let t = torsion_reactor::testing::StringTransport::new();
/// let mut p = Shout;
/// p.data_received(&t.transport(), b"hi");
/// assert_eq!(t.written(), b"HI");
/// ```
pub trait Protocol: Any {
    /// The connection is open; `transport` is how to write to it. Keep a clone if needed.
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived. `data` is only valid during the call (it lives in a buffer shared by
    /// every connection on this reactor): copy what must be kept.
    fn data_received(&mut self, transport: &Transport, data: &[u8]);

    /// The peer shut down its writing side (half-close). Return `true` to keep this side
    /// open for writing (close it later with `lose_connection`), `false` (the default) to
    /// close the connection once the write buffer is flushed.
    fn eof_received(&mut self, transport: &Transport) -> bool {
        let _ = transport;
        false
    }

    /// The connection is gone; called exactly once for every `connection_made`.
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let _ = reason;
    }

    /// The write buffer went above its high-water mark: stop producing until
    /// `resume_writing`.
    fn pause_writing(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// The write buffer drained to its low-water mark: produce again.
    fn resume_writing(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Reading was resumed ([`Transport::resume_reading`]) after a pause. A protocol that
    /// holds received bytes it stopped processing while paused (the framing adapters do)
    /// processes them now: the peer may send nothing more until it gets its answers.
    /// Called from the loop, after the call that resumed reading has returned.
    fn reading_resumed(&mut self, transport: &Transport) {
        let _ = transport;
    }
}

/// A boxed protocol is a protocol (the type-erased form, `Box<dyn Protocol>`, that
/// [`BoxedFactory`](crate::BoxedFactory) builds). The reactor does not box it again.
impl<P: Protocol + ?Sized> Protocol for Box<P> {
    fn connection_made(&mut self, transport: &Transport) {
        (**self).connection_made(transport)
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        (**self).data_received(transport, data)
    }
    fn eof_received(&mut self, transport: &Transport) -> bool {
        (**self).eof_received(transport)
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        (**self).connection_lost(reason)
    }
    fn pause_writing(&mut self, transport: &Transport) {
        (**self).pause_writing(transport)
    }
    fn resume_writing(&mut self, transport: &Transport) {
        (**self).resume_writing(transport)
    }
    fn reading_resumed(&mut self, transport: &Transport) {
        (**self).reading_resumed(transport)
    }
}

/// `value` itself if it already is a `U`, else `wrap(value)`: how a value that is already
/// type-erased (a `Box<dyn Protocol>`, a `BoxedFactory`) is not erased a second time.
pub(crate) fn reuse_or_wrap<T: 'static, U: 'static>(value: T, wrap: impl FnOnce(T) -> U) -> U {
    let mut slot = Some(value);
    if let Some(already) = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
    {
        return already;
    }
    match slot {
        Some(value) => wrap(value),
        None => unreachable!("the value is taken only when it is a U"),
    }
}

/// What a factory built, as the connection's one box: a protocol that already is a
/// `Box<dyn Protocol>` is used as it is, so `data_received` is one dynamic call whatever
/// the factory built.
pub(crate) fn boxed<P: Protocol>(built: Option<P>) -> Option<Box<dyn Protocol>> {
    built.map(|p| reuse_or_wrap(p, |p| Box::new(p) as Box<dyn Protocol>))
}
