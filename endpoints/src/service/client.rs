//! [`ClientService`]: keeps one connection up through a client endpoint, reconnecting with
//! backoff, and lets callbacks and tasks wait for it.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion_reactor::{
    Address, Backoff, BoxedFactory, ClientFactory, ConnectionLost, Connector, Deferred,
    DelayedCall, Error, ErrorKind, Factory, Protocol, Reactor, Resolver, Scheduler, SchedulerExt,
    Service, SharedDeferred, Transport,
};

use super::server::DEFAULT_DRAIN_TIMEOUT;
use crate::endpoint::{ClientEndpoint, client_from_string};
use crate::error::EndpointError;

/// The growth of a [`ClientService`]'s default backoff per failed attempt (Twisted's
/// `backoffPolicy` default).
pub const DEFAULT_CLIENT_BACKOFF_FACTOR: f64 = 1.5;

/// The longest delay of a [`ClientService`]'s default backoff (Twisted's default).
pub const DEFAULT_CLIENT_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A [`Service`] that keeps one connection up through a client endpoint while it runs
/// (Twisted's `ClientService`).
///
/// - `start` connects (for `tcp:` the host name is resolved off the reactor thread and its
///   addresses raced Happy-Eyeballs style, at every attempt, so a name that moves is
///   followed). When an attempt fails, or an established connection is lost, it tries again
///   after a delay from its [`Backoff`] policy: by default 1 s, then 1.5 times longer
///   each time up to 60 s ([`DEFAULT_CLIENT_BACKOFF_FACTOR`], [`DEFAULT_CLIENT_BACKOFF_MAX`],
///   Twisted's defaults), each spread by ±10% jitter so that many clients do not retry in
///   step; the delay starts over once a connection is made. A policy with
///   [`with_max_retries`](Backoff::with_max_retries) gives up after that many failures in
///   a row.
/// - [`when_connected`](ClientService::when_connected) is a Deferred of the connection's
///   [`Transport`]: at once while connected, else when the next connection is made; it can
///   fail after a number of failed attempts. A Deferred is a future: `.await` it in a task.
/// - `stop` stops retrying, abandons an attempt under way, closes the connection (flushing
///   what is buffered; aborting it after the stop timeout, [`DEFAULT_DRAIN_TIMEOUT`] by
///   default) and fires once it is gone; waits still pending fail with
///   [`ErrorKind::Cancelled`], naming the service.
///
/// ```no_run
/// use torsion_endpoints::ClientService;
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Service, Transport};
///
/// struct Feed;
/// impl Protocol for Feed {
///     fn data_received(&mut self, _: &Transport, data: &[u8]) {
///         print!("{}", String::from_utf8_lossy(data));
///     }
/// }
///
/// let reactor = Reactor::current();
/// let feed = ClientService::from_string(&reactor, "tcp:feeds.example:7000", factory_fn(|_| Feed))
///     .unwrap();
/// let _ = feed.start();
/// feed.when_connected(None).on_result(|connected| match connected {
///     Ok(transport) => transport.write(b"subscribe prices\n"),
///     Err(err) => eprintln!("{err}"),
/// });
/// reactor.run_service(feed).unwrap(); // until SIGTERM; then the connection is closed
/// ```
pub struct ClientService {
    me: Weak<ClientService>,
    name: String,
    endpoint: ClientEndpoint,
    factory: BoxedFactory,
    scheduler: RefCell<Rc<dyn Scheduler>>,
    policy: RefCell<Backoff>,
    stop_timeout: Cell<Duration>,
    st: RefCell<State>,
}

/// A pending [`ClientService::when_connected`].
struct Waiter {
    resolver: Resolver<Transport>,
    fail_after: Option<u32>,
}

#[derive(Default)]
struct State {
    running: bool,
    /// Stopped after it ran: waits fail at once.
    stopped: bool,
    /// Each start makes a new connector; events from an older one are ignored.
    generation: u64,
    connector: Option<Connector>,
    transport: Option<Transport>,
    backoff: Option<Backoff>,
    retry: Option<DelayedCall>,
    /// Failed attempts since the last connection.
    failures: u32,
    last_failure: Option<String>,
    /// The policy ran out of retries: no more attempts until restarted.
    gave_up: bool,
    waiters: Vec<Waiter>,
    /// The stop under way, waiting for the connection to close.
    stopping: Option<Stopping>,
}

struct Stopping {
    resolver: Resolver<()>,
    shared: SharedDeferred<()>,
    abort: DelayedCall,
}

impl std::fmt::Debug for ClientService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.st.borrow();
        f.debug_struct("ClientService")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("running", &st.running)
            .field("connected", &st.transport.is_some())
            .field("failures", &st.failures)
            .finish()
    }
}

impl ClientService {
    /// A service named `name` that keeps a connection up through `endpoint`, each one's
    /// protocol built by `factory`, with the default backoff on the endpoint's reactor.
    pub fn new<F: Factory>(
        name: impl Into<String>,
        endpoint: ClientEndpoint,
        factory: F,
    ) -> Rc<ClientService> {
        let scheduler: Rc<dyn Scheduler> = Rc::new(endpoint.reactor().clone());
        Rc::new_cyclic(|me| ClientService {
            me: me.clone(),
            name: name.into(),
            endpoint,
            factory: BoxedFactory::new(factory),
            scheduler: RefCell::new(scheduler),
            policy: RefCell::new(
                Backoff::default()
                    .with_factor(DEFAULT_CLIENT_BACKOFF_FACTOR)
                    .with_max(DEFAULT_CLIENT_BACKOFF_MAX),
            ),
            stop_timeout: Cell::new(DEFAULT_DRAIN_TIMEOUT),
            st: RefCell::new(State::default()),
        })
    }

    /// A service that connects to the client endpoint `description` names (the service's
    /// name too), on `reactor`. Error: the description is malformed (or names a datagram
    /// type).
    pub fn from_string<F: Factory>(
        reactor: &Reactor,
        description: &str,
        factory: F,
    ) -> Result<Rc<ClientService>, EndpointError> {
        let endpoint = client_from_string(reactor, description)?;
        Ok(ClientService::new(description, endpoint, factory))
    }

    /// The retry policy (takes effect at the next start).
    pub fn set_backoff(&self, backoff: Backoff) {
        *self.policy.borrow_mut() = backoff;
    }

    /// The time retries are scheduled on (a [`Clock`](torsion_reactor::Clock) in tests).
    pub fn set_scheduler(&self, scheduler: Rc<dyn Scheduler>) {
        *self.scheduler.borrow_mut() = scheduler;
    }

    /// How long a stop lets the connection flush before aborting it.
    pub fn set_stop_timeout(&self, timeout: Duration) {
        self.stop_timeout.set(timeout);
    }

    /// Where it connects.
    pub fn endpoint(&self) -> &ClientEndpoint {
        &self.endpoint
    }

    /// The connection, while there is one.
    pub fn connection(&self) -> Option<Transport> {
        self.st.borrow().transport.clone()
    }

    /// Failed attempts since the last connection was made.
    pub fn failed_attempts(&self) -> u32 {
        self.st.borrow().failures
    }

    /// The connection's transport: at once while connected, else once the next connection
    /// is made (Twisted's `whenConnected`). A wait made before the service starts waits for
    /// its start.
    ///
    /// With `fail_after: Some(n)`, it fails (with the last attempt's error) once `n`
    /// attempts in a row have failed, counting those that failed before the call; so
    /// `Some(1)` asks "is it up, or did the last attempt fail?". It fails with
    /// [`ErrorKind::Cancelled`] when the service is stopped (or, called after a stop, at
    /// once), and when the backoff policy gives up.
    ///
    /// The Deferred is a future too:
    /// `let transport = client.when_connected(None).await?;` in a task.
    pub fn when_connected(&self, fail_after: Option<u32>) -> Deferred<Transport> {
        let mut st = self.st.borrow_mut();
        if let Some(transport) = &st.transport {
            return Deferred::succeed(transport.clone());
        }
        if st.stopped || st.stopping.is_some() {
            return Deferred::fail(self.stopped_error());
        }
        if st.gave_up {
            return Deferred::fail(self.failed_error(&st));
        }
        if fail_after.is_some_and(|n| st.failures >= n) {
            return Deferred::fail(self.failed_error(&st));
        }
        let (d, resolver) = Deferred::new();
        st.waiters.push(Waiter {
            resolver,
            fail_after,
        });
        d
    }

    fn destination(&self) -> Address {
        self.endpoint.spec().destination()
    }

    fn stopped_error(&self) -> Error {
        Error::new(
            ErrorKind::Cancelled,
            format!(
                "service \"{}\" was stopped before it connected to {}",
                self.name,
                self.destination()
            ),
        )
    }

    fn failed_error(&self, st: &State) -> Error {
        let why = st.last_failure.as_deref().unwrap_or("no attempt was made");
        let gave_up = if st.gave_up {
            "; it gave up retrying"
        } else {
            ""
        };
        Error::new(
            if st.gave_up {
                ErrorKind::Cancelled
            } else {
                ErrorKind::Other
            },
            format!(
                "service \"{}\" could not connect to {} ({} failed attempt(s){gave_up}): {why}",
                self.name,
                self.destination(),
                st.failures
            ),
        )
    }

    /// An attempt of `generation` connected.
    fn connected(&self, generation: u64, transport: &Transport) {
        let waiters = {
            let mut st = self.st.borrow_mut();
            if generation != st.generation || !st.running {
                drop(st);
                transport.lose_connection(); // nobody wants it any more
                return;
            }
            st.transport = Some(transport.clone());
            st.failures = 0;
            st.last_failure = None;
            if let Some(backoff) = &mut st.backoff {
                backoff.reset();
            }
            std::mem::take(&mut st.waiters)
        };
        log::info!(
            "service \"{}\" connected to {}",
            self.name,
            transport.peer_addr()
        );
        for waiter in waiters {
            let _ = waiter.resolver.callback(transport.clone());
        }
    }

    /// An attempt of `generation` failed.
    fn failed(&self, generation: u64, reason: &ConnectionLost) {
        let failing = {
            let mut st = self.st.borrow_mut();
            if generation != st.generation || !st.running {
                return; // an attempt abandoned by a stop
            }
            st.failures += 1;
            st.last_failure = Some(describe(reason));
            let failures = st.failures;
            let (failing, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut st.waiters)
                .into_iter()
                .partition(|w| w.fail_after.is_some_and(|n| failures >= n));
            st.waiters = waiting;
            failing
        };
        let delay = self.retry_later(generation);
        let st = self.st.borrow();
        match delay {
            Some(delay) => log::info!(
                "service \"{}\" cannot connect to {}: {}; retrying in {delay:.1?}",
                self.name,
                self.destination(),
                st.last_failure.as_deref().unwrap_or_default()
            ),
            None => log::warn!(
                "service \"{}\" cannot connect to {}: {}; giving up after {} attempt(s)",
                self.name,
                self.destination(),
                st.last_failure.as_deref().unwrap_or_default(),
                st.failures
            ),
        }
        let err = self.failed_error(&st);
        let failing: Vec<Waiter> = if st.gave_up {
            drop(st);
            let rest = std::mem::take(&mut self.st.borrow_mut().waiters);
            failing.into_iter().chain(rest).collect()
        } else {
            failing
        };
        for waiter in failing {
            let _ = waiter.resolver.errback(err.clone());
        }
    }

    /// The connection of `generation` ended.
    fn lost(&self, generation: u64, reason: &ConnectionLost) {
        let stopping = {
            let mut st = self.st.borrow_mut();
            if generation != st.generation {
                return;
            }
            st.transport = None;
            if st.running {
                None
            } else {
                st.connector = None;
                st.stopping.take()
            }
        };
        if let Some(stopping) = stopping {
            let _ = stopping.abort.cancel();
            let _ = stopping.resolver.callback(());
            return;
        }
        match self.retry_later(generation) {
            Some(delay) => log::info!(
                "service \"{}\" lost its connection to {} ({reason}); reconnecting in {delay:.1?}",
                self.name,
                self.destination()
            ),
            None => log::warn!(
                "service \"{}\" lost its connection to {} ({reason}); not reconnecting",
                self.name,
                self.destination()
            ),
        }
    }

    /// Schedules the next attempt per the backoff policy; `None` if it gave up (or is not
    /// running).
    fn retry_later(&self, generation: u64) -> Option<Duration> {
        let mut st = self.st.borrow_mut();
        if !st.running {
            return None;
        }
        let delay = st.backoff.as_mut().and_then(Backoff::next_delay);
        let Some(delay) = delay else {
            st.gave_up = true;
            return None;
        };
        let me = self.me.clone();
        let call = self.scheduler.borrow().call_later(delay, move || {
            let Some(me) = me.upgrade() else { return };
            let connector = {
                let mut st = me.st.borrow_mut();
                st.retry = None;
                if st.generation != generation || !st.running {
                    return;
                }
                st.connector.clone()
            };
            if let Some(connector) = connector {
                connector.connect();
            }
        });
        if let Some(old) = st.retry.replace(call) {
            let _ = old.cancel();
        }
        Some(delay)
    }
}

/// A failed attempt's reason as a sentence: a refusal's message is the endpoint's whole
/// error (the host, the addresses tried and the cause).
fn describe(reason: &ConnectionLost) -> String {
    match reason {
        ConnectionLost::Refused(err) => err.to_string(),
        other => other.to_string(),
    }
}

impl Service for ClientService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start(&self) -> Deferred<()> {
        let connector = {
            let mut st = self.st.borrow_mut();
            if st.running {
                return Deferred::fail(Error::new(
                    ErrorKind::AlreadyRunning,
                    format!(
                        "cannot start service \"{}\": it is already running",
                        self.name
                    ),
                ));
            }
            if st.stopping.is_some() {
                return Deferred::fail(Error::new(
                    ErrorKind::Busy,
                    format!(
                        "cannot start service \"{}\": it is still stopping",
                        self.name
                    ),
                ));
            }
            st.running = true;
            st.stopped = false;
            st.gave_up = false;
            st.failures = 0;
            st.last_failure = None;
            st.generation += 1;
            st.backoff = Some(self.policy.borrow().clone());
            let connector = self.endpoint.connector(Notifier {
                service: self.me.clone(),
                generation: st.generation,
                factory: self.factory.clone(),
            });
            st.connector = Some(connector.clone());
            connector
        };
        connector.connect(); // the attempt starts from the loop
        Deferred::succeed(())
    }

    fn stop(&self) -> Deferred<()> {
        let mut st = self.st.borrow_mut();
        if !st.running {
            return match &st.stopping {
                Some(stopping) => stopping.shared.get(),
                None => Deferred::succeed(()),
            };
        }
        st.running = false;
        st.stopped = true;
        if let Some(retry) = st.retry.take() {
            let _ = retry.cancel();
        }
        let waiters = std::mem::take(&mut st.waiters);
        let stopped = match st.transport.clone() {
            Some(transport) => {
                // Closed (flushed) now; the stop fires when `lost` hears of it.
                let (d, resolver) = Deferred::new();
                let shared = d.shared();
                let late = transport.clone();
                let abort = self
                    .scheduler
                    .borrow()
                    .call_later(self.stop_timeout.get(), move || late.abort_connection());
                st.stopping = Some(Stopping {
                    resolver,
                    shared: shared.clone(),
                    abort,
                });
                transport.lose_connection();
                shared.get()
            }
            None => {
                // Connecting, or waiting to retry: abandon it.
                if let Some(connector) = st.connector.take() {
                    connector.stop_connecting();
                }
                Deferred::succeed(())
            }
        };
        drop(st);
        let err = self.stopped_error();
        for waiter in waiters {
            let _ = waiter.resolver.errback(err.clone());
        }
        stopped
    }

    fn is_running(&self) -> bool {
        self.st.borrow().running
    }
}

/// The factory each start's connector reports to: builds the application's protocols and
/// tells the service of attempts and connections (of its own start only).
struct Notifier {
    service: Weak<ClientService>,
    generation: u64,
    factory: BoxedFactory,
}

impl Factory for Notifier {
    type Protocol = Box<dyn Protocol>;

    fn build_protocol(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.factory.build_protocol(peer)
    }

    fn start_factory(&self) {
        self.factory.start_factory()
    }

    fn stop_factory(&self) {
        self.factory.stop_factory()
    }
}

impl ClientFactory for Notifier {
    fn client_connection_failed(&self, _connector: &Connector, reason: &ConnectionLost) {
        if let Some(service) = self.service.upgrade() {
            service.failed(self.generation, reason);
        }
    }

    fn client_connection_made(&self, _connector: &Connector, transport: &Transport) {
        match self.service.upgrade() {
            Some(service) => service.connected(self.generation, transport),
            None => transport.lose_connection(),
        }
    }

    fn client_connection_lost(&self, _connector: &Connector, reason: &ConnectionLost) {
        if let Some(service) = self.service.upgrade() {
            service.lost(self.generation, reason);
        }
    }
}
