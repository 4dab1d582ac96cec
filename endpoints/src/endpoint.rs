//! Endpoint objects: a parsed description plus the means to listen or connect with it.

use torsion_reactor::{
    BoxedClientFactory, BoxedFactory, ClientFactory, Connector, Error, Factory, ListeningPort,
    Reactor,
};

use crate::error::EndpointError;
use crate::registry::Registry;
use crate::spec::{ClientSpec, ServerSpec};

/// Where a server listens, built from a description such as `tcp:8000`.
///
/// ```
/// use torsion_endpoints::server_endpoint;
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { let _ = t.write(d); }
/// }
///
/// let endpoint = server_endpoint("tcp:0:interface=127.0.0.1").unwrap();
/// let port = endpoint.listen_now(&Reactor::current(), factory_fn(|_| Some(Echo))).unwrap();
/// assert!(port.local_addr().to_string().starts_with("127.0.0.1:"));
/// port.stop_listening();
/// ```
#[derive(Debug)]
pub struct ServerEndpoint {
    spec: Box<dyn ServerSpec>,
}

impl ServerEndpoint {
    /// An endpoint for an already-parsed (or directly constructed) spec.
    pub fn new(spec: Box<dyn ServerSpec>) -> ServerEndpoint {
        ServerEndpoint { spec }
    }

    /// What was parsed.
    pub fn spec(&self) -> &dyn ServerSpec {
        &*self.spec
    }

    /// Listens now; the error names the address and the cause.
    pub fn listen_now<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        self.spec.listen(reactor, BoxedFactory::new(factory))
    }
}

/// Where a client connects, built from a description such as `tcp:host=example.org:port=80`.
#[derive(Debug)]
pub struct ClientEndpoint {
    spec: Box<dyn ClientSpec>,
}

impl ClientEndpoint {
    /// An endpoint for an already-parsed (or directly constructed) spec.
    pub fn new(spec: Box<dyn ClientSpec>) -> ClientEndpoint {
        ClientEndpoint { spec }
    }

    /// What was parsed.
    pub fn spec(&self) -> &dyn ClientSpec {
        &*self.spec
    }

    /// Starts connecting now. Host names are resolved before this returns.
    pub fn connect_now<F: ClientFactory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<Connector, Error> {
        self.spec.connect(reactor, BoxedClientFactory::new(factory))
    }
}

/// Parses a server description with the built-in types.
pub fn server_endpoint(description: &str) -> Result<ServerEndpoint, EndpointError> {
    Registry::builtins()
        .parse_server(description)
        .map(ServerEndpoint::new)
}

/// Parses a client description with the built-in types.
pub fn client_endpoint(description: &str) -> Result<ClientEndpoint, EndpointError> {
    Registry::builtins()
        .parse_client(description)
        .map(ClientEndpoint::new)
}
