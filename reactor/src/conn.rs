//! One stream connection (TCP or Unix): its socket, write queue, flags and protocol.
//!
//! Where a byte goes: the poller reports the socket readable → [`Conn::on_readable`] reads
//! into the reactor's shared buffer → the protocol's `data_received` gets a slice of it.
//! Writes try the socket at once and queue only what it did not take; the queue is flushed
//! with vectored writes when the socket is writable (write interest is on only while the
//! queue is non-empty).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::callback::guard;
use crate::error::{Error, ErrorKind};
use crate::poll::{Interest, Readiness, Source, Token, Wind};
use crate::protocol::{Address, ConnectionLost, Protocol};
use crate::reactor::Inner;
use crate::stream::Stream;
use crate::timer::Job;
use crate::transport::{
    DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER, PeerCredentials, Transport, TransportBackend,
};

/// Reads per readiness event while each read fills the whole buffer: enough to stream
/// quickly, bounded so one fast peer cannot starve the others.
const READS_PER_EVENT: usize = 4;
/// Chunks handed to one `writev`.
const MAX_IOVECS: usize = 64;

struct State {
    queue: VecDeque<Bytes>,
    queued: usize,
    high: usize,
    low: usize,
    /// The user paused reading.
    read_paused: bool,
    /// The peer half-closed (we read end-of-file).
    eof: bool,
    /// `lose_connection` was called: flush, then close.
    closing: bool,
    /// `lose_write_connection` was called: flush, then shut down writing.
    shut_requested: bool,
    write_shut: bool,
    closed: bool,
    /// Above the high mark, and not yet drained to the low mark (updated at every change
    /// of the queue; what `is_writing_paused` reports).
    flow_paused: bool,
    /// `flow_paused` went up since the protocol was last told: it is told `pause_writing`
    /// even if the buffer drained meanwhile, so whoever saw `is_writing_paused()` return
    /// true gets its `resume_writing`.
    flow_raised: bool,
    /// What the protocol was last told: `pause_writing` (true) or `resume_writing`.
    told_paused: bool,
    flow_scheduled: bool,
    lost_delivered: bool,
}

pub(crate) type LostHook = Box<dyn FnOnce(&ConnectionLost)>;

pub(crate) struct Conn<S: Stream> {
    me: Weak<Conn<S>>,
    inner: Weak<Inner>,
    token: Cell<Option<Token>>,
    io: RefCell<Option<S>>,
    st: RefCell<State>,
    protocol: Cell<Option<Box<dyn Protocol>>>,
    peer: Address,
    local: Address,
    /// Run after `connection_lost` (a client connector's `client_connection_lost`).
    on_lost: Cell<Option<LostHook>>,
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

fn closed_error() -> Error {
    Error::new(
        ErrorKind::ConnectionClosed,
        "cannot write: the connection is closed or closing",
    )
}

impl<S: Stream> Conn<S> {
    /// Registers `io` with the reactor and calls the protocol's `connection_made`.
    pub(crate) fn start(
        inner: &Rc<Inner>,
        io: S,
        protocol: Box<dyn Protocol>,
        peer: Address,
        local: Address,
        on_lost: Option<LostHook>,
    ) -> Result<Rc<Conn<S>>, Error> {
        let fd = io.as_raw_fd();
        let conn = Rc::new_cyclic(|me| Conn {
            me: me.clone(),
            inner: Rc::downgrade(inner),
            token: Cell::new(None),
            io: RefCell::new(Some(io)),
            st: RefCell::new(State {
                queue: VecDeque::new(),
                queued: 0,
                high: DEFAULT_HIGH_WATER,
                low: DEFAULT_LOW_WATER,
                read_paused: false,
                eof: false,
                closing: false,
                shut_requested: false,
                write_shut: false,
                closed: false,
                flow_paused: false,
                flow_raised: false,
                told_paused: false,
                flow_scheduled: false,
                lost_delivered: false,
            }),
            protocol: Cell::new(Some(protocol)),
            peer,
            local,
            on_lost: Cell::new(on_lost),
        });
        // SAFETY: the socket lives in `conn.io` and `close` deregisters before dropping it.
        unsafe {
            inner.registry.register(fd, Interest::READ, |token| {
                conn.token.set(Some(token));
                Rc::clone(&conn)
            })
        }
        .map_err(|e| Error::io(format!("cannot watch the connection from {}", conn.peer), e))?;
        inner.connections.set(inner.connections.get() + 1);
        conn.call("connection_made", |p, t| p.connection_made(t));
        Ok(conn)
    }

    fn rc(&self) -> Option<Rc<Conn<S>>> {
        self.me.upgrade()
    }

    fn transport(self: &Rc<Self>) -> Transport {
        Transport::new(Rc::clone(self) as Rc<dyn TransportBackend>)
    }

    fn interest(st: &State) -> Interest {
        Interest {
            read: !st.closed && !st.read_paused && !st.eof && !st.closing,
            write: !st.closed && !st.queue.is_empty(),
        }
    }

    fn update_interest(&self) {
        let interest = Self::interest(&self.st.borrow());
        if let (Some(inner), Some(token)) = (self.inner.upgrade(), self.token.get()) {
            inner.registry.set_interest(token, interest);
        }
    }

    #[track_caller]
    fn soon(&self, f: impl FnOnce() + 'static) {
        if let Some(inner) = self.inner.upgrade() {
            inner.call_soon_job(Job {
                f: Box::new(f),
                origin: Location::caller(),
            });
        }
    }

    /// Calls into the protocol with it taken out of its slot; a panic aborts the connection.
    fn call<R>(
        self: &Rc<Self>,
        what: &str,
        f: impl FnOnce(&mut dyn Protocol, &Transport) -> R,
    ) -> Option<R> {
        let mut protocol = self.protocol.take()?;
        let transport = self.transport();
        let result = guard(|| f(&mut *protocol, &transport));
        self.protocol.set(Some(protocol));
        match result {
            Ok(r) => Some(r),
            Err(msg) => {
                log::error!(
                    "protocol panicked in {what} on the connection from {} to {}: {msg}; \
                     aborting this connection",
                    self.peer,
                    self.local
                );
                self.close(ConnectionLost::Panicked(msg));
                None
            }
        }
    }

    /// Closes the socket now and schedules `connection_lost`. Idempotent.
    pub(crate) fn close(&self, reason: ConnectionLost) {
        {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return;
            }
            st.closed = true;
            st.queue.clear();
            st.queued = 0;
        }
        let inner = self.inner.upgrade();
        if let (Some(inner), Some(token)) = (&inner, self.token.take()) {
            // Deregister before the descriptor closes.
            let source = inner.registry.deregister_for_close(token);
            drop(source);
        }
        let io = self.io.borrow_mut().take();
        drop(io);
        if let Some(inner) = &inner {
            inner
                .connections
                .set(inner.connections.get().saturating_sub(1));
        }
        if let Some(me) = self.rc() {
            self.soon(move || me.deliver_lost(reason));
        }
    }

    fn deliver_lost(self: Rc<Self>, reason: ConnectionLost) {
        if self.st.borrow().lost_delivered {
            return;
        }
        let Some(mut protocol) = self.protocol.take() else {
            // The protocol is inside a callback of a nested loop; try again next turn.
            let me = Rc::clone(&self);
            self.soon(move || me.deliver_lost(reason));
            return;
        };
        self.st.borrow_mut().lost_delivered = true;
        if let Err(msg) = guard(|| protocol.connection_lost(&reason)) {
            log::error!(
                "protocol panicked in connection_lost on the connection from {}: {msg}",
                self.peer
            );
        }
        drop(protocol);
        if let Some(hook) = self.on_lost.take() {
            if let Err(msg) = guard(|| hook(&reason)) {
                log::error!("client_connection_lost panicked: {msg}");
            }
        }
    }

    fn on_readable(self: &Rc<Self>, inner: &Rc<Inner>) {
        let mut buf = inner.take_read_buf();
        for _ in 0..READS_PER_EVENT {
            {
                let st = self.st.borrow();
                if st.closed || st.read_paused || st.eof || st.closing {
                    break;
                }
            }
            let result = match &*self.io.borrow() {
                Some(io) => io.read(&mut buf),
                None => break,
            };
            match result {
                Ok(0) => {
                    self.on_eof();
                    break;
                }
                Ok(n) => {
                    self.call("data_received", |p, t| p.data_received(t, &buf[..n]));
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.close(ConnectionLost::from_io(e));
                    break;
                }
            }
        }
        inner.put_read_buf(buf);
    }

    fn on_eof(self: &Rc<Self>) {
        self.st.borrow_mut().eof = true;
        self.update_interest();
        let keep_open = self
            .call("eof_received", |p, t| p.eof_received(t))
            .unwrap_or(false);
        let (closed, write_shut) = {
            let st = self.st.borrow();
            (st.closed, st.write_shut)
        };
        if closed {
            return;
        }
        if !keep_open {
            self.lose();
        } else if write_shut {
            self.close(ConnectionLost::Done);
        }
    }

    /// Writes as much of the queue as the socket takes.
    fn flush(&self) {
        let result = {
            let st = self.st.borrow();
            if st.closed || st.queue.is_empty() {
                return;
            }
            let io = self.io.borrow();
            let Some(io) = io.as_ref() else { return };
            let slices: Vec<IoSlice<'_>> = st
                .queue
                .iter()
                .take(MAX_IOVECS)
                .map(|b| IoSlice::new(b))
                .collect();
            loop {
                match io.write_vectored(&slices) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            }
        };
        match result {
            Ok(n) => self.consume(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                self.close(ConnectionLost::from_io(e));
                return;
            }
        }
        self.after_write();
    }

    /// Drops `n` written bytes from the front of the queue.
    fn consume(&self, mut n: usize) {
        let mut st = self.st.borrow_mut();
        st.queued -= n.min(st.queued);
        while n > 0 {
            let Some(front) = st.queue.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                st.queue.pop_front();
            } else {
                let _ = front.split_to(n);
                n = 0;
            }
        }
    }

    /// After the queue changed: finish a pending close or half-close, tell the protocol
    /// about crossed marks, and update write interest.
    fn after_write(&self) {
        let (empty, closing, shut_now, eof) = {
            let st = self.st.borrow();
            if st.closed {
                return;
            }
            let empty = st.queue.is_empty();
            (
                empty,
                st.closing,
                empty && st.shut_requested && !st.write_shut,
                st.eof,
            )
        };
        if empty && closing {
            self.close(ConnectionLost::Done);
            return;
        }
        if shut_now {
            let result = match &*self.io.borrow() {
                Some(io) => io.shutdown_write(),
                None => Ok(()),
            };
            self.st.borrow_mut().write_shut = true;
            if let Err(e) = result {
                if e.kind() != io::ErrorKind::NotConnected {
                    self.close(ConnectionLost::from_io(e));
                    return;
                }
            }
            if eof {
                self.close(ConnectionLost::Done);
                return;
            }
        }
        self.check_flow();
        self.update_interest();
    }

    fn check_flow(&self) {
        let mut st = self.st.borrow_mut();
        if !st.flow_paused && st.queued > st.high {
            st.flow_paused = true;
            st.flow_raised = true;
        } else if st.flow_paused && st.queued <= st.low {
            st.flow_paused = false;
        }
        let due = st.flow_paused != st.told_paused || (st.flow_raised && !st.told_paused);
        if due && !st.flow_scheduled {
            st.flow_scheduled = true;
            drop(st);
            if let Some(me) = self.rc() {
                self.soon(move || me.deliver_flow());
            }
        }
    }

    /// Tells the protocol `pause_writing` and/or `resume_writing`, so that what it was told
    /// last matches the buffer's state now, and a pause anyone saw is always followed by a
    /// resume.
    fn deliver_flow(self: Rc<Self>) {
        let (pause, resume) = {
            let mut st = self.st.borrow_mut();
            st.flow_scheduled = false;
            if st.closed {
                return;
            }
            let pause = !st.told_paused && (st.flow_paused || st.flow_raised);
            st.flow_raised = false;
            let resume = (pause || st.told_paused) && !st.flow_paused;
            st.told_paused = st.flow_paused;
            (pause, resume)
        };
        if pause {
            self.call("pause_writing", |p, t| p.pause_writing(t));
        }
        if resume {
            self.call("resume_writing", |p, t| p.resume_writing(t));
        }
    }

    fn writable_check(&self) -> Result<(), Error> {
        let st = self.st.borrow();
        if st.closed || st.closing || st.shut_requested {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    /// Sends `parts` directly if nothing is queued; returns how many bytes went out.
    fn send_now(&self, parts: &[&[u8]]) -> Result<usize, io::Error> {
        if !self.st.borrow().queue.is_empty() {
            return Ok(0);
        }
        let io = self.io.borrow();
        let Some(io) = io.as_ref() else { return Ok(0) };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut sent = 0;
        while sent < total {
            let want;
            let result = if parts.len() == 1 {
                want = total - sent;
                io.write(&parts[0][sent..])
            } else {
                let slices: Vec<IoSlice<'_>> = unsent(parts, sent)
                    .map(IoSlice::new)
                    .take(MAX_IOVECS)
                    .collect();
                want = slices.iter().map(|s| s.len()).sum();
                io.write_vectored(&slices)
            };
            match result {
                Ok(0) => break,
                // A short write means the socket buffer is full: trying again now would
                // only cost a system call that returns EAGAIN.
                Ok(n) if n < want => {
                    sent += n;
                    break;
                }
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// Queues what `send_now` did not send, as `Bytes` (made by `to_bytes` from the rest).
    fn enqueue(&self, chunks: impl IntoIterator<Item = Bytes>) {
        {
            let mut st = self.st.borrow_mut();
            for chunk in chunks {
                if !chunk.is_empty() {
                    st.queued += chunk.len();
                    st.queue.push_back(chunk);
                }
            }
        }
        self.check_flow();
        self.update_interest();
    }

    fn write_parts(&self, parts: &[&[u8]], owned: Option<Bytes>) -> Result<(), Error> {
        self.writable_check()?;
        let sent = match self.send_now(parts) {
            Ok(n) => n,
            Err(e) => {
                self.close(ConnectionLost::from_io(e));
                return Ok(());
            }
        };
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if sent == total {
            return Ok(());
        }
        if let Some(bytes) = owned {
            self.enqueue([bytes.slice(sent..)]);
            return Ok(());
        }
        let rest: Vec<Bytes> = unsent(parts, sent).map(Bytes::copy_from_slice).collect();
        self.enqueue(rest);
        Ok(())
    }

    fn lose(&self) {
        let empty = {
            let mut st = self.st.borrow_mut();
            if st.closed || st.closing {
                return;
            }
            st.closing = true;
            st.queue.is_empty()
        };
        if empty {
            self.close(ConnectionLost::Done);
        } else {
            self.update_interest();
        }
    }
}

impl<S: Stream> Source for Conn<S> {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, readiness: Readiness) {
        if readiness.writable {
            self.flush();
        }
        if readiness.readable {
            self.on_readable(inner);
        }
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, how: Wind) {
        match how {
            Wind::Graceful => self.lose(),
            Wind::Abort => self.close(ConnectionLost::Aborted),
        }
    }
}

impl<S: Stream> TransportBackend for Conn<S> {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        if data.is_empty() {
            return self.writable_check();
        }
        self.write_parts(&[data], None)
    }

    fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return self.writable_check();
        }
        let view = data.clone();
        self.write_parts(&[&view], Some(data))
    }

    fn write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        self.write_parts(parts, None)
    }

    fn lose_connection(&self) {
        self.lose();
    }

    fn abort_connection(&self) {
        self.close(ConnectionLost::Aborted);
    }

    fn lose_write_connection(&self) -> Result<(), Error> {
        {
            let mut st = self.st.borrow_mut();
            if st.closed || st.closing {
                return Err(closed_error());
            }
            if st.shut_requested {
                return Ok(());
            }
            st.shut_requested = true;
        }
        self.after_write();
        Ok(())
    }

    fn peer_addr(&self) -> Address {
        self.peer.clone()
    }

    fn local_addr(&self) -> Address {
        self.local.clone()
    }

    fn is_closing(&self) -> bool {
        let st = self.st.borrow();
        st.closed || st.closing
    }

    fn pause_reading(&self) {
        self.st.borrow_mut().read_paused = true;
        self.update_interest();
    }

    fn resume_reading(&self) {
        let was_paused = std::mem::replace(&mut self.st.borrow_mut().read_paused, false);
        self.update_interest();
        if was_paused {
            if let Some(me) = self.rc() {
                self.soon(move || {
                    if !me.st.borrow().closed {
                        me.call("reading_resumed", |p, t| p.reading_resumed(t));
                    }
                });
            }
        }
    }

    fn is_reading(&self) -> bool {
        let st = self.st.borrow();
        !(st.closed || st.read_paused || st.eof || st.closing)
    }

    fn is_writing_paused(&self) -> bool {
        self.st.borrow().flow_paused
    }

    fn buffer_size(&self) -> usize {
        self.st.borrow().queued
    }

    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        {
            let mut st = self.st.borrow_mut();
            st.high = high;
            st.low = low.min(high);
        }
        self.check_flow();
    }

    fn write_buffer_limits(&self) -> (usize, usize) {
        let st = self.st.borrow();
        (st.high, st.low)
    }

    fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        match &*self.io.borrow() {
            Some(io) => io
                .set_nodelay(on)
                .map_err(|e| Error::io("cannot set TCP_NODELAY", e)),
            None => Err(closed_error()),
        }
    }

    fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        match &*self.io.borrow() {
            Some(io) => io
                .set_keepalive(idle)
                .map_err(|e| Error::io("cannot set TCP keepalive", e)),
            None => Err(closed_error()),
        }
    }

    fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.io
            .borrow()
            .as_ref()
            .and_then(|io| io.peer_credentials())
    }
}
