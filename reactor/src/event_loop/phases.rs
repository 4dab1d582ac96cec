//! One loop iteration, phase by phase (the order is documented in the module above).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Inner, callback};
use crate::defer::deferred::DRAIN_BUDGET;
use crate::error::{Error, ErrorKind};
use crate::io::Readiness;
use crate::io::poller::Events;

impl Inner {
    /// One loop iteration. Refused from inside one of this reactor's callbacks.
    pub(crate) fn iterate(self: &Rc<Self>) -> Result<(), Error> {
        let entered = self.enter()?;
        self.run_ready_callbacks();
        self.run_remote_calls();
        self.run_deferred_callbacks();
        self.poll_woken_tasks();
        self.flush_gathered_writes();
        let polled = self.wait_and_dispatch_io();
        self.run_due_timers();
        drop(entered);
        polled?;
        self.take_failures()
    }

    /// Phase 1: the callbacks that were ready when the iteration began; callbacks they
    /// queue wait a turn.
    fn run_ready_callbacks(&self) {
        for _ in 0..self.queues.ready_len() {
            match self.queues.pop_ready() {
                Some(job) => callback::run_job(job),
                None => break,
            }
        }
    }

    /// Phase 2: calls queued by other threads.
    fn run_remote_calls(&self) {
        if !self.remote.has_pending() {
            return;
        }
        let mut jobs = Vec::new();
        self.remote.take(&mut jobs);
        for job in jobs {
            callback::contain("a call_from_thread callback", None, job);
        }
    }

    /// Phase 3: the callbacks of fired Deferreds. A Deferred fired meanwhile joins this
    /// drain, up to the budget; the rest waits for the next iteration.
    pub(crate) fn run_deferred_callbacks(&self) -> usize {
        let mut ran = 0;
        while ran < DRAIN_BUDGET {
            let Some(item) = self.queues.pop_deferred() else {
                break;
            };
            ran += 1;
            callback::contain("running Deferred callbacks", None, move || item.run());
        }
        ran
    }

    /// Phase 4: the tasks woken before this point, each polled once.
    pub(crate) fn poll_woken_tasks(&self) -> usize {
        let mut woken = Vec::new();
        self.remote.take_woken(&mut woken);
        let polled = woken.len();
        for key in woken {
            self.tasks.poll(key);
        }
        polled
    }

    /// Phase 5: writes gathered for connections outside their own callbacks.
    fn flush_gathered_writes(&self) {
        for conn in self.queues.take_flush() {
            conn.flush_gathered();
        }
    }

    /// Phase 6: one wait for I/O, then every event to the source that owns it.
    fn wait_and_dispatch_io(self: &Rc<Self>) -> Result<(), Error> {
        // Interest changes first: one the poller refuses is reported to its source now,
        // and the callbacks that queues make the wait below a poll.
        self.registry.flush_interest(self);
        // A descriptor that is always ready (a file) must not wait behind a blocking poll.
        let timeout = if self.registry.has_emulated_ready() {
            Some(Duration::ZERO)
        } else {
            self.wait_timeout()
        };
        let mut events = self.events.take().unwrap_or_else(Events::new);
        if let Err(err) = self.registry.poller.wait(&mut events, timeout) {
            self.events.set(Some(events));
            return Err(Error::io("the reactor cannot wait for events", err));
        }
        for ev in events.iter() {
            self.dispatch(
                ev.key,
                Readiness {
                    readable: ev.readable,
                    writable: ev.writable,
                    closed: ev.closed,
                },
            );
        }
        self.events.set(Some(events));
        for (key, wants) in self.registry.emulated_ready() {
            let readiness = Readiness {
                readable: wants.read,
                writable: wants.write,
                closed: false,
            };
            self.dispatch(key, readiness);
        }
        Ok(())
    }

    fn dispatch(self: &Rc<Self>, key: usize, readiness: Readiness) {
        if let Some(source) = self.registry.source_for_token(key) {
            source.ready(self, readiness);
        }
    }

    /// Phase 7: every timer due now. All are collected before any runs: a timer re-armed
    /// with a zero delay from its own callback runs next iteration, not in a loop here.
    fn run_due_timers(&self) {
        let now = Instant::now();
        let mut due = Vec::new();
        {
            let mut queue = self.timers.queue.borrow_mut();
            while let Some(job) = queue.pop_due(now) {
                due.push(job);
            }
        }
        for job in due {
            callback::run_job(job);
        }
    }

    /// Whether callbacks, cross-thread calls, Deferreds, tasks or writes are waiting.
    pub(crate) fn has_ready_work(&self) -> bool {
        self.queues.has_work() || self.remote.has_pending() || self.remote.has_woken()
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

    /// With fail-on-caught on (tests): the panics and unhandled errors caught during the
    /// iteration, as one error.
    pub(crate) fn take_failures(&self) -> Result<(), Error> {
        let caught = match &mut *self.failures.borrow_mut() {
            Some(failures) if !failures.is_empty() => std::mem::take(failures),
            _ => return Ok(()),
        };
        let text: Vec<String> = caught.iter().map(ToString::to_string).collect();
        Err(Error::new(ErrorKind::Panicked, text.join("; ")))
    }

    /// Runs fired Deferreds and woken tasks now, when no loop is on the stack: what
    /// [`Clock::advance`](crate::Clock::advance) does after each call, so a test driving
    /// time with a `Clock` sees callbacks without running the reactor.
    pub(crate) fn run_pending_outside_loop(self: &Rc<Self>) {
        if self.dispatching.get() || self.is_closed() {
            return;
        }
        let Ok(entered) = self.enter() else { return };
        for _ in 0..1000 {
            if self.run_deferred_callbacks() + self.poll_woken_tasks() == 0 {
                break;
            }
        }
        drop(entered);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.get() == super::State::Closed
    }
}
