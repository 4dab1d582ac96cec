//! `churn`: connect, one echo round, close; as many cycles as the clients can do.
//!
//! Each of `clients` threads repeats, with blocking sockets: connect (with a timeout), write one
//! `size`-byte message, read and verify its echo, shut down the write side, and wait for the
//! server to close its side (EOF), then close. A cycle therefore covers the server's whole
//! connection lifetime: accept, one read and write, and its close on EOF.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::pattern::{self, MAX_CHUNK};

pub struct Outcome {
    pub cycles: u64,
    pub lat_ns: Vec<u32>,
    pub elapsed: Duration,
}

pub fn run(
    addr: SocketAddr,
    clients: usize,
    size: usize,
    duration: Duration,
    timeout: Duration,
    before_start: impl FnOnce(),
) -> Result<Outcome, String> {
    before_start();
    let start = Instant::now();
    let deadline = start + duration;
    let failed = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..clients)
        .map(|t| {
            let failed = failed.clone();
            std::thread::spawn(move || {
                let r = client(t as u64, addr, size, deadline, timeout, &failed);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let mut out = Outcome {
        cycles: 0,
        lat_ns: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut first_err = None;
    for h in handles {
        match h.join() {
            Ok(Ok(lat)) => {
                out.cycles += lat.len() as u64;
                out.lat_ns.extend(lat);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(_) => {
                first_err.get_or_insert("a client thread panicked".to_string());
            }
        }
    }
    out.elapsed = start.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

fn client(
    t: u64,
    addr: SocketAddr,
    size: usize,
    deadline: Instant,
    timeout: Duration,
    failed: &AtomicBool,
) -> Result<Vec<u32>, String> {
    let mut lat = Vec::new();
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut cycle: u64 = 0;
    loop {
        let t0 = Instant::now();
        if t0 >= deadline || failed.load(Ordering::Relaxed) {
            return Ok(lat);
        }
        let id = (t << 32) | cycle;
        let ctx = |what: &str, e: std::io::Error| {
            format!(
                "client {t}, cycle {cycle}: {what}: {}",
                crate::io_err(&e, timeout)
            )
        };
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                format!(
                    "client {t}, cycle {cycle}: connect: out of local ports (closed connections wait in \
                     TIME_WAIT; see net.ipv4.ip_local_port_range and net.ipv4.tcp_tw_reuse): {e}"
                )
            } else {
                ctx("connect", e)
            }
        })?;
        s.set_nodelay(true).map_err(|e| ctx("set_nodelay", e))?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| ctx("set_read_timeout", e))?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| ctx("set_write_timeout", e))?;
        let mut off = 0;
        while off < size {
            let n = (size - off).min(MAX_CHUNK);
            s.write_all(pattern::slice(id, off as u64, n))
                .map_err(|e| ctx("write", e))?;
            off += n;
        }
        let mut got = 0;
        while got < size {
            let want = (size - got).min(MAX_CHUNK);
            match s.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(format!(
                        "client {t}, cycle {cycle}: server closed after echoing {got} of {size} bytes"
                    ));
                }
                Ok(n) => {
                    pattern::verify(id, got as u64, &buf[..n])
                        .map_err(|e| format!("client {t}, cycle {cycle}: {e}"))?;
                    got += n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ctx(&format!("reading the echo ({got} of {size} bytes)"), e)),
            }
        }
        s.shutdown(Shutdown::Write)
            .map_err(|e| ctx("shutdown", e))?;
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                return Err(format!(
                    "client {t}, cycle {cycle}: {n} extra bytes after the echo"
                ));
            }
            Err(e) => return Err(ctx("waiting for the server to close after our EOF", e)),
        }
        drop(s);
        lat.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        cycle += 1;
    }
}
