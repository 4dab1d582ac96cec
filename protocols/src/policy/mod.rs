//! Policies: wrappers that add a behaviour to any [`Factory`] and the protocols it builds
//! (Twisted's `twisted.protocols.policies`).
//!
//! A [`Policy`] decides about each new connection and wraps the protocol the factory
//! builds; [`WrappingFactory`] (or [`FactoryExt::with_policy`]) puts one around a
//! factory. Policies compose by wrapping again; the last one added is the outermost, so
//! it decides first, and a connection it refuses never reaches the inner factories.
//!
//! | Policy | Does | Twisted |
//! | --- | --- | --- |
//! | [`TimeoutPolicy`] | closes a connection idle for a while (no byte either way) | `TimeoutFactory`, `TimeoutMixin` |
//! | [`ConnectionLimit`] | at most N connections; refuse or hold the rest | `ThrottlingFactory`, `LimitTotalConnectionsFactory` |
//! | [`RateLimit`] | read and write at most so many bytes per second per connection | `ThrottlingFactory` |
//! | [`LimitConnectionsByPeer`] | at most N connections per peer IP address | `LimitConnectionsByPeer` |
//!
//! Time comes from a [`Scheduler`](torsion_reactor::Scheduler) passed as
//! `Rc<dyn Scheduler>`: the [`Reactor`](torsion_reactor::Reactor) in production, a
//! [`Clock`](torsion_reactor::Clock) in tests.
//!
//! A wrapper that needs to call its protocol from a timer (a timeout's callback, a held
//! connection's late start, a write buffer draining) does so from the loop, never while
//! one of that protocol's callbacks runs, and a panic there aborts that connection only,
//! as a panic in any callback does.
//!
//! ```
//! use std::rc::Rc;
//! use std::time::Duration;
//! use torsion_protocols::policy::{FactoryExt, LimitConnectionsByPeer, TimeoutPolicy};
//! use torsion_reactor::{Protocol, Reactor, Scheduler, Transport, factory_fn};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, t: &Transport, data: &[u8]) {
//!         t.write(data);
//!     }
//! }
//!
//! let reactor: Rc<dyn Scheduler> = Reactor::current().scheduler();
//! let factory = factory_fn(|_| Echo)
//!     .with_policy(TimeoutPolicy::new(reactor, Duration::from_secs(300)))
//!     .with_policy(LimitConnectionsByPeer::new(10));
//! # let _ = factory;
//! ```
//!
//! # Writing a policy
//!
//! Implement [`Policy`] for every protocol type it can wrap. A wrapper protocol forwards
//! every [`Protocol`] method it does not handle itself,
//! `reading_resumed` included (the framing adapters wait for it after a pause), and a
//! wrapping [`TransportBackend`](torsion_reactor::TransportBackend) reports
//! `is_reading` and `is_writing_paused` as its protocol sees them:
//!
//! ```
//! use std::cell::Cell;
//! use std::rc::Rc;
//! use torsion_protocols::policy::{FactoryExt, Policy};
//! use torsion_reactor::{Address, ConnectionLost, Factory, Protocol, Transport, factory_fn};
//!
//! /// Counts the bytes received by all connections.
//! #[derive(Clone, Default)]
//! struct CountBytes(Rc<Cell<u64>>);
//!
//! struct Counted<P> { inner: P, total: Rc<Cell<u64>> }
//!
//! impl<P: Protocol> Protocol for Counted<P> {
//!     fn connection_made(&mut self, t: &Transport) { self.inner.connection_made(t) }
//!     fn data_received(&mut self, t: &Transport, data: &[u8]) {
//!         self.total.set(self.total.get() + data.len() as u64);
//!         self.inner.data_received(t, data)
//!     }
//!     fn eof_received(&mut self, t: &Transport) -> bool { self.inner.eof_received(t) }
//!     fn connection_lost(&mut self, reason: &ConnectionLost) { self.inner.connection_lost(reason) }
//!     fn pause_writing(&mut self, t: &Transport) { self.inner.pause_writing(t) }
//!     fn resume_writing(&mut self, t: &Transport) { self.inner.resume_writing(t) }
//!     fn reading_resumed(&mut self, t: &Transport) { self.inner.reading_resumed(t) }
//! }
//!
//! impl<P: Protocol> Policy<P> for CountBytes {
//!     type Protocol = Counted<P>;
//!     fn wrap(&self, _peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<Counted<P>> {
//!         Some(Counted { inner: build()?, total: self.0.clone() })
//!     }
//! }
//!
//! struct Sink;
//! impl Protocol for Sink {
//!     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
//! }
//!
//! let counter = CountBytes::default();
//! let factory = factory_fn(|_| Sink).with_policy(counter.clone());
//! let mut p = factory.build_protocol(&Address::Other("test".into())).unwrap();
//! let t = torsion_reactor::testing::StringTransport::new();
//! p.data_received(&t.transport(), b"12345");
//! assert_eq!(counter.0.get(), 5);
//! ```

mod limit;
mod peer;
mod rate;
mod shared;
mod timeout;

use torsion_reactor::{Address, Factory, Protocol};

pub use limit::{ConnectionLimit, Limited};
pub use peer::{LimitConnectionsByPeer, PeerLimited};
pub use rate::{RateLimit, RateLimited};
pub use timeout::{CloseOnTimeout, DEFAULT_ABORT_AFTER, Timeout, TimeoutHandler, TimeoutPolicy};

/// Decides about new connections and wraps the protocols a factory builds for them.
///
/// `P` is the wrapped factory's protocol type; a policy usually implements this for every
/// `P: Protocol`.
pub trait Policy<P: Protocol>: 'static {
    /// The wrapper protocol.
    type Protocol: Protocol;

    /// A new connection from `peer`: return `None` to refuse it, or call `build` (the
    /// wrapped factory's `build_protocol`; `None` from it refuses too) and wrap what it
    /// returns. A policy that refuses should do so before calling `build`, so the inner
    /// factory never hears of the connection.
    fn wrap(&self, peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<Self::Protocol>;

    /// The first port using the factory opened (after the wrapped factory's
    /// `start_factory`).
    fn start_factory(&self) {}

    /// The last port using the factory closed (before the wrapped factory's
    /// `stop_factory`).
    fn stop_factory(&self) {}
}

/// A [`Factory`] whose protocols a [`Policy`] wraps (Twisted's `WrappingFactory`).
///
/// Build it with [`WrappingFactory::new`] or [`FactoryExt::with_policy`].
pub struct WrappingFactory<F, W> {
    factory: F,
    policy: W,
}

impl<F: Factory, W: Policy<F::Protocol>> WrappingFactory<F, W> {
    /// Wraps `factory`'s protocols with `policy`.
    pub fn new(factory: F, policy: W) -> WrappingFactory<F, W> {
        WrappingFactory { factory, policy }
    }

    /// The wrapped factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }

    /// The policy.
    pub fn policy(&self) -> &W {
        &self.policy
    }
}

impl<F: Factory, W: Policy<F::Protocol>> Factory for WrappingFactory<F, W> {
    type Protocol = W::Protocol;

    fn build_protocol(&self, peer: &Address) -> Option<W::Protocol> {
        self.policy.wrap(peer, || self.factory.build_protocol(peer))
    }

    fn start_factory(&self) {
        self.factory.start_factory();
        self.policy.start_factory();
    }

    fn stop_factory(&self) {
        self.policy.stop_factory();
        self.factory.stop_factory();
    }
}

/// Two policies as one: `(inner, outer)` wraps with `inner`, then with `outer`, so
/// `outer` decides first (as `factory.with_policy(inner).with_policy(outer)` does).
impl<P, A, B> Policy<P> for (A, B)
where
    P: Protocol,
    A: Policy<P>,
    B: Policy<A::Protocol>,
{
    type Protocol = B::Protocol;

    fn wrap(&self, peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<B::Protocol> {
        self.1.wrap(peer, || self.0.wrap(peer, build))
    }

    fn start_factory(&self) {
        self.0.start_factory();
        self.1.start_factory();
    }

    fn stop_factory(&self) {
        self.1.stop_factory();
        self.0.stop_factory();
    }
}

/// Twisted's `ThrottlingFactory`: a connection limit (refuse or hold) in front of
/// per-connection read and write rate limits.
///
/// ```
/// use std::rc::Rc;
/// use torsion_protocols::policy::{ConnectionLimit, RateLimit, ThrottlingFactory};
/// use torsion_reactor::{Reactor, Scheduler, factory_fn, testing::Sink};
///
/// let reactor: Rc<dyn Scheduler> = Reactor::current().scheduler();
/// let factory: ThrottlingFactory<_> = ThrottlingFactory::new(
///     factory_fn(|_| Sink),
///     (
///         RateLimit::new(reactor.clone()).read_limit(1 << 20).write_limit(1 << 20),
///         ConnectionLimit::hold(100, 50, reactor),
///     ),
/// );
/// # let _ = factory;
/// ```
pub type ThrottlingFactory<F> = WrappingFactory<F, (RateLimit, ConnectionLimit)>;

/// `factory.with_policy(policy)`: wraps any factory with a [`Policy`].
pub trait FactoryExt: Factory + Sized {
    /// Wraps this factory's protocols with `policy`; see [`WrappingFactory`].
    fn with_policy<W: Policy<Self::Protocol>>(self, policy: W) -> WrappingFactory<Self, W> {
        WrappingFactory::new(self, policy)
    }
}

impl<F: Factory> FactoryExt for F {}
