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
mod clock;
mod cooperate;
mod deferred;
mod error;
mod fd;
mod looping;
mod poll;
mod reactor;
mod remote;
mod signals;
mod task;
mod threads;
mod timer;

pub use clock::Clock;
pub use cooperate::{CooperativeTask, Cooperator, DEFAULT_TIME_SLICE, TaskState, cooperate};
pub use deferred::combinators::{first, gather, race, settle};
pub use deferred::{DRAIN_BUDGET, Deferred, DeferredError, Resolver, defer_later};
pub use error::{Error, ErrorKind, Result};
pub use looping::LoopingCall;
pub use reactor::{DEFAULT_SHUTDOWN_GRACE, Phase, Reactor, SystemEvent, TriggerId};
pub use remote::Remote;
pub use task::{Sleep, Timeout, sleep, sleep_on, timeout, timeout_on};
pub use threads::DEFAULT_THREAD_POOL_SIZE;
pub use timer::{DelayedCall, Scheduler, SchedulerExt, delay_from_secs};
