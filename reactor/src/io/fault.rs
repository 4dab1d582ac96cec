//! Where the reactor's system calls for connections, listeners, connects and the poller
//! can be made to fail: each hook takes the call as a closure. With the `fault-injection`
//! feature the hooks are those of [`testing::faults`](crate::testing::faults); without it
//! (every normal build) each is an `#[inline(always)]` function that makes the call and
//! nothing else, so the compiled code is the direct system call.

#[cfg(feature = "fault-injection")]
pub(crate) use crate::testing::faults::{Op, call, deregistered, read, registered, write};

#[cfg(not(feature = "fault-injection"))]
mod off {
    use std::io::{self, IoSlice};
    use std::os::fd::RawFd;

    /// The hooked calls (see `testing::faults::Op`, which exists with the feature).
    #[derive(Clone, Copy)]
    pub(crate) enum Op {
        Shutdown,
        Accept,
        Connect,
        Register,
    }

    #[inline(always)]
    pub(crate) fn read(
        _fd: RawFd,
        buf: &mut [u8],
        f: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        f(buf)
    }

    #[inline(always)]
    pub(crate) fn write(
        _fd: RawFd,
        bufs: &[IoSlice<'_>],
        f: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        f(bufs)
    }

    #[inline(always)]
    pub(crate) fn call<T>(_op: Op, _fd: RawFd, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        f()
    }

    #[inline(always)]
    pub(crate) fn registered(_key: usize) {}

    #[inline(always)]
    pub(crate) fn deregistered(_key: usize) {}
}

#[cfg(not(feature = "fault-injection"))]
pub(crate) use off::{Op, call, deregistered, read, registered, write};
