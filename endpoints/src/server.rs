//! The built-in server types: [`TcpServer`] (`tcp` and `tcp6`), [`UnixServer`] (`unix`) and
//! [`SystemdServer`] (`systemd`).

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::args::{Args, ParamSpec};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::registry::{Registry, ServerType};
use crate::spec::{ParamValue, ServerSpec};
use crate::values::format_scoped;

/// The listen backlog when none is given: the reactor's default, 1024. (Twisted's is 50;
/// a burst of connections beyond the backlog costs clients a one-second SYN retry, and
/// Linux caps the value at `net.core.somaxconn`, 4096 by default, anyway.)
pub const DEFAULT_BACKLOG: u32 = torsion_reactor::DEFAULT_BACKLOG;
/// The largest backlog accepted (the largest value `listen(2)` takes; the kernel may cap it
/// lower, at `net.core.somaxconn` on Linux).
pub const MAX_BACKLOG: u32 = i32::MAX as u32;
/// The permissions of a Unix socket when no `mode` is given: `0o666`.
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

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

    fn listen(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedFactory,
    ) -> Result<torsion_reactor::ListeningPort, torsion_reactor::Error> {
        crate::listen::tcp(self, reactor, factory)
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

/// A Unix-domain stream socket server (`unix`).
///
/// ```
/// use torsion_endpoints::{parse_server, UnixServer};
///
/// let spec = parse_server("unix:/run/chat.sock:mode=660").unwrap();
/// let unix = spec.downcast_ref::<UnixServer>().unwrap();
/// assert_eq!(unix, &UnixServer { mode: 0o660, ..UnixServer::new("/run/chat.sock") });
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixServer {
    /// The socket's path.
    pub address: PathBuf,
    /// The socket file's permission bits (default `0o666`, at most `0o777`).
    pub mode: u32,
    /// The `listen(2)` backlog, at least 1 (default 1024).
    pub backlog: u32,
    /// Use a `PATH.lock` pid file (default on): a stale socket left by a dead process is
    /// removed, and a live one is never taken over.
    pub lockfile: bool,
}

impl UnixServer {
    /// A server on `address` with the defaults: mode 0o666, backlog 1024, lockfile on.
    pub fn new(address: impl Into<PathBuf>) -> Self {
        UnixServer {
            address: address.into(),
            mode: DEFAULT_UNIX_MODE,
            backlog: DEFAULT_BACKLOG,
            lockfile: true,
        }
    }
}

impl ServerSpec for UnixServer {
    fn type_name(&self) -> &str {
        "unix"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![
            (
                "address".to_owned(),
                ParamValue::Str(self.address.to_string_lossy().into_owned()),
            ),
            ("mode".to_owned(), ParamValue::Int(self.mode.into())),
            ("backlog".to_owned(), ParamValue::Int(self.backlog.into())),
            ("lockfile".to_owned(), ParamValue::Bool(self.lockfile)),
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn listen(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedFactory,
    ) -> Result<torsion_reactor::ListeningPort, torsion_reactor::Error> {
        crate::listen::unix(self, reactor, factory)
    }
}

impl fmt::Display for UnixServer {
    /// The canonical description, every parameter by keyword; it parses back to `self` when
    /// the path is UTF-8.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unix:address={}:mode={:o}:backlog={}:lockfile={}",
            quote(&self.address.to_string_lossy()),
            self.mode,
            self.backlog,
            u8::from(self.lockfile)
        )
    }
}

/// The address family of a socket inherited from systemd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SocketDomain {
    /// `AF_INET` (`domain=INET`).
    Inet,
    /// `AF_INET6` (`domain=INET6`).
    Inet6,
    /// `AF_UNIX` (`domain=UNIX`).
    Unix,
}

impl SocketDomain {
    /// `INET`, `INET6` or `UNIX`, as written in descriptions.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketDomain::Inet => "INET",
            SocketDomain::Inet6 => "INET6",
            SocketDomain::Unix => "UNIX",
        }
    }
}

/// Which inherited socket a `systemd` server adopts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FdSelector {
    /// The `N`th socket passed (`index=N`, from 0): file descriptor `3 + N`.
    Index(u32),
    /// The first socket with this name in `LISTEN_FDNAMES` (`name=NAME`; systemd's
    /// `FileDescriptorName=`).
    Name(String),
}

/// A server that adopts a listening socket passed by systemd socket activation (`systemd`).
///
/// ```
/// use torsion_endpoints::{parse_server, FdSelector, SocketDomain, SystemdServer};
///
/// let spec = parse_server("systemd:domain=INET6:name=web").unwrap();
/// assert_eq!(
///     spec.downcast_ref::<SystemdServer>(),
///     Some(&SystemdServer { domain: SocketDomain::Inet6, selector: FdSelector::Name("web".into()) })
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemdServer {
    /// The socket's address family.
    pub domain: SocketDomain,
    /// Which of the inherited sockets to adopt.
    pub selector: FdSelector,
}

impl SystemdServer {
    /// The file descriptor this server would adopt, given systemd's environment (see
    /// [`resolve_listen_fd`](crate::systemd::resolve_listen_fd)).
    pub fn resolve_fd(
        &self,
        env: &crate::systemd::ListenEnv,
        current_pid: u32,
    ) -> Result<i32, crate::systemd::SystemdError> {
        crate::systemd::resolve_listen_fd(&self.selector, env, current_pid)
    }
}

impl ServerSpec for SystemdServer {
    fn type_name(&self) -> &str {
        "systemd"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        let selector = match &self.selector {
            FdSelector::Index(i) => ("index".to_owned(), ParamValue::Int((*i).into())),
            FdSelector::Name(n) => ("name".to_owned(), ParamValue::Str(n.clone())),
        };
        vec![
            (
                "domain".to_owned(),
                ParamValue::Str(self.domain.as_str().to_owned()),
            ),
            selector,
        ]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn listen(
        &self,
        reactor: &torsion_reactor::Reactor,
        factory: torsion_reactor::BoxedFactory,
    ) -> Result<torsion_reactor::ListeningPort, torsion_reactor::Error> {
        crate::listen::systemd(self, reactor, factory)
    }
}

impl fmt::Display for SystemdServer {
    /// The canonical description; it parses back to `self`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "systemd:domain={}", self.domain.as_str())?;
        match &self.selector {
            FdSelector::Index(i) => write!(f, ":index={i}"),
            FdSelector::Name(n) => write!(f, ":name={}", quote(n)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers

const TCP_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::positional("interface"),
    ParamSpec::positional("backlog"),
    ParamSpec::keyword("reuseport"),
];

/// Twisted's `tcp6` order differs from `tcp`: port, backlog, interface.
const TCP6_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("port"),
    ParamSpec::positional("backlog"),
    ParamSpec::positional("interface"),
    ParamSpec::keyword("reuseport"),
    ParamSpec::keyword("ipv6only"),
];

const UNIX_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("address"),
    ParamSpec::positional("mode"),
    ParamSpec::positional("backlog"),
    ParamSpec::positional("lockfile"),
];

const SYSTEMD_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("domain"),
    ParamSpec::positional("index"),
    ParamSpec::keyword("name"),
];

/// The largest `index=`: file descriptor `3 + index` must fit an `i32`.
const MAX_FD_INDEX: u32 = i32::MAX as u32 - 3;

struct TcpServerType {
    v6: bool,
}

impl ServerType for TcpServerType {
    fn name(&self) -> &str {
        if self.v6 { "tcp6" } else { "tcp" }
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(if self.v6 { TCP6_PARAMS } else { TCP_PARAMS })?;
        let port = b.require("port")?.port()?;
        let mut spec = if self.v6 {
            TcpServer::new_v6(port)
        } else {
            TcpServer::new(port)
        };
        if let Some(v) = b.get("interface") {
            let (ip, scope) = v.ip()?;
            match (self.v6, ip) {
                (false, IpAddr::V6(_)) => {
                    return Err(v.error(
                        ErrorKind::WrongFamily,
                        "an IPv6 address, but a tcp server listens on IPv4; use tcp6 for IPv6",
                    ));
                }
                (true, IpAddr::V4(_)) => {
                    return Err(v.error(
                        ErrorKind::WrongFamily,
                        "an IPv4 address, but a tcp6 server listens on IPv6; use tcp for \
                         IPv4, or an IPv4-mapped address such as \\:\\:ffff\\:127.0.0.1",
                    ));
                }
                _ => {}
            }
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

struct UnixServerType;

impl ServerType for UnixServerType {
    fn name(&self) -> &str {
        "unix"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(UNIX_PARAMS)?;
        let address = unix_path(b.require("address")?)?;
        let mut spec = UnixServer::new(address);
        spec.mode = b.parse_or("mode", DEFAULT_UNIX_MODE, |v| v.octal_up_to(0o777))?;
        spec.backlog = b.parse_or("backlog", DEFAULT_BACKLOG, |v| v.u32_in(1, MAX_BACKLOG))?;
        spec.lockfile = b.parse_or("lockfile", true, |v| v.flag())?;
        Ok(Box::new(spec))
    }
}

/// A Unix socket path: not empty, no NUL byte.
pub(crate) fn unix_path(v: crate::args::Value<'_>) -> Result<PathBuf, EndpointError> {
    let path = v.as_str();
    if path.is_empty() {
        return Err(v.error(ErrorKind::InvalidAddress, "a socket path must not be empty"));
    }
    if path.contains('\0') {
        return Err(v.error(
            ErrorKind::InvalidAddress,
            "a socket path must not contain a NUL character",
        ));
    }
    Ok(PathBuf::from(path))
}

struct SystemdServerType;

impl ServerType for SystemdServerType {
    fn name(&self) -> &str {
        "systemd"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(SYSTEMD_PARAMS)?;
        let domain = match b.require("domain")?.choice(&["INET", "INET6", "UNIX"])? {
            0 => SocketDomain::Inet,
            1 => SocketDomain::Inet6,
            _ => SocketDomain::Unix,
        };
        let selector = match (b.get("index"), b.get("name")) {
            (Some(_), Some(name)) => {
                return Err(args
                    .error(
                        ErrorKind::ConflictingParameters,
                        "a systemd server takes exactly one of index and name, not both",
                    )
                    .with_param("name")
                    .with_segment(name.segment()));
            }
            (None, None) => {
                return Err(args
                    .error(
                        ErrorKind::MissingParameter,
                        "a systemd server needs exactly one of index=N (the Nth inherited \
                         socket, from 0) and name=NAME (its FileDescriptorName)",
                    )
                    .with_param("index"));
            }
            (Some(index), None) => FdSelector::Index(index.u32_in(0, MAX_FD_INDEX)?),
            (None, Some(name)) => {
                let text = name.as_str();
                let valid = !text.is_empty()
                    && text.len() <= 255
                    && text.bytes().all(|c| c.is_ascii_graphic() && c != b':');
                if !valid {
                    return Err(name.error(
                        ErrorKind::InvalidValue,
                        "a systemd socket name is 1 to 255 printable ASCII characters, \
                         without spaces or colons",
                    ));
                }
                FdSelector::Name(text.to_owned())
            }
        };
        Ok(Box::new(SystemdServer { domain, selector }))
    }
}

pub(crate) fn register_builtins(r: &mut Registry) {
    r.register_server(TcpServerType { v6: false });
    r.register_server(TcpServerType { v6: true });
    r.register_server(UnixServerType);
    r.register_server(SystemdServerType);
}
