//! One loop iteration, phase by phase (the order is documented in the module above).

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::{Inner, callback, stats};
use crate::defer::deferred::DRAIN_BUDGET;
use crate::error::{Error, ErrorKind};
use crate::io::Readiness;
use crate::io::poller::Events;

impl Inner {
    /// One loop iteration. Refused from inside one of this reactor's callbacks.
    pub(crate) fn iterate(self: &Rc<Self>) -> Result<(), Error> {
        let entered = self.enter()?;
        let began = Instant::now();
        self.turn.set(self.turn.get().wrapping_add(1));
        self.run_ready_callbacks();
        self.run_remote_calls();
        self.run_deferred_callbacks();
        self.poll_woken_tasks();
        self.flush_gathered_writes();
        let (polled, waited) = self.wait_and_dispatch_io();
        self.run_due_timers();
        drop(entered);
        self.stats.iteration(began.elapsed(), waited);
        polled?;
        self.take_failures()
    }

    /// Phase 1: the callbacks that were ready when the iteration began; callbacks they
    /// queue wait a turn.
    fn run_ready_callbacks(&self) {
        for _ in 0..self.queues.ready_len() {
            match self.queues.pop_ready() {
                Some(job) => self.run_job(job),
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
            self.stats.callback();
            let started = self.stats.start();
            callback::contain("a call_from_thread callback", None, job);
            self.stats
                .finish(started, || "a call_from_thread callback".to_string());
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
            self.stats.deferred();
            let started = self.stats.start();
            let origin = started.map(|_| item.created_at());
            callback::contain("running Deferred callbacks", None, move || item.run());
            self.stats.finish(started, || match origin {
                Some(origin) => format!("the callbacks of the Deferred created at {origin}"),
                None => "the callbacks of a Deferred".to_string(),
            });
        }
        ran
    }

    /// Phase 4: the tasks woken before this point, each polled once.
    pub(crate) fn poll_woken_tasks(&self) -> usize {
        let mut woken = Vec::new();
        self.remote.take_woken(&mut woken);
        let polled = woken.len();
        self.stats.task_polls(polled);
        for key in woken {
            self.tasks.poll(key, &self.stats);
        }
        polled
    }

    /// Phase 5: writes gathered for connections outside their own callbacks.
    fn flush_gathered_writes(&self) {
        for conn in self.queues.take_flush() {
            conn.flush_gathered();
        }
    }

    /// Phase 6: one wait for I/O, then every event to the source that owns it. Also
    /// returns how long the wait took.
    fn wait_and_dispatch_io(self: &Rc<Self>) -> (Result<(), Error>, Duration) {
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
        let wait_began = Instant::now();
        let waited = self.registry.poller.wait(&mut events, timeout);
        let wait_took = wait_began.elapsed();
        if let Err(err) = waited {
            self.events.set(Some(events));
            let err = Error::io("the reactor cannot wait for events", err);
            return (Err(err), wait_took);
        }
        let mut dispatched = 0;
        for ev in events.iter() {
            dispatched += 1;
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
            dispatched += 1;
            self.dispatch(key, readiness);
        }
        self.stats.io_events(dispatched);
        (Ok(()), wait_took)
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
            while let Some((deadline, job)) = queue.pop_due_at(now) {
                due.push((deadline, job));
            }
        }
        for (deadline, job) in due {
            // The lag: how late the loop came to the timer (not counting the timers
            // before it in this batch).
            self.stats.timer(now.saturating_duration_since(deadline));
            let origin = job.origin;
            let started = self.stats.start();
            callback::run_job(job);
            self.stats
                .finish(started, || stats::scheduled_at("a timer", origin));
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
