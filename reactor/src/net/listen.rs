//! Listening sockets (TCP and Unix): accept, build a protocol, start a connection.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use super::accepted::Accepted;
use super::conn::Conn;
use super::factory::BoxedFactory;
use super::protocol::Address;
use super::stream::Stream;
use crate::defer::deferred::Deferred;
use crate::error::Error;
use crate::event_loop::Inner;
use crate::event_loop::callback::{Caught, CaughtKind, report};
use crate::io::{Interest, Readiness, Registration, Sharing, Source, Wind};
use crate::time::timer::DelayedCall;

/// Connections accepted per readiness event before the loop moves on.
const ACCEPTS_PER_EVENT: usize = 64;
/// How long a listener stops accepting after running out of descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(100);
/// Running out of descriptors is reported at most this often per listener.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// A listening socket the reactor can accept from.
pub(crate) trait Acceptor: AsRawFd + 'static {
    type Stream: Stream;
    fn accept(&self) -> io::Result<(Self::Stream, Address)>;
    fn local(&self) -> Address;
    /// Called after the socket is closed (a Unix listener removes its path).
    fn cleanup(&self) {}
}

/// Where a listener's accepted connections go: a factory on this reactor, or (a balanced
/// listener) other reactors.
pub(crate) trait Route<S> {
    /// The listener starts accepting (from the loop).
    fn started(&self);
    /// The listener stopped (from the loop).
    fn stopped(&self);
    /// A connection was accepted: a route that serves it on this reactor counts it in
    /// `track` while it is open (a listening port drains those on a server's stop).
    fn accepted(
        &self,
        inner: &Rc<Inner>,
        stream: S,
        peer: Address,
        local: &Rc<Address>,
        track: &Rc<Accepted>,
    );
}

impl<S: Stream> Route<S> for BoxedFactory {
    fn started(&self) {
        BoxedFactory::started(self)
    }

    fn stopped(&self) {
        BoxedFactory::stopped(self)
    }

    fn accepted(
        &self,
        inner: &Rc<Inner>,
        stream: S,
        peer: Address,
        local: &Rc<Address>,
        track: &Rc<Accepted>,
    ) {
        let Some(protocol) = self.build(&peer) else {
            log::debug!("factory refused the connection from {peer}");
            return; // dropping `stream` closes it
        };
        let on_lost = track.add();
        let started = Conn::start(
            inner,
            stream,
            protocol,
            peer,
            Rc::clone(local),
            Some(on_lost),
        );
        if let Err(err) = started {
            // Its `connection_lost` will not run.
            track.remove();
            report(Caught::new(
                CaughtKind::IoError,
                format!("accepting on {local}"),
                err.to_string(),
            ));
        }
    }
}

pub(crate) trait Port {
    fn local(&self) -> Address;
    fn stop(&self);
    fn is_listening(&self) -> bool;
    /// The open connections it accepted, for a port that keeps count.
    fn accepted(&self) -> Option<Rc<Accepted>> {
        None
    }
}

pub(crate) struct Listener<A: Acceptor> {
    me: Weak<Listener<A>>,
    /// `None` once stopped.
    socket: RefCell<Option<Registration<A>>>,
    route: Rc<dyn Route<A::Stream>>,
    /// Shared with every connection it accepts.
    local: Rc<Address>,
    backoff: RefCell<Option<DelayedCall>>,
    /// When running out of descriptors was last reported, and how many times it happened
    /// since (reports are rate-limited: see `back_off`).
    reported: Cell<Option<(Instant, u64)>>,
    /// The factory heard `start_factory` (and will hear `stop_factory`).
    started: Cell<bool>,
    /// The connections it accepted that are still open (to drain them on a server's stop).
    accepted: Rc<Accepted>,
}

impl<A: Acceptor> Listener<A> {
    pub(crate) fn start(
        inner: &Rc<Inner>,
        socket: A,
        route: Rc<dyn Route<A::Stream>>,
    ) -> Result<Rc<Listener<A>>, Error> {
        let local = socket.local();
        let listener = Rc::new_cyclic(|me| Listener {
            me: me.clone(),
            socket: RefCell::new(None),
            route,
            local: Rc::new(local),
            backoff: RefCell::new(None),
            reported: Cell::new(None),
            started: Cell::new(false),
            accepted: Accepted::new(inner),
        });
        // Accepting starts once the factory has heard `start_factory`, from the loop (user
        // code never runs inside `listen`).
        let registration = Registration::new(
            inner,
            socket,
            Interest::NONE,
            listener.clone(),
            Sharing::Exclusive,
        )
        .map_err(|(e, socket)| {
            socket.cleanup();
            Error::io(
                format!("cannot watch the listening socket {}", listener.local),
                e,
            )
        })?;
        *listener.socket.borrow_mut() = Some(registration);
        let me = Rc::clone(&listener);
        inner.reactor().call_soon(move || {
            if me.is_listening() {
                me.route.started();
                me.started.set(true);
                me.set_interest(Interest::READ);
            }
        });
        Ok(listener)
    }

    fn accept_some(&self, inner: &Rc<Inner>) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let accepted = match &*self.socket.borrow() {
                Some(socket) => socket.get().accept(),
                None => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    inner.stats.accepted();
                    self.route
                        .accepted(inner, stream, peer, &self.local, &self.accepted)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if crate::io::sys::is_fd_exhaustion(&e) => {
                    inner.stats.accept_error();
                    self.back_off(inner, e);
                    return;
                }
                // The peer gave up before we accepted (ECONNABORTED and the like): this
                // one connection failed, the port accepts on.
                Err(e) => {
                    inner.stats.accept_error();
                    report(Caught::io(
                        CaughtKind::Accept,
                        format!("accepting a connection on {}", self.local),
                        &e,
                    ));
                }
            }
        }
    }

    fn set_interest(&self, interest: Interest) {
        if let Some(socket) = &*self.socket.borrow() {
            socket.set_interest(interest);
        }
    }

    fn is_listening(&self) -> bool {
        self.socket.borrow().is_some()
    }

    /// Out of descriptors: stop accepting for a moment instead of spinning on a listener
    /// that stays readable, then try again. Reported to the error handler at most once per
    /// `REPORT_EVERY` (a server at its limit would otherwise log ten times a second), with
    /// the number of failures since the last report.
    fn back_off(&self, inner: &Rc<Inner>, err: io::Error) {
        let now = Instant::now();
        match self.reported.get() {
            Some((at, since)) if now.duration_since(at) < REPORT_EVERY => {
                self.reported.set(Some((at, since + 1)));
            }
            previous => {
                let since = match previous {
                    Some((_, n)) if n > 0 => format!("; {n} more times since the last report"),
                    _ => String::new(),
                };
                report(Caught::io(
                    CaughtKind::Accept,
                    format!(
                        "cannot accept connections on {} (pausing accepts, retrying every \
                         {} ms{since})",
                        self.local,
                        FD_BACKOFF.as_millis()
                    ),
                    &err,
                ));
                self.reported.set(Some((now, 0)));
            }
        }
        self.set_interest(Interest::NONE);
        let me = self.me.clone();
        let call = inner.reactor().call_later(FD_BACKOFF, move || {
            if let Some(me) = me.upgrade() {
                me.backoff.borrow_mut().take();
                me.set_interest(Interest::READ);
            }
        });
        *self.backoff.borrow_mut() = Some(call);
    }
}

impl<A: Acceptor> Source for Listener<A> {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        self.accept_some(inner);
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, _how: Wind) {
        self.stop();
    }

    fn watch_failed(self: Rc<Self>, inner: &Rc<Inner>, err: io::Error) {
        // The poller is short of memory: try again after the same pause as for a full
        // descriptor table.
        self.back_off(inner, err);
    }
}

impl<A: Acceptor> Port for Listener<A> {
    fn local(&self) -> Address {
        Address::clone(&self.local)
    }

    fn stop(&self) {
        let Some(registration) = self.socket.borrow_mut().take() else {
            return;
        };
        if let Some(call) = self.backoff.borrow_mut().take() {
            let _ = call.cancel();
        }
        // Deregisters and closes the socket; then the path (Unix) can go.
        let socket = registration.into_inner();
        socket.cleanup();
        drop(socket);
        if self.started.replace(false) {
            // From the loop: stop_listening is user code's call.
            let route = Rc::clone(&self.route);
            match crate::event_loop::Reactor::current_if_alive() {
                Some(reactor) if !reactor.is_closed() => reactor.call_soon(move || route.stopped()),
                _ => route.stopped(),
            }
        }
    }

    fn is_listening(&self) -> bool {
        Listener::is_listening(self)
    }

    fn accepted(&self) -> Option<Rc<Accepted>> {
        Some(Rc::clone(&self.accepted))
    }
}

/// A port the reactor is listening on, returned by `listen_tcp` / `listen_unix`.
///
/// Dropping the handle does not stop listening; call
/// [`stop_listening`](ListeningPort::stop_listening) (the reactor's shutdown also does).
#[derive(Clone)]
pub struct ListeningPort {
    pub(crate) port: Rc<dyn Port>,
}

impl ListeningPort {
    /// The address the port is bound to (with the real port number when port 0 was asked).
    pub fn local_addr(&self) -> Address {
        self.port.local()
    }

    /// Stops accepting and closes the listening socket. Open connections are not affected.
    /// Calling it again does nothing.
    pub fn stop_listening(&self) {
        self.port.stop();
    }

    /// Whether the port is still accepting.
    pub fn is_listening(&self) -> bool {
        self.port.is_listening()
    }

    /// How many of the connections accepted on this port are open (their
    /// `connection_lost` has not run yet), listening or not. (A balanced port, from
    /// `listen_on_threads`, hands its connections to other reactors: it counts none.)
    pub fn open_connections(&self) -> usize {
        self.port.accepted().map_or(0, |a| a.len())
    }

    /// Closes the connections accepted on this port gracefully, as the reactor's shutdown
    /// does: each stops reading, flushes what it has buffered, then closes (call
    /// [`stop_listening`](ListeningPort::stop_listening) first to accept no more). Their
    /// protocols hear `connection_lost` from the loop.
    pub fn lose_connections(&self) {
        if let Some(accepted) = self.port.accepted() {
            accepted.wind_down(crate::io::Wind::Graceful);
        }
    }

    /// Aborts the connections accepted on this port: their write buffers are discarded
    /// and they close now.
    pub fn abort_connections(&self) {
        if let Some(accepted) = self.port.accepted() {
            accepted.wind_down(crate::io::Wind::Abort);
        }
    }

    /// A Deferred that fires once no connection accepted on this port is open (after the
    /// last one's `connection_lost`), at once if none is: with
    /// [`lose_connections`](ListeningPort::lose_connections), how a server drains.
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion_reactor::{Protocol, Reactor, Transport, factory_fn};
    ///
    /// struct Quiet;
    /// impl Protocol for Quiet {
    ///     fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    /// }
    ///
    /// let reactor = Reactor::current();
    /// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory_fn(|_| Quiet)).unwrap();
    /// let addr = port.local_addr().socket_addr().unwrap();
    /// let client = std::net::TcpStream::connect(addr).unwrap();
    /// reactor.run_until(Duration::from_secs(10), || port.open_connections() == 1).unwrap();
    ///
    /// port.stop_listening();
    /// port.lose_connections();
    /// let drained = port.when_connections_closed();
    /// torsion_reactor::testing::wait_for(&reactor, drained).unwrap();
    /// assert_eq!(port.open_connections(), 0);
    /// # drop(client);
    /// ```
    pub fn when_connections_closed(&self) -> Deferred<()> {
        match self.port.accepted() {
            Some(accepted) => accepted.when_idle(),
            None => Deferred::succeed(()),
        }
    }
}

impl std::fmt::Debug for ListeningPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListeningPort")
            .field("local_addr", &self.local_addr())
            .field("listening", &self.is_listening())
            .finish()
    }
}
