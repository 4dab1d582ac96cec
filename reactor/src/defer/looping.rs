//! [`LoopingCall`]: call a function every interval (Twisted's `task.LoopingCall`), including
//! functions that return a Deferred or a future: the next call then waits for it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::defer::deferred::{Deferred, Resolver};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;
use crate::event_loop::callback::guard;
use crate::time::timer::deadline_after;
use crate::time::{DelayedCall, Scheduler, SchedulerExt};

/// The function: done when it returns, or when the Deferred it returns fires.
enum Body {
    Now(Box<dyn FnMut(u64) -> Result<(), Error>>),
    Later(Box<dyn FnMut(u64) -> Deferred<()>>),
}

struct Inner {
    /// Taken out while it runs.
    f: Cell<Option<Body>>,
    scheduler: RefCell<Option<Rc<dyn Scheduler>>>,
    interval: Cell<Duration>,
    /// The grid the calls are anchored to: `start + k * interval`.
    start: Cell<Option<Instant>>,
    /// When the function last ran (Twisted's `_realLastTime`).
    last: Cell<Option<Instant>>,
    now_at_start: Cell<bool>,
    running: Cell<bool>,
    /// A call's Deferred has not fired yet: the next call waits for it (and a `stop` meanwhile
    /// fires the loop's Deferred only once it has).
    in_call: Cell<bool>,
    /// Bumped by every start and stop; a timer from an earlier run does nothing.
    epoch: Cell<u64>,
    call: RefCell<Option<DelayedCall>>,
    done: RefCell<Option<Resolver<()>>>,
    calls: Cell<u64>,
    origin: &'static Location<'static>,
}

/// Calls a function every `interval` on the reactor's time, or a [`Clock`](crate::Clock)'s
/// in tests (Twisted's `task.LoopingCall`). Cloning gives another handle to the same loop.
///
/// The calls are anchored to the start time: they are due at `start + k × interval`.
/// When a call overran (or the process was suspended) the intervals missed are skipped,
/// not replayed, and the next call is told how many intervals went by since the previous
/// one (Twisted's `withCount`): 1 normally, more after an overrun. If the function returns
/// an error (or panics) the loop stops and its Deferred fails with that error;
/// [`stop`](LoopingCall::stop) fires the Deferred with `Ok(())`.
///
/// A running loop is kept alive by its timer: dropping the handles does not stop it.
///
/// On a [`Clock`](crate::Clock) each call runs at its own deadline, so intervals are
/// skipped only when a call itself takes long; below, the second call "takes" 2.5 s.
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use torsion_reactor::{Clock, LoopingCall};
///
/// let clock = Clock::new();
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let (s, c) = (seen.clone(), clock.clone());
/// let lc = LoopingCall::with_count(move |intervals| {
///     s.borrow_mut().push(intervals);
///     if s.borrow().len() == 2 {
///         c.advance(Duration::from_millis(2500)); // a slow call: from t=1 s to t=3.5 s
///     }
///     Ok(())
/// });
/// let _done = lc.start_on(clock.clone(), Duration::from_secs(1), true).unwrap(); // t=0
/// clock.advance(Duration::from_secs(5));
/// // Calls at t=0, 1, 4 (2 and 3 were skipped: 3 intervals since the last call), 5.
/// assert_eq!(*seen.borrow(), [1, 1, 3, 1]);
/// lc.stop().unwrap();
/// ```
#[derive(Clone)]
pub struct LoopingCall {
    inner: Rc<Inner>,
}

/// What a loop's function may return: nothing (the loop goes on), or a `Result` (an error
/// stops the loop and fails its Deferred).
pub trait LoopOutcome {
    /// `Err` stops the loop.
    fn into_result(self) -> Result<(), Error>;
}

impl LoopOutcome for () {
    fn into_result(self) -> Result<(), Error> {
        Ok(())
    }
}

impl LoopOutcome for Result<(), Error> {
    fn into_result(self) -> Result<(), Error> {
        self
    }
}

impl LoopingCall {
    /// A loop that calls `f` (not started yet). `f` returns nothing, or a `Result` whose
    /// error stops the loop.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use torsion_reactor::{Clock, LoopingCall};
    ///
    /// let clock = Clock::new();
    /// let ticks = Rc::new(Cell::new(0));
    /// let t = ticks.clone();
    /// let lc = LoopingCall::new(move || t.set(t.get() + 1));
    /// let _done = lc.start_on(clock.clone(), Duration::from_secs(1), false).unwrap();
    /// clock.advance(Duration::from_secs(3));
    /// assert_eq!(ticks.get(), 3);
    /// ```
    #[track_caller]
    pub fn new<F, R>(mut f: F) -> LoopingCall
    where
        F: FnMut() -> R + 'static,
        R: LoopOutcome,
    {
        LoopingCall::build(
            Body::Now(Box::new(move |_| f().into_result())),
            Location::caller(),
        )
    }

    /// A loop that calls `f` with the number of intervals that went by since the previous
    /// call (or since the start): 1 when on time, more when calls were skipped.
    #[track_caller]
    pub fn with_count<F, R>(mut f: F) -> LoopingCall
    where
        F: FnMut(u64) -> R + 'static,
        R: LoopOutcome,
    {
        LoopingCall::build(
            Body::Now(Box::new(move |n| f(n).into_result())),
            Location::caller(),
        )
    }

    /// A loop whose function returns a Deferred: the next call is scheduled only once it has
    /// fired, at the first interval boundary after that (Twisted's behaviour: a call that
    /// finishes at 2.5 s with a 1 s interval is followed by one at 3 s). An error stops the
    /// loop, as for [`new`](LoopingCall::new). [`stop`](LoopingCall::stop) during a call
    /// lets it finish: the loop's Deferred fires when the call's does.
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc, time::{Duration, Instant}};
    /// use torsion_reactor::{Clock, LoopingCall, Scheduler, defer_later};
    ///
    /// let clock = Clock::new();
    /// let t0 = clock.now();
    /// let starts = Rc::new(RefCell::new(Vec::new()));
    /// let (s, c) = (starts.clone(), clock.clone());
    /// let lc = LoopingCall::new_deferred(move || {
    ///     s.borrow_mut().push(c.now() - t0);
    ///     defer_later(&c, Duration::from_millis(1500), || ()) // each call takes 1.5 s
    /// });
    /// let _done = lc.start_on(clock.clone(), Duration::from_secs(1), true).unwrap();
    /// clock.advance(Duration::from_secs(5));
    /// let secs: Vec<f64> = starts.borrow().iter().map(|d| d.as_secs_f64()).collect();
    /// assert_eq!(secs, [0.0, 2.0, 4.0]); // never overlapping, on the 1 s grid
    /// ```
    #[track_caller]
    pub fn new_deferred<F>(mut f: F) -> LoopingCall
    where
        F: FnMut() -> Deferred<()> + 'static,
    {
        LoopingCall::build(Body::Later(Box::new(move |_| f())), Location::caller())
    }

    /// A loop whose function returns a future, run as a task on this thread's reactor: the
    /// next call waits for it, as with [`new_deferred`](LoopingCall::new_deferred). Stopping
    /// the loop does not cancel a call in progress.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use torsion_reactor::{LoopingCall, Reactor, sleep};
    ///
    /// let reactor = Reactor::current();
    /// let (busy, overlaps, calls) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
    /// let (b, o, n) = (busy.clone(), overlaps.clone(), calls.clone());
    /// let lc = LoopingCall::new_async(move || {
    ///     let (b, o, n) = (b.clone(), o.clone(), n.clone());
    ///     async move {
    ///         if b.replace(true) {
    ///             o.set(o.get() + 1);
    ///         }
    ///         sleep(Duration::from_millis(3)).await; // longer than the interval
    ///         b.set(false);
    ///         n.set(n.get() + 1);
    ///         Ok(())
    ///     }
    /// });
    /// let done = lc.start(Duration::from_millis(1), true).unwrap();
    /// reactor.run_until(Duration::from_secs(5), || calls.get() >= 3).unwrap();
    /// lc.stop().unwrap();
    /// reactor.run_until_complete(done).unwrap().unwrap();
    /// assert_eq!(overlaps.get(), 0);
    /// ```
    #[track_caller]
    pub fn new_async<F, Fut>(mut f: F) -> LoopingCall
    where
        F: FnMut() -> Fut + 'static,
        Fut: Future<Output = Result<(), Error>> + 'static,
    {
        let origin = Location::caller();
        LoopingCall::build(
            Body::Later(Box::new(move |_| {
                crate::defer::executor::spawn_at(&Reactor::current(), f(), origin, move |out| {
                    match out {
                        Ok(result) => result,
                        Err(msg) => Err(Error::new(
                            ErrorKind::Panicked,
                            format!(
                                "the future of the LoopingCall created at {origin} panicked: {msg}"
                            ),
                        )),
                    }
                })
            })),
            origin,
        )
    }

    fn build(f: Body, origin: &'static Location<'static>) -> LoopingCall {
        LoopingCall {
            inner: Rc::new(Inner {
                f: Cell::new(Some(f)),
                scheduler: RefCell::new(None),
                interval: Cell::new(Duration::ZERO),
                start: Cell::new(None),
                last: Cell::new(None),
                now_at_start: Cell::new(false),
                running: Cell::new(false),
                in_call: Cell::new(false),
                epoch: Cell::new(0),
                call: RefCell::new(None),
                done: RefCell::new(None),
                calls: Cell::new(0),
                origin,
            }),
        }
    }

    /// Starts calling every `interval` on this thread's reactor; with `now`, the first
    /// call happens at once (inside `start`), otherwise one interval from now. Returns the
    /// Deferred that fires when the loop stops.
    ///
    /// An interval of zero calls the function once per loop iteration.
    ///
    /// Error: [`ErrorKind::AlreadyRunning`] if the loop is running.
    pub fn start(&self, interval: Duration, now: bool) -> Result<Deferred<()>, Error> {
        self.start_on(Reactor::current(), interval, now)
    }

    /// Like [`start`](LoopingCall::start), on the time of `scheduler` (a
    /// [`Clock`](crate::Clock) in tests; with a `Clock`, do not use a zero interval:
    /// `advance` would run it forever).
    pub fn start_on<S: Scheduler + 'static>(
        &self,
        scheduler: S,
        interval: Duration,
        now: bool,
    ) -> Result<Deferred<()>, Error> {
        let inner = &self.inner;
        if inner.running.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                format!(
                    "the LoopingCall created at {} is already running",
                    inner.origin
                ),
            ));
        }
        if inner.in_call.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                format!(
                    "the LoopingCall created at {} was stopped but its last call has not \
                     finished; start it again once the Deferred from start() has fired",
                    inner.origin
                ),
            ));
        }
        let scheduler: Rc<dyn Scheduler> = Rc::new(scheduler);
        let (d, resolver) = Deferred::<()>::new_at(inner.origin);
        let old = inner.done.replace(Some(resolver));
        drop(old);
        inner.running.set(true);
        inner.epoch.set(inner.epoch.get() + 1);
        inner.interval.set(interval);
        inner.start.set(Some(scheduler.now()));
        inner.last.set(None);
        inner.now_at_start.set(now);
        let old = inner.scheduler.replace(Some(scheduler));
        drop(old);
        if now {
            self.fire();
        } else {
            self.schedule_from(None);
        }
        Ok(d)
    }

    /// Stops the loop: cancels the next call and fires the Deferred from `start` with
    /// `Ok(())` (once the call in progress, if its Deferred has not fired yet, has
    /// finished). May be called from inside the function.
    ///
    /// Error: [`ErrorKind::NotRunning`] if the loop is not running.
    pub fn stop(&self) -> Result<(), Error> {
        if !self.inner.running.get() {
            return Err(Error::new(
                ErrorKind::NotRunning,
                format!(
                    "the LoopingCall created at {} is not running",
                    self.inner.origin
                ),
            ));
        }
        if self.inner.in_call.get() {
            // The call in progress finishes first (see `after_call`).
            let inner = &self.inner;
            inner.running.set(false);
            inner.epoch.set(inner.epoch.get() + 1);
            return Ok(());
        }
        self.finish(Ok(()));
        Ok(())
    }

    /// Restarts the grid from now: the next call is one interval from now.
    ///
    /// Error: [`ErrorKind::NotRunning`] if the loop is not running.
    pub fn reset(&self) -> Result<(), Error> {
        let inner = &self.inner;
        if !inner.running.get() {
            return Err(Error::new(
                ErrorKind::NotRunning,
                format!(
                    "cannot reset the LoopingCall created at {}: it is not running",
                    inner.origin
                ),
            ));
        }
        let now = match inner.scheduler.borrow().as_ref() {
            Some(s) => s.now(),
            None => return Ok(()),
        };
        inner.start.set(Some(now));
        inner.last.set(Some(now));
        if inner.in_call.get() {
            return Ok(()); // the call in progress schedules the next one, on the new grid
        }
        if let Some(call) = inner.call.borrow_mut().take() {
            let _ = call.cancel();
        }
        inner.epoch.set(inner.epoch.get() + 1);
        self.schedule_from(None);
        Ok(())
    }

    /// Whether the loop is running.
    pub fn running(&self) -> bool {
        self.inner.running.get()
    }

    /// The interval of the current (or last) run.
    pub fn interval(&self) -> Duration {
        self.inner.interval.get()
    }

    /// How many times the function has been called, over every run.
    pub fn call_count(&self) -> u64 {
        self.inner.calls.get()
    }

    fn finish(&self, result: Result<(), Error>) {
        let inner = &self.inner;
        inner.running.set(false);
        inner.epoch.set(inner.epoch.get() + 1);
        let call = inner.call.borrow_mut().take();
        if let Some(call) = call {
            let _ = call.cancel();
        }
        let done = inner.done.borrow_mut().take();
        if let Some(resolver) = done {
            resolver.resolve_quiet(result);
        }
    }

    fn interval_of(&self, t: Instant) -> u128 {
        let inner = &self.inner;
        let start = inner.start.get().unwrap_or(t);
        let interval = inner.interval.get().as_nanos();
        if interval == 0 {
            return 0;
        }
        t.saturating_duration_since(start).as_nanos() / interval
    }

    /// The timer fired (or `start(now = true)`): run the function once, then schedule the
    /// next call.
    fn fire(&self) {
        let inner = &self.inner;
        let epoch = inner.epoch.get();
        let Some(now) = inner.scheduler.borrow().as_ref().map(|s| s.now()) else {
            return;
        };
        let count = if inner.interval.get().is_zero() {
            1
        } else {
            let last = match inner.last.get() {
                Some(t) => self.interval_of(t) as i128,
                // Before the first call, count from the start (one interval earlier when the
                // first call is immediate, so that it counts 1).
                None if inner.now_at_start.get() => -1,
                None => 0,
            };
            (self.interval_of(now) as i128 - last).max(0)
        };
        if count > 0 {
            inner.last.set(Some(now));
            let Some(mut f) = inner.f.take() else {
                return; // running already (cannot happen: calls come from the loop)
            };
            inner.calls.set(inner.calls.get() + 1);
            let count = u64::try_from(count).unwrap_or(u64::MAX);
            let outcome = match &mut f {
                Body::Now(f) => guard(|| f(count)).map(Ok),
                Body::Later(f) => guard(|| f(count)).map(Err),
            };
            inner.f.set(Some(f));
            let panicked = |msg: String| {
                Error::new(
                    ErrorKind::Panicked,
                    format!(
                        "the function of the LoopingCall created at {} panicked: {msg}",
                        inner.origin
                    ),
                )
            };
            let failed = match outcome {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(err))) => Some(err),
                Ok(Err(pending)) => {
                    self.wait_for_call(pending, epoch);
                    return;
                }
                Err(msg) => Some(panicked(msg)),
            };
            if let Some(err) = failed {
                if inner.running.get() && inner.epoch.get() == epoch {
                    self.finish(Err(err));
                }
                return;
            }
        }
        // Stopped or restarted by the function: that start scheduled its own calls.
        if inner.running.get() && inner.epoch.get() == epoch {
            let after = inner.scheduler.borrow().as_ref().map(|s| s.now());
            self.schedule_from(after);
        }
    }

    /// The function returned a Deferred: the next call is scheduled once it fires.
    fn wait_for_call(&self, pending: Deferred<()>, epoch: u64) {
        self.inner.in_call.set(true);
        let this = self.clone();
        pending.on_result(move |result| this.after_call(result, epoch));
    }

    fn after_call(&self, result: Result<(), Error>, epoch: u64) {
        let inner = &self.inner;
        inner.in_call.set(false);
        let current = inner.epoch.get() == epoch && inner.running.get();
        match result {
            Err(err) if current || inner.done.borrow().is_some() => self.finish(Err(err)),
            Err(_) => {}
            Ok(()) if current => {
                let now = inner.scheduler.borrow().as_ref().map(|s| s.now());
                self.schedule_from(now);
            }
            // Stopped during the call: the loop's Deferred fires now.
            Ok(()) if !inner.running.get() => self.finish(Ok(())),
            Ok(()) => {} // restarted meanwhile: that start scheduled its own calls
        }
    }

    /// Schedules the next call at the first grid point after `when` (default: now).
    fn schedule_from(&self, when: Option<Instant>) {
        let inner = &self.inner;
        let Some(scheduler) = inner.scheduler.borrow().clone() else {
            return;
        };
        let now = when.unwrap_or_else(|| scheduler.now());
        let interval = inner.interval.get();
        let deadline = if interval.is_zero() {
            now
        } else {
            let start = inner.start.get().unwrap_or(now);
            let next = self.interval_of(now) + 1;
            let offset = interval.as_nanos().saturating_mul(next);
            let secs = u64::try_from(offset / 1_000_000_000).unwrap_or(u64::MAX);
            let nanos = (offset % 1_000_000_000) as u32;
            deadline_after(start, Duration::new(secs, nanos))
        };
        let this = self.clone();
        let epoch = inner.epoch.get();
        let call = scheduler.call_at(deadline, move || {
            if this.inner.running.get() && this.inner.epoch.get() == epoch {
                this.inner.call.borrow_mut().take();
                this.fire();
            }
        });
        let old = inner.call.borrow_mut().replace(call);
        drop(old);
    }
}

impl fmt::Debug for LoopingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopingCall")
            .field("origin", &self.inner.origin)
            .field("running", &self.running())
            .field("interval", &self.interval())
            .field("calls", &self.call_count())
            .finish()
    }
}
