//! UDP: `listen_udp` (a port on an address, IPv4, IPv6 or dual-stack) and `connect_udp`
//! (a port on a free local port, connected to one peer).

use std::cell::Cell;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, SockAddr, Socket, Type};

use super::datagram::addr::Family;
use super::datagram::port::{Config, Port};
use super::datagram::protocol::{DatagramProtocol, boxed};
use super::datagram::sys;
use super::datagram::transport::DatagramTransport;
use super::datagram::{DEFAULT_MAX_DATAGRAM, DEFAULT_SEND_QUEUE_LIMIT};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;

/// Options for [`Reactor::listen_udp_with`].
#[derive(Clone, Debug)]
pub struct UdpOptions {
    /// `SO_REUSEADDR`: several sockets may bind the same address and port (each gets the
    /// multicast datagrams sent to a group it joined; Twisted's `listenMultiple`). Default
    /// off.
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets (one reactor per core) share the port and the
    /// kernel spreads the peers among them. Default off.
    pub reuse_port: bool,
    /// For IPv6 addresses: IPv6 only (`Some(true)`), also IPv4 (`Some(false)`, dual-stack
    /// on `[::]`), or the system's default (`None`).
    pub ipv6_only: Option<bool>,
    /// `SO_BROADCAST`: allow sending to broadcast addresses. Default off.
    pub broadcast: bool,
    /// The largest datagram received whole (default [`DEFAULT_MAX_DATAGRAM`], which holds
    /// any UDP payload); a larger one is discarded and reported, never delivered cut.
    pub max_datagram_size: usize,
    /// Payload bytes the send queue holds before datagrams are dropped (default
    /// [`DEFAULT_SEND_QUEUE_LIMIT`]; at most [`MAX_QUEUED_DATAGRAMS`] datagrams in any
    /// case).
    ///
    /// [`MAX_QUEUED_DATAGRAMS`]: crate::MAX_QUEUED_DATAGRAMS
    pub send_queue_limit: usize,
    /// On Linux, `IP_RECVERR`/`IPV6_RECVERR`: the network's errors (ICMP port unreachable,
    /// ...) for datagrams sent from an unconnected port reach `error_received`, with the
    /// destination they concern. Default on. (A connected port hears of its peer's errors
    /// on every system.)
    pub receive_errors: bool,
    /// `SO_RCVBUF`, if set: how much the kernel holds for a port that is not read fast
    /// enough (it drops what does not fit).
    pub recv_buffer_size: Option<usize>,
    /// `SO_SNDBUF`, if set.
    pub send_buffer_size: Option<usize>,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            reuse_address: false,
            reuse_port: false,
            ipv6_only: None,
            broadcast: false,
            max_datagram_size: DEFAULT_MAX_DATAGRAM,
            send_queue_limit: DEFAULT_SEND_QUEUE_LIMIT,
            receive_errors: true,
            recv_buffer_size: None,
            send_buffer_size: None,
        }
    }
}

fn open_socket(addr: SocketAddr, options: &UdpOptions) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking().cloexec(),
        None,
    )?;
    if addr.is_ipv6() {
        if let Some(only) = options.ipv6_only {
            socket.set_only_v6(only)?;
        }
    }
    if options.reuse_address {
        socket.set_reuse_address(true)?;
    }
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    if options.broadcast {
        socket.set_broadcast(true)?;
    }
    if let Some(size) = options.recv_buffer_size {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.send_buffer_size {
        socket.set_send_buffer_size(size)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket)
}

pub(crate) fn check_sizes(max_datagram_size: usize, send_queue_limit: usize) -> Result<(), Error> {
    if max_datagram_size == 0 || send_queue_limit == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "max_datagram_size ({max_datagram_size}) and send_queue_limit \
                 ({send_queue_limit}) must be at least 1"
            ),
        ));
    }
    Ok(())
}

impl Reactor {
    /// Opens a UDP port on `addr` (port 0: the system picks a free one); `protocol` gets
    /// every datagram sent to it. `connection_made` runs from the loop, once this has
    /// returned. The error names the address and the cause, e.g. `cannot listen on UDP
    /// 127.0.0.1:53: permission denied`.
    ///
    /// ```
    /// use torsion_reactor::{Address, DatagramProtocol, DatagramTransport, Reactor};
    ///
    /// struct Echo;
    /// impl DatagramProtocol for Echo {
    ///     fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
    ///         let _ = t.send_to(data, &from);
    ///     }
    /// }
    ///
    /// let reactor = Reactor::current();
    /// let port = reactor.listen_udp("127.0.0.1:0".parse().unwrap(), Echo).unwrap();
    /// println!("listening on {}", port.local_addr());
    /// port.close();
    /// ```
    pub fn listen_udp<P: DatagramProtocol>(
        &self,
        addr: SocketAddr,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        self.listen_udp_with(addr, protocol, &UdpOptions::default())
    }

    /// [`listen_udp`](Reactor::listen_udp) with options (`SO_REUSEADDR`, `SO_REUSEPORT`,
    /// `IPV6_V6ONLY`, broadcast, buffer sizes, the send queue's bound, error reports).
    pub fn listen_udp_with<P: DatagramProtocol>(
        &self,
        addr: SocketAddr,
        protocol: P,
        options: &UdpOptions,
    ) -> Result<DatagramTransport, Error> {
        self.open_udp(addr, None, protocol, options)
    }

    fn open_udp<P: DatagramProtocol>(
        &self,
        addr: SocketAddr,
        peer: Option<SocketAddr>,
        protocol: P,
        options: &UdpOptions,
    ) -> Result<DatagramTransport, Error> {
        check_sizes(options.max_datagram_size, options.send_queue_limit)?;
        let inner = self.inner_open()?;
        let fail = |e| Error::io(format!("cannot listen on UDP {addr}"), e);
        let socket = open_socket(addr, options).map_err(fail)?;
        let peer = match peer {
            Some(peer) => {
                let to = SockAddr::from(peer);
                socket
                    .connect(&to)
                    .map_err(|e| Error::io(format!("cannot connect a UDP port to {peer}"), e))?;
                Some(to)
            }
            None => None,
        };
        let family = if addr.is_ipv6() {
            Family::Udp6
        } else {
            Family::Udp4
        };
        let error_queue = options.receive_errors
            && cfg!(target_os = "linux")
            && sys::enable_error_queue(socket.as_raw_fd(), addr.is_ipv6()).is_ok();
        let config = Config {
            max_datagram: options.max_datagram_size,
            queue_limit: Cell::new(options.send_queue_limit),
            error_queue,
        };
        Port::start(&inner, socket, family, config, boxed(protocol), peer, None)
    }

    /// Opens a UDP port on a free local port of `peer`'s family and connects it to
    /// `peer`: only `peer`'s datagrams are delivered, [`send`](DatagramTransport::send)
    /// goes to it, and its errors (ICMP port unreachable) reach `error_received`. For a
    /// chosen local address, [`listen_udp_with`](Reactor::listen_udp_with) and then
    /// [`DatagramTransport::connect`].
    pub fn connect_udp<P: DatagramProtocol>(
        &self,
        peer: SocketAddr,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        let local = match peer.ip() {
            IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        };
        if peer.port() == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("cannot connect a UDP port to {peer}: port 0 is not a destination"),
            ));
        }
        self.open_udp(local, Some(peer), protocol, &UdpOptions::default())
    }

    /// Runs a datagram port on a UDP socket made elsewhere (inherited from systemd with
    /// `ListenDatagram=`, or bound and connected by hand): Twisted's `adoptDatagramPort`.
    /// The socket is made non-blocking; if it is connected, the port is too. Ports adopted
    /// this way have the default options (error reports on, the default sizes).
    pub fn adopt_udp_socket<P: DatagramProtocol>(
        &self,
        socket: std::net::UdpSocket,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        let inner = self.inner_open()?;
        let fail = |e| Error::io("cannot adopt the UDP socket", e);
        socket.set_nonblocking(true).map_err(fail)?;
        let local = socket.local_addr().map_err(fail)?;
        let peer = socket.peer_addr().ok().map(SockAddr::from);
        let family = if local.is_ipv6() {
            Family::Udp6
        } else {
            Family::Udp4
        };
        let socket = Socket::from(socket);
        let error_queue = cfg!(target_os = "linux")
            && sys::enable_error_queue(socket.as_raw_fd(), local.is_ipv6()).is_ok();
        let config = Config {
            max_datagram: DEFAULT_MAX_DATAGRAM,
            queue_limit: Cell::new(DEFAULT_SEND_QUEUE_LIMIT),
            error_queue,
        };
        Port::start(&inner, socket, family, config, boxed(protocol), peer, None)
    }
}
