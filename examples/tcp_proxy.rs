//! A TCP proxy (Twisted's port forwarder): every connection it accepts on
//! LISTEN_ENDPOINT gets a connection of its own to UPSTREAM_ENDPOINT, and bytes flow both
//! ways, each side read only as fast as the other side takes what is written to it.
//! Half-closes pass through; when either connection ends, the other is closed once what
//! is buffered for it is sent (the guide's chapters on flow control and on the proxy).
//!
//! ```text
//! cargo run --example echo_server -- tcp:port=9000:interface=127.0.0.1 &
//! cargo run --example tcp_proxy -- tcp:8000 tcp:host=127.0.0.1:port=9000
//! nc 127.0.0.1 8000
//! ```

use torsion::prelude::*;
use torsion::program;
use torsion::protocols::portforward::ProxyFactory;

const USAGE: &str = "usage: tcp_proxy LISTEN_ENDPOINT UPSTREAM_ENDPOINT";

fn main() {
    program::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream) = match args.as_slice() {
        [one] if one == "-h" || one == "--help" => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        [listen, upstream] => (listen.as_str(), upstream.as_str()),
        _ => program::usage_error(USAGE),
    };
    let reactor = Reactor::current();
    let upstream = match client_from_string(&reactor, upstream) {
        Ok(endpoint) => endpoint,
        Err(err) => program::usage_error(&err.to_string()),
    };
    let factory = ProxyFactory::new(move |side| upstream.connect_protocol(side));
    program::listen(&reactor, listen, factory);
    program::run(&reactor);
}
