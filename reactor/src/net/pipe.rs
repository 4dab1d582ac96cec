//! Pipes and standard I/O as connections (asyncio's `connect_read_pipe` and
//! `connect_write_pipe`, Twisted's `StandardIO`): a [`PipeStream`] is a [`Stream`] over a
//! pipe's read end, its write end, or a read end and a write end together (standard input
//! and output; a child's output and input), so a pipe gets everything a socket
//! connection has: the same `Protocol` callbacks, writes that never block or drop, the
//! watermarks, `lose_connection` flushing first, `connection_lost` exactly once.
//!
//! A one-way pipe behaves as the state machine's [`Ends`] say: a read end refuses writes
//! ([`ErrorKind::Unsupported`]) and never asks for writability; end of file closes it
//! (`eof_received`, then `connection_lost` with `Done`). A write end never reads; its
//! reader going away (epoll reports an error on the write end) is its loss: clean if
//! nothing was waiting to be written, a broken pipe if something was.
//!
//! Descriptors handed in are made non-blocking (a property of the open file, shared with
//! every duplicate: another process reading the same terminal sees it too) and their
//! flags are put back when the connection closes. Standard input and output are used
//! through private duplicates; when the connection closes them, descriptors 0 and 1 are
//! pointed at `/dev/null`, so the other ends see end of file and no file opened later
//! takes their numbers.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use super::conn::{Conn, Ends};
use super::factory::{BoxedFactory, Factory};
use super::listen::{ListeningPort, Port};
use super::protocol::{Address, ConnectionLost, Protocol, boxed};
use super::stream::{Stream, StreamKind};
use super::transport::{Transport, TransportBackend};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Reactor;
use crate::event_loop::callback::{Caught, CaughtKind, report};
use crate::io::Sharing;
use crate::io::sys::{self, FileId};

/// One descriptor of a pipe stream, with the flags to put back when it closes.
struct End {
    fd: OwnedFd,
    /// The file status flags it had before it was made non-blocking (`None`: leave them,
    /// for a pipe the reactor made, or when another `End` shares the open file).
    restore: Option<libc::c_int>,
    /// For standard input or output: which descriptor to release when this closes.
    std_fd: Option<(RawFd, FileId)>,
}

impl End {
    /// Takes `fd` over: non-blocking from now on, its flags put back at close if
    /// `restore_flags`.
    fn new(fd: OwnedFd, restore_flags: bool) -> io::Result<End> {
        let flags = sys::status_flags(fd.as_fd())?;
        if flags & libc::O_NONBLOCK == 0 {
            sys::set_status_flags(fd.as_fd(), flags | libc::O_NONBLOCK)?;
        }
        Ok(End {
            fd,
            restore: restore_flags.then_some(flags),
            std_fd: None,
        })
    }
}

impl Drop for End {
    fn drop(&mut self) {
        if let Some(flags) = self.restore {
            let _ = sys::set_status_flags(self.fd.as_fd(), flags);
        }
        if let Some((target, was)) = self.std_fd {
            sys::release_std_fd(target, was);
        }
        // `fd` closes after this.
    }
}

/// A pipe's read end, write end, or both (see the module documentation).
pub(crate) struct PipeStream {
    /// The registered descriptor: the read end if the stream reads, else the write end.
    main: End,
    /// For a stream that reads and writes: the write end (gone once writing is shut).
    write: RefCell<Option<End>>,
    kind: StreamKind,
}

/// How a [`PipeStream`] is used.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PipeOptions {
    /// Put the descriptors' flags back at close (descriptors handed in by the user).
    pub(crate) restore_flags: bool,
    /// See `StreamKind::drain_on_stop` (a child's pipes).
    pub(crate) drain_on_stop: bool,
}

impl PipeOptions {
    pub(crate) const HANDED_IN: PipeOptions = PipeOptions {
        restore_flags: true,
        drain_on_stop: false,
    };
}

/// Whether the reader of `fd` going away can be watched for: a FIFO's write end (epoll
/// reports an error on it). A terminal or socket open for reading too would report
/// input instead; a file never has a reader to lose.
fn hangup_watchable(fd: BorrowedFd<'_>, id: FileId) -> bool {
    id.is_fifo()
        && sys::status_flags(fd).is_ok_and(|flags| flags & libc::O_ACCMODE == libc::O_WRONLY)
}

fn check_mode(fd: BorrowedFd<'_>, want_read: bool) -> Result<FileId, Error> {
    let raw = fd.as_raw_fd();
    let id = sys::file_id(fd).map_err(|e| Error::io(format!("cannot use descriptor {raw}"), e))?;
    if id.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("descriptor {raw} is a directory, not a pipe"),
        ));
    }
    let flags =
        sys::status_flags(fd).map_err(|e| Error::io(format!("cannot use descriptor {raw}"), e))?;
    let mode = flags & libc::O_ACCMODE;
    let ok = if want_read {
        mode != libc::O_WRONLY
    } else {
        mode != libc::O_RDONLY
    };
    if !ok {
        let what = if want_read { "reading" } else { "writing" };
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("descriptor {raw} is not open for {what}"),
        ));
    }
    Ok(id)
}

fn setup_error(e: io::Error) -> Error {
    if sys::is_out_of_fds(&e) {
        Error::io_with_kind(
            ErrorKind::TooManyOpenFiles,
            "cannot set up the pipe: out of file descriptors",
            e,
        )
    } else {
        Error::io("cannot set up the pipe", e)
    }
}

impl PipeStream {
    /// A read end.
    pub(crate) fn reader(fd: OwnedFd, options: PipeOptions) -> Result<PipeStream, Error> {
        check_mode(fd.as_fd(), true)?;
        Ok(PipeStream {
            main: End::new(fd, options.restore_flags).map_err(setup_error)?,
            write: RefCell::new(None),
            kind: StreamKind {
                ends: Ends::ReadOnly,
                watch_hangup: false,
                sharing: Sharing::Shared,
                drain_on_stop: options.drain_on_stop,
                edge: false,
            },
        })
    }

    /// A write end.
    pub(crate) fn writer(fd: OwnedFd, options: PipeOptions) -> Result<PipeStream, Error> {
        let id = check_mode(fd.as_fd(), false)?;
        let watch_hangup = hangup_watchable(fd.as_fd(), id);
        Ok(PipeStream {
            main: End::new(fd, options.restore_flags).map_err(setup_error)?,
            write: RefCell::new(None),
            kind: StreamKind {
                ends: Ends::WriteOnly,
                watch_hangup,
                sharing: Sharing::Shared,
                drain_on_stop: options.drain_on_stop,
                edge: false,
            },
        })
    }

    /// A read end and a write end as one stream.
    pub(crate) fn duplex(
        read: OwnedFd,
        write: OwnedFd,
        options: PipeOptions,
    ) -> Result<PipeStream, Error> {
        let read_id = check_mode(read.as_fd(), true)?;
        let write_id = check_mode(write.as_fd(), false)?;
        let watch_hangup = hangup_watchable(write.as_fd(), write_id);
        // The same file both ways (a terminal, a socket): one open file, one set of flags,
        // put back by the read end when the whole stream closes, not when writing is
        // shut (the read end must stay non-blocking).
        let shared = read_id.dev == write_id.dev && read_id.ino == write_id.ino;
        Ok(PipeStream {
            main: End::new(read, options.restore_flags).map_err(setup_error)?,
            write: RefCell::new(Some(
                End::new(write, options.restore_flags && !shared).map_err(setup_error)?,
            )),
            kind: StreamKind {
                ends: Ends::Both,
                watch_hangup,
                sharing: Sharing::Shared,
                drain_on_stop: options.drain_on_stop,
                edge: false,
            },
        })
    }

    /// This process's standard input and output, through private duplicates.
    pub(crate) fn stdio() -> Result<PipeStream, Error> {
        // SAFETY: descriptors 0 and 1 are only duplicated here; if one is not open the
        // duplication fails with EBADF, reported below.
        let (fd0, fd1) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
        let fail = |what: &str, e: io::Error| {
            if sys::is_out_of_fds(&e) {
                Error::io_with_kind(
                    ErrorKind::TooManyOpenFiles,
                    format!("cannot use standard {what}: out of file descriptors"),
                    e,
                )
            } else {
                Error::io(format!("cannot use standard {what}"), e)
            }
        };
        let id0 = sys::file_id(fd0).map_err(|e| fail("input", e))?;
        let id1 = sys::file_id(fd1).map_err(|e| fail("output", e))?;
        let read = sys::dup_cloexec(fd0).map_err(|e| fail("input", e))?;
        let write = sys::dup_cloexec(fd1).map_err(|e| fail("output", e))?;
        let mut stream = PipeStream::duplex(read, write, PipeOptions::HANDED_IN)?;
        stream.main.std_fd = Some((0, id0));
        if let Some(write) = &mut *stream.write.borrow_mut() {
            write.std_fd = Some((1, id1));
        }
        Ok(stream)
    }

    fn write_end<R>(&self, f: impl FnOnce(BorrowedFd<'_>) -> io::Result<R>) -> io::Result<R> {
        match self.kind.ends {
            Ends::WriteOnly => f(self.main.fd.as_fd()),
            Ends::ReadOnly => Err(io::Error::from_raw_os_error(libc::EBADF)),
            Ends::Both => match &*self.write.borrow() {
                Some(end) => f(end.fd.as_fd()),
                None => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
            },
        }
    }
}

impl AsFd for PipeStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.main.fd.as_fd()
    }
}

impl AsRawFd for PipeStream {
    fn as_raw_fd(&self) -> RawFd {
        self.main.fd.as_raw_fd()
    }
}

impl Stream for PipeStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        if self.kind.ends == Ends::WriteOnly {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        // SAFETY: `buf` is valid for writes of its length; the descriptor is open (owned).
        let n = unsafe { libc::read(self.main.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_end(|fd| {
            let count = bufs.len().min(libc::c_int::MAX as usize) as libc::c_int;
            // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the slices live for the
            // call; the descriptor is open (borrowed from its owner).
            let n = unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        })
    }

    fn shutdown_write(&self) -> io::Result<()> {
        // Only a stream that reads too is asked to (a write end's half-close closes it):
        // closing the write end is the pipe's end of file.
        let end = self.write.borrow_mut().take();
        drop(end);
        Ok(())
    }

    fn kind(&self) -> StreamKind {
        self.kind
    }

    fn write_fd(&self) -> Option<RawFd> {
        self.write.borrow().as_ref().map(|end| end.fd.as_raw_fd())
    }
}

fn transport_of(conn: Rc<Conn<PipeStream>>) -> Transport {
    Transport::new(conn as Rc<dyn TransportBackend>)
}

fn pipe_address(what: &str, fd: RawFd) -> Address {
    Address::Other(format!("{what} (fd {fd})"))
}

/// The address standard I/O connections report.
pub(crate) fn stdio_address() -> Address {
    Address::Other("standard I/O".to_owned())
}

impl Reactor {
    /// Connects `protocol` to a pipe's read end (or any readable descriptor: a FIFO, a
    /// character device, a socket, a file): asyncio's `connect_read_pipe`. The protocol
    /// gets `connection_made` (from the loop, soon), `data_received` for what arrives,
    /// `eof_received` then `connection_lost` with
    /// [`ConnectionLost::Done`](crate::ConnectionLost) at end of file. Writes are refused
    /// with [`ErrorKind::Unsupported`]; `pause_reading`/`resume_reading` work as on a
    /// socket.
    ///
    /// The descriptor is made non-blocking (its flags are put back when the connection
    /// closes) and closed with the connection.
    ///
    /// ```
    /// use std::io::Write;
    /// use std::os::unix::net::UnixStream;
    /// use std::{cell::RefCell, rc::Rc};
    /// use torsion_reactor::{ConnectionLost, Protocol, Reactor, Transport};
    ///
    /// struct Collect(Rc<RefCell<(Vec<u8>, bool)>>);
    /// impl Protocol for Collect {
    ///     fn data_received(&mut self, _: &Transport, data: &[u8]) {
    ///         self.0.borrow_mut().0.extend_from_slice(data);
    ///     }
    ///     fn connection_lost(&mut self, reason: &ConnectionLost) {
    ///         self.0.borrow_mut().1 = reason.is_clean();
    ///     }
    /// }
    ///
    /// // A pipe, or anything readable: here one end of a socket pair.
    /// let (read, mut write) = UnixStream::pair().unwrap();
    /// let reactor = Reactor::current();
    /// let got = Rc::new(RefCell::new((Vec::new(), false)));
    /// reactor.connect_read_pipe(Collect(got.clone()), read).unwrap();
    /// write.write_all(b"hello").unwrap();
    /// drop(write); // end of file
    /// reactor.run_until(std::time::Duration::from_secs(10), || got.borrow().1).unwrap();
    /// assert_eq!(got.borrow().0, b"hello");
    /// ```
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a directory or a descriptor not open for
    /// reading; [`ErrorKind::TooManyOpenFiles`]; [`ErrorKind::ReactorClosed`].
    pub fn connect_read_pipe<P: Protocol>(
        &self,
        protocol: P,
        pipe: impl Into<OwnedFd>,
    ) -> Result<Transport, Error> {
        let fd = pipe.into();
        let raw = fd.as_raw_fd();
        let stream = PipeStream::reader(fd, PipeOptions::HANDED_IN)?;
        self.start_pipe(stream, protocol, pipe_address("pipe", raw))
    }

    /// Connects `protocol` to a pipe's write end (or any writable descriptor): asyncio's
    /// `connect_write_pipe`. Writes never block and never drop data; the watermarks and
    /// `pause_writing`/`resume_writing` work as on a socket; `lose_connection` flushes,
    /// then closes (the reader sees end of file). Nothing is ever read. When the reader
    /// goes away, the connection is lost: with `Done` if nothing was waiting to be
    /// written, with a broken pipe ([`ConnectionLost::Reset`](crate::ConnectionLost)) if
    /// something was.
    ///
    /// Errors: [`ErrorKind::InvalidInput`] for a directory or a descriptor not open for
    /// writing; [`ErrorKind::TooManyOpenFiles`]; [`ErrorKind::ReactorClosed`].
    pub fn connect_write_pipe<P: Protocol>(
        &self,
        protocol: P,
        pipe: impl Into<OwnedFd>,
    ) -> Result<Transport, Error> {
        let fd = pipe.into();
        let raw = fd.as_raw_fd();
        let stream = PipeStream::writer(fd, PipeOptions::HANDED_IN)?;
        self.start_pipe(stream, protocol, pipe_address("pipe", raw))
    }

    /// Connects `protocol` to two descriptors as one transport: it reads `read` and writes
    /// `write` (a child's output and input, two FIFOs). `lose_write_connection` closes
    /// `write` (its reader sees end of file) and keeps reading.
    pub fn connect_pipes<P: Protocol>(
        &self,
        protocol: P,
        read: impl Into<OwnedFd>,
        write: impl Into<OwnedFd>,
    ) -> Result<Transport, Error> {
        let (read, write) = (read.into(), write.into());
        let raw = read.as_raw_fd();
        let stream = PipeStream::duplex(read, write, PipeOptions::HANDED_IN)?;
        self.start_pipe(stream, protocol, pipe_address("pipes", raw))
    }

    /// Connects `protocol` to this process's standard input and output as one transport
    /// (Twisted's `StandardIO`): it reads standard input and writes standard output.
    /// Works when they are pipes, files (a file is always ready: it is read a bounded
    /// slice per loop iteration, so a large one does not stall the loop), terminals or
    /// sockets. End of input is `eof_received`; returning `true` keeps standard output
    /// open for writing. `lose_write_connection` closes standard output (a half-close:
    /// the next program in a pipeline sees end of file) and keeps reading.
    ///
    /// While the transport is open, standard input and output are non-blocking (a
    /// property of the open file, shared with standard error when it is the same terminal
    /// or pipe); their flags are put back when it closes, and descriptors 0 and 1 are
    /// then pointed at `/dev/null`. Use one `standard_io` per process at a time.
    ///
    /// ```no_run
    /// use torsion_reactor::{ConnectionLost, Protocol, Reactor, Transport};
    ///
    /// /// Upper-cases standard input onto standard output (`tr a-z A-Z`).
    /// struct Upper;
    /// impl Protocol for Upper {
    ///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
    ///         t.write(&data.to_ascii_uppercase());
    ///     }
    ///     // Stop reading while standard output cannot keep up: memory stays bounded.
    ///     fn pause_writing(&mut self, t: &Transport) { t.pause_reading(); }
    ///     fn resume_writing(&mut self, t: &Transport) { t.resume_reading(); }
    ///     fn connection_lost(&mut self, _: &ConnectionLost) {
    ///         let _ = Reactor::current().stop();
    ///     }
    /// }
    ///
    /// let reactor = Reactor::current();
    /// reactor.standard_io(Upper).unwrap();
    /// reactor.run().unwrap(); // at end of input: flushed, closed, stopped
    /// ```
    ///
    /// Errors: an [`ErrorKind::Io`] error if descriptor 0 or 1 is not open;
    /// [`ErrorKind::TooManyOpenFiles`]; [`ErrorKind::ReactorClosed`].
    pub fn standard_io<P: Protocol>(&self, protocol: P) -> Result<Transport, Error> {
        let stream = PipeStream::stdio()?;
        self.start_pipe(stream, protocol, stdio_address())
    }

    /// Serves one connection over standard input and output, built by `factory` (the
    /// `stdio:` server endpoint; an inetd-style service). The factory builds the protocol
    /// from the loop, soon; the port reports `standard I/O` as its address and is
    /// "listening" until that connection is lost (`stop_listening` does not close it).
    /// The factory's `stop_factory` runs once it is lost.
    ///
    /// Errors: those of [`standard_io`](Reactor::standard_io).
    pub fn listen_stdio<F: Factory>(&self, factory: F) -> Result<ListeningPort, Error> {
        let inner = self.inner_open()?;
        let stream = PipeStream::stdio()?;
        let factory = BoxedFactory::new(factory);
        factory.started();
        let port = Rc::new(StdioPort {
            open: Cell::new(true),
        });
        let me = Rc::clone(&port);
        let weak = Rc::downgrade(&inner);
        self.call_soon(move || {
            let Some(inner) = weak.upgrade() else { return };
            let Some(protocol) = factory.build(&stdio_address()) else {
                log::debug!("the stdio factory refused the connection");
                me.open.set(false);
                drop(stream);
                factory.stopped();
                return;
            };
            let port = Rc::clone(&me);
            let on_lost = Box::new(move |_: &ConnectionLost| {
                port.open.set(false);
                factory.stopped();
            });
            let started = Conn::start(
                &inner,
                stream,
                protocol,
                stdio_address(),
                Rc::new(stdio_address()),
                Some(super::conn::OnLost::Call(on_lost)),
            );
            if let Err(err) = started {
                me.open.set(false);
                report(Caught::new(
                    CaughtKind::IoError,
                    "serving standard I/O",
                    err.to_string(),
                ));
            }
        });
        Ok(ListeningPort { port })
    }

    fn start_pipe<P: Protocol>(
        &self,
        stream: PipeStream,
        protocol: P,
        address: Address,
    ) -> Result<Transport, Error> {
        let inner = self.inner_open()?;
        let protocol = boxed(Some(protocol))
            .ok_or_else(|| Error::new(ErrorKind::InvalidInput, "an empty protocol box"))?;
        let conn = Conn::start_soon(
            &inner,
            stream,
            protocol,
            address.clone(),
            Rc::new(address),
            None,
        )?;
        Ok(transport_of(conn))
    }
}

/// The "port" of a `stdio:` server: open while its one connection is.
struct StdioPort {
    open: Cell<bool>,
}

impl Port for StdioPort {
    fn local(&self) -> Address {
        stdio_address()
    }

    fn stop(&self) {}

    fn is_listening(&self) -> bool {
        self.open.get()
    }
}
