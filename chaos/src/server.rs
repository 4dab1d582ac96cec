//! The server under test: a child process started with `TORSION_PROBE` set, its
//! `listening on` line, its stderr (probe lines, violations, panics) read as it comes, and
//! what `/proc` says about it (descriptors, memory).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The probe's counters, from its last line (`made`, `lost`, `open`, `registered`,
/// `timers`, `tasks`, `violations`).
pub type Probe = HashMap<String, u64>;

#[derive(Default)]
struct Seen {
    probes: u64,
    last: Probe,
    /// Lines that say a rule was broken or code panicked.
    alarms: Vec<String>,
    /// The server's warnings (kept for the report: "not reading; disconnecting", ...).
    warnings: u64,
    tail: Vec<String>,
}

/// A running server.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn parse_probe(line: &str) -> Option<Probe> {
    let rest = line.split("torsion-probe: ").nth(1)?;
    if rest.starts_with("VIOLATION") {
        return None;
    }
    rest.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

impl Server {
    /// Starts `program ENDPOINT ARGS...` and waits (up to `patience`) for `listening on
    /// ADDRESS`.
    pub fn start(
        program: &Path,
        endpoint: &str,
        args: &[String],
        patience: Duration,
    ) -> Result<Server, String> {
        let mut child = Command::new(program)
            .arg(endpoint)
            .args(args)
            .env("TORSION_PROBE", "100")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let s = Arc::clone(&seen);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut seen = s.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(probe) = parse_probe(&line) {
                    seen.probes += 1;
                    seen.last = probe;
                    continue;
                }
                if line.contains("VIOLATION") || line.contains("panicked") {
                    seen.alarms.push(line.clone());
                }
                if line.contains("WARN") {
                    seen.warnings += 1;
                }
                if seen.tail.len() == 50 {
                    seen.tail.remove(0);
                }
                seen.tail.push(line);
            }
        });
        // The address, from stdout, on a thread so that a silent server cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            for _ in lines {} // keep the pipe drained
        });
        let addr = match rx.recv_timeout(patience) {
            Ok(Some(Ok(line))) => line
                .strip_prefix("listening on ")
                .and_then(|a| a.trim().parse::<SocketAddr>().ok())
                .ok_or_else(|| format!("unexpected first line on stdout: {line:?}"))?,
            other => {
                let _ = child.kill();
                return Err(format!(
                    "the server did not say where it listens: {other:?}"
                ));
            }
        };
        Ok(Server {
            child,
            addr,
            seen,
            reader: Some(reader),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The probe's counters once it has printed at least `after` lines in all.
    pub fn probe_after(&self, after: u64, patience: Duration) -> Result<Probe, String> {
        let deadline = Instant::now() + patience;
        loop {
            {
                let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.probes >= after {
                    return Ok(seen.last.clone());
                }
            }
            if Instant::now() > deadline {
                return Err(
                    "the server printed no probe line (is TORSION_PROBE supported?)".into(),
                );
            }
            std::thread::sleep(Duration::from_millis(20)); // polling a log, not a race
        }
    }

    pub fn probes(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).probes
    }

    pub fn alarms(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .alarms
            .clone()
    }

    pub fn warnings(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).warnings
    }

    pub fn tail(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .tail
            .clone()
    }

    /// Open descriptors, from `/proc/PID/fd`.
    pub fn fds(&self) -> Option<usize> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .ok()
            .map(|d| d.count())
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// CPU time the server used so far (user + system), from `/proc/PID/stat`.
    pub fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Some(Duration::from_millis(ticks * 1000 / per_second))
    }

    /// SIGTERM, then waits for the exit status (killing it after `patience`).
    pub fn stop(mut self, patience: Duration) -> Result<(), String> {
        // SAFETY: sending a signal to our own child, whose pid we hold.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + patience;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    return Err(format!(
                        "the server did not stop within {patience:?} of SIGTERM"
                    ));
                }
            }
        };
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if status.success() {
            Ok(())
        } else {
            Err(format!("the server exited with {status} after SIGTERM"))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
