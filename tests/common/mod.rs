//! Helpers for tests that run the examples as child processes.
#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>/`, next to this test binary's `deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// The path of example `name`, built (a no-op when fresh) once per test binary, so a
/// filtered run never uses a stale binary.
pub fn example(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = profile_dir();
    BUILT.get_or_init(|| {
        let mut build = Command::new(env!("CARGO"));
        // `cargo test` gives this process the package's variables (CARGO_MANIFEST_DIR, ...);
        // passed on, they change what some build scripts see (ring's does), and every test
        // run would then rebuild the TLS stack and every example, twice.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || name.starts_with("CARGO_CRATE_")
                || name.starts_with("CARGO_BIN_")
                || name == "CARGO_PRIMARY_PACKAGE"
                || name == "CARGO_TARGET_TMPDIR"
            {
                build.env_remove(name.as_ref());
            }
        }
        build
            .args(["build", "--quiet", "--examples", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
        match dir.file_name().and_then(|n| n.to_str()) {
            Some("release") => {
                build.arg("--release");
            }
            Some("debug") | None => {}
            Some(other) => {
                build.args(["--profile", other]);
            }
        }
        assert!(
            build.status().expect("cargo runs").success(),
            "building the examples failed"
        );
    });
    let path = dir.join("examples").join(name);
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// A server example running as a child process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub stdout: BufReader<ChildStdout>,
    /// What the child wrote on stderr so far (read by a thread as it comes).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts example `name` with `args` and waits for its `listening on ADDRESS` line.
    pub fn start(name: &str, args: &[&str]) -> Server {
        Server::start_with(Command::new(example(name)).args(args))
    }

    pub fn start_with(cmd: &mut Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the example starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
        let mut pipe = BufReader::new(child.stderr.take().expect("piped stderr"));
        let collected = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                collected.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reads the first line");
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end()
            .to_string();
        Server {
            child,
            addr,
            stdout,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr.parse().expect("a TCP address")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the child to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_timeout(&mut self.child, timeout)
    }

    /// Everything the child wrote on stderr: call it once the child has exited (it waits
    /// for the end of the stream).
    pub fn stderr(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the child's stderr contains `needle` (for events the child logs).
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || self.stderr.lock().unwrap().contains(needle))
    }

    /// Descriptors the child has open (from /proc).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `cond` until it holds or `timeout` passes (for state outside this process, such
/// as a child's open descriptors, that no event announces).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A process's resident memory (`VmRSS` from /proc), in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

thread_local! {
    static MADE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// This test's reactor (each test runs on its own thread): made on the first call by
/// `testing::test_reactor` (signals off; a panic caught in a callback fails the test),
/// returned by later calls.
pub fn reactor() -> torsion::reactor::Reactor {
    if MADE.with(|m| m.replace(true)) {
        torsion::reactor::Reactor::current()
    } else {
        torsion::reactor::testing::test_reactor()
    }
}

/// Runs the reactor until `d` fires (at most `testing::PATIENCE`), and returns its result.
pub fn wait<T: 'static>(
    r: &torsion::reactor::Reactor,
    d: torsion::reactor::Deferred<T>,
) -> Result<T, torsion::reactor::Error> {
    torsion::reactor::testing::wait_for(r, d)
}

/// Says `hello` when connected and keeps what comes back.
pub struct Hello(pub std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl torsion::reactor::Protocol for Hello {
    fn connection_made(&mut self, t: &torsion::reactor::Transport) {
        t.write(b"hello");
    }
    fn data_received(&mut self, _: &torsion::reactor::Transport, data: &[u8]) {
        self.0.borrow_mut().extend_from_slice(data);
    }
}

/// The bytes a test sends from `offset` on: a pattern that shows a lost, repeated or
/// reordered byte.
pub fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 253) as u8).collect()
}

/// Writes the [`pattern`] on `c` (non-blocking) without reading anything back, until
/// `server` has logged `pushback` (at debug level: it paused reading this client) and
/// nothing more fits; returns how many bytes were sent. Fails after `deadline` if the
/// server never pushes back.
pub fn flood_until_pushed_back(
    server: &Server,
    c: &std::net::TcpStream,
    pushback: &str,
    deadline: Duration,
) -> usize {
    use std::io::Write;
    c.set_nonblocking(true).expect("a non-blocking client");
    let mut sent = 0usize;
    let mut paused = false;
    let give_up = Instant::now() + deadline;
    loop {
        assert!(
            Instant::now() < give_up,
            "the server never logged {pushback:?}"
        );
        match (&*c).write(&pattern(sent, 64 * 1024)) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if paused {
                    return sent; // paused, and nothing more fits
                }
                paused = server.wait_for_stderr(pushback, Duration::from_millis(50));
            }
            Err(e) => panic!("writing to the server: {e}"),
        }
    }
}

/// Reads `sent` bytes from `c` (blocking, each read within `patience`) and checks that
/// they are the [`pattern`], in order.
pub fn read_back_pattern(c: &std::net::TcpStream, sent: usize, patience: Duration) {
    use std::io::Read;
    c.set_nonblocking(false).expect("a blocking client");
    c.set_read_timeout(Some(patience)).expect("a read timeout");
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < sent {
        let n = (&*c).read(&mut buf).expect("the echo comes back");
        assert!(n > 0, "the connection ended after {got} of {sent} bytes");
        assert!(buf[..n] == pattern(got, n)[..], "mismatch at byte {got}");
        got += n;
    }
}

/// The contract every echo client example keeps: run against `server_example` (on
/// loopback), `client_example` sends its standard input, prints every byte echoed, in
/// order, and exits 0 once the input ends and the echo is complete.
pub fn check_client_echoes_stdin(server_example: &str, client_example: &str) {
    use std::io::{Read, Write};
    let server = Server::start(server_example, &["tcp:port=0:interface=127.0.0.1"]);
    let mut child = Command::new(example(client_example))
        .arg(format!(
            "tcp:host=127.0.0.1:port={}",
            server.socket_addr().port()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the client starts");
    let input = pattern(0, 1_000_000);
    let mut stdin = child.stdin.take().expect("its stdin");
    let i = input.clone();
    let feeder = std::thread::spawn(move || stdin.write_all(&i));
    let mut out = Vec::new();
    let mut stdout = child.stdout.take().expect("its stdout");
    stdout.read_to_end(&mut out).expect("its output");
    feeder
        .join()
        .expect("the feeder")
        .expect("the input is written");
    let status = wait_timeout(&mut child, Duration::from_secs(30)).expect("exits");
    assert_eq!(status.code(), Some(0));
    assert!(
        out == input,
        "echoed {} of {} bytes",
        out.len(),
        input.len()
    );
}

/// The contract every client example keeps for a bad endpoint string (exit status 2) and
/// a refused connection (status 1, one line on stderr naming the address).
pub fn check_client_reports_bad_endpoints_and_refusals(client_example: &str) {
    let out = Command::new(example(client_example))
        .arg("tcp:host=127.0.0.1:port=notaport")
        .output()
        .expect("the client runs");
    assert_eq!(out.status.code(), Some(2));
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let out = Command::new(example(client_example))
        .arg(format!("tcp:host=127.0.0.1:port={}", free.port()))
        .stdin(Stdio::null())
        .output()
        .expect("the client runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&free.to_string()) && err.contains("connection refused"),
        "{err}"
    );
}

/// Sends `len` bytes of the [`pattern`] to `server` (an echo, or a proxy in front of one) on
/// `c` from another thread, reads the first KiB of the echo, then sends the server SIGTERM
/// while most of the echo is still to come; returns every byte that came back before the
/// connection ended.
pub fn sigterm_mid_echo(server: &Server, c: &std::net::TcpStream, len: usize) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut w = c.try_clone().expect("a second handle on the socket");
    let data = pattern(0, len);
    let writer = std::thread::spawn(move || w.write_all(&data));
    let mut got = vec![0u8; 1024];
    (&*c)
        .read_exact(&mut got)
        .expect("the first KiB of the echo");
    server.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    let _ = (&*c).read_to_end(&mut rest);
    got.extend_from_slice(&rest);
    let _ = writer.join();
    got
}
