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
//! With `--threads N`, N threads each run their own reactor on the same port
//! (`SO_REUSEPORT`: the kernel spreads connections among them), the way to use several
//! cores with a per-thread reactor.

use std::sync::mpsc;

use torsion::endpoints::{ServerEndpoint, TcpServer, server_from_string};
use torsion::program;
use torsion::reactor::{Protocol, Reactor, Transport, factory_fn};

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

    // Several reactors sharing one TCP port.
    let parsed = match server_from_string(&reactor, &endpoint) {
        Ok(e) => e,
        Err(err) => program::usage_error(&err.to_string()),
    };
    let Some(tcp) = parsed.spec().downcast_ref::<TcpServer>() else {
        program::usage_error("--threads needs a tcp or tcp6 endpoint")
    };
    let mut tcp = tcp.clone();
    tcp.reuseport = true;
    let first = ServerEndpoint::new(&reactor, tcp.clone())
        .listen(factory_fn(|_| Echo))
        .unwrap_or_else(|err| program::fail(&err.to_string()));
    let addr = first.local_addr();
    if let Some(bound) = addr.socket_addr() {
        tcp.port = bound.port(); // port 0: the others join the port the first one got
    }
    let (ready_tx, ready_rx) = mpsc::channel();
    let workers: Vec<_> = (1..threads)
        .map(|_| {
            let spec = tcp.clone();
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                let reactor = Reactor::current();
                let listened = ServerEndpoint::new(&reactor, spec)
                    .listen(factory_fn(|_| Echo))
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                let ok = listened.is_ok();
                let _ = ready.send(listened);
                if ok {
                    if let Err(err) = reactor.run() {
                        log::error!("{err}");
                    }
                }
            })
        })
        .collect();
    for _ in 1..threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => program::fail(&err),
            Err(_) => program::fail("a worker thread failed to start"),
        }
    }
    reactor.call_when_running(move || {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
    });
    // SIGINT/SIGTERM reach every reactor; each winds down on its own.
    let result = reactor.run();
    for worker in workers {
        let _ = worker.join();
    }
    match result {
        Ok(()) => std::process::exit(0),
        Err(err) => program::fail(&err.to_string()),
    }
}
