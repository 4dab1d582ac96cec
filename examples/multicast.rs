//! IP multicast: a listener that joins a group and prints what is sent to it, and a sender.
//!
//! ```text
//! cargo run --example multicast -- listen 239.255.0.1:7400            # on the loopback interface
//! cargo run --example multicast -- send 239.255.0.1:7400 hello world  # two datagrams
//! cargo run --example multicast -- listen 239.255.0.1:7400 --interface eth0
//! ```
//!
//! `listen GROUP:PORT` joins the group on the interface (default `lo`, so the example works
//! on one machine without a network), prints `listening on ADDRESS` once, then one line
//! `FROM: TEXT` per datagram; SIGINT/SIGTERM stop it (exit 0). Several listeners may share
//! the port (`SO_REUSEADDR`): each gets every datagram. `send GROUP:PORT MESSAGE...` sends
//! each message as one datagram from that interface, with multicast loopback on (so
//! listeners on this host get them) and a TTL of 1, then exits. Port 0 in `listen` picks a
//! free port, shown in the `listening on` line. An interface is a name (`eth0`), an index,
//! or (IPv4) an address of the interface.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use torsion::program;
use torsion::reactor::{
    Address, ConnectionLost, DatagramProtocol, DatagramTransport, Interface, Reactor, UdpOptions,
};

const USAGE: &str =
    "listen GROUP:PORT [--interface IF] | send GROUP:PORT MESSAGE... [--interface IF]";

/// Prints each datagram as `FROM: TEXT`.
struct Listener;

impl DatagramProtocol for Listener {
    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], from: Address) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{from}: {}", String::from_utf8_lossy(data));
        let _ = out.flush();
    }
}

/// Sends its messages when the port starts, then closes it; the reactor stops when it is
/// closed.
struct Sender {
    group: SocketAddr,
    messages: Vec<String>,
}

impl DatagramProtocol for Sender {
    fn connection_made(&mut self, port: &DatagramTransport) {
        for message in &self.messages {
            if let Err(err) = port.send_to(message.as_bytes(), &Address::Udp(self.group)) {
                eprintln!("{}: {err}", program::name());
            }
        }
        port.close(); // after the queue (if any) is sent
    }

    fn datagram_received(&mut self, _: &DatagramTransport, _: &[u8], _: Address) {}

    fn connection_lost(&mut self, _: &ConnectionLost) {
        let _ = Reactor::current().stop();
    }
}

fn interface(text: &str) -> Interface {
    if let Ok(addr) = text.parse() {
        Interface::Address(addr)
    } else if let Ok(index) = text.parse() {
        Interface::Index(index)
    } else {
        Interface::Name(text.to_owned())
    }
}

struct Args {
    send: bool,
    group: SocketAddr,
    messages: Vec<String>,
    interface: Interface,
}

fn parse_args() -> Args {
    let mut words = Vec::new();
    let mut interface_name = "lo".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: {} {USAGE}", program::name());
                std::process::exit(0);
            }
            "--interface" => match args.next() {
                Some(name) => interface_name = name,
                None => program::usage_error("--interface takes an interface"),
            },
            _ => words.push(arg),
        }
    }
    let usage = || -> ! { program::usage_error(&format!("usage: {} {USAGE}", program::name())) };
    let (mode, group, messages) = match words.as_slice() {
        [mode, group, rest @ ..] => (mode.as_str(), group, rest.to_vec()),
        _ => usage(),
    };
    let send = match (mode, messages.is_empty()) {
        ("listen", true) => false,
        ("send", false) => true,
        _ => usage(),
    };
    let group: SocketAddr = match group.parse() {
        Ok(g) => g,
        Err(_) => program::usage_error(&format!(
            "{group:?} is not GROUP:PORT (such as 239.255.0.1:7400 or [ff02::1:7]:7400)"
        )),
    };
    if !group.ip().is_multicast() {
        program::usage_error(&format!("{} is not a multicast address", group.ip()));
    }
    if send && group.port() == 0 {
        program::usage_error("send needs the group's port (the one `listen` printed)");
    }
    Args {
        send,
        group,
        messages,
        interface: interface(&interface_name),
    }
}

fn any_address(group: &SocketAddr, port: u16) -> SocketAddr {
    match group.ip() {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], port)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], port)),
    }
}

fn main() {
    program::init_logging();
    let args = parse_args();
    let reactor = Reactor::current();
    if args.send {
        let sender = Sender {
            group: args.group,
            messages: args.messages,
        };
        let port = reactor
            .listen_udp(any_address(&args.group, 0), sender)
            .unwrap_or_else(|err| program::fail(&err.to_string()));
        let setup = port
            .set_multicast_interface(&args.interface)
            .and_then(|()| port.set_multicast_loop(true))
            .and_then(|()| port.set_multicast_ttl(1));
        if let Err(err) = setup {
            program::fail(&err.to_string());
        }
        program::run(&reactor);
    }
    let options = UdpOptions {
        reuse_address: true,
        ..UdpOptions::default()
    };
    let port = reactor
        .listen_udp_with(
            any_address(&args.group, args.group.port()),
            Listener,
            &options,
        )
        .unwrap_or_else(|err| program::fail(&err.to_string()));
    if let Err(err) = port.join_group(args.group.ip(), &args.interface) {
        program::fail(&err.to_string());
    }
    program::announce(&reactor, port.local_addr().to_string());
    program::run(&reactor);
}
