//! `pingpong`, `bulk` and `pipelined`: many long-lived connections driven by mio event
//! loops.
//!
//! All connections are opened (blocking connect with a timeout) before the clock starts, then
//! split round-robin over `threads` event loops. When the duration is up no new message (or
//! chunk) is started, what is in flight is drained and checked, and each connection is checked
//! for stray extra bytes before it is closed.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::pattern::{self, MAX_CHUNK};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One message of `size` bytes in flight per connection; wait for all of it to come back.
    Pingpong,
    /// Stream `size`-byte chunks, at most `window` bytes sent but not yet echoed.
    Bulk,
    /// Requests of `size`-byte lines, `depth` of them sent but not yet answered; the server
    /// answers each line with that line.
    Pipelined,
}

pub struct Config {
    pub kind: Kind,
    pub addr: SocketAddr,
    pub conns: usize,
    pub size: usize,
    pub window: usize,
    /// Pipelined: requests in flight per connection.
    pub depth: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub threads: usize,
}

#[derive(Default)]
pub struct Outcome {
    /// Messages (pingpong) or requests (pipelined) completed; for bulk, whole chunks
    /// echoed (bytes / size).
    pub msgs: u64,
    /// Bytes echoed back and verified.
    pub bytes: u64,
    /// Pingpong round-trip latencies (pipelined: from a request's first byte sent to its
    /// answer's last byte received), in nanoseconds.
    pub lat_ns: Vec<u32>,
    /// From the start of the load to the last echoed byte.
    pub elapsed: Duration,
    /// Messages (requests) completed by each connection: how evenly the server served
    /// them (a global stall delays every connection alike; unfair ordering does not).
    pub per_conn: Vec<u64>,
}

/// Opens all connections; `before_start` runs just before the clock starts (CPU snapshot).
pub fn run(cfg: &Config, before_start: impl FnOnce()) -> Result<Outcome, String> {
    let mut per_thread: Vec<Vec<(u64, StdStream)>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    for i in 0..cfg.conns {
        let s = StdStream::connect_timeout(&cfg.addr, cfg.timeout)
            .map_err(|e| format!("connecting {} (connection {i}): {e}", cfg.addr))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        per_thread[i % cfg.threads].push((i as u64, s));
    }
    before_start();
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let failed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = per_thread
        .into_iter()
        .filter(|v| !v.is_empty())
        .map(|conns| {
            let failed = failed.clone();
            let (kind, size, timeout) = (cfg.kind, cfg.size, cfg.timeout);
            let window = match kind {
                Kind::Pipelined => cfg.depth * cfg.size,
                _ => cfg.window,
            };
            std::thread::spawn(move || {
                let r = worker(kind, size, window, timeout, conns, deadline, &failed);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                r.map(|o| (o, Instant::now()))
            })
        })
        .collect();
    let mut out = Outcome::default();
    let mut end = start;
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok((o, t))) => {
                out.msgs += o.msgs;
                out.bytes += o.bytes;
                out.lat_ns.extend(o.lat_ns);
                out.per_conn.extend(o.per_conn);
                end = end.max(t);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert("a load thread panicked".to_string());
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    out.elapsed = end - start;
    Ok(out)
}

struct Conn {
    id: u64,
    stream: TcpStream,
    /// Bytes written so far.
    sent: u64,
    /// Bytes echoed back and verified so far.
    recvd: u64,
    /// Pingpong: stream offset where the current message ends.
    target: u64,
    msg_start: Instant,
    /// Pipelined: when each request in flight was started, oldest first.
    starts: VecDeque<Instant>,
    last_progress: Instant,
    active: bool,
    /// Messages (requests) completed.
    done: u64,
}

fn worker(
    kind: Kind,
    size: usize,
    window: usize,
    timeout: Duration,
    std_conns: Vec<(u64, StdStream)>,
    deadline: Instant,
    failed: &AtomicBool,
) -> Result<Outcome, String> {
    let mut poll = Poll::new().map_err(|e| format!("creating poller: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut conns: Vec<Conn> = Vec::with_capacity(std_conns.len());
    for (i, (id, s)) in std_conns.into_iter().enumerate() {
        let mut stream = TcpStream::from_std(s);
        poll.registry()
            .register(
                &mut stream,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("registering connection {id}: {e}"))?;
        conns.push(Conn {
            id,
            stream,
            sent: 0,
            recvd: 0,
            target: 0,
            msg_start: now,
            starts: VecDeque::new(),
            last_progress: now,
            active: true,
            done: 0,
        });
    }
    let mut out = Outcome::default();
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut scratch = Vec::new();
    let mut active = conns.len();
    let mut stopping = false;
    for c in conns.iter_mut() {
        if kind == Kind::Pingpong {
            c.target = size as u64;
            c.msg_start = Instant::now();
        }
        send_some(kind, size, window, c, &mut scratch)?;
    }
    let hard_deadline = deadline + timeout * 4;
    let mut next_check = Instant::now() + Duration::from_millis(100);
    while active > 0 {
        let now = Instant::now();
        if failed.load(Ordering::Relaxed) {
            return Err("stopped: another load thread failed".into());
        }
        if !stopping && now >= deadline {
            stopping = true;
            for c in conns.iter_mut() {
                if c.active && kind != Kind::Pingpong && c.recvd == c.sent {
                    c.active = false;
                    active -= 1;
                }
            }
            continue;
        }
        if now >= next_check {
            next_check = now + Duration::from_millis(100);
            if now > hard_deadline {
                return Err(format!(
                    "the run did not finish within {:?} after its duration",
                    timeout * 4
                ));
            }
            for c in conns.iter().filter(|c| c.active) {
                if now - c.last_progress > timeout {
                    return Err(format!(
                        "connection {}: no progress for {:?} (sent {} bytes, {} echoed): server stalled or dead",
                        c.id, timeout, c.sent, c.recvd
                    ));
                }
            }
        }
        let wait = if stopping {
            Duration::from_millis(100)
        } else {
            (deadline - now).min(Duration::from_millis(100))
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("poll: {e}")),
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if !c.active {
                continue; // finished; checked for stray bytes at the end
            }
            // Read and verify what has come back.
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        return Err(format!(
                            "connection {}: server closed the connection after echoing {} of {} bytes",
                            c.id, c.recvd, c.sent
                        ));
                    }
                    Ok(n) => {
                        if c.recvd + n as u64 > c.sent {
                            return Err(format!(
                                "connection {}: server echoed {} bytes but only {} were sent",
                                c.id,
                                c.recvd + n as u64,
                                c.sent
                            ));
                        }
                        if kind == Kind::Pipelined {
                            pattern::verify_lines(c.id, c.recvd, &buf[..n], size, &mut scratch)?;
                        } else {
                            pattern::verify(c.id, c.recvd, &buf[..n])?;
                        }
                        let answered = (c.recvd + n as u64) / size as u64 - c.recvd / size as u64;
                        c.recvd += n as u64;
                        out.bytes += n as u64;
                        c.last_progress = Instant::now();
                        if kind == Kind::Pipelined {
                            for _ in 0..answered {
                                let started = c.starts.pop_front().unwrap_or(c.last_progress);
                                let lat = c.last_progress - started;
                                out.lat_ns.push(lat.as_nanos().min(u32::MAX as u128) as u32);
                                out.msgs += 1;
                                c.done += 1;
                            }
                        }
                        if kind == Kind::Pingpong && c.recvd == c.target {
                            let lat = c.last_progress - c.msg_start;
                            out.lat_ns.push(lat.as_nanos().min(u32::MAX as u128) as u32);
                            out.msgs += 1;
                            c.done += 1;
                            if stopping {
                                c.active = false;
                                active -= 1;
                            } else {
                                c.target += size as u64;
                                c.msg_start = c.last_progress;
                            }
                            break;
                        }
                        if c.recvd == c.sent {
                            break; // nothing outstanding; anything more is an error seen later
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(format!(
                            "connection {}: reading the echo: {e} (after {} of {} bytes)",
                            c.id, c.recvd, c.sent
                        ));
                    }
                }
            }
            if !c.active {
                continue;
            }
            if kind != Kind::Pingpong && stopping {
                if c.recvd == c.sent {
                    c.active = false;
                    active -= 1;
                }
                continue;
            }
            send_some(kind, size, window, c, &mut scratch)?;
        }
    }
    // Nothing more may arrive: the server must not have echoed bytes nobody sent.
    for c in conns.iter_mut() {
        match c.stream.read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok(0) => {
                return Err(format!("connection {}: server closed the connection", c.id));
            }
            Ok(n) => {
                return Err(format!(
                    "connection {}: {n} extra bytes after all {} sent bytes were echoed",
                    c.id, c.sent
                ));
            }
            Err(e) => return Err(format!("connection {}: {e}", c.id)),
        }
    }
    if kind == Kind::Bulk {
        out.msgs = out.bytes / size as u64;
    }
    out.per_conn = conns.iter().map(|c| c.done).collect();
    Ok(out)
}

/// Writes as much as the mode allows now; stops at `WouldBlock` or a short write (mio is
/// edge-triggered: either way a WRITABLE event follows once there is room).
fn send_some(
    kind: Kind,
    size: usize,
    window: usize,
    c: &mut Conn,
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    loop {
        let end = match kind {
            Kind::Pingpong => c.target,
            Kind::Bulk => c.recvd + window as u64,
            // `window` is depth × size: whole requests past the last one answered.
            Kind::Pipelined => c.recvd / size as u64 * size as u64 + window as u64,
        };
        if c.sent >= end {
            return Ok(());
        }
        let mut n = (end - c.sent).min(MAX_CHUNK as u64) as usize;
        if kind == Kind::Bulk {
            n = n.min(size - (c.sent % size as u64) as usize);
        }
        let data = if kind == Kind::Pipelined {
            scratch.clear();
            pattern::lines(c.id, c.sent, n, size, scratch);
            &scratch[..]
        } else {
            pattern::slice(c.id, c.sent, n)
        };
        match c.stream.write(data) {
            Ok(0) => return Err(format!("connection {}: write returned 0", c.id)),
            Ok(k) => {
                if kind == Kind::Pipelined {
                    // A request starts at every multiple of `size` written now.
                    let first = c.sent.div_ceil(size as u64);
                    let last = (c.sent + k as u64).div_ceil(size as u64);
                    let now = Instant::now();
                    for _ in first..last {
                        c.starts.push_back(now);
                    }
                }
                c.sent += k as u64;
                c.last_progress = Instant::now();
                if k < n {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(format!(
                    "connection {}: writing: {e} (after {} bytes sent, {} echoed)",
                    c.id, c.sent, c.recvd
                ));
            }
        }
    }
}
