//! [`Lock`]: one holder at a time (Twisted's `DeferredLock`, asyncio's `Lock`), and the
//! [`LockGuard`] the holder keeps.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::semaphore::{Acquire, Permit, Semaphore};
use crate::defer::deferred::{Deferred, DeferredError};

/// A lock for code that waits (a Twisted `DeferredLock`, an asyncio `Lock`): one holder at
/// a time, the others served in the order they asked. It guards no data itself; it
/// serialises work, typically work that spans several awaits or callbacks (a request on a
/// shared connection, a file being rewritten).
///
/// From async code, [`acquire`](Lock::acquire) returns a future of a [`LockGuard`]; from
/// callbacks, [`acquire_deferred`](Lock::acquire_deferred) a Deferred of one, and
/// [`run`](Lock::run) runs a function returning a Deferred under the lock. The lock is
/// released when the guard is dropped. Cancellation-safe as [`Semaphore`] is (a lock is a
/// semaphore with one permit). Cloning gives another handle to the same lock.
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use torsion_reactor::{Lock, Reactor, defer_later, gather};
///
/// let reactor = Reactor::current();
/// let lock = Lock::new();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// // Callbacks, Twisted style: each job runs alone, in the order they were queued, even
/// // though the first one takes the longest.
/// let jobs: Vec<_> = [30, 10, 20]
///     .into_iter()
///     .map(|ms| {
///         let log = log.clone();
///         lock.run(move || {
///             log.borrow_mut().push(format!("start {ms}"));
///             defer_later(&Reactor::current(), Duration::from_millis(ms), move || ms)
///                 .inspect(move |_| log.borrow_mut().push(format!("end {ms}")))
///         })
///     })
///     .collect();
/// let done = reactor.run_until_complete(gather(jobs)).unwrap().unwrap();
/// assert_eq!(done, [30, 10, 20]);
/// assert_eq!(
///     *log.borrow(),
///     ["start 30", "end 30", "start 10", "end 10", "start 20", "end 20"]
/// );
///
/// // The same with async.
/// let lock2 = lock.clone();
/// reactor
///     .run_until_complete(async move {
///         let _guard = lock2.acquire().await;
///         assert!(lock2.is_locked());
///     })
///     .unwrap();
/// assert!(!lock.is_locked(), "dropping the guard released it");
/// ```
#[derive(Clone)]
pub struct Lock {
    sem: Semaphore,
}

/// Holds a [`Lock`]; dropping it releases the lock to the next waiter.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    _permit: Permit,
}

impl Default for Lock {
    #[track_caller]
    fn default() -> Self {
        Lock::new()
    }
}

impl Lock {
    /// An unlocked lock.
    #[track_caller]
    pub fn new() -> Lock {
        Lock {
            sem: Semaphore::new(1),
        }
    }

    /// The lock at once if it is free and nobody waits for it, else `None`.
    pub fn try_acquire(&self) -> Option<LockGuard> {
        self.sem.try_acquire().map(|p| LockGuard { _permit: p })
    }

    /// Waits for the lock (a future of its guard). The place in line is taken by this call.
    /// Dropping the future gives the place up, or passes the lock on if it had just been
    /// granted.
    pub fn acquire(&self) -> LockAcquire {
        LockAcquire {
            inner: self.sem.acquire(),
        }
    }

    /// Waits for the lock, as a Deferred of its guard (Twisted's `DeferredLock.acquire`).
    #[track_caller]
    pub fn acquire_deferred(&self) -> Deferred<LockGuard> {
        self.sem
            .acquire_deferred()
            .map(|p| LockGuard { _permit: p })
    }

    /// Runs `f` under the lock and releases it when `f`'s Deferred fires (Twisted's
    /// `DeferredLock.run`): the way to serialise callback chains.
    #[track_caller]
    pub fn run<T, E, F>(&self, f: F) -> Deferred<T, E>
    where
        T: 'static,
        E: DeferredError,
        F: FnOnce() -> Deferred<T, E> + 'static,
    {
        self.sem.run(f)
    }

    /// Whether someone holds the lock (or it was just granted to a waiter).
    pub fn is_locked(&self) -> bool {
        self.sem.available_permits() == 0
    }

    /// Waiters in line (diagnostics).
    pub fn waiting(&self) -> usize {
        self.sem.waiting()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.is_locked())
            .field("waiting", &self.waiting())
            .finish()
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// The future of [`Lock::acquire`]: a [`LockGuard`].
#[must_use = "futures do nothing unless awaited; dropping this one gives up its place in line"]
#[derive(Debug)]
pub struct LockAcquire {
    inner: Acquire,
}

impl Future for LockAcquire {
    type Output = LockGuard;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<LockGuard> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|p| LockGuard { _permit: p })
    }
}
