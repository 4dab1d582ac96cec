//! The reactor's error types: each prints as a sentence a user can act on.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::net::protocol::TlsFailure;

/// What went wrong, as a type a caller can match on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An operating-system call failed; see [`Error::io`].
    Io,
    /// `run()` was called while the reactor was already running.
    AlreadyRunning,
    /// `stop()` was called while the reactor was not running.
    NotRunning,
    /// The delayed call already ran.
    AlreadyCalled,
    /// The delayed call was already cancelled.
    AlreadyCancelled,
    /// A delay was negative, not a number or infinite.
    InvalidDelay,
    /// The connection this handle refers to is closed (or closing and refusing new work).
    ConnectionClosed,
    /// The reactor this handle belongs to no longer exists (its thread ended).
    ReactorGone,
    /// The reactor was closed ([`Reactor::close`](crate::Reactor::close)).
    ReactorClosed,
    /// The object is in use by a callback of its own right now.
    Busy,
    /// This kind of object cannot do that (a test double without a descriptor).
    Unsupported,
    /// A descriptor is already watched for this direction.
    AlreadyWatched,
    /// The operation timed out.
    TimedOut,
    /// The operation was cancelled.
    Cancelled,
    /// A [`Deferred`](crate::Deferred) was fired a second time.
    AlreadyFired,
    /// Every resolver of a [`Deferred`](crate::Deferred) was dropped before it fired: the
    /// result will never come.
    Abandoned,
    /// User code panicked; the message is the panic's.
    Panicked,
    /// A value passed by the caller is out of range or malformed.
    InvalidInput,
    /// Called on a thread where it cannot work: a blocking call into the reactor made on
    /// the reactor's own thread would wait forever.
    WrongThread,
    /// A datagram port's send queue is at its bound: the datagram was dropped (and counted,
    /// and the protocol told through `error_received`).
    QueueFull,
    /// The process (or the system) is out of file descriptors (`EMFILE`, `ENFILE`): close
    /// some, or raise the limit (`ulimit -n`).
    TooManyOpenFiles,
    /// A child process could not be started: the program does not exist or cannot be
    /// executed, or setting it up (working directory, user, descriptors) failed;
    /// [`Error::io_error`] has the OS error (`NotFound`, `PermissionDenied`, ...).
    SpawnFailed,
    /// The child process has ended and was reaped: it cannot be signalled any more.
    ProcessExited,
    /// TLS failed: a certificate was rejected, the handshake timed out, or the peer broke
    /// the protocol; [`Error::tls_failure`] says which.
    Tls,
    /// Anything else (context in the message).
    Other,
}

/// torsion's error type: a kind, a sentence of context, and the OS error when there is one.
///
/// Cloning is cheap (the OS error is shared), so one error can reach several consumers (a
/// [`SharedDeferred`](crate::SharedDeferred)'s, say).
///
/// ```
/// use torsion_reactor::{Error, ErrorKind};
/// let e = Error::new(ErrorKind::NotRunning, "stop() called but the reactor is not running");
/// assert_eq!(e.to_string(), "stop() called but the reactor is not running");
/// ```
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Arc<io::Error>>,
    tls: Option<TlsFailure>,
}

impl Error {
    /// An error of `kind` with a message saying what happened.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
            tls: None,
        }
    }

    /// An OS error with context, e.g. `Error::io("cannot listen on 127.0.0.1:80", err)`;
    /// prints as `cannot listen on 127.0.0.1:80: permission denied`.
    pub fn io(context: impl Into<String>, err: io::Error) -> Error {
        Error {
            kind: ErrorKind::Io,
            message: context.into(),
            source: Some(Arc::new(err)),
            tls: None,
        }
    }

    /// An OS error of a specific `kind` (rather than [`ErrorKind::Io`]), with context: a
    /// spawn that failed, descriptors that ran out.
    pub fn io_with_kind(kind: ErrorKind, context: impl Into<String>, err: io::Error) -> Error {
        Error {
            kind,
            message: context.into(),
            source: Some(Arc::new(err)),
            tls: None,
        }
    }

    /// A TLS failure with context, e.g. `Error::tls("cannot connect to example.org:443",
    /// failure)`; prints as `cannot connect to example.org:443: TLS failed: ...`. Its kind
    /// is [`ErrorKind::Tls`].
    pub fn tls(context: impl Into<String>, failure: TlsFailure) -> Error {
        Error {
            kind: ErrorKind::Tls,
            message: context.into(),
            source: None,
            tls: Some(failure),
        }
    }

    /// The TLS failure, if this is one ([`Error::tls`]).
    pub fn tls_failure(&self) -> Option<&TlsFailure> {
        self.tls.as_ref()
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The underlying OS error, if any.
    pub fn io_error(&self) -> Option<&io::Error> {
        self.source.as_deref()
    }

    /// The context message without the OS error.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// Lower-case, sentence-friendly text for common OS errors ("address already in use").
pub(crate) fn describe_io(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => {
            let s = err.to_string();
            // std appends " (os error N)"; keep it, it helps searching.
            let mut chars = s.chars();
            match chars.next() {
                Some(c) => c.to_lowercase().collect::<String>() + chars.as_str(),
                None => s,
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, &self.tls) {
            (Some(err), _) => write!(f, "{}: {}", self.message, describe_io(err)),
            (None, Some(failure)) => write!(f, "{}: TLS failed: {failure}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}: {self})", self.kind)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        Error::io("I/O error", err)
    }
}

/// For code that returns `io::Result` (stream handlers) and awaits torsion's Deferreds:
/// the same text, with the OS error's kind when there is one (`TimedOut` for a timeout).
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match (&err.source, err.kind) {
            (Some(source), _) => source.kind(),
            (None, ErrorKind::TimedOut) => io::ErrorKind::TimedOut,
            (None, ErrorKind::InvalidInput) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err.to_string())
    }
}

/// `Result<T, torsion_reactor::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
