//! `unix`: the server spec [`UnixServer`] and client spec [`UnixClient`], their parsers,
//! the `PATH.lock` pid file (taken by servers, checked by clients with `lockfile=1`),
//! listening and connecting.

use std::any::Any;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use torsion_reactor::{
    Address, BoxedClientFactory, BoxedFactory, ClientFactory, Deferred, Error,
    ErrorKind as ReactorErrorKind, Factory, ListeningPort, Reactor, SharedFactory, Transport,
    UnixConnectOptions, UnixListenOptions,
};

use crate::args::{Args, ParamSpec, Value};
use crate::attempt::attempt;
use crate::error::{EndpointError, ErrorKind};
use crate::grammar::quote;
use crate::spec::{
    ClientSpec, ClientType, DEFAULT_BACKLOG, DEFAULT_TIMEOUT, MAX_BACKLOG, ParamValue, ServerSpec,
    ServerType,
};
use crate::values::format_seconds;

/// The permissions of a Unix socket when no `mode` is given: `0o666`.
pub const DEFAULT_UNIX_MODE: u32 = 0o666;

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

    /// Takes the lock file first if `lockfile` is on (see [`UnixServer::lockfile`]).
    fn listen(&self, reactor: &Reactor, factory: BoxedFactory) -> Result<ListeningPort, Error> {
        self.listen_with(reactor, factory)
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

    fn destination(&self) -> Address {
        Address::Unix(Some(self.path.clone()))
    }

    /// One attempt, with the description's timeout; with `lockfile` on, fails at once unless
    /// the server's lock file names a live process.
    fn connect(&self, reactor: &Reactor, factory: BoxedClientFactory) -> Deferred<Transport> {
        self.connect_with(reactor, SharedFactory::new(factory))
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

const SERVER_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("address"),
    ParamSpec::positional("mode"),
    ParamSpec::positional("backlog"),
    ParamSpec::positional("lockfile"),
];

const CLIENT_PARAMS: &[ParamSpec] = &[
    ParamSpec::positional("path"),
    ParamSpec::keyword("timeout"),
    ParamSpec::keyword("lockfile"),
];

/// `unix` servers.
pub(crate) struct UnixServerType;

impl ServerType for UnixServerType {
    fn name(&self) -> &str {
        "unix"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ServerSpec>, EndpointError> {
        let b = args.bind(SERVER_PARAMS)?;
        let address = unix_path(b.require("address")?)?;
        let mut spec = UnixServer::new(address);
        spec.mode = b.parse_or("mode", DEFAULT_UNIX_MODE, |v| v.octal_up_to(0o777))?;
        spec.backlog = b.parse_or("backlog", DEFAULT_BACKLOG, |v| v.u32_in(1, MAX_BACKLOG))?;
        spec.lockfile = b.parse_or("lockfile", true, |v| v.flag())?;
        Ok(Box::new(spec))
    }
}

/// A Unix socket path: not empty, no NUL byte.
fn unix_path(v: Value<'_>) -> Result<PathBuf, EndpointError> {
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

/// `unix` clients.
pub(crate) struct UnixClientType;

impl ClientType for UnixClientType {
    fn name(&self) -> &str {
        "unix"
    }

    fn parse(&self, args: &Args<'_>) -> Result<Box<dyn ClientSpec>, EndpointError> {
        let b = args.bind(CLIENT_PARAMS)?;
        let path = unix_path(b.require("path")?)?;
        let mut spec = UnixClient::new(path);
        spec.timeout = b.parse_or("timeout", DEFAULT_TIMEOUT, |v| v.seconds())?;
        spec.lockfile = b.parse_or("lockfile", false, |v| v.flag())?;
        Ok(Box::new(spec))
    }
}

// ---------------------------------------------------------------------------------------------
// Lock files, listening and connecting

/// `PATH.lock`: the lock file of the socket at `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The pid in the lock file at `lock`, if it holds one.
fn lock_holder(lock: &Path) -> Option<u32> {
    std::fs::read_to_string(lock).ok()?.trim().parse().ok()
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Takes `PATH.lock` for this process. A lock left by a dead process is stale: it and the
/// socket path are removed (the path only if it is a socket: whatever else is there is
/// not ours to delete). A lock held by a live process is an error: its socket is never
/// stolen. The lock is created, never written through: a symbolic link or a file put
/// there by someone else between our look and our write makes the listen fail instead of
/// writing our pid wherever the link points.
pub(crate) fn take_lock(address: &Path) -> Result<PathBuf, Error> {
    let lock = lock_path(address);
    let display = address.display();
    match std::fs::read_to_string(&lock) {
        Ok(text) => {
            let holder = text.trim().parse::<u32>().ok();
            match holder {
                Some(pid) if pid != std::process::id() && process_alive(pid) => {
                    return Err(Error::new(
                        ReactorErrorKind::InvalidInput,
                        format!(
                            "cannot listen on {display}: the socket is in use by process {pid} \
                             (lock file {})",
                            lock.display()
                        ),
                    ));
                }
                _ => {
                    log::info!("removing the stale socket {display} and its lock file");
                    remove_stale_socket(address)?;
                    let _ = std::fs::remove_file(&lock);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not there, or a dangling link: remove a link so that the create below can
            // make the file (it never follows one).
            if std::fs::symlink_metadata(&lock).is_ok() {
                let _ = std::fs::remove_file(&lock);
            }
        }
        Err(e) => {
            return Err(Error::io(
                format!("cannot read the lock file {}", lock.display()),
                e,
            ));
        }
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&lock);
    let mut file = match created {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::new(
                ReactorErrorKind::InvalidInput,
                format!(
                    "cannot listen on {display}: another process created the lock file {} \
                     first",
                    lock.display()
                ),
            ));
        }
        Err(e) => {
            return Err(Error::io(
                format!("cannot write the lock file {}", lock.display()),
                e,
            ));
        }
    };
    writeln!(file, "{}", std::process::id())
        .map_err(|e| Error::io(format!("cannot write the lock file {}", lock.display()), e))?;
    Ok(lock)
}

/// Removes what a dead server left at `address`, if it is a socket.
fn remove_stale_socket(address: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(address) {
        Ok(meta) if meta.file_type().is_socket() => {
            let _ = std::fs::remove_file(address);
            Ok(())
        }
        Ok(_) => Err(Error::new(
            ReactorErrorKind::InvalidInput,
            format!(
                "cannot listen on {}: the path exists and is not a socket (left as it is)",
                address.display()
            ),
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("cannot look at {}", address.display()),
            e,
        )),
    }
}

impl UnixServer {
    /// [`ServerSpec::listen`] with the factory's type kept (see [`crate::types::listen`]).
    pub(crate) fn listen_with<F: Factory>(
        &self,
        reactor: &Reactor,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        let lock_file = if self.lockfile {
            Some(take_lock(&self.address)?)
        } else {
            None
        };
        let options = UnixListenOptions {
            backlog: self.backlog,
            mode: self.mode,
            remove_on_stop: true,
            lock_file: lock_file.clone(),
        };
        let result = reactor.listen_unix_with(&self.address, factory, &options);
        if let (Err(_), Some(lock)) = (&result, lock_file) {
            let _ = std::fs::remove_file(lock);
        }
        result
    }
}

impl UnixClient {
    /// [`ClientSpec::connect`] with the factory's type kept (see [`crate::types::connect`]).
    pub(crate) fn connect_with<C: ClientFactory>(
        &self,
        reactor: &Reactor,
        factory: SharedFactory<C>,
    ) -> Deferred<Transport> {
        if let Err(e) = self.check_lock() {
            return Deferred::fail(e);
        }
        let path = self.path.clone();
        let options = UnixConnectOptions {
            timeout: Some(self.timeout),
        };
        let reactor = reactor.clone();
        attempt(
            self.path.display().to_string(),
            factory,
            None,
            options.timeout,
            move |f| reactor.connect_unix_with(&path, f, &options),
        )
    }

    /// Twisted's `checkPID`: connecting is allowed only if the server's lock names a live
    /// process.
    fn check_lock(&self) -> Result<(), Error> {
        if !self.lockfile {
            return Ok(());
        }
        let lock = lock_path(&self.path);
        if lock_holder(&lock).is_some_and(process_alive) {
            return Ok(());
        }
        Err(Error::new(
            ReactorErrorKind::InvalidInput,
            format!(
                "cannot connect to {}: no live server holds its lock file {}",
                self.path.display(),
                lock.display()
            ),
        ))
    }
}
