//! [`Semaphore`]: at most N holders at a time (Twisted's `DeferredSemaphore`, asyncio's
//! `Semaphore`), and the [`Permit`] a holder keeps.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::waiters::{Slot, WaitList, Waiter, grant_first};
use crate::defer::deferred::{Deferred, DeferredError};

struct State {
    /// Permits nobody holds (only ever non-zero while nobody waits).
    available: usize,
    waiters: WaitList<Permit>,
}

pub(crate) struct SemInner {
    state: RefCell<State>,
    origin: &'static Location<'static>,
}

/// Lets at most N holders in at a time, in the order they asked (FIFO, no barging: a
/// newcomer waits behind the line even if a permit was just released).
///
/// Usable from async code ([`acquire`](Semaphore::acquire) returns a future of a
/// [`Permit`]) and from callbacks ([`acquire_deferred`](Semaphore::acquire_deferred),
/// [`run`](Semaphore::run), as Twisted's `DeferredSemaphore`). A permit is released when it
/// is dropped. Cancellation-safe: a waiter that gives up (its future dropped, its Deferred
/// cancelled) leaves the line, and a permit granted to a waiter that is gone passes on to
/// the next one. Cloning gives another handle to the same semaphore. Single-threaded.
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_reactor::{Reactor, Semaphore, sleep};
///
/// let reactor = Reactor::current();
/// let sem = Semaphore::new(2);
/// let (busy, most) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
/// let tasks: Vec<_> = (0..6)
///     .map(|_| {
///         let (sem, busy, most) = (sem.clone(), busy.clone(), most.clone());
///         reactor.spawn(async move {
///             let _permit = sem.acquire().await;
///             busy.set(busy.get() + 1);
///             most.set(most.get().max(busy.get()));
///             sleep(Duration::from_millis(2)).await;
///             busy.set(busy.get() - 1);
///         })
///     })
///     .collect();
/// reactor.run_until_complete(torsion_reactor::gather(tasks)).unwrap().unwrap();
/// assert_eq!(most.get(), 2, "never more than two at once");
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemInner>,
}

/// A permit of a [`Semaphore`]: released (to the next waiter, if any) when dropped.
#[must_use = "the permit is released as soon as it is dropped"]
pub struct Permit {
    sem: Option<Rc<SemInner>>,
}

impl Permit {
    fn new(sem: &Rc<SemInner>) -> Permit {
        Permit {
            sem: Some(Rc::clone(sem)),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(sem) = self.sem.take() {
            release(&sem);
        }
    }
}

/// Passes a released permit to the first waiter, or puts it back.
fn release(sem: &Rc<SemInner>) {
    let permit = Permit::new(sem);
    if let Err(mut unused) = grant_first(|| sem.state.borrow_mut().waiters.next(), permit) {
        unused.sem = None; // back to the count, not released again
        sem.state.borrow_mut().available += 1;
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

impl Semaphore {
    /// A semaphore with `permits` permits (0 is allowed: nobody gets in until
    /// [`add_permits`](Semaphore::add_permits)).
    #[track_caller]
    pub fn new(permits: usize) -> Semaphore {
        Semaphore {
            inner: Rc::new(SemInner {
                state: RefCell::new(State {
                    available: permits,
                    waiters: WaitList::default(),
                }),
                origin: Location::caller(),
            }),
        }
    }

    /// A permit at once if one is free and nobody is waiting, else `None`.
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut st = self.inner.state.borrow_mut();
        if st.available > 0 && !st.waiters.has_waiters() {
            st.available -= 1;
            return Some(Permit::new(&self.inner));
        }
        None
    }

    /// Waits for a permit (a future). The place in line is taken now, by this call, not
    /// when the future is first polled. Dropping the future gives the place up, or passes on
    /// the permit if it had just been granted.
    pub fn acquire(&self) -> Acquire {
        let slot = match self.try_acquire() {
            Some(permit) => Slot::granted(permit),
            None => {
                let slot = Slot::waiting();
                self.push(Waiter::Task(Rc::clone(&slot)));
                slot
            }
        };
        Acquire { slot }
    }

    /// Waits for a permit, as a Deferred (Twisted's `DeferredSemaphore.acquire`).
    /// Cancelling it gives the place in line up; a permit in a Deferred that nobody takes is
    /// released when the Deferred is dropped.
    #[track_caller]
    pub fn acquire_deferred(&self) -> Deferred<Permit> {
        if let Some(permit) = self.try_acquire() {
            return Deferred::succeed(permit);
        }
        let (d, resolver) = Deferred::new();
        self.push(Waiter::Deferred(resolver));
        d
    }

    /// Runs `f` once a permit is held and releases it when `f`'s Deferred fires
    /// (Twisted's `DeferredSemaphore.run`): the way to limit concurrency from callbacks.
    /// If `f` panics, the result fails with [`ErrorKind::Panicked`](crate::ErrorKind) and the
    /// permit is released.
    #[track_caller]
    pub fn run<T, E, F>(&self, f: F) -> Deferred<T, E>
    where
        T: 'static,
        E: DeferredError,
        F: FnOnce() -> Deferred<T, E> + 'static,
    {
        self.acquire_deferred()
            .map_err(E::from)
            .and_then(move |permit| f().finally(move || drop(permit)))
    }

    /// Adds `n` permits: waiters get them first.
    pub fn add_permits(&self, n: usize) {
        for _ in 0..n {
            release(&self.inner);
        }
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.inner.state.borrow().available
    }

    /// Waiters in line (diagnostics).
    pub fn waiting(&self) -> usize {
        self.inner.state.borrow().waiters.len()
    }

    fn push(&self, waiter: Waiter<Permit>) {
        self.inner.state.borrow_mut().waiters.push(waiter);
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("origin", &self.inner.origin)
            .field("available", &self.available_permits())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// The future of [`Semaphore::acquire`]: a [`Permit`].
#[must_use = "futures do nothing unless awaited; dropping this one gives up its place in line"]
pub struct Acquire {
    slot: Rc<Slot<Permit>>,
}

impl Future for Acquire {
    type Output = Permit;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Permit> {
        self.slot.poll_take(cx)
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        // A permit granted but never taken goes to the next waiter (its drop releases it).
        drop(self.slot.abandon());
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acquire")
    }
}
