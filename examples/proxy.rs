//! A TCP proxy: every connection it accepts is forwarded to the target, both ways, and
//! each side is read only as fast as the other side takes what is written to it (the
//! guide's chapter on flow control).
//!
//! ```text
//! cargo run --example first_server -- tcp:9000 &
//! cargo run --example proxy -- tcp:host=127.0.0.1:port=9000 tcp:8000
//! nc 127.0.0.1 8000
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use torsion::prelude::*;
use torsion::program;

/// The other side's transport, once there is one.
type Peer = Rc<RefCell<Option<Transport>>>;

/// One side of a proxied connection: what it receives goes to the other side.
struct Side {
    other: Peer,
    /// For the side a client connected to: where to connect the other side.
    target: Option<Rc<ClientEndpoint>>,
}

impl Side {
    fn with_other(&self, f: impl FnOnce(&Transport)) {
        if let Some(other) = &*self.other.borrow() {
            f(other);
        }
    }
}

impl Protocol for Side {
    fn connection_made(&mut self, transport: &Transport) {
        let Some(target) = self.target.take() else {
            return; // the side towards the target: `other` is the client, already there
        };
        // Read nothing from the client until the target is connected.
        transport.pause_reading();
        let to_target = Side {
            other: Rc::new(RefCell::new(Some(transport.clone()))),
            target: None,
        };
        let client = transport.clone();
        let other = Rc::clone(&self.other);
        target
            .connect_protocol(to_target)
            .on_result(move |connected| match connected {
                Ok(target) if client.is_closing() => target.lose_connection(),
                Ok(target) => {
                    *other.borrow_mut() = Some(target);
                    client.resume_reading();
                }
                Err(err) => {
                    log::warn!("proxying {}: {err}", client.peer_addr());
                    client.lose_connection();
                }
            });
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.with_other(|other| other.write(data));
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        // Pass the half-close on, and keep sending the other way.
        self.with_other(|other| {
            let _ = other.lose_write_connection();
        });
        true
    }

    // Our peer is not reading what we write: stop reading from the other side, so that
    // its peer is pushed back on instead of our memory filling up.
    fn pause_writing(&mut self, _transport: &Transport) {
        self.with_other(Transport::pause_reading);
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        self.with_other(Transport::resume_reading);
    }

    fn connection_lost(&mut self, _reason: &ConnectionLost) {
        self.with_other(Transport::lose_connection);
    }
}

fn main() {
    program::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, listen) = match args.as_slice() {
        [target] => (target.as_str(), "tcp:8000"),
        [target, listen] => (target.as_str(), listen.as_str()),
        _ => program::usage_error("usage: proxy TARGET [ENDPOINT]   (default tcp:8000)"),
    };
    let reactor = Reactor::current();
    let target = match client_from_string(&reactor, target) {
        Ok(endpoint) => Rc::new(endpoint),
        Err(err) => program::usage_error(&err.to_string()),
    };
    let factory = factory_fn(move |_| Side {
        other: Rc::default(),
        target: Some(Rc::clone(&target)),
    });
    program::listen(&reactor, listen, factory);
    program::run(&reactor);
}
