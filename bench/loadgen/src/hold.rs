//! `hold`: open N idle connections, then one echo round on each; server RSS per connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::acceptq::AcceptQueue;
use crate::pattern::{self, MAX_CHUNK};
use crate::procstat;

pub struct Outcome {
    pub answered: u64,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    /// Server CPU time spent from the first connect to the last answer, in microseconds.
    pub server_cpu_us: Option<u64>,
    pub connect_elapsed: Duration,
    pub elapsed: Duration,
}

/// Raises this process's RLIMIT_NOFILE soft limit so `need` descriptors fit.
pub fn raise_nofile(need: u64) -> Result<(), String> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if rl.rlim_cur >= need {
        return Ok(());
    }
    if rl.rlim_max < need {
        return Err(format!(
            "need {need} file descriptors but the hard limit (ulimit -Hn) is {}; raise it or use fewer --conns",
            rl.rlim_max
        ));
    }
    rl.rlim_cur = need as libc::rlim_t;
    // SAFETY: rl is a valid rlimit with cur <= max.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub fn run(
    addr: SocketAddr,
    n: usize,
    size: usize,
    timeout: Duration,
    server_pid: Option<u32>,
) -> Result<Outcome, String> {
    raise_nofile(n as u64 + 64)?;
    let rss_before_kib = server_pid.map(procstat::vm_rss_kib).transpose()?;
    let cpu_before = server_pid.map(procstat::cpu_us).transpose()?;
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    // Pace the connects on the server's accept queue (see acceptq.rs); without sock_diag
    // (not Linux, or refused) connect unpaced.
    let mut aq = AcceptQueue::new(addr.port(), addr.is_ipv6()).ok();
    let mut check_every = 1;
    for i in 0..n {
        if i % check_every == 0
            && let Some(q) = aq.as_mut()
        {
            match wait_for_accepts(q, timeout) {
                Ok(Some(every)) => check_every = every,
                Ok(None) => aq = None,
                Err(e) => return Err(format!("opening connection {i} of {n}: {e}")),
            }
        }
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
            format!(
                "opening connection {i} of {n}: {e} ({} are open)",
                conns.len()
            )
        })?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        conns.push(s);
    }
    let connect_elapsed = start.elapsed();
    for (i, s) in conns.iter_mut().enumerate() {
        let mut off = 0;
        while off < size {
            let k = (size - off).min(MAX_CHUNK);
            s.write_all(pattern::slice(i as u64, off as u64, k))
                .map_err(|e| format!("connection {i}: writing: {e}"))?;
            off += k;
        }
    }
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut answered = 0;
    for (i, s) in conns.iter_mut().enumerate() {
        let mut got = 0;
        while got < size {
            let want = (size - got).min(MAX_CHUNK);
            match s.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(format!(
                        "connection {i}: server closed after echoing {got} of {size} bytes ({answered} of {n} answered)"
                    ));
                }
                Ok(k) => {
                    pattern::verify(i as u64, got as u64, &buf[..k])?;
                    got += k;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(format!(
                        "connection {i}: reading the echo: {} ({answered} of {n} answered)",
                        crate::io_err(&e, timeout)
                    ));
                }
            }
        }
        answered += 1;
    }
    let elapsed = start.elapsed();
    let rss_after_kib = server_pid.map(procstat::vm_rss_kib).transpose()?;
    let cpu_after = server_pid.map(procstat::cpu_us).transpose()?;
    let server_cpu_us = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
    // Nothing more may have come back than was sent.
    for (i, s) in conns.iter_mut().enumerate() {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) => return Err(format!("connection {i}: server closed the idle connection")),
            Ok(k) => return Err(format!("connection {i}: {k} extra bytes after the echo")),
            Err(e) => return Err(format!("connection {i}: {e}")),
        }
    }
    drop(conns);
    Ok(Outcome {
        answered,
        rss_before_kib,
        rss_after_kib,
        server_cpu_us,
        connect_elapsed,
        elapsed,
    })
}

/// Waits while the listener's accept queue is at least half its backlog. Returns how many
/// connects may go before the next check, or None if the queue cannot be read.
fn wait_for_accepts(q: &mut AcceptQueue, timeout: Duration) -> Result<Option<usize>, String> {
    let t0 = Instant::now();
    loop {
        let Ok(Some((queued, backlog))) = q.get() else {
            return Ok(None);
        };
        let limit = (backlog / 2).max(1);
        if queued < limit {
            return Ok(Some(((limit - queued) as usize / 2).clamp(1, 64)));
        }
        if t0.elapsed() > timeout {
            return Err(format!(
                "the server left {queued} connections unaccepted for {timeout:?} (backlog {backlog})"
            ));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}
