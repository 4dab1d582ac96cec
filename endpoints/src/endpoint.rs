//! Endpoint objects: a parsed description plus the means to listen or connect with it.

use std::cell::RefCell;
use std::fmt;

use torsion_reactor::{
    Address, BoxedClientFactory, BoxedFactory, ClientFactory, Connector, Deferred, Error, Factory,
    ListeningPort, Protocol, Reactor, Transport,
};

use crate::error::EndpointError;
use crate::registry::Registry;
use crate::spec::{ClientSpec, ServerSpec};

/// Where a server listens, built from a description such as `tcp:8000`
/// ([`server_from_string`]) or from a spec made in Rust ([`ServerEndpoint::new`]).
///
/// ```
/// use std::{cell::Cell, rc::Rc, time::Duration};
/// use torsion_endpoints::server_from_string;
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { t.write(d); }
/// }
///
/// let reactor = Reactor::current();
/// let endpoint = server_from_string(&reactor, "tcp:0:interface=127.0.0.1").unwrap();
/// let done = Rc::new(Cell::new(false));
/// let d = done.clone();
/// endpoint.listen(factory_fn(|_| Echo)).on_result(move |listening| {
///     match listening {
///         Ok(port) => println!("listening on {}", port.local_addr()),
///         Err(err) => eprintln!("{err}"), // names the address and the cause
///     }
///     d.set(true);
/// });
/// reactor.run_until(Duration::from_secs(5), || done.get()).unwrap();
/// ```
pub struct ServerEndpoint {
    spec: Box<dyn ServerSpec>,
    reactor: Option<Reactor>,
}

impl fmt::Debug for ServerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

impl<S: ServerSpec> From<S> for ServerEndpoint {
    /// An endpoint for a spec made in Rust: `ServerEndpoint::from(TcpServer::new(8000))`.
    fn from(spec: S) -> ServerEndpoint {
        ServerEndpoint::new(Box::new(spec))
    }
}

impl ServerEndpoint {
    /// An endpoint for an already-parsed (or directly constructed) spec, on the reactor of
    /// the thread that listens.
    ///
    /// ```
    /// use torsion_endpoints::{ServerEndpoint, TcpServer};
    ///
    /// let endpoint = ServerEndpoint::new(Box::new(TcpServer::new(8000)));
    /// assert_eq!(endpoint.spec().type_name(), "tcp");
    /// ```
    pub fn new(spec: Box<dyn ServerSpec>) -> ServerEndpoint {
        ServerEndpoint {
            spec,
            reactor: None,
        }
    }

    /// An endpoint for `spec` that listens on `reactor`.
    pub fn with_reactor(reactor: &Reactor, spec: Box<dyn ServerSpec>) -> ServerEndpoint {
        ServerEndpoint {
            spec,
            reactor: Some(reactor.clone()),
        }
    }

    /// What was parsed.
    pub fn spec(&self) -> &dyn ServerSpec {
        &*self.spec
    }

    /// The reactor this endpoint listens on: the one it was made with, else this thread's.
    pub fn reactor(&self) -> Reactor {
        self.reactor.clone().unwrap_or_else(Reactor::current)
    }

    /// Listens, with `factory` building a protocol per connection. The Deferred has already
    /// fired when this returns (binding does not wait): with the listening port, or with an
    /// error naming the address and the cause, such as `cannot listen on 127.0.0.1:8000:
    /// address already in use`, `... permission denied` or `... address not available on
    /// this machine` (an interface this host does not have).
    pub fn listen<F: Factory>(&self, factory: F) -> Deferred<ListeningPort> {
        Deferred::resolved(
            self.spec
                .listen(&self.reactor(), BoxedFactory::new(factory)),
        )
    }

    /// Listens now on `reactor`; the error names the address and the cause.
    pub fn listen_now<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        self.spec.listen(reactor, BoxedFactory::new(factory))
    }
}

/// Where a client connects, built from a description such as `tcp:host=example.org:port=80`
/// ([`client_from_string`]) or from a spec made in Rust ([`ClientEndpoint::new`]).
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
    spec: Box<dyn ClientSpec>,
    reactor: Option<Reactor>,
}

impl fmt::Debug for ClientEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientEndpoint")
            .field("spec", &self.spec)
            .finish()
    }
}

impl<S: ClientSpec> From<S> for ClientEndpoint {
    /// An endpoint for a spec made in Rust: `ClientEndpoint::from(TcpClient::new("example.org", 80))`.
    fn from(spec: S) -> ClientEndpoint {
        ClientEndpoint::new(Box::new(spec))
    }
}

/// Builds the one protocol it holds, for [`connect_protocol`].
struct OneProtocol<P>(RefCell<Option<P>>);

impl<P: Protocol> Factory for OneProtocol<P> {
    type Protocol = P;
    fn build_protocol(&self, _peer: &Address) -> Option<P> {
        self.0.borrow_mut().take()
    }
}

impl ClientEndpoint {
    /// An endpoint for an already-parsed (or directly constructed) spec, on the reactor of
    /// the thread that connects.
    ///
    /// ```
    /// use torsion_endpoints::{ClientEndpoint, TcpClient};
    ///
    /// let endpoint = ClientEndpoint::new(Box::new(TcpClient::new("example.org", 80)));
    /// assert_eq!(endpoint.spec().type_name(), "tcp");
    /// ```
    pub fn new(spec: Box<dyn ClientSpec>) -> ClientEndpoint {
        ClientEndpoint {
            spec,
            reactor: None,
        }
    }

    /// An endpoint for `spec` that connects on `reactor`.
    pub fn with_reactor(reactor: &Reactor, spec: Box<dyn ClientSpec>) -> ClientEndpoint {
        ClientEndpoint {
            spec,
            reactor: Some(reactor.clone()),
        }
    }

    /// What was parsed.
    pub fn spec(&self) -> &dyn ClientSpec {
        &*self.spec
    }

    /// The reactor this endpoint connects on: the one it was made with, else this thread's.
    pub fn reactor(&self) -> Reactor {
        self.reactor.clone().unwrap_or_else(Reactor::current)
    }

    /// Connects; `factory` builds the protocol of the connection (a [`ClientFactory`]'s
    /// extra callbacks are not called: the Deferred says how it went).
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
    pub fn connect<F: Factory>(&self, factory: F) -> Deferred<Transport> {
        self.spec
            .connect(&self.reactor(), BoxedFactory::new(factory))
    }

    /// Connects with `protocol` itself, for a single connection without a factory.
    pub fn connect_protocol<P: Protocol>(&self, protocol: P) -> Deferred<Transport> {
        self.connect(OneProtocol(RefCell::new(Some(protocol))))
    }

    /// Starts connecting now and returns the [`Connector`], for code that wants one (a
    /// reconnecting policy calls its `connect` again). A host name is resolved on the
    /// calling thread, which blocks, and only its first address is tried: prefer
    /// [`connect`](ClientEndpoint::connect).
    pub fn connect_now<F: ClientFactory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<Connector, Error> {
        self.spec
            .connect_connector(reactor, BoxedClientFactory::new(factory))
    }
}

/// Connects `endpoint` with `protocol` itself, for a single connection without a factory
/// (Twisted's `connectProtocol`).
///
/// ```no_run
/// use torsion_endpoints::{client_from_string, connect_protocol};
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
/// connect_protocol(&endpoint, Ping).on_result(|r| {
///     if let Err(err) = r {
///         eprintln!("{err}");
///     }
/// });
/// ```
pub fn connect_protocol<P: Protocol>(
    endpoint: &ClientEndpoint,
    protocol: P,
) -> Deferred<Transport> {
    endpoint.connect_protocol(protocol)
}

/// Parses a server description with the built-in types into an endpoint that listens on
/// `reactor` (Twisted's `serverFromString`).
pub fn server_from_string(
    reactor: &Reactor,
    description: &str,
) -> Result<ServerEndpoint, EndpointError> {
    Registry::builtins()
        .parse_server(description)
        .map(|spec| ServerEndpoint::with_reactor(reactor, spec))
}

/// Parses a client description with the built-in types into an endpoint that connects on
/// `reactor` (Twisted's `clientFromString`).
pub fn client_from_string(
    reactor: &Reactor,
    description: &str,
) -> Result<ClientEndpoint, EndpointError> {
    Registry::builtins()
        .parse_client(description)
        .map(|spec| ClientEndpoint::with_reactor(reactor, spec))
}

/// Parses a server description with the built-in types; the endpoint listens on the reactor
/// of the thread that listens.
pub fn server_endpoint(description: &str) -> Result<ServerEndpoint, EndpointError> {
    Registry::builtins()
        .parse_server(description)
        .map(ServerEndpoint::new)
}

/// Parses a client description with the built-in types; the endpoint connects on the
/// reactor of the thread that connects.
pub fn client_endpoint(description: &str) -> Result<ClientEndpoint, EndpointError> {
    Registry::builtins()
        .parse_client(description)
        .map(ClientEndpoint::new)
}
