//! Async streams over any endpoint: [`connect_stream`] and [`serve_streams`] (asyncio's
//! `open_connection` and `start_server`, with endpoint strings), and the
//! [`ClientEndpoint::connect_stream`] / [`ServerEndpoint::serve_streams`] methods they use.
//!
//! They live here rather than in the reactor because they start from an endpoint (the
//! reactor knows sockets, not descriptions, and must not depend on this crate); the stream
//! itself, [`AsyncStream`], and the protocol behind it are the reactor's, so a stream made
//! from an address (`stream_client`, `stream_factory`) and one made from a description are
//! the same thing.

use std::future::Future;

use torsion_reactor::{
    AsyncStream, Deferred, Error, HandlerOutcome, ListeningPort, Reactor, stream_client,
    stream_factory,
};

use crate::endpoint::{ClientEndpoint, ServerEndpoint, client_from_string, server_from_string};

impl ClientEndpoint {
    /// Connects once and gives the connection as an [`AsyncStream`]: like
    /// [`connect`](ClientEndpoint::connect) (same errors, naming the host and the cause;
    /// cancelling stops the attempt), for async code.
    #[track_caller]
    pub fn connect_stream(&self) -> Deferred<AsyncStream> {
        let (client, stream) = stream_client();
        // The stream's Deferred fires in `connection_made`, before the attempt's.
        self.connect(client).and_then(move |_transport| stream)
    }
}

impl ServerEndpoint {
    /// Listens now; each connection becomes an [`AsyncStream`] handed to `handler`, whose
    /// future runs as a task (see [`stream_factory`](torsion_reactor::stream_factory)).
    /// Errors as for [`listen`](ServerEndpoint::listen).
    pub fn serve_streams<H, Fut>(&self, handler: H) -> Result<ListeningPort, Error>
    where
        H: Fn(AsyncStream) -> Fut + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerOutcome,
    {
        self.listen(stream_factory(handler))
    }
}

/// Connects to the endpoint `description` (any client type: `tcp:host=example.org:port=80`,
/// `unix:/run/app.sock`) on this thread's reactor and gives the connection as an
/// [`AsyncStream`] (asyncio's `open_connection`). A malformed description fails the
/// Deferred with [`ErrorKind::InvalidInput`](torsion_reactor::ErrorKind) (the message names
/// the bad part); connecting fails as [`ClientEndpoint::connect`] does.
///
/// ```
/// use torsion_endpoints::{connect_stream, serve_streams};
/// use torsion_reactor::Reactor;
///
/// let reactor = Reactor::current();
/// let port = serve_streams("tcp:0:interface=127.0.0.1", |mut stream| async move {
///     let name = stream.read_line(100).await?;
///     stream.write_all(b"hello, ").await?;
///     stream.write_all(&name).await
/// })
/// .unwrap();
/// let description = format!("tcp:127.0.0.1:{}", port.local_addr().socket_addr().unwrap().port());
/// let greeting = reactor.run_until_complete(async move {
///     let mut stream = connect_stream(&description).await?;
///     stream.write_all(b"world\n").await?;
///     let mut line = Vec::new();
///     while !line.ends_with(b"\n") {
///         line.extend_from_slice(&stream.read_chunk(100).await?);
///     }
///     Ok::<_, std::io::Error>(line)
/// });
/// assert_eq!(greeting.unwrap().unwrap(), b"hello, world\n");
/// ```
#[track_caller]
pub fn connect_stream(description: &str) -> Deferred<AsyncStream> {
    match client_from_string(&Reactor::current(), description) {
        Ok(endpoint) => endpoint.connect_stream(),
        Err(err) => Deferred::fail(err.into()),
    }
}

/// Listens on the endpoint `description` (any server type: `tcp:8000`,
/// `unix:/run/app.sock`, `systemd:...`) on this thread's reactor; each connection becomes an
/// [`AsyncStream`] handed to `handler`, whose future runs as a task (asyncio's
/// `start_server`). A malformed description is an
/// [`ErrorKind::InvalidInput`](torsion_reactor::ErrorKind) error naming the bad part; to
/// tell it from a failure to listen, use [`server_from_string`] then
/// [`ServerEndpoint::serve_streams`].
pub fn serve_streams<H, Fut>(description: &str, handler: H) -> Result<ListeningPort, Error>
where
    H: Fn(AsyncStream) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: HandlerOutcome,
{
    server_from_string(&Reactor::current(), description)?.serve_streams(handler)
}
