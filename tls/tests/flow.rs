//! Flow control under TLS: 64 MiB through a TLS echo to a client that reads slowly
//! arrives intact, and the server's buffers stay bounded by the marks.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use support::pki::Pki;
use support::{OneShot, localhost, run_until};
use torsion_reactor::testing::test_reactor;
use torsion_reactor::{ConnectionLost, Protocol, Reactor, Transport, factory_fn};
use torsion_tls::{ClientOptions, ServerOptions, TrustRoots};

const TOTAL: usize = 64 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(31) % 253) as u8
}

/// Echoes, pausing its reading while its writing is paused (a well-behaved proxy), and
/// records the largest write buffer it saw.
struct FlowEcho {
    max_buffered: Rc<Cell<usize>>,
}

impl Protocol for FlowEcho {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
        self.max_buffered
            .set(self.max_buffered.get().max(t.buffer_size()));
    }
    fn pause_writing(&mut self, t: &Transport) {
        t.pause_reading();
    }
    fn resume_writing(&mut self, t: &Transport) {
        t.resume_reading();
    }
}

/// Writes `TOTAL` bytes as fast as flow control allows; reads the echo slowly (a pause
/// after every mebibyte) and checks every byte.
struct SlowClient {
    sent: usize,
    received: Rc<Cell<usize>>,
    bad: Rc<Cell<bool>>,
    since_pause: usize,
    done: Rc<Cell<bool>>,
}

impl SlowClient {
    fn produce(&mut self, t: &Transport) {
        while self.sent < TOTAL && !t.is_writing_paused() {
            let n = CHUNK.min(TOTAL - self.sent);
            let data: Vec<u8> = (self.sent..self.sent + n).map(byte).collect();
            t.write(&data);
            self.sent += n;
        }
    }
}

impl Protocol for SlowClient {
    fn connection_made(&mut self, t: &Transport) {
        self.produce(t);
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        let start = self.received.get();
        if data.iter().enumerate().any(|(i, b)| *b != byte(start + i)) {
            self.bad.set(true);
        }
        self.received.set(start + data.len());
        self.since_pause += data.len();
        if self.received.get() == TOTAL {
            t.lose_connection();
            return;
        }
        if self.since_pause >= 1024 * 1024 {
            self.since_pause = 0;
            t.pause_reading();
            let t = t.clone();
            Reactor::current().call_later(Duration::from_millis(2), move || t.resume_reading());
        }
    }
    fn resume_writing(&mut self, t: &Transport) {
        self.produce(t);
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        assert!(reason.is_clean(), "{reason}");
        self.done.set(true);
    }
}

#[test]
fn sixty_four_mebibytes_to_a_slow_reader() {
    let reactor = test_reactor();
    let pki = Pki::new("flow");
    let server = pki.server("server", &["localhost"]);
    let acceptor = ServerOptions::from_pem_files(&server.cert, &server.key)
        .expect("identity")
        .build()
        .expect("acceptor");
    let max_buffered = Rc::new(Cell::new(0));
    let m = Rc::clone(&max_buffered);
    let port = reactor
        .listen_tcp(
            localhost(),
            acceptor.wrap(factory_fn(move |_| FlowEcho {
                max_buffered: Rc::clone(&m),
            })),
        )
        .expect("listen");
    let connector = ClientOptions::new()
        .trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("CA"))
        .build()
        .expect("connector");
    let received = Rc::new(Cell::new(0));
    let bad = Rc::new(Cell::new(false));
    let done = Rc::new(Cell::new(false));
    let client = SlowClient {
        sent: 0,
        received: Rc::clone(&received),
        bad: Rc::clone(&bad),
        since_pause: 0,
        done: Rc::clone(&done),
    };
    reactor.connect_tcp(
        port.local_addr().socket_addr().expect("addr"),
        connector
            .wrap("localhost", OneShot(RefCell::new(Some(client))))
            .expect("name"),
    );
    reactor
        .run_until(Duration::from_secs(120), || done.get())
        .unwrap_or_else(|e| panic!("64 MiB echoed (got {}): {e}", received.get()));
    assert_eq!(received.get(), TOTAL);
    assert!(!bad.get(), "every byte arrived as sent");
    // The server's buffer never held more than its high mark (64 KiB) plus what one
    // readiness event delivers before `pause_writing` reaches the protocol (the reactor
    // reads up to 4 x 64 KiB per event), plus record overhead: as for plain TCP.
    assert!(
        max_buffered.get() <= 64 * 1024 + 4 * 64 * 1024 + 16 * 1024,
        "the server buffered {} bytes",
        max_buffered.get()
    );
    run_until(&reactor, "nothing left open", || {
        reactor.open_connections() == 0
    });
    port.stop_listening();
}
