//! The accept queue of a listening TCP socket on this machine, read with `sock_diag` netlink
//! (what `ss -lt` shows as Recv-Q / Send-Q).
//!
//! `hold` opens thousands of connections one after another. The kernel completes each
//! handshake on its own and parks it in the listener's accept queue; if the server is
//! descheduled for a few milliseconds (a busy machine) that queue overflows, the kernel drops
//! the next SYN, and that connect waits a full second for its retransmission. So `hold` keeps
//! the number of handshaken-but-unaccepted connections below half the server's backlog.

use std::io;
use std::mem::size_of;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u8 = 10;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagSockId {
    sport: u16, // network byte order
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    if_: u32,
    cookie: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagReqV2 {
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: InetDiagSockId,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct InetDiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: InetDiagSockId,
    expires: u32,
    /// For a listener: connections waiting in the accept queue.
    rqueue: u32,
    /// For a listener: its backlog.
    wqueue: u32,
    uid: u32,
    inode: u32,
}

#[repr(C)]
struct Request {
    hdr: libc::nlmsghdr,
    req: InetDiagReqV2,
}

/// A netlink socket for repeated accept-queue queries.
pub struct AcceptQueue {
    fd: i32,
    port: u16,
    ipv6: bool,
    buf: Vec<u8>,
}

impl Drop for AcceptQueue {
    fn drop(&mut self) {
        // SAFETY: fd is a socket this struct owns.
        unsafe { libc::close(self.fd) };
    }
}

impl AcceptQueue {
    pub fn new(port: u16, ipv6: bool) -> io::Result<Self> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(AcceptQueue {
            fd,
            port,
            ipv6,
            buf: vec![0u8; 32 * 1024],
        })
    }

    /// (connections waiting to be accepted, backlog) of the listener on our port; with several
    /// listeners on the port (SO_REUSEPORT), the longest queue and the smallest backlog.
    pub fn get(&mut self) -> io::Result<Option<(u32, u32)>> {
        // SAFETY: zeroed plain-old-data structs are valid.
        let mut req: Request = unsafe { std::mem::zeroed() };
        req.hdr.nlmsg_len = size_of::<Request>() as u32;
        req.hdr.nlmsg_type = SOCK_DIAG_BY_FAMILY;
        req.hdr.nlmsg_flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
        req.req.family = if self.ipv6 {
            libc::AF_INET6
        } else {
            libc::AF_INET
        } as u8;
        req.req.protocol = libc::IPPROTO_TCP as u8;
        req.req.states = 1 << TCP_LISTEN;
        // SAFETY: as above.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: req and sa are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd,
                (&req as *const Request).cast(),
                size_of::<Request>(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut found = None;
        loop {
            // SAFETY: buf is valid for writes of its length.
            let n = unsafe { libc::recv(self.fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let data = &self.buf[..n as usize];
            let mut off = 0;
            while off + size_of::<libc::nlmsghdr>() <= data.len() {
                // SAFETY: bounds checked above; read_unaligned copes with any alignment.
                let hdr: libc::nlmsghdr =
                    unsafe { std::ptr::read_unaligned(data[off..].as_ptr().cast()) };
                let len = hdr.nlmsg_len as usize;
                if len < size_of::<libc::nlmsghdr>() || off + len > data.len() {
                    return Err(io::Error::other("malformed netlink reply"));
                }
                match hdr.nlmsg_type as i32 {
                    libc::NLMSG_DONE => return Ok(found),
                    libc::NLMSG_ERROR => return Err(io::Error::other("sock_diag request refused")),
                    _ if hdr.nlmsg_type == SOCK_DIAG_BY_FAMILY => {
                        let body = off + size_of::<libc::nlmsghdr>();
                        if body + size_of::<InetDiagMsg>() <= off + len {
                            // SAFETY: bounds checked; InetDiagMsg is plain old data.
                            let m: InetDiagMsg =
                                unsafe { std::ptr::read_unaligned(data[body..].as_ptr().cast()) };
                            if m.state == TCP_LISTEN && u16::from_be(m.id.sport) == self.port {
                                let (r, w) = found.unwrap_or((0, u32::MAX));
                                found = Some((r.max(m.rqueue), w.min(m.wqueue)));
                            }
                        }
                    }
                    _ => {}
                }
                off += (len + 3) & !3;
            }
        }
    }
}
