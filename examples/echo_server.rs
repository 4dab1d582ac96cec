//! An echo server: every byte a client sends comes back.
//!
//! ```text
//! cargo run --release --example echo_server -- tcp:port=7000:interface=127.0.0.1
//! ```
//!
//! A client that sends without reading its echoes is paused at the write buffer's high
//! mark (reading from it stops until it catches up), so it cannot grow the server's memory.
//! When a client half-closes, everything it sent is echoed, then the server closes.

mod support;

use torsion::reactor::{Protocol, Reactor, Transport, factory_fn};

struct Echo;

impl Protocol for Echo {
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let _ = transport.write(data);
    }

    // Flow control: stop reading while the peer is not reading what we send back.
    fn pause_writing(&mut self, transport: &Transport) {
        transport.pause_reading();
    }

    fn resume_writing(&mut self, transport: &Transport) {
        transport.resume_reading();
    }
}

fn main() {
    support::init_logging();
    let endpoint = support::endpoint_arg("tcp:8000", "[ENDPOINT]   (default tcp:8000)");
    let reactor = Reactor::current();
    support::listen(&reactor, &endpoint, factory_fn(|_| Some(Echo)));
    support::run(&reactor);
}
