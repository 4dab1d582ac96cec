//! I/O registration and the OS backends: how a descriptor's readiness reaches the code that
//! owns it.
//!
//! - [`poller`]: the OS interface (`epoll` directly on Linux, the `polling` crate elsewhere
//!   and with the `portable-poller` feature).
//! - [`registry`]: the reactor's table of watched descriptors, and `Registration`, the one
//!   owned type every source uses.
//! - [`watch`]: `add_reader`/`add_writer` for descriptors the user owns.
//! - [`sys`]: the few direct system calls std and socket2 do not offer.
//! - [`fault`]: the hooks through which the `fault-injection` feature makes those calls
//!   fail (inlined pass-throughs without it).

pub(crate) mod fault;
pub(crate) mod poller;
pub(crate) mod registry;
pub(crate) mod sys;
pub(crate) mod watch;

pub(crate) use registry::{Interest, Readiness, Registration, Sharing, Source, Wind};
