//! [`Clock`]: deterministic time for tests (Twisted's `task.Clock`).

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::timer::{DelayedCall, Job, TimeSource, Timers};
use super::{Scheduler, SchedulerExt};
use crate::event_loop::{Reactor, callback};

/// A [`Scheduler`] whose time moves only when a test says so.
///
/// Time starts at an arbitrary fixed `Instant` and moves with [`advance`](Clock::advance);
/// each advance runs the calls that have come due, in deadline order (FIFO among equal
/// deadlines). While a call runs, the clock reads that call's deadline, so calls it
/// schedules land where they would on a real reactor and run within the same advance if
/// they are due: `advance(3 s)` does exactly what three `advance(1 s)` do. (Twisted's
/// `task.Clock` jumps to the end first, so there the step size changes the outcome.)
/// Cloning gives another handle to the same clock.
///
/// After each call, the callbacks of the Deferreds it fired (and the tasks it woke) run
/// too, when no reactor loop is running on this thread: a test that drives a Deferred with
/// a `Clock` sees its result without running the reactor. `call_soon` on a clock runs the
/// callback at the next `advance` (a callback that schedules itself again runs once per
/// advance, never in a loop).
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use torsion_reactor::Clock;
///
/// let clock = Clock::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// for (name, secs) in [("b", 2), ("a", 1), ("c", 3)] {
///     let log = log.clone();
///     clock.call_later(Duration::from_secs(secs), move || log.borrow_mut().push(name));
/// }
/// clock.pump(&[Duration::from_secs(1); 3]);
/// assert_eq!(*log.borrow(), ["a", "b", "c"]);
/// ```
#[derive(Clone)]
pub struct Clock {
    timers: Rc<Timers>,
    start: Instant,
    soon: Rc<RefCell<Vec<Job>>>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A new clock at its starting time, with nothing scheduled.
    pub fn new() -> Clock {
        let start = Instant::now();
        Clock {
            timers: Timers::new(TimeSource::Manual(Cell::new(start))),
            start,
            soon: Rc::default(),
        }
    }

    fn set_now(&self, now: Instant) {
        if let TimeSource::Manual(cell) = &self.timers.time {
            cell.set(now);
        }
    }

    /// Moves time forward by `amount` and runs every call that is due. A call that panics is
    /// logged like on the reactor, and the rest still run.
    pub fn advance(&self, amount: Duration) {
        let start = self.timers.now();
        let end = super::timer::deadline_after(start, amount);
        let reactor = Reactor::current_if_alive();
        let settle = || {
            if let Some(reactor) = &reactor {
                reactor.inner.run_pending_outside_loop();
            }
        };
        // The next turn: what `call_soon` queued before this advance.
        let soon = std::mem::take(&mut *self.soon.borrow_mut());
        for job in soon {
            callback::run_job(job);
            settle();
        }
        loop {
            // One at a time, so calls scheduled by a running call run too, if due.
            let next = self.timers.queue.borrow_mut().pop_due_at(end);
            let Some((deadline, job)) = next else { break };
            self.set_now(deadline.max(start));
            callback::run_job(job);
            settle();
        }
        self.set_now(end);
    }

    /// A shared handle to this clock as a [`Scheduler`], for code that keeps one
    /// (`Rc<dyn Scheduler>`).
    pub fn scheduler(&self) -> Rc<dyn Scheduler> {
        Rc::new(self.clone())
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

    /// Advances by each amount in turn, running due calls after each step.
    pub fn pump(&self, amounts: &[Duration]) {
        for &amount in amounts {
            self.advance(amount);
        }
    }

    /// Time elapsed on this clock since it was created.
    pub fn elapsed(&self) -> Duration {
        self.timers.now() - self.start
    }

    /// How many calls are pending.
    pub fn pending(&self) -> usize {
        self.timers.queue.borrow().len() + self.soon.borrow().len()
    }

    /// When the next pending call is due, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.queue.borrow_mut().next_deadline()
    }
}

impl Scheduler for Clock {
    fn now(&self) -> Instant {
        self.timers.now()
    }

    #[track_caller]
    fn call_at_boxed(&self, when: Instant, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.timers.schedule(
            when,
            Job {
                f,
                origin: Location::caller(),
            },
        )
    }

    #[track_caller]
    fn call_soon_boxed(&self, f: Box<dyn FnOnce()>) {
        self.soon.borrow_mut().push(Job {
            f,
            origin: Location::caller(),
        });
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("elapsed", &self.elapsed())
            .field("pending", &self.pending())
            .finish()
    }
}
