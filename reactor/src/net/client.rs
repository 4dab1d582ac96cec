//! Client connections: [`ClientFactory`], the [`Connector`] that makes (and remakes) a
//! connection, and the in-progress connect that waits for the socket to become writable.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use socket2::{SockAddr, Socket};

use super::conn::{Conn, LostHook, OnLost};
use super::factory::{Counted, Factory, FnFactory, MaybeProtocol, SharedFactory};
use super::protocol::{Address, ConnectionLost, Protocol, boxed, reuse_or_wrap};
use super::stream::Stream;
use super::transport::{Transport, TransportBackend};
use crate::event_loop::Inner;
use crate::event_loop::callback::contain;
use crate::io::fault;
use crate::io::{Interest, Readiness, Registration, Sharing, Source, Wind};
use crate::time::timer::DelayedCall;

/// Default time a connection attempt may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Factory`] for outgoing connections, told when an attempt fails and when an
/// established connection is lost (after the protocol's own `connection_lost`).
pub trait ClientFactory: Factory {
    /// A connection attempt is starting.
    fn started_connecting(&self, connector: &Connector) {
        let _ = connector;
    }

    /// The attempt failed (refused, unreachable, timed out, cancelled).
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        let _ = (connector, reason);
    }

    /// The connection is established and its protocol's `connection_made` has run
    /// (called from the loop right after it): `transport` is the new connection's.
    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        let _ = (connector, transport);
    }

    /// An established connection ended.
    fn client_connection_lost(&self, connector: &Connector, reason: &ConnectionLost) {
        let _ = (connector, reason);
    }
}

/// A closure factory can connect too (told nothing about attempts: `Reconnecting` wraps it
/// to retry).
impl<M, F> ClientFactory for FnFactory<F>
where
    M: MaybeProtocol,
    F: Fn(&Address) -> M + 'static,
{
}

impl<F: ClientFactory> ClientFactory for SharedFactory<F> {
    fn started_connecting(&self, connector: &Connector) {
        (**self).started_connecting(connector)
    }
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        (**self).client_connection_failed(connector, reason)
    }
    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        (**self).client_connection_made(connector, transport)
    }
    fn client_connection_lost(&self, connector: &Connector, reason: &ConnectionLost) {
        (**self).client_connection_lost(connector, reason)
    }
}

/// A [`ClientFactory`] with the protocol type erased, for code that decides at run time
/// how to connect (endpoint strings). Clones share the factory and count its users, as
/// [`BoxedFactory`](crate::BoxedFactory)'s do.
#[derive(Clone)]
pub struct BoxedClientFactory(Rc<Counted<dyn ErasedClientFactory>>);

trait ErasedClientFactory {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>>;
    fn start(&self);
    fn stop(&self);
    fn started(&self, connector: &Connector);
    fn failed(&self, connector: &Connector, reason: &ConnectionLost);
    fn made(&self, connector: &Connector, transport: &Transport);
    fn lost(&self, connector: &Connector, reason: &ConnectionLost);
}

impl<F: ClientFactory> ErasedClientFactory for F {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        boxed(self.build_protocol(peer))
    }
    fn start(&self) {
        self.start_factory()
    }
    fn stop(&self) {
        self.stop_factory()
    }
    fn started(&self, connector: &Connector) {
        self.started_connecting(connector)
    }
    fn failed(&self, connector: &Connector, reason: &ConnectionLost) {
        self.client_connection_failed(connector, reason)
    }
    fn made(&self, connector: &Connector, transport: &Transport) {
        self.client_connection_made(connector, transport)
    }
    fn lost(&self, connector: &Connector, reason: &ConnectionLost) {
        self.client_connection_lost(connector, reason)
    }
}

impl BoxedClientFactory {
    /// Erases `factory`'s protocol type (a `BoxedClientFactory` comes back as it is).
    pub fn new<F: ClientFactory>(factory: F) -> BoxedClientFactory {
        reuse_or_wrap(factory, |f| BoxedClientFactory(Rc::new(Counted::new(f))))
    }

    fn started(&self) {
        contain("start_factory", None, || self.start_factory());
    }

    fn stopped(&self) {
        contain("stop_factory", None, || self.stop_factory());
    }
}

impl Factory for BoxedClientFactory {
    type Protocol = Box<dyn Protocol>;
    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.0.factory.build(peer)
    }
    fn start_factory(&self) {
        if self.0.add_user() {
            self.0.factory.start()
        }
    }
    fn stop_factory(&self) {
        if self.0.remove_user() {
            self.0.factory.stop()
        }
    }
}

impl ClientFactory for BoxedClientFactory {
    fn started_connecting(&self, connector: &Connector) {
        self.0.factory.started(connector)
    }
    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        self.0.factory.failed(connector, reason)
    }
    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        self.0.factory.made(connector, transport)
    }
    fn client_connection_lost(&self, connector: &Connector, reason: &ConnectionLost) {
        self.0.factory.lost(connector, reason)
    }
}

/// Where a connector is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectorState {
    /// Not connected and not trying.
    Disconnected,
    /// An attempt is in progress.
    Connecting,
    /// Connected.
    Connected,
}

/// How to connect: TCP or Unix.
pub(crate) trait Dial: 'static {
    type Stream: Stream;
    /// A new non-blocking socket, bound if asked, with `connect` started.
    fn dial(&self) -> io::Result<Socket>;
    fn stream_from(&self, socket: Socket) -> Self::Stream;
    fn peer(&self) -> Address;
    fn local_of(&self, stream: &Self::Stream) -> Address;
}

/// What a [`Connector`] does; implemented by the reactor's TCP and Unix connectors, and by
/// anything else that makes one outgoing connection at a time and can make it again (the
/// endpoints crate's name-resolving, Happy-Eyeballs connector). Applications use
/// [`Connector`].
pub trait ConnectorBackend {
    /// See [`Connector::connect`].
    fn connect(&self);
    /// See [`Connector::stop_connecting`].
    fn stop_connecting(&self);
    /// See [`Connector::disconnect`].
    fn disconnect(&self);
    /// See [`Connector::state`].
    fn state(&self) -> ConnectorState;
    /// See [`Connector::destination`].
    fn destination(&self) -> Address;
    /// See [`Connector::transport`].
    fn transport(&self) -> Option<Transport>;
}

/// Makes one outgoing connection at a time, and can make it again: what
/// `connect_tcp`/`connect_unix` return and what client factories are handed (a
/// reconnecting policy calls [`connect`](Connector::connect) after a delay).
#[derive(Clone)]
pub struct Connector(pub(crate) Rc<dyn ConnectorBackend>);

impl Connector {
    /// Wraps a backend.
    pub fn new(backend: Rc<dyn ConnectorBackend>) -> Connector {
        Connector(backend)
    }

    /// Starts a new attempt if disconnected; does nothing otherwise.
    pub fn connect(&self) {
        self.0.connect()
    }

    /// Abandons an attempt in progress (the factory hears `client_connection_failed` with
    /// [`ConnectionLost::Cancelled`]).
    pub fn stop_connecting(&self) {
        self.0.stop_connecting()
    }

    /// Closes the connection if connected (flushing first), or stops connecting.
    pub fn disconnect(&self) {
        self.0.disconnect()
    }

    /// Where this connector is in its life.
    pub fn state(&self) -> ConnectorState {
        self.0.state()
    }

    /// The address it connects to.
    pub fn destination(&self) -> Address {
        self.0.destination()
    }

    /// The connection's transport while connected.
    pub fn transport(&self) -> Option<Transport> {
        self.0.transport()
    }
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("destination", &self.destination())
            .field("state", &self.state())
            .finish()
    }
}

pub(crate) struct ConnectorImpl<D: Dial> {
    me: Weak<ConnectorImpl<D>>,
    inner: Weak<Inner>,
    dial: D,
    factory: BoxedClientFactory,
    timeout: Option<Duration>,
    state: Cell<ConnectorState>,
    attempt: RefCell<Option<Rc<Attempt<D>>>>,
    transport: RefCell<Option<Transport>>,
    started: Cell<bool>,
}

impl<D: Dial> ConnectorImpl<D> {
    pub(crate) fn new(
        inner: &Rc<Inner>,
        dial: D,
        factory: BoxedClientFactory,
        timeout: Option<Duration>,
    ) -> Rc<ConnectorImpl<D>> {
        Rc::new_cyclic(|me| ConnectorImpl {
            me: me.clone(),
            inner: Rc::downgrade(inner),
            dial,
            factory,
            timeout,
            state: Cell::new(ConnectorState::Disconnected),
            attempt: RefCell::new(None),
            transport: RefCell::new(None),
            started: Cell::new(false),
        })
    }

    fn handle(&self) -> Option<Connector> {
        self.me
            .upgrade()
            .map(|me| Connector(me as Rc<dyn ConnectorBackend>))
    }

    /// Tells the factory the attempt failed (always from the loop, never from the caller's
    /// stack).
    fn fail_soon(&self, reason: ConnectionLost) {
        self.state.set(ConnectorState::Disconnected);
        let Some(me) = self.me.upgrade() else { return };
        if let Some(inner) = self.inner.upgrade() {
            inner.reactor().call_soon(move || me.report_failed(&reason));
        }
    }

    fn report_failed(&self, reason: &ConnectionLost) {
        if let Some(connector) = self.handle() {
            contain("client_connection_failed", None, || {
                self.factory.client_connection_failed(&connector, reason)
            });
        }
    }

    fn connected(&self, inner: &Rc<Inner>, socket: Socket) {
        self.attempt.borrow_mut().take();
        let peer = self.dial.peer();
        let stream = self.dial.stream_from(socket);
        let local = self.dial.local_of(&stream);
        let built = contain(
            &format!("build_protocol for a connection to {peer}"),
            None,
            || self.factory.build_protocol(&peer),
        )
        .flatten();
        let Some(protocol) = built else {
            drop(stream);
            self.state.set(ConnectorState::Disconnected);
            self.report_failed(&ConnectionLost::Aborted);
            return;
        };
        // The connection keeps its connector alive (the user may have dropped every handle);
        // the cycle through `transport` ends when the connection is lost.
        let Some(me) = self.me.upgrade() else { return };
        let on_lost: LostHook = Box::new(move |reason: &ConnectionLost| {
            me.transport.borrow_mut().take();
            me.state.set(ConnectorState::Disconnected);
            if let Some(connector) = me.handle() {
                me.factory.client_connection_lost(&connector, reason);
            }
        });
        self.state.set(ConnectorState::Connected);
        match Conn::start(
            inner,
            stream,
            protocol,
            peer,
            Rc::new(local),
            Some(OnLost::Call(on_lost)),
        ) {
            Ok(conn) => {
                let transport = Transport::new(conn as Rc<dyn TransportBackend>);
                *self.transport.borrow_mut() = Some(transport.clone());
                if let Some(connector) = self.handle() {
                    contain("client_connection_made", None, || {
                        self.factory.client_connection_made(&connector, &transport)
                    });
                }
            }
            Err(err) => {
                log::error!("{err}");
                self.state.set(ConnectorState::Disconnected);
                self.report_failed(&ConnectionLost::Aborted);
            }
        }
    }
}

impl<D: Dial> ConnectorImpl<D> {
    /// The attempt itself, from the loop: the factory hears `start_factory` (first attempt)
    /// and `started_connecting`, then the socket connects.
    fn begin(self: Rc<Self>) {
        if self.state.get() != ConnectorState::Connecting {
            return; // stopped before the loop got here
        }
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if !self.started.replace(true) {
            self.factory.started();
        }
        if let Some(connector) = self.handle() {
            contain("started_connecting", None, || {
                self.factory.started_connecting(&connector)
            });
        }
        if self.state.get() != ConnectorState::Connecting {
            return; // the factory stopped it
        }
        let socket = match self.dial.dial() {
            Ok(socket) => socket,
            Err(e) => return self.fail_soon(ConnectionLost::Refused(Arc::new(e))),
        };
        let attempt = Rc::new(Attempt {
            socket: RefCell::new(None),
            timer: RefCell::new(None),
            connector: RefCell::new(Some(Rc::clone(&self))),
        });
        match Registration::new(
            &inner,
            socket,
            Interest::WRITE,
            attempt.clone(),
            Sharing::Exclusive,
        ) {
            Ok(registration) => *attempt.socket.borrow_mut() = Some(registration),
            Err((e, _)) => return self.fail_soon(ConnectionLost::Refused(Arc::new(e))),
        }
        if let Some(timeout) = self.timeout {
            let weak = Rc::downgrade(&attempt);
            let call = inner.reactor().call_later(timeout, move || {
                if let Some(attempt) = weak.upgrade() {
                    attempt.give_up(ConnectionLost::TimedOut);
                }
            });
            *attempt.timer.borrow_mut() = Some(call);
        }
        *self.attempt.borrow_mut() = Some(attempt);
    }
}

impl<D: Dial> ConnectorBackend for ConnectorImpl<D> {
    /// Starts an attempt on the next loop turn (the factory's callbacks never run inside
    /// this call).
    fn connect(&self) {
        if self.state.get() != ConnectorState::Disconnected {
            return;
        }
        let (Some(inner), Some(me)) = (self.inner.upgrade(), self.me.upgrade()) else {
            return;
        };
        if inner.is_closed() {
            return;
        }
        self.state.set(ConnectorState::Connecting);
        inner.reactor().call_soon(move || me.begin());
    }

    fn stop_connecting(&self) {
        let attempt = self.attempt.borrow_mut().take();
        match attempt {
            Some(attempt) => attempt.give_up(ConnectionLost::Cancelled),
            // Stopped before the loop began the attempt.
            None if self.state.get() == ConnectorState::Connecting => {
                self.fail_soon(ConnectionLost::Cancelled)
            }
            None => {}
        }
    }

    fn disconnect(&self) {
        match self.state.get() {
            ConnectorState::Connecting => self.stop_connecting(),
            ConnectorState::Connected => {
                let transport = self.transport.borrow().clone();
                if let Some(t) = transport {
                    t.lose_connection();
                }
            }
            ConnectorState::Disconnected => {}
        }
    }

    fn state(&self) -> ConnectorState {
        self.state.get()
    }

    fn destination(&self) -> Address {
        self.dial.peer()
    }

    fn transport(&self) -> Option<Transport> {
        self.transport.borrow().clone()
    }
}

impl<D: Dial> Drop for ConnectorImpl<D> {
    fn drop(&mut self) {
        if self.started.get() {
            // From the loop: the last handle may be dropped inside user code.
            let factory = self.factory.clone();
            match crate::event_loop::Reactor::current_if_alive() {
                Some(reactor) if !reactor.is_closed() => {
                    reactor.call_soon(move || factory.stopped())
                }
                _ => factory.stopped(),
            }
        }
    }
}

/// A connect in progress: registered for writability, which says the outcome. It keeps
/// its connector alive until the attempt ends (the user may have dropped every handle).
pub(crate) struct Attempt<D: Dial> {
    socket: RefCell<Option<Registration<Socket>>>,
    timer: RefCell<Option<DelayedCall>>,
    connector: RefCell<Option<Rc<ConnectorImpl<D>>>>,
}

impl<D: Dial> Attempt<D> {
    /// Stops watching and returns the socket (if the attempt was still open).
    fn end(&self) -> Option<Socket> {
        if let Some(call) = self.timer.borrow_mut().take() {
            let _ = call.cancel();
        }
        let registration = self.socket.borrow_mut().take()?;
        Some(registration.into_inner())
    }

    fn give_up(&self, reason: ConnectionLost) {
        let Some(socket) = self.end() else { return };
        drop(socket);
        let connector = self.connector.borrow_mut().take();
        if let Some(connector) = connector {
            let attempt = connector.attempt.borrow_mut().take();
            connector.fail_soon(reason);
            drop(attempt);
        }
    }
}

impl<D: Dial> Source for Attempt<D> {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        let outcome = match &*self.socket.borrow() {
            Some(socket) => connect_outcome(socket.get()),
            None => return,
        };
        let error = match outcome {
            Outcome::InProgress => return, // a spurious wake-up: wait on
            Outcome::Connected => None,
            Outcome::Failed(e) => Some(e),
        };
        if let Some(e) = error {
            self.give_up(ConnectionLost::Refused(Arc::new(e)));
            return;
        }
        let Some(socket) = self.end() else { return };
        let connector = self.connector.borrow_mut().take();
        if let Some(connector) = connector {
            connector.connected(inner, socket);
        }
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, _how: Wind) {
        self.give_up(ConnectionLost::Cancelled);
    }

    fn watch_failed(self: Rc<Self>, _inner: &Rc<Inner>, err: io::Error) {
        self.give_up(ConnectionLost::Refused(Arc::new(err)));
    }
}

enum Outcome {
    InProgress,
    Connected,
    Failed(io::Error),
}

/// What became of a connect the poller says is done. Writability alone does not say: an
/// event can come early (a spurious wake-up, a stale one), so a socket with no error is
/// connected only if it has a peer (`ENOTCONN`: still in progress; mio's rule too).
fn connect_outcome(socket: &Socket) -> Outcome {
    match socket.take_error() {
        Ok(Some(e)) | Err(e) => return Outcome::Failed(e),
        Ok(None) => {}
    }
    match socket.peer_addr() {
        Ok(_) => Outcome::Connected,
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Outcome::InProgress,
        Err(e) => Outcome::Failed(e),
    }
}

/// Starts a non-blocking connect to `addr`; "in progress" counts as started.
pub(crate) fn start_connect(socket: &Socket, addr: &SockAddr) -> io::Result<()> {
    let connect = || socket.connect(addr);
    match fault::call(fault::Op::Connect, socket.as_raw_fd(), connect) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}
