//! [`ServerService`]: listens on an endpoint while running; on stop, stops listening and
//! drains the connections it accepted.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{
    BoxedFactory, DEFAULT_SHUTDOWN_GRACE, Deferred, Error, ErrorKind, Factory, ListeningPort,
    Reactor, Scheduler, SchedulerExt, Service,
};

use crate::endpoint::{ServerEndpoint, server_from_string};
use crate::error::EndpointError;

/// How long a stopping [`ServerService`] lets its connections finish by default before it
/// aborts them: the reactor's own shutdown grace.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = DEFAULT_SHUTDOWN_GRACE;

/// A [`Service`] that listens on a server endpoint with a factory while it runs (Twisted's
/// `StreamServerEndpointService`, `strports.service`).
///
/// - `start` listens; a listen failure is the start's error, a sentence naming the address
///   and the cause (`cannot listen on 127.0.0.1:8000: address already in use`).
/// - `stop` stops listening, then drains: every connection accepted on its port is closed
///   gracefully, as the reactor's own shutdown does it (reading stops, what is buffered is
///   flushed, then the connection closes); the stop fires once each one's
///   `connection_lost` has run, or, after the drain timeout ([`DEFAULT_DRAIN_TIMEOUT`] by
///   default), the connections left are aborted and the stop fires once they are gone.
///   (Twisted's service only stops listening and leaves its connections open.)
/// - It can be started again after a stop (a new listening socket: `tcp:0` gets a new port).
///
/// ```
/// use std::rc::Rc;
/// use torsion_endpoints::ServerService;
/// use torsion_reactor::testing::wait_for; // runs the loop until a Deferred fires
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Service, Transport};
///
/// struct Echo;
/// impl Protocol for Echo {
///     fn data_received(&mut self, t: &Transport, d: &[u8]) { t.write(d); }
/// }
///
/// let reactor = Reactor::current();
/// let web = ServerService::from_string(&reactor, "tcp:0:interface=127.0.0.1", factory_fn(|_| Echo))
///     .unwrap(); // a malformed description fails here
/// wait_for(&reactor, web.start()).unwrap(); // a port in use fails here
/// println!("listening on {}", web.port().unwrap().local_addr());
/// wait_for(&reactor, web.stop()).unwrap();
/// assert!(web.port().is_none());
/// ```
pub struct ServerService {
    name: String,
    endpoint: ServerEndpoint,
    factory: BoxedFactory,
    scheduler: RefCell<Rc<dyn Scheduler>>,
    drain_timeout: Cell<Duration>,
    port: RefCell<Option<ListeningPort>>,
    running: Cell<bool>,
}

impl std::fmt::Debug for ServerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerService")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("port", &*self.port.borrow())
            .finish()
    }
}

impl ServerService {
    /// A service named `name` that listens on `endpoint` with `factory` while it runs.
    /// Its drain timer runs on the endpoint's reactor ([`set_scheduler`] to change).
    ///
    /// [`set_scheduler`]: ServerService::set_scheduler
    pub fn new<F: Factory>(
        name: impl Into<String>,
        endpoint: ServerEndpoint,
        factory: F,
    ) -> Rc<ServerService> {
        let scheduler: Rc<dyn Scheduler> = Rc::new(endpoint.reactor().clone());
        Rc::new(ServerService {
            name: name.into(),
            endpoint,
            factory: BoxedFactory::new(factory),
            scheduler: RefCell::new(scheduler),
            drain_timeout: Cell::new(DEFAULT_DRAIN_TIMEOUT),
            port: RefCell::new(None),
            running: Cell::new(false),
        })
    }

    /// A service that listens on the endpoint `description` names (the service's name
    /// too), on `reactor`. Error: the description is malformed (or names a datagram type).
    pub fn from_string<F: Factory>(
        reactor: &Reactor,
        description: &str,
        factory: F,
    ) -> Result<Rc<ServerService>, EndpointError> {
        let endpoint = server_from_string(reactor, description)?;
        Ok(ServerService::new(description, endpoint, factory))
    }

    /// How long a stop lets the connections finish before aborting them.
    pub fn set_drain_timeout(&self, timeout: Duration) {
        self.drain_timeout.set(timeout);
    }

    /// The time the drain timeout is measured on (a [`Clock`](torsion_reactor::Clock) in
    /// tests).
    pub fn set_scheduler(&self, scheduler: Rc<dyn Scheduler>) {
        *self.scheduler.borrow_mut() = scheduler;
    }

    /// The listening port while it runs (its address: `port.local_addr()`).
    pub fn port(&self) -> Option<ListeningPort> {
        self.port.borrow().clone()
    }

    /// Where it listens.
    pub fn endpoint(&self) -> &ServerEndpoint {
        &self.endpoint
    }

    /// Stops listening and drains (see [`ServerService`]); the Deferred fires once the
    /// port's connections are gone.
    fn drain(&self, port: ListeningPort) -> Deferred<()> {
        port.stop_listening();
        port.lose_connections();
        let open = port.open_connections();
        if open == 0 {
            return Deferred::succeed(());
        }
        log::info!(
            "service \"{}\": draining {open} connection(s) on {}",
            self.name,
            port.local_addr()
        );
        let timeout = self.drain_timeout.get();
        let (name, late) = (self.name.clone(), port.clone());
        let deadline = self.scheduler.borrow().call_later(timeout, move || {
            let left = late.open_connections();
            if left > 0 {
                log::warn!(
                    "service \"{name}\": {left} connection(s) on {} still open after \
                     {timeout:?}; aborting them",
                    late.local_addr()
                );
                late.abort_connections();
            }
        });
        port.when_connections_closed().finally(move || {
            let _ = deadline.cancel();
        })
    }
}

impl Service for ServerService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self) -> Deferred<()> {
        if self.running.get() {
            return Deferred::fail(Error::new(
                ErrorKind::AlreadyRunning,
                format!(
                    "cannot start service \"{}\": it is already running",
                    self.name
                ),
            ));
        }
        match self.endpoint.listen(self.factory.clone()) {
            Ok(port) => {
                self.running.set(true);
                *self.port.borrow_mut() = Some(port);
                Deferred::succeed(())
            }
            Err(err) => Deferred::fail(err),
        }
    }

    fn stop(&self) -> Deferred<()> {
        if !self.running.replace(false) {
            return Deferred::succeed(());
        }
        let port = self.port.borrow_mut().take();
        match port {
            Some(port) => self.drain(port),
            None => Deferred::succeed(()),
        }
    }

    fn is_running(&self) -> bool {
        self.running.get()
    }
}
