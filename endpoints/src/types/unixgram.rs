//! `unixgram`: the Unix datagram server spec [`UnixgramServer`] (a port on a path, with the
//! same `PATH.lock` rule as `unix` servers, or on a Linux abstract `@name`), the client
//! spec [`UnixgramClient`] (a port connected to a path), their parsers, and opening them.

use std::any::Any;
use std::ffi::OsString;
use std::fmt;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use torsion_reactor::{
    Address, DatagramProtocol, DatagramTransport, Deferred, Error, Reactor, UnixDatagramOptions,
};

use super::unix::{DEFAULT_UNIX_MODE, take_lock};
use crate::args::{Args, ParamSpec, Value};
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::spec::{ClientSpec, ClientType, ParamValue, ServerSpec, ServerType};

/// A Unix datagram port (`unixgram`). An address starting with `@` is a Linux abstract
/// name (no file, no mode, no lock file); write `./@x` for a file called `@x`.
///
/// ```
/// use torsion_endpoints::{parse_server, UnixgramServer};
///
/// let spec = parse_server("unixgram:/run/log.sock:mode=620").unwrap();
/// let unix = spec.downcast_ref::<UnixgramServer>().unwrap();
/// assert_eq!(unix, &UnixgramServer { mode: 0o620, ..UnixgramServer::new("/run/log.sock") });
/// assert!(spec.is_datagram());
/// assert!(UnixgramServer::new("@metrics").is_abstract());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixgramServer {
    /// The socket's path, or `@name` for an abstract name.
    pub address: PathBuf,
    /// The socket file's permission bits (default `0o666`, at most `0o777`).
    pub mode: u32,
    /// Use a `PATH.lock` pid file (default on), as `unix` servers do: a stale socket left
    /// by a dead process is removed, and a live one is never taken over.
    pub lockfile: bool,
}

impl UnixgramServer {
    /// A port on `address` with the defaults: mode 0o666, lockfile on.
    pub fn new(address: impl Into<PathBuf>) -> Self {
        UnixgramServer {
            address: address.into(),
            mode: DEFAULT_UNIX_MODE,
            lockfile: true,
        }
    }

    /// Whether the address is a Linux abstract name (`@name`).
    pub fn is_abstract(&self) -> bool {
        abstract_name(&self.address).is_some()
    }

    /// Opens the port, taking the lock file first; see [`crate::types::listen_datagram`].
    pub(crate) fn listen_with<P: DatagramProtocol>(
        &self,
        reactor: &Reactor,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        if let Some(path) = abstract_name(&self.address) {
            return reactor.listen_unix_datagram(path, protocol);
        }
        let lock_file = if self.lockfile {
            Some(take_lock(&self.address)?)
        } else {
            None
        };
        let options = UnixDatagramOptions {
            mode: self.mode,
            remove_on_stop: true,
            lock_file: lock_file.clone(),
            ..UnixDatagramOptions::default()
        };
        let result = reactor.listen_unix_datagram_with(&self.address, protocol, &options);
        if let (Err(_), Some(lock)) = (&result, lock_file) {
            let _ = std::fs::remove_file(lock);
        }
        result
    }
}

/// For `@name`, the kernel's form of the abstract name (a leading NUL byte).
fn abstract_name(address: &Path) -> Option<PathBuf> {
    let bytes = address.as_os_str().as_encoded_bytes();
    let name = bytes.strip_prefix(b"@")?;
    let mut kernel = vec![0u8];
    kernel.extend_from_slice(name);
    Some(PathBuf::from(OsString::from_vec(kernel)))
}

impl ServerSpec for UnixgramServer {
    fn type_name(&self) -> &str {
        "unixgram"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![
            (
                "address".to_owned(),
                ParamValue::Str(self.address.to_string_lossy().into_owned()),
            ),
            ("mode".to_owned(), ParamValue::Int(self.mode.into())),
            ("lockfile".to_owned(), ParamValue::Bool(self.lockfile)),
        ]
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

impl fmt::Display for UnixgramServer {
    /// The canonical description, every parameter by keyword; it parses back to `self` when
    /// the path is UTF-8.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unixgram:address={}:mode={:o}:lockfile={}",
            quote(&self.address.to_string_lossy()),
            self.mode,
            u8::from(self.lockfile)
        )
    }
}

/// A Unix datagram port connected to the socket at `path` (`unixgram`); on Linux it binds
/// an automatic abstract name, so the server can answer.
///
/// ```
/// use torsion_endpoints::{parse_client, UnixgramClient};
///
/// let spec = parse_client("unixgram:/run/log.sock").unwrap();
/// assert_eq!(spec.downcast_ref::<UnixgramClient>(), Some(&UnixgramClient::new("/run/log.sock")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixgramClient {
    /// The server's socket path, or `@name` for an abstract name.
    pub path: PathBuf,
}

impl UnixgramClient {
    /// A client for the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        UnixgramClient { path: path.into() }
    }

    pub(crate) fn connect_with<P: DatagramProtocol>(
        &self,
        reactor: &Reactor,
        protocol: P,
    ) -> Deferred<DatagramTransport> {
        let path = abstract_name(&self.path).unwrap_or_else(|| self.path.clone());
        Deferred::resolved(reactor.connect_unix_datagram(path, protocol))
    }
}

impl ClientSpec for UnixgramClient {
    fn type_name(&self) -> &str {
        "unixgram"
    }

    fn params(&self) -> Vec<(String, ParamValue)> {
        vec![(
            "path".to_owned(),
            ParamValue::Str(self.path.to_string_lossy().into_owned()),
        )]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn destination(&self) -> Address {
        match abstract_name(&self.path) {
            Some(kernel) => {
                Address::UnixAbstract(kernel.as_os_str().as_encoded_bytes()[1..].to_vec())
            }
            None => Address::Unix(Some(self.path.clone())),
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

impl fmt::Display for UnixgramClient {
    /// The canonical description; it parses back to `self` when the path is UTF-8.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unixgram:path={}", quote(&self.path.to_string_lossy()))
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers

const SERVER_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("address"),
    ParamSpec::positional("mode"),
    ParamSpec::positional("lockfile"),
];

const CLIENT_PARAMS: &[ParamSpec] = &[ParamSpec::positional("path")];

/// A socket path or `@name`: not empty, no NUL byte, an abstract name not empty either.
fn datagram_path(v: Value<'_>) -> Result<PathBuf, EndpointError> {
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
    if path == "@" {
        return Err(v.error(
            ErrorKind::InvalidAddress,
            "an abstract name (@name) must not be empty",
        ));
    }
    Ok(PathBuf::from(path))
}

/// `unixgram` ports.
pub(crate) struct UnixgramServerType;

impl ServerType for UnixgramServerType {
    fn name(&self) -> &str {
        "unixgram"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(SERVER_PARAMS)?;
        let mut spec = UnixgramServer::new(datagram_path(b.require("address")?)?);
        spec.mode = b.parse_or("mode", DEFAULT_UNIX_MODE, |v| v.octal_up_to(0o777))?;
        spec.lockfile = b.parse_or("lockfile", true, |v| v.flag())?;
        Ok(Box::new(spec))
    }
}

/// `unixgram` clients.
pub(crate) struct UnixgramClientType;

impl ClientType for UnixgramClientType {
    fn name(&self) -> &str {
        "unixgram"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let b = args.bind(CLIENT_PARAMS)?;
        Ok(Box::new(UnixgramClient::new(datagram_path(
            b.require("path")?,
        )?)))
    }
}
