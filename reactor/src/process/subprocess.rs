//! The async convenience over [`spawn_process`](crate::Reactor::spawn_process):
//! asyncio's `create_subprocess_exec` and `communicate`. Run a program, feed it input,
//! get its output and status, from callbacks (a [`Deferred`]) or from async code
//! (`.await`).

use std::cell::RefCell;
use std::ffi::OsStr;
use std::rc::Rc;

use bytes::Bytes;

use super::{Process, ProcessOptions, ProcessProtocol, ProcessStatus};
use crate::defer::deferred::Deferred;
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;

/// How much of each output is buffered before [`Subprocess::communicate`] is called;
/// past it, reading that pipe pauses (the child blocks when it fills), as asyncio's
/// stream limit does.
pub const SUBPROCESS_BUFFER_LIMIT: usize = 64 * 1024;

/// What a finished [`Subprocess`] left: its status and everything it wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ProcessStatus,
    /// Everything it wrote to its standard output (if that was a pipe).
    pub stdout: Vec<u8>,
    /// Everything it wrote to its standard error (if that was a pipe).
    pub stderr: Vec<u8>,
}

#[derive(Default)]
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Pause reading past this many buffered bytes (lifted by `communicate`).
    limit: Option<usize>,
}

struct Collector(Rc<RefCell<Collected>>);

impl ProcessProtocol for Collector {
    fn child_data_received(&mut self, process: &Process, fd: i32, data: &[u8]) {
        let mut collected = self.0.borrow_mut();
        let limit = collected.limit;
        let buffer = match fd {
            1 => &mut collected.stdout,
            2 => &mut collected.stderr,
            _ => return,
        };
        buffer.extend_from_slice(data);
        if limit.is_some_and(|limit| buffer.len() >= limit) {
            if let Some(t) = process.transport(fd) {
                t.pause_reading();
            }
        }
    }
}

/// A child started with [`Reactor::create_subprocess_exec`]: its output is collected (up
/// to [`SUBPROCESS_BUFFER_LIMIT`] per stream until
/// [`communicate`](Subprocess::communicate) is called).
///
/// ```
/// use torsion_reactor::{ProcessOptions, Reactor};
///
/// let reactor = Reactor::current();
/// let output = reactor
///     .run_until_complete(async {
///         let child = Reactor::current().create_subprocess_exec("tr", ["a-z", "A-Z"], &ProcessOptions::new())?;
///         child.communicate("hello\n").await
///     })
///     .unwrap()
///     .unwrap();
/// assert!(output.status.success());
/// assert_eq!(output.stdout, b"HELLO\n");
/// ```
pub struct Subprocess {
    process: Process,
    collected: Rc<RefCell<Collected>>,
}

impl std::fmt::Debug for Subprocess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subprocess")
            .field("process", &self.process)
            .finish()
    }
}

impl Subprocess {
    /// The child's handle (to signal it, write to it, look at its status).
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// Writes `input` to the child's standard input and closes it, reads all of its
    /// output, and waits for it to end (asyncio's `communicate`). Everything is buffered
    /// in memory: for large or endless output, use a [`ProcessProtocol`] instead.
    ///
    /// Errors (in the Deferred): [`ErrorKind::InvalidInput`] if `input` is not empty and
    /// standard input is not a pipe. The child closing its input before reading all of
    /// it is not an error (as in asyncio).
    pub fn communicate(self, input: impl Into<Bytes>) -> Deferred<Output, Error> {
        let input = input.into();
        if !input.is_empty() {
            if self.process.transport(0).is_none() {
                return Deferred::fail(Error::new(
                    ErrorKind::InvalidInput,
                    "communicate: the child's standard input is not a pipe",
                ));
            }
            self.process.write_bytes(input);
        }
        self.process.close_stdin();
        self.collected.borrow_mut().limit = None;
        for fd in [1, 2] {
            if let Some(t) = self.process.transport(fd) {
                t.resume_reading();
            }
        }
        let collected = self.collected;
        self.process.ended().map(move |status| {
            let mut collected = collected.borrow_mut();
            Output {
                status,
                stdout: std::mem::take(&mut collected.stdout),
                stderr: std::mem::take(&mut collected.stderr),
            }
        })
    }

    /// Waits for the child to end and its pipes to close (asyncio's `wait`). Output past
    /// the buffer limit is not read until [`communicate`](Subprocess::communicate), so a
    /// child that writes more than that blocks: use `communicate` for such children.
    pub fn wait(&self) -> Deferred<ProcessStatus> {
        self.process.ended()
    }
}

impl Reactor {
    /// Starts `program` with `args` and collects its output, for async code or Deferred
    /// chains (asyncio's `create_subprocess_exec`): then
    /// [`communicate`](Subprocess::communicate) feeds it input and gives its output and
    /// status. The options are those of [`spawn_process`](Reactor::spawn_process) (by
    /// default standard input, output and error are pipes).
    ///
    /// Errors: those of [`spawn_process`](Reactor::spawn_process).
    pub fn create_subprocess_exec<S, I>(
        &self,
        program: S,
        args: I,
        options: &ProcessOptions,
    ) -> Result<Subprocess, Error>
    where
        S: AsRef<OsStr>,
        I: IntoIterator,
        I::Item: AsRef<OsStr>,
    {
        let collected = Rc::new(RefCell::new(Collected {
            limit: Some(SUBPROCESS_BUFFER_LIMIT),
            ..Collected::default()
        }));
        let process =
            self.spawn_process(Collector(Rc::clone(&collected)), program, args, options)?;
        Ok(Subprocess { process, collected })
    }
}
