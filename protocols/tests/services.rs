//! The classic services with `StringTransport` and `Clock`, and their flow control over
//! loopback: chargen stops producing when the peer does not read, echo stops reading.

mod common;

use common::{PATIENCE as LONG, listen, reactor};

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use torsion_protocols::services::{
    CHARGEN_CHUNK, Chargen, Daytime, Discard, Echo, Qotd, Time, chargen_line,
};
use torsion_reactor::testing::StringTransport;
use torsion_reactor::{
    Clock, ConnectionLost, DEFAULT_HIGH_WATER, Protocol, Scheduler, Transport, factory_fn,
};

#[test]
fn echo_pauses_reading_while_its_peer_does_not_read() {
    let t = StringTransport::new();
    let mut p = Echo::new();
    p.connection_made(&t.transport());
    p.data_received(&t.transport(), b"abc");
    p.data_received(&t.transport(), b"");
    p.data_received(&t.transport(), b"d");
    assert_eq!(t.written(), b"abcd");
    p.pause_writing(&t.transport());
    assert!(t.reading_paused());
    p.resume_writing(&t.transport());
    assert!(!t.reading_paused());
    assert!(!p.eof_received(&t.transport()), "closes after a half-close");
}

#[test]
fn discard_sends_nothing() {
    let t = StringTransport::new();
    let mut p = Discard::new();
    p.connection_made(&t.transport());
    p.data_received(&t.transport(), &[0; 10_000]);
    assert!(t.written().is_empty());
    assert!(!t.lose_connection_called());
}

#[test]
fn daytime_time_and_qotd_send_then_close() {
    let at = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let t = StringTransport::new();
    Daytime::at(at).connection_made(&t.transport());
    assert_eq!(t.written(), b"Sunday, September 9, 2001 01:46:40-UTC\r\n");
    assert!(t.lose_connection_called());

    let t = StringTransport::new();
    Time::at(at).connection_made(&t.transport());
    assert_eq!(
        t.written(),
        (1_000_000_000u32 + 2_208_988_800).to_be_bytes()
    );
    assert!(t.lose_connection_called());
    let t = StringTransport::new();
    Time::at(UNIX_EPOCH).connection_made(&t.transport());
    assert_eq!(
        t.written(),
        [0x83, 0xaa, 0x7e, 0x80],
        "RFC 868: 2,208,988,800 for 1970"
    );

    let t = StringTransport::new();
    Qotd::default().connection_made(&t.transport());
    assert_eq!(t.written(), b"An apple a day keeps the doctor away.\r\n");
    assert!(t.lose_connection_called());
    let t = StringTransport::new();
    Qotd::new("Two lines.\r\nSecond.\r\n").connection_made(&t.transport());
    assert_eq!(t.written(), b"Two lines.\r\nSecond.\r\n");
}

#[test]
fn chargen_produces_one_chunk_per_turn_and_stops_when_closing() {
    let clock = Clock::new();
    let turn = Duration::from_millis(1);
    let t = StringTransport::new();
    let mut p = Chargen::with_interval(Rc::new(clock.clone()), turn);
    p.connection_made(&t.transport());
    assert!(
        t.written().is_empty(),
        "nothing on the stack of connection_made"
    );
    for n in 1..=3 {
        clock.advance(turn);
        assert_eq!(t.written().len(), n * CHARGEN_CHUNK);
    }
    let all = t.written();
    for (n, line) in all.chunks(74).enumerate() {
        assert_eq!(line, chargen_line(n));
    }
    p.data_received(&t.transport(), b"ignored");
    t.transport().lose_connection();
    clock.advance(turn * 10);
    assert_eq!(t.written().len(), 3 * CHARGEN_CHUNK);
    p.connection_lost(&ConnectionLost::Done);
    assert_eq!(clock.pending(), 0);
}

/// Wraps a protocol, keeping its transport and counting `pause_writing` calls.
struct Watch<P> {
    inner: P,
    transport: Rc<RefCell<Option<Transport>>>,
    pauses: Rc<Cell<u32>>,
}

impl<P: Protocol> Protocol for Watch<P> {
    fn connection_made(&mut self, t: &Transport) {
        *self.transport.borrow_mut() = Some(t.clone());
        self.inner.connection_made(t);
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.inner.data_received(t, data);
    }
    fn eof_received(&mut self, t: &Transport) -> bool {
        self.inner.eof_received(t)
    }
    fn connection_lost(&mut self, r: &ConnectionLost) {
        self.inner.connection_lost(r);
    }
    fn pause_writing(&mut self, t: &Transport) {
        self.pauses.set(self.pauses.get() + 1);
        self.inner.pause_writing(t);
    }
    fn resume_writing(&mut self, t: &Transport) {
        self.inner.resume_writing(t);
    }
}

/// A client with a small receive buffer, so the kernel cannot absorb the stream.
fn small_client(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let c: TcpStream = sock.into();
    c.set_read_timeout(Some(LONG)).unwrap();
    c
}

#[test]
fn chargen_stops_producing_while_the_peer_does_not_read() {
    let r = reactor();
    let scheduler: Rc<dyn Scheduler> = Rc::new(r.clone());
    let transport = Rc::new(RefCell::new(None));
    let pauses = Rc::new(Cell::new(0));
    let (kept, counted) = (transport.clone(), pauses.clone());
    let (port, addr) = listen(
        &r,
        factory_fn(move |_| {
            Some(Watch {
                inner: Chargen::new(Rc::clone(&scheduler)),
                transport: kept.clone(),
                pauses: counted.clone(),
            })
        }),
    );
    let client = small_client(addr);
    r.run_until(LONG, || pauses.get() > 0)
        .expect("chargen was never paused");
    let server_side = transport.borrow().clone().unwrap();
    // Many more turns of the loop: the buffer stays at the mark plus one chunk.
    let mut most = 0;
    for _ in 0..300 {
        r.iterate(Duration::from_millis(1)).unwrap();
        most = most.max(server_side.buffer_size());
    }
    assert!(
        most <= DEFAULT_HIGH_WATER + CHARGEN_CHUNK,
        "{most} bytes buffered for a peer that does not read"
    );

    // Now the peer reads: the stream goes on where it stopped, line after line.
    let done = Arc::new(AtomicBool::new(false));
    let lines_read = Arc::new(AtomicUsize::new(0));
    let (flag, count) = (done.clone(), lines_read.clone());
    let reader = std::thread::spawn(move || {
        let mut c = client;
        let mut buf = vec![0u8; 74];
        for n in 0..40_000 {
            c.read_exact(&mut buf).unwrap();
            assert_eq!(buf, chargen_line(n), "line {n}");
            count.store(n + 1, Ordering::SeqCst);
        }
        flag.store(true, Ordering::SeqCst);
    });
    r.run_until(LONG, || done.load(Ordering::SeqCst)).unwrap();
    reader.join().unwrap();
    assert_eq!(lines_read.load(Ordering::SeqCst), 40_000);
    assert!(pauses.get() >= 1);
    server_side.abort_connection();
    port.stop_listening();
}

#[test]
fn echo_stops_reading_a_peer_that_does_not_read_its_echoes() {
    let r = reactor();
    let transport = Rc::new(RefCell::new(None));
    let pauses = Rc::new(Cell::new(0));
    let (kept, counted) = (transport.clone(), pauses.clone());
    let (port, addr) = listen(
        &r,
        factory_fn(move |_| {
            Some(Watch {
                inner: Echo::new(),
                transport: kept.clone(),
                pauses: counted.clone(),
            })
        }),
    );
    let client = small_client(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let mut w = client.try_clone().unwrap();
    // Blocking writes that give up now and then to look at the stop flag.
    w.set_write_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = [b'e'; 16 * 1024];
        let mut sent = 0usize;
        while !flag.load(Ordering::SeqCst) {
            match w.write(&chunk) {
                Ok(n) => sent += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{e}"),
            }
        }
        sent
    });
    r.run_until(LONG, || pauses.get() > 0)
        .expect("echo was never paused");
    let server_side = transport.borrow().clone().unwrap();
    let mut most = 0;
    for _ in 0..300 {
        r.iterate(Duration::from_millis(1)).unwrap();
        most = most.max(server_side.buffer_size());
    }
    stop.store(true, Ordering::SeqCst);
    let sent = writer.join().unwrap();
    assert!(
        // The mark plus the echo of the one read that crossed it: after that, nothing is
        // read until the protocol has heard `pause_writing`.
        most <= DEFAULT_HIGH_WATER + 64 * 1024,
        "{most} bytes buffered (the client sent {sent})"
    );
    server_side.abort_connection();
    port.stop_listening();
}

#[test]
fn services_over_loopback() {
    let r = reactor();
    let (port, addr) = listen(&r, factory_fn(|_| Qotd::new("Hello.")));
    let got = Arc::new(std::sync::Mutex::new(None));
    let slot = got.clone();
    std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(LONG)).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let _ = c.write_all(b"late");
        *slot.lock().unwrap() = Some(out);
    });
    r.run_until(LONG, || got.lock().unwrap().is_some()).unwrap();
    assert_eq!(got.lock().unwrap().as_deref(), Some(&b"Hello.\r\n"[..]));
    port.stop_listening();
}
