//! The few direct OS calls std and socket2 do not offer in the form the reactor needs.
//! Every `unsafe` block here says why it is sound.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}
