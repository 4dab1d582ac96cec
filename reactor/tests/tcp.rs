//! TCP behaviours over real loopback sockets: lifecycle, no re-entry, flow control, close
//! and shutdown semantics, panics, leaks, stale handles, many clients.

mod common;

use common::{PATIENCE as LONG, listen, reactor, run};

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use torsion_reactor::{
    Address, ClientFactory, ConnectionLost, Connector, ErrorKind, Factory, Protocol, Reactor,
    SharedFactory, TcpConnectOptions, TcpListenOptions, Transport, factory_fn,
};

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Made,
    Data(Vec<u8>),
    Eof,
    Lost(String),
    Pause,
    Resume,
}

type Log = Rc<RefCell<Vec<Ev>>>;

fn lost_kind(reason: &ConnectionLost) -> String {
    match reason {
        ConnectionLost::Done => "done".into(),
        ConnectionLost::Reset(_) => "reset".into(),
        ConnectionLost::Aborted => "aborted".into(),
        ConnectionLost::TimedOut => "timedout".into(),
        ConnectionLost::Refused(_) => "refused".into(),
        ConnectionLost::Cancelled => "cancelled".into(),
        ConnectionLost::Panicked(m) => format!("panicked:{m}"),
        _ => "other".into(),
    }
}

type OnMade = Box<dyn FnMut(&Transport)>;
type OnData = Box<dyn FnMut(&Transport, &[u8])>;

/// Records every callback and fails the test if any callback starts while another one of
/// the same protocol is running (re-entry).
struct Recorder {
    log: Log,
    busy: Rc<Cell<bool>>,
    on_made: Option<OnMade>,
    on_data: Option<OnData>,
}

impl Recorder {
    fn new(log: &Log) -> Recorder {
        Recorder {
            log: log.clone(),
            busy: Rc::new(Cell::new(false)),
            on_made: None,
            on_data: None,
        }
    }
    fn enter(&self) -> Busy {
        assert!(!self.busy.replace(true), "protocol re-entered");
        Busy(self.busy.clone())
    }
}

/// Marks the protocol busy until dropped (also when a callback panics).
struct Busy(Rc<Cell<bool>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Protocol for Recorder {
    fn connection_made(&mut self, t: &Transport) {
        let _busy = self.enter();
        self.log.borrow_mut().push(Ev::Made);
        if let Some(f) = self.on_made.as_mut() {
            f(t);
        }
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        let _busy = self.enter();
        self.log.borrow_mut().push(Ev::Data(data.to_vec()));
        if let Some(f) = self.on_data.as_mut() {
            f(t, data);
        }
    }
    fn eof_received(&mut self, _t: &Transport) -> bool {
        let _busy = self.enter();
        self.log.borrow_mut().push(Ev::Eof);
        false
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let _busy = self.enter();
        self.log.borrow_mut().push(Ev::Lost(lost_kind(reason)));
    }
    fn pause_writing(&mut self, _t: &Transport) {
        let _busy = self.enter();
        self.log.borrow_mut().push(Ev::Pause);
    }
    fn resume_writing(&mut self, _t: &Transport) {
        let _busy = self.enter();
        self.log.borrow_mut().push(Ev::Resume);
    }
}

fn count_lost(log: &Log) -> usize {
    log.borrow()
        .iter()
        .filter(|e| matches!(e, Ev::Lost(_)))
        .count()
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(LONG)).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn lose_connection_inside_data_received_flushes_then_reports_done_once() {
    let r = reactor();
    let log: Log = Rc::default();
    let l = log.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let mut p = Recorder::new(&l);
            p.on_data = Some(Box::new(|t, d| {
                t.try_write(b"bye:").unwrap();
                t.try_write(d).unwrap();
                t.lose_connection();
                t.lose_connection(); // twice is harmless
                assert!(t.is_closing());
                assert!(matches!(
                    t.try_write(b"x").unwrap_err().kind(),
                    ErrorKind::ConnectionClosed
                ));
            }));
            Some(p)
        }),
    );
    let mut client = TcpStream::connect(addr).unwrap();
    // One byte, so that it arrives in one read even under fault injection (a close with
    // unread bytes would send a reset).
    client.write_all(b"!").unwrap();
    let reader = std::thread::spawn(move || read_all(client));
    r.run_until(LONG, || count_lost(&log) == 1).unwrap();
    assert_eq!(reader.join().unwrap(), b"bye:!");
    // One more turn: nothing else may arrive.
    r.iterate(Duration::from_millis(20)).unwrap();
    let log = log.borrow();
    assert_eq!(log[0], Ev::Made);
    assert_eq!(log.last().unwrap(), &Ev::Lost("done".into()));
    assert_eq!(log.iter().filter(|e| matches!(e, Ev::Lost(_))).count(), 1);
}

#[test]
fn closing_from_connection_made_a_timer_and_another_connection() {
    let r = reactor();
    let logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let first: Rc<RefCell<Option<Transport>>> = Rc::default();
    let (ls, f) = (logs.clone(), first.clone());
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let log: Log = Rc::default();
            ls.borrow_mut().push(log.clone());
            let n = ls.borrow().len();
            let mut p = Recorder::new(&log);
            let f = f.clone();
            p.on_made = Some(Box::new(move |t: &Transport| match n {
                // 1: abort right away, from connection_made.
                1 => t.abort_connection(),
                // 2: close from a timer.
                2 => {
                    let t = t.clone();
                    Reactor::current()
                        .call_later(Duration::from_millis(5), move || t.lose_connection());
                }
                // 3: kept open, closed later by connection 4.
                3 => *f.borrow_mut() = Some(t.clone()),
                // 4: closes connection 3 from its own callback, then itself.
                _ => {
                    if let Some(other) = f.borrow_mut().take() {
                        other.lose_connection();
                    }
                    t.lose_connection();
                }
            }));
            Some(p)
        }),
    );
    let clients: Vec<TcpStream> = (0..4)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            // Accept in order, one at a time.
            let before = logs.borrow().len();
            r.run_until(LONG, || logs.borrow().len() == before + 1)
                .unwrap();
            c
        })
        .collect();
    r.run_until(LONG, || logs.borrow().iter().all(|l| count_lost(l) == 1))
        .unwrap();
    r.iterate(Duration::from_millis(20)).unwrap();
    let logs = logs.borrow();
    let reasons: Vec<String> = logs
        .iter()
        .map(|l| match l.borrow().last() {
            Some(Ev::Lost(k)) => k.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reasons, ["aborted", "done", "done", "done"]);
    for l in logs.iter() {
        assert_eq!(count_lost(l), 1);
        assert_eq!(l.borrow()[0], Ev::Made);
    }
    drop(clients);
    assert_eq!(r.open_connections(), 0);
}

#[test]
fn write_over_the_high_mark_defers_pause_writing_and_resume_follows() {
    let r = reactor();
    let log: Log = Rc::default();
    let l = log.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let mut p = Recorder::new(&l);
            p.on_made = Some(Box::new(|t: &Transport| {
                t.set_write_buffer_limits(64 * 1024, 16 * 1024);
                // Far more than the socket takes at once: crosses the high mark inside this
                // callback; pause_writing must come later, from the loop (the Recorder asserts).
                t.try_write(&vec![7u8; 8 * 1024 * 1024]).unwrap();
                assert!(t.buffer_size() > 64 * 1024);
            }));
            Some(p)
        }),
    );
    let client = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || log.borrow().contains(&Ev::Pause))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut c = client;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0;
        while total < 8 * 1024 * 1024 {
            let n = c.read(&mut buf).unwrap();
            assert!(buf[..n].iter().all(|&b| b == 7));
            total += n;
        }
        total
    });
    r.run_until(LONG, || log.borrow().contains(&Ev::Resume))
        .unwrap();
    r.run_until(LONG, || reader.is_finished()).unwrap();
    assert_eq!(reader.join().unwrap(), 8 * 1024 * 1024);
    let log = log.borrow();
    let p = log.iter().position(|e| *e == Ev::Pause).unwrap();
    let q = log.iter().position(|e| *e == Ev::Resume).unwrap();
    assert!(p < q);
}

/// Streams `total` bytes one chunk per loop turn while not paused; records the largest
/// buffer it ever saw and tells the reader (through `pauses`) each time it was paused.
struct Producer {
    total: usize,
    sent: Rc<Cell<usize>>,
    paused: Rc<Cell<bool>>,
    max_buffer: Rc<Cell<usize>>,
    pauses: Arc<AtomicUsize>,
}

const CHUNK: usize = 256 * 1024;

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

fn produce(
    t: Transport,
    sent: Rc<Cell<usize>>,
    total: usize,
    paused: Rc<Cell<bool>>,
    max: Rc<Cell<usize>>,
) {
    if paused.get() || t.is_closing() {
        return;
    }
    let n = CHUNK.min(total - sent.get());
    t.try_write(&pattern(sent.get(), n)).unwrap();
    sent.set(sent.get() + n);
    max.set(max.get().max(t.buffer_size()));
    if sent.get() == total {
        t.lose_connection(); // flushes everything, then FIN
    } else {
        Reactor::current().call_soon(move || produce(t, sent, total, paused, max));
    }
}

impl Producer {
    fn go(&self, t: &Transport) {
        produce(
            t.clone(),
            self.sent.clone(),
            self.total,
            self.paused.clone(),
            self.max_buffer.clone(),
        );
    }
}

impl Protocol for Producer {
    fn connection_made(&mut self, t: &Transport) {
        self.go(t);
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    fn pause_writing(&mut self, _t: &Transport) {
        self.pauses.fetch_add(1, Ordering::SeqCst);
        self.paused.set(true);
    }
    fn resume_writing(&mut self, t: &Transport) {
        self.paused.set(false);
        self.go(t);
    }
}

#[test]
fn sixty_four_mib_to_a_slow_reader_arrives_whole_in_order_with_bounded_buffer() {
    const TOTAL: usize = 64 * 1024 * 1024;
    const STALL_EVERY: usize = 8 * 1024 * 1024;
    let r = reactor();
    let max = Rc::new(Cell::new(0));
    let pauses = Arc::new(AtomicUsize::new(0));
    let (m, ps) = (max.clone(), pauses.clone());
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            Some(Producer {
                total: TOTAL,
                sent: Rc::default(),
                paused: Rc::default(),
                max_buffer: m.clone(),
                pauses: ps.clone(),
            })
        }),
    );
    // A small receive buffer, so the kernel cannot absorb the whole stream (loopback
    // autotuning would otherwise take tens of MiB).
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    sock.connect(&addr.into()).unwrap();
    let client: TcpStream = sock.into();
    let seen_pauses = pauses.clone();
    let reader = std::thread::spawn(move || {
        let mut c = client;
        c.set_read_timeout(Some(LONG)).unwrap();
        let mut buf = [0u8; 64 * 1024];
        let mut total = 0usize;
        let mut stalls = 0;
        loop {
            // A slow reader: every 8 MiB it stops reading until the server has had to
            // pause (its socket buffers full), so pause/resume happen several times.
            if total < TOTAL && total / STALL_EVERY > stalls {
                stalls += 1;
                let deadline = std::time::Instant::now() + LONG;
                while seen_pauses.load(Ordering::SeqCst) < stalls {
                    assert!(std::time::Instant::now() < deadline, "no pause_writing");
                    std::thread::yield_now();
                }
            }
            let n = c.read(&mut buf).unwrap();
            if n == 0 {
                return total;
            }
            assert_eq!(
                &buf[..n],
                &pattern(total, n)[..],
                "bytes out of order at {total}"
            );
            total += n;
        }
    });
    r.run_until(Duration::from_secs(120), || reader.is_finished())
        .unwrap();
    assert_eq!(reader.join().unwrap(), TOTAL, "every byte, then FIN");
    assert!(
        pauses.load(Ordering::SeqCst) >= 7,
        "pause_writing at each stall"
    );
    // Bounded by the high mark plus the chunk the producer wrote before hearing "pause".
    assert!(
        max.get() <= 64 * 1024 + CHUNK,
        "buffer reached {}",
        max.get()
    );
}

#[test]
fn half_close_delivers_eof_and_the_protocol_can_still_answer() {
    struct Answer(Vec<u8>);
    impl Protocol for Answer {
        fn data_received(&mut self, _: &Transport, d: &[u8]) {
            self.0.extend_from_slice(d);
        }
        fn eof_received(&mut self, t: &Transport) -> bool {
            let reply = format!("got {} bytes", self.0.len());
            t.try_write(reply.as_bytes()).unwrap();
            t.lose_connection();
            true
        }
    }
    let r = reactor();
    let (_port, addr) = listen(&r, factory_fn(|_| Answer(Vec::new())));
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"12345").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let reader = std::thread::spawn(move || read_all(client));
    r.run_until(LONG, || reader.is_finished()).unwrap();
    assert_eq!(reader.join().unwrap(), b"got 5 bytes");
}

#[test]
fn lose_write_connection_half_closes_and_keeps_reading() {
    let r = reactor();
    let log: Log = Rc::default();
    let l = log.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let mut p = Recorder::new(&l);
            p.on_made = Some(Box::new(|t: &Transport| {
                t.try_write(b"server done").unwrap();
                t.lose_write_connection().unwrap();
                assert!(t.try_write(b"more").is_err());
            }));
            Some(p)
        }),
    );
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(LONG)).unwrap();
    let mut got = Vec::new();
    let reader = std::thread::spawn(move || {
        client.read_to_end(&mut got).unwrap(); // EOF from the half-close
        client.write_all(b"still heard").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        got
    });
    r.run_until(LONG, || count_lost(&log) == 1).unwrap();
    assert_eq!(reader.join().unwrap(), b"server done");
    // In one read or several (TCP keeps no message boundaries).
    assert_eq!(received(&log), b"still heard");
    let log = log.borrow();
    assert!(log.contains(&Ev::Eof));
    assert_eq!(log.last().unwrap(), &Ev::Lost("done".into()));
}

#[test]
fn a_panic_in_data_received_aborts_only_that_connection() {
    let r = reactor();
    r.set_fail_on_caught(false); // the panic is the point here
    let logs: Rc<RefCell<Vec<Log>>> = Rc::default();
    let ls = logs.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let log: Log = Rc::default();
            ls.borrow_mut().push(log.clone());
            let mut p = Recorder::new(&log);
            p.on_data = Some(Box::new(|t, d| {
                if d == b"boom" {
                    panic!("bad input");
                }
                t.try_write(d).unwrap();
            }));
            Some(p)
        }),
    );
    let mut good = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || logs.borrow().len() == 1).unwrap();
    let mut bad = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || logs.borrow().len() == 2).unwrap();
    bad.write_all(b"boom").unwrap();
    let bad_log = logs.borrow()[1].clone();
    r.run_until(LONG, || count_lost(&bad_log) == 1).unwrap();
    assert_eq!(
        bad_log.borrow().last().unwrap(),
        &Ev::Lost("panicked:bad input".into())
    );
    bad.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 8];
    assert!(
        matches!(bad.read(&mut buf), Ok(0) | Err(_)),
        "the bad one was closed"
    );
    good.write_all(b"fine").unwrap();
    good.set_read_timeout(Some(LONG)).unwrap();
    let mut reading = good.try_clone().unwrap(); // `good` stays open in this thread
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4];
        reading.read_exact(&mut buf).unwrap();
        buf
    });
    r.run_until(LONG, || reader.is_finished()).unwrap();
    assert_eq!(&reader.join().unwrap(), b"fine");
    assert_eq!(
        count_lost(&logs.borrow()[0]),
        0,
        "{:?}",
        logs.borrow()[0].borrow()
    );
}

#[test]
fn stale_transports_refuse_writes_and_never_reach_a_new_connection() {
    let r = reactor();
    let seen: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let s = seen.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let s = s.clone();
            let log: Log = Rc::default();
            let mut p = Recorder::new(&log);
            p.on_made = Some(Box::new(move |t: &Transport| {
                s.borrow_mut().push(t.clone())
            }));
            Some(p)
        }),
    );
    let first = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || seen.borrow().len() == 1).unwrap();
    drop(first);
    r.run_until(LONG, || r.open_connections() == 0).unwrap();
    let stale = seen.borrow()[0].clone();
    let mut second = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || seen.borrow().len() == 2).unwrap();
    let err = stale.try_write(b"for the old peer").unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::ConnectionClosed));
    stale.lose_connection();
    stale.abort_connection();
    assert!(stale.is_closing());
    assert!(!stale.same_connection(&seen.borrow()[1]));
    seen.borrow()[1].try_write(b"new").unwrap();
    second.set_read_timeout(Some(LONG)).unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 3];
        second.read_exact(&mut buf).unwrap();
        buf
    });
    r.run_until(LONG, || reader.is_finished()).unwrap();
    assert_eq!(&reader.join().unwrap(), b"new");
}

#[test]
fn factory_can_refuse_and_start_stop_are_called_once() {
    struct Picky {
        starts: Cell<u32>,
        stops: Cell<u32>,
        built: Cell<u32>,
    }
    impl Factory for Picky {
        type Protocol = torsion_reactor::testing::Sink;
        fn build_protocol(&self, peer: &Address) -> Option<Self::Protocol> {
            assert!(peer.socket_addr().unwrap().ip().is_loopback());
            self.built.set(self.built.get() + 1);
            None
        }
        fn start_factory(&self) {
            self.starts.set(self.starts.get() + 1);
        }
        fn stop_factory(&self) {
            self.stops.set(self.stops.get() + 1);
        }
    }
    let r = reactor();
    let f = SharedFactory::new(Picky {
        starts: Cell::new(0),
        stops: Cell::new(0),
        built: Cell::new(0),
    });
    let (p1, addr) = listen(&r, f.clone());
    let (p2, _) = listen(&r, f.clone());
    assert_eq!(f.starts.get(), 0, "user code never runs inside listen");
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(
        f.starts.get(),
        1,
        "started once, from the loop, for both ports"
    );
    let mut c = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || f.built.get() == 1).unwrap();
    c.set_read_timeout(Some(LONG)).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "refused: closed at once");
    p1.stop_listening();
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(f.stops.get(), 0, "one port still uses it");
    p2.stop_listening();
    p2.stop_listening();
    assert_eq!(
        f.stops.get(),
        0,
        "user code never runs inside stop_listening"
    );
    r.iterate(Duration::ZERO).unwrap();
    assert_eq!(f.stops.get(), 1);
    assert!(!p1.is_listening());
}

#[test]
fn listening_on_a_port_in_use_names_the_address() {
    let r = reactor();
    let (_port, addr) = listen(&r, factory_fn(|_| torsion_reactor::testing::Sink));
    let err = r
        .listen_tcp(addr, factory_fn(|_| torsion_reactor::testing::Sink))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on {addr}: address already in use")
    );
}

struct Client {
    log: Log,
    failed: Rc<RefCell<Vec<String>>>,
    lost: Rc<Cell<u32>>,
    message: Vec<u8>,
}

impl Factory for Client {
    type Protocol = Recorder;
    fn build_protocol(&self, _: &Address) -> Option<Recorder> {
        let mut p = Recorder::new(&self.log);
        let msg = self.message.clone();
        p.on_made = Some(Box::new(move |t: &Transport| t.try_write(&msg).unwrap()));
        Some(p)
    }
}

impl ClientFactory for Client {
    fn client_connection_failed(&self, _c: &Connector, reason: &ConnectionLost) {
        self.failed.borrow_mut().push(lost_kind(reason));
    }
    fn client_connection_lost(&self, _c: &Connector, _reason: &ConnectionLost) {
        self.lost.set(self.lost.get() + 1);
    }
}

#[test]
fn connect_refused_is_reported_to_the_factory() {
    let r = reactor();
    // A port that was just free: bind, note it, close.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let failed: Rc<RefCell<Vec<String>>> = Rc::default();
    let c = r.connect_tcp(
        addr,
        Client {
            log: Rc::default(),
            failed: failed.clone(),
            lost: Rc::default(),
            message: vec![],
        },
    );
    r.run_until(LONG, || !failed.borrow().is_empty()).unwrap();
    assert_eq!(*failed.borrow(), ["refused"]);
    assert_eq!(c.state(), torsion_reactor::ConnectorState::Disconnected);
    assert_eq!(r.registered_sources(), 0);
}

#[test]
fn a_thousand_clients_echo_correctly() {
    // Needs ~2,000 descriptors in this process.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let r = reactor();
    struct Echo;
    impl Protocol for Echo {
        fn data_received(&mut self, t: &Transport, d: &[u8]) {
            t.write(d);
        }
    }
    let (_port, addr) = listen(&r, factory_fn(|_| Echo));
    let logs: Vec<Log> = (0..1000).map(|_| Rc::default()).collect();
    let lost = Rc::new(Cell::new(0));
    let mut connectors = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        connectors.push(r.connect_tcp(
            addr,
            Client {
                log: log.clone(),
                failed: Rc::default(),
                lost: lost.clone(),
                message: format!("client {i} says hello").into_bytes(),
            },
        ));
    }
    r.run_until(Duration::from_secs(120), || {
        logs.iter()
            .enumerate()
            .all(|(i, l)| received(l).len() == format!("client {i} says hello").len())
    })
    .unwrap();
    for (i, l) in logs.iter().enumerate() {
        assert_eq!(received(l), format!("client {i} says hello").into_bytes());
    }
    for c in &connectors {
        c.disconnect();
    }
    r.run_until(LONG, || lost.get() == 1000 && r.open_connections() == 0)
        .unwrap();
}

#[test]
fn backoff_grows_caps_spreads_and_gives_up() {
    use torsion_reactor::Backoff;
    let mut b = Backoff::default()
        .with_initial(Duration::from_millis(100))
        .with_factor(3.0)
        .with_max(Duration::from_secs(1))
        .with_jitter(0.0)
        .with_max_retries(Some(4));
    let delays: Vec<Option<Duration>> = (0..5).map(|_| b.next_delay()).collect();
    assert_eq!(
        delays,
        [
            Some(Duration::from_millis(100)),
            Some(Duration::from_millis(300)),
            Some(Duration::from_millis(900)),
            Some(Duration::from_secs(1)),
            None
        ]
    );
    let mut j = Backoff::default().with_jitter(0.5);
    let first: Vec<Duration> = (0..50)
        .map(|_| {
            let d = j.next_delay().unwrap();
            j.reset();
            d
        })
        .collect();
    assert!(
        first
            .iter()
            .all(|d| *d >= Duration::from_millis(500) && *d <= Duration::from_millis(1500))
    );
    assert!(
        first.windows(2).any(|w| w[0] != w[1]),
        "jitter spreads delays"
    );
}

#[test]
fn reconnecting_factory_retries_until_the_server_appears_and_resets_its_backoff() {
    use torsion_reactor::{Backoff, Reconnecting};
    let r = reactor();
    // Reserve a port, then free it: the first attempts are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let failed: Rc<RefCell<Vec<String>>> = Rc::default();
    let log: Log = Rc::default();
    let lost = Rc::new(Cell::new(0));
    let factory = SharedFactory::new(Reconnecting::new(
        Client {
            log: log.clone(),
            failed: failed.clone(),
            lost: lost.clone(),
            message: b"again".to_vec(),
        },
        Backoff::default()
            .with_initial(Duration::from_millis(5))
            .with_max(Duration::from_millis(20))
            .with_jitter(0.0),
    ));
    let _connector = r.connect_tcp(addr, factory.clone());
    r.run_until(LONG, || failed.borrow().len() >= 3).unwrap();
    assert!(factory.retries() >= 3);
    // Now the server appears: the next retry connects and the backoff resets.
    let accepted: Rc<RefCell<Vec<Transport>>> = Rc::default();
    let acc = accepted.clone();
    let port = r
        .listen_tcp_with(
            addr,
            factory_fn(move |_| {
                let log: Log = Rc::default();
                let mut p = Recorder::new(&log);
                let acc = acc.clone();
                p.on_made = Some(Box::new(move |t: &Transport| {
                    acc.borrow_mut().push(t.clone())
                }));
                Some(p)
            }),
            &TcpListenOptions::default(),
        )
        .unwrap();
    r.run_until(LONG, || accepted.borrow().len() == 1).unwrap();
    assert_eq!(
        factory.retries(),
        0,
        "reset on connect, without being asked"
    );
    // The server drops the connection: the client reconnects by itself.
    accepted.borrow()[0].lose_connection();
    r.run_until(LONG, || accepted.borrow().len() == 2).unwrap();
    assert_eq!(lost.get(), 1);
    factory.stop_trying();
    accepted.borrow()[1].lose_connection();
    r.run_until(LONG, || lost.get() == 2).unwrap();
    r.iterate(Duration::from_millis(50)).unwrap();
    assert_eq!(accepted.borrow().len(), 2, "no reconnect after stop_trying");
    port.stop_listening();
}

/// A server whose connections pause reading as soon as they are made: its log, the last
/// connection's transport once made, the port and its address.
fn listen_paused(
    r: &Reactor,
) -> (
    Log,
    Rc<RefCell<Option<Transport>>>,
    torsion_reactor::ListeningPort,
    SocketAddr,
) {
    let log: Log = Rc::default();
    let paused: Rc<RefCell<Option<Transport>>> = Rc::default();
    let (l, p) = (log.clone(), paused.clone());
    let (port, addr) = listen(
        r,
        factory_fn(move |_| {
            let mut rec = Recorder::new(&l);
            let p = p.clone();
            rec.on_made = Some(Box::new(move |t: &Transport| {
                t.pause_reading();
                *p.borrow_mut() = Some(t.clone());
            }));
            Some(rec)
        }),
    );
    (log, paused, port, addr)
}

/// Resets `c` (SO_LINGER 0) with bytes the server never read still in its socket.
fn reset_with_unread_bytes(c: TcpStream) {
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    (&c).write_all(b"unread").unwrap();
    drop(c);
}

#[test]
fn a_paused_connection_whose_peer_resets_is_lost_without_spinning_the_loop() {
    let r = reactor();
    let (log, paused, _port, addr) = listen_paused(&r);
    let c = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || paused.borrow().is_some()).unwrap();
    // The reset comes while the connection wants nothing from the poller: epoll's edge
    // registration, kept with an empty interest, hears it once; a level-triggered
    // registration (the portable poller) is out of the poller while paused.
    reset_with_unread_bytes(c);
    let mut turns = 0;
    let start = std::time::Instant::now();
    if cfg!(feature = "portable-poller") {
        let _ = r.run_until(Duration::from_millis(300), || {
            turns += 1;
            false
        });
        // Resuming notices the reset.
        paused.borrow().as_ref().unwrap().resume_reading();
    }
    r.run_until(LONG, || {
        turns += 1;
        count_lost(&log) == 1
    })
    .expect("the paused connection is lost when its peer resets");
    let per_second = turns as f64 / start.elapsed().as_secs_f64();
    assert!(
        per_second < 1000.0 || turns < 20,
        "{turns} loop turns in {:?}: the hang-up woke the loop again and again",
        start.elapsed()
    );
    assert_eq!(log.borrow().last(), Some(&Ev::Lost("reset".into())));
    if !cfg!(feature = "portable-poller") {
        // (After a resume, the kernel hands over what it held before the reset.)
        assert!(
            !log.borrow().iter().any(|e| matches!(e, Ev::Data(_))),
            "nothing is delivered to a paused protocol"
        );
    }
    assert_eq!(r.open_connections(), 0);
}

#[test]
#[cfg(not(feature = "portable-poller"))]
fn a_half_closed_connection_waiting_to_answer_is_lost_when_its_peer_resets() {
    /// Keeps the connection after the peer's end of file (to answer later), and records.
    struct KeepsWriting(Log);

    impl Protocol for KeepsWriting {
        fn data_received(&mut self, _t: &Transport, data: &[u8]) {
            self.0.borrow_mut().push(Ev::Data(data.to_vec()));
        }
        fn eof_received(&mut self, _t: &Transport) -> bool {
            self.0.borrow_mut().push(Ev::Eof);
            true
        }
        fn connection_lost(&mut self, reason: &ConnectionLost) {
            self.0.borrow_mut().push(Ev::Lost(lost_kind(reason)));
        }
    }

    let r = reactor();
    let log: Log = Rc::default();
    let l = log.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| Some(KeepsWriting(l.clone()))));
    let c = TcpStream::connect(addr).unwrap();
    (&c).write_all(b"question").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    r.run_until(LONG, || log.borrow().contains(&Ev::Eof))
        .expect("the end of file");
    // Nothing to read and nothing to write: the connection wants nothing from the poller.
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    r.run_until(LONG, || count_lost(&log) == 1)
        .expect("the waiting connection is lost when its peer resets");
    assert_eq!(log.borrow().last(), Some(&Ev::Lost("reset".into())));
    assert_eq!(received(&log), b"question");
}

/// Every byte the log says arrived, in order (reads may split them).
fn received(log: &Log) -> Vec<u8> {
    log.borrow()
        .iter()
        .filter_map(|e| match e {
            Ev::Data(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn a_paused_connection_whose_peer_only_closes_keeps_what_it_sent_for_the_resume() {
    let r = reactor();
    let (log, paused, _port, addr) = listen_paused(&r);
    let mut c = TcpStream::connect(addr).unwrap();
    r.run_until(LONG, || paused.borrow().is_some()).unwrap();
    c.write_all(b"kept").unwrap();
    drop(c); // an orderly close: not a failure
    // Until the protocol resumes, nothing happens to it (no event wakes it: it wants
    // nothing, and a clean close is not a hang-up of both directions).
    for _ in 0..20 {
        r.iterate(Duration::from_millis(5)).unwrap();
    }
    assert_eq!(log.borrow().as_slice(), &[Ev::Made]);
    paused.borrow().as_ref().unwrap().resume_reading();
    r.run_until(LONG, || count_lost(&log) == 1)
        .expect("after the resume, the bytes and the end");
    assert_eq!(received(&log), b"kept");
    assert_eq!(log.borrow().last(), Some(&Ev::Lost("done".into())));
}

#[test]
fn stop_flushes_every_connection_before_run_returns() {
    let r = reactor();
    const SIZE: usize = 8 * 1024 * 1024;
    let lost: Log = Rc::default();
    let l = lost.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let mut p = Recorder::new(&l);
            p.on_made = Some(Box::new(|t: &Transport| {
                t.try_write(&pattern(0, SIZE)).unwrap();
                // More than the socket takes at once is buffered; stop() must not lose it.
                Reactor::current().stop().unwrap();
            }));
            Some(p)
        }),
    );
    let client = TcpStream::connect(addr).unwrap();
    let reader = std::thread::spawn(move || read_all(client));
    run(&r);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), SIZE, "every byte before the close");
    assert!(got == pattern(0, SIZE));
    assert_eq!(lost.borrow().last().unwrap(), &Ev::Lost("done".into()));
    assert_eq!(r.open_connections(), 0);
}

#[test]
fn stop_aborts_connections_that_cannot_flush_within_the_grace_period() {
    let r = reactor();
    r.set_shutdown_grace(Duration::from_millis(200));
    let lost: Log = Rc::default();
    let l = lost.clone();
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| {
            let mut p = Recorder::new(&l);
            p.on_made = Some(Box::new(|t: &Transport| {
                t.try_write(&vec![0u8; 64 * 1024 * 1024]).unwrap();
                Reactor::current().stop().unwrap();
            }));
            Some(p)
        }),
    );
    // A peer that never reads, with a small receive buffer.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let t0 = std::time::Instant::now();
    run(&r);
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert_eq!(lost.borrow().last().unwrap(), &Ev::Lost("aborted".into()));
    assert_eq!(r.open_connections(), 0);
    r.set_shutdown_grace(torsion_reactor::DEFAULT_SHUTDOWN_GRACE);
}

#[test]
fn a_connect_that_hangs_times_out() {
    let r = reactor();
    // A listener with a full accept queue: the kernel drops further SYNs, so a connect
    // neither succeeds nor fails until our timeout.
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    let failed: Rc<RefCell<Vec<String>>> = Rc::default();
    let _c = r.connect_tcp_with(
        addr,
        Client {
            log: Rc::default(),
            failed: failed.clone(),
            lost: Rc::default(),
            message: vec![],
        },
        &TcpConnectOptions {
            timeout: Some(Duration::from_millis(300)),
            bind_addr: None,
        },
    );
    r.run_until(LONG, || !failed.borrow().is_empty()).unwrap();
    assert_eq!(*failed.borrow(), ["timedout"]);
    drop(fillers);
}

#[test]
fn vectored_writes_keep_their_order_across_partial_sends() {
    let r = reactor();
    const PARTS: usize = 2000;
    let (_port, addr) = listen(
        &r,
        factory_fn(|_| {
            let log: Log = Rc::default();
            let mut p = Recorder::new(&log);
            p.on_made = Some(Box::new(|t: &Transport| {
                // Parts of many sizes, far more than the socket takes at once.
                let mut offset = 0;
                for i in 0..PARTS {
                    let a = pattern(offset, i % 700);
                    let b = pattern(offset + a.len(), 1 + i % 3000);
                    t.try_write_vectored(&[&a, &b]).unwrap();
                    offset += a.len() + b.len();
                }
                t.lose_connection();
            }));
            Some(p)
        }),
    );
    let client = TcpStream::connect(addr).unwrap();
    let reader = std::thread::spawn(move || read_all(client));
    r.run_until(LONG, || reader.is_finished()).unwrap();
    let got = reader.join().unwrap();
    let expected: usize = (0..PARTS).map(|i| i % 700 + 1 + i % 3000).sum();
    assert_eq!(got.len(), expected);
    assert!(got == pattern(0, expected));
}
