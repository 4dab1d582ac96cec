//! [`DatagramTransport`]: the handle a datagram protocol sends with and closes its port
//! with, and [`Interface`], how a multicast call names a network interface.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::rc::Rc;

use socket2::{InterfaceIndexOrAddress, SockRef};

use super::addr::Family;
use super::port::Port;
use super::protocol::DatagramProtocol;
use super::sys;
use crate::error::{Error, ErrorKind};
use crate::net::protocol::Address;

/// A network interface, as multicast calls name it.
///
/// ```
/// use torsion_reactor::Interface;
///
/// assert_eq!(Interface::Name("lo".into()).to_string(), "lo");
/// assert_eq!(Interface::Address([127, 0, 0, 1].into()).to_string(), "127.0.0.1");
/// assert_eq!(Interface::Any.to_string(), "the default interface");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Interface {
    /// The one the routing table picks.
    Any,
    /// The interface with this IPv4 address (for IPv4 groups; IPv6 names interfaces by
    /// index or name).
    Address(Ipv4Addr),
    /// The interface with this index (as `ip link` lists them).
    Index(u32),
    /// The interface with this name (`lo`, `eth0`).
    Name(String),
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interface::Any => f.write_str("the default interface"),
            Interface::Address(a) => write!(f, "{a}"),
            Interface::Index(i) => write!(f, "#{i}"),
            Interface::Name(n) => f.write_str(n),
        }
    }
}

impl Interface {
    /// The interface's index (0 for [`Interface::Any`]); a name that names no interface is
    /// an [`ErrorKind::InvalidInput`] error that says so.
    fn index(&self, what: &str) -> Result<u32, Error> {
        match self {
            Interface::Any => Ok(0),
            Interface::Index(i) => Ok(*i),
            Interface::Name(name) => sys::interface_index(name).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{what} on interface {name}: there is no network interface called {name:?}"
                    ),
                )
            }),
            Interface::Address(a) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{what} on interface {a}: an IPv6 group names its interface by index or \
                     name, not by an IPv4 address"
                ),
            )),
        }
    }
}

/// A cheap, clonable handle to one datagram port (UDP or Unix datagram), returned by
/// [`Reactor::listen_udp`](crate::Reactor::listen_udp) and its siblings and handed to the
/// port's [`DatagramProtocol`].
///
/// Sending never blocks: a datagram the socket does not take at once waits in the port's
/// send queue, and the protocol hears `pause_writing` above the high-water mark. The
/// queue is bounded ([`send_queue_limit`](crate::UdpOptions::send_queue_limit)): beyond
/// it a datagram is dropped, [`send_to`](DatagramTransport::send_to) returns
/// [`ErrorKind::QueueFull`], the drop is counted
/// ([`dropped_datagrams`](DatagramTransport::dropped_datagrams)) and the protocol is told
/// ([`DatagramError::Dropped`](crate::DatagramError::Dropped)): nothing is lost silently.
///
/// ```
/// use std::{cell::RefCell, rc::Rc, time::Duration};
/// use torsion_reactor::{Address, DatagramProtocol, DatagramTransport, Reactor};
///
/// struct Echo;
/// impl DatagramProtocol for Echo {
///     fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
///         let _ = t.send_to(data, &from);
///     }
/// }
///
/// struct Ask(Rc<RefCell<Vec<u8>>>);
/// impl DatagramProtocol for Ask {
///     fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: Address) {
///         self.0.borrow_mut().extend_from_slice(data);
///     }
/// }
///
/// let reactor = Reactor::current();
/// let server = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo).unwrap();
/// let answer = Rc::new(RefCell::new(Vec::new()));
/// let client = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Ask(answer.clone())).unwrap();
/// client.send_to(b"ping", &server.local_addr()).unwrap();
/// reactor.run_until(Duration::from_secs(10), || !answer.borrow().is_empty()).unwrap();
/// assert_eq!(*answer.borrow(), b"ping");
/// server.close();
/// client.close();
/// ```
#[derive(Clone)]
pub struct DatagramTransport(pub(crate) Rc<Port>);

impl DatagramTransport {
    /// Sends `data` as one datagram to `to`, or queues it if the socket does not take it
    /// at once; never blocks. Datagrams sent during one of the port's callbacks go out
    /// together (one `sendmmsg` on Linux) when it returns.
    ///
    /// Errors, at the call: [`ErrorKind::InvalidInput`] for an address this port cannot
    /// send to (the wrong family, port 0, a Unix path from a UDP port, an unnamed Unix
    /// peer, an IPv4 address from an IPv6-only port), a datagram larger than UDP can carry,
    /// or a connected port asked to send elsewhere; [`ErrorKind::QueueFull`] when the send
    /// queue is at its bound (the datagram is dropped, counted and reported to
    /// `error_received`); [`ErrorKind::ConnectionClosed`] once the port is closing. What
    /// the OS refuses later (no route, `EMSGSIZE`, broadcast not enabled) arrives as
    /// [`DatagramError::SendFailed`](crate::DatagramError::SendFailed) in `error_received`.
    pub fn send_to(&self, data: &[u8], to: &Address) -> Result<(), Error> {
        self.0.send(data, Some(to))
    }

    /// Sends `data` to the port's peer (see [`connect`](DatagramTransport::connect)).
    /// Errors: those of [`send_to`](DatagramTransport::send_to), and
    /// [`ErrorKind::InvalidInput`] if the port is not connected.
    pub fn send(&self, data: &[u8]) -> Result<(), Error> {
        self.0.send(data, None)
    }

    /// Connects the port to `peer` (Twisted's connected UDP): from now on only datagrams
    /// from `peer` are delivered, [`send`](DatagramTransport::send) goes there, and the
    /// network's errors for it (ICMP port unreachable) reach `error_received` on every
    /// system. Connecting again replaces the peer. Errors: an invalid address, as for
    /// `send_to`; the OS's (no route to it; for a Unix path, nobody bound there).
    pub fn connect(&self, peer: &Address) -> Result<(), Error> {
        self.0.connect(peer)
    }

    /// Undoes [`connect`](DatagramTransport::connect): datagrams from anyone are delivered
    /// again. (Linux gives back an automatically chosen local port when a UDP socket
    /// disconnects, so [`local_addr`](DatagramTransport::local_addr) may change.)
    pub fn disconnect(&self) -> Result<(), Error> {
        self.0.disconnect()
    }

    /// The connected peer, if any.
    pub fn peer_addr(&self) -> Option<Address> {
        self.0.peer()
    }

    /// The port's own address (with the real port number when port 0 was asked).
    pub fn local_addr(&self) -> Address {
        self.0.local_addr()
    }

    /// Stops receiving now, sends what is queued, then closes the port; the protocol hears
    /// `connection_lost` (a clean close) from the loop. Works from inside the port's own
    /// callbacks (datagrams of the batch not yet delivered are discarded). Calling it again
    /// does nothing.
    pub fn close(&self) {
        self.0.close()
    }

    /// Closes the port now, dropping what is queued.
    pub fn abort(&self) {
        self.0.abort()
    }

    /// Whether the port is closing or closed (sends are refused).
    pub fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    /// Stops delivering datagrams until [`resume_reading`](DatagramTransport::resume_reading)
    /// (the kernel's receive buffer then fills, and drops what does not fit). Datagrams of
    /// the current batch that were already received are kept and delivered after the
    /// resume.
    pub fn pause_reading(&self) {
        self.0.pause_reading()
    }

    /// Delivers datagrams again after [`pause_reading`](DatagramTransport::pause_reading).
    pub fn resume_reading(&self) {
        self.0.resume_reading()
    }

    /// Whether datagrams are being delivered (the port is open and not paused).
    pub fn is_reading(&self) -> bool {
        self.0.is_reading()
    }

    /// Payload bytes waiting in the send queue (asyncio's `get_write_buffer_size`).
    pub fn buffer_size(&self) -> usize {
        self.0.buffer_size()
    }

    /// Datagrams waiting in the send queue.
    pub fn queued_datagrams(&self) -> usize {
        self.0.queued_datagrams()
    }

    /// Datagrams dropped so far because the send queue was full.
    pub fn dropped_datagrams(&self) -> u64 {
        self.0.dropped_datagrams()
    }

    /// The send queue's bound in bytes (beyond it datagrams are dropped).
    pub fn send_queue_limit(&self) -> usize {
        self.0.queue_limit()
    }

    /// Changes the send queue's bound (at least 1 byte; an empty queue always takes one
    /// datagram). Datagrams already queued stay.
    pub fn set_send_queue_limit(&self, bytes: usize) {
        self.0.set_queue_limit(bytes)
    }

    /// The largest datagram the port receives whole; a larger one is reported as
    /// [`DatagramError::Truncated`](crate::DatagramError::Truncated) and discarded.
    pub fn max_datagram_size(&self) -> usize {
        self.0.max_datagram()
    }

    /// Whether the send queue is above its high-water mark (or went above it and has not
    /// drained to the low mark). When this returns `true`, `resume_writing` is sure to
    /// follow (unless the port closes first).
    pub fn is_writing_paused(&self) -> bool {
        self.0.is_writing_paused()
    }

    /// Sets the send queue's high- and low-water marks (defaults
    /// [`DEFAULT_HIGH_WATER`](crate::DEFAULT_HIGH_WATER) /
    /// [`DEFAULT_LOW_WATER`](crate::DEFAULT_LOW_WATER)); `low` is clamped to `high`.
    pub fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.0.set_write_buffer_limits(high, low.min(high))
    }

    /// The send queue's (high, low) marks.
    pub fn write_buffer_limits(&self) -> (usize, usize) {
        self.0.write_buffer_limits()
    }

    /// Allows (`true`) or forbids sending to broadcast addresses (`SO_BROADCAST`).
    pub fn set_broadcast(&self, on: bool) -> Result<(), Error> {
        self.ip_option("set SO_BROADCAST", |s, _| s.set_broadcast(on))
    }

    /// The time-to-live (IPv4) or hop limit (IPv6) of unicast datagrams.
    pub fn set_ttl(&self, ttl: u32) -> Result<(), Error> {
        self.ip_option("set the TTL", |s, v6| {
            if v6 {
                s.set_unicast_hops_v6(ttl)
            } else {
                s.set_ttl_v4(ttl)
            }
        })
    }

    /// Joins the multicast group `group` on `interface` (IPv4 groups: any [`Interface`];
    /// IPv6 groups: by index or name, or [`Interface::Any`]). Errors:
    /// [`ErrorKind::InvalidInput`] if `group` is not a multicast address, is of the other
    /// family, or the interface does not exist (the message names it); the OS's error
    /// otherwise, naming the group and the interface.
    pub fn join_group(&self, group: IpAddr, interface: &Interface) -> Result<(), Error> {
        self.membership(group, interface, true)
    }

    /// Leaves a multicast group joined with [`join_group`](DatagramTransport::join_group).
    pub fn leave_group(&self, group: IpAddr, interface: &Interface) -> Result<(), Error> {
        self.membership(group, interface, false)
    }

    /// The TTL (IPv4) or hop limit (IPv6) of multicast datagrams (the OS's default is 1:
    /// they stay on the local network).
    pub fn set_multicast_ttl(&self, ttl: u32) -> Result<(), Error> {
        self.ip_option("set the multicast TTL", |s, v6| {
            if v6 {
                s.set_multicast_hops_v6(ttl)
            } else {
                s.set_multicast_ttl_v4(ttl)
            }
        })
    }

    /// Whether this host's own members of a group get the multicast datagrams it sends
    /// (the OS's default: yes).
    pub fn set_multicast_loop(&self, on: bool) -> Result<(), Error> {
        self.ip_option("set the multicast loopback", |s, v6| {
            if v6 {
                s.set_multicast_loop_v6(on)
            } else {
                s.set_multicast_loop_v4(on)
            }
        })
    }

    /// The interface multicast datagrams are sent from. Errors as for
    /// [`join_group`](DatagramTransport::join_group).
    pub fn set_multicast_interface(&self, interface: &Interface) -> Result<(), Error> {
        let what = format!("cannot send multicast from {}", self.local_addr());
        let v6 = self.ip_family(&what)?;
        let fail = |e: io::Error| Error::io(format!("{what} on interface {interface}"), e);
        if v6 {
            let index = interface.index(&what)?;
            self.0
                .with_socket(|s| s.set_multicast_if_v6(index))?
                .map_err(fail)
        } else {
            match interface {
                Interface::Any => self
                    .0
                    .with_socket(|s| s.set_multicast_if_v4(&Ipv4Addr::UNSPECIFIED))?
                    .map_err(fail),
                Interface::Address(a) => self
                    .0
                    .with_socket(|s| s.set_multicast_if_v4(a))?
                    .map_err(fail),
                _ => {
                    let index = interface.index(&what)?;
                    self.0
                        .with_socket(|s| sys::set_multicast_if_v4_index(s.as_raw_fd(), index))?
                        .map_err(fail)
                }
            }
        }
    }

    /// Calls `f` with the port's descriptor. Errors: [`ErrorKind::ConnectionClosed`] once
    /// the port is closed.
    pub fn with_fd<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> R) -> Result<R, Error> {
        self.0.with_socket(|s| f(s.as_fd()))
    }

    /// Gets or sets any socket option through [`socket2::SockRef`] (buffer sizes,
    /// `IP_TOS`, ...). Errors: those of [`with_fd`](DatagramTransport::with_fd), and the
    /// option's own.
    pub fn with_socket<R>(
        &self,
        f: impl FnOnce(&SockRef<'_>) -> io::Result<R>,
    ) -> Result<R, Error> {
        self.0
            .with_socket(|s| f(&SockRef::from(s)))?
            .map_err(|e| Error::io("the socket option call failed", e))
    }

    /// Calls `f` with the port's protocol, if it is a `P`. Errors: [`ErrorKind::Busy`]
    /// from inside one of that protocol's own callbacks (use `self` there);
    /// [`ErrorKind::InvalidInput`] if the protocol is not a `P`;
    /// [`ErrorKind::ConnectionClosed`] once it is gone.
    pub fn with_protocol<P: DatagramProtocol, R>(
        &self,
        f: impl FnOnce(&mut P) -> R,
    ) -> Result<R, Error> {
        let mut f = Some(f);
        let mut out = None;
        self.0.with_protocol(&mut |p| {
            let any: &mut dyn std::any::Any = p;
            if let (Some(p), Some(f)) = (any.downcast_mut::<P>(), f.take()) {
                out = Some(f(p));
            }
        })?;
        out.ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the port's protocol is not a {}",
                    std::any::type_name::<P>()
                ),
            )
        })
    }

    /// Whether two handles refer to the same port.
    pub fn same_port(&self, other: &DatagramTransport) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Whether the port is IPv6 (`Ok(true)`) or IPv4; an error for a Unix datagram port.
    fn ip_family(&self, what: &str) -> Result<bool, Error> {
        match self.0.family() {
            Family::Udp4 => Ok(false),
            Family::Udp6 => Ok(true),
            Family::Unix => Err(Error::new(
                ErrorKind::Unsupported,
                format!("{what}: a Unix datagram port has no IP options"),
            )),
        }
    }

    fn ip_option(
        &self,
        what: &str,
        f: impl FnOnce(&socket2::Socket, bool) -> io::Result<()>,
    ) -> Result<(), Error> {
        let what = format!("cannot {what} on {}", self.local_addr());
        let v6 = self.ip_family(&what)?;
        self.0
            .with_socket(|s| f(s, v6))?
            .map_err(|e| Error::io(what, e))
    }

    fn membership(&self, group: IpAddr, interface: &Interface, join: bool) -> Result<(), Error> {
        let verb = if join { "join" } else { "leave" };
        let what = format!("cannot {verb} multicast group {group}");
        let v6 = self.ip_family(&what)?;
        if !group.is_multicast() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{what}: it is not a multicast address"),
            ));
        }
        let fail = |e: io::Error| Error::io(format!("{what} on interface {interface}"), e);
        match group {
            IpAddr::V4(g) => {
                let how = match interface {
                    Interface::Any => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
                    Interface::Address(a) => InterfaceIndexOrAddress::Address(*a),
                    _ => InterfaceIndexOrAddress::Index(interface.index(&what)?),
                };
                self.0
                    .with_socket(|s| {
                        if join {
                            s.join_multicast_v4_n(&g, &how)
                        } else {
                            s.leave_multicast_v4_n(&g, &how)
                        }
                    })?
                    .map_err(fail)
            }
            IpAddr::V6(g) => {
                if !v6 {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!(
                            "{what}: the port {} is IPv4; an IPv6 group needs an IPv6 port",
                            self.local_addr()
                        ),
                    ));
                }
                let index = interface.index(&what)?;
                self.0
                    .with_socket(|s| {
                        if join {
                            s.join_multicast_v6(&g, index)
                        } else {
                            s.leave_multicast_v6(&g, index)
                        }
                    })?
                    .map_err(fail)
            }
        }
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.local_addr())
            .field("peer", &self.peer_addr())
            .field("closing", &self.is_closing())
            .finish()
    }
}
