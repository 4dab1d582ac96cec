//! The socket types a connection can carry (TCP, Unix), behind one small trait. Their
//! reads, writes and shutdowns go through the fault hooks (`io/fault.rs`: direct calls
//! unless the `fault-injection` feature is on).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use super::transport::PeerCredentials;
use crate::io::fault::{self, Op};

pub(crate) trait Stream: AsFd + AsRawFd + 'static {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    fn shutdown_write(&self) -> io::Result<()>;
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
