//! An echo server that shows what its reactor is doing: the loop's counters
//! (`Reactor::stats`) on a text endpoint and/or in the log, and warnings for callbacks that
//! block the loop.
//!
//! ```text
//! cargo run --release --example stats_server -- tcp:7000 --stats tcp:port=9100:interface=127.0.0.1
//! nc 127.0.0.1 9100                  # one snapshot per connection: `name value` lines
//! RUST_LOG=info cargo run --release --example stats_server -- tcp:7000 --log-stats 10
//! cargo run --release --example stats_server -- tcp:7000 --slow-ms 50
//! ```
//!
//! `--stats ENDPOINT` answers each connection with one snapshot (`iterations 1234`,
//! `bytes_read 5678`, ..., times in seconds), then closes it: what a metrics agent scrapes
//! (a Prometheus text exporter can prefix the names). Once listening, the server prints
//! `stats on ADDRESS` on stdout after its `listening on ADDRESS` line.
//!
//! `--log-stats SECONDS` logs, at info level, every that many seconds, what the loop did
//! in the interval: connections, bytes, the loop's utilisation (busy / (busy + waiting))
//! and its worst timer lag.
//!
//! `--slow-ms N` logs a warning for every callback that keeps the loop longer than N
//! milliseconds (asyncio's debug mode; `TORSION_SLOW_CALLBACK_MS=N` does the same for any
//! torsion program).

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use torsion::endpoints::server_from_string;
use torsion::program;
use torsion::protocols::services::Echo;
use torsion::reactor::{LoopStats, LoopingCall, Protocol, Reactor, Transport, factory_fn};

/// Writes one snapshot of the reactor's counters and closes.
struct StatsPage;

impl Protocol for StatsPage {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(Reactor::current().stats().to_text().as_bytes());
        transport.lose_connection();
    }

    fn data_received(&mut self, _transport: &Transport, _data: &[u8]) {}
}

const USAGE: &str = "[ENDPOINT] [--stats ENDPOINT] [--log-stats SECONDS] [--slow-ms N]   \
                     (default tcp:8000)";

struct Args {
    endpoint: String,
    stats: Option<String>,
    log_every: Option<Duration>,
    slow: Option<Duration>,
}

fn number(value: Option<String>, what: &str) -> u64 {
    match value.and_then(|v| v.parse::<u64>().ok()) {
        Some(n) if n > 0 => n,
        _ => program::usage_error(&format!("{what} takes a positive whole number")),
    }
}

fn parse_args() -> Args {
    let mut args = Args {
        endpoint: "tcp:8000".into(),
        stats: None,
        log_every: None,
        slow: None,
    };
    let mut endpoint_seen = false;
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("usage: {} {USAGE}", program::name());
                std::process::exit(0);
            }
            "--stats" => match argv.next() {
                Some(e) => args.stats = Some(e),
                None => program::usage_error("--stats takes an endpoint (tcp:9100)"),
            },
            "--log-stats" => {
                let secs = number(argv.next(), "--log-stats");
                args.log_every = Some(Duration::from_secs(secs));
            }
            "--slow-ms" => {
                let ms = number(argv.next(), "--slow-ms");
                args.slow = Some(Duration::from_millis(ms));
            }
            _ if !endpoint_seen && !arg.starts_with("--") => {
                args.endpoint = arg;
                endpoint_seen = true;
            }
            _ => program::usage_error(&format!("unexpected argument {arg:?}\nusage: {USAGE}")),
        }
    }
    args
}

/// One log line: what happened between two snapshots `every` apart.
fn summary(was: &LoopStats, now: &LoopStats) -> String {
    format!(
        "loop: {} connections open, {} accepted, {} closed ({} reset, {} aborted), \
         {} bytes in, {} bytes out, {} bytes buffered, utilisation {:.1}%, \
         worst timer lag {:.1} ms, {} slow callbacks",
        now.connections_open,
        now.accepted - was.accepted,
        now.connections_closed() - was.connections_closed(),
        now.closed_reset - was.closed_reset,
        now.closed_aborted - was.closed_aborted,
        now.bytes_read - was.bytes_read,
        now.bytes_written - was.bytes_written,
        now.write_buffered,
        100.0 * now.utilisation_since(was),
        now.timer_lag_max.as_secs_f64() * 1000.0,
        now.slow_callbacks - was.slow_callbacks,
    )
}

fn main() {
    program::init_logging();
    let args = parse_args();
    let reactor = Reactor::current();
    if args.slow.is_some() {
        reactor.set_slow_callback_threshold(args.slow);
    }
    program::listen(&reactor, &args.endpoint, factory_fn(|_| Echo));
    if let Some(description) = &args.stats {
        let endpoint = server_from_string(&reactor, description)
            .unwrap_or_else(|err| program::usage_error(&format!("--stats: {err}")));
        let port = endpoint
            .listen(factory_fn(|_| StatsPage))
            .unwrap_or_else(|err| program::fail(&err.to_string()));
        let addr = port.local_addr();
        reactor.call_when_running(move || {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "stats on {addr}");
            let _ = out.flush();
        });
    }
    // Runs until the reactor stops (the handle lives as long as `main`).
    let _logging = args.log_every.map(|every| {
        let r = reactor.clone();
        let last = Rc::new(Cell::new(reactor.stats()));
        let looping = LoopingCall::new(move || {
            let now = r.stats();
            log::info!("{}", summary(&last.get(), &now));
            last.set(now);
            r.reset_peaks(); // the next line's worst lag is the next interval's
        });
        if let Err(err) = looping.start_on(reactor.clone(), every, false) {
            program::fail(&format!("cannot log the statistics: {err}"));
        }
        looping
    });
    program::run(&reactor)
}
