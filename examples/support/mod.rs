//! What every example server and client shares: logging to stderr, the endpoint argument,
//! and the command-line contract (exit 2 for a bad argument, 1 for a failure to listen or
//! connect, 0 after a graceful shutdown).
#![allow(dead_code)] // each example uses part of this

use std::io::Write;
use std::process::exit;

use torsion::reactor::{
    Address, ConnectionLost, Factory, ListeningPort, Protocol, Reactor, Transport,
};

/// Logs go to stderr through `env_logger`; quiet unless `RUST_LOG` says otherwise (or
/// something goes wrong: warnings and errors show by default).
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
}

/// The program's name, for messages.
pub fn program() -> String {
    std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "torsion".into())
}

/// The one optional argument (an endpoint description), or `default`; more is a usage error.
pub fn endpoint_arg(default: &str, usage: &str) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => default.to_string(),
        [one] if one == "-h" || one == "--help" => {
            println!("usage: {} {usage}", program());
            exit(0);
        }
        [one] => one.clone(),
        _ => usage_error(&format!(
            "expected at most one argument\nusage: {} {usage}",
            program()
        )),
    }
}

/// Prints `message` on stderr and exits with status 2.
pub fn usage_error(message: &str) -> ! {
    eprintln!("{}: {message}", program());
    exit(2);
}

/// Prints `message` on stderr and exits with status 1.
pub fn fail(message: &str) -> ! {
    eprintln!("{}: {message}", program());
    exit(1);
}

/// Listens on the endpoint named by `description` (exit 2 if it is malformed, 1 if the
/// listen fails) and, once the reactor runs (so SIGTERM already means a graceful stop),
/// prints `listening on ADDRESS` on stdout.
///
/// On `stdio:` (one connection over standard input and output, inetd-style) the line goes
/// to stderr instead, since stdout is the connection, and the server stops when that
/// connection ends.
pub fn listen<F: Factory>(reactor: &Reactor, description: &str, factory: F) -> ListeningPort {
    let endpoint = match torsion::endpoints::server_from_string(reactor, description) {
        Ok(endpoint) => endpoint,
        Err(err) => usage_error(&err.to_string()),
    };
    let stdio = endpoint.spec().type_name() == "stdio";
    let listened = if stdio {
        endpoint.listen(StopWhenLost(factory))
    } else {
        endpoint.listen(factory)
    };
    let port = match listened {
        Ok(port) => port,
        Err(err) => fail(&err.to_string()),
    };
    let addr = port.local_addr();
    reactor.call_when_running(move || {
        let line = format!("listening on {addr}\n");
        let written = if stdio {
            std::io::stderr().lock().write_all(line.as_bytes())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes()).and_then(|()| out.flush())
        };
        let _ = written;
    });
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

/// Runs the reactor until it is stopped (SIGINT/SIGTERM stop it gracefully), then exits.
pub fn run(reactor: &Reactor) -> ! {
    match reactor.run() {
        Ok(()) => exit(0),
        Err(err) => fail(&err.to_string()),
    }
}
