//! The built-in endpoint types, one module each holding the type's spec, its parser and its
//! I/O: [`tcp`] (`tcp`, `tcp6`), [`unix`] (`unix`) and [`systemd`] (`systemd`, servers only).
//!
//! [`listen`] and [`connect`] are how endpoints use a spec, through its
//! [`ServerSpec::listen`] / [`ClientSpec::connect`].

use torsion_reactor::{
    BoxedClientFactory, BoxedFactory, ClientFactory, Deferred, Error, Factory, ListeningPort,
    Reactor, SharedFactory, Transport,
};

use crate::spec::{ClientSpec, ClientType, ServerSpec, ServerType};

pub mod systemd;
pub(crate) mod tcp;
pub(crate) mod unix;

/// The built-in server types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn server_types() -> Vec<Box<dyn ServerType>> {
    vec![
        Box::new(tcp::TcpServerType { v6: false }),
        Box::new(tcp::TcpServerType { v6: true }),
        Box::new(unix::UnixServerType),
        Box::new(systemd::SystemdServerType),
    ]
}

/// The built-in client types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn client_types() -> Vec<Box<dyn ClientType>> {
    vec![
        Box::new(tcp::TcpClientType { v6: false }),
        Box::new(tcp::TcpClientType { v6: true }),
        Box::new(unix::UnixClientType),
    ]
}

/// Listens with `spec` on `reactor`. The factory is erased once, to a `BoxedFactory`; the
/// reactor uses the protocols it builds as they are (one box per connection).
pub(crate) fn listen<F: Factory>(
    spec: &dyn ServerSpec,
    reactor: &Reactor,
    factory: F,
) -> Result<ListeningPort, Error> {
    spec.listen(reactor, BoxedFactory::new(factory))
}

/// Connects once with `spec` on `reactor` (the contract of [`ClientSpec::connect`]).
pub(crate) fn connect<C: ClientFactory>(
    spec: &dyn ClientSpec,
    reactor: &Reactor,
    factory: SharedFactory<C>,
) -> Deferred<Transport> {
    spec.connect(reactor, BoxedClientFactory::new(factory))
}
