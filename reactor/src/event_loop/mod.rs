//! The per-thread [`Reactor`]: the loop and everything it schedules.
//!
//! # One iteration
//!
//! [`Reactor::iterate`] (and `run`, which iterates until stopped) runs these phases, in
//! this order, each in its own function in `phases.rs`:
//!
//! 1. **ready callbacks**: the `call_soon` callbacks queued before the iteration began, in
//!    FIFO order (one queued meanwhile waits for the next iteration, so callbacks cannot
//!    starve I/O);
//! 2. **cross-thread calls**: what other threads queued with [`Remote::call_from_thread`];
//! 3. **Deferred callbacks**: the chains of the Deferreds that fired, up to
//!    [`DRAIN_BUDGET`](crate::DRAIN_BUDGET) of them (a chain fired during the drain joins
//!    it, so a chain of `map`s completes in one iteration);
//! 4. **tasks**: the futures woken before this point are polled once each;
//! 5. **gathered writes**: writes made to connections outside their own callbacks (a chat
//!    broadcast, a timer) go out, one `send` per connection;
//! 6. **poll**: one wait for I/O — zero time if anything above is ready again, else until
//!    the next timer — then every I/O event, each handed to the source that owns the
//!    descriptor (a connection reads and calls `data_received`; its writes go out when the
//!    callback returns);
//! 7. **timers**: every timer due now, in deadline order (collected before any runs, so a
//!    timer re-armed with zero delay runs next iteration).
//!
//! Every run queue lives here, in the reactor: none in thread-locals. Iterating a reactor
//! from inside one of its own callbacks is refused ([`ErrorKind::AlreadyRunning`]): a nested
//! loop would call protocols that are in the middle of a callback.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::defer::executor::Executor;
use crate::defer::threads::ThreadPool;
use crate::error::{Error, ErrorKind};
use crate::io::poller::{Events, Poller};
use crate::io::registry::Registry;
use crate::io::watch::Watches;
use crate::process::Children;
use crate::time::timer::{DelayedCall, Job, TimeSource, Timers};
use crate::time::{Scheduler, SchedulerExt};

pub(crate) mod callback;
mod phases;
pub(crate) mod queues;
pub(crate) mod remote;
mod run;
pub(crate) mod signals;
pub(crate) mod stats;
mod triggers;

pub use callback::{Caught, CaughtKind};
pub use remote::Remote;
pub use run::DEFAULT_SHUTDOWN_GRACE;
pub use signals::signal_name;
pub use stats::{DEFAULT_SLOW_CALLBACK, LoopStats, SLOW_CALLBACK_ENV};
pub use triggers::{Phase, SystemEvent, TriggerId};

use queues::RunQueues;
use remote::RemoteShared;
use stats::Counters;
use triggers::Triggers;

/// Size of the shared read buffer: one read can take 64 KiB from a socket.
pub(crate) const READ_BUF_SIZE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    Stopping,
    Closed,
}

type ErrorHandler = Rc<dyn Fn(&Caught)>;

/// The reactor itself; [`Reactor`] handles point here.
pub(crate) struct Inner {
    pub(crate) registry: Registry,
    pub(crate) timers: Rc<Timers>,
    pub(crate) queues: RunQueues,
    pub(crate) remote: Arc<RemoteShared>,
    /// Futures spawned on this reactor.
    pub(crate) tasks: Executor,
    /// The thread pool behind `call_in_thread` / `defer_to_thread`.
    pub(crate) threads: Rc<ThreadPool>,
    pub(crate) fd_watches: RefCell<Watches>,
    /// One read buffer for every connection on this reactor.
    pub(crate) read_buf: RefCell<Box<[u8]>>,
    /// Counts iterations (wrapping): a connection's read budget is per iteration.
    pub(crate) turn: Cell<u16>,
    /// The receive slots every datagram port on this reactor reads batches into (empty
    /// until the first port reads; see `net/datagram`).
    pub(crate) datagram_buf: RefCell<Vec<u8>>,
    /// Open connections (TCP, Unix, pipes, ...) and datagram ports, for winding down and for
    /// diagnostics.
    pub(crate) connections: Cell<usize>,
    /// What the loop counts about itself (shared with each connection, which counts its
    /// bytes), and the slow-callback threshold.
    pub(crate) stats: Rc<Counters>,
    /// Signal pipes: handlers, the graceful stop, the child reaper.
    pub(crate) signals: signals::Signals,
    /// Child processes not reaped yet.
    pub(crate) children: Children,
    triggers: Triggers,
    when_running: RefCell<Vec<Job>>,
    events: Cell<Option<Events>>,
    state: Cell<State>,
    /// An iteration, a trigger or a `call_when_running` callback is running: user code
    /// may be on the stack, and the loop must not be entered again.
    dispatching: Cell<bool>,
    stop_requested: Cell<bool>,
    abort_requested: Cell<bool>,
    handle_signals: Cell<bool>,
    shutdown_grace: Cell<Duration>,
    /// A deadline the next wait must not pass (`iterate(timeout)`, the shutdown grace).
    pub(crate) wake_at: Cell<Option<Instant>>,
    error_handler: RefCell<Option<ErrorHandler>>,
    /// `Some` while caught panics and errors fail the iteration (tests).
    failures: RefCell<Option<Vec<Caught>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.threads.shut_down();
        self.remote.close();
    }
}

impl Inner {
    pub(crate) fn reactor(self: &Rc<Self>) -> Reactor {
        Reactor {
            inner: Rc::clone(self),
        }
    }

    pub(crate) fn call_soon_job(&self, job: Job) {
        if self.state.get() == State::Closed {
            log::warn!(
                "a callback scheduled at {} on a closed reactor is dropped",
                job.origin
            );
            return;
        }
        self.queues.push_ready(job);
    }

    /// Runs a scheduled job: counted, timed when slow callbacks are watched, a panic
    /// contained and reported with the job's origin.
    pub(crate) fn run_job(&self, job: Job) {
        self.stats.callback();
        let origin = job.origin;
        let started = self.stats.start();
        callback::run_job(job);
        self.stats
            .finish(started, || stats::scheduled_at("a callback", origin));
    }

    /// Whether user code may be on the stack (so writes are gathered, not sent at once).
    pub(crate) fn is_dispatching(&self) -> bool {
        self.dispatching.get()
    }

    /// Hands something caught to the error handler (and to the failure list in tests).
    pub(crate) fn caught(&self, caught: Caught) {
        if let Some(failures) = &mut *self.failures.borrow_mut() {
            if caught.kind().fails_tests() {
                failures.push(caught.clone());
            }
        }
        let handler = self.error_handler.borrow().clone();
        match handler {
            Some(handler) => {
                // A panicking handler is logged, not reported again (no loop of reports).
                if let Err(msg) = callback::guard(|| handler(&caught)) {
                    log::error!("the reactor's error handler panicked: {msg} (on: {caught})");
                }
            }
            None => callback::log_caught(&caught),
        }
    }
}

/// The per-thread event loop. Cloning gives another handle to the same reactor.
///
/// Get this thread's reactor with [`Reactor::current`]; schedule work with
/// [`call_soon`](Reactor::call_soon) and [`call_later`](Reactor::call_later); listen and
/// connect; then [`run`](Reactor::run) until something calls [`stop`](Reactor::stop).
/// Handles are `!Send`: to reach the reactor from another thread use [`Reactor::remote`].
/// The module documentation lists the phases of one iteration.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::Reactor;
///
/// let reactor = Reactor::current();
/// reactor.call_soon(|| println!("first"));
/// reactor.call_later(Duration::from_millis(10), || {
///     println!("ten milliseconds later");
///     Reactor::current().stop().unwrap();
/// });
/// reactor.run().unwrap();
/// ```
#[derive(Clone)]
pub struct Reactor {
    pub(crate) inner: Rc<Inner>,
}

thread_local! {
    /// The reactor installed as this thread's (created on first use of `current`).
    static INSTALLED: RefCell<Option<Reactor>> = const { RefCell::new(None) };
    /// The reactor iterating on this thread right now, if any.
    static RUNNING: RefCell<Option<Weak<Inner>>> = const { RefCell::new(None) };
}

impl Reactor {
    /// A new reactor, not installed as this thread's (see [`install`](Reactor::install)):
    /// asyncio's `new_event_loop`.
    ///
    /// Error: an [`ErrorKind::Io`] error if the OS refuses a poller (out of descriptors).
    ///
    /// ```
    /// use torsion_reactor::Reactor;
    ///
    /// let fresh = Reactor::new().unwrap();
    /// let previous = fresh.install();
    /// assert!(Reactor::current().same_reactor(&fresh));
    /// fresh.close().unwrap();
    /// assert!(fresh.is_closed());
    /// assert!(!Reactor::current().same_reactor(&fresh), "closing uninstalled it");
    /// drop(previous);
    /// ```
    pub fn new() -> Result<Reactor, Error> {
        let poller = Arc::new(
            Poller::new().map_err(|e| Error::io("cannot create the reactor's poller", e))?,
        );
        let inner = Rc::new(Inner {
            registry: Registry::new(Arc::clone(&poller)),
            timers: Timers::new(TimeSource::Real),
            queues: RunQueues::default(),
            remote: RemoteShared::new(poller),
            tasks: Executor::default(),
            threads: Rc::default(),
            fd_watches: RefCell::default(),
            read_buf: RefCell::new(vec![0; READ_BUF_SIZE].into_boxed_slice()),
            turn: Cell::new(0),
            datagram_buf: RefCell::new(Vec::new()),
            connections: Cell::new(0),
            stats: Rc::new(Counters::new()),
            signals: signals::Signals::default(),
            children: Children::default(),
            triggers: Triggers::default(),
            when_running: RefCell::new(Vec::new()),
            events: Cell::new(None),
            state: Cell::new(State::Idle),
            dispatching: Cell::new(false),
            stop_requested: Cell::new(false),
            abort_requested: Cell::new(false),
            handle_signals: Cell::new(true),
            shutdown_grace: Cell::new(DEFAULT_SHUTDOWN_GRACE),
            wake_at: Cell::new(None),
            error_handler: RefCell::new(None),
            failures: RefCell::new(None),
        });
        Ok(Reactor { inner })
    }

    /// This thread's reactor if the thread is not ending (its thread-locals are still
    /// there); for code that may run from destructors.
    pub(crate) fn current_if_alive() -> Option<Reactor> {
        INSTALLED.try_with(|_| ()).ok()?;
        Reactor::try_current().ok()
    }

    /// This thread's reactor: the one iterating on this thread now, else the installed
    /// one, created on first use.
    ///
    /// # Panics
    /// If the OS refuses to create a poller (out of file descriptors). Use
    /// [`try_current`](Reactor::try_current) to handle that as an error.
    pub fn current() -> Reactor {
        match Reactor::try_current() {
            Ok(r) => r,
            Err(err) => panic!("torsion: {err}"),
        }
    }

    /// This thread's reactor (see [`current`](Reactor::current)), or the error that
    /// prevented creating it.
    pub fn try_current() -> Result<Reactor, Error> {
        let running = RUNNING
            .try_with(|r| r.borrow().as_ref().and_then(Weak::upgrade))
            .ok()
            .flatten();
        if let Some(inner) = running {
            return Ok(Reactor { inner });
        }
        INSTALLED.with(|installed| {
            let mut installed = installed.borrow_mut();
            if let Some(reactor) = installed.as_ref() {
                return Ok(reactor.clone());
            }
            let reactor = Reactor::new()?;
            *installed = Some(reactor.clone());
            Ok(reactor)
        })
    }

    /// Installs this reactor as this thread's (what [`current`](Reactor::current) returns
    /// when no reactor is iterating): asyncio's `set_event_loop`. Returns the one it
    /// replaces.
    pub fn install(&self) -> Option<Reactor> {
        INSTALLED.with(|installed| installed.borrow_mut().replace(self.clone()))
    }

    /// Whether two handles refer to the same reactor.
    pub fn same_reactor(&self, other: &Reactor) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }

    /// Closes the reactor: aborts what is still open (each connection's `connection_lost`
    /// is called, with [`ConnectionLost::Aborted`](crate::ConnectionLost)), stops listening,
    /// drops every pending callback, timer and task, stops the thread pool and releases the
    /// poller's registrations. If it is this thread's installed reactor, it is uninstalled,
    /// so [`current`](Reactor::current) makes a fresh one. Using a closed reactor to run,
    /// iterate, listen, connect or watch a descriptor is an [`ErrorKind::ReactorClosed`]
    /// error; a callback scheduled on it is dropped with a warning. Closing again does
    /// nothing.
    ///
    /// Error: [`ErrorKind::AlreadyRunning`] if called while the reactor runs or iterates.
    pub fn close(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.state.get() == State::Closed {
            return Ok(());
        }
        if inner.state.get() != State::Idle || inner.dispatching.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "close() called while the reactor is running; stop it first",
            ));
        }
        inner.close();
        INSTALLED.with(|installed| {
            let mut installed = installed.borrow_mut();
            if installed.as_ref().is_some_and(|r| r.same_reactor(self)) {
                installed.take();
            }
        });
        Ok(())
    }

    /// Whether [`close`](Reactor::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.state.get() == State::Closed
    }

    /// The reactor, or [`ErrorKind::ReactorClosed`] if it was closed.
    pub(crate) fn inner_open(&self) -> Result<Rc<Inner>, Error> {
        if self.is_closed() {
            return Err(closed_error());
        }
        Ok(Rc::clone(&self.inner))
    }

    /// A `Send + Sync` handle for other threads (see [`Remote`]).
    pub fn remote(&self) -> Remote {
        Remote {
            shared: Arc::clone(&self.inner.remote),
        }
    }

    /// Runs `f` on the next loop iteration. Callbacks run in the order they were queued;
    /// one queued while the loop runs callbacks waits for the next iteration, so
    /// `call_soon` can never starve I/O.
    #[track_caller]
    pub fn call_soon<F: FnOnce() + 'static>(&self, f: F) {
        self.inner.call_soon_job(Job {
            f: Box::new(f),
            origin: Location::caller(),
        });
    }

    /// Runs `f` once, `delay` from now (see [`SchedulerExt::call_later`]).
    #[track_caller]
    pub fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        SchedulerExt::call_later(self, delay, f)
    }

    /// Runs `f` once at `when` (see [`SchedulerExt::call_at`]).
    #[track_caller]
    pub fn call_at<F: FnOnce() + 'static>(&self, when: Instant, f: F) -> DelayedCall {
        SchedulerExt::call_at(self, when, f)
    }

    /// Runs `f` once the reactor is running: at the start of the next `run()`, or on the next
    /// iteration if it is running now.
    #[track_caller]
    pub fn call_when_running<F: FnOnce() + 'static>(&self, f: F) {
        let job = Job {
            f: Box::new(f),
            origin: Location::caller(),
        };
        if self.running() {
            self.inner.call_soon_job(job);
        } else {
            self.inner.when_running.borrow_mut().push(job);
        }
    }

    /// Whether `run()` is in progress (including while it winds down).
    pub fn running(&self) -> bool {
        matches!(self.inner.state.get(), State::Running | State::Stopping)
    }

    /// Whether SIGINT and SIGTERM stop this reactor while it runs (default: yes). The first
    /// signal stops gracefully; a second one during the shutdown stops at once. (A handler
    /// set with [`add_signal_handler`](Reactor::add_signal_handler) for one of them takes
    /// its place.)
    pub fn set_handle_signals(&self, on: bool) {
        self.inner.handle_signals.set(on);
    }

    /// How long `stop()` lets connections flush their buffers before aborting them
    /// (default [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn set_shutdown_grace(&self, grace: Duration) {
        self.inner.shutdown_grace.set(grace);
    }

    /// Sends what the reactor catches (panics in callbacks, protocol methods and tasks;
    /// errors of Deferreds nobody handled; failed accepts, with their OS error: see
    /// [`CaughtKind`]) to `handler` instead of the log: asyncio's
    /// `set_exception_handler`. The handler runs where the thing was caught; it must not
    /// block.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::Duration};
    /// use torsion_reactor::Reactor;
    ///
    /// let reactor = Reactor::new().unwrap();
    /// let seen = Rc::new(RefCell::new(Vec::new()));
    /// let s = seen.clone();
    /// reactor.set_error_handler(move |caught| s.borrow_mut().push(caught.to_string()));
    /// reactor.call_soon(|| panic!("boom"));
    /// reactor.iterate(Duration::ZERO).unwrap();
    /// assert!(seen.borrow()[0].ends_with("panicked: boom"));
    /// ```
    pub fn set_error_handler<F: Fn(&Caught) + 'static>(&self, handler: F) {
        *self.inner.error_handler.borrow_mut() = Some(Rc::new(handler));
    }

    /// Goes back to logging what the reactor catches (the default).
    pub fn reset_error_handler(&self) {
        self.inner.error_handler.borrow_mut().take();
    }

    /// For tests (Twisted's trial fails a test that logged an error): while on, a panic or
    /// unhandled error caught during an iteration makes that iteration — and so
    /// [`iterate`](Reactor::iterate), [`run_until`](Reactor::run_until) and
    /// [`run`](Reactor::run) — return an [`ErrorKind::Panicked`] error carrying its
    /// message, instead of only logging it. A test that expects a panic turns it off or
    /// takes the caught panics with [`take_caught`](Reactor::take_caught).
    pub fn set_fail_on_caught(&self, on: bool) {
        let mut failures = self.inner.failures.borrow_mut();
        match (on, failures.is_some()) {
            (true, false) => *failures = Some(Vec::new()),
            (false, true) => *failures = None,
            _ => {}
        }
    }

    /// Takes what was caught since the last call while [`set_fail_on_caught`] is on (so an
    /// expected panic does not fail the next iteration).
    ///
    /// [`set_fail_on_caught`]: Reactor::set_fail_on_caught
    pub fn take_caught(&self) -> Vec<Caught> {
        match &mut *self.inner.failures.borrow_mut() {
            Some(failures) => std::mem::take(failures),
            None => Vec::new(),
        }
    }

    /// Number of pending timers (diagnostics and leak tests).
    pub fn pending_timers(&self) -> usize {
        self.inner.timers.queue.borrow().len()
    }

    /// Number of descriptors registered with the poller (diagnostics and leak tests).
    pub fn registered_sources(&self) -> usize {
        self.inner.registry.len()
    }

    /// Number of open connections and datagram ports (diagnostics and leak tests).
    pub fn open_connections(&self) -> usize {
        self.inner.connections.get()
    }

    /// A shared handle to this reactor as a [`Scheduler`], for code that keeps one
    /// (`Rc<dyn Scheduler>`: policies, reconnecting clients, `LoopingCall`).
    pub fn scheduler(&self) -> Rc<dyn Scheduler> {
        Rc::new(self.clone())
    }

    /// The reactor's monotonic time (asyncio's `loop.time()`).
    pub fn time(&self) -> Instant {
        Instant::now()
    }
}

pub(crate) fn closed_error() -> Error {
    Error::new(
        ErrorKind::ReactorClosed,
        "the reactor was closed; create a new one (Reactor::new or Reactor::current)",
    )
}

impl Scheduler for Reactor {
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[track_caller]
    fn call_at_boxed(&self, when: Instant, f: Box<dyn FnOnce()>) -> DelayedCall {
        let job = Job {
            f,
            origin: Location::caller(),
        };
        if self.is_closed() {
            log::warn!(
                "a timer scheduled at {} on a closed reactor will never run",
                job.origin
            );
        }
        self.inner.timers.schedule(when, job)
    }

    #[track_caller]
    fn call_soon_boxed(&self, f: Box<dyn FnOnce()>) {
        self.inner.call_soon_job(Job {
            f,
            origin: Location::caller(),
        });
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("running", &self.running())
            .field("closed", &self.is_closed())
            .field("pending_timers", &self.pending_timers())
            .field("open_connections", &self.open_connections())
            .finish()
    }
}

/// Marks the reactor as dispatching (user code may run) and as this thread's running
/// reactor, until dropped. Refuses a second entry: no nested loops.
pub(crate) struct Entered<'a> {
    inner: &'a Inner,
    previous: Option<Weak<Inner>>,
}

impl Inner {
    pub(crate) fn enter(self: &Rc<Self>) -> Result<Entered<'_>, Error> {
        if self.state.get() == State::Closed {
            return Err(closed_error());
        }
        if self.dispatching.replace(true) {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "the reactor cannot be iterated from inside one of its own callbacks \
                 (a nested loop would call protocols in the middle of a callback); \
                 schedule the work with call_soon, or spawn a task and await it",
            ));
        }
        let previous = RUNNING
            .try_with(|r| r.borrow_mut().replace(Rc::downgrade(self)))
            .ok()
            .flatten();
        Ok(Entered {
            inner: self,
            previous,
        })
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.inner.dispatching.set(false);
        let previous = self.previous.take();
        let _ = RUNNING.try_with(|r| *r.borrow_mut() = previous);
    }
}
