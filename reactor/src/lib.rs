//! torsion's reactor: a per-thread event loop for callback-style network programs.
//!
//! The [`Reactor`] waits for readiness on sockets and other descriptors and calls the code
//! that owns them; [`call_soon`](Reactor::call_soon) and
//! [`call_later`](Reactor::call_later) schedule plain callbacks; [`Clock`] runs the same
//! scheduling code deterministically in tests.
//!
//! A result that comes later is a [`Deferred`]: chain callbacks on it ([`Deferred::map`],
//! [`Deferred::and_then`], [`gather`], ...) or `.await` it in a task ([`Reactor::spawn`],
//! [`Reactor::run_until_complete`], [`sleep`], [`timeout`]). [`LoopingCall`] and
//! [`cooperate`] are Twisted's `task` module; [`Reactor::defer_to_thread`] runs blocking
//! code on the reactor's thread pool. A connection can be an [`AsyncStream`] read and
//! written with `.await` ([`stream_factory`], [`stream_client`]), and callbacks and tasks
//! coordinate through [`Lock`], [`Semaphore`], [`Event`], [`Queue`] and [`TaskGroup`].
//!
//! ```
//! use std::time::Duration;
//! use torsion_reactor::Reactor;
//!
//! let reactor = Reactor::current();
//! reactor.call_soon(|| println!("Hello World"));
//! reactor.call_later(Duration::from_millis(5), || Reactor::current().stop().unwrap());
//! reactor.run().unwrap();
//! ```
//!
//! # Where things are
//!
//! | module | holds |
//! |---|---|
//! | `event_loop` | the [`Reactor`], its run queues and the phases of one iteration (listed in [`Reactor`]'s module docs), [`Remote`], signals ([`Reactor::add_signal_handler`]), startup/shutdown triggers |
//! | `io` | registration of descriptors with the poller (one owned `Registration` type for every source), the OS backends (epoll, `polling`), `add_reader`/`add_writer` |
//! | `time` | [`Scheduler`], timers and [`DelayedCall`], [`Clock`], [`sleep`], [`timeout`] |
//! | `net` | [`Protocol`], [`Factory`], [`Transport`], connections (a state machine per connection), listening ports, connectors, TCP and Unix sockets, pipes and standard I/O ([`Reactor::connect_read_pipe`], [`Reactor::standard_io`]), reconnecting clients, connections as async streams ([`AsyncStream`]); datagram ports ([`DatagramProtocol`], [`DatagramTransport`]: UDP, multicast, Unix datagram sockets) |
//! | `process` | child processes: [`Reactor::spawn_process`], [`ProcessProtocol`], [`Process`], [`ProcessOptions`], reaping (pidfd or SIGCHLD), [`Reactor::create_subprocess_exec`]; `fork`/`exec` in `process/sys.rs` |
//! | `defer` | [`Deferred`], [`SharedDeferred`], [`as_completed`], tasks and [`TaskGroup`], coordination ([`Lock`], [`Semaphore`], [`Event`], [`Queue`]), [`LoopingCall`], [`cooperate`], the thread pool, [`Remote::blocking_call_from_thread`] |
//! | `service` | [`Service`], [`MultiService`] (children started in order, stopped in reverse), [`service_fn`], [`ServiceRunner`] and [`Reactor::run_service`] (a tree stopped by the graceful shutdown) |
//! | [`testing`] | test doubles: `StringTransport`, `Loopback`, and the test-support helpers |
//!
//! Where a byte goes from the socket to `data_received`: `io/poller` reports the socket
//! readable → `event_loop/phases.rs` (`wait_and_dispatch_io`) hands the event to the
//! connection's registration → `net/conn/mod.rs` (`Conn::on_readable`) reads into the
//! reactor's shared buffer and calls the protocol. A datagram takes the same path to
//! `net/datagram/port.rs` (`Port::on_readable` receives a batch with one `recvmmsg` and
//! calls `datagram_received` for each).
#![deny(missing_docs)]

mod defer;
mod error;
mod event_loop;
mod io;
mod keyed;
mod net;
mod process;
mod service;
mod sync;
mod time;

#[cfg(all(test, loom))]
mod loom_models;

pub mod testing;

pub use defer::as_completed::as_completed;
/// Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`, which
/// cargo-fuzz sets).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Drives a connection's state machine through the events `data` encodes and panics
    /// if a connection rule breaks (see `net/conn/state_check.rs`).
    pub fn conn_state(data: &[u8]) {
        crate::net::conn::state_check::check_bytes(data)
    }
}

pub use defer::cooperate::{CooperativeTask, Cooperator, DEFAULT_TIME_SLICE, TaskState, cooperate};
pub use defer::deferred::combinators::{first, gather, race, settle};
pub use defer::deferred::{DRAIN_BUDGET, Deferred, DeferredError, Resolver, defer_later};
pub use defer::group::TaskGroup;
pub use defer::looping::{LoopOutcome, LoopingCall};
pub use defer::shared::SharedDeferred;
pub use defer::sync::event::{Event, EventWait};
pub use defer::sync::lock::{Lock, LockAcquire, LockGuard};
pub use defer::sync::queue::{Get, Put, Queue};
pub use defer::sync::semaphore::{Acquire, Permit, Semaphore};
pub use defer::threads::DEFAULT_THREAD_POOL_SIZE;
pub use error::{Error, ErrorKind, Result};
pub use event_loop::{
    Caught, CaughtKind, DEFAULT_SHUTDOWN_GRACE, Phase, Reactor, Remote, SystemEvent, TriggerId,
    signal_name,
};
pub use net::async_stream::client::{StreamClient, stream_client};
pub use net::async_stream::protocol::{DEFAULT_STREAM_LIMIT, StreamProtocol};
pub use net::async_stream::serve::{HandlerOutcome, StreamFactory, stream_factory};
pub use net::async_stream::stream::{AsyncStream, StreamReader, StreamWriter};
pub use net::client::{
    BoxedClientFactory, ClientFactory, Connector, ConnectorBackend, ConnectorState,
    DEFAULT_CONNECT_TIMEOUT,
};
pub use net::datagram::addr::{MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};
pub use net::datagram::protocol::{DatagramError, DatagramProtocol};
pub use net::datagram::transport::{DatagramTransport, Interface};
pub use net::datagram::{DEFAULT_MAX_DATAGRAM, DEFAULT_SEND_QUEUE_LIMIT, MAX_QUEUED_DATAGRAMS};
pub use net::factory::{
    BoxedFactory, Factory, FnFactory, MaybeProtocol, SharedFactory, factory_fn,
};
pub use net::handoff::Handoff;
pub use net::listen::ListeningPort;
pub use net::protocol::{Address, ConnectionLost, Protocol, TlsFailure, TlsFailureKind};
pub use net::reconnect::{Backoff, Reconnecting};
pub use net::tcp::{DEFAULT_BACKLOG, TcpConnectOptions, TcpListenOptions};
pub use net::transport::{
    DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, PeerCredentials, Transport, TransportBackend,
};
pub use net::udp::UdpOptions;
pub use net::unix::{UnixConnectOptions, UnixListenOptions};
pub use net::unix_datagram::UnixDatagramOptions;
pub use process::{
    ChildFd, ChildWatcher, OnReactorStop, Output, Process, ProcessOptions, ProcessProtocol,
    ProcessStatus, SUBPROCESS_BUFFER_LIMIT, Subprocess,
};
pub use service::{FnService, MultiService, Service, ServiceRunner, service_fn};
pub use time::{
    Clock, DelayedCall, Scheduler, SchedulerExt, Sleep, Timeout, delay_from_secs, sleep, sleep_on,
    timeout, timeout_on,
};
