//! The rules under a hostile kernel (the `fault-injection` feature): system calls fail on a
//! script or at random (resets, broken pipes, out of descriptors, a poller out of memory,
//! spurious and stale events), and still every `connection_made` gets exactly one
//! `connection_lost`, no protocol is re-entered or hears anything after its loss, the bytes
//! a peer receives are a prefix of what was written (never reordered or corrupted),
//! listeners go on accepting, and nothing leaks: connections, registrations, timers.
//!
//! Run with `cargo test -p torsion-reactor --features fault-injection --test faults`; the
//! seed of the random tests comes from `TORSION_FAULT_SEED` (default 1) and is printed
//! when a test fails.
#![cfg(feature = "fault-injection")]

mod common;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use common::{PATIENCE, listen, reactor};
use torsion_reactor::testing::faults::{self, Fault, Op, Profile, Step};
use torsion_reactor::{
    CaughtKind, ClientFactory, ConnectionLost, Connector, Factory, ListeningPort, Protocol,
    Reactor, TcpConnectOptions, Transport, factory_fn,
};

fn seed() -> u64 {
    std::env::var("TORSION_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1)
}

/// What every instrumented protocol reports, with each rule checked as it happens.
#[derive(Default)]
struct Counts {
    made: Cell<usize>,
    lost: Cell<usize>,
    violations: RefCell<Vec<String>>,
}

impl Counts {
    fn violation(&self, what: String) {
        self.violations.borrow_mut().push(what);
    }

    /// Runs `r` until every connection is closed and its loss delivered, then checks.
    fn settle(&self, r: &Reactor, seed: u64) {
        r.run_until(PATIENCE, || {
            r.open_connections() == 0 && self.lost.get() >= self.made.get()
        })
        .unwrap_or_else(|e| panic!("seed {seed}: every connection closes and hears it: {e}"));
        self.assert_clean(seed);
    }

    fn assert_clean(&self, seed: u64) {
        let v = self.violations.borrow();
        assert!(v.is_empty(), "seed {seed}: rules broken: {v:?}");
        assert_eq!(
            self.made.get(),
            self.lost.get(),
            "seed {seed}: every connection_made gets one connection_lost"
        );
    }
}

/// Echoes (pausing its reading while its peer does not read), and checks the protocol's
/// rules on every callback.
struct Probe {
    counts: Rc<Counts>,
    made: bool,
    lost: bool,
    busy: bool,
}

impl Probe {
    fn new(counts: &Rc<Counts>) -> Probe {
        Probe {
            counts: counts.clone(),
            made: false,
            lost: false,
            busy: false,
        }
    }

    fn enter(&mut self, what: &str) {
        if self.busy {
            self.counts.violation(format!("{what}: re-entered"));
        }
        if !self.made && what != "connection_made" {
            self.counts
                .violation(format!("{what} before connection_made"));
        }
        if self.lost {
            self.counts
                .violation(format!("{what} after connection_lost"));
        }
        self.busy = true;
    }
}

impl Protocol for Probe {
    fn connection_made(&mut self, _t: &Transport) {
        self.enter("connection_made");
        if self.made {
            self.counts.violation("connection_made twice".into());
        }
        self.made = true;
        self.counts.made.set(self.counts.made.get() + 1);
        self.busy = false;
    }
    fn data_received(&mut self, t: &Transport, data: &[u8]) {
        self.enter("data_received");
        t.write(data);
        self.busy = false;
    }
    fn eof_received(&mut self, _t: &Transport) -> bool {
        self.enter("eof_received");
        self.busy = false;
        false
    }
    fn pause_writing(&mut self, t: &Transport) {
        self.enter("pause_writing");
        t.pause_reading();
        self.busy = false;
    }
    fn resume_writing(&mut self, t: &Transport) {
        self.enter("resume_writing");
        t.resume_reading();
        self.busy = false;
    }
    fn connection_lost(&mut self, _reason: &ConnectionLost) {
        self.enter("connection_lost");
        self.lost = true;
        self.counts.lost.set(self.counts.lost.get() + 1);
        self.busy = false;
    }
}

/// A deterministic byte pattern, so a peer can check what it got is a prefix of it.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One blocking client on its own thread: sends `len` pattern bytes in pieces and reads
/// the echo; returns what came back (which must be a prefix of what was sent).
fn client(addr: SocketAddr, seed: u64, len: usize) -> std::thread::JoinHandle<(Vec<u8>, Vec<u8>)> {
    std::thread::spawn(move || {
        let sent = pattern(seed, len);
        let mut got = Vec::new();
        let Ok(mut c) = TcpStream::connect(addr) else {
            return (sent, got);
        };
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 4096];
        for piece in sent.chunks(1 + (seed as usize % 3000)) {
            if c.write_all(piece).is_err() {
                break;
            }
            // Read what is there, then go on (the server echoes as it reads).
            c.set_nonblocking(true).unwrap();
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            c.set_nonblocking(false).unwrap();
        }
        let _ = c.shutdown(std::net::Shutdown::Write);
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        (sent, got)
    })
}

/// A reactor with only the scripted faults (not those `TORSION_FAULT_SEED` turns on),
/// serving `Probe` echoes on a loopback port that is already listening.
fn probed_echo_server() -> (Reactor, ListeningPort, SocketAddr, Rc<Counts>) {
    faults::reset();
    let r = reactor();
    let counts: Rc<Counts> = Rc::default();
    let c = counts.clone();
    let (port, addr) = listen(&r, factory_fn(move |_| Probe::new(&c)));
    r.iterate(Duration::ZERO).unwrap();
    (r, port, addr, counts)
}

/// Runs `n` clients of `len` bytes each against `addr` until all are done (`what` says why
/// they should be), and checks that every one got its whole echo.
fn serve_whole_echoes(r: &Reactor, addr: SocketAddr, n: u64, len: usize, what: &str) {
    let clients: Vec<_> = (0..n).map(|i| client(addr, i, len)).collect();
    r.run_until(PATIENCE, || clients.iter().all(|c| c.is_finished()))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    for c in clients {
        let (sent, got) = c.join().expect("the client thread");
        assert_eq!(sent, got, "a whole echo");
    }
}

/// Errors the reactor reports instead of panicking (an accepted socket the poller would
/// not take) are expected under hostile faults; a panic never is.
fn collect_caught(r: &Reactor) -> Rc<RefCell<Vec<String>>> {
    r.set_fail_on_caught(false);
    let panics: Rc<RefCell<Vec<String>>> = Rc::default();
    let p = panics.clone();
    r.set_error_handler(move |caught| {
        if !matches!(caught.kind(), CaughtKind::IoError | CaughtKind::Accept) {
            p.borrow_mut().push(caught.to_string());
        }
    });
    panics
}

#[test]
fn echo_under_hostile_faults_keeps_every_rule_and_leaks_nothing() {
    let seed = seed();
    let r = reactor();
    let panics = collect_caught(&r);
    let counts: Rc<Counts> = Rc::default();
    let c = counts.clone();
    let (port, addr) = listen(&r, factory_fn(move |_| Probe::new(&c)));
    r.iterate(Duration::ZERO).unwrap();
    let sources = r.registered_sources();
    let timers = r.pending_timers();

    faults::random(Profile::Hostile, seed, 10);
    let clients: Vec<_> = (0..24)
        .map(|i| {
            client(
                addr,
                seed.wrapping_mul(31).wrapping_add(i),
                1 + (i as usize * 7919) % 200_000,
            )
        })
        .collect();
    r.run_until(PATIENCE, || clients.iter().all(|c| c.is_finished()))
        .unwrap_or_else(|e| panic!("seed {seed}: the clients finish: {e}"));
    counts.settle(&r, seed);
    faults::stop_random();

    let mut whole = 0;
    for c in clients {
        let (sent, got) = c.join().unwrap();
        assert!(
            sent.starts_with(&got),
            "seed {seed}: the echo is a prefix of what was sent ({} of {} bytes; first \
             difference at {:?})",
            got.len(),
            sent.len(),
            sent.iter().zip(&got).position(|(a, b)| a != b)
        );
        whole += usize::from(got.len() == sent.len());
    }
    let injected = faults::injected();
    assert!(injected.total() > 0, "seed {seed}: faults were injected");
    // The listener may be backing off (EMFILE): let its timer run out.
    r.run_until(PATIENCE, || r.pending_timers() <= timers)
        .unwrap_or_else(|e| panic!("seed {seed}: timers return to their baseline: {e}"));
    counts.assert_clean(seed);
    assert!(
        panics.borrow().is_empty(),
        "seed {seed}: {:?}",
        panics.borrow()
    );
    assert_eq!(r.open_connections(), 0);
    assert_eq!(
        r.registered_sources(),
        sources,
        "seed {seed}: no registration leaked"
    );
    eprintln!(
        "seed {seed}: {} connections, {whole} of 24 echoes whole, {} faults injected",
        counts.made.get(),
        injected.total()
    );
    port.stop_listening();
}

#[test]
fn a_full_descriptor_table_pauses_accepting_then_every_client_is_served() {
    let (r, _port, addr, counts) = probed_echo_server();
    faults::script(
        Op::Accept,
        [
            Step::Fail(Fault::Errno(libc::EMFILE)),
            Step::Fail(Fault::Errno(libc::ENFILE)),
            Step::Fail(Fault::Errno(libc::ENOBUFS)),
        ],
    );
    serve_whole_echoes(
        &r,
        addr,
        5,
        1000,
        "every client is served once the table has room again",
    );
    assert_eq!(faults::injected().of(Op::Accept), 3);
    counts.settle(&r, 0);
}

#[test]
fn failed_accepts_reach_the_error_handler_with_their_errno() {
    faults::reset(); // only the scripted faults (not those TORSION_FAULT_SEED turns on)
    let r = reactor();
    let seen: Rc<RefCell<Vec<torsion_reactor::Caught>>> = Rc::default();
    let s = seen.clone();
    r.set_error_handler(move |caught| s.borrow_mut().push(caught.clone()));
    let counts: Rc<Counts> = Rc::default();
    let c = counts.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| Probe::new(&c)));
    r.iterate(Duration::ZERO).unwrap();
    faults::script(
        Op::Accept,
        [
            Step::Fail(Fault::Errno(libc::ECONNABORTED)),
            Step::Fail(Fault::Errno(libc::ENOMEM)),
            Step::Fail(Fault::Errno(libc::EMFILE)),
        ],
    );
    serve_whole_echoes(
        &r,
        addr,
        3,
        100,
        "every client is served after the failed accepts",
    );
    counts.settle(&r, 0);
    let seen = seen.borrow();
    let errnos: Vec<_> = seen
        .iter()
        .map(|c| (c.kind(), c.os_error().and_then(|e| e.1)))
        .collect();
    // ECONNABORTED: each one reported; ENOMEM pauses accepting (reported), and the EMFILE
    // right after the pause is not reported again (at most one report a minute).
    assert_eq!(
        errnos,
        [
            (CaughtKind::Accept, Some(libc::ECONNABORTED)),
            (CaughtKind::Accept, Some(libc::ENOMEM)),
        ],
        "{seen:?}"
    );
    assert!(seen[0].context().contains(&addr.to_string()), "{seen:?}");
    assert_eq!(r.stats().accept_errors, 3);
    assert_eq!(r.stats().accepted, 3);
}

#[test]
fn resets_and_broken_pipes_mid_stream_end_each_connection_once() {
    faults::reset(); // only the scripted faults (not those TORSION_FAULT_SEED turns on)
    let r = reactor();
    let counts: Rc<Counts> = Rc::default();
    let lost: Rc<RefCell<Vec<String>>> = Rc::default();
    struct Tell(Probe, Rc<RefCell<Vec<String>>>);
    impl Protocol for Tell {
        fn connection_made(&mut self, t: &Transport) {
            self.0.connection_made(t)
        }
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            self.0.data_received(t, data)
        }
        fn connection_lost(&mut self, reason: &ConnectionLost) {
            self.1.borrow_mut().push(reason.to_string());
            self.0.connection_lost(reason)
        }
    }
    let (c, l) = (counts.clone(), lost.clone());
    let (_port, addr) = listen(&r, factory_fn(move |_| Tell(Probe::new(&c), l.clone())));
    // The first client's second read is reset; the second client's first write is a
    // broken pipe, the third's a reset.
    faults::script(
        Op::Read,
        [Step::Pass, Step::Fail(Fault::Errno(libc::ECONNRESET))],
    );
    let first = client(addr, 1, 100_000);
    r.run_until(PATIENCE, || first.is_finished()).unwrap();
    faults::script(Op::Write, [Step::Fail(Fault::Errno(libc::EPIPE))]);
    let second = client(addr, 2, 50_000);
    r.run_until(PATIENCE, || second.is_finished()).unwrap();
    faults::script(Op::Write, [Step::Fail(Fault::Errno(libc::ECONNRESET))]);
    let third = client(addr, 3, 50_000);
    r.run_until(PATIENCE, || third.is_finished()).unwrap();
    counts.settle(&r, 0);
    for c in [first, second, third] {
        let (sent, got) = c.join().unwrap();
        assert!(sent.starts_with(&got) && got.len() < sent.len());
    }
    counts.assert_clean(0);
    let lost = lost.borrow();
    assert_eq!(lost.len(), 3);
    assert!(
        lost.iter()
            .all(|l| l.contains("reset") || l.contains("roken pipe")),
        "each names its cause: {lost:?}"
    );
}

#[test]
fn a_poller_out_of_memory_fails_that_connection_and_the_loop_goes_on() {
    faults::reset(); // only the scripted faults (not those TORSION_FAULT_SEED turns on)
    let r = reactor();
    let counts: Rc<Counts> = Rc::default();
    let lost: Rc<RefCell<Vec<String>>> = Rc::default();
    /// The first connection pauses its reading on its first bytes and resumes it from a
    /// timer: the resume asks the poller to watch the socket again, and that is what fails.
    struct Pauser(Probe, Rc<RefCell<Vec<String>>>, Rc<Cell<bool>>);
    impl Protocol for Pauser {
        fn connection_made(&mut self, t: &Transport) {
            self.0.connection_made(t)
        }
        fn data_received(&mut self, t: &Transport, data: &[u8]) {
            self.0.data_received(t, data);
            if !self.2.replace(false) {
                return;
            }
            t.pause_reading();
            let t = t.clone();
            Reactor::current().call_later(Duration::from_millis(20), move || {
                faults::script(Op::Register, [Step::Fail(Fault::Errno(libc::ENOMEM))]);
                t.resume_reading();
            });
        }
        fn connection_lost(&mut self, reason: &ConnectionLost) {
            self.1.borrow_mut().push(reason.to_string());
            self.0.connection_lost(reason)
        }
    }
    let (c, l, armed) = (counts.clone(), lost.clone(), Rc::new(Cell::new(true)));
    let (_port, addr) = listen(
        &r,
        factory_fn(move |_| Pauser(Probe::new(&c), l.clone(), armed.clone())),
    );
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(b"hello").unwrap();
    r.run_until(PATIENCE, || !lost.borrow().is_empty())
        .expect("the connection the poller cannot watch is closed, not left hanging");
    assert!(
        lost.borrow()[0].contains("memory"),
        "the cause is named: {:?}",
        lost.borrow()
    );
    counts.assert_clean(0);
    // The loop and the listener go on.
    let next = client(addr, 9, 10_000);
    r.run_until(PATIENCE, || next.is_finished()).unwrap();
    let (sent, got) = next.join().unwrap();
    assert_eq!(sent, got, "the next client gets its whole echo");
    drop(peer);
    counts.settle(&r, 0);
}

/// A client factory that records how each attempt ended.
struct Outcomes {
    made: Rc<Cell<usize>>,
    failed: Rc<RefCell<Vec<String>>>,
    lost: Rc<Cell<usize>>,
}

impl Factory for Outcomes {
    type Protocol = Quiet;
    fn build_protocol(&self, _peer: &torsion_reactor::Address) -> Option<Quiet> {
        Some(Quiet)
    }
}

struct Quiet;
impl Protocol for Quiet {
    fn connection_made(&mut self, t: &Transport) {
        t.lose_connection();
    }
    fn data_received(&mut self, _t: &Transport, _data: &[u8]) {}
}

impl ClientFactory for Outcomes {
    fn client_connection_made(&self, _c: &Connector, _t: &Transport) {
        self.made.set(self.made.get() + 1);
    }
    fn client_connection_failed(&self, _c: &Connector, reason: &ConnectionLost) {
        self.failed.borrow_mut().push(reason.to_string());
    }
    fn client_connection_lost(&self, _c: &Connector, _reason: &ConnectionLost) {
        self.lost.set(self.lost.get() + 1);
    }
}

#[test]
fn spurious_and_stale_events_never_complete_a_connect_early() {
    faults::reset(); // only the scripted faults (not those TORSION_FAULT_SEED turns on)
    // Regression: a writable event during a connect was taken as "connected" when the
    // socket had no error, so a spurious one started a connection that was not there.
    let r = reactor();
    // A listener with a full accept queue: the connect hangs until our timeout.
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
    faults::script(
        Op::Wait,
        (0..50).flat_map(|_| [Step::Fail(Fault::Spurious), Step::Fail(Fault::Stale)]),
    );
    let (made, failed, lost) = (Rc::default(), Rc::default(), Rc::default());
    let outcomes = Outcomes {
        made: Rc::clone(&made),
        failed: Rc::clone(&failed),
        lost: Rc::clone(&lost),
    };
    let _c = r.connect_tcp_with(
        addr,
        outcomes,
        &TcpConnectOptions {
            timeout: Some(Duration::from_millis(300)),
            bind_addr: None,
        },
    );
    r.run_until(PATIENCE, || !failed.borrow().is_empty())
        .unwrap();
    assert!(faults::injected().of(Op::Wait) > 0);
    assert_eq!(made.get(), 0, "no connection was made");
    assert_eq!(failed.borrow().len(), 1);
    assert!(
        failed.borrow()[0].contains("timed out"),
        "{:?}",
        failed.borrow()
    );
    drop(fillers);
}

#[test]
fn connects_that_fail_at_random_each_end_exactly_once() {
    let seed = seed();
    let r = reactor();
    let panics = collect_caught(&r);
    let counts: Rc<Counts> = Rc::default();
    let c = counts.clone();
    let (_port, addr) = listen(&r, factory_fn(move |_| Probe::new(&c)));
    r.iterate(Duration::ZERO).unwrap();
    let sources = r.registered_sources();
    faults::random(Profile::Hostile, seed, 25);
    let (made, failed, lost) = (Rc::new(Cell::new(0)), Rc::default(), Rc::new(Cell::new(0)));
    let mut connectors = Vec::new();
    for _ in 0..40 {
        connectors.push(r.connect_tcp(
            addr,
            Outcomes {
                made: made.clone(),
                failed: Rc::clone(&failed),
                lost: lost.clone(),
            },
        ));
    }
    let ended = || made.get() + failed.borrow().len() == 40 && lost.get() == made.get();
    r.run_until(PATIENCE, ended)
        .unwrap_or_else(|e| panic!("seed {seed}: every attempt ends: {e}"));
    counts.settle(&r, seed);
    faults::stop_random();
    assert!(faults::injected().total() > 0);
    counts.assert_clean(seed);
    assert!(
        panics.borrow().is_empty(),
        "seed {seed}: {:?}",
        panics.borrow()
    );
    drop(connectors);
    r.run_until(PATIENCE, || r.registered_sources() == sources)
        .unwrap_or_else(|e| panic!("seed {seed}: no registration leaked: {e}"));
}

/// Edge triggering: a read the kernel did not cut short (an injected `EAGAIN`, a read of
/// one byte) looks to the connection like a socket run dry, and no new edge will come for
/// the bytes still there. The fault layer owes it a readiness event so that the fault stays
/// transparent; without that, the rest would never be read and the echo would hang.
#[test]
fn reads_cut_short_are_followed_by_the_rest() {
    let (r, _port, addr, counts) = probed_echo_server();
    faults::script(
        Op::Read,
        [
            Step::Fail(Fault::Errno(libc::EAGAIN)),
            Step::Fail(Fault::Short),
            Step::Fail(Fault::Short),
            Step::Fail(Fault::Errno(libc::EINTR)),
            Step::Fail(Fault::Short),
        ],
    );
    // All at once, and no end of file: no later byte brings a new edge.
    let sent = pattern(7, 10_000);
    let s = sent.clone();
    let client = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connects");
        c.set_read_timeout(Some(PATIENCE)).expect("a read timeout");
        c.write_all(&s).expect("sends");
        let mut got = vec![0u8; s.len()];
        c.read_exact(&mut got).map(|()| got)
    });
    r.run_until(PATIENCE, || client.is_finished())
        .expect("the echo after reads cut short");
    let got = client.join().expect("the client thread");
    assert!(got.is_ok_and(|got| got == sent), "a whole echo");
    assert_eq!(faults::injected().of(Op::Read), 5);
    counts.settle(&r, 0);
}

/// The same for writes: an injected `EAGAIN` or a one-byte write leaves the rest queued,
/// and it goes out when the socket is writable (the connection asks for write interest,
/// and the fault layer owes the event too).
#[test]
fn writes_cut_short_are_followed_by_the_rest() {
    let (r, _port, addr, counts) = probed_echo_server();
    faults::script(
        Op::Write,
        [
            Step::Fail(Fault::Short),
            Step::Fail(Fault::Errno(libc::EAGAIN)),
            Step::Fail(Fault::Short),
            Step::Fail(Fault::Errno(libc::EINTR)),
        ],
    );
    serve_whole_echoes(&r, addr, 1, 10_000, "the echo after writes cut short");
    assert_eq!(faults::injected().of(Op::Write), 4);
    counts.settle(&r, 0);
}

/// A pipe's write end learns that its reader went away from a readable event (a pipe's
/// write end is never read). A spurious event is no proof: the connection checks with
/// `poll` before it gives up, so spurious events leave it open and writing.
#[test]
fn spurious_events_on_a_pipe_write_end_are_not_taken_for_a_hang_up() {
    faults::reset(); // only the scripted faults
    let r = reactor();
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe2` returns.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: `pipe2` returned two new descriptors nothing else owns.
    let (mut read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let counts: Rc<Counts> = Rc::default();
    let transport = r
        .connect_write_pipe(Probe::new(&counts), write)
        .expect("a write end");
    r.run_until(PATIENCE, || counts.made.get() == 1)
        .expect("connection_made");
    // Every wait adds an event for a live registration (the write end is the only one),
    // readable most of the time.
    faults::script(Op::Wait, (0..40).map(|_| Step::Fail(Fault::Spurious)));
    let mut waits = 0;
    r.run_until(PATIENCE, || {
        waits += 1;
        waits > 40
    })
    .expect("forty iterations");
    assert!(faults::injected().of(Op::Wait) >= 40);
    assert_eq!(counts.lost.get(), 0, "the reader is still there");
    transport.write(b"still open\n");
    let mut got = vec![0u8; 11];
    r.run_until(PATIENCE, || transport.buffer_size() == 0)
        .expect("the write goes out");
    read.read_exact(&mut got).expect("the reader gets it");
    assert_eq!(got, b"still open\n");
    drop(read);
    counts.settle(&r, 0);
}
