//! Rust futures on the reactor: [`Reactor::spawn`], [`Reactor::run_until_complete`],
//! [`sleep`] and [`timeout`].
//!
//! Tasks live in a slab on the reactor. A task's waker, called on the reactor's thread,
//! only appends the task to a thread-local ready queue (no lock, no syscall); called from
//! another thread, it goes through the reactor's [`Remote`] queue, which wakes the poller.
//! Each loop iteration polls the tasks that were ready when it reached them (a task that
//! wakes itself runs again on the next iteration, so tasks cannot starve I/O), each poll
//! under `catch_unwind`. The "queued" flag that makes repeated wakes cheap is cleared
//! *before* the task is polled, so a wake that arrives during the poll is never lost.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use slab::Slab;

use crate::callback::guard;
use crate::deferred::{Deferred, DeferredError};
use crate::error::{Error, ErrorKind};
use crate::reactor::Reactor;
use crate::remote::Remote;
use crate::timer::{DelayedCall, Scheduler, SchedulerExt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TaskId {
    key: usize,
    generation: u64,
}

thread_local! {
    /// Tasks woken on this thread, waiting for the next drain.
    static READY: RefCell<VecDeque<TaskId>> = const { RefCell::new(VecDeque::new()) };
    /// A number naming this thread (0 = not assigned yet); no destructor, so always there.
    static THREAD_TOKEN: Cell<u64> = const { Cell::new(0) };
}

static NEXT_THREAD_TOKEN: AtomicU64 = AtomicU64::new(1);

fn thread_token() -> u64 {
    THREAD_TOKEN.with(|t| {
        if t.get() == 0 {
            t.set(NEXT_THREAD_TOKEN.fetch_add(1, Ordering::Relaxed));
        }
        t.get()
    })
}

fn push_ready(id: TaskId) {
    // Fails only while the thread ends; the task is going away with its reactor.
    let _ = READY.try_with(|q| q.borrow_mut().push_back(id));
}

struct TaskWaker {
    id: TaskId,
    owner: u64,
    queued: AtomicBool,
    remote: Remote,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, Ordering::AcqRel) {
            return; // already queued
        }
        if thread_token() == self.owner {
            push_ready(self.id);
        } else {
            let id = self.id;
            // Refused only once the reactor is gone, and the task with it.
            let _ = self.remote.call_from_thread(move || push_ready(id));
        }
    }
}

type BoxedTask = Pin<Box<dyn Future<Output = ()>>>;

struct Slot {
    generation: u64,
    /// `None` while the task is being polled.
    future: Option<BoxedTask>,
    waker: Waker,
    flag: Arc<TaskWaker>,
}

/// The reactor's tasks (a field of the reactor; see the module notes).
#[derive(Default)]
pub(crate) struct Executor {
    tasks: RefCell<Slab<Slot>>,
    next_generation: Cell<u64>,
}

impl Executor {
    /// Whether a task is waiting to be polled (the loop must not block then).
    pub(crate) fn has_ready(&self) -> bool {
        READY.try_with(|q| !q.borrow().is_empty()).unwrap_or(false)
    }

    /// Polls the tasks that are ready now; tasks woken meanwhile wait for the next call.
    pub(crate) fn run_ready(&self) {
        let count = READY.try_with(|q| q.borrow().len()).unwrap_or(0);
        for _ in 0..count {
            let Some(id) = READY
                .try_with(|q| q.borrow_mut().pop_front())
                .ok()
                .flatten()
            else {
                break;
            };
            self.poll_task(id);
        }
    }

    fn poll_task(&self, id: TaskId) {
        let taken = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(id.key) {
                Some(slot) if slot.generation == id.generation => slot
                    .future
                    .take()
                    .map(|f| (f, slot.waker.clone(), Arc::clone(&slot.flag))),
                _ => None,
            }
        };
        let Some((mut future, waker, flag)) = taken else {
            return; // finished or cancelled since it was woken
        };
        // Before polling: a wake during the poll must queue the task again.
        flag.queued.store(false, Ordering::Release);
        let mut cx = Context::from_waker(&waker);
        let polled = guard(|| future.as_mut().poll(&mut cx));
        let finished = match polled {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(())) => true,
            Err(msg) => {
                // Task futures catch their own panics; this is a last resort.
                log::error!("a task panicked outside its guard: {msg}; the reactor goes on");
                true
            }
        };
        let leftover = {
            let mut tasks = self.tasks.borrow_mut();
            let ours = tasks
                .get(id.key)
                .is_some_and(|s| s.generation == id.generation);
            if !ours {
                Some(future) // cancelled while it ran
            } else if finished {
                drop(tasks.remove(id.key));
                Some(future)
            } else {
                if let Some(slot) = tasks.get_mut(id.key) {
                    slot.future = Some(future);
                }
                None
            }
        };
        drop(leftover); // outside the borrow: dropping a future runs user code
    }

    fn insert(&self, future: BoxedTask, remote: Remote) -> TaskId {
        let generation = self.next_generation.get();
        self.next_generation.set(generation.wrapping_add(1));
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let id = TaskId {
            key: entry.key(),
            generation,
        };
        let flag = Arc::new(TaskWaker {
            id,
            owner: thread_token(),
            queued: AtomicBool::new(true),
            remote,
        });
        entry.insert(Slot {
            generation,
            future: Some(future),
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        });
        drop(tasks);
        push_ready(id);
        id
    }

    fn cancel(&self, id: TaskId) {
        let slot = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get(id.key) {
                Some(s) if s.generation == id.generation => Some(tasks.remove(id.key)),
                _ => None,
            }
        };
        drop(slot); // drops the future (if not being polled right now) outside the borrow
    }

    /// Number of live tasks.
    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }
}

/// Spawns `fut` on `reactor`; `finish` turns its output (or panic message) into the
/// Deferred's result.
pub(crate) fn spawn_at<F, T, E, M>(
    reactor: &Reactor,
    fut: F,
    origin: &'static Location<'static>,
    finish: M,
) -> Deferred<T, E>
where
    F: Future + 'static,
    T: 'static,
    E: DeferredError,
    M: FnOnce(Result<F::Output, String>) -> Result<T, E> + 'static,
{
    let (d, resolver) = Deferred::<T, E>::new_at(origin);
    let task = async move {
        let mut fut = std::pin::pin!(fut);
        let out = std::future::poll_fn(|cx| match guard(|| fut.as_mut().poll(cx)) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(msg) => Poll::Ready(Err(msg)),
        })
        .await;
        resolver.resolve_quiet(finish(out));
    };
    let executor = Rc::clone(&reactor.inner.tasks);
    let id = executor.insert(Box::pin(task), reactor.remote());
    let weak: Weak<Executor> = Rc::downgrade(&executor);
    d.set_canceller(move |_| {
        if let Some(executor) = weak.upgrade() {
            executor.cancel(id);
        }
    });
    d
}

impl Reactor {
    /// Runs `fut` as a task on this reactor and returns a [`Deferred`] of its output.
    ///
    /// The task is first polled on the next loop iteration (never inside `spawn`). The
    /// future need not be `Send`: it never leaves this thread. If it panics, the Deferred
    /// fails with [`ErrorKind::Panicked`] and the reactor goes on. Cancelling the Deferred
    /// drops the future: a [`sleep`] in it cancels its timer, a Deferred it was awaiting is
    /// cancelled. Dropping the Deferred does not stop the task.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::{Reactor, sleep};
    ///
    /// let reactor = Reactor::current();
    /// let task = reactor.spawn(async {
    ///     sleep(Duration::from_millis(5)).await;
    ///     6 * 7
    /// });
    /// // A callback chain can wait for a task, and a task can await a Deferred.
    /// let doubled = task.map(|n| n * 2);
    /// let answer = reactor.run_until_complete(async move { doubled.await }).unwrap();
    /// assert_eq!(answer.unwrap(), 84);
    /// ```
    #[track_caller]
    pub fn spawn<F>(&self, fut: F) -> Deferred<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let origin = Location::caller();
        spawn_at(self, fut, origin, move |out| {
            out.map_err(|msg| {
                Error::new(
                    ErrorKind::Panicked,
                    format!("the task spawned at {origin} panicked: {msg}"),
                )
            })
        })
    }

    /// Runs the reactor (like [`run`](Reactor::run), startup and shutdown included) until
    /// `fut` completes, and returns its output: asyncio's `run_until_complete`, Twisted's
    /// `react`.
    ///
    /// Errors: [`ErrorKind::AlreadyRunning`] when called while the reactor runs (from a
    /// callback or task: spawn the future and await or chain its Deferred instead);
    /// [`ErrorKind::Panicked`] if the future panicked; [`ErrorKind::Cancelled`] if the
    /// reactor was stopped (say by SIGINT) before the future completed (the future is
    /// dropped); an [`ErrorKind::Io`] error if the poller failed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::{Reactor, sleep};
    ///
    /// let reactor = Reactor::current();
    /// let out = reactor.run_until_complete(async {
    ///     sleep(Duration::from_millis(1)).await;
    ///     "done"
    /// });
    /// assert_eq!(out.unwrap(), "done");
    /// ```
    #[track_caller]
    pub fn run_until_complete<F>(&self, fut: F) -> Result<F::Output, Error>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        if self.running() {
            return Err(Error::new(
                ErrorKind::AlreadyRunning,
                "run_until_complete() called while the reactor is running; \
                 spawn the future and await its Deferred instead",
            ));
        }
        let task = self.spawn(fut);
        let cancel = task.clone_canceller();
        type Outcome<T> = Rc<RefCell<Option<Result<T, Error>>>>;
        let slot: Outcome<F::Output> = Rc::new(RefCell::new(None));
        let active = Rc::new(Cell::new(true));
        let (s, a) = (Rc::clone(&slot), Rc::clone(&active));
        task.on_result(move |result| {
            *s.borrow_mut() = Some(result);
            if a.get() {
                let _ = Reactor::current().stop();
            }
        });
        let ran = self.run();
        active.set(false);
        let result = slot.borrow_mut().take();
        match (result, ran) {
            (Some(result), _) => result,
            (None, Err(err)) => {
                cancel();
                Err(err)
            }
            (None, Ok(())) => {
                cancel();
                Err(Error::new(
                    ErrorKind::Cancelled,
                    "the reactor stopped before the future given to run_until_complete() completed",
                ))
            }
        }
    }

    /// Number of tasks spawned on this reactor that have not completed (diagnostics and
    /// leak tests).
    pub fn pending_tasks(&self) -> usize {
        self.inner.tasks.len()
    }
}

/// A future that completes `duration` after it was created: [`sleep`] / [`sleep_on`].
/// Dropping it cancels its timer.
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    state: Rc<SleepState>,
    call: DelayedCall,
}

#[derive(Default)]
struct SleepState {
    fired: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

/// A future that completes after `duration` on this thread's reactor (asyncio's
/// `asyncio.sleep`). The timer starts when `sleep` is called; dropping the future cancels it.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{Reactor, sleep};
///
/// Reactor::current()
///     .run_until_complete(sleep(Duration::from_millis(1)))
///     .unwrap();
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    sleep_on(&Reactor::current(), duration)
}

/// Like [`sleep`], on the time of `scheduler` (a [`Clock`](crate::Clock) in tests).
#[track_caller]
pub fn sleep_on(scheduler: &dyn Scheduler, duration: Duration) -> Sleep {
    let state = Rc::new(SleepState::default());
    let s = Rc::clone(&state);
    let call = scheduler.call_later(duration, move || {
        s.fired.set(true);
        if let Some(waker) = s.waker.take() {
            waker.wake();
        }
    });
    Sleep { state, call }
}

impl Sleep {
    /// Whether the time has come.
    pub fn is_elapsed(&self) -> bool {
        self.state.fired.get()
    }
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("elapsed", &self.is_elapsed())
            .field("call", &self.call)
            .finish()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.get() {
            return Poll::Ready(());
        }
        self.state.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if !self.state.fired.get() {
            let _ = self.call.cancel();
        }
    }
}

/// A future that gives up on another after a while: [`timeout`] / [`timeout_on`].
#[must_use = "a Timeout does nothing unless awaited"]
pub struct Timeout<F> {
    future: Pin<Box<F>>,
    sleep: Sleep,
    after: Duration,
}

/// Awaits `fut` for at most `duration` on this thread's reactor: `Ok(output)`, or an
/// [`ErrorKind::TimedOut`] error (then `fut` is dropped with the `Timeout`).
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::{ErrorKind, Reactor, sleep, timeout};
///
/// let out = Reactor::current()
///     .run_until_complete(timeout(Duration::from_millis(5), sleep(Duration::from_secs(60))))
///     .unwrap();
/// assert!(matches!(out.unwrap_err().kind(), ErrorKind::TimedOut));
/// ```
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, fut: F) -> Timeout<F> {
    timeout_on(&Reactor::current(), duration, fut)
}

/// Like [`timeout`], on the time of `scheduler` (a [`Clock`](crate::Clock) in tests).
#[track_caller]
pub fn timeout_on<F: Future>(scheduler: &dyn Scheduler, duration: Duration, fut: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(fut),
        sleep: sleep_on(scheduler, duration),
        after: duration,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = this.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::new(
                ErrorKind::TimedOut,
                format!("timed out after {:?}", this.after),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F> std::fmt::Debug for Timeout<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("after", &self.after)
            .field("elapsed", &self.sleep.is_elapsed())
            .finish()
    }
}
