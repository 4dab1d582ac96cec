//! Unix stream sockets: `listen_unix` and `connect_unix`, with the same Protocol, Factory
//! and Transport API as TCP, plus peer credentials.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};

use super::client::{BoxedClientFactory, ClientFactory, Connector, ConnectorImpl, Dial};
use super::factory::{BoxedFactory, Factory};
use super::listen::{Acceptor, Listener, ListeningPort};
use super::protocol::Address;
use crate::error::Error;
use crate::event_loop::Reactor;

/// Options for [`Reactor::listen_unix_with`].
#[derive(Clone, Debug)]
pub struct UnixListenOptions {
    /// Pending-connection queue length (default [`DEFAULT_BACKLOG`](crate::DEFAULT_BACKLOG)).
    pub backlog: u32,
    /// File mode for the socket path (default `0o666`).
    pub mode: u32,
    /// Remove the path when the port stops listening (default on).
    pub remove_on_stop: bool,
    /// A lock file to remove along with the path (the `unix:` endpoint's `PATH.lock`).
    pub lock_file: Option<PathBuf>,
}

impl Default for UnixListenOptions {
    fn default() -> Self {
        UnixListenOptions {
            backlog: super::tcp::DEFAULT_BACKLOG,
            mode: 0o666,
            remove_on_stop: true,
            lock_file: None,
        }
    }
}

/// Options for [`Reactor::connect_unix_with`].
#[derive(Clone, Debug)]
pub struct UnixConnectOptions {
    /// Give up after this long (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT)); `None` waits for the OS.
    pub timeout: Option<Duration>,
}

impl Default for UnixConnectOptions {
    fn default() -> Self {
        UnixConnectOptions {
            timeout: Some(crate::DEFAULT_CONNECT_TIMEOUT),
        }
    }
}

struct UnixAcceptor {
    listener: UnixListener,
    path: PathBuf,
    remove_on_stop: bool,
    lock_file: Option<PathBuf>,
}

impl AsRawFd for UnixAcceptor {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

impl Acceptor for UnixAcceptor {
    type Stream = UnixStream;

    fn accept(&self) -> io::Result<(UnixStream, Address)> {
        let (fd, addr) = crate::io::sys::accept(self.listener.as_raw_fd())?;
        let peer = Address::Unix(addr.as_pathname().map(Path::to_path_buf));
        Ok((UnixStream::from(fd), peer))
    }

    fn local(&self) -> Address {
        Address::Unix(Some(self.path.clone()))
    }

    fn cleanup(&self) {
        if self.remove_on_stop {
            let _ = std::fs::remove_file(&self.path);
        }
        if let Some(lock) = &self.lock_file {
            let _ = std::fs::remove_file(lock);
        }
    }
}

struct UnixDial {
    path: PathBuf,
}

impl Dial for UnixDial {
    type Stream = UnixStream;

    fn dial(&self) -> io::Result<Socket> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
        super::client::start_connect(&socket, &SockAddr::unix(&self.path)?)?;
        Ok(socket)
    }

    fn stream_from(&self, socket: Socket) -> UnixStream {
        socket.into()
    }

    fn peer(&self) -> Address {
        Address::Unix(Some(self.path.clone()))
    }

    fn local_of(&self, _stream: &UnixStream) -> Address {
        Address::Unix(None)
    }
}

impl Reactor {
    /// Listens for Unix stream connections at `path` (which must not exist: remove a stale
    /// socket first, or use the `unix:` endpoint with its lock file, which does so safely).
    pub fn listen_unix<F: Factory>(
        &self,
        path: impl AsRef<Path>,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        self.listen_unix_with(path, factory, &UnixListenOptions::default())
    }

    /// [`listen_unix`](Reactor::listen_unix) with options (backlog, mode, removal of the
    /// path and a lock file on stop).
    pub fn listen_unix_with<F: Factory>(
        &self,
        path: impl AsRef<Path>,
        factory: F,
        options: &UnixListenOptions,
    ) -> Result<ListeningPort, Error> {
        let path = path.as_ref().to_path_buf();
        let fail = |e| Error::io(format!("cannot listen on {}", path.display()), e);
        let socket =
            Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None).map_err(fail)?;
        socket
            .bind(&SockAddr::unix(&path).map_err(fail)?)
            .map_err(fail)?;
        let result = (|| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(options.mode))?;
            socket.listen(options.backlog.clamp(1, i32::MAX as u32) as i32)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(fail(e));
        }
        let acceptor = UnixAcceptor {
            listener: socket.into(),
            path,
            remove_on_stop: options.remove_on_stop,
            lock_file: options.lock_file.clone(),
        };
        let listener = Listener::start(
            &self.inner_open()?,
            acceptor,
            Rc::new(BoxedFactory::new(factory)),
        )?;
        Ok(ListeningPort { port: listener })
    }

    /// Serves connections on an already-listening Unix socket (inherited from systemd). The
    /// path, if any, is left in place when the port stops.
    pub fn adopt_unix_listener<F: Factory>(
        &self,
        listener: UnixListener,
        factory: F,
    ) -> Result<ListeningPort, Error> {
        let fail = |e| Error::io("cannot adopt the inherited Unix socket", e);
        listener.set_nonblocking(true).map_err(fail)?;
        let path = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_default();
        let acceptor = UnixAcceptor {
            listener,
            path,
            remove_on_stop: false,
            lock_file: None,
        };
        let listener = Listener::start(
            &self.inner_open()?,
            acceptor,
            Rc::new(BoxedFactory::new(factory)),
        )?;
        Ok(ListeningPort { port: listener })
    }

    /// Connects to the Unix socket at `path`, giving up after
    /// [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT).
    pub fn connect_unix<F: ClientFactory>(&self, path: impl AsRef<Path>, factory: F) -> Connector {
        self.connect_unix_with(path, factory, &UnixConnectOptions::default())
    }

    /// [`connect_unix`](Reactor::connect_unix) with options (timeout).
    pub fn connect_unix_with<F: ClientFactory>(
        &self,
        path: impl AsRef<Path>,
        factory: F,
        options: &UnixConnectOptions,
    ) -> Connector {
        let dial = UnixDial {
            path: path.as_ref().to_path_buf(),
        };
        let connector = ConnectorImpl::new(
            &self.inner,
            dial,
            BoxedClientFactory::new(factory),
            options.timeout,
        );
        let handle = Connector(connector);
        handle.connect();
        handle
    }
}
