//! `udp` and `udp6`: the datagram server spec [`UdpServer`] (a port on an address), the
//! client spec [`UdpClient`] (a port connected to a host and port), their parsers, and
//! opening them: a client's host name is resolved off the reactor thread, then the first
//! address a socket can connect to is used (UDP has no handshake to race).

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use torsion_reactor::{
    Address, DatagramProtocol, DatagramTransport, Deferred, Error, ErrorKind as ReactorErrorKind,
    Reactor, UdpOptions,
};

use super::tcp::{
    BindAddress, ClientFamily, V6Only, client_params, client_target, resolve_host, socket_addr,
};
use crate::args::{Args, ParamSpec};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::happy_eyeballs::target_name;
use crate::spec::{ClientSpec, ClientType, DEFAULT_TIMEOUT, ParamValue, ServerSpec, ServerType};
use crate::values::{self, format_scoped};

/// A UDP port: `udp` (IPv4) or `udp6` (IPv6), told apart by the family of `interface`.
///
/// ```
/// use torsion_endpoints::{parse_server, ServerSpec, UdpServer};
///
/// let spec = parse_server("udp:5353:interface=127.0.0.1:reuseport=1").unwrap();
/// let udp = spec.downcast_ref::<UdpServer>().unwrap();
/// assert_eq!((udp.port, udp.interface.to_string(), udp.reuseport), (5353, "127.0.0.1".into(), true));
/// assert!(spec.is_datagram());
/// assert_eq!(UdpServer::new_v6(53).to_string(), "udp6:port=53:interface=\\:\\::reuseport=0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpServer {
    /// The port; 0 asks the system for a free one.
    pub port: u16,
    /// The address to listen on: `0.0.0.0` (all IPv4) by default for `udp`, `::` for `udp6`.
    pub interface: IpAddr,
    /// The IPv6 zone (`%scope`) of a link-local interface.
    pub scope: Option<String>,
    /// Set `SO_REUSEPORT`, so several sockets (one reactor per core) share the port.
    pub reuseport: bool,
    /// For an IPv6 interface, `IPV6_V6ONLY` on or off (`Some(false)` on `::`: dual stack);
    /// `None` keeps the system's default. Ignored for IPv4.
    pub ipv6only: Option<bool>,
}

impl UdpServer {
    /// A `udp` port on `port`, on every IPv4 interface.
    pub fn new(port: u16) -> Self {
        UdpServer {
            port,
            interface: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            scope: None,
            reuseport: false,
            ipv6only: None,
        }
    }

    /// A `udp6` port on `port`, on `::`.
    pub fn new_v6(port: u16) -> Self {
        UdpServer {
            interface: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ..UdpServer::new(port)
        }
    }

    /// Whether this is a `udp6` port (its interface is IPv6).
    pub fn is_v6(&self) -> bool {
        self.interface.is_ipv6()
    }

    /// Opens the port; see [`crate::types::listen_datagram`].
    pub(crate) fn listen_with<P: DatagramProtocol>(
        &self,
        reactor: &Reactor,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        let addr = socket_addr(self.interface, self.port, self.scope.as_deref())?;
        let options = UdpOptions {
            reuse_port: self.reuseport,
            ipv6_only: self.ipv6only,
            ..UdpOptions::default()
        };
        reactor.listen_udp_with(addr, protocol, &options)
    }
}

impl ServerSpec for UdpServer {
    fn type_name(&self) -> &str {
        if self.is_v6() { "udp6" } else { "udp" }
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        let mut p = vec![
            ("port".to_owned(), ParamValue::Int(self.port.into())),
            (
                "interface".to_owned(),
                ParamValue::Str(format_scoped(&self.interface, self.scope.as_deref())),
            ),
            ("reuseport".to_owned(), ParamValue::Bool(self.reuseport)),
        ];
        if self.is_v6() {
            p.push((
                "ipv6only".to_owned(),
                self.ipv6only.map_or(ParamValue::Null, ParamValue::Bool),
            ));
        }
        p
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn is_datagram(&self) -> bool {
        true
    }

    fn listen_datagram(
        &self,
        reactor: &Reactor,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Result<DatagramTransport, Error> {
        self.listen_with(reactor, protocol)
    }
}

impl fmt::Display for UdpServer {
    /// The canonical description, every parameter by keyword; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:port={}:interface={}:reuseport={}",
            self.type_name(),
            self.port,
            quote(&format_scoped(&self.interface, self.scope.as_deref())),
            u8::from(self.reuseport)
        )?;
        if let (true, Some(v6only)) = (self.is_v6(), self.ipv6only) {
            write!(f, ":ipv6only={}", u8::from(v6only))?;
        }
        Ok(())
    }
}

/// A UDP port connected to one peer: `udp` (any address family) or `udp6` (IPv6 only).
/// `udp:host=H:port=P`, or positionally `udp:H:P`, as for `tcp` clients.
///
/// ```
/// use torsion_endpoints::{parse_client, UdpClient};
///
/// let spec = parse_client("udp:host=127.0.0.1:port=8000").unwrap();
/// assert_eq!(spec.downcast_ref::<UdpClient>(), Some(&UdpClient::new("127.0.0.1", 8000)));
/// assert!(spec.is_datagram());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpClient {
    /// The host name or IP address to send to.
    pub host: String,
    /// The port to send to.
    pub port: u16,
    /// How long resolving the host name may take (default 30 s).
    pub timeout: std::time::Duration,
    /// The local address to bind first (default: any, on a free port).
    pub bind_address: Option<BindAddress>,
    /// [`ClientFamily::Any`] for `udp`, [`ClientFamily::Ipv6`] for `udp6`.
    pub family: ClientFamily,
}

impl UdpClient {
    /// A `udp` client for `host`:`port` with the defaults.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        UdpClient {
            host: host.into(),
            port,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
            family: ClientFamily::Any,
        }
    }

    /// Resolves, then opens a port connected to the first address that takes it.
    pub(crate) fn connect_with<P: DatagramProtocol>(
        &self,
        reactor: &Reactor,
        protocol: P,
    ) -> Deferred<DatagramTransport> {
        let target = target_name(&self.host, self.port);
        let bind = match &self.bind_address {
            Some(b) => match socket_addr(b.ip, b.port, b.scope.as_deref()) {
                Ok(a) => Some(a),
                Err(e) => return Deferred::fail(e),
            },
            None => None,
        };
        let v6 = self.family == ClientFamily::Ipv6;
        let kind = self.type_name();
        let reactor2 = reactor.clone();
        resolve_host(reactor, &self.host, self.port, (v6, kind), bind, &target)
            .with_timeout(self.timeout)
            .try_map(move |addresses| {
                let socket = connected_socket(&addresses, bind, &target)?;
                reactor2.adopt_udp_socket(socket, protocol)
            })
    }
}

/// A UDP socket bound to `bind` (or any address of the peer's family) and connected to
/// the first of `addresses` that takes it.
fn connected_socket(
    addresses: &[SocketAddr],
    bind: Option<SocketAddr>,
    target: &str,
) -> Result<UdpSocket, Error> {
    let mut last = None;
    for &peer in addresses {
        let local = bind.unwrap_or_else(|| match peer {
            SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
            SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
        });
        let attempt = UdpSocket::bind(local).and_then(|s| s.connect(peer).map(|()| s));
        match attempt {
            Ok(socket) => return Ok(socket),
            Err(e) => last = Some((peer, e)),
        }
    }
    Err(match last {
        Some((peer, e)) => Error::io(format!("cannot connect to {target} (tried {peer})"), e),
        None => Error::new(
            ReactorErrorKind::InvalidInput,
            format!("cannot connect to {target}: no address"),
        ),
    })
}

impl ClientSpec for UdpClient {
    fn type_name(&self) -> &str {
        match self.family {
            ClientFamily::Any => "udp",
            ClientFamily::Ipv6 => "udp6",
        }
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![
            ("host".to_owned(), ParamValue::Str(self.host.clone())),
            ("port".to_owned(), ParamValue::Int(self.port.into())),
            (
                "timeout".to_owned(),
                ParamValue::Float(self.timeout.as_secs_f64()),
            ),
            (
                "bindAddress".to_owned(),
                self.bind_address
                    .as_ref()
                    .map_or(ParamValue::Null, |b| ParamValue::Str(b.to_string())),
            ),
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn destination(&self) -> Address {
        match values::scoped_ip(&self.host) {
            Ok((ip, None)) => Address::Udp(SocketAddr::new(ip, self.port)),
            _ => Address::Other(target_name(&self.host, self.port)),
        }
    }

    fn is_datagram(&self) -> bool {
        true
    }

    fn connect_datagram(
        &self,
        reactor: &Reactor,
        protocol: Box<dyn DatagramProtocol>,
    ) -> Deferred<DatagramTransport> {
        self.connect_with(reactor, protocol)
    }
}

impl fmt::Display for UdpClient {
    /// The canonical description, every parameter by keyword; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::tcp::fmt_client(
            f,
            self.type_name(),
            &self.host,
            self.port,
            self.timeout,
            self.bind_address.as_ref(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers

const SERVER_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::positional("interface"),
    ParamSpec::keyword("reuseport"),
];

const SERVER6_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::positional("interface"),
    ParamSpec::keyword("reuseport"),
    ParamSpec::keyword("ipv6only"),
];

/// `udp` (IPv4) or `udp6` ports.
pub(crate) struct UdpServerType {
    pub(crate) v6: bool,
}

impl ServerType for UdpServerType {
    fn name(&self) -> &str {
        if self.v6 { "udp6" } else { "udp" }
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(if self.v6 {
            SERVER6_PARAMS
        } else {
            SERVER_PARAMS
        })?;
        let port = b.require("port")?.port()?;
        let mut spec = if self.v6 {
            UdpServer::new_v6(port)
        } else {
            UdpServer::new(port)
        };
        if let Some(v) = b.get("interface") {
            let (ip, scope) = v.interface(self.name(), self.v6)?;
            spec.interface = ip;
            spec.scope = scope;
        }
        spec.reuseport = b.parse_or("reuseport", false, |v| v.flag())?;
        if self.v6 {
            spec.ipv6only = b.parse_opt("ipv6only", |v| v.flag())?;
        }
        Ok(Box::new(spec))
    }
}

/// `udp` or `udp6` (IPv6 only) clients.
pub(crate) struct UdpClientType {
    pub(crate) v6: bool,
}

impl ClientType for UdpClientType {
    fn name(&self) -> &str {
        if self.v6 { "udp6" } else { "udp" }
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let b = args.bind(&client_params(args, &[]))?;
        let only = V6Only {
            name: "udp6",
            verb: "sends",
            instead: "udp",
        };
        let target = client_target(&b, self.v6.then_some(&only))?;
        if target.port == 0 {
            return Err(target.port_value.error(
                ErrorKind::OutOfRange,
                "port 0 is not a destination: expected a number from 1 to 65535",
            ));
        }
        Ok(Box::new(UdpClient {
            host: target.host.to_owned(),
            port: target.port,
            timeout: target.timeout,
            bind_address: target.bind_address,
            family: if self.v6 {
                ClientFamily::Ipv6
            } else {
                ClientFamily::Any
            },
        }))
    }
}
