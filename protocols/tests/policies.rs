//! Policies with `Clock` and `StringTransport`, and the connection limits over loopback.

mod common;

use common::{PATIENCE as LONG, listen, reactor};

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use torsion_protocols::policy::{
    ConnectionLimit, FactoryExt, LimitConnectionsByPeer, Policy, RateLimit, TimeoutPolicy,
};
use torsion_reactor::testing::StringTransport;
use torsion_reactor::{
    Address, Clock, ConnectionLost, Factory, Protocol, Reactor, Scheduler, Transport, factory_fn,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn peer() -> Address {
    Address::Other("peer".into())
}

type Log = Rc<RefCell<Vec<String>>>;

/// Logs its callbacks; can be told to write from outside through its kept transport.
struct Probe {
    log: Log,
    transport: Rc<RefCell<Option<Transport>>>,
    greeting: &'static [u8],
}

impl Probe {
    fn new(log: &Log) -> Probe {
        Probe {
            log: log.clone(),
            transport: Rc::default(),
            greeting: b"",
        }
    }
}

fn reason(r: &ConnectionLost) -> String {
    match r {
        ConnectionLost::Done => "done".into(),
        ConnectionLost::TimedOut => "timed out".into(),
        ConnectionLost::Aborted => "aborted".into(),
        ConnectionLost::Panicked(m) => format!("panicked: {m}"),
        other => format!("{other}"),
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, t: &Transport) {
        self.log.borrow_mut().push("made".into());
        *self.transport.borrow_mut() = Some(t.clone());
        if !self.greeting.is_empty() {
            t.write(self.greeting);
        }
    }
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        self.log
            .borrow_mut()
            .push(format!("data {}", String::from_utf8_lossy(data)));
    }
    fn connection_lost(&mut self, r: &ConnectionLost) {
        self.log.borrow_mut().push(format!("lost {}", reason(r)));
    }
    fn pause_writing(&mut self, _: &Transport) {
        self.log.borrow_mut().push("pause".into());
    }
    fn resume_writing(&mut self, _: &Transport) {
        self.log.borrow_mut().push("resume".into());
    }
    fn reading_resumed(&mut self, t: &Transport) {
        self.log
            .borrow_mut()
            .push(format!("reading resumed, reading: {}", t.is_reading()));
    }
}

fn taken(log: &Log) -> Vec<String> {
    std::mem::take(&mut *log.borrow_mut())
}

// --- timeouts -----------------------------------------------------------------------

#[test]
fn idle_connections_time_out_and_traffic_either_way_resets_the_clock() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let policy = TimeoutPolicy::new(Rc::new(clock.clone()), secs(10)).on_timeout(
        move |p: &mut Probe, t: &Transport| {
            f.set(f.get() + 1);
            p.log.borrow_mut().push("timeout".into());
            t.write(b"idle\r\n");
        },
    );
    let probe = Probe::new(&log);
    let kept = probe.transport.clone();
    let mut p = policy.wrap(&peer(), || Some(probe)).unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());

    clock.advance(secs(9));
    p.data_received(&t.transport(), b"x"); // reading resets
    clock.advance(secs(9));
    // Writing resets, also from outside a callback, through the kept transport.
    kept.borrow().as_ref().unwrap().try_write(b"hello").unwrap();
    clock.advance(secs(9));
    assert_eq!(fired.get(), 0);
    assert!(!t.lose_connection_called());
    clock.advance(secs(1));
    assert_eq!(fired.get(), 1);
    assert!(t.lose_connection_called());
    assert_eq!(
        t.written(),
        b"helloidle\r\n",
        "the handler wrote before the close"
    );
    p.connection_lost(&ConnectionLost::Done);
    assert_eq!(taken(&log), ["made", "data x", "timeout", "lost timed out"]);
    assert_eq!(clock.pending(), 0, "no timer left behind");
}

#[test]
fn a_timed_out_connection_that_does_not_close_is_aborted() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let policy = TimeoutPolicy::new(Rc::new(clock.clone()), secs(5)).with_abort_after(secs(2));
    let mut p = policy.wrap(&peer(), || Some(Probe::new(&log))).unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    clock.advance(secs(5));
    assert!(t.lose_connection_called());
    assert!(!t.aborted());
    clock.advance(secs(2));
    assert!(t.aborted());
    p.connection_lost(&ConnectionLost::Aborted);
    assert_eq!(taken(&log), ["made", "lost timed out"]);
}

#[test]
fn a_connection_lost_early_leaves_no_timer_and_keeps_its_reason() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let policy = TimeoutPolicy::new(Rc::new(clock.clone()), secs(5));
    let mut p = policy.wrap(&peer(), || Some(Probe::new(&log))).unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    p.connection_lost(&ConnectionLost::Done);
    assert_eq!(clock.pending(), 0);
    clock.advance(secs(100));
    assert!(!t.lose_connection_called());
    assert_eq!(taken(&log), ["made", "lost done"]);
}

#[test]
fn a_panicking_timeout_handler_aborts_only_that_connection() {
    let clock = Clock::new();
    let log: Log = Rc::default();
    let policy = TimeoutPolicy::new(Rc::new(clock.clone()), secs(1))
        .on_timeout(|_: &mut Probe, _: &Transport| panic!("handler boom"));
    let mut p = policy.wrap(&peer(), || Some(Probe::new(&log))).unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    clock.advance(secs(1));
    assert!(t.aborted());
    p.connection_lost(&ConnectionLost::Aborted);
    assert_eq!(taken(&log), ["made", "lost panicked: handler boom"]);
}

// --- every wrapper forwards reading_resumed -----------------------------------------

#[test]
fn every_wrapper_forwards_reading_resumed() {
    fn check<P: Protocol>(what: &str, wrap: impl FnOnce(Probe) -> P) {
        let log: Log = Rc::default();
        let mut p = wrap(Probe::new(&log));
        let t = StringTransport::new();
        p.connection_made(&t.transport());
        p.reading_resumed(&t.transport());
        assert_eq!(
            taken(&log),
            ["made", "reading resumed, reading: true"],
            "{what}"
        );
    }
    let clock = Clock::new();
    let scheduler: Rc<dyn Scheduler> = Rc::new(clock.clone());
    let timeout = TimeoutPolicy::new(scheduler.clone(), secs(10));
    check("Timeout", |probe| {
        timeout.wrap(&peer(), || Some(probe)).unwrap()
    });
    let limit = ConnectionLimit::refuse(1);
    check("Limited", |probe| {
        limit.wrap(&peer(), || Some(probe)).unwrap()
    });
    let per_peer = LimitConnectionsByPeer::new(1);
    check("PeerLimited", |probe| {
        per_peer.wrap(&peer(), || Some(probe)).unwrap()
    });
}

#[test]
fn a_held_connection_forwards_reading_resumed_only_once_started() {
    let clock = Clock::new();
    let limit = ConnectionLimit::hold(1, 1, Rc::new(clock.clone()));
    let (first, held): (Log, Log) = (Rc::default(), Rc::default());
    let mut a = limit.wrap(&peer(), || Some(Probe::new(&first))).unwrap();
    let mut b = limit.wrap(&peer(), || Some(Probe::new(&held))).unwrap();
    let (ta, tb) = (StringTransport::new(), StringTransport::new());
    a.connection_made(&ta.transport());
    b.connection_made(&tb.transport());
    b.reading_resumed(&tb.transport());
    assert!(held.borrow().is_empty(), "not started: nothing forwarded");
    a.connection_lost(&ConnectionLost::Done);
    clock.advance(Duration::ZERO);
    b.reading_resumed(&tb.transport());
    assert_eq!(taken(&held), ["made", "reading resumed, reading: true"]);
}

// --- connection limits --------------------------------------------------------------

#[test]
fn refuse_beyond_the_limit_without_asking_the_factory() {
    let limit = ConnectionLimit::refuse(2);
    let builds = Rc::new(Cell::new(0));
    let b = builds.clone();
    let factory = factory_fn(move |_| {
        b.set(b.get() + 1);
        Some(torsion_reactor::testing::Sink)
    })
    .with_policy(limit.clone());
    let mut first = factory.build_protocol(&peer()).unwrap();
    let _second = factory.build_protocol(&peer()).unwrap();
    assert!(factory.build_protocol(&peer()).is_none());
    assert_eq!(builds.get(), 2);
    let t = StringTransport::new();
    first.connection_made(&t.transport());
    first.connection_lost(&ConnectionLost::Done);
    assert_eq!(limit.active(), 1);
    assert!(factory.build_protocol(&peer()).is_some());
    assert_eq!(builds.get(), 3);
}

#[test]
fn hold_starts_waiting_connections_in_order_when_slots_free() {
    let clock = Clock::new();
    let limit = ConnectionLimit::hold(1, 2, Rc::new(clock.clone()));
    let logs: Vec<Log> = (0..4).map(|_| Log::default()).collect();
    let ts: Vec<StringTransport> = (0..4).map(|_| StringTransport::new()).collect();
    let mut ps: Vec<_> = logs
        .iter()
        .take(3)
        .map(|l| limit.wrap(&peer(), || Some(Probe::new(l))).unwrap())
        .collect();
    assert!(
        limit.wrap(&peer(), || Some(Probe::new(&logs[3]))).is_none(),
        "two waiting: the fourth is refused"
    );
    for (p, t) in ps.iter_mut().zip(&ts) {
        p.connection_made(&t.transport());
    }
    assert_eq!(taken(&logs[0]), ["made"]);
    assert!(logs[1].borrow().is_empty() && logs[2].borrow().is_empty());
    assert!(ts[1].reading_paused() && ts[2].reading_paused());
    assert!(ps[1].is_held());
    // Bytes that reach a held connection anyway wait with it.
    ps[1].data_received(&ts[1].transport(), b"early");

    ps[0].connection_lost(&ConnectionLost::Done);
    assert!(
        logs[1].borrow().is_empty(),
        "started from the loop, not now"
    );
    clock.advance(Duration::ZERO);
    assert_eq!(taken(&logs[1]), ["made", "data early"]);
    assert!(!ts[1].reading_paused());
    assert!(ts[2].reading_paused());
    assert_eq!((limit.active(), limit.waiting()), (1, 1));

    // The third leaves while held: its protocol never hears of the connection.
    ps[2].connection_lost(&ConnectionLost::Done);
    assert_eq!(limit.waiting(), 0);
    ps[1].connection_lost(&ConnectionLost::Done);
    clock.advance(Duration::ZERO);
    assert!(logs[2].borrow().is_empty());
    assert_eq!(taken(&logs[1]), ["lost done"]);
    assert_eq!((limit.active(), limit.waiting()), (0, 0));
}

// --- rate limits --------------------------------------------------------------------

/// Writes `n` bytes when made; records flow control.
struct Writer {
    n: usize,
    log: Log,
    transport: Rc<RefCell<Option<Transport>>>,
}

impl Protocol for Writer {
    fn connection_made(&mut self, t: &Transport) {
        *self.transport.borrow_mut() = Some(t.clone());
        let data: Vec<u8> = (0..self.n).map(|i| (i % 251) as u8).collect();
        t.try_write(&data).unwrap();
    }
    fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    fn pause_writing(&mut self, _: &Transport) {
        self.log.borrow_mut().push("pause".into());
    }
    fn resume_writing(&mut self, _: &Transport) {
        self.log.borrow_mut().push("resume".into());
    }
    fn connection_lost(&mut self, r: &ConnectionLost) {
        self.log.borrow_mut().push(format!("lost {}", reason(r)));
    }
}

#[test]
fn writes_are_released_at_the_rate_in_order_with_flow_control() {
    let clock = Clock::new();
    let limit = RateLimit::new(Rc::new(clock.clone())).write_limit(10_000);
    let log: Log = Rc::default();
    let kept = Rc::new(RefCell::new(None));
    let n = 100_000;
    let mut p = limit
        .wrap(&peer(), || {
            Some(Writer {
                n,
                log: log.clone(),
                transport: kept.clone(),
            })
        })
        .unwrap();
    let t = StringTransport::new();
    t.transport().set_write_buffer_limits(64 * 1024, 16 * 1024);
    p.connection_made(&t.transport());
    assert_eq!(t.written().len(), 10_000, "one second's worth at once");
    let wrapped = kept.borrow().clone().unwrap();
    assert_eq!(
        wrapped.buffer_size(),
        90_000,
        "held bytes count as buffered"
    );
    clock.advance(Duration::ZERO);
    assert_eq!(
        taken(&log),
        ["pause"],
        "90,000 held is over the 64 KiB mark"
    );
    let mut last = 10_000;
    for second in 1..=9 {
        clock.advance(secs(1));
        let now = t.written().len();
        assert!(
            (9_000..=11_000).contains(&(now - last)),
            "second {second}: {} bytes",
            now - last
        );
        last = now;
    }
    assert_eq!(t.written().len(), n);
    let expected: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    assert_eq!(t.written(), expected, "in order, nothing lost or repeated");
    assert_eq!(taken(&log), ["resume"]);
    assert_eq!(clock.pending(), 0);
}

#[test]
fn lose_connection_waits_for_held_bytes_and_abort_drops_them() {
    let clock = Clock::new();
    let limit = RateLimit::new(Rc::new(clock.clone())).write_limit(1000);
    let log: Log = Rc::default();
    let kept = Rc::new(RefCell::new(None));
    let mut p = limit
        .wrap(&peer(), || {
            Some(Writer {
                n: 2500,
                log: log.clone(),
                transport: kept.clone(),
            })
        })
        .unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    let wrapped = kept.borrow().clone().unwrap();
    wrapped.lose_connection();
    assert!(wrapped.is_closing());
    assert!(wrapped.try_write(b"more").is_err());
    assert!(!t.lose_connection_called());
    assert!(t.reading_paused(), "reading stops at once");
    clock.advance(secs(1));
    assert!(!t.lose_connection_called());
    clock.advance(secs(1));
    assert_eq!(t.written().len(), 2500);
    assert!(t.lose_connection_called());

    let kept = Rc::new(RefCell::new(None));
    let mut p = limit
        .wrap(&peer(), || {
            Some(Writer {
                n: 2500,
                log: log.clone(),
                transport: kept.clone(),
            })
        })
        .unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    kept.borrow().as_ref().unwrap().abort_connection();
    assert!(t.aborted());
    clock.advance(secs(5));
    assert_eq!(t.written().len(), 1000);
}

/// Pauses its own reading on `pause`, resumes on `resume`.
struct Reader {
    log: Log,
}

impl Protocol for Reader {
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.log.borrow_mut().push(format!("{} bytes", data.len()));
        if data == b"pause" {
            t.pause_reading();
        } else if data == b"resume" {
            t.resume_reading();
        }
    }
}

#[test]
fn reading_pauses_while_over_budget_and_respects_the_protocols_own_pause() {
    let clock = Clock::new();
    let limit = RateLimit::new(Rc::new(clock.clone())).read_limit(100);
    let log: Log = Rc::default();
    let mut p = limit
        .wrap(&peer(), || Some(Reader { log: log.clone() }))
        .unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    p.data_received(&t.transport(), &[b'a'; 100]);
    assert!(!t.reading_paused(), "within the first second's budget");
    p.data_received(&t.transport(), &[b'a'; 200]);
    assert!(t.reading_paused(), "200 over budget");
    clock.advance(Duration::from_millis(1999));
    assert!(t.reading_paused());
    clock.advance(Duration::from_millis(1));
    assert!(!t.reading_paused(), "two seconds pay 200 bytes back");

    // The protocol pauses itself; the limit's resume does not undo that.
    p.data_received(&t.transport(), b"pause");
    assert!(t.reading_paused());
    clock.advance(secs(10));
    assert!(t.reading_paused());
    p.data_received(&t.transport(), b"resume");
    assert!(!t.reading_paused());
    assert_eq!(log.borrow().len(), 4);
}

#[test]
fn the_rate_limits_wrapper_reports_is_reading_and_reading_resumed_as_its_protocol_sees_them() {
    let clock = Clock::new();
    let limit = RateLimit::new(Rc::new(clock.clone())).read_limit(100);
    let log: Log = Rc::default();
    let probe = Probe::new(&log);
    let kept = probe.transport.clone();
    let mut p = limit.wrap(&peer(), || Some(probe)).unwrap();
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    let wrapped = kept.borrow().clone().unwrap();
    // Over budget: the limit pauses the real transport, not the protocol's reading.
    p.data_received(&t.transport(), &[b'a'; 300]);
    assert!(t.reading_paused());
    assert!(
        wrapped.is_reading(),
        "the limit's pause is the wrapper's business"
    );
    // The reactor's call when the limit lifts is not forwarded.
    clock.advance(secs(3));
    assert!(!t.reading_paused());
    p.reading_resumed(&t.transport());
    // The protocol's own pause and resume: reported, and `reading_resumed` follows on
    // the next turn, even while the limit still holds reading back.
    wrapped.pause_reading();
    assert!(!wrapped.is_reading());
    p.data_received(&t.transport(), &[b'a'; 300]);
    wrapped.resume_reading();
    assert!(wrapped.is_reading());
    assert!(t.reading_paused(), "the read limit still holds");
    let data = format!("data {}", "a".repeat(300));
    assert_eq!(taken(&log), ["made", data.as_str(), data.as_str()]);
    clock.advance(Duration::ZERO);
    assert_eq!(taken(&log), ["reading resumed, reading: true"]);
    clock.advance(secs(10));
    assert!(taken(&log).is_empty(), "the limit's resume is not reported");
    // End of file: not reading any more.
    assert!(!p.eof_received(&t.transport()));
    assert!(!wrapped.is_reading());
}

#[test]
fn held_bytes_count_toward_the_high_mark_at_once() {
    let clock = Clock::new();
    let limit = RateLimit::new(Rc::new(clock.clone())).write_limit(1000);
    let log: Log = Rc::default();
    let kept = Rc::new(RefCell::new(None));
    let mut p = limit
        .wrap(&peer(), || {
            Some(Writer {
                n: 1500,
                log: log.clone(),
                transport: kept.clone(),
            })
        })
        .unwrap();
    let t = StringTransport::new();
    t.transport().set_write_buffer_limits(400, 100);
    p.connection_made(&t.transport());
    let wrapped = kept.borrow().clone().unwrap();
    // 1000 went out, 500 are held: over the 400 mark, synchronously.
    assert_eq!(wrapped.buffer_size(), 500);
    assert!(wrapped.is_writing_paused());
    assert!(taken(&log).is_empty(), "told from the loop, not now");
    clock.advance(Duration::ZERO);
    assert_eq!(taken(&log), ["pause"]);
    // Released over the next half second: back to the low mark, resumed.
    clock.advance(Duration::from_millis(350));
    assert!(wrapped.is_writing_paused(), "still 150 held");
    clock.advance(Duration::from_millis(200));
    assert!(!wrapped.is_writing_paused());
    assert_eq!(taken(&log), ["resume"]);
    assert_eq!(t.written().len(), 1500);
}

#[test]
fn a_throttling_factory_composes_both_limits() {
    let clock = Clock::new();
    let scheduler: Rc<dyn Scheduler> = Rc::new(clock.clone());
    let limit = ConnectionLimit::refuse(1);
    let factory: torsion_protocols::policy::ThrottlingFactory<_> =
        torsion_protocols::policy::ThrottlingFactory::new(
            factory_fn(|_| {
                Some(Writer {
                    n: 3000,
                    log: Log::default(),
                    transport: Rc::default(),
                })
            }),
            (RateLimit::new(scheduler).write_limit(1000), limit.clone()),
        );
    let mut p = factory.build_protocol(&peer()).unwrap();
    assert!(factory.build_protocol(&peer()).is_none(), "over the limit");
    let t = StringTransport::new();
    p.connection_made(&t.transport());
    assert_eq!(t.written().len(), 1000);
    clock.advance(secs(2));
    assert_eq!(t.written().len(), 3000);
    p.connection_lost(&ConnectionLost::Done);
    assert_eq!(limit.active(), 0);
}

// --- per peer -----------------------------------------------------------------------

#[test]
fn peers_are_counted_by_ip_address() {
    let limit = LimitConnectionsByPeer::new(1);
    let sink = || Some(torsion_reactor::testing::Sink);
    let a1 = Address::Tcp("192.0.2.1:1000".parse().unwrap());
    let a2 = Address::Tcp("192.0.2.1:2000".parse().unwrap());
    let mapped = Address::Tcp("[::ffff:192.0.2.1]:3000".parse().unwrap());
    let b = Address::Tcp("[2001:db8::1]:1000".parse().unwrap());
    let mut first = limit.wrap(&a1, sink).unwrap();
    assert!(limit.wrap(&a2, sink).is_none(), "same IP, other port");
    assert!(
        limit.wrap(&mapped, sink).is_none(),
        "same IPv4 through IPv6"
    );
    let _other = limit.wrap(&b, sink).unwrap();
    let unix = Address::Unix(None);
    let _u1 = limit.wrap(&unix, sink).unwrap();
    let _u2 = limit.wrap(&unix, sink).unwrap();
    assert_eq!(limit.connections_from("192.0.2.1".parse().unwrap()), 1);
    first.connection_lost(&ConnectionLost::Done);
    assert_eq!(limit.connections_from("192.0.2.1".parse().unwrap()), 0);
    assert!(limit.wrap(&a2, sink).is_some());
}

// --- over loopback ------------------------------------------------------------------

/// A non-blocking client; `poll` reads what is there.
struct Client {
    s: TcpStream,
    got: Vec<u8>,
    closed: bool,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        Client::from(TcpStream::connect(addr).unwrap())
    }

    fn from(s: TcpStream) -> Client {
        s.set_nonblocking(true).unwrap();
        Client {
            s,
            got: Vec::new(),
            closed: false,
        }
    }

    fn poll(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }
}

/// Greets, then echoes.
struct Greeter;

impl Protocol for Greeter {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"hi ");
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        t.write(data);
    }
}

fn wait(r: &Reactor, clients: &mut [&mut Client], mut done: impl FnMut(&[&mut Client]) -> bool) {
    r.run_until(LONG, || {
        for c in clients.iter_mut() {
            c.poll();
        }
        done(clients)
    })
    .unwrap();
}

#[test]
fn connection_limits_over_loopback() {
    let r = reactor();
    let limit = ConnectionLimit::refuse(2);
    let (port, addr) = listen(&r, factory_fn(|_| Greeter).with_policy(limit.clone()));
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    wait(&r, &mut [&mut a, &mut b], |c| {
        c.iter().all(|c| c.got == b"hi ")
    });
    let mut refused = Client::connect(addr);
    wait(&r, &mut [&mut refused], |c| c[0].closed);
    assert!(refused.got.is_empty(), "refused before any byte");
    drop(a);
    wait(&r, &mut [], |_| limit.active() == 1);
    let mut c = Client::connect(addr);
    wait(&r, &mut [&mut c], |c| c[0].got == b"hi ");
    port.stop_listening();
}

#[test]
fn held_connections_over_loopback() {
    let r = reactor();
    let scheduler: Rc<dyn Scheduler> = Rc::new(r.clone());
    let limit = ConnectionLimit::hold(1, 1, scheduler);
    let (port, addr) = listen(&r, factory_fn(|_| Greeter).with_policy(limit.clone()));
    let mut a = Client::connect(addr);
    wait(&r, &mut [&mut a], |c| c[0].got == b"hi ");
    let mut held = Client::connect(addr);
    held.s.write_all(b"queued").unwrap();
    wait(&r, &mut [&mut held], |_| limit.waiting() == 1);
    let mut refused = Client::connect(addr);
    wait(&r, &mut [&mut refused, &mut held], |c| c[0].closed);
    assert!(held.got.is_empty(), "no greeting while held");
    a.s.write_all(b"x").unwrap();
    wait(&r, &mut [&mut a], |c| c[0].got == b"hi x");
    drop(a);
    wait(&r, &mut [&mut held], |c| c[0].got == b"hi queued");
    assert_eq!((limit.active(), limit.waiting()), (1, 0));
    port.stop_listening();
}

#[test]
fn per_peer_limit_over_loopback() {
    let r = reactor();
    let limit = LimitConnectionsByPeer::new(2);
    let (port, addr) = listen(&r, factory_fn(|_| Greeter).with_policy(limit.clone()));
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    wait(&r, &mut [&mut a, &mut b], |c| {
        c.iter().all(|c| c.got == b"hi ")
    });
    let mut third = Client::connect(addr);
    wait(&r, &mut [&mut third], |c| c[0].closed);
    assert!(third.got.is_empty());
    // Another loopback address is another peer.
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    other.connect(&addr.into()).unwrap();
    let mut other = Client::from(other.into());
    wait(&r, &mut [&mut other], |c| c[0].got == b"hi ");
    assert_eq!(limit.connections_from("127.0.0.1".parse().unwrap()), 2);
    assert_eq!(limit.connections_from("127.0.0.2".parse().unwrap()), 1);
    drop(b);
    wait(&r, &mut [], |_| {
        limit.connections_from("127.0.0.1".parse().unwrap()) == 1
    });
    port.stop_listening();
}
