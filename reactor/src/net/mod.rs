//! Network transports: what a user writes ([`Protocol`](protocol::Protocol),
//! [`Factory`](factory::Factory)), the [`Transport`](transport::Transport) handle, and the
//! stream connections the reactor runs for them.
//!
//! - [`protocol`]: `Protocol`, `Address`, `ConnectionLost`.
//! - [`factory`]: `Factory`, `factory_fn`, `BoxedFactory` (and the start/stop count).
//! - [`transport`]: `Transport` and `TransportBackend`.
//! - [`conn`]: one connection: socket, write queue, state machine, protocol.
//! - [`listen`]: listening ports ([`accepted`]: the connections each one accepted, to
//!   drain them); [`handoff`]: handing accepted connections to other reactors (balanced
//!   multi-core serving); [`client`]: connectors and client factories;
//!   [`reconnect`]: reconnecting clients.
//! - [`tcp`], [`unix`]: the two socket families; [`pipe`]: pipes and standard I/O;
//!   [`stream`]: what they have in common.
//! - [`async_stream`]: a connection as an async byte stream (`AsyncStream`).
//! - [`datagram`]: datagram ports (`DatagramProtocol`, `DatagramTransport`, the port and
//!   its batched I/O); [`udp`] and [`unix_datagram`] open them.

pub(crate) mod accepted;
pub(crate) mod async_stream;
pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod datagram;
pub(crate) mod factory;
pub(crate) mod handoff;
pub(crate) mod listen;
pub(crate) mod pipe;
pub(crate) mod protocol;
pub(crate) mod reconnect;
pub(crate) mod stream;
pub(crate) mod tcp;
pub(crate) mod transport;
pub(crate) mod udp;
pub(crate) mod unix;
pub(crate) mod unix_datagram;
