//! One stream connection (TCP or Unix): its socket, its write queue, its state machine
//! and its protocol.
//!
//! Where a byte goes: the poller reports the socket readable → the loop calls
//! [`Source::ready`] on the connection → [`Conn::on_readable`] reads into the reactor's
//! shared buffer → the protocol's `data_received` gets a slice of it.
//!
//! Writes made while user code runs are gathered in the write queue and sent with one
//! (vectored) `send`: a connection's own writes when its callback returns, writes from
//! elsewhere (a timer, another connection's callback) in the loop's gathered-writes phase,
//! before it waits. Outside the loop, and for large writes, bytes go to the socket at once.
//! What the socket does not take waits for writability (write interest is on only then).
//!
//! The same connection carries one-way streams (a pipe's read or write end: see
//! [`Ends`]) and a stream that reads one descriptor and writes another (standard input and
//! output): the writing descriptor then has a registration of its own, whose events are
//! the writing side's (`WriteEvents`).
//!
//! A socket is registered edge-triggered (as mio and tokio register theirs): the kernel
//! reports a connection when data arrives, in the order it arrives, so the loop serves
//! connections first come, first served. (Level-triggered, epoll re-queues each reported
//! connection ahead of those that became ready after it, which let recently served
//! connections overtake waiting ones and lengthened the latency tail.) So a read event is
//! consumed until a short read, `WouldBlock` or the end of file; a connection that stops
//! earlier (its reading paused, or its read budget spent) comes back to its socket by
//! itself: at once on the next iteration for the budget, on `resume_reading` for a pause.
//! While it wants nothing, its registration stays in epoll with an empty interest set, so
//! a paused or idle connection still hears a reset (see `on_failure_while_not_reading`).
//!
//! The read budget (`READ_BUDGET_KIB`) is per loop iteration, and once a protocol's own
//! writes cross its high mark nothing more is read until it has heard `pause_writing`:
//! what one peer makes the server buffer is bounded by the mark plus one iteration's reads.

mod queue;
mod state;
#[cfg(any(test, fuzzing))]
pub(crate) mod state_check;

pub(crate) use state::Ends;

use std::any::{Any, TypeId};
use std::cell::{Cell, OnceCell, RefCell};
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::accepted::Accepted;
use super::protocol::{Address, ConnectionLost, Protocol};
use super::stream::Stream;
use super::transport::{
    DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, PeerCredentials, Transport, TransportBackend,
};
use crate::error::{Error, ErrorKind};
use crate::event_loop::Inner;
use crate::event_loop::callback::{self, Job};
use crate::event_loop::queues::Flush;
use crate::event_loop::stats::Counters;
use crate::io::{Interest, Readiness, Registration, Sharing, Source, Wind};
use queue::{COPY_MAX, MAX_IOVECS, WriteQueue};
use state::{Actions, ConnState};

/// What a connection reads per loop iteration, in KiB (four of the reactor's 64 KiB read
/// buffers): enough to stream quickly, bounded so that one fast peer cannot starve the
/// others, and so that what one iteration's reads make a protocol write (before it hears
/// `pause_writing` in the next) is bounded too.
const READ_BUDGET_KIB: u16 = 4 * (crate::event_loop::READ_BUF_SIZE / 1024) as u16;

pub(crate) type LostHook = Box<dyn FnOnce(&ConnectionLost)>;

/// What runs after a connection's `connection_lost`.
pub(crate) enum OnLost {
    /// Take it off its listening port's count of open connections. (Every connection a
    /// server accepts has one: a pointer, not a boxed closure, so that it costs no
    /// allocation.)
    Untrack(Weak<Accepted>),
    /// Anything else (a client connector's `client_connection_lost`).
    Call(LostHook),
}

/// What changes together, behind one borrow per entry point.
struct Core {
    state: ConnState,
    queue: WriteQueue,
    /// The last send was short or would block: wait for writability, do not try again.
    blocked: bool,
    /// Bytes were gathered during this connection's own callback: flush when it returns.
    flush_due: bool,
    /// On the reactor's list of connections to flush before it waits.
    listed: bool,
    /// The queue's length as last added to the reactor's `write_buffered` count.
    accounted: usize,
}

impl Core {
    /// Brings the reactor's count of buffered bytes up to date with this queue.
    fn account(&mut self, stats: &Counters) {
        let now = self.queue.len();
        if now != self.accounted {
            stats.buffered(self.accounted, now);
            self.accounted = now;
        }
    }
}

pub(crate) struct Conn<S: Stream> {
    me: Weak<Conn<S>>,
    reactor: Weak<Inner>,
    /// The reactor's counters (bytes, closes by reason, buffered bytes, slow callbacks).
    stats: Rc<Counters>,
    /// What few connections have (see [`Rare`]); created when first needed. (Declared
    /// before `io`, so that a writing descriptor's registration is dropped first: the
    /// stream owns that descriptor.)
    rare: OnceCell<Box<Rare>>,
    /// The socket; `None` once closed.
    io: RefCell<Option<Registration<S>>>,
    /// Graceful stop: finish writing, keep reading (see `StreamKind::drain_on_stop`).
    drain_on_stop: bool,
    /// What was last asked of the registrations (`io`, `write_io`): most writes change
    /// nothing, and then cost no registry lookup.
    asked: Cell<(Interest, Interest)>,
    core: RefCell<Core>,
    /// Out of its slot while one of its callbacks runs; gone once `connection_lost` ran.
    protocol: Cell<Option<Box<dyn Protocol>>>,
    in_callback: Cell<bool>,
    /// Edge-triggered: the socket may hold bytes no event will announce again (reading
    /// stopped before the kernel ran dry); read them when reading may go on.
    unread: Cell<bool>,
    /// A read is queued for the next iteration.
    read_queued: Cell<bool>,
    /// The iteration (`Inner::turn`) this connection last read in, and the KiB it read
    /// then (see `READ_BUDGET_KIB`).
    budget: Cell<(u16, u16)>,
    /// An event said the peer closed: every read goes on to the end of file (that event
    /// will not come again).
    peer_closed: Cell<bool>,
    peer: Address,
    /// Shared with the other connections of its listening port, if it has one.
    local: Rc<Address>,
    /// Run after `connection_lost`: take it off its port's count, or a client connector's
    /// `client_connection_lost`.
    on_lost: Cell<Option<OnLost>>,
}

/// What few connections have, boxed so that it costs the others one pointer (a server
/// holding many idle connections pays for every byte of [`Conn`]): a second descriptor,
/// what a layer learned, a protocol waiting to take over.
#[derive(Default)]
struct Rare {
    /// The writing descriptor's own registration, for a stream that writes to another
    /// descriptor than it reads ([`Stream::write_fd`]: standard I/O); `None` otherwise,
    /// and once the writing side is shut or the connection closed.
    write_io: RefCell<Option<Registration<WriteFd>>>,
    /// What a layer learned about the connection (`set_peer_addr`, `attach_extra`).
    learned: RefCell<Learned>,
    /// Set by `set_protocol` during a callback: takes over when the callback returns.
    replacement: Cell<Option<Box<dyn Protocol>>>,
}

/// What a layer over a connection learned about it (a PROXY protocol header: the client's
/// real address and the header's TLVs).
#[derive(Default)]
struct Learned {
    peer: Option<Address>,
    extras: Vec<Rc<dyn Any>>,
}

fn closed_error() -> Error {
    Error::new(
        ErrorKind::ConnectionClosed,
        "cannot write: the connection is closed or closing",
    )
}

fn read_only_error() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "cannot write: this transport is a pipe's read end (it only reads)",
    )
}

/// The number of a stream's writing descriptor, owned by the stream: a registration of it
/// is dropped before the stream closes it.
pub(crate) struct WriteFd(RawFd);

impl AsRawFd for WriteFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// The writing descriptor's events, handed to its connection: writable means flush, and
/// readable can only mean that the reader went away (nothing is read from it).
struct WriteEvents<S: Stream>(Rc<Conn<S>>);

impl<S: Stream> Source for WriteEvents<S> {
    fn ready(self: Rc<Self>, _inner: &Rc<Inner>, readiness: Readiness) {
        if readiness.writable {
            self.0.flush();
        }
        if readiness.readable {
            self.0.on_hangup();
        }
    }
}

impl Actions {
    /// Both sets of actions (the first close wins).
    fn and(mut self, other: Actions) -> Actions {
        self.close = self.close.or(other.close);
        self.shutdown_write |= other.shutdown_write;
        self.notify_flow |= other.notify_flow;
        self.notify_resumed |= other.notify_resumed;
        self
    }
}

impl<S: Stream> Conn<S> {
    /// Registers `io` with the reactor and calls the protocol's `connection_made` (for a
    /// connection the loop made: accepted, or connected).
    pub(crate) fn start(
        inner: &Rc<Inner>,
        io: S,
        protocol: Box<dyn Protocol>,
        peer: Address,
        local: Rc<Address>,
        on_lost: Option<OnLost>,
    ) -> Result<Rc<Conn<S>>, Error> {
        let conn = Conn::register(inner, io, protocol, peer, local, on_lost)?;
        conn.update_interest();
        conn.call("connection_made", |p, t| p.connection_made(t));
        Ok(conn)
    }

    /// Like [`start`](Conn::start), for a connection made by a call from user code (a
    /// pipe, standard I/O): `connection_made` is called from the loop, soon, and nothing is
    /// read before it.
    pub(crate) fn start_soon(
        inner: &Rc<Inner>,
        io: S,
        protocol: Box<dyn Protocol>,
        peer: Address,
        local: Rc<Address>,
        on_lost: Option<OnLost>,
    ) -> Result<Rc<Conn<S>>, Error> {
        let conn = Conn::register(inner, io, protocol, peer, local, on_lost)?;
        let me = Rc::clone(&conn);
        conn.soon(move || {
            me.call("connection_made", |p, t| p.connection_made(t));
            me.update_interest();
        });
        Ok(conn)
    }

    /// The connection, registered with no interest yet.
    fn register(
        inner: &Rc<Inner>,
        io: S,
        protocol: Box<dyn Protocol>,
        peer: Address,
        local: Rc<Address>,
        on_lost: Option<OnLost>,
    ) -> Result<Rc<Conn<S>>, Error> {
        let kind = io.kind();
        let write_fd = io.write_fd();
        let conn = Rc::new_cyclic(|me| Conn {
            me: me.clone(),
            reactor: Rc::downgrade(inner),
            stats: Rc::clone(&inner.stats),
            rare: OnceCell::new(),
            io: RefCell::new(None),
            drain_on_stop: kind.drain_on_stop,
            asked: Cell::new((Interest::NONE, Interest::NONE)),
            core: RefCell::new(Core {
                state: ConnState::with_ends(
                    DEFAULT_HIGH_WATER,
                    DEFAULT_LOW_WATER,
                    kind.ends,
                    kind.watch_hangup,
                ),
                queue: WriteQueue::default(),
                blocked: false,
                flush_due: false,
                listed: false,
                accounted: 0,
            }),
            protocol: Cell::new(Some(protocol)),
            in_callback: Cell::new(false),
            unread: Cell::new(false),
            read_queued: Cell::new(false),
            peer_closed: Cell::new(false),
            budget: Cell::new((0, 0)),
            peer,
            local,
            on_lost: Cell::new(on_lost),
        });
        let watch_error =
            |e| Error::io(format!("cannot watch the connection from {}", conn.peer), e);
        if let Some(fd) = write_fd {
            let events = Rc::new(WriteEvents(Rc::clone(&conn)));
            let registration =
                Registration::new(inner, WriteFd(fd), Interest::NONE, events, Sharing::Shared)
                    .map_err(|(e, _)| watch_error(e))?;
            *conn.rare().write_io.borrow_mut() = Some(registration);
        }
        let registered = if kind.edge {
            Registration::new_edge(inner, io, Interest::NONE, conn.clone(), kind.sharing)
        } else {
            Registration::new(inner, io, Interest::NONE, conn.clone(), kind.sharing)
        };
        match registered {
            Ok(registration) => *conn.io.borrow_mut() = Some(registration),
            Err((e, io)) => {
                // The writing descriptor's registration goes before the stream closes it.
                conn.take_write_io();
                drop(io);
                return Err(watch_error(e));
            }
        }
        inner.connections.set(inner.connections.get() + 1);
        inner.stats.opened();
        Ok(conn)
    }

    fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    /// Unwatches the writing descriptor (before the stream closes it), if it has its own.
    fn take_write_io(&self) {
        if let Some(rare) = self.rare.get() {
            let write_io = rare.write_io.borrow_mut().take();
            drop(write_io);
        }
    }

    fn transport(self: &Rc<Self>) -> Transport {
        Transport::new(Rc::clone(self) as Rc<dyn TransportBackend>)
    }

    #[track_caller]
    fn soon(&self, f: impl FnOnce() + 'static) {
        if let Some(inner) = self.reactor.upgrade() {
            inner.call_soon_job(Job {
                f: Box::new(f),
                origin: Location::caller(),
            });
        }
    }

    /// Calls into the protocol with it taken out of its slot; its own writes are sent when
    /// it returns; a panic aborts the connection.
    fn call<R>(
        self: &Rc<Self>,
        what: &str,
        f: impl FnOnce(&mut dyn Protocol, &Transport) -> R,
    ) -> Option<R> {
        let mut protocol = self.protocol.take()?;
        let transport = self.transport();
        self.in_callback.set(true);
        let started = self.stats.start();
        let result = callback::guard(|| f(&mut *protocol, &transport));
        self.stats.finish(started, || {
            format!(
                "the protocol's {what} on the connection from {} to {}",
                self.peer, self.local
            )
        });
        self.in_callback.set(false);
        match self.rare.get().and_then(|rare| rare.replacement.take()) {
            Some(new) => {
                self.protocol.set(Some(new));
                drop(protocol);
            }
            None => self.protocol.set(Some(protocol)),
        }
        if self.core.borrow().flush_due {
            self.flush();
        }
        match result {
            Ok(r) => Some(r),
            Err(msg) => {
                callback::report_panic(
                    &format!(
                        "the protocol's {what} on the connection from {} to {} \
                         (the connection is aborted)",
                        self.peer, self.local
                    ),
                    None,
                    msg.clone(),
                );
                let actions = self
                    .core
                    .borrow_mut()
                    .state
                    .close(ConnectionLost::Panicked(msg));
                self.apply(actions);
                None
            }
        }
    }

    /// Carries out what a transition asked for.
    fn apply(self: &Rc<Self>, actions: Actions) {
        if actions.shutdown_write {
            // A writing descriptor of its own is closed by the shutdown: unwatch it first.
            self.take_write_io();
            let result = match &*self.io.borrow() {
                Some(io) => io.get().shutdown_write(),
                None => Ok(()),
            };
            if let Err(e) = result {
                if e.kind() != io::ErrorKind::NotConnected {
                    let failed = self.core.borrow_mut().state.fail(e);
                    return self.apply(failed);
                }
            }
        }
        if let Some(reason) = actions.close {
            return self.finish_close(reason);
        }
        if actions.notify_flow {
            let me = Rc::clone(self);
            self.soon(move || me.deliver_flow());
        }
        if actions.notify_resumed {
            let me = Rc::clone(self);
            self.soon(move || {
                if !me.core.borrow().state.is_closed() {
                    me.call("reading_resumed", |p, t| p.reading_resumed(t));
                }
            });
        }
        self.update_interest();
    }

    fn update_interest(&self) {
        let wants = {
            let core = self.core.borrow();
            core.state.wants(core.blocked && !core.queue.is_empty())
        };
        let write_io = self.rare.get().map(|rare| &rare.write_io);
        let split = write_io.is_some_and(|w| w.borrow().is_some());
        let asked = if split {
            // Reads on one descriptor, writes (and the hang-up watch) on the other.
            (
                Interest {
                    read: wants.read,
                    write: false,
                },
                Interest {
                    read: wants.hangup,
                    write: wants.write,
                },
            )
        } else {
            (
                Interest {
                    read: wants.read || wants.hangup,
                    write: wants.write,
                },
                Interest::NONE,
            )
        };
        if self.asked.replace(asked) == asked {
            return;
        }
        if let Some(io) = &*self.io.borrow() {
            io.set_interest(asked.0);
        }
        if let Some(write_io) = write_io {
            if let Some(write_io) = &*write_io.borrow() {
                write_io.set_interest(asked.1);
            }
        }
    }

    /// Closes the socket now (deregistering it) and schedules `connection_lost`.
    fn finish_close(self: &Rc<Self>, reason: ConnectionLost) {
        {
            let mut core = self.core.borrow_mut();
            core.queue.clear();
            core.account(&self.stats);
        }
        self.stats.closed(&reason);
        // The writing descriptor's registration first: the stream owns that descriptor.
        self.take_write_io();
        let io = self.io.borrow_mut().take();
        drop(io);
        if let Some(inner) = self.reactor.upgrade() {
            inner
                .connections
                .set(inner.connections.get().saturating_sub(1));
        }
        let me = Rc::clone(self);
        self.soon(move || me.deliver_lost(reason));
    }

    fn deliver_lost(self: Rc<Self>, reason: ConnectionLost) {
        let Some(mut protocol) = self.protocol.take() else {
            return; // delivered already
        };
        let started = self.stats.start();
        callback::contain(
            &format!(
                "the protocol's connection_lost on the connection from {}",
                self.peer
            ),
            None,
            || protocol.connection_lost(&reason),
        );
        self.stats.finish(started, || {
            format!(
                "the protocol's connection_lost on the connection from {} to {}",
                self.peer, self.local
            )
        });
        drop(protocol);
        match self.on_lost.take() {
            Some(OnLost::Untrack(port)) => {
                if let Some(port) = port.upgrade() {
                    // Resolves the Deferreds waiting for the port to empty.
                    callback::contain("a port's last connection closing", None, || port.remove());
                }
            }
            Some(OnLost::Call(hook)) => {
                callback::contain("client_connection_lost", None, || hook(&reason));
            }
            None => {}
        }
    }

    /// Reads what the descriptor holds (see the module documentation: a socket's
    /// registration is edge-triggered). `peer_closed`: the event said the peer closed, so a
    /// short read is not the end of what there is to read (the end of file is still to come).
    fn on_readable(self: &Rc<Self>, inner: &Rc<Inner>, peer_closed: bool) {
        if !self.core.borrow().state.has_read_side() {
            // A write end is watched for readability only to see its reader go away.
            return self.on_hangup();
        }
        self.unread.set(false);
        if peer_closed {
            self.peer_closed.set(true);
        }
        let to_the_end = self.peer_closed.get();
        // No loop runs inside a callback, so the shared buffer is never in use here.
        let mut buf = inner.read_buf.borrow_mut();
        // The budget is per iteration, not per call: a queued read and a fresh event in
        // the same iteration share it, so nothing read before the next iteration (when the
        // flow notices it caused are delivered) exceeds it.
        let turn = inner.turn.get();
        let mut used = match self.budget.get() {
            (seen, used) if seen == turn => used,
            _ => 0,
        };
        loop {
            if !self.core.borrow().state.is_reading() {
                // Paused (or closing): the rest waits for `resume_reading`.
                self.unread.set(true);
                break;
            }
            let room = usize::from(READ_BUDGET_KIB - used) * 1024;
            if room == 0 {
                // Budget spent: let the other connections go first, and come back next
                // iteration (no event will say the socket still has bytes).
                self.unread.set(true);
                drop(buf);
                self.queue_read();
                return;
            }
            let want = room.min(buf.len());
            let result = match &*self.io.borrow() {
                Some(io) => io.get().read(&mut buf[..want]),
                None => break,
            };
            match result {
                Ok(0) => {
                    self.on_eof();
                    break;
                }
                Ok(n) => {
                    // (n <= room, so this stays within the budget)
                    used += n.div_ceil(1024) as u16;
                    self.budget.set((turn, used));
                    self.stats.read(n);
                    self.call("data_received", |p, t| p.data_received(t, &buf[..n]));
                    if self.core.borrow().state.pause_pending() {
                        // Its answers crossed the high mark: no more data until it has
                        // heard `pause_writing` (already scheduled, so it runs before the
                        // read queued here).
                        self.unread.set(true);
                        drop(buf);
                        self.queue_read();
                        return;
                    }
                    if n < want && !to_the_end {
                        // The kernel had no more: what arrives later is a new event.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let failed = self.core.borrow_mut().state.fail(e);
                    self.apply(failed);
                    break;
                }
            }
        }
    }

    /// The poller said the socket failed or hung up while the protocol was not reading. A
    /// reset (the socket holds an error) ends the connection now, with that error as the
    /// reason: the peer is gone, and nothing read from it later could be answered (what
    /// the kernel held unread goes with it). Anything else (a clean close by the peer) waits
    /// for `resume_reading`, which reads on to the end of file.
    fn on_failure_while_not_reading(self: &Rc<Self>) {
        if self.core.borrow().state.is_closed() || !self.core.borrow().state.has_read_side() {
            return;
        }
        // SO_ERROR, which taking clears (not a socket, as a pipe: no error to take).
        let err = self
            .io
            .borrow()
            .as_ref()
            .and_then(|io| socket2::SockRef::from(io.get()).take_error().ok().flatten());
        if let Some(err) = err {
            let failed = self.core.borrow_mut().state.fail(err);
            self.apply(failed);
        }
    }

    /// The reader of the writing descriptor went away (if the event said so truly).
    fn on_hangup(self: &Rc<Self>) {
        let write_fd = self.rare.get().and_then(|rare| {
            let write_io = rare.write_io.borrow();
            write_io.as_ref().map(|w| w.get().as_raw_fd())
        });
        let fd = write_fd.or_else(|| self.io.borrow().as_ref().map(|io| io.get().as_raw_fd()));
        if fd.is_some_and(|fd| !crate::io::sys::hung_up(fd)) {
            return; // a spurious event: the reader is still there
        }
        let actions = {
            let mut core = self.core.borrow_mut();
            let queued = !core.queue.is_empty();
            core.state.hung_up(queued)
        };
        self.apply(actions);
    }

    /// Reads again on the next iteration (from the loop, as every callback starts).
    fn queue_read(self: &Rc<Self>) {
        if self.read_queued.replace(true) {
            return;
        }
        let me = Rc::clone(self);
        self.soon(move || {
            me.read_queued.set(false);
            if !me.unread.get() {
                return;
            }
            if let Some(inner) = me.reactor.upgrade() {
                me.on_readable(&inner, false);
            }
        });
    }

    fn on_eof(self: &Rc<Self>) {
        let ask = self.core.borrow_mut().state.read_eof();
        self.update_interest();
        if !ask {
            return;
        }
        let keep_open = self
            .call("eof_received", |p, t| p.eof_received(t))
            .unwrap_or(false);
        let actions = {
            let mut core = self.core.borrow_mut();
            let queued = !core.queue.is_empty();
            core.state.eof_answered(keep_open, queued)
        };
        self.apply(actions);
    }

    /// Sends what is queued, then `extra` (parts of a write not yet queued), in as few
    /// `writev`s as the socket takes; returns how many bytes of `extra` went out.
    fn send(core: &mut Core, io: &S, extra: &[&[u8]], stats: &Counters) -> io::Result<usize> {
        let extra_total: usize = extra.iter().map(|p| p.len()).sum();
        let mut extra_sent = 0;
        loop {
            let mut slices: Vec<IoSlice<'_>> = Vec::new();
            core.queue.slices(&mut slices);
            let from_queue: usize = slices.iter().map(|s| s.len()).sum();
            let mut skip = extra_sent;
            for part in extra {
                if slices.len() >= MAX_IOVECS {
                    break;
                }
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices.push(IoSlice::new(&part[skip..]));
                skip = 0;
            }
            if slices.is_empty() {
                return Ok(extra_sent);
            }
            let want: usize = slices.iter().map(|s| s.len()).sum();
            let result = io.write_vectored(&slices);
            drop(slices);
            match result {
                Ok(n) => {
                    stats.written(n);
                    core.queue.consume(n.min(from_queue));
                    extra_sent += n.saturating_sub(from_queue);
                    if n < want {
                        // The socket buffer is full: trying again now would only cost a
                        // system call that returns EAGAIN.
                        core.blocked = true;
                        return Ok(extra_sent);
                    }
                    if core.queue.is_empty() && extra_sent == extra_total {
                        return Ok(extra_sent);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    core.blocked = true;
                    return Ok(extra_sent);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends what is queued (gathered writes, or the rest once the socket is writable).
    fn flush(self: &Rc<Self>) {
        let actions = {
            let mut core = self.core.borrow_mut();
            core.flush_due = false;
            if core.state.is_closed() || core.queue.is_empty() {
                return;
            }
            let io = self.io.borrow();
            let Some(io) = io.as_ref() else { return };
            core.blocked = false;
            let sent = Self::send(&mut core, io.get(), &[], &self.stats);
            core.account(&self.stats);
            match sent {
                Ok(_) => {
                    let queued = core.queue.len();
                    let actions = core.state.queue_changed(queued);
                    if queued == 0 {
                        actions.and(core.state.drained())
                    } else {
                        actions
                    }
                }
                Err(e) => core.state.fail(e),
            }
        };
        self.apply(actions);
    }

    fn write_parts(self: &Rc<Self>, parts: &[&[u8]], owned: Option<Bytes>) -> Result<(), Error> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut core = self.core.borrow_mut();
        if !core.state.accepts_writes() {
            if core.state.ends == Ends::ReadOnly {
                return Err(read_only_error());
            }
            return Err(closed_error());
        }
        if total == 0 {
            return Ok(());
        }
        let own_callback = self.in_callback.get();
        let gathering = own_callback || self.reactor.upgrade().is_some_and(|r| r.is_dispatching());
        let small = core.queue.len() + total <= COPY_MAX;
        if core.blocked || (gathering && small) {
            match owned {
                Some(bytes) => core.queue.push_bytes(bytes),
                None => parts.iter().for_each(|p| core.queue.push_slice(p)),
            }
            let mut schedule_flush = false;
            if !core.blocked {
                if own_callback {
                    core.flush_due = true;
                } else if !core.listed {
                    core.listed = true;
                    schedule_flush = true;
                }
            }
            core.account(&self.stats);
            let queued = core.queue.len();
            let actions = core.state.queue_changed(queued);
            drop(core);
            if schedule_flush {
                if let (Some(inner), Some(me)) = (self.reactor.upgrade(), self.me.upgrade()) {
                    inner.queues.push_flush(me);
                }
            }
            // Queuing changes no interest (write interest waits for a short send, and a
            // queue that was blocked already has it): only a flow notice needs `apply`.
            if actions.notify_flow {
                self.apply(actions);
            }
            return Ok(());
        }
        // Outside the loop, or a large write: to the socket now, after what is queued.
        let registration = self.io.borrow();
        let Some(io) = registration.as_ref() else {
            return Err(closed_error());
        };
        let sent = Self::send(&mut core, io.get(), parts, &self.stats);
        let actions = match sent {
            Ok(sent) if sent == total => {
                let queued = core.queue.len();
                core.state.queue_changed(queued)
            }
            Ok(sent) => {
                match owned {
                    Some(bytes) => core.queue.push_bytes(bytes.slice(sent..)),
                    None => unsent(parts, sent).for_each(|p| core.queue.push_slice(p)),
                }
                let queued = core.queue.len();
                core.state.queue_changed(queued)
            }
            Err(e) => core.state.fail(e),
        };
        core.account(&self.stats);
        drop(registration);
        drop(core);
        self.apply(actions);
        Ok(())
    }
}

/// What is left of `parts` once the first `sent` bytes have gone out.
fn unsent<'a>(parts: &'a [&'a [u8]], sent: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut skip = sent;
    parts.iter().filter_map(move |p| {
        if skip >= p.len() {
            skip -= p.len();
            None
        } else {
            let rest = &p[skip..];
            skip = 0;
            Some(rest)
        }
    })
}

impl<S: Stream> Conn<S> {
    /// Tells the protocol `pause_writing` and/or `resume_writing` (see the state machine).
    fn deliver_flow(self: Rc<Self>) {
        let notice = self.core.borrow_mut().state.take_flow_notice();
        if notice.pause {
            self.call("pause_writing", |p, t| p.pause_writing(t));
        }
        if notice.resume {
            self.call("resume_writing", |p, t| p.resume_writing(t));
        }
    }
}

impl<S: Stream> Source for Conn<S> {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, readiness: Readiness) {
        if readiness.writable {
            self.flush();
        }
        if readiness.closed && !self.core.borrow().state.is_reading() {
            // Not reading, and maybe wanting nothing: the event can only be the socket
            // failing (see `io::registry`).
            self.on_failure_while_not_reading();
        }
        if readiness.readable {
            if self.read_queued.get() {
                // A read is already queued for the next iteration (the read budget was
                // spent): it takes this too, so a fast peer gets one budget per
                // iteration, as the others do.
                if readiness.closed {
                    self.peer_closed.set(true);
                }
                self.unread.set(true);
            } else {
                self.on_readable(inner, readiness.closed);
            }
        }
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, how: Wind) {
        match how {
            Wind::Graceful if self.drain_on_stop => {
                // Flush and shut what we write; read on until the other end is done.
                let _ = self.lose_write_connection();
            }
            Wind::Graceful => self.lose_connection(),
            Wind::Abort => self.abort_connection(),
        }
    }

    fn accepted_by(&self, port: &Accepted) -> bool {
        let on_lost = self.on_lost.take();
        let mine = on_lost.as_ref().is_some_and(|o| port.owns(o));
        self.on_lost.set(on_lost);
        mine
    }

    fn watch_failed(self: Rc<Self>, _inner: &Rc<Inner>, err: io::Error) {
        // Unwatched, it would never hear of its socket again: fail it, so the protocol
        // hears `connection_lost` with the cause.
        let failed = self.core.borrow_mut().state.fail(err);
        self.apply(failed);
    }
}

impl<S: Stream> Flush for Conn<S> {
    fn flush_gathered(self: Rc<Self>) {
        self.core.borrow_mut().listed = false;
        self.flush();
    }
}

impl<S: Stream> Conn<S> {
    fn me(&self) -> Option<Rc<Self>> {
        self.me.upgrade()
    }

    fn with_me(&self, f: impl FnOnce(&Rc<Self>)) {
        if let Some(me) = self.me() {
            f(&me)
        }
    }
}

impl<S: Stream> TransportBackend for Conn<S> {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        let me = self.me().ok_or_else(closed_error)?;
        me.write_parts(&[data], None)
    }

    fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        let me = self.me().ok_or_else(closed_error)?;
        let view = data.clone();
        me.write_parts(&[&view], Some(data))
    }

    fn write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        let me = self.me().ok_or_else(closed_error)?;
        me.write_parts(parts, None)
    }

    fn lose_connection(&self) {
        self.with_me(|me| {
            let actions = {
                let mut core = me.core.borrow_mut();
                let queued = !core.queue.is_empty();
                core.state.lose(queued)
            };
            me.apply(actions);
        });
    }

    fn abort_connection(&self) {
        self.with_me(|me| {
            let actions = me.core.borrow_mut().state.abort();
            me.apply(actions);
        });
    }

    fn lose_write_connection(&self) -> Result<(), Error> {
        let me = self.me().ok_or_else(closed_error)?;
        let actions = {
            let mut core = me.core.borrow_mut();
            let queued = !core.queue.is_empty();
            core.state.lose_write(queued).map_err(|()| closed_error())?
        };
        me.apply(actions);
        Ok(())
    }

    fn peer_addr(&self) -> Address {
        let learned = self.rare.get().map(|rare| rare.learned.borrow());
        match learned.as_ref().and_then(|l| l.peer.as_ref()) {
            Some(peer) => peer.clone(),
            None => self.peer.clone(),
        }
    }

    fn set_peer_addr(&self, peer: Address) -> Result<(), Error> {
        let mut learned = self.rare().learned.borrow_mut();
        if let Some(set) = &learned.peer {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "the peer address of the connection from {} was already set (to {set})",
                    self.peer
                ),
            ));
        }
        learned.peer = Some(peer);
        Ok(())
    }

    fn attach_extra(&self, value: Rc<dyn Any>) -> Result<(), Error> {
        let extras = &mut self.rare().learned.borrow_mut().extras;
        let kind = (*value).type_id();
        extras.retain(|e| (**e).type_id() != kind);
        extras.push(value);
        Ok(())
    }

    fn extra(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        let learned = self.rare.get()?.learned.borrow();
        learned
            .extras
            .iter()
            .find(|e| (***e).type_id() == what)
            .cloned()
    }

    fn local_addr(&self) -> Address {
        Address::clone(&self.local)
    }

    fn is_closing(&self) -> bool {
        self.core.borrow().state.is_closing()
    }

    fn is_reading(&self) -> bool {
        self.core.borrow().state.is_reading()
    }

    fn pause_reading(&self) {
        self.core.borrow_mut().state.pause_reading();
        self.update_interest();
    }

    fn resume_reading(&self) {
        self.with_me(|me| {
            let actions = me.core.borrow_mut().state.resume_reading();
            me.apply(actions);
            if me.unread.get() && me.core.borrow().state.is_reading() {
                me.queue_read();
            }
        });
    }

    fn buffer_size(&self) -> usize {
        self.core.borrow().queue.len()
    }

    fn is_writing_paused(&self) -> bool {
        self.core.borrow_mut().state.observe_paused()
    }

    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.with_me(|me| {
            let actions = {
                let mut core = me.core.borrow_mut();
                let queued = core.queue.len();
                core.state.set_marks(high, low, queued)
            };
            me.apply(actions);
        });
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        let flow = self.core.borrow().state.flow;
        (flow.high, flow.low)
    }

    fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        match &*self.io.borrow() {
            Some(io) => io
                .get()
                .set_nodelay(on)
                .map_err(|e| Error::io("cannot set TCP_NODELAY", e)),
            None => Err(closed_error()),
        }
    }

    fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        match &*self.io.borrow() {
            Some(io) => io
                .get()
                .set_keepalive(idle)
                .map_err(|e| Error::io("cannot set TCP keepalive", e)),
            None => Err(closed_error()),
        }
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.io
            .borrow()
            .as_ref()
            .and_then(|io| io.get().peer_credentials())
    }

    fn with_fd(&self, f: &mut dyn FnMut(BorrowedFd<'_>)) -> Result<(), Error> {
        match &*self.io.borrow() {
            Some(io) => {
                f(io.get().as_fd());
                Ok(())
            }
            None => Err(closed_error()),
        }
    }

    fn set_protocol(&self, protocol: Box<dyn Protocol>) -> Result<(), Error> {
        if self.core.borrow().state.is_closed() {
            return Err(Error::new(
                ErrorKind::ConnectionClosed,
                "cannot set the protocol of a closed connection",
            ));
        }
        if self.in_callback.get() {
            // Takes over when the running callback returns; the old one is dropped then.
            self.rare().replacement.set(Some(protocol));
        } else {
            let old = self.protocol.replace(Some(protocol));
            drop(old);
        }
        Ok(())
    }

    fn with_protocol(&self, f: &mut dyn FnMut(&mut dyn Protocol)) -> Result<(), Error> {
        let Some(mut protocol) = self.protocol.take() else {
            return Err(if self.in_callback.get() {
                Error::new(
                    ErrorKind::Busy,
                    "the protocol is running one of its own callbacks: use `self` there",
                )
            } else {
                Error::new(
                    ErrorKind::ConnectionClosed,
                    "the connection is closed and its protocol gone",
                )
            });
        };
        let result = callback::guard(|| f(&mut *protocol));
        self.protocol.set(Some(protocol));
        result.map_err(|msg| {
            Error::new(
                ErrorKind::Panicked,
                format!("the function given to with_protocol panicked: {msg}"),
            )
        })
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod size {
    /// A server holding many idle connections pays for every byte of a connection: what
    /// few connections need lives in `Rare`, the listener's address is shared. Grow this
    /// deliberately (the `hold` benchmark measures it).
    #[test]
    fn an_idle_connection_stays_small() {
        let size = std::mem::size_of::<super::Conn<std::net::TcpStream>>();
        assert!(size <= 296, "Conn<TcpStream> is {size} bytes");
    }
}
