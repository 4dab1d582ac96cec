//! Network transports: what a user writes ([`Protocol`](protocol::Protocol),
//! [`Factory`](factory::Factory)), the [`Transport`](transport::Transport) handle, and the
//! stream connections the reactor runs for them.
//!
//! - [`protocol`]: `Protocol`, `Address`, `ConnectionLost`.
//! - [`factory`]: `Factory`, `factory_fn`, `BoxedFactory` (and the start/stop count).
//! - [`transport`]: `Transport` and `TransportBackend`.
//! - [`conn`]: one connection: socket, write queue, state machine, protocol.
//! - [`listen`]: listening ports; [`handoff`]: handing accepted connections to other
//!   reactors (balanced multi-core serving); [`client`]: connectors and client factories;
//!   [`reconnect`]: reconnecting clients.
//! - [`tcp`], [`unix`]: the two socket families; [`stream`]: what they have in common.

pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod factory;
pub(crate) mod handoff;
pub(crate) mod listen;
pub(crate) mod protocol;
pub(crate) mod reconnect;
pub(crate) mod stream;
pub(crate) mod tcp;
pub(crate) mod transport;
pub(crate) mod unix;
