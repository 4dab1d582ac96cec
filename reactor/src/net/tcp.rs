//! TCP: `listen_tcp` and `connect_tcp`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::client::{
    BoxedClientFactory, ClientFactory, Connector, ConnectorImpl, DEFAULT_CONNECT_TIMEOUT, Dial,
};
use super::factory::{BoxedFactory, Factory};
use super::listen::{Acceptor, Listener, ListeningPort, Route};
use super::protocol::Address;
use crate::error::Error;
use crate::event_loop::Reactor;

/// Default listen backlog. (Twisted uses 50; Linux caps it at `net.core.somaxconn`,
/// 4096 by default, and a burst of connections beyond the backlog costs clients a
/// one-second SYN retry, so torsion asks for more.)
pub const DEFAULT_BACKLOG: u32 = 1024;

/// Options for [`Reactor::listen_tcp_with`].
#[derive(Clone, Debug)]
pub struct TcpListenOptions {
    /// Pending-connection queue length (default [`DEFAULT_BACKLOG`]).
    pub backlog: u32,
    /// `SO_REUSEPORT`: several sockets (one reactor per core) share the port, and the
    /// kernel spreads connections among them. Default off.
    pub reuse_port: bool,
    /// For IPv6 addresses: accept IPv6 only (`Some(true)`), also IPv4-mapped
    /// (`Some(false)`), or the system default (`None`).
    pub ipv6_only: Option<bool>,
}

impl Default for TcpListenOptions {
    fn default() -> Self {
        TcpListenOptions {
            backlog: DEFAULT_BACKLOG,
            reuse_port: false,
            ipv6_only: None,
        }
    }
}

/// Options for [`Reactor::connect_tcp_with`].
#[derive(Clone, Debug)]
pub struct TcpConnectOptions {
    /// Give up after this long (default [`DEFAULT_CONNECT_TIMEOUT`]); `None` waits for the OS.
    pub timeout: Option<Duration>,
    /// Bind the local end to this address first (port 0 lets the OS choose).
    pub bind_addr: Option<SocketAddr>,
}

impl Default for TcpConnectOptions {
    fn default() -> Self {
        TcpConnectOptions {
            timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            bind_addr: None,
        }
    }
}

struct TcpAcceptor {
    listener: TcpListener,
    local: SocketAddr,
}

impl AsRawFd for TcpAcceptor {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl Acceptor for TcpAcceptor {
    type Stream = TcpStream;

    fn accept(&self) -> io::Result<(TcpStream, Address)> {
        let (fd, addr) = crate::io::sys::accept(self.listener.as_raw_fd())?;
        let peer = addr
            .as_socket()
            .map(Address::Tcp)
            .unwrap_or_else(|| Address::Other("(unknown peer)".into()));
        // TCP_NODELAY is inherited from the listening socket on Linux; no call needed here.
        Ok((TcpStream::from(fd), peer))
    }

    fn local(&self) -> Address {
        Address::Tcp(self.local)
    }
}

fn bind_listener(addr: SocketAddr, options: &TcpListenOptions) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    if addr.is_ipv6() {
        if let Some(only) = options.ipv6_only {
            socket.set_only_v6(only)?;
        }
    }
    socket.set_reuse_address(true)?;
    if options.reuse_port {
        socket.set_reuse_port(true)?;
    }
    // Accepted sockets inherit this: small writes go out at once (asyncio's default too).
    socket.set_tcp_nodelay(true)?;
    socket.bind(&SockAddr::from(addr))?;
    let backlog = options.backlog.clamp(1, i32::MAX as u32) as i32;
    socket.listen(backlog)?;
    Ok(socket.into())
}

struct TcpDial {
    addr: SocketAddr,
    bind: Option<SocketAddr>,
}

impl Dial for TcpDial {
    type Stream = TcpStream;

    fn dial(&self) -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(self.addr),
            Type::STREAM.nonblocking().cloexec(),
            None,
        )?;
        if let Some(bind) = self.bind {
            socket.bind(&SockAddr::from(bind))?;
        }
        socket.set_tcp_nodelay(true)?;
        super::client::start_connect(&socket, &SockAddr::from(self.addr))?;
        Ok(socket)
    }

    fn stream_from(&self, socket: Socket) -> TcpStream {
        socket.into()
    }

    fn peer(&self) -> Address {
        Address::Tcp(self.addr)
    }

    fn local_of(&self, stream: &TcpStream) -> Address {
        stream
            .local_addr()
            .map(Address::Tcp)
            .unwrap_or_else(|_| Address::Other("(unknown)".into()))
    }
}

impl Reactor {
    /// Listens for TCP connections on `addr`; `factory` builds a protocol for each.
    ///
    /// The error names the address and the cause, e.g. `cannot listen on 127.0.0.1:8000:
    /// address already in use`. To serve one factory on several ports, give each a clone of
    /// a [`SharedFactory`](crate::SharedFactory).
    ///
    /// ```
    /// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
    ///
    /// struct Echo;
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
    ///         t.write(data);
    ///     }
    /// }
    ///
    /// let reactor = Reactor::current();
    /// let port = reactor
    ///     .listen_tcp("127.0.0.1:0".parse().unwrap(), factory_fn(|_| Echo))
    ///     .unwrap();
    /// println!("listening on {}", port.local_addr());
    /// port.stop_listening();
    /// ```
    pub fn listen_tcp<F: Factory>(
        &self,
        addr: SocketAddr,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        self.listen_tcp_with(addr, factory, &TcpListenOptions::default())
    }

    /// [`listen_tcp`](Reactor::listen_tcp) with options (backlog, `SO_REUSEPORT`,
    /// `IPV6_V6ONLY`).
    pub fn listen_tcp_with<F: Factory>(
        &self,
        addr: SocketAddr,
        factory: F,
        options: &TcpListenOptions,
    ) -> Result<ListeningPort, Error> {
        self.listen_tcp_route(addr, Rc::new(BoxedFactory::new(factory)), options)
    }

    /// Listens on `addr`, accepted connections going to `route`.
    pub(crate) fn listen_tcp_route(
        &self,
        addr: SocketAddr,
        route: Rc<dyn Route<TcpStream>>,
        options: &TcpListenOptions,
    ) -> Result<ListeningPort, Error> {
        let listener = bind_listener(addr, options)
            .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
        let acceptor = TcpAcceptor { listener, local };
        let listener = Listener::start(&self.inner_open()?, acceptor, route)?;
        Ok(ListeningPort { port: listener })
    }

    /// Serves connections on an already-listening socket, such as one inherited from systemd
    /// (socket activation). The socket is made non-blocking.
    pub fn adopt_tcp_listener<F: Factory>(
        &self,
        listener: TcpListener,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        let fail = |e| Error::io("cannot adopt the inherited TCP socket", e);
        listener.set_nonblocking(true).map_err(fail)?;
        let local = listener.local_addr().map_err(fail)?;
        let acceptor = TcpAcceptor { listener, local };
        let listener = Listener::start(
            &self.inner_open()?,
            acceptor,
            Rc::new(BoxedFactory::new(factory)),
        )?;
        Ok(ListeningPort { port: listener })
    }

    /// Connects to `addr`, giving up after [`DEFAULT_CONNECT_TIMEOUT`]; when connected,
    /// `factory` builds the protocol. The returned [`Connector`] can stop the attempt,
    /// disconnect, or connect again. (To connect to a host name, use a `tcp:` client
    /// endpoint: it resolves names off the reactor thread and tries every address.)
    pub fn connect_tcp<F: ClientFactory>(&self, addr: SocketAddr, factory: F) -> Connector {
        self.connect_tcp_with(addr, factory, &TcpConnectOptions::default())
    }

    /// [`connect_tcp`](Reactor::connect_tcp) with options (timeout, local address).
    pub fn connect_tcp_with<F: ClientFactory>(
        &self,
        addr: SocketAddr,
        factory: F,
        options: &TcpConnectOptions,
    ) -> Connector {
        let dial = TcpDial {
            addr,
            bind: options.bind_addr,
        };
        let connector = ConnectorImpl::new(
            &self.inner,
            dial,
            BoxedClientFactory::new(factory),
            options.timeout,
        );
        let handle = Connector(connector);
        handle.connect();
        handle
    }
}
