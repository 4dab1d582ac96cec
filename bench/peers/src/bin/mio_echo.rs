//! A minimal hand-written mio echo loop: the floor the benchmarks compare against.
//!
//! Usage: `mio_echo [ENDPOINT] [--drain]`.
//!
//! - Connections live in a `Slab`, keyed by their `Token`.
//! - Every read goes into one shared 64 KiB buffer and is written back at once; only the part
//!   the socket did not take is copied into the connection's `pending` buffer, and WRITABLE
//!   interest is registered only while `pending` is non-empty. While something is pending the
//!   connection is not read, so a peer that sends without reading costs at most one read's
//!   worth (64 KiB) of memory here, and TCP flow control pushes back on it.
//! - mio is edge-triggered, so a readable connection is read until the kernel has nothing more.
//!   By default a read that returns less than the buffer size counts as "drained" (the kernel
//!   queue was empty at that moment and epoll reports any later arrival as a new edge), exactly
//!   as tokio does on Linux; an event carrying read-closed/error, and the first read after a
//!   backpressure pause, always read until `WouldBlock` or EOF. `--drain` reads until
//!   `WouldBlock` every time (one extra `recv` -> EAGAIN per event).

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use mio::event::Event;
use mio::net::{TcpListener, TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const USAGE: &str = "usage: mio_echo [ENDPOINT] [--drain]   (ENDPOINT: tcp:PORT or tcp:port=P:interface=A; default tcp:8000; --drain: always read until WouldBlock)";

const LISTENER: Token = Token(usize::MAX - 1);
const SIGNAL: Token = Token(usize::MAX - 2);
const READ_BUF: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written back, from `pending_off` on.
    pending: Vec<u8>,
    pending_off: usize,
    /// WRITABLE interest is registered (only while `pending` is non-empty, or to finish an EOF).
    want_write: bool,
    /// The peer closed its side; close ours once `pending` is flushed.
    eof: bool,
}

enum Next {
    Keep,
    Close,
}

static SIGNAL_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(_: libc::c_int) {
    let fd = SIGNAL_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; the buffer is a valid local byte.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Self-pipe: SIGTERM/SIGINT write a byte to a socket the poll loop watches.
fn install_signal_pipe() -> io::Result<UnixStream> {
    let (rx, tx) = std::os::unix::net::UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    tx.set_nonblocking(true)?;
    SIGNAL_FD.store(tx.as_raw_fd(), Ordering::Relaxed);
    std::mem::forget(tx); // lives as long as the process
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler only does an
        // async-signal-safe write.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(UnixStream::from_std(rx))
}

fn main() {
    let (addr, rest) = peers::endpoint_from_args(USAGE);
    let mut strict_drain = false;
    for a in &rest {
        match a.as_str() {
            "--drain" => strict_drain = true,
            other => {
                eprintln!("error: unexpected argument {other:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = run(addr, strict_drain) {
        eprintln!("mio_echo: {addr}: {e}");
        std::process::exit(1);
    }
}

fn run(addr: std::net::SocketAddr, strict_drain: bool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut sig = install_signal_pipe()?;
    poll.registry()
        .register(&mut sig, SIGNAL, Interest::READABLE)?;
    peers::announce(listener.local_addr()?);

    let mut conns: Slab<Conn> = Slab::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF];
    // Set when accept failed for lack of descriptors: retried after a connection closes
    // (edge-triggered: no new event would come for connections already in the backlog).
    let mut accept_blocked = false;

    loop {
        match poll.poll(&mut events, None) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut closed_any = false;
        for ev in events.iter() {
            match ev.token() {
                SIGNAL => return Ok(()),
                LISTENER => accept_all(&poll, &listener, &mut conns, &mut accept_blocked)?,
                Token(key) => {
                    let Some(conn) = conns.get_mut(key) else {
                        continue;
                    };
                    if let Next::Close = on_conn_event(&poll, key, conn, ev, &mut buf, strict_drain)
                    {
                        let mut conn = conns.remove(key);
                        let _ = poll.registry().deregister(&mut conn.stream);
                        closed_any = true;
                    }
                }
            }
        }
        if closed_any && accept_blocked {
            accept_blocked = false;
            accept_all(&poll, &listener, &mut conns, &mut accept_blocked)?;
        }
    }
}

fn accept_all(
    poll: &Poll,
    listener: &TcpListener,
    conns: &mut Slab<Conn>,
    accept_blocked: &mut bool,
) -> io::Result<()> {
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let _ = stream.set_nodelay(true);
                let entry = conns.vacant_entry();
                poll.registry()
                    .register(&mut stream, Token(entry.key()), Interest::READABLE)?;
                entry.insert(Conn {
                    stream,
                    pending: Vec::new(),
                    pending_off: 0,
                    want_write: false,
                    eof: false,
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if peers::is_fd_exhaustion(&e) => {
                eprintln!("accept: {e}; waiting for a connection to close");
                *accept_blocked = true;
                // Don't spin if nothing of ours can close soon.
                std::thread::sleep(Duration::from_millis(1));
                return Ok(());
            }
            // ECONNABORTED and friends: that connection is gone, keep accepting.
            Err(_) => continue,
        }
    }
}

fn on_conn_event(
    poll: &Poll,
    key: usize,
    c: &mut Conn,
    ev: &Event,
    buf: &mut [u8],
    strict_drain: bool,
) -> Next {
    if ev.is_error() {
        return Next::Close;
    }
    let mut strict = strict_drain || ev.is_read_closed();
    if c.pending_off < c.pending.len() {
        if !ev.is_writable() && !ev.is_write_closed() {
            return Next::Keep; // still waiting for room; reading now would only grow `pending`
        }
        match flush_pending(c) {
            Ok(true) => strict = true, // resumed after a pause: events may have been skipped
            Ok(false) => return Next::Keep,
            Err(_) => return Next::Close,
        }
    }
    if c.eof {
        return Next::Close; // everything read before the EOF has been written back
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => {
                c.eof = true;
                break;
            }
            Ok(n) => {
                match write_back(c, &buf[..n]) {
                    Ok(true) => {}
                    Ok(false) => break, // backpressure: stop reading until writable
                    Err(_) => return Next::Close,
                }
                if n < buf.len() && !strict {
                    break; // short read: the kernel queue was empty (see the module docs)
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        }
    }
    let has_pending = c.pending_off < c.pending.len();
    if c.eof && !has_pending {
        return Next::Close;
    }
    if has_pending != c.want_write {
        let interest = if has_pending {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if poll
            .registry()
            .reregister(&mut c.stream, Token(key), interest)
            .is_err()
        {
            return Next::Close;
        }
        c.want_write = has_pending;
    }
    Next::Keep
}

/// Writes `data` back now; keeps what the socket did not take. Ok(false) if something is left.
fn write_back(c: &mut Conn, data: &[u8]) -> io::Result<bool> {
    let mut off = 0;
    while off < data.len() {
        match c.stream.write(&data[off..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                off += n;
                if off < data.len() {
                    break; // short write: the send buffer is full, wait for WRITABLE
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    if off < data.len() {
        c.pending.clear();
        c.pending.extend_from_slice(&data[off..]);
        c.pending_off = 0;
        return Ok(false);
    }
    Ok(true)
}

/// Writes out `pending`. Ok(true) once it is empty (and its memory freed).
fn flush_pending(c: &mut Conn) -> io::Result<bool> {
    while c.pending_off < c.pending.len() {
        match c.stream.write(&c.pending[c.pending_off..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => c.pending_off += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    // Idle connections should cost no buffer memory: give the buffer back.
    c.pending = Vec::new();
    c.pending_off = 0;
    Ok(true)
}
