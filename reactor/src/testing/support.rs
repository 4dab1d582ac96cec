//! Support for tests that run a reactor: a fresh, strict reactor per test, one deadline for
//! every wait, waiting for a Deferred, and capturing logs.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::defer::deferred::{Deferred, DeferredError};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;

/// How long test helpers wait for something before they fail: generous, so that a busy
/// 2-core machine never fails a correct test, and still finite, so that a broken one fails
/// with a message instead of hanging.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A fresh reactor for one test, installed as this thread's: SIGINT/SIGTERM are left to
/// the test harness, and a panic or an unhandled Deferred error caught during an iteration
/// makes that iteration fail ([`Reactor::set_fail_on_caught`]), so `run_until`, `iterate`
/// and `run` return it and the test fails with its message rather than timing out. A test
/// that expects a panic calls `set_fail_on_caught(false)` or
/// [`take_caught`](Reactor::take_caught).
///
/// ```
/// use torsion_reactor::testing::{PATIENCE, test_reactor};
///
/// let reactor = test_reactor();
/// reactor.call_soon(|| panic!("a bug in a callback"));
/// let err = reactor.run_until(PATIENCE, || false).unwrap_err();
/// assert!(err.to_string().contains("a bug in a callback"));
/// ```
///
/// # Panics
/// If the OS refuses a poller (out of descriptors).
pub fn test_reactor() -> Reactor {
    let reactor = match Reactor::new() {
        Ok(reactor) => reactor,
        Err(err) => panic!("cannot create a reactor for the test: {err}"),
    };
    reactor.set_handle_signals(false);
    reactor.set_fail_on_caught(true);
    let previous = reactor.install();
    if let Some(previous) = previous {
        // The thread's earlier reactor (a previous test on this thread) goes away cleanly.
        let _ = previous.close();
    }
    reactor
}

/// Runs `reactor` until `d` fires (at most [`PATIENCE`]) and returns its result. A
/// deadline passed, or a panic caught meanwhile, is returned as the Deferred's error type.
pub fn wait_for<T: 'static, E: DeferredError>(
    reactor: &Reactor,
    d: Deferred<T, E>,
) -> Result<T, E> {
    let slot: Rc<RefCell<Option<Result<T, E>>>> = Rc::new(RefCell::new(None));
    let s = Rc::clone(&slot);
    d.on_result(move |r| *s.borrow_mut() = Some(r));
    reactor
        .run_until(PATIENCE, || slot.borrow().is_some())
        .map_err(|err| {
            E::from(Error::new(
                err.kind(),
                format!("while waiting for a Deferred: {err}"),
            ))
        })?;
    let result = slot.borrow_mut().take();
    result.unwrap_or_else(|| Err(E::from(Error::new(ErrorKind::Other, "no result"))))
}

/// Runs `reactor` (at most [`PATIENCE`]) while reading what a blocking-style client
/// `stream` receives, until `done` holds for the bytes read so far, and returns them: how
/// a test talks to its own server through a real socket on the reactor's thread. The
/// stream is made non-blocking. An error reading, the end of the stream before `done`, or
/// the deadline is returned as an error that says what was read.
///
/// ```
/// use std::io::Write;
/// use torsion_reactor::testing::{read_while_running, test_reactor};
/// use torsion_reactor::{Protocol, Transport, factory_fn};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
///         t.write(data);
///     }
/// }
///
/// let reactor = test_reactor();
/// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory_fn(|_| Echo)).unwrap();
/// let mut client = std::net::TcpStream::connect(port.local_addr().socket_addr().unwrap()).unwrap();
/// client.write_all(b"hello").unwrap();
/// let got = read_while_running(&reactor, &mut client, |got| got.ends_with(b"hello")).unwrap();
/// assert_eq!(got, b"hello");
/// ```
pub fn read_while_running(
    reactor: &Reactor,
    stream: &mut std::net::TcpStream,
    mut done: impl FnMut(&[u8]) -> bool,
) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let failed = |what: &str, got: &[u8]| {
        format!(
            "{what} after reading {} bytes: {:?}",
            got.len(),
            String::from_utf8_lossy(got)
        )
    };
    stream.set_nonblocking(true).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot make the client non-blocking: {e}"),
        )
    })?;
    let mut got = Vec::new();
    let mut trouble: Option<String> = None;
    let mut buf = [0u8; 4096];
    let ran = reactor.run_until(PATIENCE, || {
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    trouble = Some(failed("the stream ended", &got));
                    return true;
                }
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    trouble = Some(failed(&format!("reading failed ({e})"), &got));
                    return true;
                }
            }
        }
        done(&got)
    });
    if let Some(trouble) = trouble {
        return Err(Error::new(ErrorKind::Io, trouble));
    }
    ran.map_err(|err| Error::new(err.kind(), failed(&err.to_string(), &got)))?;
    Ok(got)
}

/// Every log record since the capture was installed (see [`capture_logs`]).
pub struct CapturedLogs(Mutex<Vec<String>>);

impl CapturedLogs {
    /// Every captured line (`LEVEL message`) containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }
}

impl log::Log for CapturedLogs {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}", record.level(), record.args());
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
    fn flush(&self) {}
}

/// Installs (once per process) a logger that keeps every record, and returns it. Tests
/// that assert what was logged use it; it replaces no logger a test binary set up before.
///
/// # Panics
/// If another logger was installed first.
pub fn capture_logs() -> &'static CapturedLogs {
    static LOGGER: OnceLock<&'static CapturedLogs> = OnceLock::new();
    LOGGER.get_or_init(|| {
        let logger: &'static CapturedLogs =
            Box::leak(Box::new(CapturedLogs(Mutex::new(Vec::new()))));
        if log::set_logger(logger).is_err() {
            panic!("capture_logs: another logger is already installed");
        }
        log::set_max_level(log::LevelFilter::Debug);
        logger
    })
}
