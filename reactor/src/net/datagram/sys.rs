//! The datagram system calls std and socket2 do not offer in the form the port needs:
//! `recvmmsg` (many datagrams, each with its source and a truncation flag, in one call),
//! `sendmmsg` (many datagrams to many destinations in one call, runs to one destination
//! segmented by the kernel: `UDP_SEGMENT`), the `IP_RECVERR` error
//! queue (the ICMP errors of an unconnected socket, with the address they concern),
//! disconnecting, and interface names. Elsewhere than Linux the batch calls take one
//! datagram each (`recvmsg`/`sendmsg`) and there is no error queue.
//!
//! Every `unsafe` block says why it is sound.

use std::io;
use std::mem;
use std::os::fd::RawFd;
use std::ptr;

use socket2::{SockAddr, SockAddrStorage, socklen_t};

/// Datagrams one receive call asks for.
pub(crate) const RECV_BATCH: usize = 32;
/// Datagrams one send call hands over.
pub(crate) const SEND_BATCH: usize = 64;

/// One datagram a receive call got; its bytes are in slot `n` of the buffer.
pub(crate) struct Received {
    /// Its real length (with `MSG_TRUNC`, even when it did not fit its slot).
    pub(crate) len: usize,
    /// Larger than its slot: only a part was received, and it must not be delivered.
    pub(crate) truncated: bool,
    /// Where it came from.
    pub(crate) from: SockAddr,
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Receives up to `count` datagrams (at most [`RECV_BATCH`]) into consecutive `slot`-byte
/// slots of `buf`, appending one [`Received`] per datagram to `out`. `WouldBlock` when
/// nothing is waiting.
pub(crate) fn recv_batch(
    fd: RawFd,
    buf: &mut [u8],
    slot: usize,
    count: usize,
    out: &mut Vec<Received>,
) -> io::Result<()> {
    let count = count.min(RECV_BATCH).min(buf.len() / slot.max(1)).max(1);
    assert!(
        slot * count <= buf.len(),
        "the receive slots fit the buffer"
    );
    let base = buf.as_mut_ptr();
    let mut names: [SockAddrStorage; RECV_BATCH] =
        std::array::from_fn(|_| SockAddrStorage::zeroed());
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; RECV_BATCH];
    for (i, iov) in iovs.iter_mut().enumerate().take(count) {
        // SAFETY: `slot * count <= buf.len()` (asserted above), so each slot lies in `buf`.
        iov.iov_base = unsafe { base.add(i * slot) }.cast();
        iov.iov_len = slot;
    }
    let mut got = [(0, 0, 0); RECV_BATCH];
    let n = recv_into(fd, &mut names, &mut iovs, count, &mut got)?;
    for (i, &(len, flags, namelen)) in got[..n].iter().enumerate() {
        let storage = mem::replace(&mut names[i], SockAddrStorage::zeroed());
        // SAFETY: the kernel wrote `namelen` bytes of a socket address of this socket's
        // family into the zeroed storage (0 for an unnamed sender, which is valid too).
        let from = unsafe { SockAddr::new(storage, namelen) };
        out.push(Received {
            len,
            truncated: flags & libc::MSG_TRUNC != 0,
            from,
        });
    }
    Ok(())
}

/// One `msghdr` receiving into `iov` with its source in `name`.
fn recv_header(name: &mut SockAddrStorage, iov: &mut libc::iovec) -> libc::msghdr {
    // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths).
    let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
    hdr.msg_name = (name as *mut SockAddrStorage).cast();
    hdr.msg_namelen = mem::size_of::<SockAddrStorage>() as socklen_t;
    hdr.msg_iov = iov;
    hdr.msg_iovlen = 1;
    hdr
}

/// What one datagram's header said: its length, its flags, its address's length.
type Got = (usize, libc::c_int, socklen_t);

/// Receives into the first `count` slots; fills `got` and returns how many came.
#[cfg(target_os = "linux")]
fn recv_into(
    fd: RawFd,
    names: &mut [SockAddrStorage; RECV_BATCH],
    iovs: &mut [libc::iovec; RECV_BATCH],
    count: usize,
    got: &mut [Got; RECV_BATCH],
) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `mmsghdr`.
    let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { mem::zeroed() };
    for i in 0..count {
        msgs[i].msg_hdr = recv_header(&mut names[i], &mut iovs[i]);
    }
    // SAFETY: `msgs[..count]` point at live storage (`names`, `iovs` and the caller's
    // buffer) that outlives the call; `fd` is open (the caller holds the socket).
    let n = unsafe {
        libc::recvmmsg(
            fd,
            msgs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_TRUNC,
            ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(last_error());
    }
    let n = n as usize;
    for (g, m) in got.iter_mut().zip(&msgs[..n]) {
        *g = (
            m.msg_len as usize,
            m.msg_hdr.msg_flags,
            m.msg_hdr.msg_namelen,
        );
    }
    Ok(n)
}

#[cfg(not(target_os = "linux"))]
fn recv_into(
    fd: RawFd,
    names: &mut [SockAddrStorage; RECV_BATCH],
    iovs: &mut [libc::iovec; RECV_BATCH],
    _count: usize,
    got: &mut [Got; RECV_BATCH],
) -> io::Result<usize> {
    let mut hdr = recv_header(&mut names[0], &mut iovs[0]);
    // SAFETY: `hdr` points at live storage that outlives the call; `fd` is open.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(last_error());
    }
    got[0] = (n as usize, hdr.msg_flags, hdr.msg_namelen);
    Ok(1)
}

/// `UDP_SEGMENT` (Linux's `include/uapi/linux/udp.h`; not in the libc crate for glibc).
#[cfg(target_os = "linux")]
const UDP_SEGMENT: libc::c_int = 103;
/// Largest datagram sent as a segment of a GSO message: what an Ethernet MTU carries with
/// an IPv6 header (a segment larger than the path's MTU is refused, where a lone datagram
/// would be fragmented).
const GSO_SEGMENT_MAX: usize = 1452;
/// Total payload of one GSO message (under the 64 KiB of one IP packet, less headers).
const GSO_BYTES_MAX: usize = 60 * 1024;
/// Segments in one GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const GSO_SEGMENTS_MAX: usize = 64;

/// A send call failed for the first datagram it was given.
#[derive(Debug)]
pub(crate) struct SendError {
    pub(crate) error: io::Error,
    /// That datagram went in a GSO message with those after it (see [`refuses_gso`]).
    pub(crate) grouped: bool,
}

/// Whether a GSO message's error says the socket or path cannot segment (an old kernel, a
/// device without checksum offload, a path MTU below [`GSO_SEGMENT_MAX`]), so the port
/// should stop grouping and send each datagram on its own.
pub(crate) fn refuses_gso(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

/// A run of datagrams sent as one message.
#[derive(Clone, Copy, Default)]
struct Group<'a> {
    /// Index of its first datagram's iovec.
    first: usize,
    count: usize,
    /// Every datagram but the last has this size (the segment size).
    size: usize,
    bytes: usize,
    /// A shorter datagram ended it: nothing more may join.
    ended: bool,
    to: Option<&'a SockAddr>,
}

impl Group<'_> {
    fn takes(&self, len: usize, to: Option<&SockAddr>) -> bool {
        !self.ended
            && self.to == to
            && len > 0
            && len <= self.size
            && self.size <= GSO_SEGMENT_MAX
            && self.count < GSO_SEGMENTS_MAX
            && self.bytes + len <= GSO_BYTES_MAX
    }
}

/// Sends the datagrams `items` yields (at most [`SEND_BATCH`]), each to its address or,
/// for `None`, to the connected peer. With `gso` (Linux UDP sockets), a run of datagrams
/// to one destination, all of one size but a shorter last one, goes as one message that
/// the kernel segments (`UDP_SEGMENT`): about a third of the CPU per datagram of separate
/// messages. Returns how many datagrams the socket took, in order; an error means the
/// first one failed (a later one's error comes back on the next call).
pub(crate) fn send_batch<'a>(
    fd: RawFd,
    items: impl Iterator<Item = (&'a [u8], Option<&'a SockAddr>)>,
    gso: bool,
) -> Result<usize, SendError> {
    let gso = gso && cfg!(target_os = "linux");
    let mut iovs = [libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    }; SEND_BATCH];
    let mut groups = [Group::default(); SEND_BATCH];
    let (mut count, mut ngroups) = (0usize, 0usize);
    for (data, to) in items.take(SEND_BATCH) {
        // The kernel only reads through these pointers.
        iovs[count] = libc::iovec {
            iov_base: data.as_ptr().cast_mut().cast(),
            iov_len: data.len(),
        };
        let last = ngroups.checked_sub(1).map(|i| &mut groups[i]);
        match last {
            Some(g) if gso && g.takes(data.len(), to) => {
                g.count += 1;
                g.bytes += data.len();
                g.ended = data.len() < g.size;
            }
            _ => {
                groups[ngroups] = Group {
                    first: count,
                    count: 1,
                    size: data.len(),
                    bytes: data.len(),
                    ended: false,
                    to,
                };
                ngroups += 1;
            }
        }
        count += 1;
    }
    if ngroups == 0 {
        return Ok(0);
    }
    let groups = &groups[..ngroups];
    // SAFETY: all-zero is a valid `msghdr`.
    let mut hdrs: [libc::msghdr; SEND_BATCH] = unsafe { mem::zeroed() };
    // One control message per header: room for a cmsghdr and a u16, 8-byte aligned.
    #[cfg(target_os = "linux")]
    let mut controls = [[0u64; 4]; SEND_BATCH];
    for (i, group) in groups.iter().enumerate() {
        let hdr = &mut hdrs[i];
        if let Some(to) = group.to {
            hdr.msg_name = to.as_ptr().cast_mut().cast();
            hdr.msg_namelen = to.len();
        }
        hdr.msg_iov = &mut iovs[group.first];
        hdr.msg_iovlen = group.count as _;
        #[cfg(target_os = "linux")]
        if group.count > 1 {
            set_segment_size(hdr, &mut controls[i], group.size as u16);
        }
    }
    match send_headers(fd, &mut hdrs[..ngroups]) {
        Ok(sent) => Ok(groups[..sent].iter().map(|g| g.count).sum()),
        Err(error) => Err(SendError {
            error,
            grouped: groups[0].count > 1,
        }),
    }
}

/// Points `hdr`'s control data at `buf`, holding one `UDP_SEGMENT` of `size`.
#[cfg(target_os = "linux")]
fn set_segment_size(hdr: &mut libc::msghdr, buf: &mut [u64; 4], size: u16) {
    // SAFETY: CMSG_SPACE only computes a length.
    let space = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as usize;
    assert!(space <= mem::size_of_val(buf));
    hdr.msg_control = buf.as_mut_ptr().cast();
    hdr.msg_controllen = space as _;
    // SAFETY: `hdr` points at `buf`, which is 8-byte aligned and has room for one control
    // message with a u16 (checked above), so CMSG_FIRSTHDR is that message and CMSG_DATA
    // points inside `buf`; the u16 is written unaligned-safe.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(hdr);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
        ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size);
    }
}

#[cfg(target_os = "linux")]
fn send_headers(fd: RawFd, hdrs: &mut [libc::msghdr]) -> io::Result<usize> {
    // SAFETY: all-zero is a valid `mmsghdr`.
    let mut msgs: [libc::mmsghdr; SEND_BATCH] = unsafe { mem::zeroed() };
    for (m, h) in msgs.iter_mut().zip(hdrs.iter()) {
        m.msg_hdr = *h;
    }
    // SAFETY: each header points at data and addresses the caller keeps alive for the
    // call; `fd` is open.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            msgs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(last_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn send_headers(fd: RawFd, hdrs: &mut [libc::msghdr]) -> io::Result<usize> {
    // SAFETY: the header points at data and an address the caller keeps alive; `fd` is
    // open.
    let n = unsafe { libc::sendmsg(fd, &hdrs[0], libc::MSG_DONTWAIT) };
    if n < 0 { Err(last_error()) } else { Ok(1) }
}

/// An error the network reported for a datagram sent earlier, from the socket's error
/// queue.
pub(crate) struct QueuedError {
    pub(crate) error: io::Error,
    /// The destination of the datagram it concerns.
    pub(crate) about: Option<SockAddr>,
}

/// Asks the kernel to queue the ICMP errors of this (IPv4 or IPv6) socket with the address
/// they concern (`IP_RECVERR`/`IPV6_RECVERR`), so an unconnected socket hears of them.
#[cfg(target_os = "linux")]
pub(crate) fn enable_error_queue(fd: RawFd, v6: bool) -> io::Result<()> {
    let on: libc::c_int = 1;
    let set = |level, name| {
        // SAFETY: `on` is a valid int for the call; `fd` is open.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&on as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as socklen_t,
            )
        };
        if rc < 0 { Err(last_error()) } else { Ok(()) }
    };
    if v6 {
        set(libc::SOL_IPV6, libc::IPV6_RECVERR)?;
        // IPv4-mapped destinations of a dual-stack socket report through the IPv4 flag.
        let _ = set(libc::SOL_IP, libc::IP_RECVERR);
        Ok(())
    } else {
        set(libc::SOL_IP, libc::IP_RECVERR)
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn enable_error_queue(_fd: RawFd, _v6: bool) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Takes one error from the socket's error queue; `None` when it is empty.
#[cfg(target_os = "linux")]
pub(crate) fn recv_queued_error(fd: RawFd) -> io::Result<Option<QueuedError>> {
    let mut name = SockAddrStorage::zeroed();
    let mut payload = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // u64s keep the control buffer aligned for `cmsghdr`.
    let mut control = [0u64; 64];
    let mut hdr = recv_header(&mut name, &mut iov);
    hdr.msg_control = control.as_mut_ptr().cast();
    hdr.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: `hdr` points at live storage that outlives the call; `fd` is open.
    let n = unsafe { libc::recvmsg(fd, &mut hdr, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT) };
    if n < 0 {
        let err = last_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(err),
        };
    }
    let mut errno = None;
    // SAFETY: `hdr` was filled in by `recvmsg`; the CMSG macros walk its control buffer
    // within `msg_controllen`, and each extended error is read unaligned from its data.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            let (level, kind) = ((*cmsg).cmsg_level, (*cmsg).cmsg_type);
            if (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR)
            {
                let ee: libc::sock_extended_err = ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                errno = Some(ee.ee_errno as i32);
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
    }
    let about = (hdr.msg_namelen > 0).then(|| {
        // SAFETY: the kernel wrote `msg_namelen` bytes of an address into the zeroed storage.
        unsafe { SockAddr::new(name, hdr.msg_namelen) }
    });
    Ok(Some(QueuedError {
        error: io::Error::from_raw_os_error(errno.unwrap_or(libc::EIO)),
        about,
    }))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn recv_queued_error(_fd: RawFd) -> io::Result<Option<QueuedError>> {
    Ok(None)
}

/// Dissolves a datagram socket's association with its peer (`connect` to `AF_UNSPEC`).
pub(crate) fn disconnect(fd: RawFd) -> io::Result<()> {
    // SAFETY: all-zero is a valid `sockaddr`.
    let mut addr: libc::sockaddr = unsafe { mem::zeroed() };
    addr.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
    // SAFETY: `addr` is a valid socket address of the size given; `fd` is open.
    let rc = unsafe { libc::connect(fd, &addr, mem::size_of::<libc::sockaddr>() as socklen_t) };
    if rc < 0 {
        let err = last_error();
        // The BSDs dissolve the association and still say EAFNOSUPPORT.
        if err.raw_os_error() != Some(libc::EAFNOSUPPORT) {
            return Err(err);
        }
    }
    Ok(())
}

/// The index of the network interface called `name` (`if_nametoindex`), if there is one.
pub(crate) fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// Sets the outgoing interface of an IPv4 socket's multicast datagrams by index
/// (`IP_MULTICAST_IF` with an `ip_mreqn`; socket2 only takes an address).
#[cfg(target_os = "linux")]
pub(crate) fn set_multicast_if_v4_index(fd: RawFd, index: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as libc::c_int,
    };
    // SAFETY: `mreqn` is a valid `ip_mreqn` of the size given; `fd` is open.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            mem::size_of::<libc::ip_mreqn>() as socklen_t,
        )
    };
    if rc < 0 { Err(last_error()) } else { Ok(()) }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn set_multicast_if_v4_index(_fd: RawFd, _index: u32) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_in_and_out_keeps_boundaries_sources_and_flags_truncation() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = SockAddr::from(rx.local_addr().unwrap());
        let big = [7u8; 100];
        let items: [&[u8]; 3] = [b"one", b"", &big];
        let sent = send_batch(tx.as_raw_fd(), items.iter().map(|d| (*d, Some(&to))), true).unwrap();
        assert_eq!(sent, 3);
        let mut buf = vec![0u8; 64 * 4];
        let mut out = Vec::new();
        // Loopback delivery is synchronous: all three are queued already.
        recv_batch(rx.as_raw_fd(), &mut buf, 64, 4, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!((out[0].len, out[0].truncated), (3, false));
        assert_eq!(&buf[..3], b"one");
        assert_eq!((out[1].len, out[1].truncated), (0, false));
        assert_eq!((out[2].len, out[2].truncated), (100, true), "the real size");
        let source = out[0].from.as_socket().unwrap();
        assert_eq!(source, tx.local_addr().unwrap());
        let err = recv_batch(rx.as_raw_fd(), &mut buf, 64, 4, &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    /// Every datagram waiting on `rx`, whole (each in a 2 KiB slot).
    fn drain(rx: &UdpSocket) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 2048 * RECV_BATCH];
        loop {
            let mut out = Vec::new();
            match recv_batch(rx.as_raw_fd(), &mut buf, 2048, RECV_BATCH, &mut out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
                Err(e) => panic!("{e}"),
            }
            for (i, r) in out.iter().enumerate() {
                assert!(!r.truncated);
                got.push(buf[i * 2048..i * 2048 + r.len].to_vec());
            }
        }
    }

    #[test]
    fn runs_to_one_destination_keep_their_boundaries_and_order_when_segmented() {
        let (a, b) = (
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            UdpSocket::bind("127.0.0.1:0").unwrap(),
        );
        for rx in [&a, &b] {
            // (room for every datagram: a full receive buffer would drop some)
            socket2::SockRef::from(rx)
                .set_recv_buffer_size(1 << 20)
                .unwrap();
        }
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to_a, to_b) = (
            SockAddr::from(a.local_addr().unwrap()),
            SockAddr::from(b.local_addr().unwrap()),
        );
        // Runs of equal sizes (grouped), a shorter one that ends a run, an empty one (never
        // grouped), a larger one after a run (starts a new one), and another destination
        // in between: 64 datagrams, the most one call takes.
        let mut items: Vec<(Vec<u8>, &SockAddr)> = Vec::new();
        for i in 0..20u8 {
            items.push((vec![i; 64], &to_a));
        }
        items.push((vec![20; 10], &to_a));
        items.push((Vec::new(), &to_a));
        for i in 0..5u8 {
            items.push((vec![100 + i; 64], &to_b));
        }
        for i in 0..30u8 {
            items.push((vec![30 + i; 1200], &to_a));
        }
        items.push((vec![99; 1300], &to_a));
        for i in 0..6u8 {
            items.push((vec![200 + i; 8], &to_b));
        }
        assert_eq!(items.len(), SEND_BATCH);
        for gso in [true, false] {
            let sent = send_batch(
                tx.as_raw_fd(),
                items.iter().map(|(d, to)| (&d[..], Some(*to))),
                gso,
            )
            .unwrap();
            assert_eq!(sent, SEND_BATCH, "gso {gso}");
            let (got_a, got_b) = (drain(&a), drain(&b));
            let want = |to: &SockAddr| -> Vec<Vec<u8>> {
                items
                    .iter()
                    .filter(|(_, t)| *t == to)
                    .map(|(d, _)| d.clone())
                    .collect()
            };
            assert_eq!(got_a, want(&to_a), "gso {gso}");
            assert_eq!(got_b, want(&to_b), "gso {gso}");
        }
    }

    #[test]
    fn interface_names() {
        assert!(interface_index("lo").is_some());
        assert_eq!(interface_index("no-such-if0"), None);
        assert_eq!(interface_index("bad\0name"), None);
    }
}
