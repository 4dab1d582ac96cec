//! Datagram ports (UDP and Unix datagram sockets): what a user writes
//! ([`DatagramProtocol`]), the handle it sends with ([`DatagramTransport`]), and the port
//! the reactor runs for them.
//!
//! - [`protocol`]: `DatagramProtocol` and `DatagramError`.
//! - [`transport`]: `DatagramTransport` and `Interface` (multicast).
//! - [`port`]: one port: socket, life, settings; `port/recv.rs` and `port/send.rs` its
//!   two directions (where a datagram goes is written there).
//! - [`queue`]: the send queue and its flow-control marks, without a socket.
//! - [`addr`]: addresses, from the OS and to it, checked at the call.
//! - [`sys`]: `recvmmsg`, `sendmmsg`, the `IP_RECVERR` error queue.
//!
//! The families that open ports are `net/udp.rs` and `net/unix_datagram.rs`.

pub(crate) mod addr;
pub(crate) mod port;
pub(crate) mod protocol;
pub(crate) mod queue;
pub(crate) mod sys;
pub(crate) mod transport;

/// How large a datagram a port receives whole by default: 65,536 bytes, enough for the
/// largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6). Larger Unix datagrams
/// need a larger `max_datagram_size`.
pub const DEFAULT_MAX_DATAGRAM: usize = 65_536;

/// How many payload bytes a port's send queue holds by default before it drops datagrams
/// (four times the default high-water mark, so `pause_writing` comes well before).
pub const DEFAULT_SEND_QUEUE_LIMIT: usize = 256 * 1024;

/// The most a port's send queue holds, in datagrams, whatever their size.
pub const MAX_QUEUED_DATAGRAMS: usize = queue::MAX_QUEUED_DATAGRAMS;
