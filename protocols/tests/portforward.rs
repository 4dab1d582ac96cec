//! The port forwarder (`portforward::ProxyFactory`) over real loopback sockets: the proxy
//! runs on this thread's reactor, the client and the upstream server are plain blocking
//! sockets on threads of their own, so each side behaves exactly as the test says
//! (reads everything, stops reading, half-closes, resets).

mod common;

use std::cell::RefCell;
use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{PATIENCE, listen, reactor};
use torsion_endpoints::{ClientEndpoint, TcpClient};
use torsion_protocols::portforward::{ProxyClient, ProxyFactory};
use torsion_reactor::testing::capture_logs;
use torsion_reactor::{DEFAULT_HIGH_WATER, Deferred, ListeningPort, Reactor, Transport};

/// The most one direction may hold in the proxy: the write buffer's high mark, plus what
/// the reactor reads from the other side in one loop iteration before `pause_writing`
/// stops it (its read budget: 256 KiB).
const BOUND: usize = DEFAULT_HIGH_WATER + 4 * 64 * 1024;

/// Byte `i` of stream `seed`: a different, position-dependent pattern per stream, so a
/// lost, repeated, reordered or crossed byte is caught.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i % 251) as u8).wrapping_mul(7).wrapping_add(seed))
        .collect()
}

/// The connections the proxy made, seen from inside it.
#[derive(Default)]
struct Seen {
    /// The client side of every proxied connection, in the order clients connected.
    clients: Vec<Transport>,
    /// Upstream connections, as their connects succeed.
    upstreams: Vec<Transport>,
}

type Shared = Rc<RefCell<Seen>>;

/// A proxy on a free loopback port forwarding to `upstream`, recording its connections.
fn proxy_to(r: &Reactor, upstream: SocketAddr) -> (ListeningPort, SocketAddr, Shared) {
    let seen: Shared = Rc::default();
    let s = Rc::clone(&seen);
    let endpoint = ClientEndpoint::new(r, TcpClient::new("127.0.0.1", upstream.port()));
    let factory = ProxyFactory::new(move |side: ProxyClient| {
        s.borrow_mut().clients.push(side.client().clone());
        let s = Rc::clone(&s);
        endpoint.connect_protocol(side).map(move |t| {
            s.borrow_mut().upstreams.push(t.clone());
            t
        })
    });
    let (port, addr) = listen(r, factory);
    (port, addr, seen)
}

/// A listener for the upstream server, and a thread that accepts one connection and runs
/// `serve` on it.
fn upstream<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, JoinHandle<T>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding the upstream server");
    let addr = listener.local_addr().expect("its address");
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the proxy connects upstream");
        stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("a timeout");
        serve(stream)
    });
    (addr, thread)
}

/// Connects a client to `addr` on a thread that runs `talk`.
fn client<T: Send + 'static>(
    addr: SocketAddr,
    talk: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::spawn(move || {
        let stream = TcpStream::connect(addr).expect("connecting to the proxy");
        stream.set_read_timeout(Some(PATIENCE)).expect("a timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("a timeout");
        talk(stream)
    })
}

/// Runs the reactor until every thread in `threads` has finished (each check runs once
/// per loop iteration), then joins them.
fn run_until_done<T>(r: &Reactor, what: &str, threads: Vec<JoinHandle<T>>) -> Vec<T> {
    r.run_until(PATIENCE, || threads.iter().all(|t| t.is_finished()))
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    threads
        .into_iter()
        .map(|t| {
            t.join()
                .unwrap_or_else(|_| panic!("{what}: a peer thread panicked"))
        })
        .collect()
}

/// Writes `data` then half-closes, on a clone of `stream`, while the caller reads.
fn write_then_shut(stream: &TcpStream, data: Vec<u8>) -> JoinHandle<()> {
    let mut w = stream.try_clone().expect("cloning the socket");
    std::thread::spawn(move || {
        w.write_all(&data).expect("writing");
        w.shutdown(Shutdown::Write).expect("half-closing");
    })
}

fn read_all(mut stream: &TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("reading to the end");
    got
}

fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(stream); // closing with linger 0 sends a reset
}

#[test]
fn large_streams_flow_both_ways_intact_and_half_closes_pass_through() {
    const LEN: usize = 8 << 20;
    let r = reactor();
    // Upstream sends its own 8 MiB while reading the client's; each half-closes when done.
    let (up_addr, up) = upstream(|s| {
        let writer = write_then_shut(&s, pattern(2, LEN));
        let got = read_all(&s);
        writer.join().expect("the upstream writer");
        got
    });
    let (_port, addr, seen) = proxy_to(&r, up_addr);
    let c = client(addr, |s| {
        let writer = write_then_shut(&s, pattern(1, LEN));
        let got = read_all(&s);
        writer.join().expect("the client writer");
        got
    });
    let from_up = run_until_done(&r, "8 MiB each way", vec![up]).remove(0);
    let from_client = run_until_done(&r, "8 MiB each way", vec![c]).remove(0);
    assert_eq!(from_up.len(), LEN, "upstream got all the client sent");
    assert!(
        from_up == pattern(1, LEN),
        "upstream got the client's bytes in order"
    );
    assert_eq!(from_client.len(), LEN, "the client got all upstream sent");
    assert!(
        from_client == pattern(2, LEN),
        "the client got upstream's bytes in order"
    );
    // Both directions ended: both connections close.
    let seen = seen.borrow();
    let (client_side, upstream_side) = (seen.clients[0].clone(), seen.upstreams[0].clone());
    drop(seen);
    r.run_until(PATIENCE, || {
        client_side.is_closing() && upstream_side.is_closing()
    })
    .expect("both connections close once both directions have ended");
}

#[test]
fn echo_through_the_proxy() {
    const LEN: usize = 6 << 20;
    let r = reactor();
    // An echo server that closes after the client's half-close reaches it.
    let (up_addr, up) = upstream(|mut s| {
        let mut buf = vec![0; 64 * 1024];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf).expect("upstream reads");
            if n == 0 {
                return total;
            }
            s.write_all(&buf[..n]).expect("upstream echoes");
            total += n;
        }
    });
    let (_port, addr, _seen) = proxy_to(&r, up_addr);
    let c = client(addr, |s| {
        let writer = write_then_shut(&s, pattern(3, LEN));
        let got = read_all(&s);
        writer.join().expect("the client writer");
        got
    });
    let echoed = run_until_done(&r, "echo", vec![c]).remove(0);
    assert_eq!(run_until_done(&r, "echo", vec![up]), [LEN]);
    assert_eq!(echoed.len(), LEN);
    assert!(
        echoed == pattern(3, LEN),
        "the echo came back whole and in order"
    );
}

#[test]
fn a_client_half_close_reaches_upstream_which_can_still_answer() {
    let r = reactor();
    let (up_addr, up) = upstream(|mut s| {
        let request = read_all(&s); // to end-of-file: the client's half-close
        s.write_all(b"answer after your end-of-file")
            .expect("answering");
        request
    });
    let (_port, addr, _seen) = proxy_to(&r, up_addr);
    let c = client(addr, |mut s| {
        s.write_all(b"request").expect("writing");
        s.shutdown(Shutdown::Write).expect("half-closing");
        read_all(&s)
    });
    let answer = run_until_done(&r, "client half-close", vec![c]).remove(0);
    let request = run_until_done(&r, "client half-close", vec![up]).remove(0);
    assert_eq!(request, b"request");
    assert_eq!(answer, b"answer after your end-of-file");
}

#[test]
fn an_upstream_half_close_reaches_the_client_which_can_still_send() {
    let r = reactor();
    let (up_addr, up) = upstream(|mut s| {
        s.write_all(b"banner").expect("writing");
        s.shutdown(Shutdown::Write).expect("half-closing");
        read_all(&s)
    });
    let (_port, addr, _seen) = proxy_to(&r, up_addr);
    let c = client(addr, |mut s| {
        let mut banner = Vec::new();
        (&s).read_to_end(&mut banner)
            .expect("reading to upstream's end-of-file");
        s.write_all(b"sent after your end-of-file")
            .expect("writing");
        s.shutdown(Shutdown::Write).expect("half-closing");
        banner
    });
    let banner = run_until_done(&r, "upstream half-close", vec![c]).remove(0);
    let got = run_until_done(&r, "upstream half-close", vec![up]).remove(0);
    assert_eq!(banner, b"banner");
    assert_eq!(got, b"sent after your end-of-file");
}

/// Checks back-pressure in one direction: the sending peer writes `TOTAL` bytes
/// (blocking) towards a peer that does not read until told to. The proxy must stop reading
/// the sender, hold at most `BOUND` bytes for the stalled peer, and deliver everything,
/// in order, once it reads.
fn stalled_reader_pushes_back(upstream_stalls: bool) {
    const TOTAL: usize = 32 << 20;
    let r = reactor();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let stalled = move |s: TcpStream| {
        go_rx.recv().expect("the test says when to read");
        read_all(&s)
    };
    let sending = |mut s: TcpStream| {
        s.write_all(&pattern(5, TOTAL))
            .expect("writing into the stalled direction");
        s.shutdown(Shutdown::Write).expect("half-closing");
        read_all(&s) // the other way: nothing, then end-of-file
    };
    type Peer = Box<dyn FnOnce(TcpStream) -> Vec<u8> + Send>;
    let (upstream_peer, client_peer): (Peer, Peer) = if upstream_stalls {
        (Box::new(stalled), Box::new(sending))
    } else {
        (Box::new(sending), Box::new(stalled))
    };
    let (up_addr, up) = upstream(upstream_peer);
    let (_port, addr, seen) = proxy_to(&r, up_addr);
    let c = client(addr, client_peer);
    // (the transport the sender writes to, the one towards the stalled peer)
    let pick = |s: &Seen| {
        let (client, upstream) = (s.clients[0].clone(), s.upstreams[0].clone());
        if upstream_stalls {
            (client, upstream)
        } else {
            (upstream, client)
        }
    };
    let mut most = 0;
    r.run_until(PATIENCE, || {
        let s = seen.borrow();
        if s.upstreams.is_empty() {
            return false;
        }
        let (from, to) = pick(&s);
        most = most.max(to.buffer_size());
        !from.is_reading() && to.is_writing_paused()
    })
    .expect("the proxy stops reading the sender while the other peer reads nothing");
    // More turns of the loop change nothing: the sender stays unread. (Under injected
    // faults, whose extra wake-ups flush again, the kernel may find more room in the
    // socket's send buffer and the proxy rightly reads on; what it holds stays bounded.)
    let exact = std::env::var_os("TORSION_FAULT_SEED").is_none();
    let (from, to) = pick(&seen.borrow());
    for _ in 0..50 {
        r.iterate(Duration::from_millis(1)).expect("a loop turn");
        most = most.max(to.buffer_size());
        assert!(
            !exact || !from.is_reading(),
            "the proxy resumed reading the sender too early"
        );
    }
    assert!(
        most <= BOUND,
        "the proxy held {most} bytes for a peer that does not read (bound {BOUND})"
    );

    // Let the stalled peer read: every byte arrives, in order.
    go_tx.send(()).expect("the stalled peer waits");
    let mut results = run_until_done(&r, "draining the stalled direction", vec![up, c]);
    let (from_up, from_client) = (results.remove(0), results.remove(0));
    let (received, other) = if upstream_stalls {
        (from_up, from_client)
    } else {
        (from_client, from_up)
    };
    assert_eq!(
        received.len(),
        TOTAL,
        "the stalled peer got everything in the end"
    );
    assert!(received == pattern(5, TOTAL), "in order");
    assert!(other.is_empty());
}

#[test]
fn an_upstream_that_stops_reading_stops_the_proxy_reading_the_client() {
    stalled_reader_pushes_back(true);
}

#[test]
fn a_client_that_stops_reading_stops_the_proxy_reading_upstream() {
    stalled_reader_pushes_back(false);
}

#[test]
fn a_client_reset_closes_upstream_after_what_was_sent() {
    let r = reactor();
    let (got_tx, got_rx) = mpsc::channel::<()>();
    let (up_addr, up) = upstream(move |mut s| {
        let mut words = [0; 10];
        s.read_exact(&mut words).expect("the bytes the client sent");
        got_tx.send(()).expect("the client waits");
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        (words, end.map(|_| rest).map_err(|e| e.kind()))
    });
    let (_port, addr, seen) = proxy_to(&r, up_addr);
    let c = client(addr, move |mut s| {
        s.write_all(b"last words").expect("writing");
        got_rx.recv().expect("told when upstream has the bytes");
        reset(s);
    });
    run_until_done(&r, "client reset", vec![c]);
    let (words, rest) = run_until_done(&r, "client reset", vec![up]).remove(0);
    assert_eq!(&words, b"last words");
    assert_eq!(
        rest,
        Ok(Vec::new()),
        "then upstream's connection is closed cleanly"
    );
    let upstream_side = seen.borrow().upstreams[0].clone();
    r.run_until(PATIENCE, || upstream_side.is_closing())
        .expect("the upstream connection is closed");
}

/// The client resets while the proxy holds bytes it read from it for an upstream that is
/// not reading: those bytes still reach upstream, in order, and then upstream's connection
/// is closed cleanly (the proxy flushes before it closes the other side).
#[test]
fn a_client_reset_while_the_proxy_holds_its_bytes_still_delivers_them() {
    const TOTAL: usize = 32 << 20;
    let r = reactor();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (up_addr, up) = upstream(move |mut s| {
        go_rx.recv().expect("the test says when to read");
        let mut got = Vec::new();
        let end = s.read_to_end(&mut got);
        (got, end.map(drop).map_err(|e| e.kind()))
    });
    let (_port, addr, seen) = proxy_to(&r, up_addr);
    let (reset_tx, reset_rx) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        // Writes until told to reset; a write that cannot go on times out and looks again.
        s.set_write_timeout(Some(Duration::from_millis(20)))
            .expect("a write timeout");
        let data = pattern(9, TOTAL);
        let mut sent = 0;
        loop {
            if reset_rx.try_recv().is_ok() {
                reset(s);
                return sent;
            }
            if sent == TOTAL {
                // Everything is in: wait for the word.
                reset_rx.recv().expect("the word comes");
                reset(s);
                return sent;
            }
            match s.write(&data[sent..(sent + 64 * 1024).min(TOTAL)]) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) => {}
                Err(e) => panic!("writing to the proxy: {e}"),
            }
        }
    });
    // The proxy holds bytes for upstream and has stopped reading the client.
    r.run_until(PATIENCE, || {
        let s = seen.borrow();
        s.upstreams.first().is_some_and(|up| up.is_writing_paused()) && !s.clients[0].is_reading()
    })
    .expect("the proxy pushes back on the client");
    let held = seen.borrow().upstreams[0].buffer_size();
    assert!(held > 0);
    reset_tx.send(()).expect("the client waits for the word");
    let sent = run_until_done(&r, "the client's reset", vec![c]).remove(0);
    go_tx.send(()).expect("upstream waits for the word");
    let (got, end) = run_until_done(&r, "upstream reads to the end", vec![up]).remove(0);
    assert_eq!(
        end,
        Ok(()),
        "upstream's connection ends cleanly, not with a reset"
    );
    assert!(
        got.len() >= held,
        "{} bytes arrived, the proxy held {held}",
        got.len()
    );
    assert!(got.len() <= sent);
    assert!(
        got == pattern(9, TOTAL)[..got.len()],
        "what arrives is what was sent, in order"
    );
}

/// A proxy whose connections linger `linger` once their other side is gone.
fn proxy_lingering(r: &Reactor, upstream: SocketAddr, linger: Duration) -> SocketAddr {
    let endpoint = ClientEndpoint::new(r, TcpClient::new("127.0.0.1", upstream.port()));
    let factory = ProxyFactory::new(move |side: ProxyClient| endpoint.connect_protocol(side))
        .with_linger(linger);
    listen(r, factory).1
}

/// An echo server upstream and a client that sends without reading the echoes, then
/// leaves: the proxy had stopped reading upstream (the client was not reading), so the
/// echo server is blocked writing and has stopped reading too. The proxy must read (and
/// drop) what upstream still sends, so that upstream takes the proxy's last bytes, sees
/// the end of file and closes; otherwise both wait forever. (The linger is longer than the
/// test's patience: the connection must close by itself.)
#[test]
fn when_a_client_leaves_an_upstream_blocked_writing_to_the_proxy_still_finishes() {
    let r = reactor();
    let (up_addr, up) = upstream(|mut s| {
        // A blocking echo: it reads only while its writes go through.
        let mut buf = vec![0u8; 64 * 1024];
        let mut echoed = 0usize;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Ok(echoed),
                Ok(n) => {
                    s.write_all(&buf[..n]).map_err(|e| e.kind())?;
                    echoed += n;
                }
                Err(e) => return Err(e.kind()),
            }
        }
    });
    let addr = proxy_lingering(&r, up_addr, Duration::from_secs(3600));
    let c = client(addr, |s| {
        // Never reads; stops when nothing more fits, then closes.
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .expect("a write timeout");
        let data = pattern(3, 1 << 20);
        let mut sent = 0usize;
        let mut stuck = 0;
        while stuck < 5 && sent < 64 << 20 {
            match (&s).write(&data) {
                Ok(n) => {
                    sent += n;
                    stuck = 0;
                }
                Err(_) => stuck += 1,
            }
        }
        sent
    });
    let sent = run_until_done(&r, "the client fills every buffer and leaves", vec![c]).remove(0);
    assert!(sent > 1 << 20, "the client sent {sent} bytes");
    let echoed = run_until_done(&r, "upstream sees the end and closes", vec![up]).remove(0);
    assert!(echoed.is_ok(), "upstream ended cleanly: {echoed:?}");
    r.run_until(PATIENCE, || r.open_connections() == 0)
        .expect("both of the proxy's connections close");
}

/// A client that neither reads nor closes: once upstream is gone, the proxy's connection
/// to the client is shut for writing and kept for what the client may still send, but
/// only for the linger time; then it is aborted, not held forever.
#[test]
fn a_client_that_never_closes_is_aborted_after_the_linger() {
    let r = reactor();
    let (up_addr, up) = upstream(|mut s| {
        s.write_all(b"bye").expect("writes");
        reset(s);
    });
    let addr = proxy_lingering(&r, up_addr, Duration::from_millis(200));
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let c = client(addr, move |s| {
        release_rx.recv().expect("held until the test is done");
        drop(s);
    });
    run_until_done(&r, "upstream says bye and resets", vec![up]);
    r.run_until(PATIENCE, || r.open_connections() == 0)
        .expect("the client's connection is aborted after the linger");
    release_tx.send(()).expect("the client waits");
    run_until_done(&r, "the client", vec![c]);
}

#[test]
fn an_upstream_reset_closes_the_client_after_what_was_sent() {
    let r = reactor();
    let (got_tx, got_rx) = mpsc::channel::<()>();
    let (up_addr, up) = upstream(move |mut s| {
        s.write_all(b"parting gift").expect("writing");
        got_rx.recv().expect("told when the client has the bytes");
        reset(s);
    });
    let (_port, addr, seen) = proxy_to(&r, up_addr);
    let c = client(addr, move |mut s| {
        let mut gift = [0; 12];
        s.read_exact(&mut gift).expect("the bytes upstream sent");
        got_tx.send(()).expect("upstream waits");
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        (gift, end.map(|_| rest).map_err(|e| e.kind()))
    });
    let (gift, rest) = run_until_done(&r, "upstream reset", vec![c]).remove(0);
    run_until_done(&r, "upstream reset", vec![up]);
    assert_eq!(&gift, b"parting gift");
    assert_eq!(rest, Ok(Vec::new()), "the proxy closes the client cleanly");
    let client_side = seen.borrow().clients[0].clone();
    r.run_until(PATIENCE, || client_side.is_closing())
        .expect("the client's connection is closed");
}

#[test]
fn a_refused_upstream_closes_the_client_with_a_logged_reason() {
    let logs = capture_logs();
    let r = reactor();
    let unused = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let up_addr = unused.local_addr().expect("its address");
    drop(unused); // nothing listens there now: connecting is refused
    let (_port, addr, _seen) = proxy_to(&r, up_addr);
    let c = client(addr, |s| {
        let local = s.local_addr().expect("the client's address");
        let mut got = Vec::new();
        let end = (&s).read_to_end(&mut got).map_err(|e| e.kind());
        (local, got, end)
    });
    let (local, got, end) = run_until_done(&r, "refused upstream", vec![c]).remove(0);
    assert!(got.is_empty());
    assert!(
        matches!(end, Ok(0) | Err(IoErrorKind::ConnectionReset)),
        "the client's connection is closed: {end:?}"
    );
    let lines = logs.lines_with(&format!("closing the connection from {local}"));
    assert_eq!(lines.len(), 1, "one line names the client: {lines:?}");
    assert!(
        lines[0].starts_with("WARN") && lines[0].contains(&up_addr.port().to_string()),
        "it says why, naming upstream: {}",
        lines[0]
    );
}

/// A connect closure whose attempts wait until the test resolves or cancels them.
type Pending = Rc<RefCell<Vec<(ProxyClient, torsion_reactor::Resolver<Transport>)>>>;

fn manual_proxy(r: &Reactor) -> (ListeningPort, SocketAddr, Pending, Rc<RefCell<Vec<bool>>>) {
    let pending: Pending = Rc::default();
    let cancelled: Rc<RefCell<Vec<bool>>> = Rc::default();
    let (p, c) = (Rc::clone(&pending), Rc::clone(&cancelled));
    let factory = ProxyFactory::new(move |side| {
        let index = c.borrow().len();
        c.borrow_mut().push(false);
        let c = Rc::clone(&c);
        let (d, resolver) = Deferred::with_canceller(move |_| c.borrow_mut()[index] = true);
        p.borrow_mut().push((side, resolver));
        d
    });
    let (port, addr) = listen(r, factory);
    (port, addr, pending, cancelled)
}

#[test]
fn bytes_sent_before_upstream_is_connected_wait_unread_then_go_through() {
    let r = reactor();
    let (_port, addr, pending, _cancelled) = manual_proxy(&r);
    let (up_addr, up) = upstream(|s| read_all(&s));
    let c = client(addr, |mut s| {
        s.write_all(b"early bytes")
            .expect("writing before upstream is there");
        s.shutdown(Shutdown::Write).expect("half-closing");
        read_all(&s)
    });
    r.run_until(PATIENCE, || !pending.borrow().is_empty())
        .expect("the proxy starts connecting upstream");
    let client_side = pending.borrow()[0].0.client().clone();
    assert!(
        !client_side.is_reading(),
        "nothing is read from the client yet"
    );
    // More turns of the loop: still unread (the bytes wait in the kernel).
    for _ in 0..20 {
        r.iterate(Duration::from_millis(1)).expect("a loop turn");
        assert!(!client_side.is_reading());
    }
    let (side, resolver) = pending.borrow_mut().remove(0);
    ClientEndpoint::new(&r, TcpClient::new("127.0.0.1", up_addr.port()))
        .connect_protocol(side)
        .on_result(move |result| {
            resolver.resolve(result).expect("resolved once");
        });
    let got = run_until_done(&r, "late upstream", vec![up]).remove(0);
    assert_eq!(got, b"early bytes");
    assert_eq!(
        run_until_done(&r, "late upstream", vec![c]),
        [Vec::<u8>::new()]
    );
}

#[test]
fn a_client_connection_lost_first_cancels_the_attempt() {
    let r = reactor();
    let (_port, addr, pending, cancelled) = manual_proxy(&r);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let c = client(addr, move |s| {
        done_rx.recv().expect("told when the test is done");
        read_all(&s)
    });
    r.run_until(PATIENCE, || !pending.borrow().is_empty())
        .expect("the proxy starts connecting upstream");
    // The client's connection ends while upstream is still being reached (as an idle
    // timeout or a shutdown would end it).
    let client_side = pending.borrow()[0].0.client().clone();
    client_side.abort_connection();
    r.run_until(PATIENCE, || cancelled.borrow()[0])
        .expect("losing the client's connection cancels the upstream attempt");
    done_tx.send(()).expect("the client waits");
    assert_eq!(
        run_until_done(&r, "client lost", vec![c]),
        [Vec::<u8>::new()]
    );
}

#[test]
fn a_client_that_resets_while_upstream_connects_gets_upstream_closed() {
    let r = reactor();
    let (_port, addr, pending, _cancelled) = manual_proxy(&r);
    let (reset_tx, reset_rx) = mpsc::channel::<()>();
    let c = client(addr, move |mut s| {
        s.write_all(b"sent before the reset").expect("writing");
        reset_rx.recv().expect("told when to reset");
        reset(s);
    });
    r.run_until(PATIENCE, || !pending.borrow().is_empty())
        .expect("the proxy starts connecting upstream");
    reset_tx.send(()).expect("the client waits");
    run_until_done(&r, "client reset", vec![c]);
    // The client's reading is paused until upstream is there, so its reset is seen only
    // then, when the proxy reads it.
    let (up_addr, up) = upstream(|s| read_all(&s));
    let (side, resolver) = pending.borrow_mut().remove(0);
    let client_side = side.client().clone();
    ClientEndpoint::new(&r, TcpClient::new("127.0.0.1", up_addr.port()))
        .connect_protocol(side)
        .on_result(move |result| {
            resolver.resolve(result).expect("resolved once");
        });
    let got = run_until_done(&r, "client reset before upstream", vec![up]).remove(0);
    // What the kernel had received before the reset may still be read (Linux keeps it),
    // then upstream is closed: a prefix of what was sent, then end-of-file.
    assert!(
        b"sent before the reset".starts_with(&got),
        "upstream got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(client_side.is_closing());
}
