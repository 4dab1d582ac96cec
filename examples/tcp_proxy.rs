//! A TCP proxy (Twisted's port forwarder): every connection it accepts on
//! LISTEN_ENDPOINT gets a connection of its own to UPSTREAM_ENDPOINT, and bytes flow both
//! ways, each side read only as fast as the other side takes what is written to it.
//! Half-closes pass through; when either connection ends, the other is finished once what
//! is buffered for it is sent (the guide's chapters on flow control and on the proxy).
//! With `--send-proxy` (or `--send-proxy-v2`), each upstream connection starts with a
//! PROXY protocol header naming the client, as HAProxy's `send-proxy` does, for a server
//! listening on `haproxy:`.
//!
//! ```text
//! cargo run --example echo_server -- tcp:port=9000:interface=127.0.0.1 &
//! cargo run --example tcp_proxy -- tcp:8000 tcp:host=127.0.0.1:port=9000
//! nc 127.0.0.1 8000
//! ```

use std::cell::RefCell;

use torsion::endpoints::haproxy::{ProxyClientFactory, ProxyHeader, Version};
use torsion::prelude::*;
use torsion::program;
use torsion::protocols::portforward::ProxyFactory;

const USAGE: &str =
    "usage: tcp_proxy LISTEN_ENDPOINT UPSTREAM_ENDPOINT [--send-proxy | --send-proxy-v2]";

fn main() {
    program::init_logging();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let mut send_proxy = None;
    args.retain(|a| {
        let version = match a.as_str() {
            "--send-proxy" => Version::V1,
            "--send-proxy-v2" => Version::V2,
            _ => return true,
        };
        send_proxy = Some(version);
        false
    });
    let [listen, upstream] = args.as_slice() else {
        program::usage_error(USAGE)
    };
    let reactor = Reactor::current();
    let upstream = match client_from_string(&reactor, upstream) {
        Ok(endpoint) => endpoint,
        Err(err) => program::usage_error(&err.to_string()),
    };
    let factory = ProxyFactory::new(move |side| match send_proxy {
        None => upstream.connect_protocol(side),
        Some(version) => {
            // The header names the client and the address it reached us on.
            let client = side.client();
            let header =
                ProxyHeader::for_addresses(version, &client.peer_addr(), &client.local_addr());
            let side = RefCell::new(Some(side));
            let once = factory_fn(move |_| side.borrow_mut().take());
            upstream.connect(ProxyClientFactory::new(once, move |_| header.clone()))
        }
    });
    program::listen(&reactor, listen, factory);
    program::run(&reactor);
}
