//! A UDP echo server: every datagram comes back to its sender, whole.
//!
//! ```text
//! cargo run --release --example udp_echo -- udp:port=7000:interface=127.0.0.1
//! cargo run --release --example udp_echo -- unixgram:/tmp/echo.sock
//! printf 'hello\n' | cargo run --example udp_client -- udp:host=127.0.0.1:port=7000
//! ```
//!
//! The datagrams of one batch (up to 32 read with one `recvmmsg` on Linux) are answered
//! with one `sendmmsg`. When the socket stops taking datagrams (a Unix peer that does not
//! read) the port stops reading until its send queue drains, so it cannot grow its memory;
//! a peer that never reads loses its answers, which are reported on stderr.

use torsion::program;
use torsion::reactor::{Address, DatagramError, DatagramProtocol, DatagramTransport, Reactor};

struct Echo;

impl DatagramProtocol for Echo {
    fn datagram_received(&mut self, port: &DatagramTransport, data: &[u8], from: Address) {
        if let Err(err) = port.send_to(data, &from) {
            // An unnamed Unix peer cannot be answered; a full queue is reported below too.
            log::debug!("cannot answer {from}: {err}");
        }
    }

    fn error_received(&mut self, port: &DatagramTransport, error: &DatagramError) {
        match error {
            // A client that went away: nothing to do.
            DatagramError::Network { .. } => log::debug!("{}: {error}", port.local_addr()),
            _ => log::warn!("{}: {error}", port.local_addr()),
        }
    }

    // Flow control: stop reading while the socket does not take the answers.
    fn pause_writing(&mut self, port: &DatagramTransport) {
        port.pause_reading();
    }

    fn resume_writing(&mut self, port: &DatagramTransport) {
        port.resume_reading();
    }
}

fn main() {
    program::init_logging();
    let endpoint = program::endpoint_arg(
        "udp:8000",
        "[ENDPOINT]   (default udp:8000; udp:, udp6: or unixgram:PATH)",
    );
    let reactor = Reactor::current();
    program::listen_datagram(&reactor, &endpoint, Echo);
    program::run(&reactor);
}
