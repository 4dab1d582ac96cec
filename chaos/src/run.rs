//! What every client shares: the deadline, the counters, the latencies of well-behaved
//! clients, the failures; and the socket helpers the behaviours use.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::rng::Rng;

/// How long a well-behaved client waits for an answer before it calls the server stalled.
pub const STALL: Duration = Duration::from_secs(20);

/// The run's shared state.
pub struct Run {
    pub addr: SocketAddr,
    pub seed: u64,
    pub deadline: Instant,
    /// Behaviours left out (`--without NAME`).
    pub without: Vec<String>,
    /// Set when a failure is recorded with `--stop-on-failure`... or at the end.
    pub stop: AtomicBool,
    pub connections: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    behaviours: Mutex<BTreeMap<&'static str, u64>>,
    latencies_us: Mutex<Vec<u64>>,
    failures: Mutex<Vec<String>>,
}

impl Run {
    pub fn new(addr: SocketAddr, seed: u64, duration: Duration, without: Vec<String>) -> Run {
        Run {
            addr,
            seed,
            without,
            deadline: Instant::now() + duration,
            stop: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            behaviours: Mutex::default(),
            latencies_us: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    pub fn over(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    /// The weights of `behaviours`, with those left out at zero.
    pub fn weights(&self, behaviours: &[(&str, u64)]) -> Vec<u64> {
        behaviours
            .iter()
            .map(|(name, w)| {
                if self.without.iter().any(|x| x == name) {
                    0
                } else {
                    *w
                }
            })
            .collect()
    }

    /// Counts one run of `behaviour`.
    pub fn count(&self, behaviour: &'static str) {
        *lock(&self.behaviours).entry(behaviour).or_insert(0) += 1;
    }

    /// A well-behaved client's round trip.
    pub fn latency(&self, took: Duration) {
        lock(&self.latencies_us).push(took.as_micros() as u64);
    }

    /// A rule the server broke, as seen by client `id`.
    pub fn fail(&self, id: u64, what: String) {
        let msg = format!("client {id}: {what}");
        eprintln!("chaos: FAILURE {msg}");
        lock(&self.failures).push(msg);
    }

    pub fn sent(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn behaviours(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.behaviours).clone()
    }

    pub fn failures(&self) -> Vec<String> {
        lock(&self.failures).clone()
    }

    /// Sorted latencies in microseconds.
    pub fn latencies(&self) -> Vec<u64> {
        let mut l = lock(&self.latencies_us).clone();
        l.sort_unstable();
        l
    }

    /// A new connection from client `id`'s loopback address (clients are spread over
    /// 127.0.0.2–127.0.0.9, so a per-address connection limit sees several peers).
    pub fn connect(&self, id: u64) -> io::Result<TcpStream> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        if self.addr.ip().is_loopback() && self.addr.is_ipv4() {
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (id % 8) as u8));
            socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
        }
        socket.connect_timeout(&SockAddr::from(self.addr), Duration::from_secs(10))?;
        self.connections.fetch_add(1, Ordering::Relaxed);
        socket.set_tcp_nodelay(true)?;
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(STALL))?;
        stream.set_write_timeout(Some(STALL))?;
        Ok(stream)
    }
}

/// A behaviour: its name (counted in the report, and what `--without` names), its weight,
/// and what one run of it does.
pub type Behaviour = (&'static str, u64, fn(&Run, u64, &mut Rng));

/// Client `id`: behaviours from `table`, picked at random by weight, until the run ends.
pub fn behave(run: &Run, id: u64, table: &[Behaviour]) {
    let mut rng = Rng::new(run.seed, id);
    let names: Vec<(&str, u64)> = table.iter().map(|&(name, w, _)| (name, w)).collect();
    let weights = run.weights(&names);
    while !run.over() {
        let (name, _, behaviour) = table[rng.pick(&weights)];
        run.count(name);
        behaviour(run, id, &mut rng);
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Closes with a reset (SO_LINGER 0) instead of an orderly close.
pub fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Writes `data`, counting it.
pub fn send(run: &Run, s: &mut TcpStream, data: &[u8]) -> io::Result<()> {
    s.write_all(data)?;
    run.sent(data.len());
    Ok(())
}

/// Reads exactly `n` bytes, counting them.
pub fn receive(run: &Run, s: &mut TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)?;
    run.received(n);
    Ok(buf)
}

/// Writes what the socket takes at once (non-blocking) from `data`; returns how much.
pub fn send_some(run: &Run, s: &TcpStream, data: &[u8]) -> usize {
    let _ = s.set_nonblocking(true);
    let mut sent = 0;
    while sent < data.len() {
        match (&mut &*s).write(&data[sent..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    let _ = s.set_nonblocking(false);
    run.sent(sent);
    sent
}

/// Reads what is there now (non-blocking) into `into`; `Ok(false)` at end of file.
pub fn receive_some(run: &Run, s: &TcpStream, into: &mut Vec<u8>) -> io::Result<bool> {
    s.set_nonblocking(true)?;
    let mut buf = [0u8; 16 * 1024];
    let result = loop {
        match (&mut &*s).read(&mut buf) {
            Ok(0) => break Ok(false),
            Ok(n) => {
                run.received(n);
                into.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    s.set_nonblocking(false)?;
    result
}

/// Sleeps `ms`, or less if the run ends first: a client pausing on purpose.
pub fn pause(run: &Run, ms: u64) {
    let until = Instant::now() + Duration::from_millis(ms);
    while !run.over() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(ms.min(50)));
    }
}

/// What connecting gave a client that must be served: a failure is the server's, recorded.
pub fn served<T>(run: &Run, id: u64, connected: io::Result<T>) -> Option<T> {
    match connected {
        Ok(c) => Some(c),
        Err(e) => {
            run.fail(id, format!("a well-behaved client could not connect: {e}"));
            None
        }
    }
}

/// Compares an echo with what was sent, naming the first difference.
pub fn check(run: &Run, id: u64, what: &str, sent: &[u8], got: &[u8]) -> bool {
    if sent == got {
        return true;
    }
    let at = sent.iter().zip(got).position(|(a, b)| a != b);
    run.fail(
        id,
        format!(
            "{what}: {} bytes came back for {} sent; first difference at {at:?}",
            got.len(),
            sent.len()
        ),
    );
    false
}
