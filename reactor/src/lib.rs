//! torsion's reactor: a per-thread event loop for callback-style network programs.
//!
//! The [`Reactor`] waits for readiness on sockets and other descriptors and calls the code
//! that owns them; [`call_soon`](Reactor::call_soon) and
//! [`call_later`](Reactor::call_later) schedule plain callbacks; [`Clock`] runs the same
//! scheduling code deterministically in tests.
//!
//! A result that comes later is a [`Deferred`]: chain callbacks on it ([`Deferred::map`],
//! [`Deferred::and_then`], [`gather`], ...) or `.await` it in a task ([`Reactor::spawn`],
//! [`Reactor::run_until_complete`], [`sleep`], [`timeout`]). [`LoopingCall`] and
//! [`cooperate`] are Twisted's `task` module; [`Reactor::defer_to_thread`] runs blocking
//! code on the reactor's thread pool.
//!
//! ```
//! use std::time::Duration;
//! use torsion_reactor::Reactor;
//!
//! let reactor = Reactor::current();
//! reactor.call_soon(|| println!("Hello World"));
//! reactor.call_later(Duration::from_millis(5), || Reactor::current().stop().unwrap());
//! reactor.run().unwrap();
//! ```
#![deny(missing_docs)]

mod callback;
mod client;
mod clock;
mod conn;
mod cooperate;
mod deferred;
mod error;
mod fd;
mod listen;
mod looping;
mod poll;
mod poller;
mod protocol;
mod reactor;
mod reconnect;
mod remote;
mod signals;
mod stream;
mod sys;
mod task;
mod tcp;
mod threads;
mod timer;
mod transport;
mod unix;

pub mod testing;

pub use client::{
    BoxedClientFactory, ClientFactory, Connector, ConnectorBackend, ConnectorState,
    DEFAULT_CONNECT_TIMEOUT,
};
pub use clock::Clock;
pub use cooperate::{CooperativeTask, Cooperator, DEFAULT_TIME_SLICE, TaskState, cooperate};
pub use deferred::combinators::{first, gather, race, settle};
pub use deferred::{DRAIN_BUDGET, Deferred, DeferredError, Resolver, defer_later};
pub use error::{Error, ErrorKind, Result};
pub use listen::ListeningPort;
pub use looping::LoopingCall;
pub use protocol::{
    Address, BoxedFactory, ConnectionLost, Factory, FnFactory, MaybeProtocol, Protocol, factory_fn,
};
pub use reactor::{DEFAULT_SHUTDOWN_GRACE, Phase, Reactor, SystemEvent, TriggerId};
pub use reconnect::{Backoff, Reconnecting};
pub use remote::Remote;
pub use task::{Sleep, Timeout, sleep, sleep_on, timeout, timeout_on};
pub use tcp::{DEFAULT_BACKLOG, TcpConnectOptions, TcpListenOptions};
pub use threads::DEFAULT_THREAD_POOL_SIZE;
pub use timer::{DelayedCall, Scheduler, SchedulerExt, delay_from_secs};
pub use transport::{
    DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, PeerCredentials, Transport, TransportBackend,
};
pub use unix::{UnixConnectOptions, UnixListenOptions};
