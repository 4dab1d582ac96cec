//! Endpoint descriptions: one string says where a server listens or where a client connects,
//! in the language of Twisted's `serverFromString` / `clientFromString`.
//!
//! ```
//! use torsion_endpoints::{parse_client, parse_server, ErrorKind, TcpClient, TcpServer};
//!
//! let server = parse_server("tcp:8000:interface=127.0.0.1").unwrap();
//! assert_eq!(server.type_name(), "tcp");
//! let tcp = server.downcast_ref::<TcpServer>().unwrap();
//! assert_eq!((tcp.port, tcp.backlog), (8000, 1024));
//!
//! let client = parse_client("tcp:host=example.org:port=80:timeout=1.5").unwrap();
//! let tcp = client.downcast_ref::<TcpClient>().unwrap();
//! assert_eq!(tcp.timeout.as_millis(), 1500);
//!
//! // Every parameter, defaults filled in, typed for JSON:
//! let names: Vec<String> = server.params().into_iter().map(|(name, _)| name).collect();
//! assert_eq!(names, ["port", "interface", "backlog", "reuseport"]);
//!
//! let err = parse_server("tcp:80:backlog=0").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::OutOfRange);
//! assert_eq!(
//!     err.to_string(),
//!     "in \"tcp:80:backlog=0\": invalid backlog \"0\": expected a number from 1 to 2147483647"
//! );
//! ```
//!
//! # Listening and connecting
//!
//! [`server_from_string`] and [`client_from_string`] give endpoints bound to a reactor;
//! [`ServerEndpoint::new`] and [`ClientEndpoint::new`] take a spec made in Rust
//! (`TcpServer::new(8000)`) instead of a string. [`parse_server`] and [`parse_client`] only
//! check a description (no reactor), as `endpoint_check` does.
//!
//! [`ServerEndpoint::listen`] listens at once and returns the listening port (binding does
//! not wait). [`ClientEndpoint::connect`] returns a [`Deferred`](torsion_reactor::Deferred)
//! of the connected protocol's [`Transport`](torsion_reactor::Transport), fired after its
//! `connection_made` (connecting takes time; cancelling the Deferred stops it);
//! [`ClientEndpoint::connect_protocol`] connects a single protocol without a factory; and
//! [`ClientEndpoint::connector`] gives a [`Connector`](torsion_reactor::Connector) that
//! connects the same way each time it is asked, for a
//! [`Reconnecting`](torsion_reactor::Reconnecting) client. Errors name the address and the
//! cause (`cannot listen on 127.0.0.1:8000: address already in use`, `cannot connect to
//! example.org:80 (tried [2001:db8::1]:80, 192.0.2.1:80): connection refused`, `cannot
//! connect to example.org:80: timed out after 30s`).
//!
//! ```
//! use std::{cell::RefCell, rc::Rc, time::Duration};
//! use torsion_endpoints::{client_from_string, server_from_string};
//! use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, t: &Transport, data: &[u8]) { t.write(data); }
//! }
//!
//! struct Ask(Rc<RefCell<Vec<u8>>>);
//! impl Protocol for Ask {
//!     fn connection_made(&mut self, t: &Transport) { t.write(b"ping"); }
//!     fn data_received(&mut self, _: &Transport, data: &[u8]) {
//!         self.0.borrow_mut().extend_from_slice(data);
//!     }
//! }
//!
//! let reactor = Reactor::current();
//! let port = server_from_string(&reactor, "tcp:0:interface=127.0.0.1")
//!     .unwrap()
//!     .listen(factory_fn(|_| Echo))
//!     .unwrap();
//! // (Dropping the handle does not stop listening; `port.stop_listening()` does.)
//! let address = port.local_addr().socket_addr().unwrap();
//! let description = format!("tcp:host=127.0.0.1:port={}:timeout=5", address.port());
//! let answer = Rc::new(RefCell::new(Vec::new()));
//! client_from_string(&reactor, &description)
//!     .unwrap()
//!     .connect_protocol(Ask(answer.clone()))
//!     .on_result(|connected| match connected {
//!         Ok(transport) => println!("connected to {}", transport.peer_addr()),
//!         Err(err) => eprintln!("{err}"),
//!     });
//! reactor.run_until(Duration::from_secs(10), || answer.borrow().len() == 4).unwrap();
//! assert_eq!(*answer.borrow(), b"ping");
//! ```
//!
//! A `tcp:` client resolves a host name on the reactor's thread pool (`getaddrinfo`
//! blocks), then tries the addresses Happy-Eyeballs style ([RFC 8305]): families
//! interleaved, IPv6 first; the next attempt 250 ms after the previous one, or at once when
//! one fails; the first to connect wins and the others are cancelled; `timeout` covers the
//! whole, resolution included. See [`happy_eyeballs`].
//!
//! [RFC 8305]: https://www.rfc-editor.org/rfc/rfc8305
//!
//! # The grammar
//!
//! - A description is a list of *segments* separated by `:`.
//! - A segment holding `=` is a keyword segment `key=value`; only the first `=` splits, so
//!   `key=a=b` has the value `a=b`. Any other segment is a positional value.
//! - `\` makes the next character literal anywhere (`\:`, `\=`, `\\`) and is dropped; a lone
//!   `\` at the very end is an error. [`quote`] escapes a value so it reads back unchanged.
//! - The *type* is the first positional segment; type names ignore ASCII case (`TCP:80`).
//!   Positional and keyword segments may be interleaved: only the order of the positionals
//!   matters.
//! - Parameter names are case-sensitive (`bindAddress`), as in Twisted.
//! - Empty segments count: `tcp:80:` has an empty second positional (an invalid interface).
//! - An IPv6 address inside a description has its colons escaped: `tcp6:80:interface=\:\:1`.
//!
//! # Types and parameters
//!
//! "Pos." is a parameter's place among the positional segments after the type; "—" means it
//! is only accepted as `key=value`. Numbers are plain ASCII decimal unless said otherwise.
//!
//! ## Servers ([`parse_server`])
//!
//! | type | parameter | pos. | default | meaning |
//! |---|---|---|---|---|
//! | `tcp` → [`TcpServer`] | `port` | 1 | required | port 0–65535 (0: the system picks a free one) |
//! | | `interface` | 2 | `0.0.0.0` | IPv4 literal to listen on (no host names) |
//! | | `backlog` | 3 | `1024` | `listen(2)` backlog, 1–2147483647 (Twisted's default is 50; see [`DEFAULT_BACKLOG`]) |
//! | | `reuseport` | — | `0` | `1` sets `SO_REUSEPORT` (one listener per core) |
//! | `tcp6` → [`TcpServer`] | `port` | 1 | required | port 0–65535 |
//! | | `backlog` | **2** | `1024` | as for `tcp` (Twisted's `tcp6` order differs from `tcp`) |
//! | | `interface` | **3** | `::` | IPv6 literal, optionally with `%scope` (`fe80::1%eth0`) |
//! | | `reuseport` | — | `0` | as for `tcp` |
//! | | `ipv6only` | — | system's | `1`/`0` sets `IPV6_V6ONLY` on/off (`0` on `::`: dual stack) |
//! | `unix` → [`UnixServer`] | `address` | 1 | required | socket path (not empty, no NUL) |
//! | | `mode` | 2 | `666` | permissions, **octal** digits with optional `0o`, at most `777` |
//! | | `backlog` | 3 | `1024` | as for `tcp` |
//! | | `lockfile` | 4 | `1` | `1`: `PATH.lock` pid file (stale socket removed, live one kept) |
//! | `systemd` → [`SystemdServer`] | `domain` | 1 | required | `INET`, `INET6` or `UNIX` (any case) |
//! | | `index` | 2 | one of `index`, `name` | the Nth inherited socket, from 0 (fd 3 + N) |
//! | | `name` | — | one of `index`, `name` | the socket's `FileDescriptorName=` |
//! | `udp` → [`UdpServer`] (datagram) | `port` | 1 | required | port 0–65535 (0: the system picks a free one) |
//! | | `interface` | 2 | `0.0.0.0` | IPv4 literal to bind (a multicast group address takes only that group's datagrams) |
//! | | `reuseport` | — | `0` | `1` sets `SO_REUSEPORT` (one port per core) |
//! | `udp6` → [`UdpServer`] (datagram) | `port` | 1 | required | port 0–65535 |
//! | | `interface` | 2 | `::` | IPv6 literal, optionally with `%scope` |
//! | | `reuseport` | — | `0` | as for `udp` |
//! | | `ipv6only` | — | system's | `1`/`0` sets `IPV6_V6ONLY` on/off (`0` on `::`: dual stack) |
//! | `unixgram` → [`UnixgramServer`] (datagram) | `address` | 1 | required | socket path, or `@name` for a Linux abstract name |
//! | | `mode` | 2 | `666` | permissions, **octal**, at most `777` (not for `@name`) |
//! | | `lockfile` | 3 | `1` | `1`: `PATH.lock` pid file, as for `unix` (not for `@name`) |
//! | `stdio` → [`StdioServer`] | (none) | | | standard input and output, one connection (`stdio:`, as Twisted writes it, is accepted) |
//! | `ssl` or `tls` → [`TlsServer`] | `port` | 1 | required | as for `tcp` |
//! | | `privateKey` | 2 | required | the private key's PEM file (may also hold the certificate chain) |
//! | | `certKey` | 3 | the `privateKey` file | the certificate chain's PEM file, the server's certificate first |
//! | | `sslmethod` | 4 | none | none or `SSLv23_METHOD` or `TLS_METHOD`: TLS 1.2 and 1.3; `TLSv1_2_METHOD`: 1.2 only |
//! | | `interface` | 5 | `0.0.0.0` | IPv4 or IPv6 literal to listen on |
//! | | `backlog` | 6 | `1024` | as for `tcp` |
//! | | `extraCertChain` | 7 | none | more chain certificates (PEM), sent after `certKey`'s |
//! | | `dhParameters` | 8 | none | accepted for Twisted's descriptions, unused (ECDHE only) |
//! | | `caCerts` | — | none | CA file (or directory) for client certificates: clients are asked for one |
//! | | `requireClientCert` | — | `0` | `1`: refuse clients without a certificate `caCerts` trusts (needs `caCerts`) |
//! | | `alpn` | — | none | ALPN protocols, comma-separated, preferred first (`h2,http/1.1`) |
//! | | `reuseport` | — | `0` | as for `tcp` |
//! | `haproxy` → [`HaproxyServer`] | `timeout` | — | `5` | seconds a connection has to send its whole PROXY protocol header; given before the wrapped description (`haproxy:timeout=3:tcp:8000`) |
//! | | (the wrapped description) | | | any stream server, written after haproxy's own parameters: `haproxy:tcp:8000`, `haproxy:unix:/run/app.sock`, `haproxy:ssl:443:privateKey=key.pem` (the header is read before the TLS handshake); see [`haproxy`] |
//!
//! ## Clients ([`parse_client`])
//!
//! | type | parameter | pos. | default | meaning |
//! |---|---|---|---|---|
//! | `tcp` → [`TcpClient`] | `host` | 1 | required | host name (resolved off the reactor thread; every address tried) or IP literal (IPv6 may have `%scope`) |
//! | | `port` | 2 (1 if `host=` is given) | required | port 0–65535 |
//! | | `timeout` | — | `30` | seconds for the whole attempt, name resolution included; a fraction is allowed (`1.5`) |
//! | | `bindAddress` | — | none | local [`BindAddress`]: IP with optional port (`192.0.2.1\:5000`, `[\:\:1]\:5000`) |
//! | `tcp6` → [`TcpClient`] | as `tcp` | | | IPv6 only: an IP host or `bindAddress` must be IPv6 |
//! | `unix` → [`UnixClient`] | `path` | 1 | required | socket path (not empty, no NUL) |
//! | | `timeout` | — | `30` | seconds for the attempt, as for `tcp` |
//! | | `lockfile` | — | `0` | Twisted's `checkPID`: `1` fails at once unless `PATH.lock` names a live process |
//! | `udp` → [`UdpClient`] (datagram) | `host` | 1 | required | host name (resolved off the reactor thread; the first address a socket connects to is used) or IP literal |
//! | | `port` | 2 (1 if `host=` is given) | required | port 1–65535 |
//! | | `timeout` | — | `30` | seconds to resolve the host name; a fraction is allowed |
//! | | `bindAddress` | — | none | local [`BindAddress`], as for `tcp` |
//! | `udp6` → [`UdpClient`] (datagram) | as `udp` | | | IPv6 only |
//! | `unixgram` → [`UnixgramClient`] (datagram) | `path` | 1 | required | the server's socket path or `@name`; on Linux the client binds an automatic abstract name so the server can answer |
//! | `tls` → [`TlsClient`] | as `tcp` | | | `host`, `port`, `timeout`, `bindAddress` as for `tcp`; the server's certificate is checked against `host` (sent with SNI) |
//! | | `trustRoots` | — | the system's | CA file or directory of PEM files to trust instead |
//! | | `certificate` | — | none | a client certificate (PEM) presented when the server asks |
//! | | `privateKey` | — | the `certificate` file | its key (needs `certificate`) |
//! | | `alpn` | — | none | ALPN protocols offered, comma-separated |
//!
//! The files of `ssl`/`tls` are read when the description is parsed: a missing or
//! unreadable file is [`ErrorKind::BadFile`], a key that does not match its certificate or
//! an expired certificate [`ErrorKind::BadCertificate`], each naming the parameter and the
//! file. A `tls` client's connect fires after the TLS handshake, with the TLS transport;
//! see `torsion-tls`.
//!
//! `tor`, `onion`, `i2p`, `le` and `lets` servers and `ssl`, `tor`, `onion`
//! and `i2p` clients (types of Twisted and its well-known plugins) are rejected with
//! [`ErrorKind::Unsupported`], not as unknown (for an `ssl` client, use `tls`).
//!
//! # Datagram endpoints
//!
//! Twisted has no endpoint strings for datagrams (twisted#4471); these are torsion's, in the
//! same grammar and with the same strictness. `udp`, `udp6` and `unixgram` descriptions
//! parse like any other ([`parse_server`], [`parse_client`], `endpoint_check`), but open
//! with their own endpoints, which take a
//! [`DatagramProtocol`](torsion_reactor::DatagramProtocol) instead of a factory:
//! [`datagram_from_string`]`(&reactor, "udp:5353")?.listen(protocol)?` opens the port and
//! gives its [`DatagramTransport`](torsion_reactor::DatagramTransport);
//! [`datagram_client_from_string`]`(&reactor, "udp:host=h:port=p")?.connect(protocol)`
//! gives a Deferred of a port connected to that peer (a host name is resolved off the
//! reactor thread first). Passing a datagram description to [`server_from_string`] (or a
//! stream one to [`datagram_from_string`]) is an [`ErrorKind::WrongTransport`] error.
//!
//! ```
//! use std::{cell::RefCell, rc::Rc, time::Duration};
//! use torsion_endpoints::{datagram_client_from_string, datagram_from_string};
//! use torsion_reactor::{Address, DatagramProtocol, DatagramTransport, Reactor};
//!
//! struct Echo;
//! impl DatagramProtocol for Echo {
//!     fn datagram_received(&mut self, t: &DatagramTransport, data: &[u8], from: Address) {
//!         let _ = t.send_to(data, &from);
//!     }
//! }
//!
//! struct Ask(Rc<RefCell<Vec<u8>>>);
//! impl DatagramProtocol for Ask {
//!     fn connection_made(&mut self, t: &DatagramTransport) {
//!         let _ = t.send(b"ping");
//!     }
//!     fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: Address) {
//!         self.0.borrow_mut().extend_from_slice(data);
//!     }
//! }
//!
//! let reactor = Reactor::current();
//! let server = datagram_from_string(&reactor, "udp:0:interface=127.0.0.1")
//!     .unwrap()
//!     .listen(Echo)
//!     .unwrap();
//! let port = server.local_addr().socket_addr().unwrap().port();
//! let answer = Rc::new(RefCell::new(Vec::new()));
//! datagram_client_from_string(&reactor, &format!("udp:host=127.0.0.1:port={port}"))
//!     .unwrap()
//!     .connect(Ask(answer.clone()))
//!     .on_result(|r| if let Err(e) = r { eprintln!("{e}") });
//! reactor.run_until(Duration::from_secs(10), || !answer.borrow().is_empty()).unwrap();
//! assert_eq!(*answer.borrow(), b"ping");
//! ```
//!
//! # Stricter than Twisted
//!
//! Each of these is an [`EndpointError`] (with an inspectable [`ErrorKind`]) on servers and
//! clients alike, where Twisted accepts, silently changes, or fails with an unrelated Python
//! exception:
//!
//! - numbers with a sign, spaces, underscores or non-ASCII digits (Python's `int()` takes
//!   `+80`, ` 80`, `8_000`, `８０`); ports above 65535; a backlog of 0; `mode` above `777`;
//! - flags other than `0`/`1` (Twisted's `lockfile=2` means on);
//! - an `ssl` server without `privateKey` (Twisted reads `server.pem` from the working
//!   directory), an `sslmethod` other than the TLS 1.2-and-later ones, and certificate
//!   files that cannot be used (Twisted finds out when listening, or at the first
//!   handshake);
//! - an unknown parameter, a parameter given twice (Twisted lets the last keyword win, and on
//!   clients lets a positional override a keyword), a missing parameter, extra positionals
//!   (Twisted drops a client's extras), a trailing lone `\` (Twisted crashes);
//! - an `interface` that is not an IP literal of the server's family (Twisted finds out only
//!   when listening); a `bindAddress` that is not an IP literal or is of the wrong family;
//! - a negative systemd `index` (Twisted counts from the end, Python style).
//!
//! And more capable: type names ignore case on servers too; `timeout` may have a fraction;
//! `bindAddress` may carry a port; there is a `tcp6` client; `tcp` clients use every address
//! family; `reuseport` and `ipv6only` exist; [`quote`] also escapes `=`; datagram types exist.
//!
//! # Your own types
//!
//! A [`Registry`] maps names to [`ServerType`]s and [`ClientType`]s; the built-ins are
//! registered the same way. A type parses [`Args`] with [`Args::bind`] and the [`Value`]
//! parsers, and so gets the same strictness and messages (see [`Args`] for an example). The
//! parsed result is a [`ServerSpec`] / [`ClientSpec`] trait object.
//!
//! # Socket activation
//!
//! [`systemd`] resolves a `systemd` server's `index=`/`name=` to an inherited descriptor from
//! `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`, and listening adopts it.
//!
//! # Where things are
//!
//! The parsing chain runs one way, each module using only those before it: `grammar`
//! (segments, escapes, [`quote`]), `values` (strict numbers, seconds, flags, IP literals),
//! `args` ([`Args`], [`ParamSpec`], [`Value`]), `spec` (the [`ServerSpec`]/[`ClientSpec`]
//! and [`ServerType`]/[`ClientType`] traits), the built-in types (`types/tcp.rs`,
//! `types/unix.rs`, `types/systemd.rs`, `types/stdio.rs`, `types/tls.rs`, `types/udp.rs`,
//! `types/unixgram.rs`: each a type's spec, parser and I/O), and
//! [`Registry`]. Connecting has its own pieces: `attempt` (a reactor connector as a
//! `Deferred<Transport>`), [`happy_eyeballs`] (the race) and `connector` (the
//! [`ClientEndpoint::connector`] backend); `endpoint` binds specs to a reactor; `streams`
//! gives async code [`connect_stream`] and [`serve_streams`] (a connection as an
//! [`AsyncStream`](torsion_reactor::AsyncStream), over any endpoint); `service` has the
//! [`Service`](torsion_reactor::Service)s built on endpoints: [`ServerService`] (listens,
//! and drains on stop) and [`ClientService`] (keeps one connection up, reconnecting with
//! backoff).
#![deny(missing_docs)]

// Each module uses only those before it in: error, grammar, values, args, spec, attempt,
// happy_eyeballs, types, registry, connector, endpoint, streams, service (see "Where things are"
// above).
mod args;
mod attempt;
mod connector;
mod endpoint;
mod error;
mod grammar;
pub mod happy_eyeballs;
pub mod haproxy;
mod registry;
mod service;
mod spec;
mod streams;
mod threads;
mod types;
mod values;

pub use args::{Args, Bound, ParamSpec, Value};
pub use endpoint::{
    ClientEndpoint, DatagramClientEndpoint, DatagramEndpoint, ServerEndpoint, client_from_string,
    datagram_client_from_string, datagram_from_string, server_from_string,
};
pub use error::{EndpointError, ErrorKind, Side};
pub use grammar::quote;
pub use registry::Registry;
pub use service::{
    ClientService, DEFAULT_CLIENT_BACKOFF_FACTOR, DEFAULT_CLIENT_BACKOFF_MAX,
    DEFAULT_DRAIN_TIMEOUT, ServerService,
};
pub use spec::{
    ClientSpec, ClientType, DEFAULT_BACKLOG, DEFAULT_TIMEOUT, MAX_BACKLOG, ParamValue, ServerSpec,
    ServerType,
};
pub use streams::{connect_stream, serve_streams};
pub use threads::{ThreadedPort, listen_on_threads};
pub use types::haproxy::HaproxyServer;
pub use types::stdio::StdioServer;
pub use types::systemd::{self, FdSelector, SocketDomain, SystemdServer};
pub use types::tcp::{BindAddress, BindAddressError, ClientFamily, TcpClient, TcpServer};
pub use types::tls::{TlsClient, TlsServer};
pub use types::udp::{UdpClient, UdpServer};
pub use types::unix::{DEFAULT_UNIX_MODE, UnixClient, UnixServer};
pub use types::unixgram::{UnixgramClient, UnixgramServer};

/// Parses a server description (where to listen) with the built-in types.
///
/// ```
/// use torsion_endpoints::{parse_server, UnixServer};
///
/// let spec = parse_server(r"unix:/tmp/a\:b.sock:mode=0o600:lockfile=0").unwrap();
/// assert_eq!(spec.type_name(), "unix");
/// let unix = spec.downcast_ref::<UnixServer>().unwrap();
/// assert_eq!(unix.address.to_str(), Some("/tmp/a:b.sock"));
/// assert_eq!((unix.mode, unix.lockfile), (0o600, false));
/// ```
pub fn parse_server(description: &str) -> Result<Box<dyn ServerSpec>, EndpointError> {
    Registry::builtins().parse_server(description)
}

/// Parses a client description (where to connect) with the built-in types.
///
/// ```
/// use torsion_endpoints::{parse_client, ErrorKind, TcpClient};
///
/// let spec = parse_client(r"tcp6:\:\:1:8080:bindAddress=[\:\:1]\:5000").unwrap();
/// let tcp = spec.downcast_ref::<TcpClient>().unwrap();
/// assert_eq!((tcp.host.as_str(), tcp.port), ("::1", 8080));
/// assert_eq!(tcp.bind_address.as_ref().map(|b| b.port), Some(5000));
///
/// let err = parse_client("ssl:example.org:443").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Unsupported);
/// ```
pub fn parse_client(description: &str) -> Result<Box<dyn ClientSpec>, EndpointError> {
    Registry::builtins().parse_client(description)
}
