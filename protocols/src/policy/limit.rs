//! [`ConnectionLimit`]: at most N connections at once; refuse or hold the rest.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion_reactor::{Address, ConnectionLost, Protocol, Scheduler, SchedulerExt, Transport};

use super::Policy;
use super::shared::{guarded, lost_reason};

/// At most `max` connections served at once (the connection limit of Twisted's
/// `ThrottlingFactory` and `LimitTotalConnectionsFactory`). What happens to the next ones
/// is chosen when the policy is made:
///
/// - [`refuse`](Self::refuse): they are closed at once (the peer sees a clean close
///   before any byte), as Twisted does. The wrapped factory never hears of them.
/// - [`hold`](Self::hold): up to `max_waiting` of them are accepted but *held*: reading is
///   paused and the wrapped protocol is not started (no `connection_made`, so no
///   greeting is sent); the kernel's buffers push back on the peer. When a served
///   connection ends, the longest-waiting held one is started, in first-come order. Past
///   `max_waiting`, connections are refused. A held connection that ends before its turn
///   is forgotten; its protocol never hears of it (`connection_lost` only ever follows
///   `connection_made`). Note that with reading paused, a held peer's close is noticed
///   only once its turn comes.
///
/// Holding suits short, bursty overloads (clients wait a little instead of failing);
/// refusing suits overloads that last (clients fail fast and retry elsewhere). Both keep
/// the server's memory and descriptors bounded: a held connection costs a socket and its
/// wrapper, no protocol work.
///
/// ```
/// use std::rc::Rc;
/// use torsion_protocols::policy::{ConnectionLimit, Policy};
/// use torsion_reactor::{Address, Clock, Protocol, testing::{Sink, StringTransport}};
///
/// let peer = Address::Other("peer".into());
/// let refuse = ConnectionLimit::refuse(1);
/// let first = refuse.wrap(&peer, || Some(Sink)).unwrap();
/// assert!(refuse.wrap(&peer, || Some(Sink)).is_none());
///
/// let clock = Clock::new();
/// let hold = ConnectionLimit::hold(1, 10, Rc::new(clock.clone()));
/// let (t1, t2) = (StringTransport::new(), StringTransport::new());
/// let mut a = hold.wrap(&peer, || Some(Sink)).unwrap();
/// let mut b = hold.wrap(&peer, || Some(Sink)).unwrap();
/// a.connection_made(&t1.transport());
/// b.connection_made(&t2.transport());
/// assert!(t2.reading_paused());
/// assert_eq!((hold.active(), hold.waiting()), (1, 1));
/// a.connection_lost(&torsion_reactor::ConnectionLost::Done);
/// clock.advance(std::time::Duration::ZERO); // b starts on the next turn of the loop
/// assert!(!t2.reading_paused());
/// assert_eq!((hold.active(), hold.waiting()), (1, 0));
/// # drop(first);
/// ```
#[derive(Clone)]
pub struct ConnectionLimit {
    state: Rc<LimitState>,
}

struct LimitState {
    max: usize,
    /// Held connections allowed, and the scheduler that starts them.
    hold: Option<(usize, Rc<dyn Scheduler>)>,
    /// Connections counted against `max`: served, or about to be started.
    active: Cell<usize>,
    /// Held connections, oldest first (entries for connections gone since are skipped).
    queue: RefCell<VecDeque<Weak<dyn Waiter>>>,
    waiting: Cell<usize>,
}

impl ConnectionLimit {
    /// Serves at most `max` connections and refuses the others.
    pub fn refuse(max: usize) -> ConnectionLimit {
        ConnectionLimit {
            state: Rc::new(LimitState {
                max,
                hold: None,
                active: Cell::new(0),
                queue: RefCell::default(),
                waiting: Cell::new(0),
            }),
        }
    }

    /// Serves at most `max` connections and holds up to `max_waiting` more until a slot
    /// frees; `scheduler` starts them (from the loop, on the turn after a slot frees).
    pub fn hold(max: usize, max_waiting: usize, scheduler: Rc<dyn Scheduler>) -> ConnectionLimit {
        ConnectionLimit {
            state: Rc::new(LimitState {
                max,
                hold: Some((max_waiting, scheduler)),
                active: Cell::new(0),
                queue: RefCell::default(),
                waiting: Cell::new(0),
            }),
        }
    }

    /// Connections being served (or about to be started).
    pub fn active(&self) -> usize {
        self.state.active.get()
    }

    /// Connections held, waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.state.waiting.get()
    }

    /// The most connections served at once.
    pub fn max(&self) -> usize {
        self.state.max
    }
}

impl LimitState {
    /// Starts held connections while there are free slots.
    fn release(&self) {
        while self.active.get() < self.max {
            let next = self.queue.borrow_mut().pop_front();
            let Some(next) = next else { break };
            if let Some(waiter) = next.upgrade() {
                waiter.start_soon();
            }
        }
    }

    fn enqueue(&self, waiter: Weak<dyn Waiter>) {
        let mut queue = self.queue.borrow_mut();
        if queue.len() > 2 * self.waiting.get() + 16 {
            queue.retain(|w| w.upgrade().is_some_and(|w| w.is_waiting()));
        }
        queue.push_back(waiter);
    }
}

impl<P: Protocol> Policy<P> for ConnectionLimit {
    type Protocol = Limited<P>;

    fn wrap(&self, peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<Limited<P>> {
        let st = &self.state;
        let status = if st.active.get() < st.max && st.waiting.get() == 0 {
            Status::Active
        } else if st
            .hold
            .as_ref()
            .is_some_and(|(max_waiting, _)| st.waiting.get() < *max_waiting)
        {
            Status::Waiting
        } else {
            log::info!(
                "refusing a connection from {peer}: {} connections are open (the limit), \
                 {} held",
                st.active.get(),
                st.waiting.get()
            );
            return None;
        };
        let protocol = build()?;
        match status {
            Status::Active => st.active.set(st.active.get() + 1),
            _ => st.waiting.set(st.waiting.get() + 1),
        }
        Some(Limited {
            conn: Rc::new(Conn {
                protocol: RefCell::new(protocol),
                state: Rc::clone(st),
                status: Cell::new(status),
                made: Cell::new(false),
                transport: RefCell::new(None),
                pending: RefCell::new(Vec::new()),
                panicked: RefCell::new(None),
            }),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Counted and served.
    Active,
    /// Held: not counted, reading paused, protocol not started.
    Waiting,
    /// Counted; its start is scheduled.
    Starting,
    /// Ended: uncounted.
    Gone,
}

trait Waiter {
    fn start_soon(self: Rc<Self>);
    fn is_waiting(&self) -> bool;
}

struct Conn<P> {
    protocol: RefCell<P>,
    state: Rc<LimitState>,
    status: Cell<Status>,
    /// The protocol's `connection_made` was called.
    made: Cell<bool>,
    transport: RefCell<Option<Transport>>,
    /// Bytes delivered while held (only by transports that ignore `pause_reading`).
    pending: RefCell<Vec<u8>>,
    panicked: RefCell<Option<String>>,
}

impl<P: Protocol> Conn<P> {
    /// Uncounts this connection (once) and lets a held one take its slot.
    fn leave(&self) {
        let was = self.status.replace(Status::Gone);
        let st = &self.state;
        match was {
            Status::Active | Status::Starting => {
                st.active.set(st.active.get().saturating_sub(1));
                st.release();
            }
            Status::Waiting => st.waiting.set(st.waiting.get().saturating_sub(1)),
            Status::Gone => {}
        }
    }

    fn start(self: Rc<Self>) {
        if self.status.get() != Status::Starting {
            return;
        }
        self.status.set(Status::Active);
        let Some(transport) = self.transport.borrow().clone() else {
            return;
        };
        log::debug!(
            "starting the held connection from {}",
            transport.peer_addr()
        );
        transport.resume_reading();
        let Ok(mut protocol) = self.protocol.try_borrow_mut() else {
            return;
        };
        self.made.set(true);
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        guarded("connection_made", &transport, &self.panicked, || {
            protocol.connection_made(&transport);
            if !pending.is_empty() && !transport.is_closing() {
                protocol.data_received(&transport, &pending);
            }
        });
    }
}

impl<P: Protocol> Waiter for Conn<P> {
    fn start_soon(self: Rc<Self>) {
        if self.status.get() != Status::Waiting {
            return;
        }
        let Some((_, scheduler)) = self.state.hold.clone() else {
            return;
        };
        self.status.set(Status::Starting);
        let st = &self.state;
        st.waiting.set(st.waiting.get().saturating_sub(1));
        st.active.set(st.active.get() + 1);
        scheduler.call_later(Duration::ZERO, move || self.start());
    }

    fn is_waiting(&self) -> bool {
        self.status.get() == Status::Waiting
    }
}

/// The protocol [`ConnectionLimit`] wraps around `P`.
pub struct Limited<P: Protocol> {
    conn: Rc<Conn<P>>,
}

impl<P: Protocol> Limited<P> {
    /// Whether this connection is held, waiting for a slot.
    pub fn is_held(&self) -> bool {
        matches!(self.conn.status.get(), Status::Waiting | Status::Starting)
    }

    /// The wrapped protocol.
    pub fn inner(&self) -> std::cell::Ref<'_, P> {
        self.conn.protocol.borrow()
    }
}

impl<P: Protocol> Protocol for Limited<P> {
    fn connection_made(&mut self, transport: &Transport) {
        *self.conn.transport.borrow_mut() = Some(transport.clone());
        if self.conn.status.get() == Status::Waiting {
            transport.pause_reading();
            log::debug!(
                "holding the connection from {}: {} connections are open (the limit)",
                transport.peer_addr(),
                self.conn.state.active.get()
            );
            let me: Rc<dyn Waiter> = self.conn.clone();
            self.conn.state.enqueue(Rc::downgrade(&me));
            return;
        }
        self.conn.made.set(true);
        self.conn.protocol.borrow_mut().connection_made(transport);
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        if self.conn.made.get() {
            self.conn
                .protocol
                .borrow_mut()
                .data_received(transport, data);
        } else {
            self.conn.pending.borrow_mut().extend_from_slice(data);
        }
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        self.conn.made.get() && self.conn.protocol.borrow_mut().eof_received(transport)
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.conn.leave();
        if self.conn.made.get() {
            let reason = lost_reason(&self.conn.panicked, reason);
            self.conn.protocol.borrow_mut().connection_lost(&reason);
        }
    }

    fn pause_writing(&mut self, transport: &Transport) {
        if self.conn.made.get() {
            self.conn.protocol.borrow_mut().pause_writing(transport);
        }
    }

    fn resume_writing(&mut self, transport: &Transport) {
        if self.conn.made.get() {
            self.conn.protocol.borrow_mut().resume_writing(transport);
        }
    }

    /// Forwarded once the protocol is started (also the one that follows the start of a
    /// held connection, which resumes reading: protocols treat it as a hint to look at
    /// what they hold).
    fn reading_resumed(&mut self, transport: &Transport) {
        if self.conn.made.get() {
            self.conn.protocol.borrow_mut().reading_resumed(transport);
        }
    }
}

impl<P: Protocol> Drop for Limited<P> {
    fn drop(&mut self) {
        self.conn.leave();
    }
}
