//! The built-in endpoint types, one module each holding the type's spec, its parser and its
//! I/O: [`tcp`] (`tcp`, `tcp6`), [`unix`] (`unix`), [`systemd`] (`systemd`, servers only)
//! and [`tls`] (`ssl` and `tls` servers, `tls` clients).
//!
//! [`listen`] and [`connect`] are how endpoints use a spec: for a built-in spec they call
//! its I/O with the application's factory type intact, so the reactor boxes each
//! connection's protocol once (through the trait objects, the factory is erased to
//! `BoxedFactory`, whose protocols are boxes the reactor boxes again); any other spec goes
//! through its [`ServerSpec::listen`] / [`ClientSpec::connect`].

use torsion_reactor::{
    BoxedClientFactory, BoxedFactory, ClientFactory, Deferred, Error, Factory, ListeningPort,
    Reactor, SharedFactory, Transport,
};

use crate::spec::{ClientSpec, ClientType, ServerSpec, ServerType};

pub mod systemd;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod unix;

/// The built-in server types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn server_types() -> Vec<Box<dyn ServerType>> {
    vec![
        Box::new(tcp::TcpServerType { v6: false }),
        Box::new(tcp::TcpServerType { v6: true }),
        Box::new(unix::UnixServerType),
        Box::new(systemd::SystemdServerType),
        Box::new(tls::TlsServerType { name: "ssl" }),
        Box::new(tls::TlsServerType { name: "tls" }),
    ]
}

/// The built-in client types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn client_types() -> Vec<Box<dyn ClientType>> {
    vec![
        Box::new(tcp::TcpClientType { v6: false }),
        Box::new(tcp::TcpClientType { v6: true }),
        Box::new(unix::UnixClientType),
        Box::new(tls::TlsClientType),
    ]
}

/// Listens with `spec` on `reactor`; see the [module documentation](self).
pub(crate) fn listen<F: Factory>(
    spec: &dyn ServerSpec,
    reactor: &Reactor,
    factory: F,
) -> Result<ListeningPort, Error> {
    let any = spec.as_any();
    if let Some(tcp) = any.downcast_ref::<tcp::TcpServer>() {
        tcp.listen_with(reactor, factory)
    } else if let Some(unix) = any.downcast_ref::<unix::UnixServer>() {
        unix.listen_with(reactor, factory)
    } else if let Some(systemd) = any.downcast_ref::<systemd::SystemdServer>() {
        systemd.listen_with(reactor, factory)
    } else if let Some(tls) = any.downcast_ref::<tls::TlsServer>() {
        tls.listen_with(reactor, factory)
    } else {
        spec.listen(reactor, BoxedFactory::new(factory))
    }
}

/// Connects once with `spec` on `reactor` (the contract of [`ClientSpec::connect`]); see
/// the [module documentation](self).
pub(crate) fn connect<C: ClientFactory>(
    spec: &dyn ClientSpec,
    reactor: &Reactor,
    factory: SharedFactory<C>,
) -> Deferred<Transport> {
    let any = spec.as_any();
    if let Some(tcp) = any.downcast_ref::<tcp::TcpClient>() {
        tcp.connect_with(reactor, factory)
    } else if let Some(unix) = any.downcast_ref::<unix::UnixClient>() {
        unix.connect_with(reactor, factory)
    } else if let Some(tls) = any.downcast_ref::<tls::TlsClient>() {
        tls.connect_with(reactor, factory)
    } else {
        spec.connect(reactor, BoxedClientFactory::new(factory))
    }
}
