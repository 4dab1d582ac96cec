//! What a user writes: a [`Protocol`] per connection and a [`Factory`] that builds them.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use crate::transport::Transport;

/// Where a connection's end is: a TCP address or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address and port.
    Tcp(SocketAddr),
    /// A Unix socket path; `None` for an unnamed socket (a client that did not bind).
    Unix(Option<PathBuf>),
    /// Anything else (test doubles, in-memory transports), described for humans.
    Other(String),
}

impl Address {
    /// The IP address and port, for TCP addresses.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Address::Tcp(addr) => Some(*addr),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(addr) => write!(f, "{addr}"),
            Address::Unix(Some(path)) => write!(f, "{}", path.display()),
            Address::Unix(None) => f.write_str("(unnamed unix socket)"),
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
}

impl ConnectionLost {
    /// Whether this is a clean close ([`ConnectionLost::Done`]).
    pub fn is_clean(&self) -> bool {
        matches!(self, ConnectionLost::Done)
    }

    pub(crate) fn from_io(err: io::Error) -> ConnectionLost {
        ConnectionLost::Reset(Arc::new(err))
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
        }
    }
}

/// The code that runs one connection: told when it is made, when bytes arrive, when the peer
/// half-closes, when the write buffer fills and drains, and (exactly once) when it is lost.
///
/// The reactor never calls a protocol again while one of its methods is running: a `write`
/// or `lose_connection` made inside a callback only records what to do, and every callback
/// starts from the loop.
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
pub trait Protocol: 'static {
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

/// Builds one [`Protocol`] per connection and holds what connections share (a chat room,
/// counters, configuration). Methods take `&self`: keep mutable shared state in a `Cell` or
/// `RefCell` (the reactor is single-threaded, and no factory method is re-entered).
///
/// ```
/// use std::cell::Cell;
/// use torsion_reactor::{Address, Factory, Protocol, Transport};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
///         t.write(data);
///     }
/// }
///
/// /// Serves at most 100 connections over its lifetime.
/// struct EchoFactory { served: Cell<u32> }
/// impl Factory for EchoFactory {
///     type Protocol = Echo;
///     fn build_protocol(&self, _peer: &Address) -> Option<Echo> {
///         self.served.set(self.served.get() + 1);
///         (self.served.get() <= 100).then_some(Echo)
///     }
/// }
/// ```
pub trait Factory: 'static {
    /// The protocol this factory builds.
    type Protocol: Protocol;

    /// A protocol for a new connection from `peer`, or `None` to refuse it (the connection
    /// is closed at once and no protocol method is called).
    fn build_protocol(&self, peer: &Address) -> Option<Self::Protocol>;

    /// Called when the first port (or connector) using this factory starts.
    fn start_factory(&self) {}

    /// Called when the last port (or connector) using this factory stops.
    fn stop_factory(&self) {}

    /// Identifies the factory for counting the ports that use it, so wrappers (`Rc<F>`,
    /// [`BoxedFactory`]) count as the factory they wrap. Not meant to be overridden.
    #[doc(hidden)]
    fn factory_id(&self) -> usize {
        self as *const Self as *const () as usize
    }
}

impl<F: Factory> Factory for Rc<F> {
    type Protocol = F::Protocol;
    fn build_protocol(&self, peer: &Address) -> Option<F::Protocol> {
        (**self).build_protocol(peer)
    }
    fn start_factory(&self) {
        (**self).start_factory()
    }
    fn stop_factory(&self) {
        (**self).stop_factory()
    }
    fn factory_id(&self) -> usize {
        (**self).factory_id()
    }
}

/// A [`Factory`] with the protocol type erased (it builds `Box<dyn Protocol>`), for code
/// that decides at run time how to listen or connect, such as endpoint strings.
#[derive(Clone)]
pub struct BoxedFactory(Rc<dyn ErasedFactory>);

trait ErasedFactory {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>>;
    fn start(&self);
    fn stop(&self);
    fn id(&self) -> usize;
}

impl<F: Factory> ErasedFactory for F {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.build_protocol(peer)
            .map(|p| Box::new(p) as Box<dyn Protocol>)
    }
    fn start(&self) {
        self.start_factory()
    }
    fn stop(&self) {
        self.stop_factory()
    }
    fn id(&self) -> usize {
        self.factory_id()
    }
}

impl BoxedFactory {
    /// Erases `factory`'s protocol type.
    pub fn new<F: Factory>(factory: F) -> BoxedFactory {
        BoxedFactory(Rc::new(factory))
    }
}

impl Factory for BoxedFactory {
    type Protocol = Box<dyn Protocol>;
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.0.build(peer)
    }
    fn start_factory(&self) {
        self.0.start()
    }
    fn stop_factory(&self) {
        self.0.stop()
    }
    fn factory_id(&self) -> usize {
        self.0.id()
    }
}

/// What a factory's closure may return: a protocol (the connection is accepted) or an
/// `Option` of one (`None` refuses the connection). See [`factory_fn`].
pub trait MaybeProtocol {
    /// The protocol type.
    type Protocol: Protocol;
    /// `Some(protocol)` to accept, `None` to refuse.
    fn into_option(self) -> Option<Self::Protocol>;
}

impl<P: Protocol> MaybeProtocol for P {
    type Protocol = P;
    fn into_option(self) -> Option<P> {
        Some(self)
    }
}

impl<P: Protocol> MaybeProtocol for Option<P> {
    type Protocol = P;
    fn into_option(self) -> Option<P> {
        self
    }
}

/// A factory made from a closure; see [`factory_fn`].
pub struct FnFactory<F>(F);

/// Makes a [`Factory`] from a closure that builds a protocol for each connection:
/// `factory_fn(|_peer| Echo)`. The closure may also return an `Option`, `None` refusing
/// the connection: `factory_fn(|peer| allowed(peer).then_some(Echo))`.
///
/// ```
/// use torsion_reactor::{Address, Factory, Protocol, Transport, factory_fn};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
///         t.write(data);
///     }
/// }
///
/// let everyone = factory_fn(|_| Echo);
/// let local_only = factory_fn(|peer: &Address| {
///     peer.socket_addr().is_some_and(|a| a.ip().is_loopback()).then_some(Echo)
/// });
/// let far: Address = "192.0.2.7:4000".parse::<std::net::SocketAddr>().unwrap().into();
/// assert!(everyone.build_protocol(&far).is_some());
/// assert!(local_only.build_protocol(&far).is_none());
/// ```
pub fn factory_fn<M, F>(build: F) -> FnFactory<F>
where
    M: MaybeProtocol,
    F: Fn(&Address) -> M + 'static,
{
    FnFactory(build)
}

impl<M, F> Factory for FnFactory<F>
where
    M: MaybeProtocol,
    F: Fn(&Address) -> M + 'static,
{
    type Protocol = M::Protocol;
    fn build_protocol(&self, peer: &Address) -> Option<M::Protocol> {
        (self.0)(peer).into_option()
    }
}
