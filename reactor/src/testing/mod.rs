//! Test doubles and test support: drive a protocol without sockets or a running reactor,
//! and make tests that do run one fail loudly instead of hanging.
//!
//! - [`StringTransport`] records what a protocol writes and how it closes (Twisted's
//!   `StringTransport`); [`Loopback`] connects two protocols in memory and moves bytes
//!   between them on [`pump`](Loopback::pump). Use them with [`Clock`](crate::Clock) for
//!   time.
//! - [`test_reactor`] gives a test a fresh reactor on which a panic caught in a callback
//!   fails the test with its message (as Twisted's trial fails a test that logged an
//!   error), [`wait_for`] waits for a Deferred with a deadline, [`PATIENCE`] is the one
//!   deadline every wait shares, and [`capture_logs`] records what was logged.
//! - `faults` (with the `fault-injection` feature): makes the reactor's system calls fail
//!   on a script or at random, to test what the program does under a hostile kernel.

#[cfg(feature = "fault-injection")]
pub mod faults;
mod loopback;
mod string_transport;
mod support;

pub use loopback::Loopback;
pub use string_transport::StringTransport;
pub use support::{
    CapturedLogs, PATIENCE, capture_logs, read_while_running, test_reactor, wait_for,
};

use crate::net::protocol::Protocol;
use crate::net::transport::Transport;

/// A protocol that ignores what it receives (for tests that only need a connection).
#[derive(Debug, Default)]
pub struct Sink;

impl Protocol for Sink {
    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}
