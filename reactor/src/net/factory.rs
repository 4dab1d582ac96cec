//! [`Factory`]: builds one protocol per connection and holds what connections share; the
//! closure factory ([`factory_fn`]); [`SharedFactory`], one factory for several ports; and
//! the type-erased [`BoxedFactory`] that listening ports and connectors hold.
//!
//! Each port (or connector) calls its factory's `start_factory` when it starts and
//! `stop_factory` when it stops. A factory given by value to one port is that port's own.
//! To serve one factory on several ports, give each a clone of a [`SharedFactory`] (or of a
//! [`BoxedFactory`]): it counts the ports using it, as Twisted's factories count `numPorts`,
//! so the wrapped factory is started when the first port starts and stopped when the last
//! one stops.

use std::any::Any;
use std::cell::Cell;
use std::rc::Rc;

use super::protocol::{Address, Protocol, boxed};
use crate::event_loop::callback;

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
}

/// One factory used by several ports or connectors, and reachable from the code that made
/// it: clones share the factory, and it counts its users, so the wrapped factory's
/// `start_factory` runs when the first user starts and `stop_factory` when the last one
/// stops. It dereferences to the wrapped factory (`shared.stop_trying()` on a
/// `SharedFactory<Reconnecting<F>>`, `shared.room` on a chat factory).
///
/// ```
/// use std::cell::Cell;
/// use torsion_reactor::{Address, Factory, Reactor, SharedFactory, testing::Sink};
///
/// #[derive(Default)]
/// struct Counting { starts: Cell<u32>, stops: Cell<u32> }
/// impl Factory for Counting {
///     type Protocol = Sink;
///     fn build_protocol(&self, _: &Address) -> Option<Sink> { Some(Sink) }
///     fn start_factory(&self) { self.starts.set(self.starts.get() + 1) }
///     fn stop_factory(&self) { self.stops.set(self.stops.get() + 1) }
/// }
///
/// let shared = SharedFactory::new(Counting::default());
/// let reactor = Reactor::current();
/// let a = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
/// let b = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
/// assert_eq!(shared.starts.get(), 1, "started once for both ports");
/// a.stop_listening();
/// assert_eq!(shared.stops.get(), 0, "one port still uses it");
/// b.stop_listening();
/// assert_eq!(shared.stops.get(), 1);
/// ```
pub struct SharedFactory<F>(Rc<Counted<F>>);

impl<F: Factory> SharedFactory<F> {
    /// Wraps `factory` for sharing.
    pub fn new(factory: F) -> SharedFactory<F> {
        SharedFactory(Rc::new(Counted::new(factory)))
    }

    /// How many handles to this factory exist, this one included (for leak tests: once
    /// every port and connector is gone, only the test's own remain).
    pub fn handle_count(this: &SharedFactory<F>) -> usize {
        Rc::strong_count(&this.0)
    }
}

impl<F> Clone for SharedFactory<F> {
    fn clone(&self) -> Self {
        SharedFactory(Rc::clone(&self.0))
    }
}

impl<F> std::ops::Deref for SharedFactory<F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.0.factory
    }
}

impl<F: Factory> Factory for SharedFactory<F> {
    type Protocol = F::Protocol;
    fn build_protocol(&self, peer: &Address) -> Option<F::Protocol> {
        self.0.factory.build_protocol(peer)
    }
    fn start_factory(&self) {
        if self.0.add_user() {
            self.0.factory.start_factory()
        }
    }
    fn stop_factory(&self) {
        if self.0.remove_user() {
            self.0.factory.stop_factory()
        }
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

/// A closure factory can connect too (`reactor.connect_tcp(addr, factory_fn(|_| Ping))`);
/// it ignores what a client factory is told.
impl<M, F> crate::net::client::ClientFactory for FnFactory<F>
where
    M: MaybeProtocol,
    F: Fn(&Address) -> M + 'static,
{
}

/// A factory with its protocol type erased.
pub(crate) trait ErasedFactory {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>>;
    fn start(&self);
    fn stop(&self);
}

impl<F: Factory> ErasedFactory for F {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        boxed(self.build_protocol(peer))
    }
    fn start(&self) {
        self.start_factory()
    }
    fn stop(&self) {
        self.stop_factory()
    }
}

/// A factory and how many ports and connectors use it.
pub(crate) struct Counted<F: ?Sized> {
    users: Cell<usize>,
    pub(crate) factory: F,
}

impl<F: ?Sized> Counted<F> {
    pub(crate) fn new(factory: F) -> Counted<F>
    where
        F: Sized,
    {
        Counted {
            users: Cell::new(0),
            factory,
        }
    }

    /// One more user; returns whether it is the first.
    pub(crate) fn add_user(&self) -> bool {
        self.users.set(self.users.get() + 1);
        self.users.get() == 1
    }

    /// One user fewer; returns whether it was the last.
    pub(crate) fn remove_user(&self) -> bool {
        let n = self.users.get().saturating_sub(1);
        self.users.set(n);
        n == 0
    }
}

/// A [`Factory`] with the protocol type erased (it builds `Box<dyn Protocol>`), for code
/// that decides at run time how to listen or connect, such as endpoint strings. Like a
/// [`SharedFactory`], clones share the factory and count its users, so ports given clones
/// of one `BoxedFactory` start it once and stop it once.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use torsion_reactor::{Address, BoxedFactory, Factory, Reactor, testing::Sink};
///
/// struct Counting(Rc<Cell<u32>>);
/// impl Factory for Counting {
///     type Protocol = Sink;
///     fn build_protocol(&self, _: &Address) -> Option<Sink> { Some(Sink) }
///     fn start_factory(&self) { self.0.set(self.0.get() + 1) }
/// }
///
/// let starts = Rc::new(Cell::new(0));
/// let shared = BoxedFactory::new(Counting(starts.clone()));
/// let reactor = Reactor::current();
/// let a = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
/// let b = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
/// assert_eq!(starts.get(), 1, "one factory, started once for both ports");
/// a.stop_listening();
/// b.stop_listening();
/// ```
#[derive(Clone)]
pub struct BoxedFactory(pub(crate) Rc<Counted<dyn ErasedFactory>>);

impl BoxedFactory {
    /// Erases `factory`'s protocol type. A `BoxedFactory` given here comes back as it is
    /// (sharing its count), not wrapped again.
    pub fn new<F: Factory>(factory: F) -> BoxedFactory {
        let mut slot = Some(factory);
        if let Some(already) = (&mut slot as &mut dyn Any).downcast_mut::<Option<BoxedFactory>>() {
            if let Some(already) = already.take() {
                return already;
            }
        }
        match slot {
            Some(factory) => BoxedFactory(Rc::new(Counted::new(factory))),
            None => unreachable!("taken only when it was a BoxedFactory"),
        }
    }

    /// A port (or connector) starts using this factory (the first one starts it); a panic
    /// in `start_factory` is contained.
    pub(crate) fn started(&self) {
        callback::contain("start_factory", None, || self.start_factory());
    }

    /// A port (or connector) stops using it (the last one stops it).
    pub(crate) fn stopped(&self) {
        callback::contain("stop_factory", None, || self.stop_factory());
    }

    /// A protocol for a connection from `peer` (a panic in the factory refuses it).
    pub(crate) fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        callback::contain(
            &format!("build_protocol for a connection from {peer}"),
            None,
            || self.0.factory.build(peer),
        )
        .flatten()
    }
}

impl Factory for BoxedFactory {
    type Protocol = Box<dyn Protocol>;
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.0.factory.build(peer)
    }
    fn start_factory(&self) {
        if self.0.add_user() {
            self.0.factory.start()
        }
    }
    fn stop_factory(&self) {
        if self.0.remove_user() {
            self.0.factory.stop()
        }
    }
}
