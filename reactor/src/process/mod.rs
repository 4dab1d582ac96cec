//! Child processes: [`Reactor::spawn_process`] starts a program with a
//! [`ProcessProtocol`] (Twisted's `spawnProcess`, asyncio's subprocess transports) and
//! returns its [`Process`] handle; [`Reactor::create_subprocess_exec`] is the async
//! convenience on top (asyncio's `create_subprocess_exec` and `communicate`).
//!
//! - `options.rs`: [`ProcessOptions`] and [`ChildFd`] (Twisted's `childFDs`).
//! - `sys.rs`: `fork`/`exec` and the other system calls, audited in one place.
//! - `reap.rs`: pidfds, the SIGCHLD fallback, and children at shutdown.
//! - `subprocess.rs`: the async convenience.
//!
//! Each pipe to or from the child is an ordinary stream connection (a pipe's read or
//! write end: see `net/pipe.rs`), so writing to a child has the same rules as writing to
//! a socket (never blocks, never drops, watermarks), and what the child writes arrives
//! from the loop. A small protocol on each pipe (`ChildPipe`) hands its events to the
//! process's one protocol, with the child's descriptor number.
//!
//! The order a protocol hears things in: `connection_made`; then, from each pipe,
//! `child_data_received` until its end of file and `child_connection_lost`; once the
//! child has ended, `process_exited` (its pipes may still be open: a grandchild can hold
//! them, or data may be unread); and once it has ended and every pipe is closed,
//! `process_ended`, the one place where all of its output has been seen.

mod options;
mod reap;
mod subprocess;
pub(crate) mod sys;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use libc::pid_t;

pub use options::{ChildFd, OnReactorStop, ProcessOptions};
pub use reap::ChildWatcher;
pub(crate) use reap::{Children, KILL_WAIT};
pub use subprocess::{Output, SUBPROCESS_BUFFER_LIMIT, Subprocess};

use crate::defer::deferred::{Deferred, Resolver};
use crate::error::{Error, ErrorKind};
use crate::event_loop::callback;
use crate::event_loop::{Inner, Reactor};
use crate::io::{Interest, Readiness, Registration, Sharing, Source};
use crate::net::conn::Conn;
use crate::net::pipe::{PipeOptions, PipeStream};
use crate::net::protocol::{Address, ConnectionLost, Protocol};
use crate::net::transport::{Transport, TransportBackend};
use sys::{Prepared, Source as FdSource, SpawnFailure, Step};

/// What a user writes for a child process: told when it is started, when it writes to a
/// pipe, when a pipe closes, when it exits, and when it has ended with every pipe closed.
///
/// Every method is called from the loop, never from inside a call into the reactor, and
/// never while another method of the same protocol runs (as for [`Protocol`]).
///
/// ```
/// use torsion_reactor::{Process, ProcessProtocol, ProcessStatus};
///
/// /// Collects what the child prints, and its status.
/// #[derive(Default)]
/// struct Collect { out: Vec<u8>, err: Vec<u8>, status: Option<ProcessStatus> }
///
/// impl ProcessProtocol for Collect {
///     fn connection_made(&mut self, process: &Process) {
///         process.write(b"input for the child\n");
///         process.close_stdin(); // after what was written is flushed
///     }
///     fn child_data_received(&mut self, _: &Process, fd: i32, data: &[u8]) {
///         match fd {
///             1 => self.out.extend_from_slice(data),
///             _ => self.err.extend_from_slice(data),
///         }
///     }
///     fn process_ended(&mut self, _: &Process, status: ProcessStatus) {
///         self.status = Some(status); // all of its output is in
///     }
/// }
/// ```
pub trait ProcessProtocol: Any {
    /// The child is started: `process` is its handle (keep a clone to write or signal
    /// later).
    fn connection_made(&mut self, process: &Process) {
        let _ = process;
    }

    /// The child wrote `data` to its descriptor `fd` (1 for stdout, 2 for stderr, or any
    /// descriptor set up as [`ChildFd::ParentReads`]). Each descriptor's data arrives in
    /// order; stdout and stderr are kept apart. `data` is only valid during the call.
    fn child_data_received(&mut self, process: &Process, fd: i32, data: &[u8]);

    /// The pipe of the child's descriptor `fd` is closed: end of file on an output (the
    /// child closed it or ended), or its input closed by us
    /// ([`Process::close_stdin`]) or by the child.
    fn child_connection_lost(&mut self, process: &Process, fd: i32, reason: &ConnectionLost) {
        let _ = (process, fd, reason);
    }

    /// The child has ended (it was reaped): `status` says how. Its pipes may still be
    /// open (data not read yet, or a grandchild holding them).
    fn process_exited(&mut self, process: &Process, status: ProcessStatus) {
        let _ = (process, status);
    }

    /// The child has ended and every one of its pipes is closed: all of its output has
    /// been delivered. The last call the protocol gets.
    fn process_ended(&mut self, process: &Process, status: ProcessStatus) {
        let _ = (process, status);
    }

    /// The buffer of the pipe to the child's descriptor `fd` (its stdin) went above its
    /// high-water mark: stop writing to it until `resume_writing`.
    fn pause_writing(&mut self, process: &Process, fd: i32) {
        let _ = (process, fd);
    }

    /// The buffer of the pipe to the child's descriptor `fd` drained to its low-water
    /// mark: write again.
    fn resume_writing(&mut self, process: &Process, fd: i32) {
        let _ = (process, fd);
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProcessStatus {
    /// It exited with this code.
    Exited(i32),
    /// A signal killed it.
    Signaled {
        /// The signal's number (`libc::SIGKILL`, ...).
        signal: i32,
        /// Whether it dumped core.
        core_dumped: bool,
    },
    /// It ended, but its status could not be read: something else in this process reaped
    /// it (a `waitpid(-1)`, or SIGCHLD set to be ignored).
    Unknown,
}

impl ProcessStatus {
    /// From a raw `waitpid` status.
    pub(crate) fn from_raw(status: libc::c_int) -> ProcessStatus {
        if libc::WIFEXITED(status) {
            ProcessStatus::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ProcessStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ProcessStatus::Unknown
        }
    }

    /// The exit code, if it exited (asyncio's `returncode` for a normal exit).
    pub fn code(&self) -> Option<i32> {
        match self {
            ProcessStatus::Exited(code) => Some(*code),
            _ => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            ProcessStatus::Signaled { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ProcessStatus::Exited(0)
    }
}

impl fmt::Display for ProcessStatus {
    /// `exit 3`, `signal SIGKILL`, `signal SIGSEGV (core dumped)`, `status unknown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessStatus::Exited(code) => write!(f, "exit {code}"),
            ProcessStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "signal {}", crate::event_loop::signals::name(*signal))?;
                if *core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            ProcessStatus::Unknown => f.write_str("status unknown"),
        }
    }
}

/// A handle to a child started with [`Reactor::spawn_process`]: its pid, its pipes, its
/// status. Cheap to clone; a handle outliving the child is harmless (writes are refused,
/// signals are an [`ErrorKind::ProcessExited`] error).
#[derive(Clone)]
pub struct Process(Rc<ProcState>);

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.0.pid)
            .field("program", &self.0.program)
            .field("status", &self.0.status.get())
            .finish()
    }
}

impl Process {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.0.pid
    }

    /// The program, as given to `spawn_process` (for messages).
    pub fn program(&self) -> &str {
        &self.0.program
    }

    /// Writes to the child's standard input (a [`ChildFd::ParentWrites`] pipe on 0).
    /// Never blocks, never drops data: what the pipe does not take is buffered, and the
    /// protocol's `pause_writing`/`resume_writing` say when to stop and go on. Ignored if
    /// standard input is not such a pipe or is closed (use
    /// [`try_write`](Process::try_write) to be told).
    pub fn write(&self, data: &[u8]) {
        let _ = self.try_write(data);
    }

    /// Like [`write`](Process::write), without copying when the bytes must be buffered.
    pub fn write_bytes(&self, data: Bytes) {
        if let Ok(t) = self.pipe(0) {
            t.write_bytes(data);
        }
    }

    /// Like [`write`](Process::write), but says whether the bytes were accepted.
    pub fn try_write(&self, data: &[u8]) -> Result<(), Error> {
        self.write_to_child(0, data)
    }

    /// Writes to the child's descriptor `fd`, which must be a [`ChildFd::ParentWrites`]
    /// pipe. Errors: [`ErrorKind::InvalidInput`] if `fd` is not a pipe from this process;
    /// [`ErrorKind::Unsupported`] for a pipe the child writes; [`ErrorKind::ConnectionClosed`]
    /// once it is closed.
    pub fn write_to_child(&self, fd: i32, data: &[u8]) -> Result<(), Error> {
        self.pipe(fd)?.try_write(data)
    }

    /// Closes the child's standard input once what was written is flushed (the child reads
    /// end of file).
    pub fn close_stdin(&self) {
        self.close_child_fd(0);
    }

    /// Closes the pipe of the child's descriptor `fd`: a pipe to the child once what was
    /// written is flushed; a pipe from it at once (the child gets SIGPIPE if it writes
    /// more). Does nothing for a descriptor that is not a pipe, or already closed.
    pub fn close_child_fd(&self, fd: i32) {
        if let Ok(t) = self.pipe(fd) {
            t.lose_connection();
        }
    }

    /// The transport of the pipe of the child's descriptor `fd`, for what a transport can
    /// do: `pause_reading` on an output, `set_write_buffer_limits` or
    /// `is_writing_paused` on its input.
    pub fn transport(&self, fd: i32) -> Option<Transport> {
        self.0.pipes.borrow().get(&fd).cloned()
    }

    /// Whether writing to the child's standard input should pause (see
    /// [`Transport::is_writing_paused`]).
    pub fn is_writing_paused(&self) -> bool {
        self.transport(0).is_some_and(|t| t.is_writing_paused())
    }

    /// Sends `signal` to the child. Error: [`ErrorKind::ProcessExited`] once it has been
    /// reaped (its pid may belong to another process by then, so nothing is sent).
    pub fn signal(&self, signal: i32) -> Result<(), Error> {
        self.0.signal(self.0.pid, signal)
    }

    /// Sends `signal` to the child's process group (the child must lead one: started with
    /// [`ProcessOptions::process_group`]`(0)` or [`ProcessOptions::new_session`]), so its
    /// own children get it too. Errors as for [`signal`](Process::signal).
    pub fn signal_group(&self, signal: i32) -> Result<(), Error> {
        self.0.signal(-self.0.pid, signal)
    }

    /// `SIGTERM` (asyncio's `terminate`).
    pub fn terminate(&self) -> Result<(), Error> {
        self.signal(libc::SIGTERM)
    }

    /// `SIGKILL`.
    pub fn kill(&self) -> Result<(), Error> {
        self.signal(libc::SIGKILL)
    }

    /// How the child ended, once it has been reaped (asyncio's `returncode`).
    pub fn status(&self) -> Option<ProcessStatus> {
        self.0.status.get()
    }

    /// Whether `process_ended` has been delivered: the child is gone and every pipe
    /// closed.
    pub fn has_ended(&self) -> bool {
        self.0.ended.get()
    }

    /// A Deferred that fires with the child's status once it has ended and every pipe is
    /// closed (right after `process_ended`); `.await` it in a task.
    pub fn ended(&self) -> Deferred<ProcessStatus> {
        match (self.0.ended.get(), self.0.status.get()) {
            (true, Some(status)) => Deferred::succeed(status),
            _ => {
                let (d, r) = Deferred::new();
                self.0.waiters.borrow_mut().push(r);
                d
            }
        }
    }

    fn pipe(&self, fd: i32) -> Result<Transport, Error> {
        if self.0.ended.get() {
            return Err(Error::new(
                ErrorKind::ConnectionClosed,
                format!("child {} ({}) has ended", self.0.pid, self.0.program),
            ));
        }
        self.transport(fd).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "descriptor {fd} of child {} ({}) is not a pipe from this process",
                    self.0.pid, self.0.program
                ),
            )
        })
    }
}

type BoxedProcessProtocol = Box<dyn ProcessProtocol>;

/// One child's state, shared by its handles, its pipes' protocols, its pidfd
/// registration and the reactor's table of running children.
pub(crate) struct ProcState {
    me: Weak<ProcState>,
    reactor: Weak<Inner>,
    pub(crate) pid: pid_t,
    pub(crate) program: String,
    pub(crate) on_stop: OnReactorStop,
    /// Out of its slot while one of its methods runs; gone after `process_ended`.
    protocol: Cell<Option<BoxedProcessProtocol>>,
    /// Every pipe, by child descriptor (kept until `process_ended`).
    pipes: RefCell<BTreeMap<RawFd, Transport>>,
    /// The pipes not closed yet.
    open: RefCell<BTreeSet<RawFd>>,
    /// `connection_made` was delivered.
    started: Cell<bool>,
    /// Set when reaped.
    status: Cell<Option<ProcessStatus>>,
    exited_told: Cell<bool>,
    ended: Cell<bool>,
    pidfd: RefCell<Option<Registration<OwnedFd>>>,
    /// Watched through SIGCHLD (no pidfd).
    by_signal: Cell<bool>,
    waiters: RefCell<Vec<Resolver<ProcessStatus>>>,
}

/// Puts a protocol back in its slot, even when the call it was taken out for unwinds.
struct PutBack<'a> {
    slot: &'a Cell<Option<BoxedProcessProtocol>>,
    protocol: Option<BoxedProcessProtocol>,
}

impl Drop for PutBack<'_> {
    fn drop(&mut self) {
        self.slot.set(self.protocol.take());
    }
}

impl ProcState {
    fn handle(&self) -> Option<Process> {
        self.me.upgrade().map(Process)
    }

    pub(crate) fn has_pidfd(&self) -> bool {
        self.pidfd.borrow().is_some()
    }

    /// Calls the protocol; a panic propagates (to the pipe's connection, which is then
    /// aborted), with the protocol put back first.
    fn call_propagating(&self, f: impl FnOnce(&mut dyn ProcessProtocol, &Process)) {
        let Some(process) = self.handle() else { return };
        let Some(protocol) = self.protocol.take() else {
            return;
        };
        let mut guard = PutBack {
            slot: &self.protocol,
            protocol: Some(protocol),
        };
        if let Some(p) = guard.protocol.as_mut() {
            f(&mut **p, &process);
        }
    }

    /// Calls the protocol; a panic is reported and contained.
    fn call(&self, what: &str, f: impl FnOnce(&mut dyn ProcessProtocol, &Process)) {
        let context = format!(
            "the process protocol's {what} for child {} ({})",
            self.pid, self.program
        );
        callback::contain(&context, None, || self.call_propagating(f));
    }

    /// The start job: `connection_made`, then what happened meanwhile.
    fn start(self: &Rc<Self>) {
        self.started.set(true);
        self.call("connection_made", |p, proc| p.connection_made(proc));
        if self.status.get().is_some() {
            self.deliver_exited();
        } else if self.by_signal.get() {
            self.try_reap();
        }
    }

    /// Reaps the child if it has ended (never blocks).
    pub(crate) fn try_reap(self: &Rc<Self>) {
        if self.status.get().is_some() {
            return;
        }
        match sys::try_wait(self.pid) {
            Ok(Some(raw)) => self.reaped(ProcessStatus::from_raw(raw)),
            Ok(None) => {}
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                log::warn!(
                    "child {} ({}) was reaped by something else in this process; \
                     its exit status is unknown",
                    self.pid,
                    self.program
                );
                self.reaped(ProcessStatus::Unknown);
            }
            Err(e) => log::debug!("waitpid({}) failed: {e}", self.pid),
        }
    }

    fn reaped(self: &Rc<Self>, status: ProcessStatus) {
        self.status.set(Some(status));
        self.forget_watch();
        if let Some(inner) = self.reactor.upgrade() {
            inner.children.forget(self.pid);
        }
        if self.started.get() {
            self.deliver_exited();
        }
    }

    /// Stops watching for the child's end (it was reaped, or the reactor is closing).
    pub(crate) fn forget_watch(&self) {
        let pidfd = self.pidfd.borrow_mut().take();
        drop(pidfd);
        if self.by_signal.replace(false) {
            if let Some(inner) = self.reactor.upgrade() {
                inner.children.unwatch_sigchld(&inner);
            }
        }
    }

    fn deliver_exited(self: &Rc<Self>) {
        let Some(status) = self.status.get() else {
            return;
        };
        if self.exited_told.replace(true) {
            return;
        }
        self.call("process_exited", |p, proc| p.process_exited(proc, status));
        self.check_ended();
    }

    fn check_ended(self: &Rc<Self>) {
        let Some(status) = self.status.get() else {
            return;
        };
        if !self.exited_told.get() || !self.open.borrow().is_empty() || self.ended.get() {
            return;
        }
        self.ended.set(true);
        self.call("process_ended", |p, proc| p.process_ended(proc, status));
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waiter in waiters {
            let _ = waiter.callback(status);
        }
        // The protocol's last call; the pipes are closed: let both go.
        let protocol = self.protocol.take();
        drop(protocol);
        let pipes = std::mem::take(&mut *self.pipes.borrow_mut());
        drop(pipes);
    }

    fn pipe_lost(self: &Rc<Self>, fd: RawFd, reason: &ConnectionLost) {
        self.open.borrow_mut().remove(&fd);
        self.call("child_connection_lost", |p, proc| {
            p.child_connection_lost(proc, fd, reason)
        });
        self.check_ended();
    }

    fn signal(&self, target: pid_t, signal: i32) -> Result<(), Error> {
        if self.status.get().is_some() {
            return Err(Error::new(
                ErrorKind::ProcessExited,
                format!(
                    "cannot signal child {} ({}): it has ended",
                    self.pid, self.program
                ),
            ));
        }
        sys::kill(target, signal).map_err(|e| {
            Error::io(
                format!(
                    "cannot send {} to child {} ({})",
                    crate::event_loop::signals::name(signal),
                    self.pid,
                    self.program
                ),
                e,
            )
        })
    }
}

impl Source for ProcState {
    fn ready(self: Rc<Self>, _inner: &Rc<Inner>, _readiness: Readiness) {
        // The pidfd is readable: the child has ended.
        self.try_reap();
    }
}

/// The protocol on each of a child's pipes: hands its events to the process's protocol.
struct ChildPipe {
    fd: RawFd,
    process: Rc<ProcState>,
}

impl Protocol for ChildPipe {
    fn data_received(&mut self, _: &Transport, data: &[u8]) {
        let fd = self.fd;
        // A panic aborts this pipe (the connection reports it), as for a socket.
        self.process
            .call_propagating(|p, proc| p.child_data_received(proc, fd, data));
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.process.pipe_lost(self.fd, reason);
    }

    fn pause_writing(&mut self, _: &Transport) {
        let fd = self.fd;
        self.process
            .call("pause_writing", |p, proc| p.pause_writing(proc, fd));
    }

    fn resume_writing(&mut self, _: &Transport) {
        let fd = self.fd;
        self.process
            .call("resume_writing", |p, proc| p.resume_writing(proc, fd));
    }
}

fn c_string(what: &str, s: &OsStr) -> Result<CString, Error> {
    CString::new(s.as_bytes()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("{what} {:?} contains a NUL byte", s.to_string_lossy()),
        )
    })
}

/// The paths to try for `program`, as `execvp` would: the program itself if it has a
/// `/`, else each directory of the child's `PATH` (or the parent's, or `/bin:/usr/bin`).
fn candidates(program: &OsStr, env: &[(OsString, OsString)]) -> Result<Vec<CString>, Error> {
    if program.as_bytes().contains(&b'/') {
        return Ok(vec![c_string("the program", program)?]);
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| OsString::from("/bin:/usr/bin"));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let mut full = if dir.is_empty() {
                b".".to_vec()
            } else {
                dir.to_vec()
            };
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            c_string("the program path", &OsString::from_vec(full))
        })
        .collect()
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// The error for a failed start, naming the program and the step.
fn spawn_error(program: &str, options: &ProcessOptions, failure: SpawnFailure) -> Error {
    let name = quoted(program);
    let context = match failure.step {
        Some(Step::Exec) => format!("cannot run {name}"),
        Some(Step::Directory) => format!(
            "cannot start {name}: cannot change to the working directory {}",
            quoted(
                &options
                    .cwd
                    .as_deref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            )
        ),
        Some(Step::Descriptors) => format!("cannot start {name}: cannot set up its descriptors"),
        Some(Step::User) => format!(
            "cannot start {name}: cannot switch to user {}",
            options.uid.unwrap_or_default()
        ),
        Some(Step::Group) | Some(Step::Groups) => format!(
            "cannot start {name}: cannot switch to group {}",
            options.gid.unwrap_or_default()
        ),
        Some(Step::Session) => format!("cannot start {name}: cannot start a new session"),
        Some(Step::ProcessGroup) => format!(
            "cannot start {name}: cannot join process group {}",
            options.process_group.unwrap_or_default()
        ),
        Some(Step::Signals) | None => format!("cannot start {name}"),
    };
    let kind = if crate::io::sys::is_out_of_fds(&failure.error) {
        ErrorKind::TooManyOpenFiles
    } else {
        ErrorKind::SpawnFailed
    };
    Error::io_with_kind(kind, context, failure.error)
}

/// The descriptors prepared for the child: the plan, what must stay open until it has
/// started, and our ends of its pipes, ready to be connections (everything that can fail
/// is done before the child starts).
struct Descriptors {
    plan: Vec<(RawFd, FdSource)>,
    child_ends: Vec<OwnedFd>,
    ours: Vec<(RawFd, PipeStream)>,
}

fn descriptors(program: &str, options: &ProcessOptions) -> Result<Descriptors, Error> {
    let out_of_fds = |e: std::io::Error| {
        let kind = if crate::io::sys::is_out_of_fds(&e) {
            ErrorKind::TooManyOpenFiles
        } else {
            ErrorKind::SpawnFailed
        };
        Error::io_with_kind(
            kind,
            format!("cannot start {}: cannot create its pipes", quoted(program)),
            e,
        )
    };
    let mut d = Descriptors {
        plan: Vec::new(),
        child_ends: Vec::new(),
        ours: Vec::new(),
    };
    let mut null: Option<RawFd> = None;
    let pipe_options = PipeOptions {
        restore_flags: false,
        drain_on_stop: options.on_stop != OnReactorStop::Leave,
    };
    for (&fd, how) in &options.fds {
        if fd < 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("child descriptor {fd} is negative"),
            ));
        }
        let source = match how {
            ChildFd::ParentReads | ChildFd::ParentWrites => {
                let (read, write) = sys::pipe().map_err(out_of_fds)?;
                // Our end is a separate open file from the child's: making it
                // non-blocking leaves the child's blocking.
                let (child, ours) = match how {
                    ChildFd::ParentReads => (write, PipeStream::reader(read, pipe_options)?),
                    _ => (read, PipeStream::writer(write, pipe_options)?),
                };
                let raw = child.as_raw_fd();
                d.child_ends.push(child);
                d.ours.push((fd, ours));
                FdSource::Fd(raw)
            }
            ChildFd::Inherit => FdSource::Fd(fd),
            ChildFd::Fd(owned) => FdSource::Fd(owned.as_raw_fd()),
            ChildFd::Null => match null {
                Some(raw) => FdSource::Fd(raw),
                None => {
                    let opened = sys::dev_null().map_err(out_of_fds)?;
                    let raw = opened.as_raw_fd();
                    d.child_ends.push(opened);
                    null = Some(raw);
                    FdSource::Fd(raw)
                }
            },
            ChildFd::Close => FdSource::Close,
        };
        d.plan.push((fd, source));
    }
    Ok(d)
}

impl Reactor {
    /// Starts `program` with `args` (not including `argv[0]`, which is the program as
    /// given, or [`ProcessOptions::arg0`]) and connects `protocol` to it (Twisted's
    /// `spawnProcess`). A program without a `/` is looked up in the child's `PATH` (or
    /// this process's). The protocol hears `connection_made` from the loop, soon, then
    /// the child's output, its exit and its end (see [`ProcessProtocol`]).
    ///
    /// The child is reaped as soon as it ends (through a pidfd where the kernel has them,
    /// SIGCHLD otherwise: see [`ChildWatcher`]); if it is still running when the reactor
    /// stops, it is killed after the shutdown grace period unless the options say
    /// otherwise ([`OnReactorStop`]).
    ///
    /// ```
    /// use std::{cell::RefCell, rc::Rc};
    /// use torsion_reactor::{Process, ProcessOptions, ProcessProtocol, ProcessStatus, Reactor};
    ///
    /// #[derive(Default)]
    /// struct Out { text: Vec<u8>, status: Option<ProcessStatus> }
    /// struct Collect(Rc<RefCell<Out>>);
    ///
    /// impl ProcessProtocol for Collect {
    ///     fn child_data_received(&mut self, _: &Process, fd: i32, data: &[u8]) {
    ///         if fd == 1 {
    ///             self.0.borrow_mut().text.extend_from_slice(data);
    ///         }
    ///     }
    ///     fn process_ended(&mut self, _: &Process, status: ProcessStatus) {
    ///         self.0.borrow_mut().status = Some(status);
    ///     }
    /// }
    ///
    /// let reactor = Reactor::current();
    /// let out = Rc::new(RefCell::new(Out::default()));
    /// let process = reactor
    ///     .spawn_process(Collect(out.clone()), "echo", ["hello"], &ProcessOptions::new())
    ///     .unwrap();
    /// reactor.run_until(std::time::Duration::from_secs(10), || process.has_ended()).unwrap();
    /// assert_eq!(out.borrow().text, b"hello\n");
    /// assert_eq!(out.borrow().status, Some(ProcessStatus::Exited(0)));
    ///
    /// let err = reactor
    ///     .spawn_process(Collect(out.clone()), "no-such-program", [""; 0], &ProcessOptions::new())
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), torsion_reactor::ErrorKind::SpawnFailed);
    /// assert_eq!(err.to_string(), "cannot run \"no-such-program\": no such file or directory");
    /// ```
    ///
    /// Errors (nothing is left open or running after one): [`ErrorKind::SpawnFailed`] if
    /// the program does not exist or cannot be executed, or its setup failed (working
    /// directory, user, group, a descriptor to inherit), with the OS error in
    /// [`Error::io_error`] and the step in the message (reported by the child through a
    /// close-on-exec pipe, not as an exit with 127); [`ErrorKind::TooManyOpenFiles`];
    /// [`ErrorKind::InvalidInput`] for a NUL byte in the program, an argument or the
    /// environment; [`ErrorKind::ReactorClosed`].
    pub fn spawn_process<P, S, I>(
        &self,
        protocol: P,
        program: S,
        args: I,
        options: &ProcessOptions,
    ) -> Result<Process, Error>
    where
        P: ProcessProtocol,
        S: AsRef<OsStr>,
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let inner = self.inner_open()?;
        let program = program.as_ref();
        let name = program.to_string_lossy().into_owned();
        if program.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "cannot start a process: the program name is empty",
            ));
        }
        let env = options.environment();
        let mut argv = vec![c_string(
            "the program",
            options.arg0.as_deref().unwrap_or(program),
        )?];
        for arg in args {
            argv.push(c_string("an argument", arg.as_ref())?);
        }
        let envp = env
            .iter()
            .map(|(k, v)| {
                let mut kv = k.clone();
                kv.push("=");
                kv.push(v);
                c_string("an environment variable", &kv)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = match &options.cwd {
            Some(dir) => Some(c_string("the working directory", dir.as_os_str())?),
            None => None,
        };
        let descriptors = descriptors(&name, options)?;
        let prep = Prepared {
            paths: candidates(program, &env)?,
            argv,
            envp,
            cwd,
            fds: descriptors.plan,
            uid: options.uid,
            gid: options.gid,
            process_group: options.process_group,
            new_session: options.new_session,
        };

        // Watched through SIGCHLD: from before it starts, so that its end is not missed.
        let children = &inner.children;
        let by_signal = children.watcher() == ChildWatcher::Sigchld || !sys::pidfds_available();
        if by_signal {
            children.watch_sigchld(&inner)?;
        }
        let pid = match sys::spawn(&prep) {
            Ok(pid) => pid,
            Err(failure) => {
                if by_signal {
                    children.unwatch_sigchld(&inner);
                }
                return Err(spawn_error(&name, options, failure));
            }
        };
        drop(descriptors.child_ends);
        let (pidfd, by_signal) = self.watch_child(&inner, pid, &name, by_signal)?;

        let state = Rc::new_cyclic(|me| ProcState {
            me: me.clone(),
            reactor: Rc::downgrade(&inner),
            pid,
            program: name.clone(),
            on_stop: options.on_stop,
            protocol: Cell::new(Some(Box::new(protocol))),
            pipes: RefCell::new(BTreeMap::new()),
            open: RefCell::new(BTreeSet::new()),
            started: Cell::new(false),
            status: Cell::new(None),
            exited_told: Cell::new(false),
            ended: Cell::new(false),
            pidfd: RefCell::new(None),
            by_signal: Cell::new(by_signal),
            waiters: RefCell::new(Vec::new()),
        });
        if let Some(pidfd) = pidfd {
            match Registration::new(
                &inner,
                pidfd,
                Interest::READ,
                state.clone(),
                Sharing::Shared,
            ) {
                Ok(registration) => *state.pidfd.borrow_mut() = Some(registration),
                Err((e, _)) => {
                    log::debug!("cannot watch the pidfd of child {pid}: {e}; using SIGCHLD");
                    if let Err(err) = children.watch_sigchld(&inner) {
                        kill_and_reap(pid);
                        return Err(err);
                    }
                    state.by_signal.set(true);
                }
            }
        }
        children.add(Rc::clone(&state));
        // `connection_made` first, then the pipes start reading (their own jobs, queued
        // after it: nothing about a pipe can reach the protocol before it).
        let s = Rc::clone(&state);
        self.call_soon(move || s.start());
        for (fd, stream) in descriptors.ours {
            let address = Address::Other(format!("child {pid} ({name}) fd {fd}"));
            let adapter = Box::new(ChildPipe {
                fd,
                process: Rc::clone(&state),
            });
            match Conn::start_soon(
                &inner,
                stream,
                adapter,
                address.clone(),
                Rc::new(address),
                None,
            ) {
                Ok(conn) => {
                    let transport = Transport::new(conn as Rc<dyn TransportBackend>);
                    state.pipes.borrow_mut().insert(fd, transport);
                    state.open.borrow_mut().insert(fd);
                }
                Err(err) => {
                    // (Registering with no interest yet does not fail; if it ever did,
                    // the child could not be talked to: it is ended, and reported so.)
                    log::error!("child {pid} ({name}): {err}; killing it");
                    let _ = sys::kill(pid, libc::SIGKILL);
                }
            }
        }
        Ok(Process(state))
    }

    /// A pidfd for the child just started, or SIGCHLD if it has none. If it cannot be
    /// watched at all (out of descriptors), it is killed and reaped, and that is the error.
    fn watch_child(
        &self,
        inner: &Rc<Inner>,
        pid: pid_t,
        name: &str,
        by_signal: bool,
    ) -> Result<(Option<OwnedFd>, bool), Error> {
        if by_signal {
            return Ok((None, true));
        }
        if let Some(pidfd) = sys::pidfd_open(pid) {
            return Ok((Some(pidfd), false));
        }
        match inner.children.watch_sigchld(inner) {
            Ok(()) => Ok((None, true)),
            Err(err) => {
                kill_and_reap(pid);
                let kind = match err.io_error() {
                    Some(e) if crate::io::sys::is_out_of_fds(e) => ErrorKind::TooManyOpenFiles,
                    _ => ErrorKind::SpawnFailed,
                };
                Err(Error::new(
                    kind,
                    format!(
                        "cannot watch child {pid} ({name}), so it was killed: {}",
                        err
                    ),
                ))
            }
        }
    }
}

/// Kills a child that cannot be watched, and reaps it.
fn kill_and_reap(pid: pid_t) {
    let _ = sys::kill(pid, libc::SIGKILL);
    sys::reap_blocking(pid);
}
