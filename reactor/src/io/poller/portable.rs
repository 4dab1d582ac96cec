//! The portable backend: the `polling` crate (epoll, kqueue, event ports, IOCP) in
//! level-triggered mode.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use polling::{Event, PollMode};

use super::{Ready, Trigger};

pub(super) const FORGETS_ON_CLOSE: bool = false;

/// Every registration here is level-triggered: one that wants nothing is taken out.
pub(super) const EMPTY_EDGE_HEARS_FAILURE: bool = false;

pub(super) struct Events(polling::Events);

impl Events {
    pub(super) fn with_capacity(capacity: usize) -> Events {
        Events(polling::Events::with_capacity(
            NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
        ))
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.0.iter().map(|e| Ready {
            key: e.key,
            readable: e.readable,
            writable: e.writable,
            closed: e.is_interrupt(),
        })
    }
}

pub(super) struct Poller(polling::Poller);

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        polling::Poller::new().map(Poller)
    }

    /// # Safety
    /// `fd` stays open until deleted (polling's I/O-safety contract).
    pub(super) unsafe fn add(
        &self,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        let mode = self.mode(trigger);
        // SAFETY: the caller keeps `fd` open until `delete`.
        unsafe {
            let fd = BorrowedFd::borrow_raw(fd);
            self.0
                .add_with_mode(&fd, Event::new(key, read, write), mode)
        }
    }

    pub(super) fn modify(
        &self,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        let mode = self.mode(trigger);
        // SAFETY: a registered fd is open until deleted.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.0
            .modify_with_mode(fd, Event::new(key, read, write), mode)
    }

    /// Always level: `polling` does not report a half-close (`EPOLLRDHUP`) on its
    /// own, which an edge-triggered owner needs to read on to the end of file after a
    /// short read. An owner that asked for edges works the same with levels.
    fn mode(&self, trigger: Trigger) -> PollMode {
        let _ = trigger;
        PollMode::Level
    }

    pub(super) fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: the caller deletes before closing.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.0.delete(fd)
    }

    pub(super) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.0.clear();
        self.0.wait(&mut events.0, timeout).map(|_| ())
    }

    pub(super) fn notify(&self) -> io::Result<()> {
        self.0.notify()
    }
}
