//! [`cooperate`] and [`Cooperator`]: long iterations in small slices, so the loop stays
//! responsive (Twisted's `task.cooperate` and its "longex" pattern).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::defer::deferred::{Deferred, Resolver};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;
use crate::event_loop::callback::guard;
use crate::time::{DelayedCall, Scheduler, SchedulerExt};

/// Default time a [`Cooperator`] works per slice before yielding to the loop.
pub const DEFAULT_TIME_SLICE: Duration = Duration::from_millis(10);

/// Where a [`CooperativeTask`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Its iterator is stepped in every slice.
    Running,
    /// Paused (as many times as it says); `resume` as often to run again.
    Paused(u32),
    /// The iterator is exhausted.
    Done,
    /// Stopped by [`CooperativeTask::stop`] or [`Cooperator::stop`].
    Stopped,
    /// The iterator panicked.
    Failed,
}

type Step = Box<dyn FnMut() -> bool>;

struct TaskInner {
    /// Advances the iterator; false once exhausted. Taken out while it runs.
    step: Cell<Option<Step>>,
    state: Cell<TaskState>,
    in_queue: Cell<bool>,
    failure: RefCell<Option<String>>,
    waiters: RefCell<Vec<Resolver<()>>>,
    coop: Weak<CoopInner>,
    origin: &'static Location<'static>,
}

struct CoopInner {
    scheduler: Rc<dyn Scheduler>,
    slice: Cell<Duration>,
    max_steps: Cell<usize>,
    tick_delay: Cell<Duration>,
    queue: RefCell<VecDeque<Rc<TaskInner>>>,
    live: RefCell<Vec<Rc<TaskInner>>>,
    tick: RefCell<Option<DelayedCall>>,
}

/// Runs iterators a little at a time: each slice steps the running tasks round-robin,
/// one item each in turn, until [its time](Cooperator::set_time_slice) or
/// [step budget](Cooperator::set_max_steps) is spent, then schedules the next slice with
/// a timer, so I/O and other callbacks run between slices.
///
/// The time slice is measured on the real clock (it is about CPU time); the slices are
/// scheduled on the Cooperator's scheduler (a [`Clock`](crate::Clock) in tests: there,
/// set a nonzero [tick delay](Cooperator::set_tick_delay) and a step budget, and advance
/// the clock one tick delay per slice).
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_reactor::{Cooperator, Reactor};
///
/// let reactor = Reactor::current();
/// let coop = Cooperator::new();
/// let total = Rc::new(Cell::new(0u64));
/// let t = total.clone();
/// let task = coop.cooperate((1..=100_000u64).map(move |i| t.set(t.get() + i)));
/// let done = reactor.run_until_complete(task.when_done()).unwrap();
/// assert!(done.is_ok());
/// assert_eq!(total.get(), 5_000_050_000);
/// ```
#[derive(Clone)]
pub struct Cooperator {
    inner: Rc<CoopInner>,
}

impl Default for Cooperator {
    fn default() -> Self {
        Cooperator::new()
    }
}

impl Cooperator {
    /// A cooperator on this thread's reactor, with [`DEFAULT_TIME_SLICE`] slices.
    pub fn new() -> Cooperator {
        Cooperator::with_scheduler(Reactor::current())
    }

    /// A cooperator whose slices are scheduled on `scheduler`.
    pub fn with_scheduler<S: Scheduler + 'static>(scheduler: S) -> Cooperator {
        Cooperator {
            inner: Rc::new(CoopInner {
                scheduler: Rc::new(scheduler),
                slice: Cell::new(DEFAULT_TIME_SLICE),
                max_steps: Cell::new(usize::MAX),
                tick_delay: Cell::new(Duration::ZERO),
                queue: RefCell::new(VecDeque::new()),
                live: RefCell::new(Vec::new()),
                tick: RefCell::new(None),
            }),
        }
    }

    /// How long one slice may work (default [`DEFAULT_TIME_SLICE`]); at least one item is
    /// processed per slice.
    pub fn set_time_slice(&self, slice: Duration) {
        self.inner.slice.set(slice);
    }

    /// The most items one slice processes, over all tasks (default: unlimited).
    pub fn set_max_steps(&self, steps: usize) {
        self.inner.max_steps.set(steps.max(1));
    }

    /// The delay between slices (default zero: the next loop iteration).
    pub fn set_tick_delay(&self, delay: Duration) {
        self.inner.tick_delay.set(delay);
    }

    /// Starts working through `iter` (its items are dropped; the work is in producing
    /// them). The first slice runs from the loop, never inside this call.
    #[track_caller]
    pub fn cooperate<I>(&self, iter: I) -> CooperativeTask
    where
        I: Iterator + 'static,
    {
        let mut iter = iter;
        let task = Rc::new(TaskInner {
            step: Cell::new(Some(Box::new(move || iter.next().is_some()))),
            state: Cell::new(TaskState::Running),
            in_queue: Cell::new(false),
            failure: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            coop: Rc::downgrade(&self.inner),
            origin: Location::caller(),
        });
        self.inner.live.borrow_mut().push(Rc::clone(&task));
        self.inner.enqueue(&task);
        CooperativeTask { inner: task }
    }

    /// Stops every task of this cooperator (their `when_done` Deferreds fail with
    /// [`ErrorKind::Cancelled`]).
    pub fn stop(&self) {
        let live = std::mem::take(&mut *self.inner.live.borrow_mut());
        for task in live {
            let _ = CooperativeTask { inner: task }.stop();
        }
    }

    /// Number of tasks neither finished nor stopped (paused ones included).
    pub fn tasks(&self) -> usize {
        self.inner.live.borrow().len()
    }
}

impl CoopInner {
    fn enqueue(self: &Rc<Self>, task: &Rc<TaskInner>) {
        if !task.in_queue.replace(true) {
            self.queue.borrow_mut().push_back(Rc::clone(task));
        }
        self.schedule();
    }

    fn schedule(self: &Rc<Self>) {
        if self.tick.borrow().is_some() || self.queue.borrow().is_empty() {
            return;
        }
        let this = Rc::clone(self);
        let call = self
            .scheduler
            .call_later(self.tick_delay.get(), move || this.tick());
        *self.tick.borrow_mut() = Some(call);
    }

    fn tick(self: &Rc<Self>) {
        let old = self.tick.borrow_mut().take();
        drop(old);
        let started = Instant::now();
        let slice = self.slice.get();
        let max = self.max_steps.get();
        let mut steps = 0;
        while steps < max {
            let next = self.queue.borrow_mut().pop_front();
            let Some(task) = next else { break };
            task.in_queue.set(false);
            if task.state.get() != TaskState::Running {
                continue; // paused or stopped while queued
            }
            let Some(mut step) = task.step.take() else {
                continue;
            };
            let outcome = guard(&mut step);
            steps += 1;
            match outcome {
                Ok(true) => match task.state.get() {
                    TaskState::Running => {
                        task.step.set(Some(step));
                        self.enqueue_quiet(&task);
                    }
                    TaskState::Paused(_) => task.step.set(Some(step)),
                    _ => drop(step), // stopped from inside its own step
                },
                Ok(false) => {
                    drop(step);
                    self.finish(&task, TaskState::Done);
                }
                Err(msg) => {
                    drop(step);
                    *task.failure.borrow_mut() = Some(msg);
                    self.finish(&task, TaskState::Failed);
                }
            }
            if started.elapsed() >= slice {
                break;
            }
        }
        self.schedule();
    }

    fn enqueue_quiet(&self, task: &Rc<TaskInner>) {
        if !task.in_queue.replace(true) {
            self.queue.borrow_mut().push_back(Rc::clone(task));
        }
    }

    fn finish(&self, task: &Rc<TaskInner>, state: TaskState) {
        if matches!(
            task.state.get(),
            TaskState::Done | TaskState::Stopped | TaskState::Failed
        ) {
            return;
        }
        task.state.set(state);
        self.live.borrow_mut().retain(|t| !Rc::ptr_eq(t, task));
        let waiters = std::mem::take(&mut *task.waiters.borrow_mut());
        for resolver in waiters {
            resolver.resolve_quiet(task.outcome());
        }
    }
}

impl TaskInner {
    fn outcome(&self) -> Result<(), Error> {
        match self.state.get() {
            TaskState::Done => Ok(()),
            TaskState::Failed => Err(Error::new(
                ErrorKind::Panicked,
                format!(
                    "the iterator given to cooperate() at {} panicked: {}",
                    self.origin,
                    self.failure.borrow().as_deref().unwrap_or("?")
                ),
            )),
            _ => Err(Error::new(
                ErrorKind::Cancelled,
                format!(
                    "the cooperative task started at {} was stopped",
                    self.origin
                ),
            )),
        }
    }
}

/// A task of a [`Cooperator`]: wait for it, pause, resume or stop it.
pub struct CooperativeTask {
    inner: Rc<TaskInner>,
}

impl CooperativeTask {
    /// Where the task stands.
    pub fn state(&self) -> TaskState {
        self.inner.state.get()
    }

    /// A Deferred that fires when the iterator is exhausted (`Ok(())`), or fails when the
    /// task is stopped ([`ErrorKind::Cancelled`]) or its iterator panics
    /// ([`ErrorKind::Panicked`]). Each call gives a new Deferred.
    #[track_caller]
    pub fn when_done(&self) -> Deferred<()> {
        match self.state() {
            TaskState::Running | TaskState::Paused(_) => {
                let (d, resolver) = Deferred::new_at(Location::caller());
                self.inner.waiters.borrow_mut().push(resolver);
                d
            }
            _ => Deferred::resolved(self.inner.outcome()),
        }
    }

    /// Pauses the task (pauses nest: as many `resume`s undo them).
    ///
    /// Error: [`ErrorKind::NotRunning`] if the task has finished or was stopped.
    pub fn pause(&self) -> Result<(), Error> {
        let next = match self.state() {
            TaskState::Running => TaskState::Paused(1),
            TaskState::Paused(n) => TaskState::Paused(n.saturating_add(1)),
            _ => return Err(self.ended("pause")),
        };
        self.inner.state.set(next);
        Ok(())
    }

    /// Undoes one [`pause`](CooperativeTask::pause).
    ///
    /// Errors: [`ErrorKind::InvalidInput`] if the task is not paused;
    /// [`ErrorKind::NotRunning`] if it has finished or was stopped.
    pub fn resume(&self) -> Result<(), Error> {
        match self.state() {
            TaskState::Paused(1) => {
                self.inner.state.set(TaskState::Running);
                if let Some(coop) = self.inner.coop.upgrade() {
                    coop.enqueue(&self.inner);
                }
                Ok(())
            }
            TaskState::Paused(n) => {
                self.inner.state.set(TaskState::Paused(n - 1));
                Ok(())
            }
            TaskState::Running => Err(Error::new(
                ErrorKind::InvalidInput,
                "resume() called on a cooperative task that is not paused",
            )),
            _ => Err(self.ended("resume")),
        }
    }

    /// Stops the task: its iterator is dropped and its `when_done` Deferreds fail with
    /// [`ErrorKind::Cancelled`].
    ///
    /// Error: [`ErrorKind::NotRunning`] if the task has finished or was stopped.
    pub fn stop(&self) -> Result<(), Error> {
        if matches!(
            self.state(),
            TaskState::Done | TaskState::Stopped | TaskState::Failed
        ) {
            return Err(self.ended("stop"));
        }
        let step = self.inner.step.take();
        drop(step);
        match self.inner.coop.upgrade() {
            Some(coop) => coop.finish(&self.inner, TaskState::Stopped),
            None => {
                self.inner.state.set(TaskState::Stopped);
                let waiters = std::mem::take(&mut *self.inner.waiters.borrow_mut());
                for resolver in waiters {
                    resolver.resolve_quiet(self.inner.outcome());
                }
            }
        }
        Ok(())
    }

    fn ended(&self, action: &str) -> Error {
        Error::new(
            ErrorKind::NotRunning,
            format!(
                "cannot {action} the cooperative task started at {}: it is {:?}",
                self.inner.origin,
                self.state()
            ),
        )
    }
}

impl fmt::Debug for CooperativeTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CooperativeTask")
            .field("origin", &self.inner.origin)
            .field("state", &self.state())
            .finish()
    }
}

impl fmt::Debug for Cooperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cooperator")
            .field("tasks", &self.tasks())
            .field("time_slice", &self.inner.slice.get())
            .finish()
    }
}

thread_local! {
    static DEFAULT: RefCell<Option<Cooperator>> = const { RefCell::new(None) };
}

/// Works through `iter` in slices on this thread's default [`Cooperator`] (on the reactor,
/// [`DEFAULT_TIME_SLICE`] slices): Twisted's `task.cooperate`.
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_reactor::{Reactor, cooperate};
///
/// let reactor = Reactor::current();
/// let ticks = Rc::new(Cell::new(0));
/// let t = ticks.clone();
/// let task = cooperate((0..1000).map(move |_| t.set(t.get() + 1)));
/// reactor.run_until_complete(task.when_done()).unwrap().unwrap();
/// assert_eq!(ticks.get(), 1000);
/// ```
#[track_caller]
pub fn cooperate<I: Iterator + 'static>(iter: I) -> CooperativeTask {
    let coop = DEFAULT.with(|d| d.borrow_mut().get_or_insert_with(Cooperator::new).clone());
    coop.cooperate(iter)
}
