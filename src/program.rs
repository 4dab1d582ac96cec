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
//! The pieces it is made of ([`init_logging`], [`endpoint_arg`], [`listen`], [`run`],
//! [`usage_error`], [`fail`]) are here for programs with more to set up.

use std::io::Write;
use std::process::exit;

use torsion_endpoints::server_from_string;
use torsion_reactor::{Factory, ListeningPort, Reactor};

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
    let listened = match crate::probe::interval() {
        // The chaos suite's instrumentation (see `TORSION_PROBE` below).
        Some(every) => {
            let counts = std::rc::Rc::default();
            crate::probe::start(reactor, &counts, every);
            endpoint.listen(crate::probe::ProbedFactory {
                inner: factory,
                counts,
            })
        }
        None => endpoint.listen(factory),
    };
    let port = match listened {
        Ok(port) => port,
        Err(err) => fail(&err.to_string()),
    };
    announce(reactor, &port);
    port
}

/// Prints `listening on ADDRESS` for `port` once the reactor runs.
pub fn announce(reactor: &Reactor, port: &ListeningPort) {
    let addr = port.local_addr();
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
