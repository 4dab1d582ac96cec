//! `udp`: many UDP senders against an echo server, driven by one mio event loop.
//!
//! Each sender is a socket connected to the server (so it hears only the server) keeping
//! `window` datagrams in flight: when an echo comes back it sends the next one. A datagram
//! carries its sequence number in its first 8 bytes and the pattern of `pattern.rs` after
//! it, so every echoed byte is checked. UDP may drop datagrams: one not answered within
//! `retry` (1 s) is counted as lost and replaced, so a drop costs the run a little time, not its
//! result; an echo that comes after it was counted lost is counted as late. A corrupted or
//! wrong-sized echo fails the run, and so does a sender that hears nothing for `timeout`.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdSocket};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use crate::pattern;

pub struct Config {
    pub addr: SocketAddr,
    pub senders: usize,
    pub size: usize,
    pub window: usize,
    pub duration: Duration,
    pub timeout: Duration,
    pub retry: Duration,
}

#[derive(Default)]
pub struct Outcome {
    /// Datagrams echoed and verified.
    pub msgs: u64,
    pub bytes: u64,
    /// Datagrams not answered within `retry` (then replaced).
    pub lost: u64,
    /// Echoes that came after their datagram was counted lost.
    pub late: u64,
    /// Round trips, in nanoseconds.
    pub lat_ns: Vec<u32>,
    pub elapsed: Duration,
}

struct Sender {
    id: u64,
    socket: UdpSocket,
    next_seq: u64,
    /// Sequence numbers in flight and when they were sent, oldest first.
    inflight: VecDeque<(u64, Instant)>,
    last_progress: Instant,
}

/// The datagram `seq` of sender `id`: the sequence number, then the pattern.
fn datagram(id: u64, seq: u64, size: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(pattern::slice(id, seq * size as u64 + 8, size - 8));
}

fn send_one(s: &mut Sender, size: usize, buf: &mut Vec<u8>, lost: &mut u64) -> Result<(), String> {
    let seq = s.next_seq;
    s.next_seq += 1;
    datagram(s.id, seq, size, buf);
    match s.socket.send(buf) {
        Ok(n) if n == size => {
            s.inflight.push_back((seq, Instant::now()));
            Ok(())
        }
        Ok(n) => Err(format!("sender {}: sent {n} of {size} bytes", s.id)),
        // The socket buffer is full: this one is lost before it left.
        Err(e) if e.kind() == ErrorKind::WouldBlock => {
            *lost += 1;
            Ok(())
        }
        Err(e) => Err(format!("sender {}: send: {e}", s.id)),
    }
}

/// Opens the senders; `before_start` runs just before the clock starts (CPU snapshot).
pub fn run(cfg: &Config, before_start: impl FnOnce()) -> Result<Outcome, String> {
    if cfg.size < 8 {
        return Err("udp mode needs --size of at least 8 (the sequence number)".into());
    }
    let mut poll = Poll::new().map_err(|e| format!("creating poller: {e}"))?;
    let mut events = Events::with_capacity(1024);
    let local: SocketAddr = match cfg.addr {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    };
    let now = Instant::now();
    let mut senders = Vec::with_capacity(cfg.senders);
    for i in 0..cfg.senders {
        let std = StdSocket::bind(local).map_err(|e| format!("binding sender {i}: {e}"))?;
        std.connect(cfg.addr)
            .map_err(|e| format!("connecting sender {i} to {}: {e}", cfg.addr))?;
        std.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut socket = UdpSocket::from_std(std);
        poll.registry()
            .register(&mut socket, Token(i), Interest::READABLE)
            .map_err(|e| format!("registering sender {i}: {e}"))?;
        senders.push(Sender {
            id: i as u64,
            socket,
            next_seq: 0,
            inflight: VecDeque::new(),
            last_progress: now,
        });
    }
    let mut out = Outcome::default();
    let mut buf = Vec::with_capacity(cfg.size);
    let mut rbuf = vec![0u8; 65_536];
    before_start();
    let start = Instant::now();
    let deadline = start + cfg.duration;
    for s in senders.iter_mut() {
        s.last_progress = start;
        for _ in 0..cfg.window {
            send_one(s, cfg.size, &mut buf, &mut out.lost)?;
        }
    }
    let drain_until = deadline + cfg.retry.max(Duration::from_millis(200));
    let mut next_check = start + cfg.retry / 2;
    loop {
        let now = Instant::now();
        let sending = now < deadline;
        if !sending && (now >= drain_until || senders.iter().all(|s| s.inflight.is_empty())) {
            break;
        }
        if now >= next_check {
            next_check = now + cfg.retry / 2;
            for s in senders.iter_mut() {
                // Anything older than `retry` was dropped somewhere: count and replace it.
                while let Some(&(_, sent)) = s.inflight.front() {
                    if now - sent < cfg.retry {
                        break;
                    }
                    s.inflight.pop_front();
                    out.lost += 1;
                }
                if sending {
                    while s.inflight.len() < cfg.window {
                        send_one(s, cfg.size, &mut buf, &mut out.lost)?;
                    }
                    if now - s.last_progress > cfg.timeout {
                        return Err(format!(
                            "sender {}: no echo for {:?} ({} echoed in all): server stalled or dead",
                            s.id, cfg.timeout, out.msgs
                        ));
                    }
                }
            }
        }
        let wait = next_check.saturating_duration_since(now).min(Duration::from_millis(10));
        poll.poll(&mut events, Some(wait))
            .map_err(|e| format!("poll: {e}"))?;
        for ev in events.iter() {
            let s = &mut senders[ev.token().0];
            loop {
                let n = match s.socket.recv(&mut rbuf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("sender {}: recv: {e} (is the server up?)", s.id)),
                };
                let got = Instant::now();
                if n != cfg.size {
                    return Err(format!(
                        "sender {}: a {n}-byte echo of a {}-byte datagram",
                        s.id, cfg.size
                    ));
                }
                let seq = u64::from_le_bytes(rbuf[..8].try_into().expect("8 bytes"));
                pattern::verify(s.id, seq * cfg.size as u64 + 8, &rbuf[8..n])
                    .map_err(|e| format!("datagram {seq}: {e}"))?;
                // Older ones still in flight were dropped (loopback keeps order).
                let Some(pos) = s.inflight.iter().position(|&(q, _)| q == seq) else {
                    if seq >= s.next_seq {
                        return Err(format!("sender {}: an echo of {seq}, never sent", s.id));
                    }
                    out.late += 1;
                    continue;
                };
                out.lost += pos as u64;
                let (_, sent) = s.inflight.drain(..=pos).last().expect("found above");
                out.msgs += 1;
                out.bytes += n as u64;
                out.lat_ns
                    .push((got - sent).as_nanos().min(u128::from(u32::MAX)) as u32);
                s.last_progress = got;
                if Instant::now() < deadline {
                    while s.inflight.len() < cfg.window {
                        send_one(s, cfg.size, &mut buf, &mut out.lost)?;
                    }
                }
            }
        }
    }
    out.elapsed = Instant::now().min(deadline) - start;
    Ok(out)
}
