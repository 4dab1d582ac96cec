//! Time: the [`Scheduler`] trait that the reactor and the test [`Clock`](crate::Clock)
//! both implement, timers and [`DelayedCall`], and the futures that wait on time
//! ([`sleep`], [`timeout`]).

use std::rc::Rc;
use std::time::{Duration, Instant};

pub(crate) mod clock;
pub(crate) mod sleep;
pub(crate) mod timer;

pub use clock::Clock;
pub use sleep::{Sleep, Timeout, sleep, sleep_on, timeout, timeout_on};
pub use timer::{DelayedCall, delay_from_secs};

use timer::deadline_after;

/// Something that tells the time and runs callbacks later: the [`Reactor`](crate::Reactor)
/// in production, a [`Clock`](crate::Clock) in tests.
///
/// Write timeouts, retries and idle policies against this trait (generically or as
/// `Rc<dyn Scheduler>`) and they can be tested without sleeping. The generic helpers
/// (`call_later`, `call_at`) come from [`SchedulerExt`]; [`Reactor`](crate::Reactor) and
/// [`Clock`](crate::Clock) also have them as inherent methods.
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_reactor::{Clock, Scheduler, SchedulerExt};
///
/// fn arm(s: &dyn Scheduler, fired: Rc<Cell<bool>>) {
///     s.call_later(Duration::from_secs(30), move || fired.set(true));
/// }
///
/// let clock = Clock::new();
/// let fired = Rc::new(Cell::new(false));
/// arm(&clock, fired.clone());
/// clock.advance(Duration::from_secs(29));
/// assert!(!fired.get());
/// clock.advance(Duration::from_secs(1));
/// assert!(fired.get());
/// ```
pub trait Scheduler {
    /// The current monotonic time.
    fn now(&self) -> Instant;

    /// Schedules a boxed callback at `when`; the building block of the generic methods.
    #[track_caller]
    fn call_at_boxed(&self, when: Instant, f: Box<dyn FnOnce()>) -> DelayedCall;

    /// Runs a boxed callback on the next turn: the reactor's next iteration, or a
    /// [`Clock`](crate::Clock)'s next [`advance`](crate::Clock::advance) (so a callback
    /// that schedules itself again runs once per turn, never in a loop). The default
    /// schedules it at `now()`.
    #[track_caller]
    fn call_soon_boxed(&self, f: Box<dyn FnOnce()>) {
        let _ = self.call_at_boxed(self.now(), f);
    }
}

/// The convenient, generic side of [`Scheduler`], for every scheduler including
/// `&dyn Scheduler` and `Rc<dyn Scheduler>`.
pub trait SchedulerExt: Scheduler {
    /// Runs `f` once, `delay` from now. Equal deadlines run in the order they were scheduled.
    #[track_caller]
    fn call_later<F: FnOnce() + 'static>(&self, delay: Duration, f: F) -> DelayedCall {
        self.call_at_boxed(deadline_after(self.now(), delay), Box::new(f))
    }

    /// Runs `f` once at `when` (on the next timer pass if `when` has already passed).
    #[track_caller]
    fn call_at<F: FnOnce() + 'static>(&self, when: Instant, f: F) -> DelayedCall {
        self.call_at_boxed(when, Box::new(f))
    }

    /// Runs `f` on the next turn (see [`Scheduler::call_soon_boxed`]).
    #[track_caller]
    fn call_soon<F: FnOnce() + 'static>(&self, f: F) {
        self.call_soon_boxed(Box::new(f))
    }
}

impl<S: Scheduler + ?Sized> SchedulerExt for S {}

impl<S: Scheduler + ?Sized> Scheduler for Rc<S> {
    fn now(&self) -> Instant {
        (**self).now()
    }

    #[track_caller]
    fn call_at_boxed(&self, when: Instant, f: Box<dyn FnOnce()>) -> DelayedCall {
        (**self).call_at_boxed(when, f)
    }

    #[track_caller]
    fn call_soon_boxed(&self, f: Box<dyn FnOnce()>) {
        (**self).call_soon_boxed(f)
    }
}
