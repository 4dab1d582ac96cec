//! Unix datagram sockets: `listen_unix_datagram` (a port on a path, or on a Linux abstract
//! name) and `connect_unix_datagram` (a client port connected to a path).

use std::cell::Cell;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::datagram::addr::Family;
use super::datagram::port::{Config, Port};
use super::datagram::protocol::{DatagramProtocol, boxed};
use super::datagram::transport::DatagramTransport;
use super::datagram::{DEFAULT_MAX_DATAGRAM, DEFAULT_SEND_QUEUE_LIMIT};
use super::protocol::Address;
use crate::error::Error;
use crate::event_loop::Reactor;

/// Options for [`Reactor::listen_unix_datagram_with`].
#[derive(Clone, Debug)]
pub struct UnixDatagramOptions {
    /// File mode for the socket path (default `0o666`; not used for abstract names).
    pub mode: u32,
    /// Remove the path when the port closes (default on).
    pub remove_on_stop: bool,
    /// A lock file to remove along with the path (the `unixgram:` endpoint's `PATH.lock`).
    pub lock_file: Option<PathBuf>,
    /// The largest datagram received whole (default
    /// [`DEFAULT_MAX_DATAGRAM`](crate::DEFAULT_MAX_DATAGRAM)); a larger one is discarded and
    /// reported, never delivered cut.
    pub max_datagram_size: usize,
    /// Payload bytes the send queue holds before datagrams are dropped (default
    /// [`DEFAULT_SEND_QUEUE_LIMIT`](crate::DEFAULT_SEND_QUEUE_LIMIT)).
    pub send_queue_limit: usize,
    /// `SO_RCVBUF`, if set.
    pub recv_buffer_size: Option<usize>,
    /// `SO_SNDBUF`, if set (on Linux it also bounds the size of one datagram).
    pub send_buffer_size: Option<usize>,
}

impl Default for UnixDatagramOptions {
    fn default() -> Self {
        UnixDatagramOptions {
            mode: 0o666,
            remove_on_stop: true,
            lock_file: None,
            max_datagram_size: DEFAULT_MAX_DATAGRAM,
            send_queue_limit: DEFAULT_SEND_QUEUE_LIMIT,
            recv_buffer_size: None,
            send_buffer_size: None,
        }
    }
}

/// Whether `path` names a Linux abstract socket (its first byte is NUL).
fn is_abstract(path: &Path) -> bool {
    path.as_os_str().as_bytes().first() == Some(&0)
}

/// `path` for messages: an abstract name as `@name`.
fn display(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    match bytes.split_first() {
        Some((0, name)) => Address::UnixAbstract(name.to_vec()).to_string(),
        _ => path.display().to_string(),
    }
}

fn new_socket(options: &UnixDatagramOptions) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::DGRAM.nonblocking().cloexec(), None)?;
    if let Some(size) = options.recv_buffer_size {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(size) = options.send_buffer_size {
        socket.set_send_buffer_size(size)?;
    }
    Ok(socket)
}

fn config(options: &UnixDatagramOptions) -> Config {
    Config {
        max_datagram: options.max_datagram_size,
        queue_limit: Cell::new(options.send_queue_limit),
        error_queue: false,
    }
}

impl Reactor {
    /// Opens a Unix datagram port at `path`, which must not exist (remove a stale socket
    /// first, or use the `unixgram:` endpoint, whose lock file does so safely). A path
    /// whose first byte is NUL (`"\0name"`) names a Linux abstract socket, which has no
    /// file. The path is removed when the port closes.
    ///
    /// ```
    /// use torsion_reactor::{Address, DatagramProtocol, DatagramTransport, Reactor};
    ///
    /// struct Log;
    /// impl DatagramProtocol for Log {
    ///     fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: Address) {
    ///         println!("{}", String::from_utf8_lossy(data));
    ///     }
    /// }
    ///
    /// let dir = std::env::temp_dir().join(format!("torsion-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let reactor = Reactor::current();
    /// let port = reactor.listen_unix_datagram(dir.join("log.sock"), Log).unwrap();
    /// assert!(dir.join("log.sock").exists());
    /// port.close();
    /// assert!(!dir.join("log.sock").exists());
    /// # std::fs::remove_dir(&dir).unwrap();
    /// ```
    pub fn listen_unix_datagram<P: DatagramProtocol>(
        &self,
        path: impl AsRef<Path>,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        self.listen_unix_datagram_with(path, protocol, &UnixDatagramOptions::default())
    }

    /// [`listen_unix_datagram`](Reactor::listen_unix_datagram) with options (mode,
    /// removal of the path and a lock file, sizes).
    pub fn listen_unix_datagram_with<P: DatagramProtocol>(
        &self,
        path: impl AsRef<Path>,
        protocol: P,
        options: &UnixDatagramOptions,
    ) -> Result<DatagramTransport, Error> {
        super::udp::check_sizes(options.max_datagram_size, options.send_queue_limit)?;
        let inner = self.inner_open()?;
        let path = path.as_ref().to_path_buf();
        let abstract_name = is_abstract(&path);
        let shown = display(&path);
        let fail = |e| {
            Error::io(
                format!("cannot listen on the Unix datagram socket {shown}"),
                e,
            )
        };
        let socket = new_socket(options).map_err(fail)?;
        socket
            .bind(&SockAddr::unix(&path).map_err(fail)?)
            .map_err(fail)?;
        if !abstract_name {
            let mode = std::fs::Permissions::from_mode(options.mode);
            if let Err(e) = std::fs::set_permissions(&path, mode) {
                let _ = std::fs::remove_file(&path);
                return Err(fail(e));
            }
        }
        let remove = (!abstract_name && options.remove_on_stop).then(|| path.clone());
        let lock = options.lock_file.clone();
        let cleanup: Box<dyn FnOnce()> = Box::new(move || {
            if let Some(path) = remove {
                let _ = std::fs::remove_file(path);
            }
            if let Some(lock) = lock {
                let _ = std::fs::remove_file(lock);
            }
        });
        Port::start(
            &inner,
            socket,
            Family::Unix,
            config(options),
            boxed(protocol),
            None,
            Some(cleanup),
        )
    }

    /// Opens a Unix datagram port connected to the socket at `path` (a `"\0name"` path:
    /// an abstract one): [`send`](DatagramTransport::send) goes there and only its
    /// datagrams are delivered. On Linux the port binds an automatic abstract name first,
    /// so the server can answer it; elsewhere it is unnamed and can only send.
    ///
    /// Errors, at the call: nothing at `path` (`no such file or directory`), or no socket
    /// bound there (`connection refused`).
    pub fn connect_unix_datagram<P: DatagramProtocol>(
        &self,
        path: impl AsRef<Path>,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        let inner = self.inner_open()?;
        let path = path.as_ref();
        let shown = display(path);
        let fail = |e| {
            Error::io(
                format!("cannot connect to the Unix datagram socket {shown}"),
                e,
            )
        };
        let options = UnixDatagramOptions::default();
        let socket = new_socket(&options).map_err(fail)?;
        if cfg!(target_os = "linux") {
            // An empty name asks Linux for an automatic abstract one (autobind).
            socket
                .bind(&SockAddr::unix("").map_err(fail)?)
                .map_err(fail)?;
        }
        let to = SockAddr::unix(path).map_err(fail)?;
        socket.connect(&to).map_err(fail)?;
        Port::start(
            &inner,
            socket,
            Family::Unix,
            config(&options),
            boxed(protocol),
            Some(to),
            None,
        )
    }

    /// Runs a datagram port on a Unix datagram socket made elsewhere (inherited from
    /// systemd, or from `UnixDatagram::pair`). The socket is made non-blocking; if it is
    /// connected, the port is too. Its path, if any, is left in place when the port closes.
    pub fn adopt_unix_datagram<P: DatagramProtocol>(
        &self,
        socket: std::os::unix::net::UnixDatagram,
        protocol: P,
    ) -> Result<DatagramTransport, Error> {
        let inner = self.inner_open()?;
        let fail = |e| Error::io("cannot adopt the Unix datagram socket", e);
        socket.set_nonblocking(true).map_err(fail)?;
        let socket = Socket::from(socket);
        let peer = socket.peer_addr().ok();
        Port::start(
            &inner,
            socket,
            Family::Unix,
            config(&UnixDatagramOptions::default()),
            boxed(protocol),
            peer,
            None,
        )
    }
}
