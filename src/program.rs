//! The `main` of a server or client program, with the conventions every torsion program
//! follows (Twisted's `task.react`, asyncio's `asyncio.run`): logs on stderr, the endpoint
//! from the first argument with a default, `listening on ADDRESS` on stdout once the
//! reactor runs, exit status 2 for a bad argument, 1 for a failure to listen or connect, 0
//! after a graceful stop (SIGINT or SIGTERM).
//!
//! The common case is one call:
//!
//! ```no_run
//! use torsion::prelude::*;
//!
//! struct Echo;
//! impl Protocol for Echo {
//!     fn data_received(&mut self, t: &Transport, data: &[u8]) {
//!         t.write(data);
//!     }
//! }
//!
//! fn main() {
//!     torsion::program::serve("tcp:8000", factory_fn(|_| Echo));
//! }
//! ```
//!
//! The pieces it is made of ([`init_logging`], [`endpoint_arg`], [`listen`] (or
//! [`listen_datagram`]), [`announce`], [`run`], [`usage_error`], [`fail`]) are here for
//! programs with more to set up.

use std::io::Write;
use std::process::exit;

use torsion_endpoints::{datagram_from_string, server_from_string};
use torsion_reactor::{
    Address, ConnectionLost, DatagramProtocol, DatagramTransport, Factory, ListeningPort, Protocol,
    Reactor, Transport,
};

/// Sends `log` records to stderr through `env_logger`: quiet unless `RUST_LOG` says
/// otherwise (warnings and errors show by default). Does nothing if the program already
/// installed a logger. Needs the `env-logger` feature (on by default).
pub fn init_logging() {
    #[cfg(feature = "env-logger")]
    {
        let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
            .target(env_logger::Target::Stderr)
            .try_init();
    }
}

/// The program's name, for messages.
pub fn name() -> String {
    std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "torsion".into())
}

/// The one optional argument, an endpoint description (or `default`). `-h`/`--help`
/// prints `usage` and exits 0; more arguments are a usage error (exit 2).
pub fn endpoint_arg(default: &str, usage: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => default.to_string(),
        [one] if one == "-h" || one == "--help" => {
            println!("usage: {} {usage}", name());
            exit(0);
        }
        [one] => one.clone(),
        _ => usage_error(&format!(
            "expected at most one argument\nusage: {} {usage}",
            name()
        )),
    }
}

/// Prints `message` on stderr, prefixed with the program's name, and exits with status 2
/// (the command line was wrong).
pub fn usage_error(message: &str) -> ! {
    eprintln!("{}: {message}", name());
    exit(2);
}

/// Prints `message` on stderr, prefixed with the program's name, and exits with status 1
/// (something failed: listening, connecting).
pub fn fail(message: &str) -> ! {
    eprintln!("{}: {message}", name());
    exit(1);
}

/// Listens on the endpoint `description` names (exit 2 if it is malformed, 1 if the listen
/// fails, each with one line on stderr naming the problem) and, once the reactor runs (so
/// that SIGTERM is already a graceful stop when a supervisor sees the line), prints
/// `listening on ADDRESS` on stdout (the bound address: `tcp:0` shows the real port).
///
/// On `stdio:` (one connection over standard input and output, inetd-style) the line goes
/// to stderr, since stdout is the connection, and the reactor stops when that connection
/// ends.
///
/// For the chaos suite (`chaos/`), `TORSION_PROBE=MILLISECONDS` in the environment wraps
/// each protocol in one that checks the connection rules (one `connection_made`, one
/// `connection_lost`, nothing after it) and prints, every that many milliseconds, a line
/// `torsion-probe: made=N lost=N open=N registered=N timers=N tasks=N violations=N` on
/// stderr (the reactor's counters: `open_connections`, `registered_sources`,
/// `pending_timers`, `pending_tasks`). Unset, nothing is wrapped.
pub fn listen<F: Factory>(reactor: &Reactor, description: &str, factory: F) -> ListeningPort {
    let endpoint = match server_from_string(reactor, description) {
        Ok(endpoint) => endpoint,
        Err(err) => usage_error(&err.to_string()),
    };
    let stdio = endpoint.spec().type_name() == "stdio";
    let probe = crate::probe::interval().map(|every| {
        // The chaos suite's instrumentation (see `TORSION_PROBE` above).
        let counts = std::rc::Rc::default();
        crate::probe::start(reactor, &counts, every);
        counts
    });
    let listened = match (probe, stdio) {
        (Some(counts), true) => endpoint.listen(crate::probe::ProbedFactory {
            inner: StopWhenLost(factory),
            counts,
        }),
        (Some(counts), false) => endpoint.listen(crate::probe::ProbedFactory {
            inner: factory,
            counts,
        }),
        (None, true) => endpoint.listen(StopWhenLost(factory)),
        (None, false) => endpoint.listen(factory),
    };
    let port = match listened {
        Ok(port) => port,
        Err(err) => fail(&err.to_string()),
    };
    if stdio {
        let addr = port.local_addr();
        reactor.call_when_running(move || eprintln!("listening on {addr}"));
    } else {
        announce(reactor, port.local_addr());
    }
    port
}

/// A factory whose protocols stop the reactor when their connection ends (for `stdio:`,
/// whose one connection is the whole service).
struct StopWhenLost<F>(F);

impl<F: Factory> Factory for StopWhenLost<F> {
    type Protocol = StopOnLost<F::Protocol>;

    fn build_protocol(&self, peer: &Address) -> Option<Self::Protocol> {
        self.0.build_protocol(peer).map(StopOnLost)
    }
    fn start_factory(&self) {
        self.0.start_factory()
    }
    fn stop_factory(&self) {
        self.0.stop_factory()
    }
}

/// Forwards everything to `P`, then stops the reactor once the connection is lost.
struct StopOnLost<P>(P);

impl<P: Protocol> Protocol for StopOnLost<P> {
    fn connection_made(&mut self, t: &Transport) {
        self.0.connection_made(t)
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.0.data_received(t, data)
    }
    fn eof_received(&mut self, t: &Transport) -> bool {
        self.0.eof_received(t)
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.0.connection_lost(reason);
        let _ = Reactor::current().stop();
    }
    fn pause_writing(&mut self, t: &Transport) {
        self.0.pause_writing(t)
    }
    fn resume_writing(&mut self, t: &Transport) {
        self.0.resume_writing(t)
    }
    fn reading_resumed(&mut self, t: &Transport) {
        self.0.reading_resumed(t)
    }
}

/// Opens the datagram port `description` names (`udp:`, `udp6:`, `unixgram:`; exit 2 if
/// it is malformed or not a datagram endpoint, 1 if opening fails) and, once the reactor
/// runs, prints `listening on ADDRESS` on stdout.
pub fn listen_datagram<P: DatagramProtocol>(
    reactor: &Reactor,
    description: &str,
    protocol: P,
) -> DatagramTransport {
    let endpoint = match datagram_from_string(reactor, description) {
        Ok(endpoint) => endpoint,
        Err(err) => usage_error(&err.to_string()),
    };
    let port = match endpoint.listen(protocol) {
        Ok(port) => port,
        Err(err) => fail(&err.to_string()),
    };
    announce(reactor, port.local_addr());
    port
}

/// Prints `listening on ADDRESS` on stdout once the reactor runs (so that SIGTERM is
/// already a graceful stop when a supervisor sees the line).
pub fn announce(reactor: &Reactor, address: impl std::fmt::Display) {
    let addr = address.to_string();
    reactor.call_when_running(move || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    });
}

/// Runs the reactor until it is stopped (SIGINT/SIGTERM stop it gracefully), then exits
/// with status 0 (or 1, naming the cause, if the reactor failed).
pub fn run(reactor: &Reactor) -> ! {
    match reactor.run() {
        Ok(()) => exit(0),
        Err(err) => fail(&err.to_string()),
    }
}

/// A whole server's `main`: logging, the endpoint from the first argument (or
/// `default_endpoint`), listening with `factory`, running until SIGINT or SIGTERM; then it
/// exits. See the [module documentation](self) for the conventions.
pub fn serve<F: Factory>(default_endpoint: &str, factory: F) -> ! {
    init_logging();
    let description = endpoint_arg(
        default_endpoint,
        &format!("[ENDPOINT]   (default {default_endpoint})"),
    );
    let reactor = Reactor::current();
    listen(&reactor, &description, factory);
    run(&reactor)
}
