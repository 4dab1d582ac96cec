//! Running and stopping: `run`, `stop`, `iterate`, `run_until`, the graceful shutdown, and
//! closing a reactor for good.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::triggers::{Phase, SystemEvent};
use super::{Inner, Reactor, State, callback};
use crate::error::{Error, ErrorKind};
use crate::io::Wind;
use crate::time::timer::deadline_after;

/// Default time connections get to flush their write buffers when the reactor stops.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

impl Reactor {
    /// Runs the loop until [`stop`](Reactor::stop), then winds down: `Before`-shutdown
    /// triggers (and the Deferreds of [shutdown hooks](Reactor::add_shutdown_hook) waited
    /// for), listeners closed, connections flushed (up to the grace period) and closed,
    /// child processes given the same grace period to end (then killed, unless they were
    /// started to be left running: see [`OnReactorStop`](crate::OnReactorStop)),
    /// `connection_lost` delivered, then `During` and `After` triggers. A stopped reactor can
    /// run again.
    ///
    /// Errors: [`ErrorKind::AlreadyRunning`] if called while it runs or from inside one of
    /// its callbacks; [`ErrorKind::ReactorClosed`] after [`close`](Reactor::close); an
    /// [`ErrorKind::Io`] error if the OS poller fails; with
    /// [`set_fail_on_caught`](Reactor::set_fail_on_caught), the first caught panic.
    pub fn run(&self) -> Result<(), Error> {
        let inner = self.inner_open()?;
        if inner.state.get() != State::Idle || inner.dispatching.get() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "run() called while the reactor is already running",
            ));
        }
        inner.state.set(State::Running);
        inner.stop_requested.set(false);
        inner.abort_requested.set(false);
        inner.remote.serving_begin();
        let signals = inner.handle_signals.get();
        if signals {
            inner.signals.start_stopping_on_signals(&inner);
        }
        let mut result = inner.start_up();
        while result.is_ok() && !inner.stop_requested.get() {
            result = inner.iterate();
        }
        inner.state.set(State::Stopping);
        inner.shut_down();
        if signals {
            inner.signals.stop_stopping_on_signals();
        }
        inner.state.set(State::Idle);
        inner.stop_requested.set(false);
        inner.abort_requested.set(false);
        inner.remote.serving_end();
        result.and_then(|()| inner.take_failures())
    }

    /// Asks the loop to stop after the current iteration (then `run()` winds down and
    /// returns). Called again while winding down, it skips the rest of the grace period.
    ///
    /// Error: [`ErrorKind::NotRunning`] if the reactor is not running.
    pub fn stop(&self) -> Result<(), Error> {
        match self.inner.state.get() {
            State::Idle | State::Closed => Err(Error::new(
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

    /// Runs one loop iteration (ready callbacks, cross-thread calls, Deferred callbacks,
    /// tasks, gathered writes, one wait of at most `timeout` for I/O and its events, due
    /// timers). For tests and for embedding torsion in another loop.
    ///
    /// Errors: [`ErrorKind::AlreadyRunning`] from inside one of this reactor's callbacks
    /// (no nested loops); [`ErrorKind::ReactorClosed`]; an [`ErrorKind::Io`] error if the
    /// poller fails; with [`set_fail_on_caught`](Reactor::set_fail_on_caught), a panic
    /// caught during the iteration.
    pub fn iterate(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(Instant::now(), timeout);
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
    /// Errors: [`ErrorKind::TimedOut`] if `done()` was still false at the deadline; those
    /// of [`iterate`](Reactor::iterate).
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
        let deadline = deadline_after(Instant::now(), timeout);
        // Blocking calls from other threads are served while this runs.
        let _serving = Serving::begin(&self.inner);
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
}

/// Marks the reactor as being run for the life of a `run_until`.
struct Serving<'a>(&'a Inner);

impl<'a> Serving<'a> {
    fn begin(inner: &'a Inner) -> Serving<'a> {
        inner.remote.serving_begin();
        Serving(inner)
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        self.0.remote.serving_end();
    }
}

impl Inner {
    /// Startup triggers and `call_when_running` callbacks, before the first iteration.
    fn start_up(self: &Rc<Self>) -> Result<(), Error> {
        let entered = self.enter()?;
        self.triggers.fire(SystemEvent::Startup, Phase::Before);
        self.triggers.fire(SystemEvent::Startup, Phase::During);
        let when_running = std::mem::take(&mut *self.when_running.borrow_mut());
        for job in when_running {
            callback::run_job(job);
        }
        self.triggers.fire(SystemEvent::Startup, Phase::After);
        drop(entered);
        Ok(())
    }

    fn fire(self: &Rc<Self>, event: SystemEvent, phase: Phase) {
        match self.enter() {
            Ok(_entered) => self.triggers.fire(event, phase),
            Err(err) => log::error!("cannot run the {event:?}/{phase:?} triggers: {err}"),
        }
    }

    fn wind_down(self: &Rc<Self>, how: Wind) {
        for source in self.registry.all_sources() {
            source.wind_down(self, how);
        }
    }

    /// Stop accepting, let connections flush and children end up to the grace deadline,
    /// kill the children left and abort the connections left, and deliver every
    /// `connection_lost`.
    fn shut_down(self: &Rc<Self>) {
        self.fire(SystemEvent::Shutdown, Phase::Before);
        self.stop_requested.set(false);
        self.wait_for_shutdown_hooks();
        self.wind_down(Wind::Graceful);
        self.children.wind_down(Wind::Graceful);
        let deadline = deadline_after(Instant::now(), self.shutdown_grace.get());
        self.wake_at.set(Some(deadline));
        while (self.connections.get() > 0 || self.children.waiting() > 0)
            && !self.abort_requested.get()
            && Instant::now() < deadline
        {
            if let Err(err) = self.iterate() {
                if err.kind() != ErrorKind::Panicked {
                    log::error!("{err}");
                    break;
                }
                self.put_back_failure(err);
            }
        }
        self.wake_at.set(None);
        self.kill_children();
        if self.connections.get() > 0 {
            log::warn!(
                "{} connection(s) still open after the shutdown grace period; aborting them",
                self.connections.get()
            );
            self.wind_down(Wind::Abort);
        }
        self.deliver_remaining();
        self.fire(SystemEvent::Shutdown, Phase::During);
        self.fire(SystemEvent::Shutdown, Phase::After);
    }

    /// Runs the loop until the Deferreds of the shutdown hooks have fired (everything is
    /// still open meanwhile), or until `stop()` is called again.
    fn wait_for_shutdown_hooks(self: &Rc<Self>) {
        while self.triggers.holds() > 0 && !self.abort_requested.get() {
            if let Err(err) = self.iterate() {
                if err.kind() != ErrorKind::Panicked {
                    log::error!("{err}");
                    break;
                }
                self.put_back_failure(err);
            }
        }
    }

    /// Delivers `connection_lost` and what it queues, within reason, with zero-time waits.
    fn deliver_remaining(self: &Rc<Self>) {
        for _ in 0..64 {
            if !self.has_ready_work() {
                break;
            }
            self.stop_requested.set(true); // zero-timeout waits
            let result = self.iterate();
            self.stop_requested.set(false);
            match result {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::Panicked => self.put_back_failure(err),
                Err(_) => break,
            }
        }
    }

    /// Kills the children still running (but those to be left) and waits a little for
    /// them to be reaped, so that their `process_exited` is delivered and no zombie stays.
    fn kill_children(self: &Rc<Self>) {
        if self.children.waiting() == 0 {
            return;
        }
        self.children.wind_down(Wind::Abort);
        let deadline = deadline_after(Instant::now(), crate::process::KILL_WAIT);
        let previous = self.wake_at.replace(Some(deadline));
        while self.children.waiting() > 0 && Instant::now() < deadline {
            if let Err(err) = self.iterate() {
                if err.kind() != ErrorKind::Panicked {
                    log::error!("{err}");
                    break;
                }
                self.put_back_failure(err);
            }
        }
        self.wake_at.set(previous);
    }

    /// Keeps a test failure found while winding down for `run()` to return.
    fn put_back_failure(&self, err: Error) {
        if let Some(failures) = &mut *self.failures.borrow_mut() {
            failures.push(callback::Caught::new(
                callback::CaughtKind::Panic,
                "while shutting down",
                err.message().to_string(),
            ));
        }
    }

    /// Everything `Reactor::close` releases (the reactor is idle).
    pub(super) fn close(self: &Rc<Self>) {
        // Abort what is open and deliver its `connection_lost` while callbacks can run;
        // kill the children (but those to be left running) and reap them.
        if self.registry.len() > 0 || self.has_ready_work() {
            self.wind_down(Wind::Abort);
            self.kill_children();
            self.deliver_remaining();
        }
        self.state.set(State::Closed);
        self.children.clear();
        self.signals.clear();
        drop(self.registry.take_all());
        let watches = self.fd_watches.borrow_mut().clear();
        drop(watches);
        self.queues.clear();
        self.timers.clear();
        self.tasks.clear();
        self.when_running.borrow_mut().clear();
        self.threads.shut_down();
        self.remote.close();
        self.triggers.clear();
    }
}
