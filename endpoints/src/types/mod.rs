//! The built-in endpoint types, one module each holding the type's spec, its parser and its
//! I/O: [`tcp`] (`tcp`, `tcp6`), [`unix`] (`unix`), [`systemd`] (`systemd`, servers only)
//! and [`stdio`] (`stdio`, servers only) and [`tls`] (`ssl` and `tls` servers, `tls`
//! clients) for streams; [`udp`] (`udp`, `udp6`) and [`unixgram`] (`unixgram`) for
//! datagrams.
//!
//! [`listen`] and [`connect`] are how endpoints use a spec, through its
//! [`ServerSpec::listen`] / [`ClientSpec::connect`]; [`listen_datagram`] and
//! [`connect_datagram`] do the same for datagram ports and their protocol.

use torsion_reactor::{
    BoxedClientFactory, BoxedFactory, ClientFactory, DatagramProtocol, DatagramTransport, Deferred,
    Error, Factory, ListeningPort, Reactor, SharedFactory, Transport,
};

use crate::spec::{ClientSpec, ClientType, ServerSpec, ServerType};

pub(crate) mod haproxy;
pub(crate) mod stdio;
pub mod systemd;
pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod udp;
pub(crate) mod unix;
pub(crate) mod unixgram;

/// The built-in server types, for [`Registry::with_builtins`](crate::Registry::with_builtins).
pub(crate) fn server_types() -> Vec<Box<dyn ServerType>> {
    vec![
        Box::new(tcp::TcpServerType { v6: false }),
        Box::new(tcp::TcpServerType { v6: true }),
        Box::new(unix::UnixServerType),
        Box::new(systemd::SystemdServerType),
        Box::new(udp::UdpServerType { v6: false }),
        Box::new(udp::UdpServerType { v6: true }),
        Box::new(unixgram::UnixgramServerType),
        Box::new(stdio::StdioServerType),
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
        Box::new(udp::UdpClientType { v6: false }),
        Box::new(udp::UdpClientType { v6: true }),
        Box::new(unixgram::UnixgramClientType),
        Box::new(tls::TlsClientType),
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

/// Opens a datagram port with `spec` on `reactor`; see the [module documentation](self).
pub(crate) fn listen_datagram<P: DatagramProtocol>(
    spec: &dyn ServerSpec,
    reactor: &Reactor,
    protocol: P,
) -> Result<DatagramTransport, Error> {
    let any = spec.as_any();
    if let Some(udp) = any.downcast_ref::<udp::UdpServer>() {
        udp.listen_with(reactor, protocol)
    } else if let Some(unix) = any.downcast_ref::<unixgram::UnixgramServer>() {
        unix.listen_with(reactor, protocol)
    } else {
        spec.listen_datagram(reactor, Box::new(protocol))
    }
}

/// Opens a connected datagram port with `spec` on `reactor`; see the
/// [module documentation](self).
pub(crate) fn connect_datagram<P: DatagramProtocol>(
    spec: &dyn ClientSpec,
    reactor: &Reactor,
    protocol: P,
) -> Deferred<DatagramTransport> {
    let any = spec.as_any();
    if let Some(udp) = any.downcast_ref::<udp::UdpClient>() {
        udp.connect_with(reactor, protocol)
    } else if let Some(unix) = any.downcast_ref::<unixgram::UnixgramClient>() {
        unix.connect_with(reactor, protocol)
    } else {
        spec.connect_datagram(reactor, Box::new(protocol))
    }
}
