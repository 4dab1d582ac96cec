//! What every example server and client shares: logging to stderr, the endpoint argument,
//! and the command-line contract (exit 2 for a bad argument, 1 for a failure to listen or
//! connect, 0 after a graceful shutdown).
#![allow(dead_code)] // each example uses part of this

use std::io::Write;
use std::process::exit;

use torsion::reactor::{DatagramProtocol, DatagramTransport, Factory, ListeningPort, Reactor};

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
pub fn listen<F: Factory>(reactor: &Reactor, description: &str, factory: F) -> ListeningPort {
    let endpoint = match torsion::endpoints::server_from_string(reactor, description) {
        Ok(endpoint) => endpoint,
        Err(err) => usage_error(&err.to_string()),
    };
    let port = match endpoint.listen(factory) {
        Ok(port) => port,
        Err(err) => fail(&err.to_string()),
    };
    let addr = port.local_addr();
    reactor.call_when_running(move || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    });
    port
}

/// Opens the datagram port named by `description` (exit 2 if it is malformed or not a
/// datagram endpoint, 1 if opening fails) and, once the reactor runs, prints `listening on
/// ADDRESS` on stdout.
pub fn listen_datagram<P: DatagramProtocol>(
    reactor: &Reactor,
    description: &str,
    protocol: P,
) -> DatagramTransport {
    let endpoint = match torsion::endpoints::datagram_from_string(reactor, description) {
        Ok(endpoint) => endpoint,
        Err(err) => usage_error(&err.to_string()),
    };
    let port = match endpoint.listen(protocol) {
        Ok(port) => port,
        Err(err) => fail(&err.to_string()),
    };
    announce(reactor, port.local_addr().to_string());
    port
}

/// Prints `listening on ADDRESS` on stdout once the reactor runs (so SIGTERM already means
/// a graceful stop).
pub fn announce(reactor: &Reactor, addr: String) {
    reactor.call_when_running(move || {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    });
}

/// Runs the reactor until it is stopped (SIGINT/SIGTERM stop it gracefully), then exits.
pub fn run(reactor: &Reactor) -> ! {
    match reactor.run() {
        Ok(()) => exit(0),
        Err(err) => fail(&err.to_string()),
    }
}
