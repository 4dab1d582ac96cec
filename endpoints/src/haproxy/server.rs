//! The receiving side: [`ProxyServerFactory`], a factory whose protocol
//! ([`ProxyHeaderLayer`]) reads the PROXY header of each connection before the wrapped
//! factory builds the application's protocol.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion_reactor::{
    Address, ConnectionLost, DelayedCall, Factory, Protocol, Reactor, Scheduler, SchedulerExt,
    Transport,
};

use super::handoff::{self, Forward};
use super::header::{DEFAULT_MAX_HEADER_LEN, HeaderReader, ProxyHeader};

/// How long a connection may take to send its whole header when no other time is set:
/// 5 seconds (the specification asks for at least 3, to cover a TCP retransmission).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds `F`'s protocols behind a PROXY protocol reader: on each connection it reads the
/// header a load balancer (HAProxy's `send-proxy` or `send-proxy-v2`, nginx's
/// `proxy_protocol on`, AWS NLB, ...) sends first, then has `F` build the protocol for the
/// client's address the header gives. That protocol's transport reports the client's
/// address as [`peer_addr`](Transport::peer_addr) and the header itself as
/// `transport.extra::<ProxyHeader>()` (its TLVs: ALPN, authority, unique id, ...).
///
/// A LOCAL header (the proxy's health check) or one with unknown addresses keeps the
/// socket's peer. A connection that sends anything but a valid header (no header,
/// a malformed or oversized one), closes before its header is complete, or takes longer
/// than the [`timeout`](ProxyServerFactory::timeout) to send it, is closed with one
/// `log::warn!` line naming the peer and what was wrong; `F` never hears of it.
///
/// The header is read from the connection's first bytes, so for TLS the TLS layer goes
/// inside (HAProxy sends the header in the clear, then the client's TLS records):
/// `ProxyServerFactory::new(acceptor.wrap(factory))`, which is what the `haproxy:ssl:`
/// endpoint does.
///
/// ```
/// use torsion_endpoints::haproxy::{ProxyHeader, ProxyServerFactory};
/// use torsion_reactor::{factory_fn, Protocol, Reactor, Transport};
///
/// struct Hello;
/// impl Protocol for Hello {
///     fn connection_made(&mut self, t: &Transport) {
///         // The client's address, as the load balancer saw it.
///         let id = t.extra::<ProxyHeader>().and_then(|h| h.unique_id().map(<[u8]>::to_vec));
///         log::info!("{} connected (id {:?})", t.peer_addr(), id);
///     }
///     fn data_received(&mut self, t: &Transport, data: &[u8]) {
///         t.write(data);
///     }
/// }
///
/// let reactor = Reactor::current();
/// let factory = ProxyServerFactory::new(factory_fn(|client| {
///     log::info!("building a protocol for {client}"); // the real client, not the proxy
///     Hello
/// }))
/// .timeout(std::time::Duration::from_secs(3));
/// let port = reactor.listen_tcp("127.0.0.1:0".parse()?, factory)?;
/// # port.stop_listening();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProxyServerFactory<F> {
    shared: Rc<Shared<F>>,
    settings: Settings,
}

struct Shared<F> {
    factory: F,
}

#[derive(Clone)]
struct Settings {
    timeout: Duration,
    max_len: usize,
    scheduler: Option<Rc<dyn Scheduler>>,
}

/// Builds the application's protocol once the header is read (the wrapped factory, its
/// protocol type erased).
trait Build {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>>;
}

impl<F: Factory> Build for Shared<F> {
    fn build(&self, peer: &Address) -> Option<Box<dyn Protocol>> {
        self.factory.build_protocol(peer).map(handoff::boxed)
    }
}

impl<F: Factory> ProxyServerFactory<F> {
    /// Wraps `factory`, with the [`DEFAULT_HEADER_TIMEOUT`] and version 2 headers of up
    /// to [`DEFAULT_MAX_HEADER_LEN`] bytes.
    pub fn new(factory: F) -> ProxyServerFactory<F> {
        ProxyServerFactory {
            shared: Rc::new(Shared { factory }),
            settings: Settings {
                timeout: DEFAULT_HEADER_TIMEOUT,
                max_len: DEFAULT_MAX_HEADER_LEN,
                scheduler: None,
            },
        }
    }

    fn with_settings(mut self, change: impl FnOnce(&mut Settings)) -> ProxyServerFactory<F> {
        change(&mut self.settings);
        self
    }

    /// How long a connection may take to send its whole header before it is closed.
    pub fn timeout(self, timeout: Duration) -> ProxyServerFactory<F> {
        self.with_settings(|s| s.timeout = timeout)
    }

    /// The longest version 2 header accepted (a longer one closes the connection).
    pub fn max_header_len(self, max_len: usize) -> ProxyServerFactory<F> {
        self.with_settings(|s| s.max_len = max_len)
    }

    /// Times the header with `scheduler` instead of this thread's reactor: a
    /// [`Clock`](torsion_reactor::Clock) in tests.
    pub fn with_scheduler(self, scheduler: Rc<dyn Scheduler>) -> ProxyServerFactory<F> {
        self.with_settings(|s| s.scheduler = Some(scheduler))
    }

    /// The wrapped factory.
    pub fn factory(&self) -> &F {
        &self.shared.factory
    }
}

impl<F: Factory> Factory for ProxyServerFactory<F> {
    type Protocol = ProxyHeaderLayer;

    fn build_protocol(&self, _peer: &Address) -> Option<ProxyHeaderLayer> {
        let settings = &self.settings;
        Some(ProxyHeaderLayer {
            build: Rc::clone(&self.shared) as Rc<dyn Build>,
            timeout: settings.timeout,
            scheduler: settings.scheduler.clone(),
            state: State::Reading {
                reader: HeaderReader::with_max_len(settings.max_len),
                timer: None,
                told: Rc::new(Cell::new(false)),
                received: Rc::new(Cell::new(0)),
                socket_peer: None,
            },
        })
    }

    fn start_factory(&self) {
        self.shared.factory.start_factory();
    }

    fn stop_factory(&self) {
        self.shared.factory.stop_factory();
    }
}

/// The protocol a [`ProxyServerFactory`] gives each connection: it reads the PROXY
/// header, then hands the connection to the protocol the wrapped factory builds (and is
/// gone: the connection calls that protocol directly).
pub struct ProxyHeaderLayer {
    build: Rc<dyn Build>,
    timeout: Duration,
    scheduler: Option<Rc<dyn Scheduler>>,
    state: State,
}

enum State {
    Reading {
        reader: HeaderReader,
        timer: Option<DelayedCall>,
        /// The reason the connection is closed was logged (by the timer).
        told: Rc<Cell<bool>>,
        /// Bytes of the header received so far (for the timer's message).
        received: Rc<Cell<usize>>,
        socket_peer: Option<Address>,
    },
    /// The application's protocol runs behind this layer (a transport that cannot switch
    /// protocols, or one that paused before it got the bytes that came with the header).
    Forwarding(Forward),
    /// Refused, or handed over.
    Done,
}

impl ProxyHeaderLayer {
    /// Ends the header phase: the timer is cancelled; returns the peer for messages.
    fn finish(&mut self, transport: &Transport) -> Address {
        let old = std::mem::replace(&mut self.state, State::Done);
        if let State::Reading {
            timer, socket_peer, ..
        } = old
        {
            if let Some(timer) = timer {
                let _ = timer.cancel();
            }
            return socket_peer.unwrap_or_else(|| transport.peer_addr());
        }
        transport.peer_addr()
    }

    fn refuse(&mut self, transport: &Transport, why: &str) {
        let peer = self.finish(transport);
        log::warn!("closing the connection from {peer}: {why}");
        transport.abort_connection();
    }

    fn accept(&mut self, transport: &Transport, header: ProxyHeader, received: &[u8]) {
        let socket_peer = self.finish(transport);
        if let Some(client) = header.source() {
            if let Err(e) = transport.set_peer_addr(client) {
                log::warn!(
                    "closing the connection from {socket_peer}: cannot use the address in \
                     its PROXY header: {e}"
                );
                transport.abort_connection();
                return;
            }
        }
        let peer = transport.peer_addr();
        log::debug!("PROXY header from {socket_peer}: the client is {peer}");
        if let Err(e) = transport.attach_extra(header) {
            log::debug!("the PROXY header cannot be kept on the transport: {e}");
        }
        match self.build.build(&peer) {
            None => transport.abort_connection(), // refused by the factory
            Some(protocol) => {
                if let Some(forward) = handoff::start(transport, protocol, received) {
                    self.state = State::Forwarding(forward);
                }
            }
        }
    }

    fn scheduler(&self) -> Rc<dyn Scheduler> {
        match &self.scheduler {
            Some(s) => Rc::clone(s),
            None => Reactor::current().scheduler(),
        }
    }
}

impl Protocol for ProxyHeaderLayer {
    fn connection_made(&mut self, transport: &Transport) {
        let scheduler = self.scheduler();
        let timeout = self.timeout;
        match &mut self.state {
            State::Reading {
                timer,
                told,
                received,
                socket_peer,
                ..
            } => {
                let peer = transport.peer_addr();
                *socket_peer = Some(peer.clone());
                let (t, told, received) = (transport.clone(), Rc::clone(told), Rc::clone(received));
                *timer = Some(scheduler.call_later(timeout, move || {
                    told.set(true);
                    log::warn!(
                        "closing the connection from {peer}: no complete PROXY header within \
                         {timeout:?} ({} bytes of it received)",
                        received.get()
                    );
                    t.abort_connection();
                }));
            }
            State::Forwarding(f) => f.connection_made(transport),
            State::Done => {}
        }
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        let parsed = match &mut self.state {
            State::Reading {
                reader, received, ..
            } => {
                let parsed = reader.feed(data);
                received.set(reader.buffered());
                parsed
            }
            State::Forwarding(f) => return f.data_received(transport, data),
            State::Done => return,
        };
        match parsed {
            Ok(None) => {}
            Ok(Some((header, used))) => self.accept(transport, header, &data[used..]),
            Err(e) => self.refuse(transport, &e.to_string()),
        }
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        match &mut self.state {
            State::Reading { received, .. } => {
                let n = received.get();
                let peer = self.finish(transport);
                if n == 0 {
                    // A port probe or a health check that only connects: not worth a warning.
                    log::info!("the connection from {peer} closed without sending anything");
                } else {
                    log::warn!(
                        "closing the connection from {peer}: it closed before its PROXY \
                         header was complete ({n} bytes of it received)"
                    );
                }
                false
            }
            State::Forwarding(f) => f.eof_received(transport),
            State::Done => false,
        }
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Reading {
                timer,
                told,
                socket_peer,
                ..
            } => {
                if let Some(timer) = timer {
                    let _ = timer.cancel();
                }
                let peer = socket_peer.map_or_else(|| "(unknown)".to_owned(), |p| p.to_string());
                match reason {
                    _ if told.get() => {}
                    ConnectionLost::Reset(_) => log::warn!(
                        "the connection from {peer} was lost before its PROXY header was \
                         complete: {reason}"
                    ),
                    _ => log::debug!(
                        "the connection from {peer} ended before its PROXY header was \
                         complete: {reason}"
                    ),
                }
            }
            State::Forwarding(mut f) => f.connection_lost(reason),
            State::Done => {}
        }
    }

    fn pause_writing(&mut self, transport: &Transport) {
        if let State::Forwarding(f) = &mut self.state {
            f.pause_writing(transport);
        }
    }

    fn resume_writing(&mut self, transport: &Transport) {
        if let State::Forwarding(f) = &mut self.state {
            f.resume_writing(transport);
        }
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        if let State::Forwarding(f) = &mut self.state {
            f.reading_resumed(transport);
        }
    }
}
