//! The OS readiness interface, behind one small type: `epoll` used directly on Linux (one
//! system call per wait), the `polling` crate everywhere else (and on Linux with the
//! `portable-poller` feature, so both are tested).
//!
//! A registration is level-triggered, or edge-triggered where the backend supports it and
//! its owner asks (stream connections do: see `net/conn`); a key is the registration's
//! token.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use super::fault::{self, Op};

#[cfg(all(target_os = "linux", not(feature = "portable-poller")))]
mod epoll;
#[cfg(all(target_os = "linux", not(feature = "portable-poller")))]
use epoll as backend;

#[cfg(not(all(target_os = "linux", not(feature = "portable-poller"))))]
mod portable;
#[cfg(not(all(target_os = "linux", not(feature = "portable-poller"))))]
use portable as backend;

/// One readiness report.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) key: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer closed (its side or both) or the socket failed: reading will reach the
    /// end, so an edge-triggered owner reads on past a short read.
    pub(crate) closed: bool,
}

/// A reusable buffer of readiness reports.
pub(crate) struct Events {
    inner: backend::Events,
    /// Spurious and stale events the fault layer adds.
    #[cfg(feature = "fault-injection")]
    extra: Vec<Ready>,
}

impl Events {
    pub(crate) fn new() -> Events {
        Events {
            inner: backend::Events::with_capacity(1024),
            #[cfg(feature = "fault-injection")]
            extra: Vec::new(),
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.inner.iter()
    }

    #[cfg(feature = "fault-injection")]
    pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.inner.iter().chain(self.extra.iter().copied())
    }
}

/// How a registration reports readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// As long as the descriptor is ready (every wait reports it again).
    Level,
    /// When it becomes ready: the owner reads until the kernel has nothing more (a short
    /// read or `WouldBlock`) or comes back to it on its own. Level where the backend has no
    /// edge mode.
    Edge,
}

/// The poller: registrations keyed by token, a wait, and a thread-safe wake-up.
pub(crate) struct Poller(backend::Poller);

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        backend::Poller::new().map(Poller)
    }

    /// Starts watching `fd`.
    ///
    /// # Safety
    /// `fd` must stay open until [`Poller::delete`] is called for it, or until it is closed
    /// with [`Poller::forget_on_close`]'s guarantee.
    pub(crate) unsafe fn add(
        &self,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        fault::registered(key, fd);
        // SAFETY: passed on from the caller.
        fault::call(Op::Register, fd, || unsafe {
            self.0.add(fd, key, read, write, trigger)
        })
    }

    /// Changes what `fd` is watched for.
    pub(crate) fn modify(
        &self,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        fault::registered(key, fd);
        fault::call(Op::Register, fd, || {
            self.0.modify(fd, key, read, write, trigger)
        })
    }

    /// Stops watching `fd` (which must still be open).
    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.0.delete(fd)
    }

    /// Whether closing a descriptor that nothing else shares removes it from this poller by
    /// itself (epoll does), so `delete` before `close` can be skipped.
    pub(crate) fn forget_on_close(&self) -> bool {
        backend::FORGETS_ON_CLOSE
    }

    /// Whether a registration with `trigger` that wants nothing can stay in the poller and
    /// hear only that its descriptor failed or hung up, once (epoll's edges): otherwise
    /// it is deleted, because a level-triggered hang-up would be reported on every wait.
    pub(crate) fn keeps_idle(&self, trigger: Trigger) -> bool {
        trigger == Trigger::Edge && backend::EMPTY_EDGE_HEARS_FAILURE
    }

    /// Waits for readiness, up to `timeout` (`None`: until something happens).
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        #[cfg(feature = "fault-injection")]
        return crate::testing::faults::wait(&mut events.extra, timeout, |timeout| {
            self.0.wait(&mut events.inner, timeout)
        });
        #[cfg(not(feature = "fault-injection"))]
        self.0.wait(&mut events.inner, timeout)
    }

    /// Wakes a `wait` in progress (or makes the next one return at once). Thread-safe.
    pub(crate) fn notify(&self) -> io::Result<()> {
        self.0.notify()
    }
}
