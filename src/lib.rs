//! torsion: a Twisted-style callback networking framework for Rust.
//!
//! Write a [`Protocol`](prelude::Protocol) (what to do when a connection is made, when
//! bytes arrive, when it is lost) and a [`Factory`](prelude::Factory) that builds one per
//! connection; name where to listen with an endpoint string; run this thread's
//! [`Reactor`](prelude::Reactor).
//!
//! ```no_run
//! use torsion::prelude::*;
//!
//! struct Echo;
//!
//! impl Protocol for Echo {
//!     fn data_received(&mut self, transport: &Transport, data: &[u8]) {
//!         transport.write(data);
//!     }
//! }
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let reactor = Reactor::current();
//!     let port = server_from_string(&reactor, "tcp:8000")?.listen(factory_fn(|_| Echo))?;
//!     println!("listening on {}", port.local_addr());
//!     reactor.run()?; // until SIGINT or SIGTERM
//!     Ok(())
//! }
//! ```
//!
//! Or, with the conventions every torsion program follows (logs on stderr, the endpoint
//! from the command line, `listening on ADDRESS`, exit codes, graceful SIGTERM), as one
//! call: `torsion::program::serve("tcp:8000", factory_fn(|_| Echo))` (see [`program`]).
//!
//! Everything is documented here: [`reactor`] (the loop, timers, transports, Deferreds,
//! tasks, test doubles), [`protocols`] (line, netstring and length-prefixed framing,
//! policies, classic services), [`endpoints`] (endpoint strings), [`tls`] (TLS with
//! rustls: a layer over any transport, servers, clients, STARTTLS) and [`program`] (a
//! program's `main`).
//!
//! Datagrams (UDP, multicast, Unix datagram sockets) have their own protocol trait,
//! [`DatagramProtocol`](prelude::DatagramProtocol): see the guide chapter
//! `docs/datagrams.md`.
//!
//! # The guide
//!
//! The guide, from a first server to production, is in the repository's `docs/` directory;
//! start at its table of contents, `docs/README.md` (first server, protocols and factories,
//! clients, endpoints, scheduling, Deferreds and async, flow control, framing, policies,
//! testing; then datagrams, processes, TLS, services, the PROXY protocol, several cores,
//! observability and deploying; and a chapter for readers coming from Twisted, asyncio or
//! tokio). Every code block in it is compiled and run by `cargo test`, and each chapter's
//! program is one of the examples in `examples/`.
#![deny(missing_docs)]

#[doc(inline)]
pub use torsion_endpoints as endpoints;
#[doc(inline)]
pub use torsion_protocols as protocols;
#[doc(inline)]
pub use torsion_reactor as reactor;
#[doc(inline)]
pub use torsion_tls as tls;

mod probe;
pub mod program;

/// Everything a typical application needs: `use torsion::prelude::*;`.
pub mod prelude {
    pub use torsion_endpoints::{
        ClientEndpoint, ClientService, DatagramClientEndpoint, DatagramEndpoint, ServerEndpoint,
        ServerService, client_from_string, connect_stream, datagram_client_from_string,
        datagram_from_string, serve_streams, server_from_string,
    };
    pub use torsion_protocols::{LineControl, LineReceiver, LineSender, Lines};
    pub use torsion_reactor::{
        Address, AsyncStream, Backoff, BoxedFactory, ChildFd, ClientFactory, Clock, ConnectionLost,
        Connector, DatagramError, DatagramProtocol, DatagramTransport, Deferred, DelayedCall,
        Error, ErrorKind, Event, Factory, Interface, ListeningPort, Lock, LoopingCall,
        MultiService, Phase, Process, ProcessOptions, ProcessProtocol, ProcessStatus, Protocol,
        Queue, Reactor, Reconnecting, Remote, Resolver, Scheduler, SchedulerExt, Semaphore,
        Service, ServiceRunner, SharedDeferred, SharedFactory, SystemEvent, TaskGroup,
        TcpConnectOptions, TcpListenOptions, Transport, UdpOptions, UnixDatagramOptions,
        UnixListenOptions, as_completed, defer_later, factory_fn, gather, service_fn, sleep,
        timeout,
    };
}

/// The README's code blocks, compiled as doc tests so the front page stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The guide's chapters (`docs/*.md`): every code block is compiled, and run unless it is
/// marked `no_run`, by `cargo test`, so the guide cannot drift from the code. A new chapter
/// is added here.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../docs/README.md")]
    pub struct Contents;
    #[doc = include_str!("../docs/first-server.md")]
    pub struct FirstServer;
    #[doc = include_str!("../docs/protocols-and-factories.md")]
    pub struct ProtocolsAndFactories;
    #[doc = include_str!("../docs/clients.md")]
    pub struct Clients;
    #[doc = include_str!("../docs/endpoints.md")]
    pub struct Endpoints;
    #[doc = include_str!("../docs/scheduling.md")]
    pub struct Scheduling;
    #[doc = include_str!("../docs/deferreds.md")]
    pub struct Deferreds;
    #[doc = include_str!("../docs/flow-control.md")]
    pub struct FlowControl;
    #[doc = include_str!("../docs/framing.md")]
    pub struct Framing;
    #[doc = include_str!("../docs/policies.md")]
    pub struct Policies;
    #[doc = include_str!("../docs/testing.md")]
    pub struct Testing;
    #[doc = include_str!("../docs/coming-from.md")]
    pub struct ComingFrom;
    #[doc = include_str!("../docs/async.md")]
    pub struct Async;

    #[doc = include_str!("../docs/datagrams.md")]
    pub struct Datagrams;
    #[doc = include_str!("../docs/processes.md")]
    pub struct Processes;
    #[doc = include_str!("../docs/tls.md")]
    pub struct Tls;
    #[doc = include_str!("../docs/services.md")]
    pub struct Services;
    #[doc = include_str!("../docs/proxy-protocol.md")]
    pub struct ProxyProtocol;
    #[doc = include_str!("../docs/tcp-proxy.md")]
    pub struct TcpProxy;
    #[doc = include_str!("../docs/microbench.md")]
    pub struct Microbench;
    #[doc = include_str!("../docs/multicore.md")]
    pub struct Multicore;

    #[doc = include_str!("../docs/chaos.md")]
    pub struct Chaos;

    #[doc = include_str!("../docs/threat-model.md")]
    pub struct ThreatModel;

    #[doc = include_str!("../docs/observability.md")]
    pub struct Observability;

    #[doc = include_str!("../docs/deploying.md")]
    pub struct Deploying;
}
