//! The TLS layer over an in-memory transport ([`Loopback`]) with a [`Clock`]: the handshake,
//! its timeout, and flow control of plaintext written before the handshake is done, all
//! deterministic.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use support::pki::Pki;
use support::{Recorder, seen};
use torsion_reactor::testing::{Loopback, Sink};
use torsion_reactor::{Clock, ConnectionLost, Protocol, Scheduler, Transport};
use torsion_tls::{ClientOptions, ServerOptions, TlsAcceptor, TlsConnector, TrustRoots};

fn pair(pki: &Pki) -> (TlsAcceptor, TlsConnector) {
    let server = pki.server("server", &["localhost"]);
    let acceptor = ServerOptions::from_pem_files(&server.cert, &server.key)
        .expect("identity")
        .build()
        .expect("acceptor");
    let connector = ClientOptions::new()
        .trust_roots(TrustRoots::from_pem_file(&pki.ca).expect("CA"))
        .build()
        .expect("connector");
    (acceptor, connector)
}

#[test]
fn a_handshake_in_memory() {
    let pki = Pki::new("mem");
    let (acceptor, connector) = pair(&pki);
    let clock = Rc::new(Clock::new()) as Rc<dyn Scheduler>;
    let client = seen();
    let server = seen();
    let c = connector
        .wrap_protocol("localhost", Recorder::new(&client, b"in memory"))
        .expect("layer")
        .with_scheduler(Rc::clone(&clock));
    let s = acceptor
        .wrap_protocol(support::RecordingEcho(Rc::clone(&server)))
        .expect("layer")
        .with_scheduler(Rc::clone(&clock));
    let mut link = Loopback::new(c, s);
    link.pump();
    assert!(client.borrow().made && server.borrow().made);
    assert_eq!(client.borrow().data, b"in memory");
    assert_eq!(server.borrow().data, b"in memory");
}

#[test]
fn the_handshake_timeout_runs_on_the_clock() {
    let pki = Pki::new("memtimeout");
    let (acceptor, _) = pair(&pki);
    let clock = Rc::new(Clock::new());
    let server = seen();
    let s = acceptor
        .wrap_protocol(support::RecordingEcho(Rc::clone(&server)))
        .expect("layer")
        .with_scheduler(Rc::clone(&clock) as Rc<dyn Scheduler>);
    let mut link = Loopback::new(Sink, s);
    link.pump();
    clock.advance(Duration::from_millis(9_999));
    link.pump();
    assert!(link.is_open(), "not before ten seconds");
    clock.advance(Duration::from_millis(1));
    link.pump();
    assert!(!link.is_open(), "closed at ten seconds");
    assert!(matches!(link.lost_reason(1), Some(ConnectionLost::Aborted)));
    assert!(
        !server.borrow().made,
        "the protocol never saw the connection"
    );
}

/// Records flow notices.
struct Producer {
    events: Rc<RefCell<Vec<&'static str>>>,
}

impl Protocol for Producer {
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    fn pause_writing(&mut self, _: &Transport) {
        self.events.borrow_mut().push("pause");
    }
    fn resume_writing(&mut self, _: &Transport) {
        self.events.borrow_mut().push("resume");
    }
    fn connection_made(&mut self, _: &Transport) {
        self.events.borrow_mut().push("made");
    }
}

#[test]
fn plaintext_written_before_the_handshake_pauses_then_resumes() {
    let pki = Pki::new("memflow");
    let (acceptor, connector) = pair(&pki);
    let clock = Rc::new(Clock::new());
    let events = Rc::new(RefCell::new(Vec::new()));
    let c = connector
        .wrap_protocol(
            "localhost",
            Producer {
                events: Rc::clone(&events),
            },
        )
        .expect("layer")
        .with_scheduler(Rc::clone(&clock) as Rc<dyn Scheduler>);
    let tls = c.transport();
    let received = seen();
    let s = acceptor
        .wrap_protocol(Recorder::new(&received, b""))
        .expect("layer")
        .with_scheduler(Rc::clone(&clock) as Rc<dyn Scheduler>);
    let mut link = Loopback::new(c, s);
    // Before the handshake: the plaintext waits in the layer, counted against the marks.
    let chunk = vec![7u8; 50_000];
    tls.write(&chunk);
    assert!(!tls.is_writing_paused(), "50 kB is under the 64 KiB mark");
    tls.write(&chunk);
    assert!(
        tls.buffer_size() >= 100_000,
        "the plaintext waits, and the hello"
    );
    assert!(tls.is_writing_paused(), "100 kB is over it");
    link.pump();
    clock.advance(Duration::ZERO);
    assert_eq!(*events.borrow(), ["made", "pause", "resume"]);
    assert!(!tls.is_writing_paused());
    assert_eq!(received.borrow().data.len(), 100_000);
}
