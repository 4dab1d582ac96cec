//! [`TimeoutPolicy`]: close connections that stay idle too long.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use torsion_reactor::{
    Address, ConnectionLost, DelayedCall, Error, PeerCredentials, Protocol, Scheduler,
    SchedulerExt, Transport, TransportBackend,
};

use super::Policy;
use super::shared::{guarded, lost_reason};

/// How long a timed-out connection may take to flush and close before it is aborted.
pub const DEFAULT_ABORT_AFTER: Duration = Duration::from_secs(30);

/// What runs when a connection has been idle too long, just before it is closed: gets
/// the wrapped protocol and its transport (to write a last message, log, or update shared
/// state). Implemented by closures `Fn(&mut P, &Transport)` and by [`CloseOnTimeout`].
pub trait TimeoutHandler<P>: 'static {
    /// The connection from `transport` timed out; it is closed when this returns.
    fn timed_out(&self, protocol: &mut P, transport: &Transport);
}

/// The default [`TimeoutHandler`]: nothing to say, just close.
#[derive(Debug, Clone, Copy, Default)]
pub struct CloseOnTimeout;

impl<P> TimeoutHandler<P> for CloseOnTimeout {
    fn timed_out(&self, _protocol: &mut P, _transport: &Transport) {}
}

impl<P, F: Fn(&mut P, &Transport) + 'static> TimeoutHandler<P> for F {
    fn timed_out(&self, protocol: &mut P, transport: &Transport) {
        self(protocol, transport)
    }
}

/// Closes a connection once no byte has gone either way for `idle` (Twisted's
/// `TimeoutFactory`, with `TimeoutMixin`'s callback).
///
/// Traffic is a `data_received` or a successful write through the connection's transport
/// (any write: from the protocol itself, or from another connection holding its
/// transport). When the period passes with neither, the handler runs (see
/// [`on_timeout`](Self::on_timeout)), then the connection is closed with
/// `lose_connection`, so what the handler wrote is sent; if it is still not closed
/// [`DEFAULT_ABORT_AFTER`] later (a peer that does not read), it is aborted. The wrapped
/// protocol's `connection_lost` then gets [`ConnectionLost::TimedOut`].
///
/// Cheap per byte: traffic only records the time; the one timer per connection is moved
/// when it fires early.
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use torsion_protocols::policy::{Policy, TimeoutPolicy};
/// use torsion_reactor::{Address, Clock, Protocol, Transport, testing::StringTransport};
///
/// struct Quiet;
/// impl Protocol for Quiet {
///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
/// }
///
/// let clock = Clock::new();
/// let policy = TimeoutPolicy::new(Rc::new(clock.clone()), Duration::from_secs(60))
///     .on_timeout(|_: &mut Quiet, t: &Transport| { t.write(b"idle, bye\r\n"); });
/// let mut p = policy.wrap(&Address::Other("peer".into()), || Some(Quiet)).unwrap();
///
/// let t = StringTransport::new();
/// p.connection_made(&t.transport());
/// clock.advance(Duration::from_secs(59));
/// p.data_received(&t.transport(), b"still here");
/// clock.advance(Duration::from_secs(59));
/// assert!(!t.lose_connection_called());
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(t.written(), b"idle, bye\r\n");
/// assert!(t.lose_connection_called());
/// ```
pub struct TimeoutPolicy<H = CloseOnTimeout> {
    scheduler: Rc<dyn Scheduler>,
    idle: Duration,
    abort_after: Duration,
    handler: Rc<H>,
}

impl TimeoutPolicy<CloseOnTimeout> {
    /// Closes connections idle for `idle`, timed by `scheduler`.
    pub fn new(scheduler: Rc<dyn Scheduler>, idle: Duration) -> TimeoutPolicy<CloseOnTimeout> {
        TimeoutPolicy {
            scheduler,
            idle,
            abort_after: DEFAULT_ABORT_AFTER,
            handler: Rc::new(CloseOnTimeout),
        }
    }
}

impl<H> TimeoutPolicy<H> {
    /// Runs `handler` when a connection times out, before closing it.
    pub fn on_timeout<G>(self, handler: G) -> TimeoutPolicy<G> {
        TimeoutPolicy {
            scheduler: self.scheduler,
            idle: self.idle,
            abort_after: self.abort_after,
            handler: Rc::new(handler),
        }
    }

    /// Aborts a timed-out connection that has not closed after `grace` (default
    /// [`DEFAULT_ABORT_AFTER`]).
    pub fn with_abort_after(mut self, grace: Duration) -> TimeoutPolicy<H> {
        self.abort_after = grace;
        self
    }

    /// The idle period.
    pub fn idle(&self) -> Duration {
        self.idle
    }
}

impl<P: Protocol, H: TimeoutHandler<P>> Policy<P> for TimeoutPolicy<H> {
    type Protocol = Timeout<P, H>;

    fn wrap(&self, _peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<Timeout<P, H>> {
        let protocol = build()?;
        let now = self.scheduler.now();
        Some(Timeout {
            state: Rc::new(State {
                protocol: RefCell::new(protocol),
                handler: Rc::clone(&self.handler),
                clock: Rc::new(Activity {
                    scheduler: Rc::clone(&self.scheduler),
                    last: Cell::new(now),
                }),
                idle: self.idle,
                abort_after: self.abort_after,
                timer: RefCell::new(None),
                abort_timer: RefCell::new(None),
                transport: RefCell::new(None),
                timed_out: Cell::new(false),
                lost: Cell::new(false),
                panicked: RefCell::new(None),
            }),
        })
    }
}

/// When traffic was last seen.
struct Activity {
    scheduler: Rc<dyn Scheduler>,
    last: Cell<Instant>,
}

impl Activity {
    fn touch(&self) {
        self.last.set(self.scheduler.now());
    }
}

struct State<P, H> {
    protocol: RefCell<P>,
    handler: Rc<H>,
    clock: Rc<Activity>,
    idle: Duration,
    abort_after: Duration,
    timer: RefCell<Option<DelayedCall>>,
    abort_timer: RefCell<Option<DelayedCall>>,
    /// The transport handed to the protocol: it records writes as traffic.
    transport: RefCell<Option<Transport>>,
    timed_out: Cell<bool>,
    lost: Cell<bool>,
    panicked: RefCell<Option<String>>,
}

/// The protocol [`TimeoutPolicy`] wraps around `P`.
pub struct Timeout<P, H = CloseOnTimeout> {
    state: Rc<State<P, H>>,
}

impl<P: Protocol, H: TimeoutHandler<P>> State<P, H> {
    fn arm(self: &Rc<Self>, delay: Duration) {
        let weak: Weak<Self> = Rc::downgrade(self);
        let call = self.clock.scheduler.call_later(delay, move || {
            if let Some(state) = weak.upgrade() {
                state.fire();
            }
        });
        *self.timer.borrow_mut() = Some(call);
    }

    fn fire(self: &Rc<Self>) {
        self.timer.borrow_mut().take();
        if self.lost.get() || self.timed_out.get() {
            return;
        }
        let now = self.clock.scheduler.now();
        let due = self.clock.last.get() + self.idle;
        if now < due {
            // Traffic since the timer was set: wait for the rest of the period.
            self.arm(due - now);
            return;
        }
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        self.timed_out.set(true);
        log::info!(
            "closing the connection from {}: idle for {:?}",
            transport.peer_addr(),
            self.idle
        );
        if let Ok(mut protocol) = self.protocol.try_borrow_mut() {
            guarded("the timeout handler", &transport, &self.panicked, || {
                self.handler.timed_out(&mut protocol, &transport)
            });
        }
        transport.lose_connection();
        if !self.lost.get() {
            let weak = Rc::downgrade(self);
            let call = self.clock.scheduler.call_later(self.abort_after, move || {
                if let Some(state) = weak.upgrade() {
                    state.abort_timer.borrow_mut().take();
                    if let Some(t) = state.transport.borrow().as_ref() {
                        log::info!(
                            "aborting the connection from {}: still open {:?} after its timeout",
                            t.peer_addr(),
                            state.abort_after
                        );
                        t.abort_connection();
                    }
                }
            });
            *self.abort_timer.borrow_mut() = Some(call);
        }
    }

    fn transport(&self) -> Option<Transport> {
        self.transport.borrow().clone()
    }
}

impl<P: Protocol, H: TimeoutHandler<P>> Timeout<P, H> {
    /// The wrapped protocol. Panics if it is borrowed (only possible from inside its own
    /// timeout handler).
    pub fn inner(&self) -> std::cell::Ref<'_, P> {
        self.state.protocol.borrow()
    }

    fn with<T>(&mut self, transport: &Transport, f: impl FnOnce(&mut P, &Transport) -> T) -> T {
        let wrapped = match self.state.transport() {
            Some(t) => t,
            None => {
                let t = Transport::new(Rc::new(Recording {
                    inner: transport.clone(),
                    clock: Rc::clone(&self.state.clock),
                }));
                *self.state.transport.borrow_mut() = Some(t.clone());
                t
            }
        };
        let mut protocol = self.state.protocol.borrow_mut();
        f(&mut protocol, &wrapped)
    }
}

impl<P: Protocol, H: TimeoutHandler<P>> Protocol for Timeout<P, H> {
    fn connection_made(&mut self, transport: &Transport) {
        self.state.clock.touch();
        self.state.arm(self.state.idle);
        self.with(transport, |p, t| p.connection_made(t));
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.state.clock.touch();
        self.with(transport, |p, t| p.data_received(t, data));
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        self.with(transport, |p, t| p.eof_received(t))
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.state.lost.set(true);
        for timer in [&self.state.timer, &self.state.abort_timer] {
            if let Some(call) = timer.borrow_mut().take() {
                let _ = call.cancel();
            }
        }
        let mut reason = lost_reason(&self.state.panicked, reason);
        if self.state.timed_out.get() && !matches!(reason, ConnectionLost::Panicked(_)) {
            reason = ConnectionLost::TimedOut;
        }
        self.state.protocol.borrow_mut().connection_lost(&reason);
    }

    fn pause_writing(&mut self, transport: &Transport) {
        self.with(transport, |p, t| p.pause_writing(t));
    }

    fn resume_writing(&mut self, transport: &Transport) {
        self.with(transport, |p, t| p.resume_writing(t));
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        self.with(transport, |p, t| p.reading_resumed(t));
    }
}

/// A transport that forwards everything and records successful writes as traffic.
struct Recording {
    inner: Transport,
    clock: Rc<Activity>,
}

impl Recording {
    fn note(&self, result: Result<(), Error>) -> Result<(), Error> {
        if result.is_ok() {
            self.clock.touch();
        }
        result
    }
}

impl TransportBackend for Recording {
    fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.note(self.inner.try_write(data))
    }
    fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.note(self.inner.try_write_bytes(data))
    }
    fn write_vectored(&self, parts: &[&[u8]]) -> Result<(), Error> {
        self.note(self.inner.try_write_vectored(parts))
    }
    fn extra(&self, what: TypeId) -> Option<Rc<dyn Any>> {
        self.inner.extra_any(what)
    }
    fn lose_connection(&self) {
        self.inner.lose_connection()
    }
    fn abort_connection(&self) {
        self.inner.abort_connection()
    }
    fn lose_write_connection(&self) -> Result<(), Error> {
        self.inner.lose_write_connection()
    }
    fn peer_addr(&self) -> Address {
        self.inner.peer_addr()
    }
    fn local_addr(&self) -> Address {
        self.inner.local_addr()
    }
    fn is_closing(&self) -> bool {
        self.inner.is_closing()
    }
    fn pause_reading(&self) {
        self.inner.pause_reading()
    }
    fn resume_reading(&self) {
        self.inner.resume_reading()
    }
    fn buffer_size(&self) -> usize {
        self.inner.buffer_size()
    }
    fn is_reading(&self) -> bool {
        self.inner.is_reading()
    }
    fn is_writing_paused(&self) -> bool {
        self.inner.is_writing_paused()
    }
    fn set_write_buffer_limits(&self, high: usize, low: usize) {
        self.inner.set_write_buffer_limits(high, low)
    }
    fn write_buffer_limits(&self) -> (usize, usize) {
        self.inner.write_buffer_limits()
    }
    fn set_nodelay(&self, on: bool) -> Result<(), Error> {
        self.inner.set_nodelay(on)
    }
    fn set_keepalive(&self, idle: Option<Duration>) -> Result<(), Error> {
        self.inner.set_keepalive(idle)
    }
    fn peer_credentials(&self) -> Option<PeerCredentials> {
        self.inner.peer_credentials()
    }
}
