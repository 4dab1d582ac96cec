//! The streams a connection can carry (TCP and Unix sockets; pipes and standard I/O in
//! `pipe.rs`), behind one small trait. The sockets' reads, writes and shutdowns go through
//! the fault hooks (`io/fault.rs`: direct calls unless the `fault-injection` feature is on).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::conn::Ends;
use super::transport::PeerCredentials;
use crate::io::Sharing;
use crate::io::fault::{self, Op};

/// What a connection needs to know about its stream besides how to read and write it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StreamKind {
    /// Which directions it has.
    pub(crate) ends: Ends,
    /// Watch the writing descriptor for its reader going away (a pipe's write end).
    pub(crate) watch_hangup: bool,
    /// Whether the descriptor may have duplicates outside the connection.
    pub(crate) sharing: Sharing,
    /// At a graceful stop, finish writing but keep reading to the end instead of closing
    /// at once (a child's pipes: its last output is read while it finishes).
    pub(crate) drain_on_stop: bool,
    /// Register edge-triggered (see `net/conn`). Sockets only: a terminal in canonical mode
    /// returns one line per read, so a short read there does not mean the kernel ran dry,
    /// and a level registration keeps reporting what is left.
    pub(crate) edge: bool,
}

impl StreamKind {
    /// A socket the reactor created or accepted.
    pub(crate) const SOCKET: StreamKind = StreamKind {
        ends: Ends::Both,
        watch_hangup: false,
        sharing: Sharing::Exclusive,
        drain_on_stop: false,
        edge: true,
    };
}

pub(crate) trait Stream: AsFd + AsRawFd + 'static {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn shutdown_write(&self) -> io::Result<()>;
    /// What kind of stream it is (default: a socket).
    fn kind(&self) -> StreamKind {
        StreamKind::SOCKET
    }
    /// The descriptor writes go to, when it is not the one reads come from (standard I/O
    /// reads descriptor 0 and writes descriptor 1). The connection watches it with a
    /// registration of its own, dropped before `shutdown_write` and before the stream.
    fn write_fd(&self) -> Option<RawFd> {
        None
    }
    fn set_nodelay(&self, _on: bool) -> io::Result<()> {
        Ok(())
    }
    fn set_keepalive(&self, _idle: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        None
    }
}

impl Stream for TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        fault::read(self.as_raw_fd(), buf, |buf| Read::read(&mut { self }, buf))
    }
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        fault::write(self.as_raw_fd(), bufs, |bufs| {
            Write::write_vectored(&mut { self }, bufs)
        })
    }
    fn shutdown_write(&self) -> io::Result<()> {
        fault::call(Op::Shutdown, self.as_raw_fd(), || {
            self.shutdown(Shutdown::Write)
        })
    }
    fn set_nodelay(&self, on: bool) -> io::Result<()> {
        TcpStream::set_nodelay(self, on)
    }
    fn set_keepalive(&self, idle: Option<Duration>) -> io::Result<()> {
        let sock = socket2::SockRef::from(self);
        match idle {
            None => sock.set_keepalive(false),
            Some(idle) => sock.set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(idle)),
        }
    }
}

impl Stream for UnixStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        fault::read(self.as_raw_fd(), buf, |buf| Read::read(&mut { self }, buf))
    }
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        fault::write(self.as_raw_fd(), bufs, |bufs| {
            Write::write_vectored(&mut { self }, bufs)
        })
    }
    fn shutdown_write(&self) -> io::Result<()> {
        fault::call(Op::Shutdown, self.as_raw_fd(), || {
            self.shutdown(Shutdown::Write)
        })
    }
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        crate::io::sys::peer_credentials(self.as_raw_fd())
    }
}
