//! Reconnecting clients: exponential backoff with jitter, and a [`ClientFactory`] wrapper
//! that reconnects after every failure or loss (Twisted's `ReconnectingClientFactory`).
//!
//! Unlike Twisted's, the backoff resets by itself when a connection is made: there is no
//! `resetDelay` to remember.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::client::{ClientFactory, Connector, ConnectorBackend, ConnectorState};
use super::factory::Factory;
use super::protocol::{Address, ConnectionLost};
use crate::time::{DelayedCall, Scheduler, SchedulerExt};

/// Exponential backoff: `initial`, then each delay `factor` times the last, capped at
/// `max`, each spread by up to ±`jitter` (a fraction) so that many clients do not retry in
/// step; at most `max_retries` in a row if set.
///
/// ```
/// use std::time::Duration;
/// use torsion_reactor::Backoff;
///
/// let mut b = Backoff::default().with_jitter(0.0);
/// assert_eq!(b.next_delay(), Some(Duration::from_secs(1)));
/// assert_eq!(b.next_delay(), Some(Duration::from_secs(2)));
/// assert_eq!(b.next_delay(), Some(Duration::from_secs(4)));
/// b.reset();
/// assert_eq!(b.next_delay(), Some(Duration::from_secs(1)));
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: f64,
    max_retries: Option<u32>,
    retries: u32,
    seed: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            factor: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.1,
            max_retries: None,
            retries: 0,
            // Different per process and per backoff, so clients spread out.
            seed: {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                t ^ (std::process::id() as u64).rotate_left(32) | 1
            },
        }
    }
}

impl Backoff {
    /// The first delay (default 1 s).
    pub fn with_initial(mut self, initial: Duration) -> Backoff {
        self.initial = initial;
        self
    }

    /// Growth per retry (default 2.0; values below 1 count as 1).
    pub fn with_factor(mut self, factor: f64) -> Backoff {
        self.factor = factor;
        self
    }

    /// The longest delay (default 5 minutes).
    pub fn with_max(mut self, max: Duration) -> Backoff {
        self.max = max;
        self
    }

    /// Random spread as a fraction of the delay, 0.0–1.0 (default 0.1).
    pub fn with_jitter(mut self, jitter: f64) -> Backoff {
        self.jitter = jitter;
        self
    }

    /// Give up after this many retries in a row (default: never).
    pub fn with_max_retries(mut self, max_retries: Option<u32>) -> Backoff {
        self.max_retries = max_retries;
        self
    }

    /// The delay before the next retry, or `None` once `max_retries` is reached.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.max_retries.is_some_and(|max| self.retries >= max) {
            return None;
        }
        let exp = self.factor.max(1.0).powi(self.retries.min(1024) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        self.retries += 1;
        let spread = if self.jitter > 0.0 && self.jitter.is_finite() {
            // xorshift64: plenty for spreading retries; no dependency needed.
            self.seed ^= self.seed << 13;
            self.seed ^= self.seed >> 7;
            self.seed ^= self.seed << 17;
            let unit = (self.seed >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
            (unit * 2.0 - 1.0) * self.jitter.min(1.0)
        } else {
            0.0
        };
        let secs = (base * (1.0 + spread)).max(0.0);
        Some(Duration::try_from_secs_f64(secs).unwrap_or(self.max))
    }

    /// Back to the initial delay (done automatically when a connection is made).
    pub fn reset(&mut self) {
        self.retries = 0;
    }

    /// Retries since the last reset.
    pub fn retries(&self) -> u32 {
        self.retries
    }
}

/// Wraps a [`ClientFactory`] so its connector reconnects, with [`Backoff`], whenever an
/// attempt fails or an established connection is lost, until
/// [`stop_trying`](Reconnecting::stop_trying). Keep it in a
/// [`SharedFactory`](crate::SharedFactory) to call `stop_trying`
/// later: `SharedFactory<Reconnecting<F>>` is itself a client factory that derefs to it.
pub struct Reconnecting<F> {
    factory: F,
    backoff: RefCell<Backoff>,
    scheduler: Rc<dyn Scheduler>,
    retry: RefCell<Option<DelayedCall>>,
    /// The connector, weakly: the connector holds this factory, so a strong handle here
    /// would keep both alive forever. A scheduled retry or an attempt keeps it alive.
    connector: RefCell<Option<Weak<dyn ConnectorBackend>>>,
    stopped: Cell<bool>,
}

impl<F: ClientFactory> Reconnecting<F> {
    /// Reconnects on this thread's reactor.
    pub fn new(factory: F, backoff: Backoff) -> Reconnecting<F> {
        Reconnecting::with_scheduler(factory, backoff, Rc::new(crate::Reactor::current()))
    }

    /// Reconnects on `scheduler`'s time (a [`Clock`](crate::Clock) in tests).
    pub fn with_scheduler(
        factory: F,
        backoff: Backoff,
        scheduler: Rc<dyn Scheduler>,
    ) -> Reconnecting<F> {
        Reconnecting {
            factory,
            backoff: RefCell::new(backoff),
            scheduler,
            retry: RefCell::new(None),
            connector: RefCell::new(None),
            stopped: Cell::new(false),
        }
    }

    /// The wrapped factory.
    pub fn inner(&self) -> &F {
        &self.factory
    }

    /// Retries since the last successful connection.
    pub fn retries(&self) -> u32 {
        self.backoff.borrow().retries()
    }

    /// Stops reconnecting: cancels a scheduled retry and abandons an attempt in progress.
    /// An established connection stays up.
    pub fn stop_trying(&self) {
        self.stopped.set(true);
        if let Some(call) = self.retry.borrow_mut().take() {
            let _ = call.cancel();
        }
        let connector = self.connector.borrow().as_ref().and_then(Weak::upgrade);
        if let Some(c) = connector.map(Connector::new) {
            if c.state() == ConnectorState::Connecting {
                c.stop_connecting();
            }
        }
    }

    fn retry_later(&self, connector: &Connector) {
        if self.stopped.get() {
            return;
        }
        let Some(delay) = self.backoff.borrow_mut().next_delay() else {
            log::info!(
                "giving up on {} after {} retries",
                connector.destination(),
                self.retries()
            );
            return;
        };
        log::debug!("reconnecting to {} in {delay:?}", connector.destination());
        let c = connector.clone();
        let call = self.scheduler.call_later(delay, move || c.connect());
        *self.retry.borrow_mut() = Some(call);
    }
}

impl<F: ClientFactory> Factory for Reconnecting<F> {
    type Protocol = F::Protocol;

    fn build_protocol(&self, peer: &Address) -> Option<F::Protocol> {
        // Connected: the next failure starts from the initial delay again.
        self.backoff.borrow_mut().reset();
        self.factory.build_protocol(peer)
    }

    fn start_factory(&self) {
        self.factory.start_factory()
    }

    fn stop_factory(&self) {
        self.factory.stop_factory()
    }
}

impl<F: ClientFactory> ClientFactory for Reconnecting<F> {
    fn started_connecting(&self, connector: &Connector) {
        *self.connector.borrow_mut() = Some(Rc::downgrade(&connector.0));
        self.factory.started_connecting(connector)
    }

    fn client_connection_failed(&self, connector: &Connector, reason: &ConnectionLost) {
        self.factory.client_connection_failed(connector, reason);
        self.retry_later(connector);
    }

    fn client_connection_made(&self, connector: &Connector, transport: &crate::Transport) {
        self.factory.client_connection_made(connector, transport)
    }

    fn client_connection_lost(&self, connector: &Connector, reason: &ConnectionLost) {
        self.factory.client_connection_lost(connector, reason);
        self.retry_later(connector);
    }
}
