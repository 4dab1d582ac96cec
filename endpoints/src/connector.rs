//! [`ClientEndpoint::connector`](crate::ClientEndpoint::connector): a reactor [`Connector`]
//! whose every `connect()` connects the way the endpoint does (for `tcp:`, the host name
//! resolved off the reactor thread and its addresses raced Happy-Eyeballs style), so that a
//! [`Reconnecting`](torsion_reactor::Reconnecting) client reconnects by name.
//!
//! The connector reports to the application's [`ClientFactory`] as the reactor's own
//! connectors do: `started_connecting`, then `client_connection_failed`, or
//! `client_connection_made` and later `client_connection_lost`; `start_factory` before the
//! first attempt and `stop_factory` when the connector is dropped. Every callback into the
//! factory starts from the loop, never from inside `connect()` or `stop_connecting()`.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use torsion_reactor::{
    Address, ClientFactory, ConnectionLost, Connector, ConnectorBackend, ConnectorState, Deferred,
    Error, ErrorKind, Factory, Reactor, SharedFactory, Transport,
};

use crate::spec::ClientSpec;
use crate::types;

/// A connector for `spec` on `reactor`, reporting to `factory`; it waits for `connect()`.
pub(crate) fn connector<F: ClientFactory>(
    reactor: &Reactor,
    spec: Rc<dyn ClientSpec>,
    factory: F,
) -> Connector {
    let backend = Rc::new_cyclic(|me| EndpointConnector {
        me: me.clone(),
        reactor: reactor.clone(),
        spec,
        factory,
        st: RefCell::new(State::Disconnected),
        attempts: Cell::new(0),
        started: Cell::new(false),
    });
    Connector::new(backend)
}

/// Where the connector is.
enum State {
    Disconnected,
    /// Attempt number `attempt` is under way; `pending` is its Deferred once the loop has
    /// started it (cancelling it stops the attempt).
    Connecting {
        attempt: u64,
        pending: Option<Deferred<()>>,
    },
    Connected(Transport),
}

struct EndpointConnector<F: ClientFactory> {
    me: Weak<EndpointConnector<F>>,
    reactor: Reactor,
    spec: Rc<dyn ClientSpec>,
    factory: F,
    st: RefCell<State>,
    /// The number of the last attempt: a late outcome of an earlier one is ignored.
    attempts: Cell<u64>,
    /// Whether `start_factory` was called.
    started: Cell<bool>,
}

impl<F: ClientFactory> EndpointConnector<F> {
    fn handle(self: &Rc<Self>) -> Connector {
        Connector::new(Rc::clone(self) as Rc<dyn ConnectorBackend>)
    }

    fn is_attempt(&self, n: u64) -> bool {
        matches!(&*self.st.borrow(), State::Connecting { attempt, .. } if *attempt == n)
    }

    /// Starts attempt `n` (from the loop), then tells the factory.
    fn begin(self: &Rc<Self>, n: u64) {
        if !self.is_attempt(n) {
            return; // stopped before the loop got here
        }
        let reporter = SharedFactory::new(Reporter {
            connector: Rc::clone(self),
            attempt: n,
            made: Cell::new(false),
        });
        let me = Rc::clone(self);
        let tail = types::connect(&*self.spec, &self.reactor, reporter).then(move |result| {
            me.attempt_ended(n, result);
            Ok::<(), Error>(())
        });
        if let State::Connecting { pending, .. } = &mut *self.st.borrow_mut() {
            *pending = Some(tail);
        }
        if !self.started.replace(true) {
            self.factory.start_factory();
        }
        self.factory.started_connecting(&self.handle());
    }

    /// The outcome of attempt `n`'s Deferred. Success was already reported by the
    /// [`Reporter`] (right after the protocol's `connection_made`); a failure is reported
    /// here, unless the attempt was stopped (then `stop_connecting` reported it).
    fn attempt_ended(self: &Rc<Self>, n: u64, result: Result<Transport, Error>) {
        let Err(err) = result else { return };
        if !self.is_attempt(n) {
            return;
        }
        *self.st.borrow_mut() = State::Disconnected;
        log::debug!("{err}");
        self.factory
            .client_connection_failed(&self.handle(), &connection_lost(&err));
    }
}

impl<F: ClientFactory> ConnectorBackend for EndpointConnector<F> {
    fn connect(&self) {
        let n = {
            let mut st = self.st.borrow_mut();
            if !matches!(*st, State::Disconnected) {
                return;
            }
            let n = self.attempts.get() + 1;
            self.attempts.set(n);
            *st = State::Connecting {
                attempt: n,
                pending: None,
            };
            n
        };
        let Some(me) = self.me.upgrade() else { return };
        self.reactor.call_soon(move || me.begin(n));
    }

    fn stop_connecting(&self) {
        let pending = {
            let mut st = self.st.borrow_mut();
            let State::Connecting { pending, .. } = &mut *st else {
                return;
            };
            let pending = pending.take();
            *st = State::Disconnected;
            pending
        };
        if let Some(pending) = pending {
            pending.cancel();
        }
        let Some(me) = self.me.upgrade() else { return };
        self.reactor.call_soon(move || {
            me.factory
                .client_connection_failed(&me.handle(), &ConnectionLost::Cancelled)
        });
    }

    fn disconnect(&self) {
        let transport = match &*self.st.borrow() {
            State::Connected(transport) => Some(transport.clone()),
            _ => None,
        };
        match transport {
            Some(transport) => transport.lose_connection(),
            None => self.stop_connecting(),
        }
    }

    fn state(&self) -> ConnectorState {
        match &*self.st.borrow() {
            State::Disconnected => ConnectorState::Disconnected,
            State::Connecting { .. } => ConnectorState::Connecting,
            State::Connected(_) => ConnectorState::Connected,
        }
    }

    fn destination(&self) -> Address {
        self.spec.destination()
    }

    fn transport(&self) -> Option<Transport> {
        match &*self.st.borrow() {
            State::Connected(transport) => Some(transport.clone()),
            _ => None,
        }
    }
}

impl<F: ClientFactory> Drop for EndpointConnector<F> {
    fn drop(&mut self) {
        if self.started.get() {
            self.factory.stop_factory();
        }
    }
}

/// What attempt `attempt` reports to: builds the application's protocol (its box goes to
/// the connection as is), and turns the connection's made/lost into the connector's state
/// and the application's callbacks, with the endpoint's connector as the one named.
struct Reporter<F: ClientFactory> {
    connector: Rc<EndpointConnector<F>>,
    attempt: u64,
    /// `client_connection_made` was passed on, so `client_connection_lost` will be.
    made: Cell<bool>,
}

impl<F: ClientFactory> Factory for Reporter<F> {
    type Protocol = F::Protocol;

    fn build_protocol(&self, peer: &Address) -> Option<F::Protocol> {
        if !self.connector.is_attempt(self.attempt) {
            return None; // stopped: nobody wants this connection
        }
        self.connector.factory.build_protocol(peer)
    }
}

impl<F: ClientFactory> ClientFactory for Reporter<F> {
    fn client_connection_made(&self, _connector: &Connector, transport: &Transport) {
        let c = &self.connector;
        if !c.is_attempt(self.attempt) {
            transport.lose_connection();
            return;
        }
        *c.st.borrow_mut() = State::Connected(transport.clone());
        self.made.set(true);
        c.factory.client_connection_made(&c.handle(), transport);
    }

    fn client_connection_lost(&self, _connector: &Connector, reason: &ConnectionLost) {
        if !self.made.replace(false) {
            return;
        }
        let c = &self.connector;
        *c.st.borrow_mut() = State::Disconnected;
        c.factory.client_connection_lost(&c.handle(), reason);
    }
}

/// The reason a client factory is given for a failed connect: the timeout, cancellation and
/// a TLS failure as such, anything else as a refusal whose message is the whole error (which names the
/// host, the addresses tried and the cause) and whose kind is the OS error's.
fn connection_lost(err: &Error) -> ConnectionLost {
    if let Some(failure) = err.tls_failure() {
        return ConnectionLost::Tls(failure.clone());
    }
    match err.kind() {
        ErrorKind::TimedOut => ConnectionLost::TimedOut,
        ErrorKind::Cancelled => ConnectionLost::Cancelled,
        _ => {
            let kind = err.io_error().map_or(io::ErrorKind::Other, io::Error::kind);
            ConnectionLost::Refused(Arc::new(io::Error::new(kind, err.to_string())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::AttemptFactory;
    use torsion_reactor::Protocol;

    struct Mine;

    impl Protocol for Mine {
        fn data_received(&mut self, _: &Transport, _: &[u8]) {}
    }

    struct Mines;

    impl Factory for Mines {
        type Protocol = Mine;
        fn build_protocol(&self, _: &Address) -> Option<Mine> {
            Some(Mine)
        }
    }

    impl ClientFactory for Mines {}

    /// A connector's attempts hand the reactor the application's protocol type, so each
    /// connection's protocol is boxed once.
    #[test]
    fn attempts_build_the_applications_own_protocol() {
        fn builds_mine<F: ClientFactory<Protocol = Mine>>() {}
        builds_mine::<AttemptFactory<Reporter<Mines>>>();
    }
}
