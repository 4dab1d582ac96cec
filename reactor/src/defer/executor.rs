//! Rust futures on the reactor: [`Reactor::spawn`] and [`Reactor::run_until_complete`].
//!
//! Tasks live in a table in the reactor. A task's waker, from any thread, appends the
//! task's key to the reactor's queue of woken tasks (and, from another thread, wakes the
//! poller); the loop's task phase polls the tasks that were woken before it began (a task
//! that wakes itself runs again next iteration, so tasks cannot starve I/O), each poll
//! under `catch_unwind`. The "queued" flag that makes repeated wakes cheap is cleared
//! *before* the task is polled, so a wake that arrives during the poll is never lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use crate::defer::deferred::{Deferred, DeferredError};
use crate::error::{Error, ErrorKind};
use crate::event_loop::callback::{self, guard};
use crate::event_loop::remote::RemoteShared;
use crate::event_loop::stats::Counters;
use crate::event_loop::{Inner, Reactor};
use crate::keyed::{Key, Keyed};
use crate::sync::TaskFlag;

thread_local! {
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

struct TaskWaker {
    key: Key,
    owner: u64,
    queued: TaskFlag,
    reactor: Arc<RemoteShared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.wake() {
            return; // already queued
        }
        self.reactor
            .wake_task(self.key, thread_token() != self.owner);
    }
}

type BoxedTask = Pin<Box<dyn Future<Output = ()>>>;

struct Slot {
    /// `None` while the task is being polled.
    future: Option<BoxedTask>,
    /// Where it was spawned (for the slow-callback warning).
    origin: &'static Location<'static>,
    waker: Waker,
    flag: Arc<TaskWaker>,
}

/// The reactor's tasks (a field of the reactor; see the module notes).
#[derive(Default)]
pub(crate) struct Executor {
    tasks: RefCell<Keyed<Slot>>,
}

impl Executor {
    /// Polls the task under `key` once, if it still exists.
    pub(crate) fn poll(&self, key: Key, stats: &Counters) {
        let taken = {
            let mut tasks = self.tasks.borrow_mut();
            tasks.get_mut(key).and_then(|slot| {
                let origin = slot.origin;
                slot.future
                    .take()
                    .map(|f| (f, slot.waker.clone(), Arc::clone(&slot.flag), origin))
            })
        };
        let Some((mut future, waker, flag, origin)) = taken else {
            return; // finished or cancelled since it was woken
        };
        // Before polling: a wake during the poll must queue the task again.
        flag.queued.clear();
        let mut cx = Context::from_waker(&waker);
        let started = stats.start();
        let polled = guard(|| future.as_mut().poll(&mut cx));
        stats.finish(started, || {
            format!("a poll of the task spawned at {origin}")
        });
        let finished = match polled {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(())) => true,
            Err(msg) => {
                // Task futures catch their own panics; this is a last resort.
                callback::report_panic("a task (outside its guard)", None, msg);
                true
            }
        };
        let leftover = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key) {
                None => Some(future), // cancelled while it ran
                Some(_) if finished => {
                    drop(tasks.remove(key));
                    Some(future)
                }
                Some(slot) => {
                    slot.future = Some(future);
                    None
                }
            }
        };
        drop(leftover); // outside the borrow: dropping a future runs user code
    }

    fn insert(
        &self,
        future: BoxedTask,
        origin: &'static Location<'static>,
        reactor: &Arc<RemoteShared>,
    ) -> Key {
        let key = self.tasks.borrow_mut().insert_with(|key| {
            let flag = Arc::new(TaskWaker {
                key,
                owner: thread_token(),
                queued: TaskFlag::queued(),
                reactor: Arc::clone(reactor),
            });
            Slot {
                future: Some(future),
                origin,
                waker: Waker::from(Arc::clone(&flag)),
                flag,
            }
        });
        reactor.wake_task(key, false);
        key
    }

    fn cancel(&self, key: Key) {
        let slot = self.tasks.borrow_mut().remove(key);
        drop(slot); // drops the future (if not being polled right now) outside the borrow
    }

    /// Drops every task (the reactor is closing).
    pub(crate) fn clear(&self) {
        let tasks = std::mem::take(&mut *self.tasks.borrow_mut());
        drop(tasks);
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
    let inner = &reactor.inner;
    let key = inner.tasks.insert(Box::pin(task), origin, &inner.remote);
    let weak: Weak<Inner> = Rc::downgrade(inner);
    d.set_canceller(move |_| {
        if let Some(inner) = weak.upgrade() {
            inner.tasks.cancel(key);
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
    /// drops the future: a [`sleep`](crate::sleep) in it cancels its timer, a Deferred it
    /// was awaiting is cancelled. Dropping the Deferred does not stop the task.
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
    /// **It ends with the reactor's shutdown**, as `run` does once stopped: listening ports
    /// close, open connections flush and close, child processes are asked to end, and the
    /// shutdown triggers run, as Twisted's `react` stops its reactor (asyncio's
    /// `run_until_complete` leaves them open). So it suits a program's main, or a test; a server
    /// that keeps serving after some future completes spawns it
    /// ([`spawn`](Reactor::spawn)) and calls `run`.
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
        let inner = self.inner_open()?;
        if self.running() || inner.is_dispatching() {
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
        let (s, a, me) = (Rc::clone(&slot), Rc::clone(&active), self.clone());
        task.on_result(move |result| {
            *s.borrow_mut() = Some(result);
            if a.get() {
                let _ = me.stop();
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
