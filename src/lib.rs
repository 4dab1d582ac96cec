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
//! policies, classic services), [`endpoints`] (endpoint strings) and [`program`] (a
//! program's `main`). The guide, from a first server to production, is in the repository's
//! [`docs/`](https://example.invalid/torsion/tree/main/docs) directory (every code block in it
//! is compiled by the tests).
#![deny(missing_docs)]

#[doc(inline)]
pub use torsion_endpoints as endpoints;
#[doc(inline)]
pub use torsion_protocols as protocols;
#[doc(inline)]
pub use torsion_reactor as reactor;

mod probe;
pub mod program;

/// Everything a typical application needs: `use torsion::prelude::*;`.
pub mod prelude {
    pub use torsion_endpoints::{
        ClientEndpoint, ServerEndpoint, client_from_string, server_from_string,
    };
    pub use torsion_protocols::{LineControl, LineReceiver, LineSender, Lines};
    pub use torsion_reactor::{
        Address, Backoff, ClientFactory, Clock, ConnectionLost, Connector, Deferred, DelayedCall,
        Error, ErrorKind, Factory, ListeningPort, LoopingCall, Phase, Protocol, Reactor,
        Reconnecting, Remote, Resolver, Scheduler, SchedulerExt, SharedFactory, SystemEvent,
        TcpConnectOptions, TcpListenOptions, Transport, UnixListenOptions, factory_fn, sleep,
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
    #[doc = include_str!("../docs/async.md")]
    pub struct Async;

    #[doc = include_str!("../docs/chaos.md")]
    pub struct Chaos;

    #[doc = include_str!("../docs/threat-model.md")]
    pub struct ThreatModel;
}
