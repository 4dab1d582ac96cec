//! Services (Twisted's `twisted.application.service`): the long-lived parts of a program,
//! started when it starts and stopped, in order, when it stops.
//!
//! A [`Service`] has a name, a `start` and a `stop` that may finish later (each returns a
//! [`Deferred`]), and a running state. A [`MultiService`] is a service made of services: it
//! starts its children in the order they were added and stops them in the reverse order,
//! waiting for each child's stop before stopping the next, so a server stops (and drains)
//! before the database client it uses. [`service_fn`] makes a service of two closures.
//! [`Reactor::run_service`] (or a [`ServiceRunner`]) runs a tree: it starts the root once
//! the reactor runs and, at the reactor's graceful shutdown (`stop()`, SIGINT, SIGTERM),
//! stops the root and waits for its stop before the reactor closes what is left.
//!
//! The services that listen and connect through endpoint strings (a server that drains on
//! stop, a client that keeps one connection up) are in `torsion-endpoints`
//! (`ServerService`, `ClientService`): this module needs nothing but the reactor.
//!
//! ```
//! use std::{cell::RefCell, rc::Rc};
//! use torsion_reactor::testing::wait_for; // runs the loop until a Deferred fires
//! use torsion_reactor::{Deferred, MultiService, Reactor, Service, service_fn};
//!
//! let log = Rc::new(RefCell::new(Vec::new()));
//! let root = MultiService::new("app");
//! for name in ["database", "web"] {
//!     let (l1, l2) = (log.clone(), log.clone());
//!     root.add_service(service_fn(
//!         name,
//!         move || { l1.borrow_mut().push(format!("start {name}")); Deferred::succeed(()) },
//!         move || { l2.borrow_mut().push(format!("stop {name}")); Deferred::succeed(()) },
//!     ))
//!     .unwrap();
//! }
//! let reactor = Reactor::current();
//! wait_for(&reactor, root.start()).unwrap();
//! wait_for(&reactor, root.stop()).unwrap();
//! assert_eq!(*log.borrow(), ["start database", "start web", "stop web", "stop database"]);
//! ```

mod multi;
mod runner;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::defer::deferred::Deferred;
use crate::error::{Error, ErrorKind};

pub use multi::MultiService;
pub use runner::ServiceRunner;

/// A long-lived part of a program that can be started and stopped (Twisted's `IService`).
///
/// The contract, which [`MultiService`] and [`ServiceRunner`] rely on:
/// - [`is_running`](Service::is_running) is true from a call to `start` until the next call
///   to `stop` (as in Twisted, a service is "running" while it starts);
/// - `start` on a running service fails ([`ErrorKind::AlreadyRunning`]); its Deferred fails
///   if the service could not start (a port in use), and then the service is not running;
/// - `stop` on a service that is not running succeeds at once; its Deferred fires when the
///   service has finished stopping (connections drained, files flushed). A service may be
///   started again once stopped.
///
/// Neither method may call back into user code synchronously (the reactor's rule: every
/// callback starts from the loop). [`service_fn`] implements all of this for two closures.
pub trait Service: 'static {
    /// The service's name, unique among its siblings in a [`MultiService`].
    fn name(&self) -> &str;

    /// Starts the service; the Deferred fires once it has started, or fails saying why it
    /// could not.
    fn start(&self) -> Deferred<()>;

    /// Stops the service; the Deferred fires once it has stopped, or fails saying what went
    /// wrong while stopping (the service counts as stopped either way).
    fn stop(&self) -> Deferred<()>;

    /// Whether the service is running (see the trait's contract).
    fn is_running(&self) -> bool;
}

/// The error for `start` on a running service.
pub(crate) fn already_running(name: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyRunning,
        format!("cannot start service \"{name}\": it is already running"),
    )
}

type Action = Box<dyn FnMut() -> Deferred<()>>;

/// A [`Service`] made of a start and a stop closure (see [`service_fn`]).
pub struct FnService {
    name: String,
    /// Shared with the start's Deferred, which clears it when the start fails.
    running: Rc<Cell<bool>>,
    start: RefCell<Action>,
    stop: RefCell<Action>,
}

/// A service named `name` whose `start` and `stop` call these closures (each returns a
/// Deferred: `Deferred::succeed(())` when there is nothing to wait for). The running state
/// and the contract of [`Service`] are kept for them: `start` is not called while running,
/// `stop` only while running.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::testing::wait_for;
/// use torsion_reactor::{Deferred, Reactor, Service, defer_later, service_fn};
///
/// let flusher = service_fn(
///     "flusher",
///     || Deferred::succeed(()),
///     || defer_later(&Reactor::current(), Duration::from_millis(5), || ()), // flushing...
/// );
/// let reactor = Reactor::current();
/// wait_for(&reactor, flusher.start()).unwrap();
/// assert!(flusher.is_running());
/// wait_for(&reactor, flusher.stop()).unwrap();
/// assert!(!flusher.is_running());
/// ```
pub fn service_fn<S, T>(name: impl Into<String>, start: S, stop: T) -> Rc<FnService>
where
    S: FnMut() -> Deferred<()> + 'static,
    T: FnMut() -> Deferred<()> + 'static,
{
    Rc::new(FnService {
        name: name.into(),
        running: Rc::new(Cell::new(false)),
        start: RefCell::new(Box::new(start)),
        stop: RefCell::new(Box::new(stop)),
    })
}

impl std::fmt::Debug for FnService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnService")
            .field("name", &self.name)
            .field("running", &self.running.get())
            .finish()
    }
}

impl Service for FnService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self) -> Deferred<()> {
        if self.running.replace(true) {
            return Deferred::fail(already_running(&self.name));
        }
        let Ok(mut start) = self.start.try_borrow_mut() else {
            self.running.set(false);
            return Deferred::fail(already_running(&self.name));
        };
        let started = start();
        drop(start);
        let running = Rc::clone(&self.running);
        started.inspect(move |result| {
            if result.is_err() {
                running.set(false);
            }
        })
    }

    fn stop(&self) -> Deferred<()> {
        if !self.running.replace(false) {
            return Deferred::succeed(());
        }
        match self.stop.try_borrow_mut() {
            Ok(mut stop) => stop(),
            Err(_) => Deferred::fail(Error::new(
                ErrorKind::Busy,
                format!("cannot stop service \"{}\" from its own stop", self.name),
            )),
        }
    }

    fn is_running(&self) -> bool {
        self.running.get()
    }
}
