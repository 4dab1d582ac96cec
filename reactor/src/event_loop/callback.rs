//! Running user code: each call under `catch_unwind`, so a panic is contained, and what was
//! caught (a panic, an error nobody handled) goes to the reactor's error handler: logged by
//! default, or failing the test that caused it when a test asked for that.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic::{AssertUnwindSafe, Location, catch_unwind};

use super::Reactor;

/// A boxed one-shot callback plus where it was scheduled, for panic reports.
pub(crate) struct Job {
    pub(crate) f: Box<dyn FnOnce()>,
    pub(crate) origin: &'static Location<'static>,
}

/// What kind of thing the reactor caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaughtKind {
    /// User code panicked (a callback, a protocol method, a task, a factory).
    Panic,
    /// A [`Deferred`](crate::Deferred) failed and nothing took its error.
    UnhandledError,
    /// An operation the reactor runs on its own failed (a connection's setup: an accepted
    /// socket the poller would not take).
    IoError,
    /// Accepting a connection failed ([`Caught::os_error`] says why). Out of descriptors
    /// or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): the listening port stops
    /// accepting for 100 ms and tries again; this is reported at most once a minute per
    /// port, with the number of failures since the last report (every failure is counted
    /// in [`LoopStats::accept_errors`]). Anything else
    /// (`ECONNABORTED`: the client gave up before it was accepted; `EPERM`, `EPROTO`) is a
    /// client's doing, and the port accepts on. The default handler logs the first kind as
    /// a warning, the second at debug level; neither fails a test.
    ///
    /// [`LoopStats::accept_errors`]: crate::LoopStats::accept_errors
    Accept,
}

impl CaughtKind {
    /// Whether this kind fails an iteration under
    /// [`set_fail_on_caught`](crate::Reactor::set_fail_on_caught): a bug (a panic, an
    /// error nobody handled, a setup failure), not the environment (a failed accept).
    pub(crate) fn fails_tests(self) -> bool {
        !matches!(self, CaughtKind::Accept)
    }
}

/// Something the reactor caught instead of letting it escape: a panic in user code, an
/// error nobody handled. It goes to the handler set with
/// [`Reactor::set_error_handler`] (asyncio's `set_exception_handler`); the default logs it
/// with `log::error!`.
#[derive(Clone, Debug)]
pub struct Caught {
    kind: CaughtKind,
    context: String,
    message: String,
    os_error: Option<(io::ErrorKind, Option<i32>)>,
}

impl Caught {
    pub(crate) fn new(
        kind: CaughtKind,
        context: impl Into<String>,
        message: impl Into<String>,
    ) -> Caught {
        Caught {
            kind,
            context: context.into(),
            message: message.into(),
            os_error: None,
        }
    }

    /// Something caught because of an OS error `err` (its kind and number are kept).
    pub(crate) fn io(kind: CaughtKind, context: impl Into<String>, err: &io::Error) -> Caught {
        Caught {
            os_error: Some((err.kind(), err.raw_os_error())),
            ..Caught::new(kind, context, crate::error::describe_io(err))
        }
    }

    /// What kind of thing was caught.
    pub fn kind(&self) -> CaughtKind {
        self.kind
    }

    /// Where it happened: which callback, which connection, where it was scheduled.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The panic's message, or the error's.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// For something caught because a system call failed (a failed accept): the error's
    /// kind and, if the OS gave one, its number (`errno`: compare with `libc::EMFILE`...).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use torsion_reactor::{CaughtKind, Reactor};
    ///
    /// let reactor = Reactor::new().unwrap();
    /// let out_of_fds = Rc::new(RefCell::new(0));
    /// let seen = out_of_fds.clone();
    /// reactor.set_error_handler(move |caught| {
    ///     if caught.kind() == CaughtKind::Accept
    ///         && matches!(caught.os_error(), Some((_, Some(libc::EMFILE | libc::ENFILE))))
    ///     {
    ///         *seen.borrow_mut() += 1; // page someone: the server is out of descriptors
    ///     }
    /// });
    /// ```
    pub fn os_error(&self) -> Option<(io::ErrorKind, Option<i32>)> {
        self.os_error
    }
}

impl fmt::Display for Caught {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            CaughtKind::Panic => write!(f, "{} panicked: {}", self.context, self.message),
            CaughtKind::UnhandledError => write!(f, "{}: {}", self.context, self.message),
            CaughtKind::IoError | CaughtKind::Accept => {
                write!(f, "{}: {}", self.context, self.message)
            }
        }
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}

/// Runs `f`, containing a panic. Returns the panic message if it panicked (the caller
/// reports it, with its own context).
pub(crate) fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(&*payload))
}

/// Runs `f`; a panic is reported as `what` (scheduled at `origin`, if known) and `None`
/// comes back.
pub(crate) fn contain<R>(
    what: &str,
    origin: Option<&Location<'_>>,
    f: impl FnOnce() -> R,
) -> Option<R> {
    match guard(f) {
        Ok(r) => Some(r),
        Err(msg) => {
            report_panic(what, origin, msg);
            None
        }
    }
}

/// Reports a contained panic.
pub(crate) fn report_panic(what: &str, origin: Option<&Location<'_>>, msg: String) {
    let context = match origin {
        Some(origin) => format!("{what} scheduled at {origin}"),
        None => what.to_string(),
    };
    report(Caught::new(CaughtKind::Panic, context, msg));
}

/// Hands `caught` to this thread's reactor's error handler, or logs it if the thread has
/// no reactor any more (it is ending).
pub(crate) fn report(caught: Caught) {
    match Reactor::current_if_alive() {
        Some(reactor) => reactor.inner.caught(caught),
        None => log_caught(&caught),
    }
}

/// The default error handler.
pub(crate) fn log_caught(caught: &Caught) {
    match caught.kind {
        CaughtKind::Panic => log::error!("{caught}; the reactor goes on"),
        CaughtKind::Accept => match caught.os_error {
            Some((_, Some(errno))) if crate::io::sys::is_fd_exhaustion_errno(errno) => {
                log::warn!("{caught}")
            }
            _ => log::debug!("{caught}"),
        },
        _ => log::error!("{caught}"),
    }
}

/// Runs a scheduled job; a panic is reported with the job's origin.
pub(crate) fn run_job(job: Job) {
    let Job { f, origin } = job;
    contain("a callback", Some(origin), f);
}
