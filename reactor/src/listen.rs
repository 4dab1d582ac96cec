//! Listening sockets (TCP and Unix): accept, build a protocol, start a connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::conn::Conn;
use crate::error::Error;
use crate::poll::{Interest, Readiness, Source, Token, Wind};
use crate::protocol::{Address, Factory};
use crate::reactor::Inner;
use crate::stream::Stream;
use crate::timer::DelayedCall;

/// Connections accepted per readiness event before the loop moves on.
const ACCEPTS_PER_EVENT: usize = 64;
/// How long a listener stops accepting after running out of descriptors.
const FD_BACKOFF: Duration = Duration::from_millis(100);

/// A listening socket the reactor can accept from.
pub(crate) trait Acceptor: AsRawFd + 'static {
    type Stream: Stream;
    fn accept(&self) -> io::Result<(Self::Stream, Address)>;
    fn local(&self) -> Address;
    /// Called after the socket is closed (a Unix listener removes its path).
    fn cleanup(&self) {}
}

thread_local! {
    /// How many ports and connectors use each factory (keyed by address), so that
    /// `start_factory` runs on the first and `stop_factory` on the last.
    static FACTORY_USERS: RefCell<HashMap<usize, usize>> = RefCell::new(HashMap::new());
}

pub(crate) fn factory_started<F: Factory>(factory: &Rc<F>) {
    let key = factory.factory_id();
    let first = FACTORY_USERS.with(|m| {
        let mut m = m.borrow_mut();
        let n = m.entry(key).or_insert(0);
        *n += 1;
        *n == 1
    });
    if first {
        factory.start_factory();
    }
}

pub(crate) fn factory_stopped<F: Factory>(factory: &Rc<F>) {
    let key = factory.factory_id();
    let last = FACTORY_USERS.with(|m| {
        let mut m = m.borrow_mut();
        match m.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                m.remove(&key);
                true
            }
            None => false,
        }
    });
    if last {
        factory.stop_factory();
    }
}

pub(crate) trait Port {
    fn local(&self) -> Address;
    fn stop(&self);
    fn is_listening(&self) -> bool;
}

pub(crate) struct Listener<A: Acceptor, F: Factory> {
    me: Weak<Listener<A, F>>,
    inner: Weak<Inner>,
    token: Cell<Option<Token>>,
    socket: RefCell<Option<A>>,
    factory: Rc<F>,
    local: Address,
    backoff: RefCell<Option<DelayedCall>>,
    warned: Cell<bool>,
}

impl<A: Acceptor, F: Factory> Listener<A, F> {
    pub(crate) fn start(
        inner: &Rc<Inner>,
        socket: A,
        factory: Rc<F>,
    ) -> Result<Rc<Listener<A, F>>, Error> {
        let local = socket.local();
        let fd = socket.as_raw_fd();
        let listener = Rc::new_cyclic(|me| Listener {
            me: me.clone(),
            inner: Rc::downgrade(inner),
            token: Cell::new(None),
            socket: RefCell::new(Some(socket)),
            factory,
            local,
            backoff: RefCell::new(None),
            warned: Cell::new(false),
        });
        // SAFETY: the socket lives in `listener.socket`; `stop` deregisters before dropping it.
        unsafe {
            inner.registry.register(fd, Interest::READ, |token| {
                listener.token.set(Some(token));
                Rc::clone(&listener)
            })
        }
        .map_err(|e| {
            Error::io(
                format!("cannot watch the listening socket {}", listener.local),
                e,
            )
        })?;
        factory_started(&listener.factory);
        Ok(listener)
    }

    fn accept_some(&self, inner: &Rc<Inner>) {
        for _ in 0..ACCEPTS_PER_EVENT {
            let accepted = match &*self.socket.borrow() {
                Some(sock) => sock.accept(),
                None => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let Some(protocol) =
                        crate::callback::guard(|| self.factory.build_protocol(&peer))
                            .unwrap_or_else(|msg| {
                                log::error!(
                                    "build_protocol panicked for a connection from {peer}: {msg}"
                                );
                                None
                            })
                    else {
                        log::debug!("factory refused the connection from {peer}");
                        continue; // dropping `stream` closes it
                    };
                    let local = self.local.clone();
                    if let Err(err) =
                        Conn::start(inner, stream, Box::new(protocol), peer, local, None)
                    {
                        log::error!("{err}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if crate::sys::is_fd_exhaustion(&e) => {
                    self.back_off(inner, e);
                    return;
                }
                // The peer gave up before we accepted (ECONNABORTED and the like).
                Err(e) => log::debug!("accept on {} failed: {e}", self.local),
            }
        }
    }

    /// Out of descriptors: stop accepting for a moment instead of spinning on a listener
    /// that stays readable, then try again.
    fn back_off(&self, inner: &Rc<Inner>, err: io::Error) {
        if !self.warned.replace(true) {
            log::warn!(
                "cannot accept connections on {}: {}; pausing accepts and retrying every {} ms",
                self.local,
                crate::error::describe_io(&err),
                FD_BACKOFF.as_millis()
            );
        }
        if let Some(token) = self.token.get() {
            inner.registry.set_interest(token, Interest::NONE);
        }
        let me = self.me.clone();
        let call = inner.reactor().call_later(FD_BACKOFF, move || {
            if let Some(me) = me.upgrade() {
                me.backoff.borrow_mut().take();
                if let (Some(inner), Some(token)) = (me.inner.upgrade(), me.token.get()) {
                    inner.registry.set_interest(token, Interest::READ);
                }
            }
        });
        *self.backoff.borrow_mut() = Some(call);
    }
}

impl<A: Acceptor, F: Factory> Source for Listener<A, F> {
    fn ready(self: Rc<Self>, inner: &Rc<Inner>, _readiness: Readiness) {
        self.accept_some(inner);
    }

    fn wind_down(self: Rc<Self>, _inner: &Rc<Inner>, _how: Wind) {
        self.stop();
    }
}

impl<A: Acceptor, F: Factory> Port for Listener<A, F> {
    fn local(&self) -> Address {
        self.local.clone()
    }

    fn stop(&self) {
        let Some(token) = self.token.take() else {
            return;
        };
        if let Some(inner) = self.inner.upgrade() {
            drop(inner.registry.deregister_for_close(token));
        }
        if let Some(call) = self.backoff.borrow_mut().take() {
            let _ = call.cancel();
        }
        let sock = self.socket.borrow_mut().take();
        if let Some(sock) = sock {
            sock.cleanup();
            drop(sock);
        }
        factory_stopped(&self.factory);
    }

    fn is_listening(&self) -> bool {
        self.token.get().is_some()
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
}

impl std::fmt::Debug for ListeningPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListeningPort")
            .field("local_addr", &self.local_addr())
            .field("listening", &self.is_listening())
            .finish()
    }
}
