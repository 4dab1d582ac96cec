//! Connections as async byte streams: a protocol ([`StreamProtocol`]) that feeds a bounded
//! buffer and wakes the task reading it, and the stream the task holds ([`AsyncStream`],
//! with `futures-io`'s `AsyncRead`/`AsyncWrite`).
//!
//! - [`buffer`]: the read buffer and its pause/resume rule (no I/O; unit-tested);
//! - [`protocol`]: `StreamProtocol`, which fills it from the connection;
//! - [`stream`]: `AsyncStream` and its halves, which read it and write to the transport;
//! - [`serve`]: `stream_factory`, one task per accepted connection; [`client`]:
//!   `stream_client`, one outgoing connection as a Deferred of its stream.
//!
//! Where a byte goes: the connection's `data_received` → `StreamProtocol` appends it to
//! the buffer (pausing the connection's reading at the limit) and wakes the reading task →
//! the task's read takes it out (resuming reading below half the limit).

pub(crate) mod buffer;
pub(crate) mod client;
pub(crate) mod protocol;
pub(crate) mod serve;
pub(crate) mod stream;
