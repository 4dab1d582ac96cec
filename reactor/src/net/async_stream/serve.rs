//! [`stream_factory`]: a server whose connections are each handled by an async function
//! of an [`AsyncStream`] (asyncio's `start_server`).

use std::fmt;
use std::future::Future;
use std::rc::Rc;

use super::protocol::{DEFAULT_STREAM_LIMIT, StreamProtocol};
use super::stream::AsyncStream;
use crate::event_loop::Reactor;
use crate::net::factory::Factory;
use crate::net::protocol::Address;

/// What a stream handler may return: nothing, or a `Result` whose error is logged (as a
/// warning naming the peer) when the handler fails.
pub trait HandlerOutcome {
    /// The failure to log, if any.
    fn failure(self) -> Option<String>;
}

impl HandlerOutcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display> HandlerOutcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// A [`Factory`] that runs `handler(stream)` as a task for each connection (asyncio's
/// `start_server` callback); made by [`stream_factory`].
pub struct StreamFactory<H> {
    handler: Rc<H>,
    limit: usize,
}

/// A factory for servers written as one async function per connection: each accepted
/// connection becomes an [`AsyncStream`] handed to `handler`, whose future runs as a task on
/// the reactor. When the handler returns (or fails, or panics: that is logged and the
/// reactor goes on) its stream is dropped, which closes the connection after what was
/// written is sent. Listen with it like any factory (`listen_tcp`, `listen_unix`, or the
/// endpoints crate's `serve_streams`, which takes an endpoint string).
///
/// ```
/// use torsion_reactor::{Reactor, stream_factory};
///
/// let reactor = Reactor::current();
/// let port = reactor
///     .listen_tcp(
///         "127.0.0.1:0".parse().unwrap(),
///         stream_factory(|mut stream| async move {
///             // Echo: until the peer's end of file.
///             loop {
///                 let chunk = stream.read_chunk(64 * 1024).await?;
///                 if chunk.is_empty() {
///                     return Ok::<_, std::io::Error>(());
///                 }
///                 stream.write_bytes(chunk)?;
///                 stream.drain().await?; // a peer that does not read holds us back
///             }
///         }),
///     )
///     .unwrap();
/// println!("listening on {}", port.local_addr());
/// # port.stop_listening();
/// ```
pub fn stream_factory<H, Fut>(handler: H) -> StreamFactory<H>
where
    H: Fn(AsyncStream) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: HandlerOutcome,
{
    StreamFactory {
        handler: Rc::new(handler),
        limit: DEFAULT_STREAM_LIMIT,
    }
}

impl<H> StreamFactory<H> {
    /// Sets each stream's read-buffer limit (see
    /// [`StreamProtocol::with_limit`](crate::StreamProtocol::with_limit)).
    pub fn with_limit(mut self, limit: usize) -> StreamFactory<H> {
        self.limit = limit;
        self
    }
}

impl<H, Fut> Factory for StreamFactory<H>
where
    H: Fn(AsyncStream) -> Fut + 'static,
    Fut: Future + 'static,
    Fut::Output: HandlerOutcome,
{
    type Protocol = StreamProtocol;

    fn build_protocol(&self, _peer: &Address) -> Option<StreamProtocol> {
        let handler = Rc::clone(&self.handler);
        let protocol = StreamProtocol::new(move |stream| {
            let peer = stream.peer_addr();
            let task = Reactor::current().spawn(handler(stream));
            task.on_result(move |outcome| match outcome {
                Ok(outcome) => {
                    if let Some(failure) = outcome.failure() {
                        log::warn!("the stream handler for {peer} failed: {failure}");
                    }
                }
                Err(err) => log::error!("the stream handler for {peer}: {err}"),
            });
        });
        Some(protocol.with_limit(self.limit))
    }
}

impl<H> fmt::Debug for StreamFactory<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamFactory")
            .field("limit", &self.limit)
            .finish()
    }
}
