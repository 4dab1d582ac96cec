//! Factories that put a TLS layer in front of every protocol another factory builds:
//! [`TlsServerFactory`] (listen with it) and [`TlsClientFactory`] (connect with it).

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use rustls::pki_types::ServerName;
use torsion_reactor::{
    Address, ClientFactory, ConnectionLost, Connector, Deferred, Factory, Protocol, Resolver,
    Transport,
};

use crate::client::TlsConnector;
use crate::layer::{Observer, TlsLayer};
use crate::server::TlsAcceptor;

/// `protocol` as one box: a protocol that already is a `Box<dyn Protocol>` is not boxed
/// again.
pub(crate) fn boxed<P: Protocol>(protocol: P) -> Box<dyn Protocol> {
    let mut slot = Some(protocol);
    if let Some(already) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Box<dyn Protocol>>>() {
        if let Some(b) = already.take() {
            return b;
        }
    }
    match slot {
        Some(p) => Box::new(p),
        None => Box::new(Nothing),
    }
}

/// Never built: the place of a protocol that was already taken.
struct Nothing;

impl Protocol for Nothing {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
}

/// Builds `F`'s protocols behind a server TLS layer each: what
/// [`TlsAcceptor::wrap`] returns, to listen with.
///
/// ```no_run
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
/// use torsion_tls::ServerOptions;
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { t.write(d); }
/// }
///
/// let acceptor = ServerOptions::from_pem_files("cert.pem", "key.pem")?.build()?;
/// let reactor = Reactor::current();
/// // Over a Unix socket just as well: reactor.listen_unix(path, acceptor.wrap(...)).
/// reactor.listen_tcp("127.0.0.1:8443".parse()?, acceptor.wrap(factory_fn(|_| Echo)))?;
/// reactor.run()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TlsServerFactory<F> {
    acceptor: TlsAcceptor,
    factory: F,
}

impl<F: Factory> TlsServerFactory<F> {
    pub(crate) fn new(acceptor: TlsAcceptor, factory: F) -> TlsServerFactory<F> {
        TlsServerFactory { acceptor, factory }
    }

    /// The acceptor (to reload its certificates).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The wrapped factory.
    pub fn factory(&self) -> &F {
        &self.factory
    }
}

impl<F: Factory> Factory for TlsServerFactory<F> {
    type Protocol = TlsLayer;

    fn build_protocol(&self, peer: &Address) -> Option<TlsLayer> {
        let protocol = self.factory.build_protocol(peer)?;
        match self.acceptor.layer(boxed(protocol)) {
            Ok(layer) => Some(layer),
            Err(err) => {
                log::error!("{err}; the connection from {peer} is closed");
                None
            }
        }
    }

    fn start_factory(&self) {
        self.factory.start_factory();
    }

    fn stop_factory(&self) {
        self.factory.stop_factory();
    }
}

struct ClientShared<C> {
    connector: TlsConnector,
    name: ServerName<'static>,
    factory: C,
    /// The connector of the connection being made (told to `factory` with the TLS
    /// transport once the handshake is done).
    handle: RefCell<Option<Connector>>,
    /// The transport under the TLS layer of the connection being made.
    lower: RefCell<Option<Transport>>,
    /// Waiting for the next connection's handshake.
    waiting: RefCell<Vec<Resolver<Transport>>>,
}

impl<C: ClientFactory> Observer for ClientShared<C> {
    fn ready(&self, transport: &Transport) {
        let handle = self.handle.borrow().clone();
        if let Some(handle) = handle {
            self.factory.client_connection_made(&handle, transport);
        }
    }

    fn failed(&self, reason: &ConnectionLost) {
        self.lower.borrow_mut().take();
        let handle = self.handle.borrow().clone();
        if let Some(handle) = handle {
            self.factory.client_connection_failed(&handle, reason);
        }
    }

    fn lost(&self, reason: &ConnectionLost) {
        self.lower.borrow_mut().take();
        let handle = self.handle.borrow().clone();
        if let Some(handle) = handle {
            self.factory.client_connection_lost(&handle, reason);
        }
    }
}

/// Builds `C`'s protocols behind a client TLS layer each: what [`TlsConnector::wrap`]
/// returns, to connect with. `C` is told `client_connection_made` with the TLS transport
/// once the handshake is done, `client_connection_failed` if the connect or the handshake
/// fails (a TLS failure as [`ConnectionLost::Tls`]), and `client_connection_lost` after its
/// protocol's `connection_lost`.
pub struct TlsClientFactory<C> {
    shared: Rc<ClientShared<C>>,
}

impl<C: ClientFactory> TlsClientFactory<C> {
    pub(crate) fn new(
        connector: TlsConnector,
        name: ServerName<'static>,
        factory: C,
    ) -> TlsClientFactory<C> {
        TlsClientFactory {
            shared: Rc::new(ClientShared {
                connector,
                name,
                factory,
                handle: RefCell::new(None),
                lower: RefCell::new(None),
                waiting: RefCell::new(Vec::new()),
            }),
        }
    }

    /// The wrapped factory.
    pub fn factory(&self) -> &C {
        &self.shared.factory
    }

    /// A Deferred of the next connection's handshake: it fires with the TLS transport once
    /// the handshake is done (after the protocol's `connection_made`), and fails if the
    /// handshake fails (an [`ErrorKind::Tls`](torsion_reactor::ErrorKind::Tls) error for a
    /// TLS failure). Cancelling it aborts that connection.
    pub fn next_handshake(&self) -> Deferred<Transport> {
        let shared = Rc::downgrade(&self.shared);
        let (d, resolver) = Deferred::with_canceller(move |_| {
            let lower = shared.upgrade().and_then(|s| s.lower.borrow_mut().take());
            if let Some(lower) = lower {
                lower.abort_connection();
            }
        });
        self.shared.waiting.borrow_mut().push(resolver);
        d
    }
}

impl<C: ClientFactory> Factory for TlsClientFactory<C> {
    type Protocol = TlsLayer;

    fn build_protocol(&self, peer: &Address) -> Option<TlsLayer> {
        let protocol = self.shared.factory.build_protocol(peer)?;
        let layer = match self
            .shared
            .connector
            .layer(self.shared.name.clone(), boxed(protocol))
        {
            Ok(layer) => layer,
            Err(err) => {
                log::error!("{err}; the connection to {peer} is closed");
                return None;
            }
        };
        layer.set_observer(Rc::clone(&self.shared) as Rc<dyn Observer>);
        let waiting = std::mem::take(&mut *self.shared.waiting.borrow_mut());
        for resolver in waiting {
            layer.handshake().on_result(move |r| {
                let _ = match r {
                    Ok(t) => resolver.callback(t),
                    Err(e) => resolver.errback(e),
                };
            });
        }
        Some(layer)
    }

    fn start_factory(&self) {
        self.shared.factory.start_factory();
    }

    fn stop_factory(&self) {
        self.shared.factory.stop_factory();
    }
}

impl<C: ClientFactory> ClientFactory for TlsClientFactory<C> {
    fn started_connecting(&self, connector: &Connector) {
        self.shared.factory.started_connecting(connector);
    }

    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        self.shared
            .factory
            .client_connection_failed(connector, reason);
    }

    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        // The factory hears of it once the handshake is done (the layer's observer).
        *self.shared.handle.borrow_mut() = Some(connector.clone());
        *self.shared.lower.borrow_mut() = Some(transport.clone());
    }

    fn client_connection_lost(&self, _connector: &Connector, _reason: &ConnectionLost) {
        // Passed on by the layer's observer, with the TLS connection's reason.
    }
}
