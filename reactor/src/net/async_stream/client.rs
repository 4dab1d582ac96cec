//! [`stream_client`]: connecting an [`AsyncStream`] with the reactor's connectors (asyncio's
//! `open_connection`, given an address rather than an endpoint string).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::panic::Location;

use super::protocol::StreamProtocol;
use super::stream::AsyncStream;
use crate::defer::deferred::{Deferred, Resolver};
use crate::error::{Error, ErrorKind};
use crate::net::client::{ClientFactory, Connector};
use crate::net::factory::Factory;
use crate::net::protocol::{Address, ConnectionLost};

/// The [`ClientFactory`] of one stream connection; made by [`stream_client`].
pub struct StreamClient {
    protocol: RefCell<Option<StreamProtocol>>,
    resolver: Resolver<AsyncStream>,
}

/// A client factory for one connection, and the Deferred of its [`AsyncStream`]: connect
/// with it (`reactor.connect_tcp(addr, client).connect()`, `connect_unix`) and the
/// Deferred fires once the connection is made, or fails with the reason it could not be
/// (refused, timed out, cancelled), naming the destination. Dropping the stream closes the
/// connection; a stream that arrives after the Deferred was cancelled is closed at once.
/// The endpoints crate's `connect_stream` does the same from an endpoint string.
///
/// ```
/// use torsion_reactor::{Reactor, stream_client, stream_factory};
///
/// let reactor = Reactor::current();
/// let port = reactor
///     .listen_tcp(
///         "127.0.0.1:0".parse().unwrap(),
///         stream_factory(|mut stream| async move {
///             let line = stream.read_line(100).await?;
///             stream.write_all(&line.to_ascii_uppercase()).await
///         }),
///     )
///     .unwrap();
/// let (client, connected) = stream_client();
/// reactor.connect_tcp(port.local_addr().socket_addr().unwrap(), client).connect();
/// let answer = reactor.run_until_complete(async move {
///     let mut stream = connected.await?;
///     stream.write_all(b"hello\n").await?;
///     stream.read_line(100).await
/// });
/// assert_eq!(&answer.unwrap().unwrap()[..], b"HELLO\n");
/// ```
#[track_caller]
pub fn stream_client() -> (StreamClient, Deferred<AsyncStream>) {
    let (d, resolver) = Deferred::new_at(Location::caller());
    let r = resolver.clone();
    let protocol = StreamProtocol::new(move |stream| {
        // Cancelled meanwhile: the stream is dropped here, which closes the connection.
        r.resolve_quiet(Ok(stream));
    });
    let client = StreamClient {
        protocol: RefCell::new(Some(protocol)),
        resolver,
    };
    (client, d)
}

impl StreamClient {
    /// Sets the stream's read-buffer limit (see [`StreamProtocol::with_limit`]).
    pub fn with_limit(self, limit: usize) -> StreamClient {
        let protocol = self
            .protocol
            .borrow_mut()
            .take()
            .map(|p| p.with_limit(limit));
        *self.protocol.borrow_mut() = protocol;
        self
    }
}

impl Factory for StreamClient {
    type Protocol = StreamProtocol;

    /// The one protocol (a second connection gets none: it is refused).
    fn build_protocol(&self, _peer: &Address) -> Option<StreamProtocol> {
        self.protocol.borrow_mut().take()
    }
}

impl ClientFactory for StreamClient {
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        let context = format!("cannot connect to {}", connector.destination());
        let err = match reason {
            ConnectionLost::Refused(e) | ConnectionLost::Reset(e) => {
                Error::io(context, io::Error::new(e.kind(), e.to_string()))
            }
            ConnectionLost::TimedOut => {
                Error::new(ErrorKind::TimedOut, format!("{context}: timed out"))
            }
            ConnectionLost::Cancelled => {
                Error::new(ErrorKind::Cancelled, format!("{context}: cancelled"))
            }
            other => Error::new(ErrorKind::Other, format!("{context}: {other}")),
        };
        self.resolver.resolve_quiet(Err(err));
    }
}

impl fmt::Debug for StreamClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamClient")
            .field("connected", &self.protocol.borrow().is_none())
            .finish()
    }
}
