//! `tcp` and `tcp6`: the server spec [`TcpServer`], the client spec [`TcpClient`] (with its
//! [`BindAddress`]), their parsers, listening, and connecting: a host name is resolved off
//! the reactor thread, then its addresses are raced by [`happy_eyeballs`].

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, ToSocketAddrs};
use std::str::FromStr;
use std::time::Duration;

use torsion_reactor::{
    Address, BoxedClientFactory, BoxedFactory, ClientFactory, Deferred, Error,
    ErrorKind as ReactorErrorKind, Factory, Handoff, ListeningPort, Reactor, SharedFactory,
    TcpListenOptions, Transport,
};

use crate::args::{Args, Bound, ParamSpec, Value};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::happy_eyeballs::{self, RaceOptions, target_name};
use crate::spec::{
    ClientSpec, ClientType, DEFAULT_BACKLOG, DEFAULT_TIMEOUT, MAX_BACKLOG, ParamValue, ServerSpec,
    ServerType,
};
use crate::values::{self, format_scoped, format_seconds};

/// A TCP server: `tcp` (IPv4) or `tcp6` (IPv6), told apart by the family of `interface`.
///
/// One struct serves both types because they listen the same way; [`ServerSpec::type_name`]
/// is `tcp` for an IPv4 interface and `tcp6` for an IPv6 one. Built directly:
///
/// ```
/// use torsion_endpoints::{parse_server, ServerSpec, TcpServer};
///
/// let mut local = TcpServer::new(8000);
/// local.interface = [127, 0, 0, 1].into();
/// let parsed = parse_server("tcp:8000:interface=127.0.0.1").unwrap();
/// assert_eq!(parsed.downcast_ref::<TcpServer>(), Some(&local));
///
/// let v6 = TcpServer::new_v6(8000);
/// assert_eq!(v6.type_name(), "tcp6");
/// assert_eq!(v6.to_string(), "tcp6:port=8000:interface=\\:\\::backlog=1024:reuseport=0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpServer {
    /// The port; 0 asks the system for a free one.
    pub port: u16,
    /// The address to listen on: `0.0.0.0` (all IPv4) by default for `tcp`, `::` for `tcp6`.
    pub interface: IpAddr,
    /// The IPv6 zone (`%scope`: an interface name or number) of a link-local interface.
    pub scope: Option<String>,
    /// The `listen(2)` backlog, at least 1 (default 1024).
    pub backlog: u32,
    /// Set `SO_REUSEPORT`, so several sockets (one reactor per core) share the port.
    pub reuseport: bool,
    /// For an IPv6 interface, set `IPV6_V6ONLY` on (`Some(true)`) or off (`Some(false)`, so
    /// `::` also accepts IPv4); `None` keeps the system's default. Ignored for IPv4.
    pub ipv6only: Option<bool>,
}

impl TcpServer {
    /// A `tcp` server on `port` with the defaults: all IPv4 interfaces, backlog 1024.
    pub fn new(port: u16) -> Self {
        TcpServer {
            port,
            interface: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            scope: None,
            backlog: DEFAULT_BACKLOG,
            reuseport: false,
            ipv6only: None,
        }
    }

    /// A `tcp6` server on `port` with the defaults: interface `::`, backlog 1024.
    pub fn new_v6(port: u16) -> Self {
        TcpServer {
            interface: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ..TcpServer::new(port)
        }
    }

    /// Whether this is a `tcp6` server (its interface is IPv6).
    pub fn is_v6(&self) -> bool {
        self.interface.is_ipv6()
    }
}

impl ServerSpec for TcpServer {
    fn type_name(&self) -> &str {
        if self.is_v6() { "tcp6" } else { "tcp" }
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        let mut p = vec![
            ("port".to_owned(), ParamValue::Int(self.port.into())),
            (
                "interface".to_owned(),
                ParamValue::Str(format_scoped(&self.interface, self.scope.as_deref())),
            ),
            ("backlog".to_owned(), ParamValue::Int(self.backlog.into())),
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

    fn listen(&self, reactor: &Reactor, factory: BoxedFactory) -> Result<ListeningPort, Error> {
        self.listen_with(reactor, factory)
    }
}

impl fmt::Display for TcpServer {
    /// The canonical description, every parameter by keyword; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:port={}:interface={}:backlog={}:reuseport={}",
            self.type_name(),
            self.port,
            quote(&format_scoped(&self.interface, self.scope.as_deref())),
            self.backlog,
            u8::from(self.reuseport)
        )?;
        if let (true, Some(v6only)) = (self.is_v6(), self.ipv6only) {
            write!(f, ":ipv6only={}", u8::from(v6only))?;
        }
        Ok(())
    }
}

/// Which addresses a TCP client may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientFamily {
    /// `tcp`: every address the host resolves to, IPv4 and IPv6 (tried Happy-Eyeballs style).
    Any,
    /// `tcp6`: IPv6 addresses only.
    Ipv6,
}

/// The local address a TCP client binds before connecting (`bindAddress`): an IP literal
/// with an optional port (0, the default, lets the system choose).
///
/// Written `192.0.2.1`, `192.0.2.1:5000`, `::1`, `[::1]:5000`, `fe80::1%eth0` or
/// `[fe80::1%eth0]:5000`; inside a description every `:` is escaped (`bindAddress=[\:\:1]\:5000`).
/// An IPv6 address with a port must be in brackets: `::1:80` is the IPv6 address `::1:80`.
///
/// ```
/// use torsion_endpoints::BindAddress;
///
/// let b: BindAddress = "[::1]:5000".parse().unwrap();
/// assert_eq!((b.ip.to_string(), b.port), ("::1".to_string(), 5000));
/// assert_eq!(b.to_string(), "[::1]:5000");
/// assert!("localhost:80".parse::<BindAddress>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindAddress {
    /// The local IP address.
    pub ip: IpAddr,
    /// The IPv6 zone (`%scope`), if any.
    pub scope: Option<String>,
    /// The local port; 0 lets the system choose.
    pub port: u16,
}

impl BindAddress {
    /// `ip` with no scope and port 0.
    pub fn new(ip: IpAddr) -> Self {
        BindAddress {
            ip,
            scope: None,
            port: 0,
        }
    }
}

impl fmt::Display for BindAddress {
    /// The address as written in a description before escaping: the bare IP when the port is
    /// 0, else `ip:port` or `[ipv6]:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = format_scoped(&self.ip, self.scope.as_deref());
        match (self.port, self.ip) {
            (0, _) => f.write_str(&ip),
            (port, IpAddr::V4(_)) => write!(f, "{ip}:{port}"),
            (port, IpAddr::V6(_)) => write!(f, "[{ip}]:{port}"),
        }
    }
}

/// Why a [`BindAddress`] could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindAddressError {
    kind: ErrorKind,
    reason: String,
}

impl BindAddressError {
    /// [`ErrorKind::InvalidAddress`], or [`ErrorKind::InvalidNumber`] /
    /// [`ErrorKind::OutOfRange`] for a bad port.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for BindAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for BindAddressError {}

impl FromStr for BindAddress {
    type Err = BindAddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |b: values::Bad| BindAddressError {
            kind: b.kind,
            reason: b.reason,
        };
        let port = |p: &str| -> Result<u16, BindAddressError> {
            let n = values::decimal_in(p, 0, u16::MAX.into()).map_err(|b| BindAddressError {
                kind: b.kind,
                reason: format!("bad port {:?}: {}", p, b.reason),
            })?;
            Ok(u16::try_from(n).unwrap_or(u16::MAX))
        };
        const FORMS: &str = "expected an IP address with an optional port: 192.0.2.1, \
                             192.0.2.1:5000, ::1 or [::1]:5000";
        if let Some(rest) = text.strip_prefix('[') {
            let Some((inner, after)) = rest.split_once(']') else {
                return Err(BindAddressError {
                    kind: ErrorKind::InvalidAddress,
                    reason: format!("missing ]; {FORMS}"),
                });
            };
            let (ip, scope) = values::scoped_ip(inner).map_err(bad)?;
            if ip.is_ipv4() {
                return Err(BindAddressError {
                    kind: ErrorKind::InvalidAddress,
                    reason: format!("brackets are only for IPv6 addresses; {FORMS}"),
                });
            }
            let port = match after {
                "" => 0,
                _ => match after.strip_prefix(':') {
                    Some(p) => port(p)?,
                    None => {
                        return Err(BindAddressError {
                            kind: ErrorKind::InvalidAddress,
                            reason: format!("unexpected text after ]; {FORMS}"),
                        });
                    }
                },
            };
            return Ok(BindAddress { ip, scope, port });
        }
        if let Ok((ip, scope)) = values::scoped_ip(text) {
            return Ok(BindAddress { ip, scope, port: 0 });
        }
        if let Some((host, p)) = text.rsplit_once(':') {
            if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
                return Ok(BindAddress {
                    ip: IpAddr::V4(ip),
                    scope: None,
                    port: port(p)?,
                });
            }
        }
        Err(BindAddressError {
            kind: ErrorKind::InvalidAddress,
            reason: format!("not an IP address (host names are not resolved here); {FORMS}"),
        })
    }
}

/// A TCP client (`tcp`, or `tcp6` for IPv6 only).
///
/// `host` is a name (resolved when connecting) or an IP literal.
///
/// ```
/// use std::time::Duration;
/// use torsion_endpoints::{parse_client, TcpClient};
///
/// let spec = parse_client("tcp:host=example.org:443:timeout=2.5").unwrap();
/// let tcp = spec.downcast_ref::<TcpClient>().unwrap();
/// assert_eq!(
///     tcp,
///     &TcpClient { timeout: Duration::from_millis(2500), ..TcpClient::new("example.org", 443) }
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpClient {
    /// The host name or IP address to connect to.
    pub host: String,
    /// The port to connect to.
    pub port: u16,
    /// How long the whole connection attempt may take (default 30 s).
    pub timeout: Duration,
    /// The local address to bind first, if any.
    pub bind_address: Option<BindAddress>,
    /// [`ClientFamily::Any`] for `tcp`, [`ClientFamily::Ipv6`] for `tcp6`.
    pub family: ClientFamily,
}

impl TcpClient {
    /// A `tcp` client for `host`:`port` with the defaults: 30 s timeout, no bind address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        TcpClient {
            host: host.into(),
            port,
            timeout: DEFAULT_TIMEOUT,
            bind_address: None,
            family: ClientFamily::Any,
        }
    }
}

impl ClientSpec for TcpClient {
    fn type_name(&self) -> &str {
        match self.family {
            ClientFamily::Any => "tcp",
            ClientFamily::Ipv6 => "tcp6",
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
            Ok((ip, None)) => Address::Tcp(SocketAddr::new(ip, self.port)),
            _ => Address::Other(target_name(&self.host, self.port)),
        }
    }

    /// Resolves a host name on the reactor's thread pool (`getaddrinfo` blocks), then races
    /// its addresses Happy-Eyeballs style ([`happy_eyeballs`](crate::happy_eyeballs));
    /// `timeout` covers the whole.
    fn connect(&self, reactor: &Reactor, factory: BoxedClientFactory) -> Deferred<Transport> {
        self.connect_with(reactor, SharedFactory::new(factory))
    }
}

impl fmt::Display for TcpClient {
    /// The canonical description, every parameter by keyword; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_client(
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
    ParamSpec::positional("backlog"),
    ParamSpec::keyword("reuseport"),
];

/// Twisted's `tcp6` order differs from `tcp`: port, backlog, interface.
const SERVER6_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::positional("backlog"),
    ParamSpec::positional("interface"),
    ParamSpec::keyword("reuseport"),
    ParamSpec::keyword("ipv6only"),
];

/// `tcp` (IPv4) or `tcp6` servers.
pub(crate) struct TcpServerType {
    pub(crate) v6: bool,
}

impl ServerType for TcpServerType {
    fn name(&self) -> &str {
        if self.v6 { "tcp6" } else { "tcp" }
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(if self.v6 {
            SERVER6_PARAMS
        } else {
            SERVER_PARAMS
        })?;
        let port = b.require("port")?.port()?;
        let mut spec = if self.v6 {
            TcpServer::new_v6(port)
        } else {
            TcpServer::new(port)
        };
        if let Some(v) = b.get("interface") {
            let (ip, scope) = v.interface(self.name(), self.v6)?;
            spec.interface = ip;
            spec.scope = scope;
        }
        spec.backlog = b.parse_or("backlog", DEFAULT_BACKLOG, |v| v.u32_in(1, MAX_BACKLOG))?;
        spec.reuseport = b.parse_or("reuseport", false, |v| v.flag())?;
        if self.v6 {
            spec.ipv6only = b.parse_opt("ipv6only", |v| v.flag())?;
        }
        Ok(Box::new(spec))
    }
}

/// The parameters of a client string that names a host and a port, in Twisted's order:
/// `HOST:PORT`, or the port alone when `host=` is given; `timeout` and `bindAddress` (and
/// `extra`, a `tls` client's files) only by keyword.
pub(crate) fn client_params(args: &Args<'_>, extra: &[&'static str]) -> Vec<ParamSpec> {
    let mut params = if args.has_keyword("host") {
        vec![ParamSpec::positional("port"), ParamSpec::keyword("host")]
    } else {
        vec![ParamSpec::positional("host"), ParamSpec::positional("port")]
    };
    let keywords = ["timeout", "bindAddress"].iter().chain(extra);
    params.extend(keywords.map(|name| ParamSpec::keyword(name)));
    params
}

/// A client type that only speaks IPv6 (`tcp6`, `udp6`): how to say that an IPv4 address
/// does not fit.
pub(crate) struct V6Only {
    /// The type's name (`tcp6`).
    pub(crate) name: &'static str,
    /// What its client does (`connects`, `sends`).
    pub(crate) verb: &'static str,
    /// The type to use instead (`tcp`).
    pub(crate) instead: &'static str,
}

/// Where a client goes, as every host-and-port client string gives it.
pub(crate) struct ClientTarget<'b> {
    pub(crate) host: &'b str,
    pub(crate) port: u16,
    /// The port as given, to report a value a type refuses (`udp`: port 0).
    pub(crate) port_value: Value<'b>,
    pub(crate) timeout: Duration,
    pub(crate) bind_address: Option<BindAddress>,
}

/// Reads and checks the host, the port, `timeout` and `bindAddress` of a client string
/// bound with [`client_params`]: a host that is an address and a `bindAddress` must be of
/// one family, IPv6 for a `v6_only` type.
pub(crate) fn client_target<'b>(
    b: &Bound<'b>,
    v6_only: Option<&V6Only>,
) -> Result<ClientTarget<'b>, EndpointError> {
    let host_value = b.require("host")?;
    let host = host_value.as_str();
    let host_ip = values::host(host).map_err(|bad| host_value.error(bad.kind, bad.reason))?;
    if let (Some(only), Some(IpAddr::V4(_))) = (v6_only, host_ip) {
        return Err(host_value.error(
            ErrorKind::WrongFamily,
            format!(
                "an IPv4 address, but a {} client {} over IPv6 only; use {}",
                only.name, only.verb, only.instead
            ),
        ));
    }
    let port_value = b.require("port")?;
    let port = port_value.port()?;
    let timeout = b.parse_or("timeout", DEFAULT_TIMEOUT, |v| v.seconds())?;
    let bind_address = b.parse_opt("bindAddress", |v| {
        let bind = bind_address(v)?;
        if let (Some(only), true) = (v6_only, bind.ip.is_ipv4()) {
            return Err(v.error(
                ErrorKind::WrongFamily,
                format!(
                    "an IPv4 address, but a {} client {} over IPv6",
                    only.name, only.verb
                ),
            ));
        }
        if let Some(ip) = host_ip {
            if ip.is_ipv4() != bind.ip.is_ipv4() {
                return Err(v.error(
                    ErrorKind::WrongFamily,
                    format!(
                        "an {} address, but the host is an {} address",
                        family_name(&bind.ip),
                        family_name(&ip)
                    ),
                ));
            }
        }
        Ok(bind)
    })?;
    Ok(ClientTarget {
        host,
        port,
        port_value,
        timeout,
        bind_address,
    })
}

/// A host-and-port client's canonical description (`tcp`, `udp`, ...), every parameter by
/// keyword.
pub(crate) fn fmt_client(
    f: &mut fmt::Formatter<'_>,
    type_name: &str,
    host: &str,
    port: u16,
    timeout: Duration,
    bind_address: Option<&BindAddress>,
) -> fmt::Result {
    write!(
        f,
        "{type_name}:host={}:port={port}:timeout={}",
        quote(host),
        format_seconds(timeout)
    )?;
    if let Some(b) = bind_address {
        write!(f, ":bindAddress={}", quote(&b.to_string()))?;
    }
    Ok(())
}

/// `tcp` or `tcp6` (IPv6 only) clients.
pub(crate) struct TcpClientType {
    pub(crate) v6: bool,
}

pub(crate) fn family_name(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl ClientType for TcpClientType {
    fn name(&self) -> &str {
        if self.v6 { "tcp6" } else { "tcp" }
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let b = args.bind(&client_params(args, &[]))?;
        let only = V6Only {
            name: "tcp6",
            verb: "connects",
            instead: "tcp",
        };
        let target = client_target(&b, self.v6.then_some(&only))?;
        Ok(Box::new(TcpClient {
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

pub(crate) fn bind_address(v: Value<'_>) -> Result<BindAddress, EndpointError> {
    v.as_str()
        .parse::<BindAddress>()
        .map_err(|e| v.error(e.kind, e.reason))
}

// ---------------------------------------------------------------------------------------------
// Listening and connecting

/// An interface index for an IPv6 `%scope` (a number, or an interface name).
fn scope_id(scope: Option<&str>) -> Result<u32, Error> {
    let Some(scope) = scope else { return Ok(0) };
    if let Ok(n) = scope.parse::<u32>() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(scope).map_err(|_| {
        Error::new(
            ReactorErrorKind::InvalidInput,
            format!("invalid IPv6 scope {scope:?}"),
        )
    })?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(Error::new(
            ReactorErrorKind::InvalidInput,
            format!("no network interface named {scope:?} for the IPv6 scope"),
        ));
    }
    Ok(index)
}

impl TcpServer {
    /// [`ServerSpec::listen`] with the factory's type kept (see [`crate::types::listen`]).
    pub(crate) fn listen_with<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        let addr = socket_addr(self.interface, self.port, self.scope.as_deref())?;
        let options = TcpListenOptions {
            backlog: self.backlog,
            reuse_port: self.reuseport,
            ipv6_only: self.ipv6only,
        };
        reactor.listen_tcp_with(addr, factory, &options)
    }

    /// Listens here and hands each connection to the least loaded of `targets` (see
    /// [`Reactor::listen_tcp_balanced`]); `reuseport` is honoured as usual.
    ///
    /// Errors: those of [`Reactor::listen_tcp_balanced`].
    pub fn listen_balanced(
        &self,
        reactor: &Reactor,
        targets: &[Handoff],
    ) -> Result<ListeningPort, Error> {
        let addr = socket_addr(self.interface, self.port, self.scope.as_deref())?;
        let options = TcpListenOptions {
            backlog: self.backlog,
            reuse_port: self.reuseport,
            ipv6_only: self.ipv6only,
        };
        reactor.listen_tcp_balanced(addr, targets, &options)
    }
}

/// The socket address of `ip`:`port`, with the interface index of an IPv6 `%scope`.
pub(crate) fn socket_addr(ip: IpAddr, port: u16, scope: Option<&str>) -> Result<SocketAddr, Error> {
    Ok(match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id(scope)?)),
    })
}

impl TcpClient {
    /// [`ClientSpec::connect`] with the factory's type kept (see [`crate::types::connect`]).
    pub(crate) fn connect_with<C: ClientFactory>(
        &self,
        reactor: &Reactor,
        factory: SharedFactory<C>,
    ) -> Deferred<Transport> {
        let target = target_name(&self.host, self.port);
        let bind = match self.bind_addr() {
            Ok(bind) => bind,
            Err(e) => return Deferred::fail(e),
        };
        let addresses = self.resolve(reactor, bind, &target);
        let options = RaceOptions {
            timeout: Some(self.timeout),
            ..RaceOptions::new(target)
        };
        happy_eyeballs::race_tcp(reactor, options, addresses, bind, factory)
    }

    /// The local address to bind, if the description gives one.
    fn bind_addr(&self) -> Result<Option<SocketAddr>, Error> {
        match &self.bind_address {
            Some(b) => Ok(Some(socket_addr(b.ip, b.port, b.scope.as_deref())?)),
            None => Ok(None),
        }
    }

    /// Resolves the host on the reactor's thread pool; see [`resolve_host`].
    fn resolve(
        &self,
        reactor: &Reactor,
        bind: Option<SocketAddr>,
        target: &str,
    ) -> Deferred<Vec<SocketAddr>> {
        let v6 = self.family == ClientFamily::Ipv6;
        let kind = self.type_name();
        resolve_host(reactor, &self.host, self.port, (v6, kind), bind, target)
    }
}

/// The addresses of `host`:`port`, resolved on the reactor's thread pool (`getaddrinfo`
/// blocks); an IP literal needs no resolution. Only IPv6 ones when `v6_only.0` (the type
/// named `v6_only.1`, for the message), and only the bind address's family when there is
/// one. Errors say `cannot connect to TARGET: ...`.
pub(crate) fn resolve_host(
    reactor: &Reactor,
    host: &str,
    port: u16,
    v6_only: (bool, &str),
    bind: Option<SocketAddr>,
    target: &str,
) -> Deferred<Vec<SocketAddr>> {
    let (v6_only, kind) = (v6_only.0, v6_only.1.to_owned());
    if let Ok((ip, scope)) = values::scoped_ip(host) {
        return Deferred::resolved(socket_addr(ip, port, scope.as_deref()).map(|a| vec![a]));
    }
    let host = host.to_owned();
    let family = if v6_only {
        ClientFamily::Ipv6
    } else {
        ClientFamily::Any
    };
    let target = target.to_owned();
    reactor
        .defer_to_thread(move || {
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|found| found.collect::<Vec<SocketAddr>>())
        })
        .try_map(move |found| {
            let found = found.map_err(|e| {
                Error::io(
                    format!("cannot connect to {target}: cannot resolve the host name"),
                    e,
                )
            })?;
            usable(found, family, bind, &target, &kind)
        })
}

/// The addresses a resolved host name may use: IPv6 only for `tcp6`, and only the bind
/// address's family when there is one.
fn usable(
    found: Vec<SocketAddr>,
    family: ClientFamily,
    bind: Option<SocketAddr>,
    target: &str,
    kind: &str,
) -> Result<Vec<SocketAddr>, Error> {
    let count = found.len();
    let addrs: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| family != ClientFamily::Ipv6 || a.is_ipv6())
        .filter(|a| bind.is_none_or(|b| b.is_ipv4() == a.is_ipv4()))
        .collect();
    if !addrs.is_empty() {
        return Ok(addrs);
    }
    let why = match (count, bind, family) {
        (0, _, _) => "the host name has no address".to_owned(),
        (_, _, ClientFamily::Ipv6) => format!("the host name has no IPv6 address ({kind})"),
        (_, Some(b), _) => format!(
            "the host name has no {} address to use with bindAddress {}",
            if b.is_ipv4() { "IPv4" } else { "IPv6" },
            b.ip()
        ),
        _ => "the host name has no usable address".to_owned(),
    };
    Err(Error::new(
        ReactorErrorKind::InvalidInput,
        format!("cannot connect to {target}: {why}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_address_forms() {
        let cases = [
            ("192.0.2.1", "192.0.2.1", None, 0),
            ("192.0.2.1:5000", "192.0.2.1", None, 5000),
            ("::1", "::1", None, 0),
            ("[::1]", "::1", None, 0),
            ("[::1]:5000", "::1", None, 5000),
            ("fe80::1%eth0", "fe80::1", Some("eth0"), 0),
            ("[fe80::1%eth0]:80", "fe80::1", Some("eth0"), 80),
        ];
        for (text, ip, scope, port) in cases {
            let b: BindAddress = text.parse().expect(text);
            assert_eq!(b.ip, ip.parse::<IpAddr>().expect("ip"), "{text}");
            assert_eq!(b.scope.as_deref(), scope, "{text}");
            assert_eq!(b.port, port, "{text}");
            let again: BindAddress = b.to_string().parse().expect("round trip");
            assert_eq!(again, b);
        }
        for (text, kind) in [
            ("", ErrorKind::InvalidAddress),
            ("localhost", ErrorKind::InvalidAddress),
            ("localhost:80", ErrorKind::InvalidAddress),
            ("[::1", ErrorKind::InvalidAddress),
            ("[::1]x", ErrorKind::InvalidAddress),
            ("[127.0.0.1]:80", ErrorKind::InvalidAddress),
            ("192.0.2.1:", ErrorKind::InvalidNumber),
            ("192.0.2.1:x", ErrorKind::InvalidNumber),
            ("192.0.2.1:65536", ErrorKind::OutOfRange),
            ("[::1]:99999", ErrorKind::OutOfRange),
        ] {
            let e = text.parse::<BindAddress>().unwrap_err();
            assert_eq!(e.kind(), kind, "{text}");
            assert!(!e.to_string().is_empty());
        }
    }
}
