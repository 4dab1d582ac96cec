//! Endpoints: a parsed (or built) spec bound to a reactor, with the means to listen or
//! connect. [`server_from_string`] and [`client_from_string`] parse with the built-in types;
//! [`ServerEndpoint::new`] and [`ClientEndpoint::new`] take a spec made in Rust or parsed
//! by a [`Registry`](crate::Registry) of your own. Datagram types (`udp`, `udp6`,
//! `unixgram`) have their own endpoints, [`DatagramEndpoint`] and
//! [`DatagramClientEndpoint`], which take a [`DatagramProtocol`] instead of a factory.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use torsion_reactor::{
    Address, ClientFactory, Connector, DatagramProtocol, DatagramTransport, Deferred, Error,
    Factory, ListeningPort, Protocol, Reactor, Transport,
};

use crate::attempt::connect_once;
use crate::connector::connector;
use crate::error::{EndpointError, ErrorKind};
use crate::registry::Registry;
use crate::spec::{ClientSpec, ServerSpec};
use crate::types;

/// Parses a server description with the built-in types into an endpoint that listens on
/// `reactor` (Twisted's `serverFromString`). The error names the offending part of the
/// description.
///
/// ```
/// use torsion_endpoints::server_from_string;
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { t.write(d); }
/// }
///
/// let reactor = Reactor::current();
/// let port = server_from_string(&reactor, "tcp:0:interface=127.0.0.1")
///     .unwrap()
///     .listen(factory_fn(|_| Echo))
///     .unwrap(); // an error names the address and the cause
/// println!("listening on {}", port.local_addr());
/// port.stop_listening();
/// ```
///
/// A datagram type (`udp:53`) is an [`ErrorKind::WrongTransport`] error here: open it with
/// [`datagram_from_string`].
pub fn server_from_string(
    reactor: &Reactor,
    description: &str,
) -> Result<ServerEndpoint, EndpointError> {
    let spec = Registry::builtins().parse_server(description)?;
    if spec.is_datagram() {
        return Err(wrong_transport(description, spec.type_name(), true));
    }
    Ok(ServerEndpoint::new(reactor, spec))
}

/// Parses a client description with the built-in types into an endpoint that connects on
/// `reactor` (Twisted's `clientFromString`). The error names the offending part of the
/// description. A datagram type (`udp:host=h:port=p`) is an [`ErrorKind::WrongTransport`]
/// error here: use [`datagram_client_from_string`].
pub fn client_from_string(
    reactor: &Reactor,
    description: &str,
) -> Result<ClientEndpoint, EndpointError> {
    let spec = Registry::builtins().parse_client(description)?;
    if spec.is_datagram() {
        return Err(wrong_transport(description, spec.type_name(), false));
    }
    Ok(ClientEndpoint::new(reactor, spec))
}

/// The error for a description of the other kind of transport.
fn wrong_transport(description: &str, type_name: &str, datagram: bool) -> EndpointError {
    let detail = if datagram {
        format!(
            "{type_name} is a datagram endpoint type: open it with datagram_from_string \
             (or datagram_client_from_string) and a DatagramProtocol; stream types: tcp, \
             tcp6, unix, systemd"
        )
    } else {
        format!(
            "{type_name} is a stream endpoint type: listen with server_from_string (or \
             connect with client_from_string) and a factory; datagram types: udp, udp6, \
             unixgram"
        )
    };
    EndpointError::new(ErrorKind::WrongTransport, description, detail).with_param(type_name)
}

/// Parses a datagram server description (`udp:5353`, `udp6:53:interface=\:\:1`,
/// `unixgram:/run/log.sock`) with the built-in types into an endpoint whose
/// [`listen`](DatagramEndpoint::listen) opens the port on `reactor`. A stream type
/// (`tcp:80`) is an [`ErrorKind::WrongTransport`] error; other errors name the offending
/// part of the description.
///
/// ```
/// use torsion_endpoints::datagram_from_string;
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
/// let port = datagram_from_string(&reactor, "udp:0:interface=127.0.0.1")
///     .unwrap()
///     .listen(Echo)
///     .unwrap(); // an error names the address and the cause
/// println!("listening on {}", port.local_addr());
/// port.close();
/// ```
pub fn datagram_from_string(
    reactor: &Reactor,
    description: &str,
) -> Result<DatagramEndpoint, EndpointError> {
    let spec = Registry::builtins().parse_server(description)?;
    if !spec.is_datagram() {
        return Err(wrong_transport(description, spec.type_name(), false));
    }
    Ok(DatagramEndpoint::new(reactor, spec))
}

/// Parses a datagram client description (`udp:host=example.org:port=53`, `udp:H:P`,
/// `unixgram:/run/log.sock`) with the built-in types into an endpoint whose
/// [`connect`](DatagramClientEndpoint::connect) opens a port connected to that peer. A
/// stream type is an [`ErrorKind::WrongTransport`] error.
pub fn datagram_client_from_string(
    reactor: &Reactor,
    description: &str,
) -> Result<DatagramClientEndpoint, EndpointError> {
    let spec = Registry::builtins().parse_client(description)?;
    if !spec.is_datagram() {
        return Err(wrong_transport(description, spec.type_name(), false));
    }
    Ok(DatagramClientEndpoint::new(reactor, spec))
}

/// Where a datagram port listens, on which reactor: from a description such as `udp:5353`
/// ([`datagram_from_string`]) or a spec ([`DatagramEndpoint::new`]).
pub struct DatagramEndpoint {
    spec: Box<dyn ServerSpec>,
    reactor: Reactor,
}

impl fmt::Debug for DatagramEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

impl DatagramEndpoint {
    /// An endpoint for `spec` on `reactor`: a spec made in Rust (`UdpServer::new(5353)`) or
    /// a parsed one.
    ///
    /// ```
    /// use torsion_endpoints::{DatagramEndpoint, UdpServer};
    /// use torsion_reactor::Reactor;
    ///
    /// let endpoint = DatagramEndpoint::new(&Reactor::current(), UdpServer::new(5353));
    /// assert_eq!(endpoint.spec().type_name(), "udp");
    /// ```
    pub fn new(reactor: &Reactor, spec: impl Into<Box<dyn ServerSpec>>) -> DatagramEndpoint {
        DatagramEndpoint {
            spec: spec.into(),
            reactor: reactor.clone(),
        }
    }

    /// What it listens on.
    pub fn spec(&self) -> &dyn ServerSpec {
        &*self.spec
    }

    /// The reactor it listens on.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    /// Opens the port now, with `protocol` getting its datagrams (its `connection_made`
    /// runs from the loop). The error names the address and the cause: `cannot listen on
    /// UDP 0.0.0.0:53: permission denied`, `cannot listen on /run/log.sock: the socket is in
    /// use by process 812 (lock file /run/log.sock.lock)`; a stream spec says it is not a
    /// datagram endpoint.
    pub fn listen<P: DatagramProtocol>(&self, protocol: P) -> Result<DatagramTransport, Error> {
        types::listen_datagram(&*self.spec, &self.reactor, protocol)
    }
}

/// Where a connected datagram port sends, on which reactor: from a description such as
/// `udp:host=127.0.0.1:port=8000` ([`datagram_client_from_string`]) or a spec
/// ([`DatagramClientEndpoint::new`]).
pub struct DatagramClientEndpoint {
    spec: Box<dyn ClientSpec>,
    reactor: Reactor,
}

impl fmt::Debug for DatagramClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramClientEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

impl DatagramClientEndpoint {
    /// An endpoint for `spec` on `reactor`: a spec made in Rust
    /// (`UdpClient::new("example.org", 53)`) or a parsed one.
    pub fn new(reactor: &Reactor, spec: impl Into<Box<dyn ClientSpec>>) -> DatagramClientEndpoint {
        DatagramClientEndpoint {
            spec: spec.into(),
            reactor: reactor.clone(),
        }
    }

    /// What it connects to.
    pub fn spec(&self) -> &dyn ClientSpec {
        &*self.spec
    }

    /// Opens a port connected to the described peer: a `udp` host name is resolved on the
    /// reactor's thread pool first (within `timeout`), then the first address a socket can
    /// be connected to is used. The Deferred fires with the port's transport (the
    /// protocol's `connection_made` runs from the loop after it), or fails naming the peer
    /// and the cause (`cannot connect to nosuch.example:53: cannot resolve the host name:
    /// ...`, `cannot connect to the Unix datagram socket /run/log.sock: connection
    /// refused`).
    pub fn connect<P: DatagramProtocol>(&self, protocol: P) -> Deferred<DatagramTransport> {
        types::connect_datagram(&*self.spec, &self.reactor, protocol)
    }
}

/// Where a server listens, on which reactor: from a description such as `tcp:8000`
/// ([`server_from_string`]) or a spec ([`ServerEndpoint::new`]).
pub struct ServerEndpoint {
    spec: Box<dyn ServerSpec>,
    reactor: Reactor,
}

impl fmt::Debug for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

impl ServerEndpoint {
    /// An endpoint for `spec` that listens on `reactor`: a spec made in Rust
    /// (`TcpServer::new(8000)`) or a parsed one (`Box<dyn ServerSpec>`).
    ///
    /// ```
    /// use torsion_endpoints::{ServerEndpoint, TcpServer};
    /// use torsion_reactor::Reactor;
    ///
    /// let endpoint = ServerEndpoint::new(&Reactor::current(), TcpServer::new(8000));
    /// assert_eq!(endpoint.spec().type_name(), "tcp");
    /// ```
    pub fn new(reactor: &Reactor, spec: impl Into<Box<dyn ServerSpec>>) -> ServerEndpoint {
        ServerEndpoint {
            spec: spec.into(),
            reactor: reactor.clone(),
        }
    }

    /// What it listens on.
    pub fn spec(&self) -> &dyn ServerSpec {
        &*self.spec
    }

    /// The reactor it listens on.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    /// Listens now, with `factory` building a protocol per connection (binding does not
    /// wait, so this is a plain `Result`). The error names the address and the cause, such
    /// as `cannot listen on 127.0.0.1:8000: address already in use`, `... permission denied`
    /// or `... address not available on this machine` (an interface this host does not
    /// have).
    pub fn listen<F: Factory>(&self, factory: F) -> Result<ListeningPort, Error> {
        types::listen(&*self.spec, &self.reactor, factory)
    }
}

/// Where a client connects, on which reactor: from a description such as
/// `tcp:host=example.org:port=80` ([`client_from_string`]) or a spec
/// ([`ClientEndpoint::new`]).
///
/// ```no_run
/// use torsion_endpoints::client_from_string;
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) { t.write(b"hello\n"); }
///     fn data_received(&mut self, _: &Transport, data: &[u8]) {
///         print!("{}", String::from_utf8_lossy(data));
///     }
/// }
///
/// let reactor = Reactor::current();
/// let endpoint = client_from_string(&reactor, "tcp:example.org:7:timeout=5").unwrap();
/// let connecting = endpoint.connect(factory_fn(|_| Hello));
/// // `connecting.cancel()` would give up; the Deferred fails on timeout, refusal or an
/// // unknown host, naming the host and port.
/// match reactor.run_until_complete(connecting).unwrap() {
///     Ok(transport) => println!("connected to {}", transport.peer_addr()),
///     Err(err) => eprintln!("{err}"),
/// }
/// ```
pub struct ClientEndpoint {
    spec: Rc<dyn ClientSpec>,
    reactor: Reactor,
}

impl fmt::Debug for ClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

/// Builds the one protocol it holds, for [`ClientEndpoint::connect_protocol`].
struct OneProtocol<P>(RefCell<Option<P>>);

impl<P: Protocol> Factory for OneProtocol<P> {
    type Protocol = P;
    fn build_protocol(&self, _peer: &Address) -> Option<P> {
        self.0.borrow_mut().take()
    }
}

impl ClientEndpoint {
    /// An endpoint for `spec` that connects on `reactor`: a spec made in Rust
    /// (`TcpClient::new("example.org", 80)`) or a parsed one (`Box<dyn ClientSpec>`).
    ///
    /// ```
    /// use torsion_endpoints::{ClientEndpoint, TcpClient};
    /// use torsion_reactor::Reactor;
    ///
    /// let endpoint = ClientEndpoint::new(&Reactor::current(), TcpClient::new("example.org", 80));
    /// assert_eq!(endpoint.spec().type_name(), "tcp");
    /// ```
    pub fn new(reactor: &Reactor, spec: impl Into<Box<dyn ClientSpec>>) -> ClientEndpoint {
        ClientEndpoint {
            spec: Rc::from(spec.into()),
            reactor: reactor.clone(),
        }
    }

    /// Where it connects.
    pub fn spec(&self) -> &dyn ClientSpec {
        &*self.spec
    }

    /// The reactor it connects on.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    /// Connects once; `factory` builds the protocol of the connection (the extra callbacks
    /// of a [`ClientFactory`] are not called: the Deferred says how it went; for those, and
    /// to connect again, use [`connector`](ClientEndpoint::connector)).
    ///
    /// The Deferred fires with the connection's transport, after the protocol's
    /// `connection_made`. It fails with an error that names the host and port (or the
    /// socket path) and the cause: `cannot connect to example.org:80 (tried [2001:db8::1]:80,
    /// 192.0.2.1:80): connection refused`, `cannot connect to example.org:80: timed out
    /// after 30s`, `cannot connect to nosuch.example:80: cannot resolve the host name: ...`.
    /// Its kind is [`ErrorKind::TimedOut`](torsion_reactor::ErrorKind::TimedOut) for the
    /// timeout and [`ErrorKind::Io`](torsion_reactor::ErrorKind::Io) with the OS error for
    /// refusals and resolution failures. Cancelling it stops connecting.
    ///
    /// For `tcp:` a host name is resolved on the reactor's thread pool, then its addresses
    /// are tried Happy-Eyeballs style (see [`happy_eyeballs`](crate::happy_eyeballs)).
    /// `factory`'s `start_factory` runs now and `stop_factory` when the connect fails or
    /// the connection is lost.
    pub fn connect<F: Factory>(&self, factory: F) -> Deferred<Transport> {
        connect_once(factory, |factory| {
            types::connect(&*self.spec, &self.reactor, factory)
        })
    }

    /// Connects with `protocol` itself, for a single connection without a factory
    /// (Twisted's `connectProtocol`).
    ///
    /// ```no_run
    /// use torsion_endpoints::client_from_string;
    /// use torsion_reactor::{Protocol, Reactor, Transport};
    ///
    /// struct Ping;
    /// impl Protocol for Ping {
    ///     fn connection_made(&mut self, t: &Transport) { t.write(b"PING\r\n"); }
    ///     fn data_received(&mut self, t: &Transport, _: &[u8]) { t.lose_connection(); }
    /// }
    ///
    /// let reactor = Reactor::current();
    /// let endpoint = client_from_string(&reactor, "unix:/run/app.sock").unwrap();
    /// endpoint.connect_protocol(Ping).on_result(|r| {
    ///     if let Err(err) = r {
    ///         eprintln!("{err}");
    ///     }
    /// });
    /// ```
    pub fn connect_protocol<P: Protocol>(&self, protocol: P) -> Deferred<Transport> {
        self.connect(OneProtocol(RefCell::new(Some(protocol))))
    }

    /// A [`Connector`] that connects the way [`connect`](ClientEndpoint::connect) does,
    /// each time its `connect()` is called (nothing happens before the first call): for
    /// `tcp:` the host name is resolved off the reactor thread every time and its addresses
    /// raced. `factory` is told everything a reactor connector tells a client factory, with
    /// this connector as the one named, so a
    /// [`Reconnecting`](torsion_reactor::Reconnecting) factory reconnects by host name.
    /// The reason given to `client_connection_failed` for an error other than a timeout or
    /// a cancellation is a [`ConnectionLost::Refused`](torsion_reactor::ConnectionLost::Refused)
    /// whose message is the whole error (the host, the addresses tried, the cause).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use torsion_endpoints::client_from_string;
    /// use torsion_reactor::{
    ///     Address, Backoff, ClientFactory, Factory, Protocol, Reactor, Reconnecting,
    ///     SharedFactory, Transport,
    /// };
    ///
    /// struct Tail;
    /// impl Protocol for Tail {
    ///     fn data_received(&mut self, _: &Transport, data: &[u8]) {
    ///         print!("{}", String::from_utf8_lossy(data));
    ///     }
    /// }
    ///
    /// struct Tails;
    /// impl Factory for Tails {
    ///     type Protocol = Tail;
    ///     fn build_protocol(&self, _: &Address) -> Option<Tail> { Some(Tail) }
    /// }
    /// impl ClientFactory for Tails {} // told of failures and losses; Reconnecting acts on them
    ///
    /// let reactor = Reactor::current();
    /// let endpoint = client_from_string(&reactor, "tcp:host=logs.example:port=6000").unwrap();
    /// let backoff = Backoff::default().with_max(Duration::from_secs(30));
    /// let client = SharedFactory::new(Reconnecting::new(Tails, backoff));
    /// endpoint.connector(client.clone()).connect();
    /// reactor.run().unwrap(); // `client.stop_trying()` stops reconnecting
    /// ```
    pub fn connector<F: ClientFactory>(&self, factory: F) -> Connector {
        connector(&self.reactor, Rc::clone(&self.spec), factory)
    }
}
