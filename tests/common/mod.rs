//! Helpers for tests that run the examples as child processes.
#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader, Read};
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

    pub fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
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

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}

/// This thread's reactor, with signal handling off (tests share a process).
pub fn reactor() -> torsion::reactor::Reactor {
    let r = torsion::reactor::Reactor::current();
    r.set_handle_signals(false);
    r
}

/// Runs the reactor until `d` fires (at most 30 s), and returns its result.
pub fn wait<T: 'static>(
    r: &torsion::reactor::Reactor,
    d: torsion::reactor::Deferred<T>,
) -> Result<T, torsion::reactor::Error> {
    let slot: std::rc::Rc<std::cell::RefCell<Option<Result<T, torsion::reactor::Error>>>> =
        Default::default();
    let s = slot.clone();
    d.on_result(move |result| *s.borrow_mut() = Some(result));
    r.run_until(Duration::from_secs(30), || slot.borrow().is_some())
        .expect("never fired");
    slot.borrow_mut().take().expect("fired")
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
