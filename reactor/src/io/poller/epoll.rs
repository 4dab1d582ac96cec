//! `epoll` through `libc`: one `epoll_wait` per wait, an `eventfd` for wake-ups that is
//! written only when no wake-up is pending, and never read (it is registered
//! edge-triggered, so each write is one report; the counter is reset in the unlikely case
//! it fills).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{Ready, Trigger};
use crate::sync::WakeFlag;

/// The key of the poller's own wake-up; registration tokens never take this value.
const NOTIFY_KEY: usize = usize::MAX;

pub(super) const FORGETS_ON_CLOSE: bool = true;

/// An edge-triggered registration that wants nothing (`EPOLLET` alone) still hears
/// `EPOLLHUP` and `EPOLLERR`, once each: kept in the poller, a paused connection learns
/// that its peer reset without being woken by the data it is not reading.
pub(super) const EMPTY_EDGE_HEARS_FAILURE: bool = true;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub(super) struct Events {
    list: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub(super) fn with_capacity(capacity: usize) -> Events {
        Events {
            list: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            len: 0,
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.list[..self.len]
            .iter()
            .filter(|e| e.u64 as usize != NOTIFY_KEY)
            .map(|e| {
                let bits = e.events as libc::c_int;
                let failed = bits & (libc::EPOLLHUP | libc::EPOLLERR) != 0;
                let closed = failed || bits & libc::EPOLLRDHUP != 0;
                Ready {
                    key: e.u64 as usize,
                    readable: failed
                        || bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) != 0,
                    writable: failed || bits & libc::EPOLLOUT != 0,
                    closed,
                }
            })
    }
}

pub(super) struct Poller {
    epoll: OwnedFd,
    wake: OwnedFd,
    /// A wake-up is on its way (see `WakeFlag`, checked by loom).
    notified: WakeFlag,
}

fn interest(read: bool, write: bool, trigger: Trigger) -> u32 {
    let mut bits = if trigger == Trigger::Edge {
        libc::EPOLLET
    } else {
        0
    };
    if read {
        bits |= libc::EPOLLIN;
        if trigger == Trigger::Edge {
            // A half-close that arrived with the last data is a flag on that same edge:
            // it tells the owner to read on to the end of file.
            bits |= libc::EPOLLRDHUP;
        }
    }
    if write {
        bits |= libc::EPOLLOUT;
    }
    bits as u32
}

impl Poller {
    pub(super) fn new() -> io::Result<Poller> {
        // SAFETY: plain system calls; each returned descriptor is owned at once.
        let epoll =
            unsafe { OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        // SAFETY: as above.
        let wake = unsafe {
            OwnedFd::from_raw_fd(check(libc::eventfd(
                0,
                libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
            ))?)
        };
        let poller = Poller {
            epoll,
            wake,
            notified: WakeFlag::new(),
        };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: NOTIFY_KEY as u64,
        };
        // SAFETY: both descriptors are open and owned by `poller`; `ev` is valid.
        check(unsafe {
            libc::epoll_ctl(
                poller.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                poller.wake.as_raw_fd(),
                &mut ev,
            )
        })?;
        Ok(poller)
    }

    fn ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: interest(read, write, trigger),
            u64: key as u64,
        };
        // SAFETY: `self.epoll` is open; `fd` is open (the caller's contract); `ev` is valid.
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// # Safety
    /// `fd` stays open until deleted or closed (see `Poller::add` in the parent module).
    pub(super) unsafe fn add(
        &self,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, key, read, write, trigger)
    }

    pub(super) fn modify(
        &self,
        fd: RawFd,
        key: usize,
        read: bool,
        write: bool,
        trigger: Trigger,
    ) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, key, read, write, trigger)
    }

    pub(super) fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, false, false, Trigger::Level)
    }

    pub(super) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: the buffer is valid for `list.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.list.as_mut_ptr(),
                events.list.len() as libc::c_int,
                ms,
            )
        };
        // Whatever woke us, a notify from now on must write again.
        self.notified.reset();
        match check(n) {
            Ok(n) => events.len = n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.len = 0,
            Err(e) => {
                events.len = 0;
                return Err(e);
            }
        }
        Ok(())
    }

    pub(super) fn notify(&self) -> io::Result<()> {
        if !self.notified.arm() {
            return Ok(()); // a wake-up is already on its way
        }
        let one: u64 = 1;
        loop {
            // SAFETY: writing 8 bytes from a valid u64 to our eventfd.
            let rc = unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
            if rc >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    // The counter is full (after 2^64-2 wakes): reset it and write again.
                    let mut buf = 0u64;
                    // SAFETY: reading 8 bytes into a valid u64 from our eventfd.
                    unsafe { libc::read(self.wake.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
                }
                _ => return Err(err),
            }
        }
    }
}
