//! The chaos suite: hundreds of clients against one torsion server, for a fixed time, with
//! a seed. Each client picks behaviours at random, well-behaved (echo of random sizes,
//! half-close, one-byte reads, pauses; chat talkers, names, `/nick`) and hostile (never
//! reading, resets mid-write, connect-and-vanish, floods, reconnect storms; garbage and
//! over-long lines; for a TLS server, stalled and reset handshakes and plain text to the
//! TLS port). It checks, from outside, and fails loudly with the seed:
//!
//! - every byte a well-behaved client gets back is right and in order (every talker's
//!   messages reach every other talker in order, with no gap);
//! - well-behaved clients are always served: no refusal, no stall, every round trip under
//!   `--max-latency-ms`;
//! - the server's peak memory (`VmHWM`) stays under its baseline plus, per client, the
//!   bound its write-buffer marks set (see `PER_CONNECTION_BOUND` in echo.rs and chat.rs);
//! - afterwards its descriptors (`/proc/PID/fd`), connections, registrations, timers and
//!   tasks (the probe: `TORSION_PROBE`, see `torsion::program::listen`) return to their
//!   baseline, and every `connection_made` had exactly one `connection_lost`;
//! - no rule violation or panic was logged, and SIGTERM stops it with status 0.
//!
//! ```text
//! cargo build --examples && cargo run -p torsion-chaos -- \
//!     --server target/debug/examples/echo_server --seconds 10 --clients 200 --seed 7
//! ```
//!
//! Exit status: 0 when every check passed, 1 when one failed, 2 for a bad command line.

mod chat;
mod echo;
mod rng;
mod run;
mod server;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use run::Run;
use server::{Probe, Server};

/// What kind of server is under test (which clients to run). A new server gets its kind
/// here and its clients in a module beside echo.rs, chat.rs and tls.rs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Echo,
    Chat,
    /// A TCP proxy in front of an echo server (`--server-arg` names the upstream): echo
    /// clients, and a proxy holding two connections per client.
    Proxy,
    /// An echo server on an `ssl:` endpoint the suite makes, with a certificate made for
    /// the run that its clients trust: TLS clients.
    Tls,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Echo => "echo",
            Kind::Chat => "chat",
            Kind::Proxy => "proxy",
            Kind::Tls => "tls",
        }
    }

    fn per_connection_bound(self) -> u64 {
        match self {
            Kind::Echo => echo::PER_CONNECTION_BOUND,
            Kind::Chat => chat::PER_CONNECTION_BOUND,
            // Each direction is bounded as an echo server's connection is.
            Kind::Proxy => 2 * echo::PER_CONNECTION_BOUND,
            Kind::Tls => tls::PER_CONNECTION_BOUND,
        }
    }

    fn client(self, run: &Run, id: u64) {
        match self {
            Kind::Echo | Kind::Proxy => echo::client(run, id),
            Kind::Chat => chat::client(run, id),
            Kind::Tls => tls::client(run, id),
        }
    }
}

struct Options {
    server: PathBuf,
    kind: Kind,
    /// The server's endpoint; `None`: the kind's default.
    endpoint: Option<String>,
    /// Arguments after the endpoint (a proxy's upstream).
    server_args: Vec<String>,
    seconds: u64,
    clients: u64,
    seed: u64,
    max_latency: Duration,
    label: String,
    without: Vec<String>,
}

const USAGE: &str = "usage: torsion-chaos --server PATH [--server-arg ARG]... \
[--kind echo|chat|proxy|tls] [--endpoint DESC] [--seconds N] [--clients N] [--seed N] [--max-latency-ms N] [--label TEXT] [--without BEHAVIOUR]...";

fn usage(msg: &str) -> ! {
    eprintln!("torsion-chaos: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn parse() -> Options {
    let mut args = std::env::args().skip(1);
    let mut server = None;
    let mut kind = None;
    let mut endpoint = None;
    let (mut seconds, mut clients, mut latency_ms) = (10, 200, 5000);
    let mut seed = None;
    let mut label = None;
    let mut without = Vec::new();
    let mut server_args = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        let mut number = |what: &str| -> u64 {
            value()
                .parse()
                .unwrap_or_else(|_| usage(&format!("{what} takes a number")))
        };
        match arg.as_str() {
            "--server" => server = Some(PathBuf::from(value())),
            "--server-arg" => server_args.push(value()),
            "--kind" => {
                kind = Some(match value().as_str() {
                    "echo" => Kind::Echo,
                    "chat" => Kind::Chat,
                    "proxy" => Kind::Proxy,
                    "tls" => Kind::Tls,
                    other => usage(&format!("unknown kind {other:?}")),
                })
            }
            "--endpoint" => endpoint = Some(value()),
            "--seconds" => seconds = number("--seconds"),
            "--clients" => clients = number("--clients"),
            "--seed" => seed = Some(number("--seed")),
            "--max-latency-ms" => latency_ms = number("--max-latency-ms"),
            "--label" => label = Some(value()),
            "--without" => without.push(value()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => usage(&format!("unexpected argument {other:?}")),
        }
    }
    let server = server.unwrap_or_else(|| usage("--server is required"));
    let file = server
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let kind = kind.unwrap_or(if file.contains("chat") {
        Kind::Chat
    } else {
        Kind::Echo
    });
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1)
    });
    Options {
        label: label.unwrap_or(file),
        server,
        kind,
        endpoint,
        server_args,
        seconds: seconds.max(1),
        clients: clients.max(1),
        seed,
        max_latency: Duration::from_millis(latency_ms),
        without,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// The baseline values the probe and `/proc` must come back to.
fn settled(probe: &Probe, base: &Probe) -> Vec<String> {
    let mut off = Vec::new();
    let get = |p: &Probe, k: &str| p.get(k).copied().unwrap_or(u64::MAX);
    if get(probe, "open") != 0 {
        off.push(format!("{} connections still open", get(probe, "open")));
    }
    if get(probe, "made") != get(probe, "lost") {
        off.push(format!(
            "connection_made {} times but connection_lost {}",
            get(probe, "made"),
            get(probe, "lost")
        ));
    }
    for k in ["registered", "timers", "tasks"] {
        if get(probe, k) != get(base, k) {
            off.push(format!(
                "{k}: {} (baseline {})",
                get(probe, k),
                get(base, k)
            ));
        }
    }
    if get(probe, "violations") != 0 {
        off.push(format!("{} rule violations", get(probe, "violations")));
    }
    off
}

fn main() {
    let o = parse();
    println!(
        "chaos: {}: {} clients, seed={} clients={} seconds={}",
        o.label,
        o.kind.name(),
        o.seed,
        o.clients,
        o.seconds
    );
    // A TLS server gets a certificate made for this run, in a directory removed at the end.
    let tls_dir = std::env::temp_dir().join(format!("torsion-chaos-tls-{}", std::process::id()));
    let endpoint = match (&o.endpoint, o.kind) {
        (Some(_), Kind::Tls) => usage(
            "--kind tls makes its own ssl: endpoint, with a certificate its clients trust: leave out --endpoint",
        ),
        (Some(endpoint), _) => endpoint.clone(),
        (None, Kind::Tls) => tls::setup(&tls_dir).unwrap_or_else(|e| usage(&e)),
        (None, _) => "tcp:0:interface=127.0.0.1".to_string(),
    };
    let server = Server::start(
        &o.server,
        &endpoint,
        &o.server_args,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| usage(&e));
    let mut failures: Vec<String> = Vec::new();

    // Baseline: a probe line printed after the server started listening.
    let base = server
        .probe_after(server.probes() + 2, Duration::from_secs(30))
        .unwrap_or_else(|e| usage(&e));
    let base_fds = server.fds().unwrap_or(0);
    let base_rss = server.status_kib("VmRSS").unwrap_or(0) * 1024;

    // Memory, sampled while the clients run (the peak is also read from VmHWM at the end).
    let sampling = Arc::new(AtomicBool::new(true));
    let peak_sampled = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (on, peak, pid) = (sampling.clone(), peak_sampled.clone(), server.pid());
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = status.lines().find_map(|l| {
                        l.strip_prefix("VmRSS:")?
                            .trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    }) {
                        peak.fetch_max(kib * 1024, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let run = Arc::new(Run::new(
        server.addr,
        o.seed,
        Duration::from_secs(o.seconds),
        o.without.clone(),
    ));
    let started = Instant::now();
    let clients: Vec<_> = (0..o.clients)
        .map(|id| {
            let (run, kind) = (run.clone(), o.kind);
            std::thread::Builder::new()
                .name(format!("client-{id}"))
                .stack_size(256 * 1024)
                .spawn(move || kind.client(&run, id))
                .expect("a client thread")
        })
        .collect();
    // Every client operation is bounded (STALL); give them that long past the deadline.
    let give_up = run.deadline + run::STALL + Duration::from_secs(10);
    for c in clients {
        while !c.is_finished() && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(20));
        }
        if c.is_finished() {
            let _ = c.join();
        } else {
            failures.push("a client was still running long after the run's end".into());
            run.stop.store(true, Ordering::Relaxed);
        }
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    failures.extend(run.failures());

    // Back to the baseline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_off = Vec::new();
    let mut end_fds = 0;
    let mut end_probe = Probe::new();
    loop {
        let seen = server.probes();
        match server.probe_after(seen + 1, Duration::from_secs(5)) {
            Ok(probe) => {
                end_fds = server.fds().unwrap_or(0);
                let mut off = settled(&probe, &base);
                if end_fds != base_fds {
                    off.push(format!("{end_fds} descriptors open (baseline {base_fds})"));
                }
                end_probe = probe;
                if off.is_empty() {
                    last_off.clear();
                    break;
                }
                last_off = off;
            }
            Err(e) => {
                last_off = vec![e];
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
    }
    for off in last_off {
        failures.push(format!("30 s after the run: {off}"));
    }

    let peak =
        (server.status_kib("VmHWM").unwrap_or(0) * 1024).max(peak_sampled.load(Ordering::Relaxed));
    let bound = base_rss + o.clients * o.kind.per_connection_bound() + 32 * 1024 * 1024;
    if peak > bound {
        failures.push(format!(
            "peak memory {:.1} MiB over the bound {:.1} MiB (baseline {:.1} MiB + {} clients x {:.2} MiB + 32 MiB)",
            mib(peak),
            mib(bound),
            mib(base_rss),
            o.clients,
            mib(o.kind.per_connection_bound())
        ));
    }
    let latencies = run.latencies();
    let worst = latencies.last().copied().unwrap_or(0);
    if Duration::from_micros(worst) > o.max_latency {
        failures.push(format!(
            "a well-behaved round trip took {:.0} ms (bound {} ms)",
            worst as f64 / 1000.0,
            o.max_latency.as_millis()
        ));
    }
    if latencies.is_empty() {
        failures.push("no well-behaved round trip completed".into());
    }
    for alarm in server.alarms() {
        failures.push(format!("the server logged: {alarm}"));
    }
    let warnings = server.warnings();
    let cpu = server.cpu().unwrap_or_default();
    let tail = server.tail();
    if let Err(e) = server.stop(Duration::from_secs(30)) {
        failures.push(e);
    }
    let _ = std::fs::remove_dir_all(&tls_dir);

    let behaviours: Vec<String> = run
        .behaviours()
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let faults = match end_probe.get("faults") {
        Some(n) => format!(", {n} faults injected in the server"),
        None => String::new(),
    };
    println!(
        "chaos: {} in {:.1} s: {} connections ({} made/lost by the server{faults}), {:.1} MiB sent, {:.1} MiB received",
        o.label,
        elapsed.as_secs_f64(),
        run.connections.load(Ordering::Relaxed),
        end_probe.get("made").copied().unwrap_or(0),
        mib(run.bytes_sent.load(Ordering::Relaxed)),
        mib(run.bytes_received.load(Ordering::Relaxed)),
    );
    println!("chaos:   behaviours: {}", behaviours.join(", "));
    println!(
        "chaos:   well-behaved round trips: {} (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; bound {} ms)",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        worst as f64 / 1000.0,
        o.max_latency.as_millis()
    );
    println!(
        "chaos:   server: CPU {:.1} s; memory baseline {:.1} MiB, peak {:.1} MiB (bound {:.1} MiB); descriptors {} -> {}; {} warnings logged",
        cpu.as_secs_f64(),
        mib(base_rss),
        mib(peak),
        mib(bound),
        base_fds,
        end_fds,
        warnings
    );
    if failures.is_empty() {
        println!("chaos: {} PASSED (seed {})", o.label, o.seed);
    } else {
        for f in &failures {
            println!("chaos: FAILED: {f}");
        }
        println!("chaos: the server's last log lines:");
        for line in tail {
            println!("chaos:   | {line}");
        }
        println!(
            "chaos: {} FAILED with seed {} (rerun: --seed {} --clients {} --seconds {})",
            o.label, o.seed, o.seed, o.clients, o.seconds
        );
        std::process::exit(1);
    }
}
