//! `loadgen`: the load generator of torsion's side-by-side echo benchmarks.
//!
//! It favours no server: std threads and blocking sockets (churn, hold) or mio event loops
//! (pingpong, bulk), never tokio. Every echoed byte is checked against what was sent; any
//! mismatch, short read, stall or early close fails the run with exit status 1.

mod acceptq;
mod churn;
mod datagrams;
mod hold;
mod pattern;
mod procstat;
mod streams;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: loadgen --addr HOST:PORT --mode pingpong|bulk|pipelined|churn|hold|udp [options]

modes:
  pingpong  C connections; each sends an M-byte message and waits for the whole echo before
            the next. Reports msgs/s and round-trip latency p50/p99/p99.9.
  bulk      C connections stream M-byte chunks, at most --window bytes unechoed each.
            Reports echoed MB/s (10^6 bytes).
  pipelined C connections each keep --depth requests in flight: lines of M bytes (M - 1
            printable bytes and a newline); the server answers each line with itself.
            Reports requests/s and request latency p50/p99/p99.9.
  churn     C client threads each loop: connect, one M-byte echo, close (waiting for the
            server's close). Reports cycles/s.
  hold      open C idle connections, then one M-byte echo on each; with --server-pid reports
            the server's RSS per connection (/proc/PID/status VmRSS after minus before).
  udp       C UDP senders (sockets connected to the server), each keeping --window M-byte
            datagrams in flight (default 1: ping-pong). Reports datagrams/s, round trips,
            and datagrams lost (not answered within 1 s; then replaced) or late.

options:
  --conns C          connections (clients for churn, senders for udp); default pingpong 50,
                     bulk 10, pipelined 50, churn 4, hold 10000, udp 32
  --size M           message/chunk/line bytes; default 64 (bulk 16384, pipelined 32)
  --depth D          pipelined: requests in flight per connection; default 16
  --duration SECS    length of the load (not hold); default 5
  --window N         bulk: unechoed bytes allowed per connection, default 262144; udp:
                     datagrams in flight per sender, default 1
  --threads T        pingpong/bulk/pipelined: event-loop threads; default 1
  --timeout SECS     connect and per-connection no-progress timeout; default 5
  --server-pid PID   also report server CPU (utime+stime, all threads) per message/cycle/
                     connection, and (hold) its RSS
  --json             print one JSON line of results instead of text
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Pingpong,
    Bulk,
    Pipelined,
    Churn,
    Hold,
    Udp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pingpong => "pingpong",
            Mode::Bulk => "bulk",
            Mode::Pipelined => "pipelined",
            Mode::Churn => "churn",
            Mode::Hold => "hold",
            Mode::Udp => "udp",
        }
    }
}

struct Args {
    addr: SocketAddr,
    mode: Mode,
    conns: usize,
    size: usize,
    duration: Duration,
    window: usize,
    depth: usize,
    threads: usize,
    timeout: Duration,
    server_pid: Option<u32>,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut mode = None;
    let (mut conns, mut size, mut threads) = (None, None, None);
    let mut duration = 5.0f64;
    let mut window: Option<usize> = None;
    let mut depth = 16usize;
    let mut timeout = 5.0f64;
    let mut server_pid = None;
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a valid number"))
        }
        match flag.as_str() {
            "--addr" => {
                let v = value("--addr")?;
                addr = Some(v.parse::<SocketAddr>().map_err(|_| {
                    format!("--addr: {v:?} is not HOST:PORT (e.g. 127.0.0.1:8000)")
                })?);
            }
            "--mode" => {
                mode = Some(match value("--mode")?.as_str() {
                    "pingpong" => Mode::Pingpong,
                    "bulk" => Mode::Bulk,
                    "pipelined" => Mode::Pipelined,
                    "churn" => Mode::Churn,
                    "hold" => Mode::Hold,
                    "udp" => Mode::Udp,
                    other => return Err(format!("--mode: unknown mode {other:?}")),
                })
            }
            "--conns" => conns = Some(num::<usize>("--conns", value("--conns")?)?),
            "--size" => size = Some(num::<usize>("--size", value("--size")?)?),
            "--duration" => duration = num("--duration", value("--duration")?)?,
            "--window" => window = Some(num("--window", value("--window")?)?),
            "--depth" => depth = num("--depth", value("--depth")?)?,
            "--threads" => threads = Some(num::<usize>("--threads", value("--threads")?)?),
            "--timeout" => timeout = num("--timeout", value("--timeout")?)?,
            "--server-pid" => {
                server_pid = Some(num::<u32>("--server-pid", value("--server-pid")?)?)
            }
            "--json" => json = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let addr = addr.ok_or("--addr is required")?;
    let mode = mode.ok_or("--mode is required")?;
    let conns = conns.unwrap_or(match mode {
        Mode::Pingpong => 50,
        Mode::Bulk => 10,
        Mode::Pipelined => 50,
        Mode::Churn => 4,
        Mode::Hold => 10_000,
        Mode::Udp => 32,
    });
    let window = window.unwrap_or(if mode == Mode::Udp { 1 } else { 256 * 1024 });
    let size = size.unwrap_or(match mode {
        Mode::Bulk => 16 * 1024,
        Mode::Pipelined => 32,
        _ => 64,
    });
    let threads = threads.unwrap_or(1);
    if conns == 0 || size == 0 || threads == 0 || window == 0 || depth == 0 {
        return Err("--conns, --size, --threads, --window and --depth must be positive".into());
    }
    if mode == Mode::Pipelined && size < 2 {
        return Err("--size must be at least 2 in pipelined mode (a byte and a newline)".into());
    }
    if !(duration > 0.0 && duration <= 3600.0) {
        return Err("--duration must be between 0 and 3600 seconds".into());
    }
    if !(timeout > 0.0 && timeout <= 600.0) {
        return Err("--timeout must be between 0 and 600 seconds".into());
    }
    if mode == Mode::Bulk && window < size {
        return Err("--window must be at least --size".into());
    }
    Ok(Args {
        addr,
        mode,
        conns,
        size,
        duration: Duration::from_secs_f64(duration),
        window,
        depth,
        threads: threads.min(conns),
        timeout: Duration::from_secs_f64(timeout),
        server_pid,
        json,
    })
}

/// An I/O error as a sentence; a blocking socket's read timeout shows up as WouldBlock.
pub fn io_err(e: &std::io::Error, timeout: Duration) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("nothing for {timeout:?} (server stalled or dead)")
        }
        _ => e.to_string(),
    }
}

/// One result field, printed in the JSON line.
enum Val {
    Int(u64),
    Num(f64),
    Str(String),
    Bool(bool),
}

struct Report {
    fields: Vec<(&'static str, Val)>,
    text: Vec<String>,
}

impl Report {
    fn put(&mut self, k: &'static str, v: Val) {
        self.fields.push((k, v));
    }
    fn json(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Val::Int(i) => i.to_string(),
                    Val::Num(x) if x.is_finite() => format!("{x:.3}"),
                    Val::Num(_) => "null".into(),
                    Val::Str(s) => json_str(s),
                    Val::Bool(b) => b.to_string(),
                };
                format!("{}:{v}", json_str(k))
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Nearest-rank percentile of sorted nanosecond samples, in microseconds.
fn pct_us(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn latency(r: &mut Report, mut lat: Vec<u32>, what: &str) {
    lat.sort_unstable();
    let (p50, p99, p999) = (pct_us(&lat, 0.50), pct_us(&lat, 0.99), pct_us(&lat, 0.999));
    let max = lat.last().map_or(f64::NAN, |&m| m as f64 / 1000.0);
    r.put("p50_us", Val::Num(p50));
    r.put("p99_us", Val::Num(p99));
    r.put("p999_us", Val::Num(p999));
    r.put("max_us", Val::Num(max));
    r.text.push(format!(
        "  {what} latency: p50 {p50:.1} µs   p99 {p99:.1} µs   p99.9 {p999:.1} µs   max {max:.1} µs"
    ));
}

fn cpu(r: &mut Report, cpu_us: Option<u64>, count: u64, per: &str) {
    if let Some(c) = cpu_us {
        let per_msg = if count > 0 {
            c as f64 / count as f64
        } else {
            f64::NAN
        };
        r.put("server_cpu_us", Val::Int(c));
        r.put("server_cpu_us_per_msg", Val::Num(per_msg));
        r.text.push(format!(
            "  server CPU: {per_msg:.3} µs per {per} ({:.3} s user+system)",
            c as f64 / 1e6
        ));
    }
}

fn run(a: &Args) -> Result<Report, String> {
    let mut r = Report {
        fields: Vec::new(),
        text: Vec::new(),
    };
    r.put("mode", Val::Str(a.mode.name().into()));
    r.put("addr", Val::Str(a.addr.to_string()));
    r.put("conns", Val::Int(a.conns as u64));
    r.put("size", Val::Int(a.size as u64));
    let pid = a.server_pid;
    if let Some(p) = pid {
        procstat::cpu_us(p)?; // fail early on a wrong pid
    }
    let mut cpu_before = None;
    let snapshot = |slot: &mut Option<u64>| {
        if let Some(p) = pid {
            *slot = procstat::cpu_us(p).ok();
        }
    };
    let cpu_delta = |before: Option<u64>| -> Result<Option<u64>, String> {
        match (pid, before) {
            (Some(p), Some(b)) => Ok(Some(procstat::cpu_us(p)?.saturating_sub(b))),
            (Some(p), None) => Err(format!("could not read the CPU time of process {p}")),
            _ => Ok(None),
        }
    };
    match a.mode {
        Mode::Pingpong | Mode::Bulk | Mode::Pipelined => {
            // Enough descriptors for the connections (some systems default to 1024).
            hold::raise_nofile(a.conns as u64 + 64)?;
            let kind = match a.mode {
                Mode::Bulk => streams::Kind::Bulk,
                Mode::Pipelined => streams::Kind::Pipelined,
                _ => streams::Kind::Pingpong,
            };
            let cfg = streams::Config {
                kind,
                addr: a.addr,
                conns: a.conns,
                size: a.size,
                window: a.window,
                depth: a.depth,
                duration: a.duration,
                timeout: a.timeout,
                threads: a.threads,
            };
            let mut user_before = None;
            let o = streams::run(&cfg, || {
                snapshot(&mut cpu_before);
                user_before = pid.and_then(|p| procstat::cpu_split_us(p).ok()).map(|s| s.0);
            })?;
            let cpu_us = cpu_delta(cpu_before)?;
            let user_us = match (pid, user_before) {
                (Some(p), Some(b)) => procstat::cpu_split_us(p).ok().map(|s| s.0.saturating_sub(b)),
                _ => None,
            };
            if let (Some(u), true) = (user_us, o.msgs > 0) {
                r.put("server_user_us_per_msg", Val::Num(u as f64 / o.msgs as f64));
            }
            let secs = o.elapsed.as_secs_f64();
            let (rate, mbs) = (o.msgs as f64 / secs, o.bytes as f64 / secs / 1e6);
            r.put("threads", Val::Int(a.threads as u64));
            if kind == streams::Kind::Bulk {
                r.put("window", Val::Int(a.window as u64));
            }
            if kind == streams::Kind::Pipelined {
                r.put("depth", Val::Int(a.depth as u64));
            }
            r.put("elapsed_s", Val::Num(secs));
            r.put("msgs", Val::Int(o.msgs));
            r.put("bytes", Val::Int(o.bytes));
            r.put("msgs_per_s", Val::Num(rate));
            r.put("mb_per_s", Val::Num(mbs));
            r.text.push(format!(
                "loadgen {} {}: {} connections, {}-byte {}, {} thread(s), {:.3} s",
                a.mode.name(),
                a.addr,
                a.conns,
                a.size,
                match kind {
                    streams::Kind::Bulk => "chunks",
                    streams::Kind::Pipelined => "line requests",
                    streams::Kind::Pingpong => "messages",
                },
                a.threads,
                secs
            ));
            if kind != streams::Kind::Bulk && !o.per_conn.is_empty() {
                // Fairness: the fewest and most messages one connection completed.
                let min = o.per_conn.iter().copied().min().unwrap_or(0);
                let max = o.per_conn.iter().copied().max().unwrap_or(0);
                r.put("conn_msgs_min", Val::Int(min));
                r.put("conn_msgs_max", Val::Int(max));
                r.text.push(format!(
                    "  per connection: {min} to {max} messages (fairness {:.3})",
                    if max > 0 { min as f64 / max as f64 } else { f64::NAN }
                ));
            }
            if kind == streams::Kind::Pingpong {
                r.text
                    .push(format!("  {} messages echoed: {rate:.0} msgs/s", o.msgs));
                latency(&mut r, o.lat_ns, "round-trip");
                cpu(&mut r, cpu_us, o.msgs, "message");
            } else if kind == streams::Kind::Pipelined {
                r.text.push(format!(
                    "  {} requests answered ({} in flight per connection): {rate:.0} requests/s",
                    o.msgs, a.depth
                ));
                latency(&mut r, o.lat_ns, "request");
                cpu(&mut r, cpu_us, o.msgs, "request");
                if let Some(c) = cpu_us.filter(|&c| c > 0) {
                    let per_cpu_s = o.msgs as f64 / (c as f64 / 1e6);
                    r.put("requests_per_cpu_s", Val::Num(per_cpu_s));
                    r.text.push(format!(
                        "  {per_cpu_s:.0} requests per server CPU second"
                    ));
                }
            } else {
                r.text.push(format!(
                    "  {} bytes echoed: {mbs:.1} MB/s ({rate:.0} chunks/s, window {} bytes)",
                    o.bytes, a.window
                ));
                cpu(&mut r, cpu_us, o.msgs, &format!("{}-byte chunk", a.size));
                if let Some(c) = cpu_us {
                    let per_mb = c as f64 / (o.bytes as f64 / 1e6);
                    r.put("server_cpu_us_per_mb", Val::Num(per_mb));
                    r.text.push(format!("  server CPU: {per_mb:.1} µs per MB"));
                }
            }
        }
        Mode::Churn => {
            let o = churn::run(a.addr, a.conns, a.size, a.duration, a.timeout, || {
                snapshot(&mut cpu_before)
            })?;
            let cpu_us = cpu_delta(cpu_before)?;
            let secs = o.elapsed.as_secs_f64();
            let rate = o.cycles as f64 / secs;
            r.put("elapsed_s", Val::Num(secs));
            r.put("msgs", Val::Int(o.cycles));
            r.put("msgs_per_s", Val::Num(rate));
            r.text.push(format!(
                "loadgen churn {}: {} client threads, {}-byte echo per connection, {secs:.3} s",
                a.addr, a.conns, a.size
            ));
            r.text.push(format!(
                "  {} cycles (connect, echo, close): {rate:.0} cycles/s",
                o.cycles
            ));
            latency(&mut r, o.lat_ns, "cycle");
            cpu(&mut r, cpu_us, o.cycles, "cycle");
        }
        Mode::Udp => {
            let cfg = datagrams::Config {
                addr: a.addr,
                senders: a.conns,
                size: a.size,
                window: a.window,
                duration: a.duration,
                timeout: a.timeout,
                retry: Duration::from_secs(1),
            };
            let o = datagrams::run(&cfg, || snapshot(&mut cpu_before))?;
            let cpu_us = cpu_delta(cpu_before)?;
            let secs = o.elapsed.as_secs_f64();
            let rate = o.msgs as f64 / secs;
            r.put("window", Val::Int(a.window as u64));
            r.put("elapsed_s", Val::Num(secs));
            r.put("msgs", Val::Int(o.msgs));
            r.put("bytes", Val::Int(o.bytes));
            r.put("lost", Val::Int(o.lost));
            r.put("late", Val::Int(o.late));
            r.put("msgs_per_s", Val::Num(rate));
            r.text.push(format!(
                "loadgen udp {}: {} senders, {}-byte datagrams, {} in flight each, {secs:.3} s",
                a.addr, a.conns, a.size, a.window
            ));
            r.text.push(format!(
                "  {} datagrams echoed: {rate:.0} datagrams/s; {} lost, {} late",
                o.msgs, o.lost, o.late
            ));
            latency(&mut r, o.lat_ns, "round-trip");
            cpu(&mut r, cpu_us, o.msgs, "datagram");
        }
        Mode::Hold => {
            let o = hold::run(a.addr, a.conns, a.size, a.timeout, pid)?;
            r.put("elapsed_s", Val::Num(o.elapsed.as_secs_f64()));
            r.put("connect_s", Val::Num(o.connect_elapsed.as_secs_f64()));
            r.put("answered", Val::Int(o.answered));
            r.put("msgs", Val::Int(o.answered));
            r.text.push(format!(
                "loadgen hold {}: {} connections opened in {:.3} s; all {} answered a {}-byte echo ({:.3} s in all)",
                a.addr,
                a.conns,
                o.connect_elapsed.as_secs_f64(),
                o.answered,
                a.size,
                o.elapsed.as_secs_f64()
            ));
            if let (Some(b), Some(after)) = (o.rss_before_kib, o.rss_after_kib) {
                let per_conn = (after as f64 - b as f64) / a.conns as f64;
                r.put("rss_before_kib", Val::Int(b));
                r.put("rss_after_kib", Val::Int(after));
                r.put("rss_per_conn_kib", Val::Num(per_conn));
                r.text.push(format!(
                    "  server RSS: {b} KiB before, {after} KiB with all open: {per_conn:.3} KiB per connection"
                ));
            }
            cpu(
                &mut r,
                o.server_cpu_us,
                o.answered,
                "connection (accept + one echo)",
            );
        }
    }
    r.text.push("  every echoed byte verified".into());
    r.put("ok", Val::Bool(true));
    Ok(r)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(r) => {
            if args.json {
                println!("{}", r.json());
            } else {
                for l in &r.text {
                    println!("{l}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen {} {}: FAILED: {e}", args.mode.name(), args.addr);
            if args.json {
                let mut r = Report {
                    fields: Vec::new(),
                    text: Vec::new(),
                };
                r.put("mode", Val::Str(args.mode.name().into()));
                r.put("ok", Val::Bool(false));
                r.put("error", Val::Str(e));
                println!("{}", r.json());
            }
            ExitCode::FAILURE
        }
    }
}
