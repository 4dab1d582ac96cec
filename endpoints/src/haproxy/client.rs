//! The sending side: [`ProxyClientFactory`], a factory whose connections start with a
//! PROXY header before the wrapped factory's protocol says anything (what a proxy in front
//! of a server that reads the header does: HAProxy's `send-proxy`).

use std::rc::Rc;

use torsion_reactor::{
    Address, ClientFactory, ConnectionLost, Connector, Factory, Protocol, Transport,
};

use super::handoff::{self, Forward};
use super::header::{HeaderError, ProxyHeader, Version};

type MakeHeader = dyn Fn(&Transport) -> Result<Vec<u8>, HeaderError>;

/// Builds `C`'s protocols so that each connection first sends a PROXY header (version 1
/// or 2), then runs the protocol as usual: its `connection_made` comes right after the
/// header is written, and its own first bytes go out in the same packet.
///
/// The header is per connection, so it is given as a function of the new connection's
/// transport ([`ProxyClientFactory::new`]), or fixed ([`ProxyClientFactory::with_header`]), or
/// the connection's own addresses, as HAProxy's health checks send
/// ([`ProxyClientFactory::own_addresses`]). A TCP proxy relaying a client builds one per
/// client connection, from that client's `peer_addr()` and `local_addr()`. It is not an
/// endpoint parameter: a description string cannot know the client of each connection.
///
/// ```
/// use torsion_endpoints::haproxy::{ProxyClientFactory, ProxyHeader};
/// use torsion_reactor::{factory_fn, Protocol, Transport};
///
/// struct Request;
/// impl Protocol for Request {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(b"GET / HTTP/1.0\r\n\r\n"); // goes out right after the header
///     }
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
///
/// // Relaying for the client 192.0.2.7:40000, which connected to our 198.51.100.1:443.
/// let header = ProxyHeader::v2("192.0.2.7:40000".parse()?, "198.51.100.1:443".parse()?);
/// let factory = ProxyClientFactory::with_header(factory_fn(|_| Request), header)?;
/// // client_from_string(&reactor, "tcp:backend:8080")?.connect(factory) ...
/// # let _ = factory;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProxyClientFactory<C> {
    factory: C,
    header: Rc<MakeHeader>,
}

impl<C: Factory> ProxyClientFactory<C> {
    /// Sends the header `make` gives for each new connection (given its transport).
    pub fn new(
        factory: C,
        make: impl Fn(&Transport) -> ProxyHeader + 'static,
    ) -> ProxyClientFactory<C> {
        ProxyClientFactory {
            factory,
            header: Rc::new(move |t: &Transport| make(t).encode()),
        }
    }

    /// Sends `header` on every connection. Errors: the header cannot be encoded (see
    /// [`ProxyHeader::encode`]).
    pub fn with_header(
        factory: C,
        header: ProxyHeader,
    ) -> Result<ProxyClientFactory<C>, HeaderError> {
        let bytes = header.encode()?;
        Ok(ProxyClientFactory {
            factory,
            header: Rc::new(move |_: &Transport| Ok(bytes.clone())),
        })
    }

    /// Sends a header with the connection's own addresses (this end as the source, the
    /// server as the destination), as HAProxy does for its health checks.
    pub fn own_addresses(factory: C, version: Version) -> ProxyClientFactory<C> {
        ProxyClientFactory::new(factory, move |t| {
            ProxyHeader::for_addresses(version, &t.local_addr(), &t.peer_addr())
        })
    }

    /// The wrapped factory.
    pub fn factory(&self) -> &C {
        &self.factory
    }
}

impl<C: Factory> Factory for ProxyClientFactory<C> {
    type Protocol = SendHeader;

    fn build_protocol(&self, peer: &Address) -> Option<SendHeader> {
        let protocol = self.factory.build_protocol(peer)?;
        Some(SendHeader {
            header: Rc::clone(&self.header),
            state: Sending::Before(Some(handoff::boxed(protocol))),
        })
    }

    fn start_factory(&self) {
        self.factory.start_factory();
    }

    fn stop_factory(&self) {
        self.factory.stop_factory();
    }
}

impl<C: ClientFactory> ClientFactory for ProxyClientFactory<C> {
    fn started_connecting(&self, connector: &Connector) {
        self.factory.started_connecting(connector);
    }

    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        self.factory.client_connection_failed(connector, reason);
    }

    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        self.factory.client_connection_made(connector, transport);
    }

    fn client_connection_lost(&self, connector: &Connector, reason: &ConnectionLost) {
        self.factory.client_connection_lost(connector, reason);
    }
}

/// The protocol a [`ProxyClientFactory`] gives each connection: it writes the header, then
/// hands the connection to the wrapped factory's protocol (and is gone).
pub struct SendHeader {
    header: Rc<MakeHeader>,
    state: Sending,
}

enum Sending {
    Before(Option<Box<dyn Protocol>>),
    /// The transport could not switch protocols: this one passes the callbacks on.
    Forwarding(Forward),
    Done,
}

impl Protocol for SendHeader {
    fn connection_made(&mut self, transport: &Transport) {
        let Sending::Before(protocol) = &mut self.state else {
            return;
        };
        let Some(protocol) = protocol.take() else {
            return;
        };
        match (self.header)(transport) {
            Ok(bytes) => transport.write(&bytes),
            Err(e) => {
                log::error!(
                    "cannot send a PROXY header to {}: {e}; closing the connection",
                    transport.peer_addr()
                );
                self.state = Sending::Done;
                transport.abort_connection();
                return;
            }
        }
        self.state = match handoff::start(transport, protocol, &[]) {
            Some(forward) => Sending::Forwarding(forward),
            None => Sending::Done,
        };
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if let Sending::Forwarding(f) = &mut self.state {
            f.data_received(transport, data);
        }
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        match &mut self.state {
            Sending::Forwarding(f) => f.eof_received(transport),
            _ => false,
        }
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        if let Sending::Forwarding(f) = &mut self.state {
            f.connection_lost(reason);
        }
    }

    fn pause_writing(&mut self, transport: &Transport) {
        if let Sending::Forwarding(f) = &mut self.state {
            f.pause_writing(transport);
        }
    }

    fn resume_writing(&mut self, transport: &Transport) {
        if let Sending::Forwarding(f) = &mut self.state {
            f.resume_writing(transport);
        }
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        if let Sending::Forwarding(f) = &mut self.state {
            f.reading_resumed(transport);
        }
    }
}
