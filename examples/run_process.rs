//! Runs a program and reports what it writes, line by line, and how it ended.
//!
//! ```text
//! run_process -- PROGRAM [ARGS...]
//! ```
//!
//! Each line the child writes to its stdout is printed as `out: LINE`, each line of its
//! stderr as `err: LINE` (in the order they arrive from each stream; a last line without
//! a newline is printed too). Once the child has ended and both pipes are closed, the
//! last line is `exit N` or `signal NAME` (`signal SIGKILL`), and run_process exits with
//! the child's exit code (128 + the signal's number for a signal). Its own standard input
//! is the child's. SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent to run_process are
//! passed on to the child. A program that cannot be started: one line on stderr naming it
//! and the cause, exit status 127.
//!
//! ```text
//! $ run_process -- sh -c 'echo hello; echo oops >&2; exit 3'
//! out: hello
//! err: oops
//! exit 3
//! ```

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use torsion::program;
use torsion::reactor::{
    ChildFd, Process, ProcessOptions, ProcessProtocol, ProcessStatus, Reactor, signal_name,
};

const USAGE: &str = "-- PROGRAM [ARGS...]";

/// Splits each output into lines and prints them with their stream's prefix.
struct Report {
    /// The partial last line of stdout (1) and stderr (2).
    pending: [Vec<u8>; 2],
    /// The exit status for run_process, once the child has ended.
    code: Rc<Cell<Option<i32>>>,
}

impl Report {
    fn prefix(fd: i32) -> &'static [u8] {
        if fd == 1 { b"out: " } else { b"err: " }
    }

    fn emit(&self, process: &Process, text: &[u8]) {
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Whoever reads us is gone (`| head`): so is the point of running the child.
            let _ = process.kill();
            std::process::exit(128 + libc::SIGPIPE);
        }
    }
}

impl ProcessProtocol for Report {
    fn child_data_received(&mut self, process: &Process, fd: i32, data: &[u8]) {
        let pending = &mut self.pending[if fd == 1 { 0 } else { 1 }];
        pending.extend_from_slice(data);
        let mut text = Vec::new();
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            text.extend_from_slice(Report::prefix(fd));
            text.extend_from_slice(&pending[start..=start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
        if !text.is_empty() {
            self.emit(process, &text);
        }
    }

    fn child_connection_lost(
        &mut self,
        process: &Process,
        fd: i32,
        _: &torsion::reactor::ConnectionLost,
    ) {
        if fd != 1 && fd != 2 {
            return;
        }
        let last = std::mem::take(&mut self.pending[if fd == 1 { 0 } else { 1 }]);
        if !last.is_empty() {
            let mut text = Report::prefix(fd).to_vec();
            text.extend_from_slice(&last);
            text.push(b'\n');
            self.emit(process, &text);
        }
    }

    fn process_ended(&mut self, process: &Process, status: ProcessStatus) {
        let (line, code) = match status {
            ProcessStatus::Exited(code) => (format!("exit {code}\n"), code),
            ProcessStatus::Signaled { signal, .. } => {
                (format!("signal {}\n", signal_name(signal)), 128 + signal)
            }
            other => (format!("{other}\n"), 1),
        };
        self.emit(process, line.as_bytes());
        self.code.set(Some(code));
        let _ = Reactor::current().stop();
    }
}

fn parse_args() -> (String, Vec<String>) {
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("-h") | Some("--help") => {
            println!("usage: {} {USAGE}", program::name());
            std::process::exit(0);
        }
        Some("--") => {
            args.next();
        }
        _ => {}
    }
    match args.next() {
        Some(program) => (program, args.collect()),
        None => program::usage_error(&format!(
            "no program to run\nusage: {} {USAGE}",
            program::name()
        )),
    }
}

fn main() {
    program::init_logging();
    let (program, args) = parse_args();
    let reactor = Reactor::current();
    let code = Rc::new(Cell::new(None));
    let report = Report {
        pending: [Vec::new(), Vec::new()],
        code: code.clone(),
    };
    let options = ProcessOptions::new().stdin(ChildFd::Inherit);
    let process = match reactor.spawn_process(report, &program, &args, &options) {
        Ok(process) => process,
        Err(err) => {
            eprintln!("{}: {err}", program::name());
            std::process::exit(127);
        }
    };
    // Signals meant for us are meant for the child: it decides, and we report its end.
    for signal in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ] {
        let child = process.clone();
        if let Err(err) = reactor.add_signal_handler(signal, move || {
            let _ = child.signal(signal);
        }) {
            log::warn!("{err}");
        }
    }
    if let Err(err) = reactor.run() {
        program::fail(&err.to_string());
    }
    std::process::exit(code.get().unwrap_or(1));
}
