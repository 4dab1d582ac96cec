//! An echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo_server -- tcp:port=7000:interface=127.0.0.1
//! cargo run --release --example echo_server -- tcp:7000 --threads 2   # one reactor per thread
//! cargo run --release --example echo_server -- \
//!     ssl:port=7443:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem   # TLS
//! openssl s_client -connect 127.0.0.1:7443 -quiet                          # talk to it
//! RUST_LOG=info cargo run --example echo_server -- haproxy:tcp:7000  # behind HAProxy
//! ```
//!
//! With `RUST_LOG=info` it logs a line per connection with the client's address as
//! `peer_addr()` gives it: behind a load balancer that sends the PROXY protocol (the
//! `haproxy:` endpoint), the real client's, not the balancer's.
//!
//! A client that sends without reading its echoes is paused at the write buffer's high
//! mark (reading from it stops until it catches up), so it cannot grow the server's memory.
//! When a client half-closes, everything it sent is echoed, then the server closes.
//!
//! With `--threads N`, N threads each run their own reactor, the way to use several cores
//! with a per-thread reactor: this thread's reactor accepts and hands each connection to
//! the reactor serving the fewest (`torsion::endpoints::listen_on_threads`).

use torsion::endpoints::listen_on_threads;
use torsion::program;
use torsion::reactor::{ErrorKind, Protocol, Reactor, Transport, factory_fn};

struct Echo;

impl Protocol for Echo {
    fn connection_made(&mut self, transport: &Transport) {
        log::info!("connection from {}", transport.peer_addr());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        transport.write(data);
    }

    // Flow control: stop reading while the peer is not reading what we send back.
    fn pause_writing(&mut self, transport: &Transport) {
        log::debug!(
            "{} is not reading its echoes: pausing reading",
            transport.peer_addr()
        );
        transport.pause_reading();
    }

    fn resume_writing(&mut self, transport: &Transport) {
        transport.resume_reading();
    }
}

const USAGE: &str = "[ENDPOINT] [--threads N]   (default tcp:8000, 1 thread)";

fn parse_args() -> (String, usize) {
    let mut endpoint = None;
    let mut threads = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: {} {USAGE}", program::name());
                std::process::exit(0);
            }
            "--threads" => {
                threads = match args.next().and_then(|n| n.parse::<usize>().ok()) {
                    Some(n) if (1..=1024).contains(&n) => n,
                    _ => program::usage_error("--threads takes a number from 1 to 1024"),
                }
            }
            _ if endpoint.is_none() => endpoint = Some(arg),
            _ => program::usage_error(&format!("unexpected argument {arg:?}\nusage: {USAGE}")),
        }
    }
    (endpoint.unwrap_or_else(|| "tcp:8000".into()), threads)
}

fn main() {
    program::init_logging();
    let (endpoint, threads) = parse_args();
    let reactor = Reactor::current();
    if threads == 1 {
        program::listen(&reactor, &endpoint, factory_fn(|_| Echo));
        program::run(&reactor);
    }

    // Several reactors, one per thread: this one accepts, and hands each connection to
    // the reactor serving the fewest.
    let port = match listen_on_threads(&reactor, &endpoint, threads, || factory_fn(|_| Echo)) {
        Ok(port) => port,
        Err(err) if err.kind() == ErrorKind::InvalidInput => program::usage_error(&err.to_string()),
        Err(err) => program::fail(&err.to_string()),
    };
    program::announce(&reactor, port.local_addr());
    // SIGINT/SIGTERM stop this reactor; its shutdown stops the others, each winding down
    // its own connections.
    let result = reactor.run();
    port.join();
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => program::fail(&err.to_string()),
    }
}
