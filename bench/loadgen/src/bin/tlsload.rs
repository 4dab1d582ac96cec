//! TLS load generator for the TLS echo benchmarks (rustls with ring as the client, the same
//! stack on both sides): bulk throughput, full and resumed handshakes per second, and memory
//! per idle TLS connection. Every echoed byte is checked.
//!
//! ```text
//! tlsload --addr HOST:PORT --ca CA.pem --mode bulk|handshake|hold [--resume]
//!         [--conns C] [--size M] [--window W] [--duration S] [--timeout S]
//!         [--server-pid PID]
//! ```
//!
//! - `bulk`: C connections (default 10) stream M-byte chunks (16 KiB) with at most W bytes
//!   (256 KiB) sent but not echoed, on one mio event loop; reports MB/s.
//! - `handshake`: C client threads (default 2) loop over connect, full handshake (or a
//!   resumed one with `--resume`), one 64-byte echo, `close_notify`, wait for the server's
//!   close; reports handshakes/s (and how many were resumed).
//! - `hold`: C connections (default 10000) are opened and shaken hands with one by one, then
//!   each echoes 64 bytes; reports the server's RSS growth per connection.
//! - `stall`: C connections (default 5000) each send the first half of a ClientHello and
//!   nothing more (a handshake that stalls); reports the server's RSS growth per connection
//!   while they wait (the server's handshake timeout closes them later).
//!
//! With `--server-pid`, the server's CPU time (utime + stime) per unit is reported. Output:
//! one JSON line; exit status 1 if the run failed (a wrong byte, a stall, a closed
//! connection), 2 for bad arguments.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream as StdStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};

const TABLE_LEN: usize = 65_521;
const MAX_CHUNK: usize = 64 * 1024;

/// The stream pattern: byte `p` of connection `id` is `TABLE[(p + 7919 id) mod 65521]`.
struct Pattern(Vec<u8>);

impl Pattern {
    fn new() -> Pattern {
        let mut x: u32 = 0x9e37_79b9;
        let head: Vec<u8> = (0..TABLE_LEN)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        // The tail repeats the head, so a slice across the wrap reads the same bytes as
        // two slices either side of it.
        Pattern(
            (0..TABLE_LEN + MAX_CHUNK)
                .map(|i| head[i % TABLE_LEN])
                .collect(),
        )
    }
    fn slice(&self, id: u64, off: u64, n: usize) -> &[u8] {
        let start = ((off + 7919 * id) % TABLE_LEN as u64) as usize;
        &self.0[start..start + n]
    }
    fn check(&self, id: u64, off: u64, got: &[u8]) -> Result<(), String> {
        for (i, part) in got.chunks(MAX_CHUNK).enumerate() {
            let at = off + (i * MAX_CHUNK) as u64;
            let want = self.slice(id, at, part.len());
            if part != want {
                let first = part.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                // Where in the stream the bytes received would have come from (a repeat, a
                // skip), for the message.
                let found = (0..at + 4 * MAX_CHUNK as u64).find(|o| {
                    part.len() >= first + 64 && self.slice(id, *o, 64) == &part[first..first + 64]
                });
                return Err(format!(
                    "connection {id}: wrong bytes at offset {} (read of {} bytes at {at}; they are the stream's bytes at {found:?})",
                    at + first as u64,
                    got.len()
                ));
            }
        }
        Ok(())
    }
}

struct Args {
    addr: SocketAddr,
    ca: String,
    mode: String,
    resume: bool,
    conns: usize,
    size: usize,
    window: usize,
    duration: Duration,
    timeout: Duration,
    server_pid: Option<i32>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut addr, mut ca, mut mode) = (None, None, None);
    let (mut resume, mut conns, mut size, mut window) = (false, None, 16 * 1024, 256 * 1024);
    let (mut duration, mut timeout, mut server_pid) = (5.0, 5.0, None);
    while let Some(a) = it.next() {
        let mut v = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--addr" => addr = Some(v("--addr")?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--ca" => ca = Some(v("--ca")?),
            "--mode" => mode = Some(v("--mode")?),
            "--resume" => resume = true,
            "--conns" => conns = Some(v("--conns")?.parse().map_err(|e| format!("--conns: {e}"))?),
            "--size" => size = v("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--window" => {
                window = v("--window")?
                    .parse()
                    .map_err(|e| format!("--window: {e}"))?
            }
            "--duration" => {
                duration = v("--duration")?
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?
            }
            "--timeout" => {
                timeout = v("--timeout")?
                    .parse()
                    .map_err(|e| format!("--timeout: {e}"))?
            }
            "--server-pid" => {
                server_pid = Some(
                    v("--server-pid")?
                        .parse()
                        .map_err(|e| format!("--server-pid: {e}"))?,
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let mode: String = mode.ok_or("--mode is required")?;
    let conns = conns.unwrap_or(match mode.as_str() {
        "bulk" => 10,
        "handshake" => 2,
        "hold" => 10_000,
        "stall" => 5_000,
        other => return Err(format!("unknown mode {other:?}")),
    });
    if size == 0 || size > MAX_CHUNK || window < size {
        return Err("--size must be 1..=65536 and --window at least --size".into());
    }
    Ok(Args {
        addr: addr.ok_or("--addr is required")?,
        ca: ca.ok_or("--ca is required")?,
        mode,
        resume,
        conns,
        size,
        window,
        duration: Duration::from_secs_f64(duration),
        timeout: Duration::from_secs_f64(timeout),
        server_pid,
    })
}

fn client_config(ca: &str, resume: bool) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a name")
}

/// utime + stime of `pid`, in microseconds.
fn cpu_us(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000 / hz)
}

fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Connects and completes the handshake with blocking I/O.
fn connect_tls(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<(StdStream, ClientConnection), String> {
    let mut s = StdStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut c =
        ClientConnection::new(Arc::clone(config), server_name()).map_err(|e| e.to_string())?;
    while c.is_handshaking() {
        c.complete_io(&mut s)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    Ok((s, c))
}

/// One blocking echo of `size` bytes.
fn echo_blocking(
    s: &mut StdStream,
    c: &mut ClientConnection,
    pattern: &Pattern,
    id: u64,
    size: usize,
) -> Result<(), String> {
    let mut tls = rustls::Stream::new(c, s);
    tls.write_all(pattern.slice(id, 0, size))
        .map_err(|e| format!("write: {e}"))?;
    let mut got = vec![0u8; size];
    tls.read_exact(&mut got)
        .map_err(|e| format!("read the echo: {e}"))?;
    pattern.check(id, 0, &got)
}

fn handshakes(a: &Args) -> Result<Vec<(String, String)>, String> {
    let config = client_config(&a.ca, a.resume)?;
    let pattern = Arc::new(Pattern::new());
    let done = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let cpu0 = a.server_pid.and_then(cpu_us);
    let start = Instant::now();
    let deadline = start + a.duration;
    let threads: Vec<_> = (0..a.conns)
        .map(|t| {
            let (config, pattern, done, resumed, failed) = (
                config.clone(),
                pattern.clone(),
                done.clone(),
                resumed.clone(),
                failed.clone(),
            );
            let (addr, timeout) = (a.addr, a.timeout);
            std::thread::spawn(move || -> Result<(), String> {
                let mut cycle = 0u64;
                while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                    let id = ((t as u64) << 32) | cycle;
                    let r = (|| {
                        let (mut s, mut c) = connect_tls(addr, &config, timeout)?;
                        echo_blocking(&mut s, &mut c, &pattern, id, 64)?;
                        if c.handshake_kind() == Some(HandshakeKind::Resumed) {
                            resumed.fetch_add(1, Ordering::Relaxed);
                        }
                        c.send_close_notify();
                        while c.wants_write() {
                            c.write_tls(&mut s)
                                .map_err(|e| format!("close_notify: {e}"))?;
                        }
                        let _ = s.shutdown(Shutdown::Write);
                        let mut buf = [0u8; 4096];
                        // The server's close_notify, then its close.
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(_) => {}
                                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                                Err(e) => return Err(format!("waiting for the close: {e}")),
                            }
                        }
                        Ok::<(), String>(())
                    })();
                    if let Err(e) = r {
                        failed.store(true, Ordering::Relaxed);
                        return Err(format!("client {t}, cycle {cycle}: {e}"));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    cycle += 1;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| "a client thread panicked".to_string())??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let mut out = vec![
        ("handshakes".into(), n.to_string()),
        (
            "resumed".into(),
            resumed.load(Ordering::Relaxed).to_string(),
        ),
        ("elapsed_s".into(), format!("{elapsed:.3}")),
        ("per_s".into(), format!("{:.1}", n as f64 / elapsed)),
    ];
    if let (Some(c0), Some(c1)) = (cpu0, a.server_pid.and_then(cpu_us)) {
        out.push(("server_cpu_us".into(), (c1 - c0).to_string()));
        out.push((
            "server_cpu_us_per_handshake".into(),
            format!("{:.2}", (c1 - c0) as f64 / n.max(1) as f64),
        ));
    }
    Ok(out)
}

fn hold(a: &Args) -> Result<Vec<(String, String)>, String> {
    let pid = a.server_pid.ok_or("hold needs --server-pid")?;
    let config = client_config(&a.ca, false)?;
    let pattern = Pattern::new();
    let before = rss_kib(pid).ok_or("cannot read the server's RSS")?;
    let mut held = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        held.push(
            connect_tls(a.addr, &config, a.timeout).map_err(|e| format!("connection {i}: {e}"))?,
        );
    }
    for (i, (s, c)) in held.iter_mut().enumerate() {
        echo_blocking(s, c, &pattern, i as u64, 64).map_err(|e| format!("connection {i}: {e}"))?;
    }
    let after = rss_kib(pid).ok_or("cannot read the server's RSS")?;
    let per = (after.saturating_sub(before)) as f64 / a.conns as f64;
    Ok(vec![
        ("conns".into(), a.conns.to_string()),
        ("rss_before_kib".into(), before.to_string()),
        ("rss_after_kib".into(), after.to_string()),
        ("kib_per_conn".into(), format!("{per:.2}")),
    ])
}

fn stall(a: &Args) -> Result<Vec<(String, String)>, String> {
    let pid = a.server_pid.ok_or("stall needs --server-pid")?;
    let config = client_config(&a.ca, false)?;
    let mut hello = Vec::new();
    let mut c = ClientConnection::new(config, server_name()).map_err(|e| e.to_string())?;
    c.write_tls(&mut hello).map_err(|e| e.to_string())?;
    let half = &hello[..hello.len() / 2];
    let before = rss_kib(pid).ok_or("cannot read the server's RSS")?;
    let mut held = Vec::with_capacity(a.conns);
    for i in 0..a.conns {
        let mut s = StdStream::connect_timeout(&a.addr, a.timeout)
            .map_err(|e| format!("connection {i}: connect: {e}"))?;
        s.write_all(half)
            .map_err(|e| format!("connection {i}: {e}"))?;
        held.push(s);
    }
    // Let the server read every half hello (it answers nothing until the rest comes).
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid).ok_or("cannot read the server's RSS")?;
    let per = (after.saturating_sub(before)) as f64 / a.conns as f64;
    Ok(vec![
        ("conns".into(), a.conns.to_string()),
        ("hello_bytes_sent".into(), half.len().to_string()),
        ("rss_before_kib".into(), before.to_string()),
        ("rss_after_kib".into(), after.to_string()),
        ("kib_per_conn".into(), format!("{per:.2}")),
    ])
}

struct Conn {
    id: u64,
    sock: TcpStream,
    tls: ClientConnection,
    sent: u64,
    recvd: u64,
    last: Instant,
}

impl Conn {
    /// Sends what rustls holds; `false` if the socket is full.
    fn flush(&mut self) -> Result<bool, String> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(format!("connection {}: write: {e}", self.id)),
            }
        }
        Ok(true)
    }
}

fn bulk(a: &Args) -> Result<Vec<(String, String)>, String> {
    let config = client_config(&a.ca, false)?;
    let pattern = Pattern::new();
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns = Vec::new();
    for i in 0..a.conns {
        let (s, tls) =
            connect_tls(a.addr, &config, a.timeout).map_err(|e| format!("connection {i}: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut sock = TcpStream::from_std(s);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)
            .map_err(|e| e.to_string())?;
        conns.push(Conn {
            id: i as u64,
            sock,
            tls,
            sent: 0,
            recvd: 0,
            last: Instant::now(),
        });
    }
    let cpu0 = a.server_pid.and_then(cpu_us);
    let start = Instant::now();
    let deadline = start + a.duration;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut bytes: u64 = 0;
    let mut stopping = false;
    let mut pending: Vec<usize> = (0..conns.len()).collect();
    loop {
        let now = Instant::now();
        if now >= deadline {
            stopping = true;
        }
        if stopping && conns.iter().all(|c| c.recvd == c.sent) {
            break;
        }
        if now > deadline + a.timeout * 4 {
            return Err("the run did not drain in time".into());
        }
        for i in std::mem::take(&mut pending) {
            let c = &mut conns[i];
            // Read, decrypt, check.
            loop {
                match c.tls.read_tls(&mut c.sock) {
                    Ok(0) => return Err(format!("connection {}: the server closed", c.id)),
                    Ok(_) => {
                        c.tls
                            .process_new_packets()
                            .map_err(|e| format!("connection {}: {e}", c.id))?;
                        loop {
                            match c.tls.reader().read(&mut buf) {
                                Ok(0) => return Err(format!("connection {}: close_notify", c.id)),
                                Ok(n) => {
                                    if c.recvd + n as u64 > c.sent {
                                        return Err(format!(
                                            "connection {}: echoed more than sent",
                                            c.id
                                        ));
                                    }
                                    pattern.check(c.id, c.recvd, &buf[..n])?;
                                    c.recvd += n as u64;
                                    bytes += n as u64;
                                    c.last = Instant::now();
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(e) => return Err(format!("connection {}: {e}", c.id)),
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("connection {}: read: {e}", c.id)),
                }
            }
            // Write while the window allows and the socket takes it.
            if c.flush()? && !stopping {
                while c.sent < c.recvd + a.window as u64 {
                    let n = a.size - (c.sent % a.size as u64) as usize;
                    c.tls
                        .writer()
                        .write_all(pattern.slice(c.id, c.sent, n))
                        .map_err(|e| format!("connection {}: {e}", c.id))?;
                    c.sent += n as u64;
                    if !c.flush()? {
                        break;
                    }
                }
            }
        }
        if conns
            .iter()
            .any(|c| c.recvd < c.sent && c.last.elapsed() > a.timeout)
        {
            return Err("a connection made no progress: server stalled".into());
        }
        match poll.poll(&mut events, Some(Duration::from_millis(100))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        pending.extend(events.iter().map(|e| e.token().0));
        if pending.is_empty() && !stopping {
            pending.extend(0..conns.len());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut out = vec![
        ("bytes".into(), bytes.to_string()),
        ("elapsed_s".into(), format!("{elapsed:.3}")),
        (
            "mb_per_s".into(),
            format!("{:.2}", bytes as f64 / elapsed / 1e6),
        ),
    ];
    if let (Some(c0), Some(c1)) = (cpu0, a.server_pid.and_then(cpu_us)) {
        out.push(("server_cpu_us".into(), (c1 - c0).to_string()));
        out.push((
            "server_cpu_ns_per_byte".into(),
            format!("{:.3}", (c1 - c0) as f64 * 1000.0 / bytes.max(1) as f64),
        ));
    }
    Ok(out)
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tlsload: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match a.mode.as_str() {
        "bulk" => bulk(&a),
        "handshake" => handshakes(&a),
        "stall" => stall(&a),
        _ => hold(&a),
    };
    let mode = if a.mode == "handshake" && a.resume {
        "resumed"
    } else {
        a.mode.as_str()
    };
    match r {
        Ok(fields) => {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            println!("{{\"mode\":\"{mode}\",\"ok\":true,{}}}", body.join(","));
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{{\"mode\":\"{mode}\",\"ok\":false,\"error\":{:?}}}", e);
            ExitCode::from(1)
        }
    }
}
