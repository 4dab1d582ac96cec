//! [`RateLimit`]: read and write at most so many bytes per second on each connection.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion_reactor::{
    Address, ConnectionLost, DelayedCall, Error, ErrorKind, PeerCredentials, Protocol, Scheduler,
    SchedulerExt, Transport, TransportBackend,
};

use super::Policy;
use super::shared::{guarded, lost_reason};

/// Limits how fast each connection reads and writes, in bytes per second (the rate
/// limits of Twisted's `ThrottlingFactory`, per connection rather than for the whole
/// factory).
///
/// Both limits are token buckets holding at most one second's worth of bytes, so a quiet
/// connection may burst that much, and over any longer stretch the average stays under
/// the limit.
///
/// - **Reading**: what arrives is delivered, then, if the connection has gone over its
///   budget, reading is paused (`pause_reading`) until the budget is back to zero. One
///   read (at most 64 KiB on the reactor) can overshoot; the average does not. A
///   protocol's own `pause_reading`/`resume_reading` still work: reading resumes only
///   when neither wants it paused. [`Transport::is_reading`] reports the protocol's own
///   pause (and closing, and end of file), not the limit's, and the protocol gets
///   [`Protocol::reading_resumed`] (on the next turn of the loop) when it resumes a pause
///   of its own, whether or not the limit still holds reading back; the limit's own
///   pauses and resumes are not reported.
/// - **Writing**: the protocol's transport is wrapped. Bytes within budget go straight
///   through; the rest are held, in order, and released as the budget refills (about ten
///   times a second). Held bytes count as buffered: [`Transport::buffer_size`] is held
///   plus socket-buffered bytes, and [`Transport::is_writing_paused`] turns true (and the
///   protocol is told `pause_writing`) as soon as that sum passes the transport's
///   high-water mark, so a producer is paused by what it queued, not only by what the
///   socket could not take. It turns false (and the protocol is told `resume_writing`)
///   once the held bytes are down to the low mark and the socket buffer is not itself
///   paused. A producer that honours flow control, such as the framing adapters, keeps
///   memory within the high mark plus one write. `lose_connection` and
///   `lose_write_connection` take effect once the held bytes are out;
///   `abort_connection` drops them. Bytes still held when the reactor shuts down are
///   lost.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion_protocols::policy::{Policy, RateLimit};
/// use torsion_reactor::{Address, Clock, Protocol, Transport, testing::StringTransport};
///
/// struct Blurt;
/// impl Protocol for Blurt {
///     fn connection_made(&mut self, t: &Transport) {
///         t.write(&[b'x'; 2500]);
///     }
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
///
/// let clock = Clock::new();
/// let limit = RateLimit::new(Rc::new(clock.clone())).write_limit(1000);
/// let mut p = limit.wrap(&Address::Other("peer".into()), || Some(Blurt)).unwrap();
/// let t = StringTransport::new();
/// p.connection_made(&t.transport());
/// assert_eq!(t.written().len(), 1000); // a second's worth at once
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(t.written().len(), 2000);
/// clock.advance(Duration::from_millis(500));
/// assert_eq!(t.written().len(), 2500);
/// ```
#[derive(Clone)]
pub struct RateLimit {
    scheduler: Rc<dyn Scheduler>,
    read: Option<u64>,
    write: Option<u64>,
}

impl RateLimit {
    /// No limits yet; add them with [`read_limit`](Self::read_limit) and
    /// [`write_limit`](Self::write_limit). Time comes from `scheduler`.
    pub fn new(scheduler: Rc<dyn Scheduler>) -> RateLimit {
        RateLimit {
            scheduler,
            read: None,
            write: None,
        }
    }

    /// Reads at most `bytes_per_second` on each connection (at least 1).
    pub fn read_limit(mut self, bytes_per_second: u64) -> RateLimit {
        self.read = Some(bytes_per_second.max(1));
        self
    }

    /// Writes at most `bytes_per_second` on each connection (at least 1).
    pub fn write_limit(mut self, bytes_per_second: u64) -> RateLimit {
        self.write = Some(bytes_per_second.max(1));
        self
    }
}

impl<P: Protocol> Policy<P> for RateLimit {
    type Protocol = RateLimited<P>;

    fn wrap(&self, _peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<RateLimited<P>> {
        let protocol = build()?;
        let now = self.scheduler.now();
        let io = Rc::new(Io {
            scheduler: Rc::clone(&self.scheduler),
            inner: RefCell::new(None),
            read: self.read.map(|r| RefCell::new(Bucket::new(r, now))),
            write: self.write.map(|r| RefCell::new(Bucket::new(r, now))),
            user_paused: Cell::new(false),
            limit_paused: Cell::new(false),
            held: RefCell::new(VecDeque::new()),
            held_len: Cell::new(0),
            after_held: Cell::new(AfterHeld::Nothing),
            resume_timer: RefCell::new(None),
            release_timer: RefCell::new(None),
            eof: Cell::new(false),
            paused: Cell::new(false),
            raised: Cell::new(false),
            told_paused: Cell::new(false),
            flow_scheduled: Cell::new(false),
            owner: RefCell::new(None),
            closed: Cell::new(false),
        });
        Some(RateLimited {
            conn: Rc::new(Conn {
                protocol: RefCell::new(protocol),
                io,
                transport: RefCell::new(None),
                panicked: RefCell::new(None),
            }),
        })
    }
}

/// A token bucket: `tokens` bytes may pass now; refills at `rate` per second up to one
/// second's worth.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64, now: Instant) -> Bucket {
        Bucket {
            rate: rate as f64,
            tokens: rate as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    /// How long until the bucket holds `amount` tokens, rounded up to a microsecond.
    fn wait_for(&self, amount: f64) -> Duration {
        let missing = amount - self.tokens;
        if missing <= 0.0 {
            return Duration::ZERO;
        }
        let micros = (missing / self.rate * 1e6).ceil();
        Duration::from_micros(micros.min(1e12) as u64)
    }

    /// Whole bytes that may pass now.
    fn available(&self) -> usize {
        if self.tokens >= 1.0 {
            self.tokens.floor().min(usize::MAX as f64) as usize
        } else {
            0
        }
    }
}

/// What to do once the held bytes are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterHeld {
    Nothing,
    Lose,
    LoseWrite,
}

/// Tells the protocol about flow control decided by the wrapper.
trait Flow {
    fn tell(&self, pause: bool);
    fn reading_resumed(&self);
}

/// The wrapping transport's state, shared with the protocol wrapper.
struct Io {
    scheduler: Rc<dyn Scheduler>,
    /// The connection's real transport, once connected.
    inner: RefCell<Option<Transport>>,
    read: Option<RefCell<Bucket>>,
    write: Option<RefCell<Bucket>>,
    /// The protocol paused reading.
    user_paused: Cell<bool>,
    /// The read limit paused reading.
    limit_paused: Cell<bool>,
    held: RefCell<VecDeque<Bytes>>,
    held_len: Cell<usize>,
    after_held: Cell<AfterHeld>,
    resume_timer: RefCell<Option<DelayedCall>>,
    release_timer: RefCell<Option<DelayedCall>>,
    /// The peer half-closed.
    eof: Cell<bool>,
    /// What `is_writing_paused` reports: set once held plus socket-buffered bytes pass
    /// the high mark (or the socket buffer is paused), cleared once the held bytes are
    /// down to the low mark and the socket buffer is not paused.
    paused: Cell<bool>,
    /// `paused` went up since the protocol was last told: it is told `pause_writing`
    /// even if the state went down meanwhile, so whoever saw `is_writing_paused()`
    /// return true gets its `resume_writing`.
    raised: Cell<bool>,
    /// What the protocol was last told: `pause_writing` (true) or `resume_writing`.
    told_paused: Cell<bool>,
    flow_scheduled: Cell<bool>,
    owner: RefCell<Option<Weak<dyn Flow>>>,
    closed: Cell<bool>,
}

fn closed_error() -> Error {
    Error::new(
        ErrorKind::ConnectionClosed,
        "cannot write: the connection is closed or closing",
    )
}

impl Io {
    fn inner(&self) -> Option<Transport> {
        self.inner.borrow().clone()
    }

    /// Pauses or resumes the real transport's reading by both wishes.
    fn update_reading(&self) {
        if let Some(t) = self.inner() {
            if self.user_paused.get()
                || self.limit_paused.get()
                || self.after_held.get() == AfterHeld::Lose
            {
                t.pause_reading();
            } else {
                t.resume_reading();
            }
        }
    }

    /// Accounts `n` bytes read; pauses reading until the budget is back if over it.
    fn on_read(self: &Rc<Self>, n: usize) {
        let Some(bucket) = &self.read else { return };
        let wait = {
            let mut b = bucket.borrow_mut();
            b.refill(self.scheduler.now());
            b.tokens -= n as f64;
            b.wait_for(0.0)
        };
        if wait.is_zero() || self.limit_paused.get() {
            return;
        }
        self.limit_paused.set(true);
        self.update_reading();
        let weak = Rc::downgrade(self);
        let call = self.scheduler.call_later(wait, move || {
            if let Some(io) = weak.upgrade() {
                io.resume_timer.borrow_mut().take();
                io.limit_paused.set(false);
                if !io.closed.get() {
                    io.update_reading();
                }
            }
        });
        *self.resume_timer.borrow_mut() = Some(call);
    }

    fn writable(&self) -> Result<Transport, Error> {
        match self.inner() {
            Some(t) if !self.closed.get() && self.after_held.get() == AfterHeld::Nothing => Ok(t),
            _ => Err(closed_error()),
        }
    }

    /// Writes `data` within budget, holding the rest.
    fn send(self: &Rc<Self>, data: Bytes) -> Result<(), Error> {
        let inner = self.writable()?;
        let Some(bucket) = &self.write else {
            inner.try_write_bytes(data)?;
            self.check_flow_later();
            return Ok(());
        };
        if data.is_empty() {
            return Ok(());
        }
        let pass = if self.held_len.get() == 0 {
            let mut b = bucket.borrow_mut();
            b.refill(self.scheduler.now());
            let pass = b.available().min(data.len());
            b.tokens -= pass as f64;
            pass
        } else {
            0
        };
        if pass > 0 {
            inner.try_write_bytes(data.slice(..pass))?;
        }
        if pass < data.len() {
            let rest = data.slice(pass..);
            self.held_len.set(self.held_len.get() + rest.len());
            self.held.borrow_mut().push_back(rest);
            self.schedule_release();
        }
        self.check_flow_later();
        Ok(())
    }

    fn schedule_release(self: &Rc<Self>) {
        if self.release_timer.borrow().is_some() {
            return;
        }
        let Some(bucket) = &self.write else { return };
        let wait = {
            let b = bucket.borrow();
            // Release in steps of about a tenth of a second's worth.
            let step = (b.rate / 10.0).max(1.0).min(self.held_len.get() as f64);
            b.wait_for(step)
        };
        let weak = Rc::downgrade(self);
        let call = self.scheduler.call_later(wait, move || {
            if let Some(io) = weak.upgrade() {
                io.release_timer.borrow_mut().take();
                io.release();
            }
        });
        *self.release_timer.borrow_mut() = Some(call);
    }

    /// Writes as many held bytes as the budget allows (from a timer).
    fn release(self: &Rc<Self>) {
        if self.closed.get() {
            return;
        }
        let (Some(inner), Some(bucket)) = (self.inner(), &self.write) else {
            return;
        };
        let mut budget = {
            let mut b = bucket.borrow_mut();
            b.refill(self.scheduler.now());
            let n = b.available().min(self.held_len.get());
            b.tokens -= n as f64;
            n
        };
        while budget > 0 {
            let Some(mut chunk) = self.held.borrow_mut().pop_front() else {
                break;
            };
            if chunk.len() > budget {
                let rest = chunk.split_off(budget);
                self.held.borrow_mut().push_front(rest);
            }
            budget -= chunk.len();
            self.held_len.set(self.held_len.get() - chunk.len());
            if inner.try_write_bytes(chunk).is_err() {
                break;
            }
        }
        if self.held_len.get() > 0 {
            self.schedule_release();
        } else {
            match self.after_held.get() {
                AfterHeld::Lose => inner.lose_connection(),
                AfterHeld::LoseWrite => {
                    let _ = inner.lose_write_connection();
                }
                AfterHeld::Nothing => {}
            }
        }
        self.check_flow();
    }

    /// Brings `paused` up to date (no callback). The held bytes count toward the
    /// transport's high mark together with the socket-buffered ones, so a producer is
    /// paused by what it queued; resuming waits only for the held bytes to fall to the
    /// low mark while the socket buffer is not paused (the socket buffer draining below
    /// its own marks is not announced, so it could not be waited for).
    fn update_flow(&self) {
        let Some(inner) = self.inner() else { return };
        let (high, low) = inner.write_buffer_limits();
        let held = self.held_len.get();
        let inner_paused = inner.is_writing_paused();
        if !self.paused.get() {
            if inner_paused || held.saturating_add(inner.buffer_size()) > high {
                self.paused.set(true);
                self.raised.set(true);
            }
        } else if !inner_paused && held <= low {
            self.paused.set(false);
        }
    }

    /// Whether the protocol must be told something.
    fn flow_due(&self) -> bool {
        let told = self.told_paused.get();
        self.paused.get() != told || (self.raised.get() && !told)
    }

    /// Tells the protocol `pause_writing` and/or `resume_writing`, so that what it was
    /// told last matches the state, and a pause anyone saw is followed by a resume. Only
    /// from the loop: a timer or the wrapper's own callback.
    fn check_flow(&self) {
        if self.closed.get() {
            return;
        }
        self.update_flow();
        let owner = self.owner.borrow().as_ref().and_then(Weak::upgrade);
        if !self.told_paused.get() && (self.paused.get() || self.raised.get()) {
            self.told_paused.set(true);
            if let Some(owner) = &owner {
                owner.tell(true);
            }
        }
        self.raised.set(false);
        // The protocol may have written in `pause_writing`: look again.
        self.update_flow();
        if self.told_paused.get() && !self.paused.get() && !self.closed.get() {
            self.told_paused.set(false);
            if let Some(owner) = &owner {
                owner.tell(false);
            }
        }
    }

    /// After a write or a look at the state from inside a protocol callback: bring the
    /// state up to date and tell the protocol on the next turn if needed.
    fn check_flow_later(self: &Rc<Self>) {
        self.update_flow();
        if self.flow_scheduled.get() || self.closed.get() || !self.flow_due() {
            return;
        }
        self.flow_scheduled.set(true);
        let weak = Rc::downgrade(self);
        self.scheduler.call_later(Duration::ZERO, move || {
            if let Some(io) = weak.upgrade() {
                io.flow_scheduled.set(false);
                io.check_flow();
            }
        });
    }

    /// The protocol resumed reading: tell it `reading_resumed` on the next turn (the
    /// real transport's own call is not forwarded, since the read limit pauses and
    /// resumes it too).
    fn reading_resumed_later(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        self.scheduler.call_later(Duration::ZERO, move || {
            if let Some(io) = weak.upgrade() {
                if io.closed.get() || io.user_paused.get() {
                    return;
                }
                let owner = io.owner.borrow().as_ref().and_then(Weak::upgrade);
                if let Some(owner) = owner {
                    owner.reading_resumed();
                }
            }
        });
    }

    fn shut(&self) {
        self.closed.set(true);
        self.held.borrow_mut().clear();
        self.held_len.set(0);
        for timer in [&self.resume_timer, &self.release_timer] {
            if let Some(call) = timer.borrow_mut().take() {
                let _ = call.cancel();
            }
        }
    }
}

/// The transport [`RateLimited`] hands its protocol.
struct Backend(Rc<Io>);

impl TransportBackend for Backend {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        if self.0.write.is_none() {
            self.0.writable()?.try_write(data)?;
            self.0.check_flow_later();
            return Ok(());
        }
        self.0.send(Bytes::copy_from_slice(data))
    }
    fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.0.send(data)
    }
    fn write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        if self.0.write.is_none() {
            self.0.writable()?.try_write_vectored(parts)?;
            self.0.check_flow_later();
            return Ok(());
        }
        self.0.send(Bytes::from(parts.concat()))
    }
    fn extra(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        self.0.inner().and_then(|t| t.extra_any(what))
    }
    fn lose_connection(&self) {
        let Some(inner) = self.0.inner() else { return };
        if self.0.held_len.get() == 0 {
            inner.lose_connection();
        } else if !self.0.closed.get() {
            self.0.after_held.set(AfterHeld::Lose);
            self.0.update_reading();
        }
    }
    fn abort_connection(&self) {
        self.0.shut();
        if let Some(inner) = self.0.inner() {
            inner.abort_connection();
        }
    }
    fn lose_write_connection(&self) -> Result<(), Error> {
        let inner = self.0.writable()?;
        if self.0.held_len.get() == 0 {
            inner.lose_write_connection()
        } else {
            self.0.after_held.set(AfterHeld::LoseWrite);
            Ok(())
        }
    }
    fn peer_addr(&self) -> Address {
        self.0
            .inner()
            .map(|t| t.peer_addr())
            .unwrap_or_else(|| Address::Other("(not connected)".into()))
    }
    fn local_addr(&self) -> Address {
        self.0
            .inner()
            .map(|t| t.local_addr())
            .unwrap_or_else(|| Address::Other("(not connected)".into()))
    }
    fn is_closing(&self) -> bool {
        self.0.closed.get()
            || self.0.after_held.get() != AfterHeld::Nothing
            || self.0.inner().is_none_or(|t| t.is_closing())
    }
    fn pause_reading(&self) {
        self.0.user_paused.set(true);
        self.0.update_reading();
    }
    fn resume_reading(&self) {
        let was_paused = self.0.user_paused.replace(false);
        self.0.update_reading();
        if was_paused && !self.0.closed.get() {
            self.0.reading_resumed_later();
        }
    }
    fn buffer_size(&self) -> usize {
        self.0.held_len.get() + self.0.inner().map_or(0, |t| t.buffer_size())
    }
    /// Not paused by the protocol (a pause by the read limit does not count: it is the
    /// wrapper's, and lifts by itself), not closing, not at end of file.
    fn is_reading(&self) -> bool {
        !self.0.user_paused.get()
            && !self.0.eof.get()
            && !self.0.closed.get()
            && self.0.after_held.get() != AfterHeld::Lose
            && self.0.inner().is_some_and(|t| !t.is_closing())
    }
    /// Held plus socket-buffered bytes went above the high mark (see `update_flow`).
    fn is_writing_paused(&self) -> bool {
        self.0.check_flow_later();
        self.0.paused.get()
    }
    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        if let Some(t) = self.0.inner() {
            t.set_write_buffer_limits(high, low);
        }
        self.0.check_flow_later();
    }
    fn write_buffer_limits(&self) -> (usize, usize) {
        self.0.inner().map(|t| t.write_buffer_limits()).unwrap_or((
            torsion_reactor::DEFAULT_HIGH_WATER,
            torsion_reactor::DEFAULT_LOW_WATER,
        ))
    }
    fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        self.0
            .inner()
            .map_or(Err(closed_error()), |t| t.set_nodelay(on))
    }
    fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        self.0
            .inner()
            .map_or(Err(closed_error()), |t| t.set_keepalive(idle))
    }
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.0.inner().and_then(|t| t.peer_credentials())
    }
}

struct Conn<P> {
    protocol: RefCell<P>,
    io: Rc<Io>,
    /// The wrapped transport handed to the protocol.
    transport: RefCell<Option<Transport>>,
    panicked: RefCell<Option<String>>,
}

impl<P: Protocol> Flow for Conn<P> {
    fn tell(&self, pause: bool) {
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        let Ok(mut protocol) = self.protocol.try_borrow_mut() else {
            return;
        };
        let what = if pause {
            "pause_writing"
        } else {
            "resume_writing"
        };
        guarded(what, &transport, &self.panicked, || {
            if pause {
                protocol.pause_writing(&transport)
            } else {
                protocol.resume_writing(&transport)
            }
        });
    }

    fn reading_resumed(&self) {
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        let Ok(mut protocol) = self.protocol.try_borrow_mut() else {
            return;
        };
        guarded("reading_resumed", &transport, &self.panicked, || {
            protocol.reading_resumed(&transport)
        });
    }
}

/// The protocol [`RateLimit`] wraps around `P`.
pub struct RateLimited<P> {
    conn: Rc<Conn<P>>,
}

impl<P: Protocol> RateLimited<P> {
    /// The wrapped protocol.
    pub fn inner(&self) -> std::cell::Ref<'_, P> {
        self.conn.protocol.borrow()
    }

    fn wrapped(&self) -> Option<Transport> {
        self.conn.transport.borrow().clone()
    }

    fn call(&mut self, f: impl FnOnce(&mut P, &Transport)) {
        if let Some(t) = self.wrapped() {
            f(&mut self.conn.protocol.borrow_mut(), &t);
        }
    }
}

impl<P: Protocol> Protocol for RateLimited<P> {
    fn connection_made(&mut self, transport: &Transport) {
        let io = &self.conn.io;
        *io.inner.borrow_mut() = Some(transport.clone());
        let owner: Rc<dyn Flow> = self.conn.clone();
        *io.owner.borrow_mut() = Some(Rc::downgrade(&owner));
        let wrapped = Transport::new(Rc::new(Backend(Rc::clone(io))));
        *self.conn.transport.borrow_mut() = Some(wrapped);
        self.call(|p, t| p.connection_made(t));
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.call(|p, t| p.data_received(t, data));
        self.conn.io.on_read(data.len());
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        self.conn.io.eof.set(true);
        let mut keep = false;
        self.call(|p, t| keep = p.eof_received(t));
        keep
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.conn.io.shut();
        let reason = lost_reason(&self.conn.panicked, reason);
        self.conn.protocol.borrow_mut().connection_lost(&reason);
    }

    fn pause_writing(&mut self, _transport: &Transport) {
        self.conn.io.check_flow();
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        self.conn.io.check_flow();
    }

    /// Not forwarded: the real transport's reading is also paused and resumed by the
    /// read limit, which the protocol never asked for. The protocol gets
    /// `reading_resumed` (on the next turn) when it resumes the reading it paused.
    fn reading_resumed(&mut self, _transport: &Transport) {}
}
