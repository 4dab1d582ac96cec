//! One datagram port (UDP or Unix datagram): its socket, its send queue, its protocol, and
//! the path from readiness to `datagram_received`.
//!
//! Where a datagram goes: the poller reports the socket readable → the loop calls
//! [`Source::ready`] on the port → [`Port::on_readable`] receives up to
//! [`RECV_BATCH`](sys::RECV_BATCH) datagrams with one `recvmmsg` into the reactor's shared
//! datagram buffer (one slot per datagram) → `datagram_received` gets each one's slice and
//! source. At most [`RECV_ROUNDS`] such calls per readiness event, so one flooded port
//! cannot starve the others.
//!
//! Sending: datagrams sent during the port's own callbacks (a whole received batch counts
//! as one) are queued and go out with one `sendmmsg` when the callbacks return; those sent
//! from elsewhere while the loop dispatches go out in its gathered-writes phase; outside
//! the loop they go at once. What the socket does not take waits in the queue, bounded by
//! the port's limit; beyond it a datagram is dropped, counted, and reported.
//!
//! This file holds the port, its life (start, close, abort, `connection_lost`) and its
//! settings; `recv.rs` the receiving side, `send.rs` the sending side.

mod recv;
mod send;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{SockAddr, Socket};

use super::addr::{self, Family};
use super::protocol::{DatagramError, DatagramProtocol};
use super::queue::{Flow, Full, SendQueue};
use super::sys::{self, RECV_BATCH, SEND_BATCH};
use super::transport::DatagramTransport;
use crate::error::{Error, ErrorKind};
use crate::event_loop::Inner;
use crate::event_loop::callback::{self, Job};
use crate::event_loop::queues::Flush;
use crate::io::{Interest, Readiness, Registration, Sharing, Source, Wind};
use crate::net::protocol::{Address, ConnectionLost};
use crate::net::transport::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};
use crate::time::timer::DelayedCall;

/// Receive calls per readiness event: with [`RECV_BATCH`] datagrams each, at most 64
/// datagrams per event before the loop moves on to other sources.
pub(crate) const RECV_ROUNDS: usize = 2;
/// Gathered datagrams go out at once past this many bytes (so one callback that sends a
/// lot does not hold it all in memory until it returns).
const GATHER_BYTES: usize = 64 * 1024;
/// Errors waiting to be delivered, at most; more are counted and logged.
const MAX_PENDING_ERRORS: usize = 64;
/// First and last delay of the retry timer used when a writable report brings no progress
/// (an unconnected Unix datagram socket is reported writable while its receiver is full).
const RETRY_FIRST: Duration = Duration::from_millis(1);
const RETRY_MAX: Duration = Duration::from_millis(64);

/// The settings a port keeps from its options.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The largest datagram received whole (the size of its receive slot).
    pub(crate) max_datagram: usize,
    /// Bytes the send queue holds at most (changed with `set_send_queue_limit`).
    pub(crate) queue_limit: Cell<usize>,
    /// The socket reports ICMP errors through its error queue (`IP_RECVERR`).
    pub(crate) error_queue: bool,
}

/// Where the port is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Life {
    /// `connection_made` has not run yet: not reading.
    Starting,
    Open,
    /// `close` was called: reading stopped; the queue is flushed, then the socket closes.
    Closing,
    /// The socket is closed; `connection_lost` is scheduled or delivered.
    Closed,
}

/// Something received and not yet delivered, because reading was paused in the middle of
/// a batch.
enum Stashed {
    Datagram(Bytes, Address),
    Error(DatagramError),
}

/// Errors and drops to tell the protocol, delivered together from the loop.
#[derive(Default)]
struct Notices {
    errors: Vec<DatagramError>,
    /// Errors beyond [`MAX_PENDING_ERRORS`] (logged instead).
    suppressed: u64,
    dropped: u64,
    dropped_bytes: u64,
    scheduled: bool,
}

/// What changes together, behind one borrow per entry point.
struct Core {
    life: Life,
    /// The protocol paused reading.
    read_paused: bool,
    queue: SendQueue,
    /// The last send would block: wait for writability (or the retry timer).
    blocked: bool,
    /// Datagrams were gathered during this port's own callback: flush when it returns.
    flush_due: bool,
    /// On the reactor's list of ports and connections to flush before it waits.
    listed: bool,
    /// The front datagram failed once with an error that may have been an earlier
    /// datagram's (an ICMP error the kernel hands to the next send): try it once more.
    front_retried: bool,
    retry: Option<DelayedCall>,
    backoff: Duration,
    flow: Flow,
    /// The connected peer: the address as delivered, and as the OS wants it.
    peer: Option<(Address, SockAddr)>,
    local: Address,
    /// The address the socket was bound to when the port started.
    bound: Address,
    notices: Notices,
    /// Datagrams that did not fit the queue, ever (`dropped_datagrams`).
    dropped_total: u64,
    stash: VecDeque<Stashed>,
}

/// One datagram port: the source the loop hands the socket's readiness to, and what every
/// [`DatagramTransport`] handle of it points at.
pub(crate) struct Port {
    me: Weak<Port>,
    reactor: Weak<Inner>,
    /// The socket; `None` once closed.
    io: RefCell<Option<Registration<Socket>>>,
    family: Family,
    /// An IPv6 port that refuses IPv4 destinations (`IPV6_V6ONLY`, fixed once bound).
    v6_only: bool,
    config: Config,
    core: RefCell<Core>,
    /// Out of its slot while one of its callbacks runs; gone once `connection_lost` ran.
    protocol: Cell<Option<Box<dyn DatagramProtocol>>>,
    in_callback: Cell<bool>,
    /// Run once the socket is closed (a Unix port removes its path and lock file).
    cleanup: Cell<Option<Box<dyn FnOnce()>>>,
    /// Runs of datagrams to one destination go out as one segmented message (UDP on
    /// Linux, until the kernel refuses one: see `sys::send_batch`).
    gso: Cell<bool>,
}

fn closed_error(local: &Address) -> Error {
    Error::new(
        ErrorKind::ConnectionClosed,
        format!("cannot send: the datagram port {local} is closed or closing"),
    )
}

/// Errors the network reports for an earlier datagram, which Linux hands to the next
/// receive or send on the socket (`ECONNREFUSED` from an ICMP port unreachable, ...).
fn is_network_error(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(
            libc::ECONNREFUSED
                | libc::EHOSTUNREACH
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::ENETDOWN
                | libc::EPROTO
                | libc::EMSGSIZE
        )
    )
}

impl Port {
    /// Registers `socket` (not read until `connection_made` has run, from the loop).
    /// `peer` is set when the socket is already connected.
    pub(crate) fn start(
        inner: &Rc<Inner>,
        socket: Socket,
        family: Family,
        config: Config,
        protocol: Box<dyn DatagramProtocol>,
        peer: Option<SockAddr>,
        cleanup: Option<Box<dyn FnOnce()>>,
    ) -> Result<DatagramTransport, Error> {
        let peer = peer.map(|p| (addr::from_sockaddr(&p, family), p));
        let local = addr::local_of(&socket, family);
        let v6_only = family == Family::Udp6 && socket.only_v6().unwrap_or(false);
        let port = Rc::new_cyclic(|me| Port {
            me: me.clone(),
            reactor: Rc::downgrade(inner),
            io: RefCell::new(None),
            family,
            v6_only,
            gso: Cell::new(family != Family::Unix && cfg!(target_os = "linux")),
            config,
            core: RefCell::new(Core {
                life: Life::Starting,
                read_paused: false,
                queue: SendQueue::default(),
                blocked: false,
                flush_due: false,
                listed: false,
                front_retried: false,
                retry: None,
                backoff: Duration::ZERO,
                flow: Flow::new(DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER),
                peer,
                bound: local.clone(),
                local,
                notices: Notices::default(),
                dropped_total: 0,
                stash: VecDeque::new(),
            }),
            protocol: Cell::new(Some(protocol)),
            in_callback: Cell::new(false),
            cleanup: Cell::new(cleanup),
        });
        let registration = Registration::new(
            inner,
            socket,
            Interest::NONE,
            port.clone(),
            Sharing::Exclusive,
        )
        .map_err(|(e, _)| {
            if let Some(cleanup) = port.cleanup.take() {
                cleanup();
            }
            Error::io(
                format!("cannot watch the datagram port {}", port.local_addr()),
                e,
            )
        })?;
        *port.io.borrow_mut() = Some(registration);
        inner.connections.set(inner.connections.get() + 1);
        let me = Rc::clone(&port);
        port.soon(move || me.begin());
        Ok(DatagramTransport(port))
    }

    fn transport(self: &Rc<Self>) -> DatagramTransport {
        DatagramTransport(Rc::clone(self))
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

    fn fd(&self) -> Option<RawFd> {
        self.io.borrow().as_ref().map(|r| r.get().as_raw_fd())
    }

    /// Calls `f` with the socket, or fails if the port is closed.
    pub(crate) fn with_socket<R>(&self, f: impl FnOnce(&Socket) -> R) -> Result<R, Error> {
        match &*self.io.borrow() {
            Some(io) => Ok(f(io.get())),
            None => Err(Error::new(
                ErrorKind::ConnectionClosed,
                format!("the datagram port {} is closed", self.local_addr()),
            )),
        }
    }

    pub(crate) fn family(&self) -> Family {
        self.family
    }

    pub(crate) fn local_addr(&self) -> Address {
        self.core.borrow().local.clone()
    }

    /// Re-reads the local address (connecting and disconnecting may change it).
    fn refresh_local(&self) {
        let local = self.with_socket(|s| addr::local_of(s, self.family)).ok();
        if let Some(local) = local {
            self.core.borrow_mut().local = local;
        }
    }

    fn describe(&self) -> String {
        format!("the datagram port {}", self.local_addr())
    }

    /// The first callback, from the loop: `connection_made`, then reading starts.
    fn begin(self: Rc<Self>) {
        self.call("connection_made", |p, t| p.connection_made(t));
        {
            let mut core = self.core.borrow_mut();
            if core.life == Life::Starting {
                core.life = Life::Open;
            }
        }
        self.update_interest();
    }

    /// Calls into the protocol with it out of its slot; datagrams it sends go out when it
    /// returns; a panic is reported and the port goes on.
    fn call<R>(
        self: &Rc<Self>,
        what: &str,
        f: impl FnOnce(&mut dyn DatagramProtocol, &DatagramTransport) -> R,
    ) -> Option<R> {
        let mut protocol = self.protocol.take()?;
        let transport = self.transport();
        self.in_callback.set(true);
        let result = callback::guard(|| f(&mut *protocol, &transport));
        self.in_callback.set(false);
        self.protocol.set(Some(protocol));
        if self.core.borrow().flush_due {
            self.flush();
        }
        match result {
            Ok(r) => Some(r),
            Err(msg) => {
                self.report_panic(what, None, msg);
                None
            }
        }
    }

    fn report_panic(&self, what: &str, from: Option<&Address>, msg: String) {
        let from = from
            .map(|a| format!(" (a datagram from {a})"))
            .unwrap_or_default();
        callback::report_panic(
            &format!(
                "the datagram protocol's {what} on {}{from} (the port goes on)",
                self.local_addr()
            ),
            None,
            msg,
        );
    }

    fn interest(core: &Core) -> Interest {
        Interest {
            read: core.life == Life::Open && !core.read_paused,
            write: core.life != Life::Closed
                && core.blocked
                && core.retry.is_none()
                && !core.queue.is_empty(),
        }
    }

    fn update_interest(&self) {
        let interest = Self::interest(&self.core.borrow());
        if let Some(io) = &*self.io.borrow() {
            io.set_interest(interest);
        }
    }

    /// Whether datagrams are delivered now.
    fn reading_now(&self) -> bool {
        let core = self.core.borrow();
        core.life == Life::Open && !core.read_paused
    }

    fn me(&self) -> Option<Rc<Self>> {
        self.me.upgrade()
    }

    // -----------------------------------------------------------------------------------
    // Connecting

    pub(crate) fn connect(self: &Rc<Self>, to: &Address) -> Result<(), Error> {
        let dest = self.destination(to, 0)?;
        let local = self.local_addr();
        self.with_socket(|s| s.connect(&dest))?.map_err(|e| {
            Error::io(
                format!("cannot connect the datagram port {local} to {to}"),
                e,
            )
        })?;
        let peer = addr::from_sockaddr(&dest, self.family);
        self.core.borrow_mut().peer = Some((peer, dest));
        self.refresh_local();
        Ok(())
    }

    pub(crate) fn disconnect(self: &Rc<Self>) -> Result<(), Error> {
        let local = self.local_addr();
        let fail = |e| Error::io(format!("cannot disconnect the datagram port {local}"), e);
        self.with_socket(|s| sys::disconnect(s.as_raw_fd()))?
            .map_err(fail)?;
        self.core.borrow_mut().peer = None;
        self.refresh_local();
        // Linux gives back a port the system chose when a UDP socket disconnects: take the
        // same one again, so the port keeps its address.
        let (bound, now) = {
            let core = self.core.borrow();
            (core.bound.socket_addr(), core.local.socket_addr())
        };
        if let (Some(bound), Some(before), Some(now)) = (bound, local.socket_addr(), now) {
            if now.port() == 0 {
                let again = SocketAddr::new(bound.ip(), before.port());
                self.with_socket(|s| s.bind(&SockAddr::from(again)))?
                    .map_err(fail)?;
                self.refresh_local();
            }
        }
        Ok(())
    }

    pub(crate) fn peer(&self) -> Option<Address> {
        self.core.borrow().peer.as_ref().map(|(a, _)| a.clone())
    }

    // -----------------------------------------------------------------------------------
    // Reading, flow control, closing

    pub(crate) fn pause_reading(&self) {
        self.core.borrow_mut().read_paused = true;
        self.update_interest();
    }

    pub(crate) fn resume_reading(self: &Rc<Self>) {
        let stashed = {
            let mut core = self.core.borrow_mut();
            if !core.read_paused {
                return;
            }
            core.read_paused = false;
            !core.stash.is_empty()
        };
        if stashed {
            // Delivered from the loop, never from inside the call that resumed.
            let me = Rc::clone(self);
            self.soon(move || {
                me.deliver_stash();
            });
        }
        self.update_interest();
    }

    pub(crate) fn is_reading(&self) -> bool {
        self.reading_now()
    }

    pub(crate) fn buffer_size(&self) -> usize {
        self.core.borrow().queue.bytes()
    }

    pub(crate) fn queued_datagrams(&self) -> usize {
        self.core.borrow().queue.len()
    }

    pub(crate) fn dropped_datagrams(&self) -> u64 {
        self.core.borrow().dropped_total
    }

    pub(crate) fn queue_limit(&self) -> usize {
        self.config.queue_limit.get()
    }

    pub(crate) fn set_queue_limit(&self, limit: usize) {
        self.config.queue_limit.set(limit.max(1));
    }

    pub(crate) fn max_datagram(&self) -> usize {
        self.config.max_datagram
    }

    pub(crate) fn is_writing_paused(&self) -> bool {
        self.core.borrow_mut().flow.observe()
    }

    pub(crate) fn set_write_buffer_limits(self: &Rc<Self>, high: usize, low: usize) {
        let notify = {
            let mut core = self.core.borrow_mut();
            let queued = core.queue.bytes();
            core.flow.set_marks(high, low, queued)
        };
        if notify {
            self.schedule_flow();
        }
    }

    pub(crate) fn write_buffer_limits(&self) -> (usize, usize) {
        let flow = self.core.borrow().flow;
        (flow.high, flow.low)
    }

    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.core.borrow().life, Life::Closing | Life::Closed)
    }

    /// Stops reading now; sends what is queued, then closes.
    pub(crate) fn close(self: &Rc<Self>) {
        let empty = {
            let mut core = self.core.borrow_mut();
            match core.life {
                Life::Closing | Life::Closed => return,
                Life::Starting | Life::Open => core.life = Life::Closing,
            }
            core.stash.clear();
            core.queue.is_empty()
        };
        if empty {
            self.finish_close(ConnectionLost::Done);
        } else {
            self.flush();
        }
    }

    /// Closes now, dropping what is queued.
    pub(crate) fn abort(self: &Rc<Self>) {
        if self.core.borrow().life == Life::Closed {
            return;
        }
        self.finish_close(ConnectionLost::Aborted);
    }

    /// Closes the socket now and schedules `connection_lost`.
    fn finish_close(self: &Rc<Self>, reason: ConnectionLost) {
        let retry = {
            let mut core = self.core.borrow_mut();
            if core.life == Life::Closed {
                return;
            }
            core.life = Life::Closed;
            core.queue.clear();
            core.stash.clear();
            core.retry.take()
        };
        if let Some(retry) = retry {
            let _ = retry.cancel();
        }
        let io = self.io.borrow_mut().take();
        drop(io);
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
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
        callback::contain(
            &format!(
                "the datagram protocol's connection_lost on {}",
                self.local_addr()
            ),
            None,
            || protocol.connection_lost(&reason),
        );
    }

    pub(crate) fn with_protocol(
        &self,
        f: &mut dyn FnMut(&mut dyn DatagramProtocol),
    ) -> Result<(), Error> {
        let Some(mut protocol) = self.protocol.take() else {
            return Err(if self.in_callback.get() {
                Error::new(
                    ErrorKind::Busy,
                    "the protocol is running one of its own callbacks: use `self` there",
                )
            } else {
                Error::new(
                    ErrorKind::ConnectionClosed,
                    "the datagram port is closed and its protocol gone",
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

/// Receive slots take at most this much memory, whatever `max_datagram`: a port with huge
/// datagrams receives fewer per call.
const MAX_BUFFER: usize = 4 * 1024 * 1024;

impl Source for Port {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, readiness: Readiness) {
        if readiness.writable {
            let blocked_before = self.core.borrow().blocked;
            let done = self.flush();
            let core = self.core.borrow();
            let stuck = blocked_before && done == 0 && core.blocked && core.life != Life::Closed;
            drop(core);
            if stuck {
                self.retry_later();
            }
        }
        if readiness.readable {
            self.on_readable(inner);
        }
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, how: Wind) {
        match how {
            Wind::Graceful => self.close(),
            Wind::Abort => self.abort(),
        }
    }
}

impl Flush for Port {
    fn flush_gathered(self: Rc<Self>) {
        self.core.borrow_mut().listed = false;
        self.flush();
    }
}
