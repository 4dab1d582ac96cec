//! The per-thread [`Reactor`]: the loop, `call_soon`, timers, system event triggers, and
//! winding down on `stop()`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::poller::{Events, Poller};

use crate::callback::{self, guard, log_panic};
use crate::error::{Error, ErrorKind};
use crate::poll::{Readiness, Registry, Wind};
use crate::remote::{Remote, RemoteShared};
use crate::timer::{DelayedCall, Job, TimeSource, Timers};
use crate::{Scheduler, SchedulerExt, signals};

/// The two system events servers hook into (Twisted's `startup` and `shutdown`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemEvent {
    /// `run()` is starting.
    Startup,
    /// `run()` is stopping.
    Shutdown,
}

/// When a trigger runs relative to its event.
///
/// For shutdown: `Before` runs while every connection is still open (say goodbye to clients
/// here); then connections are flushed and closed; then `During`, then `After`.
/// For startup: all three run, in order, before the first loop iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// First.
    Before,
    /// Second.
    During,
    /// Last.
    After,
}

/// Identifies a trigger added with [`Reactor::add_system_event_trigger`], to remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TriggerId(u64);

type TriggerFn = Rc<RefCell<dyn FnMut()>>;

struct Trigger {
    id: TriggerId,
    event: SystemEvent,
    phase: Phase,
    f: TriggerFn,
    origin: &'static Location<'static>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Running,
    Stopping,
}

/// Default time connections get to flush their write buffers when the reactor stops.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub(crate) struct Inner {
    pub(crate) registry: Registry,
    ready: RefCell<VecDeque<Job>>,
    pub(crate) timers: Rc<Timers>,
    remote: Arc<RemoteShared>,
    events: Cell<Option<Events>>,
    state: Cell<State>,
    stop_requested: Cell<bool>,
    abort_requested: Cell<bool>,
    handle_signals: Cell<bool>,
    shutdown_grace: Cell<Duration>,
    wake_at: Cell<Option<Instant>>,
    triggers: RefCell<Vec<Trigger>>,
    next_trigger: Cell<u64>,
    when_running: RefCell<Vec<Job>>,
    /// One read buffer for every connection on this reactor (taken while in use).
    pub(crate) read_buf: Cell<Vec<u8>>,
    /// Open connections (TCP, Unix, ...), for winding down.
    pub(crate) connections: Cell<usize>,
    pub(crate) fd_watches: RefCell<crate::fd::Watches>,
    /// Futures spawned on this reactor (see task.rs).
    pub(crate) tasks: Rc<crate::task::Executor>,
    /// The thread pool behind `call_in_thread` / `defer_to_thread` (see threads.rs).
    pub(crate) threads: Rc<crate::threads::ThreadPool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.threads.shut_down();
        self.remote.close();
    }
}

/// Size of the shared read buffer: one read can take 64 KiB from a socket.
pub(crate) const READ_BUF_SIZE: usize = 64 * 1024;

impl Inner {
    pub(crate) fn reactor(self: &Rc<Self>) -> Reactor {
        Reactor {
            inner: Rc::clone(self),
        }
    }

    #[track_caller]
    pub(crate) fn call_soon_boxed(&self, f: Box<dyn FnOnce()>) {
        self.call_soon_job(Job {
            f,
            origin: Location::caller(),
        });
    }

    pub(crate) fn call_soon_job(&self, job: Job) {
        self.ready.borrow_mut().push_back(job);
    }

    /// The shared read buffer, or a fresh one if a nested loop is using it.
    pub(crate) fn take_read_buf(&self) -> Vec<u8> {
        let buf = self.read_buf.take();
        if buf.len() == READ_BUF_SIZE {
            buf
        } else {
            vec![0; READ_BUF_SIZE]
        }
    }

    pub(crate) fn put_read_buf(&self, buf: Vec<u8>) {
        self.read_buf.set(buf);
    }

    fn fire(&self, event: SystemEvent, phase: Phase) {
        let due: Vec<(TriggerFn, &'static Location<'static>)> = self
            .triggers
            .borrow()
            .iter()
            .filter(|t| t.event == event && t.phase == phase)
            .map(|t| (Rc::clone(&t.f), t.origin))
            .collect();
        for (f, origin) in due {
            let result = match f.try_borrow_mut() {
                Ok(mut f) => guard(|| (*f)()),
                Err(_) => Ok(()), // the trigger is running already (nested run); skip
            };
            if let Err(msg) = result {
                log_panic("a system event trigger", origin, &msg);
            }
        }
    }

    /// One loop iteration: ready callbacks, one wait for I/O, events, due timers.
    pub(crate) fn iterate(self: &Rc<Self>) -> Result<(), Error> {
        // Run what was ready when the iteration began; callbacks they queue wait a turn.
        let count = self.ready.borrow().len();
        for _ in 0..count {
            let job = self.ready.borrow_mut().pop_front();
            match job {
                Some(job) => callback::run_job(job),
                None => break,
            }
        }
        if self.remote.has_pending() {
            let mut jobs = Vec::new();
            self.remote.take(&mut jobs);
            for job in jobs {
                if let Err(msg) = guard(job) {
                    log::error!("a call_from_thread callback panicked: {msg}; the reactor goes on");
                }
            }
        }
        // Poll the tasks that were woken before this point (bounded like the ready queue).
        self.tasks.run_ready();

        let timeout = self.wait_timeout();
        self.registry.flush_interest();
        let mut events = self.events.take().unwrap_or_else(Events::new);
        if let Err(err) = self.registry.poller.wait(&mut events, timeout) {
            self.events.set(Some(events));
            return Err(Error::io("the reactor cannot wait for events", err));
        }
        for ev in events.iter() {
            if let Some(source) = self.registry.source_for_key(ev.key) {
                source.ready(
                    self,
                    Readiness {
                        readable: ev.readable,
                        writable: ev.writable,
                    },
                );
            }
        }
        self.events.set(Some(events));

        // Collect every due timer before running any: a timer re-armed with a zero delay
        // from its own callback runs next iteration, not in a loop here.
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut q = self.timers.queue.borrow_mut();
            while let Some(job) = q.pop_due(now) {
                due.push(job);
            }
        }
        for job in due {
            callback::run_job(job);
        }
        Ok(())
    }

    /// Whether callbacks, cross-thread calls or tasks are waiting to run.
    fn has_ready_work(&self) -> bool {
        !self.ready.borrow().is_empty() || self.remote.has_pending() || self.tasks.has_ready()
    }

    fn wait_timeout(&self) -> Option<Duration> {
        if self.has_ready_work() || self.stop_requested.get() {
            return Some(Duration::ZERO);
        }
        let next = self.timers.queue.borrow_mut().next_deadline();
        let next = match (next, self.wake_at.get()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up to whole milliseconds: waking early only costs another turn, and a
            // coarser timeout spares the poller re-arming its timer.
            let ms = left.as_nanos().div_ceil(1_000_000);
            Duration::from_millis(ms.min(u64::MAX as u128) as u64)
        })
    }

    fn wind_down(self: &Rc<Self>, how: Wind) {
        for source in self.registry.all_sources() {
            source.wind_down(self, how);
        }
    }

    /// Stop accepting, let connections flush up to the grace deadline, abort the rest, and
    /// deliver every `connection_lost`.
    fn shut_down(self: &Rc<Self>) {
        self.fire(SystemEvent::Shutdown, Phase::Before);
        self.stop_requested.set(false);
        self.wind_down(Wind::Graceful);
        let deadline = crate::timer::deadline_after(Instant::now(), self.shutdown_grace.get());
        self.wake_at.set(Some(deadline));
        while self.connections.get() > 0 && !self.abort_requested.get() && Instant::now() < deadline
        {
            if let Err(err) = self.iterate() {
                log::error!("{err}");
                break;
            }
        }
        self.wake_at.set(None);
        if self.connections.get() > 0 {
            log::warn!(
                "{} connection(s) still open after the shutdown grace period; aborting them",
                self.connections.get()
            );
            self.wind_down(Wind::Abort);
        }
        // Deliver connection_lost and whatever it queues, within reason.
        for _ in 0..64 {
            if self.ready.borrow().is_empty() {
                break;
            }
            self.stop_requested.set(true); // zero-timeout waits
            if self.iterate().is_err() {
                break;
            }
        }
        self.stop_requested.set(false);
        self.fire(SystemEvent::Shutdown, Phase::During);
        self.fire(SystemEvent::Shutdown, Phase::After);
    }
}

/// The per-thread event loop. Cloning gives another handle to the same reactor.
///
/// Get this thread's reactor with [`Reactor::current`]; schedule work with
/// [`call_soon`](Reactor::call_soon) and [`call_later`](Reactor::call_later); listen and
/// connect; then [`run`](Reactor::run) until something calls [`stop`](Reactor::stop).
/// Handles are `!Send`: to reach the reactor from another thread use [`Reactor::remote`].
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
    static CURRENT: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

impl Reactor {
    fn new() -> Result<Reactor, Error> {
        let poller = Arc::new(
            Poller::new().map_err(|e| Error::io("cannot create the reactor's poller", e))?,
        );
        let inner = Rc::new(Inner {
            registry: Registry::new(Arc::clone(&poller)),
            ready: RefCell::new(VecDeque::new()),
            timers: Timers::new(TimeSource::Real),
            remote: RemoteShared::new(poller),
            events: Cell::new(None),
            state: Cell::new(State::Idle),
            stop_requested: Cell::new(false),
            abort_requested: Cell::new(false),
            handle_signals: Cell::new(true),
            shutdown_grace: Cell::new(DEFAULT_SHUTDOWN_GRACE),
            wake_at: Cell::new(None),
            triggers: RefCell::new(Vec::new()),
            next_trigger: Cell::new(0),
            when_running: RefCell::new(Vec::new()),
            read_buf: Cell::new(vec![0; READ_BUF_SIZE]),
            connections: Cell::new(0),
            fd_watches: RefCell::new(Default::default()),
            tasks: Default::default(),
            threads: Default::default(),
        });
        Ok(Reactor { inner })
    }

    /// This thread's reactor if the thread is not ending (its thread-locals are still
    /// there); for code that may run from destructors.
    pub(crate) fn current_if_alive() -> Option<Reactor> {
        CURRENT.try_with(|_| ()).ok()?;
        Reactor::try_current().ok()
    }

    /// This thread's reactor, created on first use.
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

    /// This thread's reactor, created on first use, or the error that prevented creating it.
    pub fn try_current() -> Result<Reactor, Error> {
        CURRENT.with(|current| {
            let mut current = current.borrow_mut();
            if let Some(reactor) = current.as_ref() {
                return Ok(reactor.clone());
            }
            let reactor = Reactor::new()?;
            *current = Some(reactor.clone());
            Ok(reactor)
        })
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
        self.inner.call_soon_boxed(Box::new(f));
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

    /// Adds a callback that runs at every `run()`'s startup or shutdown, in `phase`.
    #[track_caller]
    pub fn add_system_event_trigger<F: FnMut() + 'static>(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: F,
    ) -> TriggerId {
        let id = TriggerId(self.inner.next_trigger.get());
        self.inner.next_trigger.set(id.0 + 1);
        self.inner.triggers.borrow_mut().push(Trigger {
            id,
            event,
            phase,
            f: Rc::new(RefCell::new(f)),
            origin: Location::caller(),
        });
        id
    }

    /// Removes a trigger; returns whether it was there.
    pub fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        let mut triggers = self.inner.triggers.borrow_mut();
        let before = triggers.len();
        triggers.retain(|t| t.id != id);
        triggers.len() != before
    }

    /// Whether `run()` is in progress (including while it winds down).
    pub fn running(&self) -> bool {
        self.inner.state.get() != State::Idle
    }

    /// Whether SIGINT and SIGTERM stop this reactor while it runs (default: yes). The first
    /// signal stops gracefully; a second one during the shutdown stops at once.
    pub fn set_handle_signals(&self, on: bool) {
        self.inner.handle_signals.set(on);
    }

    /// How long `stop()` lets connections flush their buffers before aborting them
    /// (default [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn set_shutdown_grace(&self, grace: Duration) {
        self.inner.shutdown_grace.set(grace);
    }

    /// Runs the loop until [`stop`](Reactor::stop), then winds down: `Before`-shutdown
    /// triggers, listeners closed, connections flushed (up to the grace period) and closed,
    /// `connection_lost` delivered, then `During` and `After` triggers. A stopped reactor can
    /// run again.
    ///
    /// Errors: [`ErrorKind::AlreadyRunning`] if called from inside `run()`; an
    /// [`ErrorKind::Io`] error if the OS poller fails.
    pub fn run(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if inner.state.get() != State::Idle {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "run() called while the reactor is already running",
            ));
        }
        inner.state.set(State::Running);
        inner.stop_requested.set(false);
        inner.abort_requested.set(false);
        let signals = if inner.handle_signals.get() {
            match signals::SignalWatch::install(inner) {
                Ok(watch) => Some(watch),
                Err(err) => {
                    log::warn!("{err}; SIGINT and SIGTERM will not stop the reactor gracefully");
                    None
                }
            }
        } else {
            None
        };
        inner.fire(SystemEvent::Startup, Phase::Before);
        inner.fire(SystemEvent::Startup, Phase::During);
        let when_running = std::mem::take(&mut *inner.when_running.borrow_mut());
        for job in when_running {
            callback::run_job(job);
        }
        inner.fire(SystemEvent::Startup, Phase::After);

        let mut result = Ok(());
        while !inner.stop_requested.get() {
            if let Err(err) = inner.iterate() {
                result = Err(err);
                break;
            }
        }
        inner.state.set(State::Stopping);
        inner.shut_down();
        if let Some(watch) = signals {
            watch.uninstall(inner);
        }
        inner.state.set(State::Idle);
        inner.stop_requested.set(false);
        inner.abort_requested.set(false);
        result
    }

    /// Asks the loop to stop after the current iteration (then `run()` winds down and
    /// returns). Called again while winding down, it skips the rest of the grace period.
    ///
    /// Error: [`ErrorKind::NotRunning`] if the reactor is not running.
    pub fn stop(&self) -> Result<(), Error> {
        match self.inner.state.get() {
            State::Idle => Err(Error::new(
                ErrorKind::NotRunning,
                "stop() called but the reactor is not running",
            )),
            State::Running => {
                self.inner.stop_requested.set(true);
                Ok(())
            }
            State::Stopping => {
                self.inner.abort_requested.set(true);
                Ok(())
            }
        }
    }

    pub(crate) fn stop_now(&self) {
        self.inner.stop_requested.set(true);
        self.inner.abort_requested.set(true);
    }

    /// Runs one loop iteration (ready callbacks, one wait of at most `timeout` for I/O,
    /// events, due timers). For tests and for embedding torsion in another loop.
    pub fn iterate(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = crate::timer::deadline_after(Instant::now(), timeout);
        let previous = self.inner.wake_at.replace(Some(deadline));
        let result = self.inner.iterate();
        self.inner.wake_at.set(previous);
        result
    }

    /// Iterates until `done()` is true, or fails once `timeout` has passed: the tool for
    /// tests and scripts that wait for an event with a deadline. `done()` is checked
    /// before the first iteration, after every iteration, and at least every 10 ms, so it
    /// may also watch things the reactor is not told about (another thread finishing).
    ///
    /// Errors: [`ErrorKind::TimedOut`] if `done()` was still false at the deadline; an
    /// [`ErrorKind::Io`] error if the poller failed.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use torsion_reactor::{ErrorKind, Reactor};
    ///
    /// let reactor = Reactor::current();
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// reactor.call_later(Duration::from_millis(5), move || f.set(true));
    /// reactor.run_until(Duration::from_secs(10), || fired.get()).expect("the timer fires");
    ///
    /// let never = reactor.run_until(Duration::from_millis(20), || false).unwrap_err();
    /// assert_eq!(never.kind(), ErrorKind::TimedOut);
    /// ```
    pub fn run_until<F: FnMut() -> bool>(
        &self,
        timeout: Duration,
        mut done: F,
    ) -> Result<(), Error> {
        const SLICE: Duration = Duration::from_millis(10);
        let deadline = crate::timer::deadline_after(Instant::now(), timeout);
        while !done() {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorKind::TimedOut,
                    format!("the awaited condition did not become true within {timeout:?}"),
                ));
            }
            // Queued work runs at the start of the iteration and may make `done()` true:
            // then the iteration must not go on to block in the poller.
            let wait = if self.inner.has_ready_work() {
                Duration::ZERO
            } else {
                (deadline - now).min(SLICE)
            };
            self.iterate(wait)?;
        }
        Ok(())
    }

    /// Number of pending timers (diagnostics and leak tests).
    pub fn pending_timers(&self) -> usize {
        self.inner.timers.queue.borrow().len()
    }

    /// Number of descriptors registered with the poller (diagnostics and leak tests).
    pub fn registered_sources(&self) -> usize {
        self.inner.registry.len()
    }

    /// Number of open connections (diagnostics and leak tests).
    pub fn open_connections(&self) -> usize {
        self.inner.connections.get()
    }
}

impl Scheduler for Reactor {
    fn now(&self) -> Instant {
        Instant::now()
    }

    #[track_caller]
    fn call_at_boxed(&self, when: Instant, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.timers.schedule(
            when,
            Job {
                f,
                origin: Location::caller(),
            },
        )
    }
}

impl Reactor {
    /// The reactor's monotonic time (asyncio's `loop.time()`).
    pub fn time(&self) -> Instant {
        Instant::now()
    }
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("running", &self.running())
            .field("pending_timers", &self.pending_timers())
            .field("open_connections", &self.open_connections())
            .finish()
    }
}
