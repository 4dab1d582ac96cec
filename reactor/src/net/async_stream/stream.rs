//! [`AsyncStream`] and its halves [`StreamReader`] and [`StreamWriter`]: a connection as
//! something a task reads and writes with `.await` (asyncio's `StreamReader` and
//! `StreamWriter`, the `futures-io` traits).

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_io::{AsyncRead, AsyncWrite};

use super::buffer::{End, find};
use super::protocol::{Shared, apply, lost_to_io};
use crate::net::protocol::Address;
use crate::net::transport::Transport;

/// A connection as an async byte stream: read with `.await` (by lines, by delimiter, exact
/// sizes, chunks), write without blocking and wait for the write buffer to drain. It
/// implements the `futures-io` traits [`AsyncRead`] and [`AsyncWrite`], so the ecosystem's
/// adapters work on it (`futures::io::copy`, `BufReader`, codecs).
///
/// Made by [`stream_factory`](crate::stream_factory) (servers), [`stream_client`](crate::stream_client)
/// (clients) and [`StreamProtocol`](crate::StreamProtocol), and by the endpoints crate's
/// `serve_streams` and `connect_stream` over any endpoint.
/// It runs on the same connection machinery as a [`Protocol`](crate::Protocol), and keeps
/// its rules:
///
/// - **Memory is bounded.** What arrives waits in a buffer; once it holds the limit
///   (default [`DEFAULT_STREAM_LIMIT`](crate::DEFAULT_STREAM_LIMIT)) reading pauses until the
///   task reads, so a task that stops reading stops the peer. Writes never block; a task that
///   writes faster than the peer reads is held back by [`drain`](AsyncStream::drain) (and by
///   `write_all`, `poll_write`), which wait while the write buffer is above its high mark
///   until it falls to its low mark.
/// - **Cancellation loses nothing.** Every read is cancellation-safe: dropping a read that
///   has not completed (a `timeout`, a task cancelled) leaves every received byte in the
///   buffer for the next read. `read_line`, `read_until` and `read_exact` take bytes out
///   only when they complete (so an error, such as a line over the maximum or an early end
///   of file, leaves the bytes readable too).
/// - **It never leaks the connection.** Dropping the stream (or both halves of a split one)
///   closes the connection after what was written is sent. The connection also ends when the
///   peer closes it; reads then return what is left, then end of file (0 bytes, an empty
///   chunk) after a clean close, or the error after a reset.
///
/// The peer's half-close reads as end of file while this side stays open for writing
/// ([`shutdown`](AsyncStream::shutdown) half-closes this side). Errors are `io::Error`s whose
/// text says what happened (`the connection was lost: connection reset by peer`, `no "\n"
/// within the first 1024 bytes from 127.0.0.1:5000`).
///
/// ```
/// use torsion_reactor::{Reactor, stream_client, stream_factory};
///
/// let reactor = Reactor::current();
/// // A server: one task per connection.
/// let port = reactor
///     .listen_tcp(
///         "127.0.0.1:0".parse().unwrap(),
///         stream_factory(|mut stream| async move {
///             loop {
///                 let line = stream.read_line(1024).await?;
///                 if line.is_empty() {
///                     return Ok::<_, std::io::Error>(()); // end of file
///                 }
///                 stream.write_all(&line).await?; // echo each line
///             }
///         }),
///     )
///     .unwrap();
/// let addr = port.local_addr().socket_addr().unwrap();
///
/// // A client.
/// let (client, connected) = stream_client();
/// reactor.connect_tcp(addr, client).connect();
/// let lines = reactor.run_until_complete(async move {
///     let mut stream = connected.await?;
///     stream.write_all(b"one\ntwo\n").await?;
///     stream.shutdown()?; // half-close: the server sees end of file after "two"
///     let first = stream.read_line(1024).await?;
///     let second = stream.read_line(1024).await?;
///     let end = stream.read_line(1024).await?;
///     Ok::<_, std::io::Error>((first, second, end))
/// });
/// let (first, second, end) = lines.unwrap().unwrap();
/// assert_eq!((&first[..], &second[..], &end[..]), (&b"one\n"[..], &b"two\n"[..], &b""[..]));
/// ```
pub struct AsyncStream {
    reader: StreamReader,
    writer: StreamWriter,
}

/// The reading half of an [`AsyncStream`] (see [`AsyncStream::into_split`]).
pub struct StreamReader {
    shared: Rc<Shared>,
    transport: Transport,
}

/// The writing half of an [`AsyncStream`] (see [`AsyncStream::into_split`]).
pub struct StreamWriter {
    shared: Rc<Shared>,
    transport: Transport,
}

fn handle(shared: &Rc<Shared>) -> Rc<Shared> {
    shared.handles.set(shared.handles.get() + 1);
    Rc::clone(shared)
}

fn release(shared: &Shared, transport: &Transport) {
    let left = shared.handles.get().saturating_sub(1);
    shared.handles.set(left);
    if left == 0 {
        // Nobody can read or write any more: close once what was written is sent.
        transport.lose_connection();
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.set_want(0);
        release(&self.shared, &self.transport);
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        release(&self.shared, &self.transport);
    }
}

fn store(slot: &std::cell::RefCell<Option<Waker>>, cx: &Context<'_>) {
    let mut slot = slot.borrow_mut();
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// Resets the read's need when the read completes or is dropped.
struct Need<'a>(&'a StreamReader);

impl Drop for Need<'_> {
    fn drop(&mut self) {
        self.0.set_want(0);
    }
}

impl AsyncStream {
    pub(crate) fn new(shared: Rc<Shared>, transport: Transport) -> AsyncStream {
        AsyncStream {
            reader: StreamReader {
                shared: handle(&shared),
                transport: transport.clone(),
            },
            writer: StreamWriter {
                shared: handle(&shared),
                transport,
            },
        }
    }

    /// Splits the stream into its reading and writing halves, for a task that reads in one
    /// place and writes in another (or two tasks). The connection closes once both are
    /// dropped.
    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// The halves, borrowed (to read and write concurrently within one task).
    pub fn split(&mut self) -> (&mut StreamReader, &mut StreamWriter) {
        (&mut self.reader, &mut self.writer)
    }

    /// See [`StreamReader::read`].
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf).await
    }

    /// See [`StreamReader::read_chunk`].
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Bytes> {
        self.reader.read_chunk(max).await
    }

    /// See [`StreamReader::read_exact`].
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf).await
    }

    /// See [`StreamReader::read_until`].
    pub async fn read_until(&mut self, delimiter: &[u8], max: usize) -> io::Result<Bytes> {
        self.reader.read_until(delimiter, max).await
    }

    /// See [`StreamReader::read_line`].
    pub async fn read_line(&mut self, max: usize) -> io::Result<Bytes> {
        self.reader.read_line(max).await
    }

    /// See [`StreamReader::buffered`].
    pub fn buffered(&self) -> usize {
        self.reader.buffered()
    }

    /// See [`StreamReader::at_eof`].
    pub fn at_eof(&self) -> bool {
        self.reader.at_eof()
    }

    /// See [`StreamReader::set_limit`].
    pub fn set_limit(&self, limit: usize) {
        self.reader.set_limit(limit)
    }

    /// See [`StreamWriter::write`].
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.writer.write(data)
    }

    /// See [`StreamWriter::write_bytes`].
    pub fn write_bytes(&self, data: Bytes) -> io::Result<()> {
        self.writer.write_bytes(data)
    }

    /// See [`StreamWriter::write_all`].
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.writer.write_all(data).await
    }

    /// See [`StreamWriter::drain`].
    pub async fn drain(&mut self) -> io::Result<()> {
        self.writer.drain().await
    }

    /// See [`StreamWriter::shutdown`].
    pub fn shutdown(&self) -> io::Result<()> {
        self.writer.shutdown()
    }

    /// See [`StreamWriter::close`].
    pub fn close(&self) {
        self.writer.close()
    }

    /// See [`StreamWriter::abort`].
    pub fn abort(&self) {
        self.writer.abort()
    }

    /// See [`StreamWriter::wait_closed`].
    pub async fn wait_closed(&self) -> io::Result<()> {
        self.writer.wait_closed().await
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Address {
        self.writer.peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> Address {
        self.writer.local_addr()
    }

    /// The connection's [`Transport`], for what the stream does not offer (socket options,
    /// write-buffer marks). Reading through it is the stream's business: do not pause or
    /// resume it.
    pub fn transport(&self) -> &Transport {
        &self.writer.transport
    }
}

impl StreamReader {
    fn set_want(&self, want: usize) {
        let flow = self.shared.read.borrow_mut().set_want(want);
        apply(flow, &self.transport);
    }

    /// Ready once `enough` says the buffer holds what is needed, or nothing more can
    /// arrive; `Err` once the connection failed and the buffer cannot satisfy the read.
    fn poll_buffered(
        &self,
        cx: &mut Context<'_>,
        enough: impl Fn(&[u8]) -> bool,
    ) -> Poll<io::Result<()>> {
        let read = self.shared.read.borrow();
        if enough(read.bytes()) {
            return Poll::Ready(Ok(()));
        }
        match &read.end {
            End::Open => {
                drop(read);
                store(&self.shared.read_waker, cx);
                Poll::Pending
            }
            End::Eof => Poll::Ready(Ok(())),
            End::Lost(reason) => match lost_to_io(reason) {
                Some(err) => Poll::Ready(Err(err)),
                None => Poll::Ready(Ok(())),
            },
        }
    }

    fn take(&self, n: usize) -> Bytes {
        let (taken, flow) = self.shared.read.borrow_mut().take(n);
        apply(flow, &self.transport);
        taken
    }

    /// Reads what is there (at most `buf.len()` bytes), waiting until something is:
    /// `Ok(0)` at end of file (or for an empty `buf`).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_into(cx, buf)).await
    }

    fn poll_read_into(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.poll_buffered(cx, |b| !b.is_empty()) {
            Poll::Ready(Ok(())) => {
                let (n, flow) = self.shared.read.borrow_mut().take_into(buf);
                apply(flow, &self.transport);
                Poll::Ready(Ok(n))
            }
            other => other.map(|r| r.map(|()| 0)),
        }
    }

    /// Up to `max` bytes, as soon as there are any, without copying them: empty at end of
    /// file (asyncio's `read(n)`).
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<Bytes> {
        poll_fn(|cx| self.poll_buffered(cx, |b| !b.is_empty())).await?;
        Ok(self.take(max))
    }

    /// Fills `buf` exactly (asyncio's `readexactly`). Nothing is taken out unless all of
    /// it is there, so an early end of file fails with `UnexpectedEof` and leaves what did
    /// arrive readable, and dropping the read before it completes loses nothing.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = buf.len();
        self.set_want(n);
        let _need = Need(self);
        poll_fn(|cx| self.poll_buffered(cx, |b| b.len() >= n)).await?;
        let buffered = self.buffered();
        if buffered < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the stream from {} ended after {buffered} of the {n} bytes expected",
                    self.transport.peer_addr()
                ),
            ));
        }
        let (_, flow) = self.shared.read.borrow_mut().take_into(buf);
        apply(flow, &self.transport);
        Ok(())
    }

    /// Reads up to and including `delimiter` (asyncio's `readuntil`), at most `max` bytes
    /// in all. Errors leave the bytes in the buffer: `InvalidData` if `max` bytes came
    /// without the delimiter (read them with [`read_chunk`](StreamReader::read_chunk) to
    /// skip, or close), `UnexpectedEof` if the stream ended first.
    pub async fn read_until(&mut self, delimiter: &[u8], max: usize) -> io::Result<Bytes> {
        self.read_delimited(delimiter, max, false).await
    }

    /// Reads a line, `\n` included, of at most `max` bytes (asyncio's `readline`): at end
    /// of file, the rest without `\n`, then an empty line. A line over `max` bytes fails
    /// with `InvalidData` and stays in the buffer.
    pub async fn read_line(&mut self, max: usize) -> io::Result<Bytes> {
        self.read_delimited(b"\n", max, true).await
    }

    async fn read_delimited(
        &mut self,
        delimiter: &[u8],
        max: usize,
        rest_at_eof: bool,
    ) -> io::Result<Bytes> {
        self.set_want(max);
        let _need = Need(self);
        let searched = std::cell::Cell::new(0);
        let found = std::cell::Cell::new(None);
        let outcome = poll_fn(|cx| {
            self.poll_buffered(cx, |b| {
                let window = &b[..b.len().min(max)];
                if let Some(at) = find(window, delimiter, searched.get()) {
                    if at + delimiter.len() <= max {
                        found.set(Some(at + delimiter.len()));
                        return true;
                    }
                }
                searched.set(window.len());
                b.len() >= max
            })
        })
        .await;
        if let Some(end) = found.get() {
            return Ok(self.take(end));
        }
        outcome?;
        let buffered = self.buffered();
        if buffered >= max {
            let shown = String::from_utf8_lossy(delimiter)
                .escape_debug()
                .to_string();
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "no \"{shown}\" within the first {max} bytes from {}",
                    self.transport.peer_addr()
                ),
            ));
        }
        // The stream ended without the delimiter.
        if rest_at_eof {
            return Ok(self.take(buffered));
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the stream from {} ended after {buffered} bytes without the delimiter",
                self.transport.peer_addr()
            ),
        ))
    }

    /// Bytes received and not read yet.
    pub fn buffered(&self) -> usize {
        self.shared.read.borrow().len()
    }

    /// Whether everything has been read and nothing more will come (asyncio's `at_eof`).
    pub fn at_eof(&self) -> bool {
        let read = self.shared.read.borrow();
        read.len() == 0 && read.is_ended()
    }

    /// Whether reading from the peer is paused because the buffer is full.
    pub fn is_paused(&self) -> bool {
        self.shared.read.borrow().is_paused()
    }

    /// Sets the read-buffer limit (see [`StreamProtocol::with_limit`](crate::StreamProtocol::with_limit)).
    pub fn set_limit(&self, limit: usize) {
        let flow = self.shared.read.borrow_mut().set_limit(limit);
        apply(flow, &self.transport);
    }

    /// The read-buffer limit.
    pub fn limit(&self) -> usize {
        self.shared.read.borrow().limit()
    }
}

impl StreamWriter {
    fn closed_error(&self) -> io::Error {
        self.shared.lost_error().unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                format!(
                    "cannot write to {}: the connection is closed or closing",
                    self.transport.peer_addr()
                ),
            )
        })
    }

    /// Writes `data` now without waiting (asyncio's `StreamWriter.write`): what the socket
    /// does not take is buffered. Follow a series of writes with [`drain`](StreamWriter::drain)
    /// so that a slow peer holds the writer back. Error (`BrokenPipe`, or the reason the
    /// connection was lost) once the writing side is closed.
    pub fn write(&self, data: &[u8]) -> io::Result<()> {
        self.transport
            .try_write(data)
            .map_err(|_| self.closed_error())
    }

    /// Like [`write`](StreamWriter::write), without copying when the bytes must wait.
    pub fn write_bytes(&self, data: Bytes) -> io::Result<()> {
        self.transport
            .try_write_bytes(data)
            .map_err(|_| self.closed_error())
    }

    /// Writes all of `data`, then waits for the write buffer to drain (asyncio's
    /// `write(data); await drain()`). The bytes are written at the first poll; dropping the
    /// future afterwards only stops the waiting.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.write(data)?;
        self.drain().await
    }

    /// Waits while the write buffer is above its high mark, until it falls to its low mark
    /// (asyncio's `drain`; also what `AsyncWrite::poll_flush` does). Ready at once when the
    /// buffer is below the mark. Error if the connection was lost with an error.
    pub async fn drain(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_drain(cx)).await
    }

    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.shared.lost_error() {
            return Poll::Ready(Err(err));
        }
        if self.shared.lost.borrow().is_some() || !self.transport.is_writing_paused() {
            return Poll::Ready(Ok(()));
        }
        // `is_writing_paused` promises a `resume_writing`, which wakes us.
        store(&self.shared.write_waker, cx);
        Poll::Pending
    }

    /// Half-closes: once what was written is sent, the peer reads end of file; this side
    /// can still read (TCP `shutdown(SHUT_WR)`). What `AsyncWrite::poll_close` does. Doing
    /// it again is a no-op; error only if the connection is gone or closing.
    pub fn shutdown(&self) -> io::Result<()> {
        match self.transport.lose_write_connection() {
            Ok(()) => Ok(()),
            Err(_) if self.shared.lost.borrow().is_none() && !self.transport.is_closing() => Ok(()),
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Closes the connection once what was written is sent (asyncio's `close`); reading
    /// stops now. See [`wait_closed`](StreamWriter::wait_closed). (Not the `futures-io`
    /// `AsyncWriteExt::close`, which half-closes: see [`shutdown`](StreamWriter::shutdown).)
    pub fn close(&self) {
        self.transport.lose_connection();
    }

    /// Closes the connection now, discarding what was not sent.
    pub fn abort(&self) {
        self.transport.abort_connection();
    }

    /// Waits until the connection is closed, by either side (asyncio's `wait_closed`):
    /// `Ok` for a clean close, the error for a reset or abort.
    pub async fn wait_closed(&self) -> io::Result<()> {
        poll_fn(|cx| {
            let lost = self.shared.lost.borrow();
            match &*lost {
                Some(reason) => Poll::Ready(lost_to_io(reason).map_or(Ok(()), Err)),
                None => {
                    drop(lost);
                    store(&self.shared.closed_waker, cx);
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Whether the connection is closed or closing.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Address {
        self.transport.peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> Address {
        self.transport.local_addr()
    }

    /// The connection's [`Transport`].
    pub fn transport(&self) -> &Transport {
        &self.transport
    }
}

// ---------------------------------------------------------------------------------------
// futures-io.

impl AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_into(cx, buf)
    }
}

impl AsyncWrite for StreamWriter {
    /// Waits while the write buffer is above its high mark (until it drains to the low
    /// mark), then takes all of `buf`.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(self.write(buf).map(|()| buf.len())),
            other => other.map(|r| r.map(|()| 0)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => {
                let parts: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
                let total = parts.iter().map(|p| p.len()).sum();
                Poll::Ready(
                    self.transport
                        .try_write_vectored(&parts)
                        .map(|()| total)
                        .map_err(|_| self.closed_error()),
                )
            }
            other => other.map(|r| r.map(|()| 0)),
        }
    }

    /// Waits for the write buffer to fall to its low mark ([`drain`](StreamWriter::drain)).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_drain(cx)
    }

    /// Half-closes ([`shutdown`](StreamWriter::shutdown)).
    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown())
    }
}

impl AsyncRead for AsyncStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for AsyncStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_close(cx)
    }
}

impl fmt::Debug for AsyncStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncStream")
            .field("peer", &self.peer_addr())
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReader")
            .field("peer", &self.transport.peer_addr())
            .field("buffered", &self.buffered())
            .finish()
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("peer", &self.transport.peer_addr())
            .finish()
    }
}
