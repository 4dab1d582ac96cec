//! A UDP (or Unix datagram) client: sends each line of standard input as one datagram and
//! prints each reply on its own line.
//!
//! ```text
//! printf 'hello\nworld\n' | cargo run --example udp_client -- udp:host=127.0.0.1:port=8000
//! cargo run --example udp_client -- unixgram:/tmp/echo.sock --timeout 1 < lines.txt
//! ```
//!
//! At the end of its input it waits for the replies still due and exits 0 once they are
//! all in. If one does not come within the timeout (3 s by default, counted from the end of
//! the input or the last reply), it says how many were lost on stderr and exits 1; if the
//! network says nobody listens there (ICMP port unreachable), it says so and exits 1. A
//! malformed endpoint exits 2, a failure to resolve or connect 1.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use torsion::program;
use torsion::reactor::{
    Address, DatagramError, DatagramProtocol, DatagramTransport, DelayedCall, Reactor,
};

const USAGE: &str =
    "ENDPOINT [--timeout SECS]   (ENDPOINT: udp:host=H:port=P, udp6:..., unixgram:PATH)";

/// What the client and its input share.
struct State {
    /// Datagrams sent and not yet answered.
    outstanding: Cell<usize>,
    /// The input has ended.
    eof: Cell<bool>,
    /// Fires when a reply is overdue.
    timer: RefCell<Option<DelayedCall>>,
    timeout: Duration,
    failed: Cell<bool>,
    stdin: Rc<File>,
    /// The input's bytes after its last newline.
    partial: RefCell<Vec<u8>>,
}

impl State {
    /// Sends each complete line of `bytes` (and, at the end of the input, the rest).
    fn take_input(&self, port: &DatagramTransport, bytes: &[u8], end: bool) {
        let mut partial = self.partial.borrow_mut();
        partial.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(n) = partial[start..].iter().position(|&b| b == b'\n') {
            self.send(port, &partial[start..start + n]);
            start += n + 1;
        }
        partial.drain(..start);
        if end && !partial.is_empty() {
            let last = std::mem::take(&mut *partial);
            self.send(port, &last);
        }
    }

    fn send(&self, port: &DatagramTransport, line: &[u8]) {
        match port.send(line) {
            Ok(()) => self.outstanding.set(self.outstanding.get() + 1),
            Err(err) => eprintln!("{}: {err}", program::name()),
        }
    }

    /// Input is over: stop when every reply is in, or arm the timeout for those still due.
    fn check_done(self: &Rc<Self>) {
        if !self.eof.get() {
            return;
        }
        if let Some(timer) = self.timer.borrow_mut().take() {
            let _ = timer.cancel();
        }
        if self.outstanding.get() == 0 {
            let _ = Reactor::current().stop();
            return;
        }
        let me = Rc::clone(self);
        let call = Reactor::current().call_later(self.timeout, move || {
            eprintln!(
                "{}: no reply to {} datagram(s) within {:?}",
                program::name(),
                me.outstanding.get(),
                me.timeout
            );
            me.failed.set(true);
            let _ = Reactor::current().stop();
        });
        *self.timer.borrow_mut() = Some(call);
    }

    fn finish(self: &Rc<Self>, port: &DatagramTransport) {
        self.take_input(port, &[], true);
        self.eof.set(true);
        self.check_done();
    }

    /// Reads standard input through the reactor; a regular file (which epoll cannot watch)
    /// is read at once.
    fn watch_input(self: &Rc<Self>, port: &DatagramTransport) {
        let me = Rc::clone(self);
        let t = port.clone();
        let fd: RawFd = self.stdin.as_raw_fd();
        let watched = Reactor::current().add_reader(Rc::clone(&self.stdin), move || {
            let mut buf = [0u8; 64 * 1024];
            match (&*me.stdin).read(&mut buf) {
                Ok(0) | Err(_) => {
                    Reactor::current().remove_reader(fd);
                    me.finish(&t);
                }
                Ok(n) => me.take_input(&t, &buf[..n], false),
            }
        });
        if watched.is_err() {
            let mut all = Vec::new();
            if let Err(err) = (&*self.stdin).read_to_end(&mut all) {
                program::fail(&format!("cannot read standard input: {err}"));
            }
            self.take_input(port, &all, false);
            self.finish(port);
        }
    }
}

struct Client(Rc<State>);

impl DatagramProtocol for Client {
    fn connection_made(&mut self, port: &DatagramTransport) {
        self.0.watch_input(port);
    }

    fn datagram_received(&mut self, _: &DatagramTransport, data: &[u8], _: Address) {
        let mut out = std::io::stdout().lock();
        let written = out
            .write_all(data)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if written.is_err() {
            program::fail("cannot write to standard output");
        }
        let state = &self.0;
        state
            .outstanding
            .set(state.outstanding.get().saturating_sub(1));
        state.check_done();
    }

    fn error_received(&mut self, _: &DatagramTransport, error: &DatagramError) {
        match error {
            DatagramError::Network { .. } => {
                // Nobody listens there: waiting for replies is pointless.
                eprintln!("{}: {error}", program::name());
                self.0.failed.set(true);
                let _ = Reactor::current().stop();
            }
            DatagramError::SendFailed { .. } => {
                eprintln!("{}: {error}", program::name());
                let state = &self.0;
                state
                    .outstanding
                    .set(state.outstanding.get().saturating_sub(1));
                state.check_done();
            }
            _ => eprintln!("{}: {error}", program::name()),
        }
    }
}

fn parse_args() -> (String, Duration) {
    let mut endpoint = None;
    let mut timeout = Duration::from_secs(3);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: {} {USAGE}", program::name());
                std::process::exit(0);
            }
            "--timeout" => {
                timeout = match args.next().and_then(|s| s.parse::<f64>().ok()) {
                    Some(s) if s > 0.0 && s <= 3600.0 => Duration::from_secs_f64(s),
                    _ => program::usage_error("--timeout takes a number of seconds (0 to 3600)"),
                }
            }
            _ if endpoint.is_none() => endpoint = Some(arg),
            _ => program::usage_error(&format!("unexpected argument {arg:?}\nusage: {USAGE}")),
        }
    }
    match endpoint {
        Some(e) => (e, timeout),
        None => program::usage_error(&format!(
            "expected an endpoint\nusage: {} {USAGE}",
            program::name()
        )),
    }
}

fn main() {
    program::init_logging();
    let (endpoint, timeout) = parse_args();
    let reactor = Reactor::current();
    let endpoint = match torsion::endpoints::datagram_client_from_string(&reactor, &endpoint) {
        Ok(e) => e,
        Err(err) => program::usage_error(&err.to_string()),
    };
    // A private handle on fd 0, so std's buffered Stdin reads nothing ahead of the reactor.
    let stdin = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => Rc::new(File::from(fd)),
        Err(err) => program::fail(&format!("cannot use standard input: {err}")),
    };
    let state = Rc::new(State {
        outstanding: Cell::new(0),
        eof: Cell::new(false),
        timer: RefCell::new(None),
        timeout,
        failed: Cell::new(false),
        stdin,
        partial: RefCell::new(Vec::new()),
    });
    // A host name is resolved off the reactor thread; the error names the peer and the cause.
    endpoint
        .connect(Client(Rc::clone(&state)))
        .on_result(|connected| {
            if let Err(err) = connected {
                program::fail(&err.to_string());
            }
        });
    if let Err(err) = reactor.run() {
        program::fail(&err.to_string());
    }
    std::process::exit(if state.failed.get() { 1 } else { 0 });
}
