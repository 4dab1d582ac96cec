//! The few direct OS calls std and socket2 do not offer in the form the reactor needs.
//! Every `unsafe` block here says why it is sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use socket2::SockAddr;

use crate::net::transport::PeerCredentials;

/// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`: the new socket is ready for the reactor
/// in one system call (std's `accept` needs a second one to make it non-blocking).
pub(crate) fn accept(listener: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    super::fault::call(super::fault::Op::Accept, listener, || accept4(listener))
}

fn accept4(listener: RawFd) -> io::Result<(OwnedFd, SockAddr)> {
    // SAFETY: `try_init` hands us a zeroed storage and its length, which `accept4` fills in;
    // `listener` is a valid listening socket owned by the caller for the duration of the call.
    let (fd, addr) = unsafe {
        SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener,
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: `accept4` returned a new descriptor that nothing else owns.
    Ok((unsafe { OwnedFd::from_raw_fd(fd) }, addr))
}

/// `SO_PEERCRED` on a connected Unix socket.
pub(crate) fn peer_credentials(fd: RawFd) -> Option<PeerCredentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the size passed; `fd` is open (the
    // caller holds the socket).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(PeerCredentials {
        uid: cred.uid,
        gid: cred.gid,
        pid: (cred.pid > 0).then_some(cred.pid),
    })
}

/// Whether an accept error means "out of descriptors" (back off) rather than "this one
/// connection failed" (go on).
pub(crate) fn is_fd_exhaustion(err: &io::Error) -> bool {
    err.raw_os_error().is_some_and(is_fd_exhaustion_errno)
}

/// [`is_fd_exhaustion`] for an error number.
pub(crate) fn is_fd_exhaustion_errno(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

/// Whether an error means the process or the system is out of file descriptors.
pub(crate) fn is_out_of_fds(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// The file status flags of `fd` (`F_GETFL`: access mode, `O_NONBLOCK`, ...).
pub(crate) fn status_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: `fd` is open for the duration of the call (it is borrowed).
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(flags)
    }
}

/// Sets the file status flags of `fd` (`F_SETFL`).
pub(crate) fn set_status_flags(fd: BorrowedFd<'_>, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is open for the duration of the call (it is borrowed).
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) } < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Whether the other end of `fd` went away (a pipe's reader closed, a socket's peer
/// reset): `poll` with no wait reports `POLLERR` or `POLLHUP`. A readiness event alone
/// does not say so: a poller may report an event that is not there (a spurious one).
pub(crate) fn hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid `pollfd`, a count of one, no wait; `poll` only writes `revents`.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// A new descriptor for the same open file as `fd`, closed on exec.
pub(crate) fn dup_cloexec(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    fd.try_clone_to_owned()
}

/// What `fstat` says about an open descriptor: its type and identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    /// `st_mode & S_IFMT`.
    pub(crate) kind: libc::mode_t,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
}

impl FileId {
    pub(crate) fn is_fifo(&self) -> bool {
        self.kind == libc::S_IFIFO
    }
    pub(crate) fn is_dir(&self) -> bool {
        self.kind == libc::S_IFDIR
    }
}

/// `fstat` of an open descriptor.
pub(crate) fn file_id(fd: BorrowedFd<'_>) -> io::Result<FileId> {
    // SAFETY: an all-zero `stat` is a valid value of this plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes; `fd` is open (borrowed).
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FileId {
        kind: st.st_mode & libc::S_IFMT,
        dev: st.st_dev,
        ino: st.st_ino,
    })
}

/// Points descriptor `target` (0 or 1: standard input or output) at `/dev/null`, if it
/// still refers to the file `was`: so that closing our own copy of it really closes the
/// pipe (its other end sees end of file), and no file opened later takes the number.
pub(crate) fn release_std_fd(target: RawFd, was: FileId) {
    // SAFETY: `target` is only inspected; if it is not open, `fstat` fails harmlessly.
    let now = file_id(unsafe { BorrowedFd::borrow_raw(target) });
    if now.ok() != Some(was) {
        return; // closed, or redirected by someone else meanwhile
    }
    let flags = if target == 0 {
        libc::O_RDONLY
    } else {
        libc::O_WRONLY
    };
    // SAFETY: a NUL-terminated path; the returned descriptor is owned at once.
    let null = unsafe { libc::open(c"/dev/null".as_ptr(), flags | libc::O_CLOEXEC) };
    if null < 0 {
        log::debug!(
            "cannot open /dev/null to release descriptor {target}: {}",
            io::Error::last_os_error()
        );
        return;
    }
    // SAFETY: `open` returned a new descriptor nothing else owns.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    // SAFETY: `dup2` replaces `target` atomically; `null` is open.
    if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
        log::debug!(
            "cannot release descriptor {target}: {}",
            io::Error::last_os_error()
        );
    }
}
