//! An echo client: sends standard input to the server and writes what comes back to
//! standard output. At the end of its input it half-closes the connection, and exits once
//! the server has closed it.
//!
//! ```text
//! printf 'hello\n' | cargo run --example echo_client -- tcp:host=127.0.0.1:port=8000
//! printf 'hello\n' | cargo run --example echo_client -- tls:localhost:7443:trustRoots=ca.pem
//! ```

use std::cell::RefCell;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::rc::Rc;

use torsion::program;
use torsion::reactor::{Address, ConnectionLost, Factory, Protocol, Reactor, Transport};

/// Standard input, read through the reactor and forwarded to the connection.
struct Input {
    file: Rc<File>,
}

impl Input {
    fn watch(&self, transport: &Transport) {
        let file = Rc::clone(&self.file);
        let t = transport.clone();
        let added = Reactor::current().add_reader(Rc::clone(&self.file), move || {
            let mut buf = [0u8; 16 * 1024];
            match (&*file).read(&mut buf) {
                Ok(0) | Err(_) => {
                    Reactor::current().remove_reader(0);
                    // End of input: half-close; the server's close ends the program.
                    let _ = t.lose_write_connection();
                }
                Ok(n) => {
                    t.write(&buf[..n]);
                }
            }
        });
        if let Err(err) = added {
            program::fail(&err.to_string());
        }
    }
}

struct EchoClient {
    input: Rc<RefCell<Option<Input>>>,
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, transport: &Transport) {
        if let Some(input) = &*self.input.borrow() {
            input.watch(transport);
        }
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        let mut out = std::io::stdout().lock();
        if out.write_all(data).and_then(|()| out.flush()).is_err() {
            program::fail("cannot write to standard output");
        }
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        false // the server is done: close our side too
    }

    // Stop reading standard input while the server is not taking what we send.
    fn pause_writing(&mut self, _transport: &Transport) {
        Reactor::current().remove_reader(0);
    }

    fn resume_writing(&mut self, transport: &Transport) {
        if let Some(input) = &*self.input.borrow() {
            input.watch(transport);
        }
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        Reactor::current().remove_reader(0);
        if !reason.is_clean() {
            log::warn!("{reason}");
        }
        let _ = Reactor::current().stop();
    }
}

struct Client {
    input: Rc<RefCell<Option<Input>>>,
}

impl Factory for Client {
    type Protocol = EchoClient;
    fn build_protocol(&self, _peer: &Address) -> Option<EchoClient> {
        Some(EchoClient {
            input: Rc::clone(&self.input),
        })
    }
}

fn main() {
    program::init_logging();
    let endpoint = program::endpoint_arg(
        "tcp:host=127.0.0.1:port=8000",
        "[ENDPOINT]   (default tcp:host=127.0.0.1:port=8000)",
    );
    let reactor = Reactor::current();
    let endpoint = match torsion::endpoints::client_from_string(&reactor, &endpoint) {
        Ok(e) => e,
        Err(err) => program::usage_error(&err.to_string()),
    };
    // A private handle on fd 0, so std's buffered Stdin reads nothing ahead of the reactor.
    let file = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => Rc::new(File::from(fd)),
        Err(err) => program::fail(&format!("cannot use standard input: {err}")),
    };
    let factory = Client {
        input: Rc::new(RefCell::new(Some(Input { file }))),
    };
    // Host names are resolved off the reactor thread and every address is tried; the error
    // names the host, the port and the cause.
    endpoint.connect(factory).on_result(|connected| {
        if let Err(err) = connected {
            program::fail(&err.to_string());
        }
    });
    program::run(&reactor);
}
