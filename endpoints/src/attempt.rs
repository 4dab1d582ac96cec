//! Connecting as a Deferred: the adapter from the reactor's [`Connector`] (which reports to
//! a [`ClientFactory`]) to a `Deferred<Transport>` that fires once the protocol's
//! `connection_made` has run, and [`connect_once`], which runs a plain [`Factory`] for one
//! such connect (started once, stopped once, however many attempts the connect makes).
//!
//! Every built-in client type connects through [`attempt`]: `unix:` with one attempt, `tcp:`
//! with one per address raced by [`happy_eyeballs`](crate::happy_eyeballs). Both are generic
//! over the factory, so the reactor sees the application's protocol type and boxes it once:
//! no wrapper, one dynamic call per `data_received`.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{
    Address, ClientFactory, ConnectionLost, Connector, Deferred, Error, ErrorKind, Factory,
    Resolver, SharedFactory, Transport,
};

use crate::values::format_seconds;

/// Decides, just before the protocol of a connection that has been made is built, whether
/// this attempt may go on (`false`: another attempt won the race).
pub(crate) type Win = Box<dyn Fn() -> bool>;

/// One connection attempt as a Deferred of its transport: `dial` starts a connector with the
/// [`AttemptFactory`] it is given; the Deferred fires with the transport after
/// `connection_made`, or fails with an error naming `label` and the cause. Cancelling it
/// stops the attempt (or closes the connection, if it was just made).
///
/// `factory` builds the protocol (only if `win` allows) and is told when the connection is
/// made and lost; its `start_factory`/`stop_factory` are left to the caller.
pub(crate) fn attempt<C: ClientFactory>(
    label: String,
    factory: SharedFactory<C>,
    win: Option<Win>,
    timeout: Option<Duration>,
    dial: impl FnOnce(AttemptFactory<C>) -> Connector,
) -> Deferred<Transport> {
    let cell: Rc<RefCell<Option<Connector>>> = Rc::default();
    let c = Rc::clone(&cell);
    let (d, resolver) = Deferred::with_canceller(move |_| {
        let connector = c.borrow_mut().take();
        if let Some(connector) = connector {
            connector.disconnect();
        }
    });
    let factory = AttemptFactory {
        label,
        user: factory,
        win,
        resolver,
        refused: Cell::new(false),
        lost: Cell::new(false),
        timeout,
    };
    let connector = dial(factory);
    if !d.is_fired() {
        *cell.borrow_mut() = Some(connector);
    }
    d
}

/// The factory of one attempt, as the reactor's connector sees it: builds the user's
/// protocol if the attempt wins (its protocol type is the user's: no wrapper), fires the
/// attempt's Deferred from `client_connection_made`, and turns a failure into the
/// attempt's error.
pub(crate) struct AttemptFactory<C> {
    label: String,
    user: SharedFactory<C>,
    win: Option<Win>,
    resolver: Resolver<Transport>,
    /// The user's factory built no protocol.
    refused: Cell<bool>,
    /// Another attempt had won already.
    lost: Cell<bool>,
    timeout: Option<Duration>,
}

impl<C: ClientFactory> Factory for AttemptFactory<C> {
    type Protocol = C::Protocol;

    fn build_protocol(&self, peer: &Address) -> Option<C::Protocol> {
        if self.win.as_ref().is_some_and(|win| !win()) {
            self.lost.set(true);
            return None;
        }
        let built = self.user.build_protocol(peer);
        self.refused.set(built.is_none());
        built
    }
}

impl<C: ClientFactory> ClientFactory for AttemptFactory<C> {
    fn client_connection_failed(&self, _connector: &Connector, reason: &ConnectionLost) {
        let context = format!("cannot connect to {}", self.label);
        let err = match reason {
            ConnectionLost::Refused(e) => Error::io(context, copy_io(e)),
            ConnectionLost::TimedOut => {
                let after = self
                    .timeout
                    .map(|t| format!(" after {}s", format_seconds(t)))
                    .unwrap_or_default();
                Error::new(ErrorKind::TimedOut, format!("{context}: timed out{after}"))
            }
            ConnectionLost::Cancelled => Error::new(
                ErrorKind::Cancelled,
                format!("{context}: the attempt was cancelled"),
            ),
            ConnectionLost::Aborted if self.refused.get() => Error::new(
                ErrorKind::Other,
                format!("{context}: the factory built no protocol for the connection"),
            ),
            ConnectionLost::Aborted if self.lost.get() => Error::new(
                ErrorKind::Cancelled,
                format!("{context}: another address connected first"),
            ),
            other => Error::new(ErrorKind::Other, format!("{context}: {other}")),
        };
        // Already fired only if cancelled: then nobody waits for this.
        let _ = self.resolver.errback(err);
    }

    fn client_connection_made(&self, connector: &Connector, transport: &Transport) {
        // Callbacks run later, from the loop: the protocol's `connection_made` came first.
        let _ = self.resolver.callback(transport.clone());
        self.user.client_connection_made(connector, transport)
    }

    fn client_connection_lost(&self, connector: &Connector, reason: &ConnectionLost) {
        self.user.client_connection_lost(connector, reason)
    }
}

/// A copy of an I/O error (they are not `Clone`), keeping the OS error code.
pub(crate) fn copy_io(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Runs `connect` with `factory` made into a client factory: `start_factory` now,
/// `stop_factory` once, when the connect fails or when the connection it made is lost.
pub(crate) fn connect_once<F: Factory>(
    factory: F,
    connect: impl FnOnce(SharedFactory<Once<F>>) -> Deferred<Transport>,
) -> Deferred<Transport> {
    let once = SharedFactory::new(Once {
        factory,
        stopped: Cell::new(false),
    });
    once.factory.start_factory();
    let o = once.clone();
    connect(once).inspect(move |result| {
        if result.is_err() {
            o.stop();
        }
    })
}

/// A plain factory for one connect; see [`connect_once`].
pub(crate) struct Once<F> {
    factory: F,
    stopped: Cell<bool>,
}

impl<F: Factory> Once<F> {
    fn stop(&self) {
        if !self.stopped.replace(true) {
            self.factory.stop_factory();
        }
    }
}

impl<F: Factory> Factory for Once<F> {
    type Protocol = F::Protocol;

    fn build_protocol(&self, peer: &Address) -> Option<F::Protocol> {
        self.factory.build_protocol(peer)
    }
}

impl<F: Factory> ClientFactory for Once<F> {
    fn client_connection_lost(&self, _connector: &Connector, _reason: &ConnectionLost) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// What the reactor is handed builds the application's protocol itself (the reactor
    /// boxes it once), not a wrapper around it nor a box of it.
    #[test]
    fn an_attempt_builds_the_applications_own_protocol() {
        fn builds_mine<F: ClientFactory<Protocol = Mine>>() {}
        builds_mine::<AttemptFactory<Once<Mines>>>();
    }
}
