//! The built-in client types: [`TcpClient`] (`tcp` and `tcp6`) and [`UnixClient`] (`unix`).

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::args::{Args, ParamSpec, Value};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::registry::{ClientType, Registry};
use crate::server::unix_path;
use crate::spec::{ClientSpec, ParamValue};
use crate::values::{self, format_scoped, format_seconds};

/// How long a connection attempt may take when no `timeout` is given: 30 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

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

    fn connect(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedFactory,
    ) -> torsion_reactor::Deferred<torsion_reactor::Transport> {
        crate::connect::tcp(self, reactor, factory)
    }

    fn connect_connector(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedClientFactory,
    ) -> Result<torsion_reactor::Connector, torsion_reactor::Error> {
        crate::connect::tcp_connector(self, reactor, factory)
    }
}

impl fmt::Display for TcpClient {
    /// The canonical description, every parameter by keyword; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:host={}:port={}:timeout={}",
            self.type_name(),
            quote(&self.host),
            self.port,
            format_seconds(self.timeout)
        )?;
        if let Some(b) = &self.bind_address {
            write!(f, ":bindAddress={}", quote(&b.to_string()))?;
        }
        Ok(())
    }
}

/// A Unix-domain stream socket client (`unix`).
///
/// ```
/// use std::time::Duration;
/// use torsion_endpoints::{parse_client, UnixClient};
///
/// let spec = parse_client("unix:/run/chat.sock:timeout=5").unwrap();
/// assert_eq!(
///     spec.downcast_ref::<UnixClient>(),
///     Some(&UnixClient { timeout: Duration::from_secs(5), ..UnixClient::new("/run/chat.sock") })
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixClient {
    /// The socket's path.
    pub path: PathBuf,
    /// How long the connection attempt may take (default 30 s).
    pub timeout: Duration,
    /// Twisted's `checkPID` (written `lockfile=1`, default off): before connecting, check that
    /// the server's `PATH.lock` names a live process, and fail at once if not.
    pub lockfile: bool,
}

impl UnixClient {
    /// A client for the socket at `path` with the defaults: 30 s timeout, no lockfile check.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UnixClient {
            path: path.into(),
            timeout: DEFAULT_TIMEOUT,
            lockfile: false,
        }
    }
}

impl ClientSpec for UnixClient {
    fn type_name(&self) -> &str {
        "unix"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![
            (
                "path".to_owned(),
                ParamValue::Str(self.path.to_string_lossy().into_owned()),
            ),
            (
                "timeout".to_owned(),
                ParamValue::Float(self.timeout.as_secs_f64()),
            ),
            ("lockfile".to_owned(), ParamValue::Bool(self.lockfile)),
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn connect(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedFactory,
    ) -> torsion_reactor::Deferred<torsion_reactor::Transport> {
        crate::connect::unix(self, reactor, factory)
    }

    fn connect_connector(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedClientFactory,
    ) -> Result<torsion_reactor::Connector, torsion_reactor::Error> {
        crate::connect::unix_connector(self, reactor, factory)
    }
}

impl fmt::Display for UnixClient {
    /// The canonical description, every parameter by keyword; it parses back to `self` when
    /// the path is UTF-8.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unix:path={}:timeout={}:lockfile={}",
            quote(&self.path.to_string_lossy()),
            format_seconds(self.timeout),
            u8::from(self.lockfile)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers

/// Twisted's order: `tcp:HOST:PORT`; `timeout` and `bindAddress` only by keyword.
const TCP_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("host"),
    ParamSpec::positional("port"),
    ParamSpec::keyword("timeout"),
    ParamSpec::keyword("bindAddress"),
];

/// With `host=` given, the one positional is the port (as in Twisted).
const TCP_PARAMS_HOST_BY_KEYWORD: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::keyword("host"),
    ParamSpec::keyword("timeout"),
    ParamSpec::keyword("bindAddress"),
];

const UNIX_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("path"),
    ParamSpec::keyword("timeout"),
    ParamSpec::keyword("lockfile"),
];

struct TcpClientType {
    v6: bool,
}

fn family_name(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "IPv4" } else { "IPv6" }
}

impl ClientType for TcpClientType {
    fn name(&self) -> &str {
        if self.v6 { "tcp6" } else { "tcp" }
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let params = if args.has_keyword("host") {
            TCP_PARAMS_HOST_BY_KEYWORD
        } else {
            TCP_PARAMS
        };
        let b = args.bind(params)?;
        let host_value = b.require("host")?;
        let host = host_value.as_str();
        let host_ip = values::host(host).map_err(|bad| host_value.error(bad.kind, bad.reason))?;
        if let (true, Some(IpAddr::V4(_))) = (self.v6, host_ip) {
            return Err(host_value.error(
                ErrorKind::WrongFamily,
                "an IPv4 address, but a tcp6 client connects over IPv6 only; use tcp",
            ));
        }
        let port = b.require("port")?.port()?;
        let timeout = b.parse_or("timeout", DEFAULT_TIMEOUT, |v| v.seconds())?;
        let bind_address = b.parse_opt("bindAddress", |v| {
            let bind = bind_address(v)?;
            if self.v6 && bind.ip.is_ipv4() {
                return Err(v.error(
                    ErrorKind::WrongFamily,
                    "an IPv4 address, but a tcp6 client connects over IPv6",
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
        Ok(Box::new(TcpClient {
            host: host.to_owned(),
            port,
            timeout,
            bind_address,
            family: if self.v6 {
                ClientFamily::Ipv6
            } else {
                ClientFamily::Any
            },
        }))
    }
}

fn bind_address(v: Value<'_>) -> Result<BindAddress, EndpointError> {
    v.as_str()
        .parse::<BindAddress>()
        .map_err(|e| v.error(e.kind, e.reason))
}

struct UnixClientType;

impl ClientType for UnixClientType {
    fn name(&self) -> &str {
        "unix"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let b = args.bind(UNIX_PARAMS)?;
        let path = unix_path(b.require("path")?)?;
        let mut spec = UnixClient::new(path);
        spec.timeout = b.parse_or("timeout", DEFAULT_TIMEOUT, |v| v.seconds())?;
        spec.lockfile = b.parse_or("lockfile", false, |v| v.flag())?;
        Ok(Box::new(spec))
    }
}

pub(crate) fn register_builtins(r: &mut Registry) {
    r.register_client(TcpClientType { v6: false });
    r.register_client(TcpClientType { v6: true });
    r.register_client(UnixClientType);
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
