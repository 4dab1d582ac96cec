//! Port forwarding (Twisted's `twisted.protocols.portforward`): every connection a
//! [`ProxyFactory`] accepts gets one connection of its own to an upstream server, and the
//! bytes flow both ways, each direction paced by the side it is written to.
//!
//! Two protocols share one link per proxied client: [`ProxyServer`] on the connection the
//! client made, [`ProxyClient`] on the connection to upstream. The rules:
//!
//! - **Connecting.** The client's connection is read only once the upstream connection is
//!   made, so what the client sends early waits in the kernel's buffers (and, once those
//!   are full, TCP stops the client): nothing is held in the proxy. If the attempt fails
//!   (refused, timed out, no such host), the failure is logged with the client's address
//!   and the client's connection is closed. If the client goes first, the attempt is
//!   cancelled.
//! - **Back-pressure.** When one side's write buffer goes above its high-water mark (its
//!   peer reads slower than the other peer sends), reading on the other side pauses, and
//!   resumes when the buffer has drained to the low mark. So each direction holds at most
//!   one write buffer's high mark plus one read in the proxy, however fast one peer sends
//!   and however slowly the other reads.
//! - **Half-close.** End-of-file from one peer shuts down the writing side of the other
//!   connection once what is buffered for it is sent, and the other direction goes on (a
//!   client can send its request, half-close, and still read the whole answer). When both
//!   directions have ended, both connections close.
//! - **Close and reset.** When either connection is lost (closed, reset, aborted, timed
//!   out), the other one is finished: what is buffered for it is sent, then its writing
//!   side is shut (its peer sees the end of file), and it closes when its peer closes. Until
//!   then it is read, and what it sends is dropped: a peer that writes before it reads (an
//!   echo server whose answers the proxy had stopped reading, for a client that did not
//!   read them) could otherwise never take those last bytes, and both would wait forever.
//!   A peer that neither reads nor closes is cut off after the linger time
//!   ([`DEFAULT_LINGER`], [`ProxyFactory::with_linger`]).
//!
//! The upstream connection is made by a closure, so any client endpoint (or a reactor
//! connector, or a choice made per client) can serve: with an endpoint string,
//! `ProxyFactory::new(move |side| endpoint.connect_protocol(side))`.
//!
//! ```no_run
//! use torsion_endpoints::{client_from_string, server_from_string};
//! use torsion_protocols::portforward::ProxyFactory;
//! use torsion_reactor::Reactor;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let reactor = Reactor::current();
//!     let upstream = client_from_string(&reactor, "tcp:host=127.0.0.1:port=9000")?;
//!     let factory = ProxyFactory::new(move |side| upstream.connect_protocol(side));
//!     server_from_string(&reactor, "tcp:8000")?.listen(factory)?;
//!     reactor.run()?;
//!     Ok(())
//! }
//! ```
//!
//! `examples/tcp_proxy.rs` is the program, and the guide's chapter `docs/tcp-proxy.md`
//! describes it and its benchmark against HAProxy.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion_reactor::{
    Address, ConnectionLost, Deferred, DelayedCall, Error, ErrorKind, Factory, Protocol, Reactor,
    Transport,
};

/// How long a connection whose other side is gone may take to send what is buffered for
/// it and see its peer close, before it is aborted.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(10);

/// How a [`ProxyFactory`] connects upstream: hands the protocol to a connect call and
/// returns its Deferred.
type Connect = dyn Fn(ProxyClient) -> Deferred<Transport>;

/// Accepts clients and forwards each one to an upstream server over a connection of its
/// own (Twisted's `ProxyFactory`). See the [module documentation](self) for the rules.
///
/// `connect` is called once per accepted client, from the client's `connection_made`,
/// with the protocol the upstream connection must run; it returns the connect call's
/// Deferred (a client endpoint's `connect_protocol` does exactly that). A failed
/// Deferred closes the client's connection, logging the error at `warn` level.
pub struct ProxyFactory {
    connect: Rc<Connect>,
    linger: Duration,
}

impl ProxyFactory {
    /// A factory that reaches upstream with `connect`.
    ///
    /// ```
    /// use std::net::TcpListener;
    /// use torsion_endpoints::{ClientEndpoint, TcpClient};
    /// use torsion_protocols::portforward::ProxyFactory;
    /// use torsion_reactor::Reactor;
    ///
    /// let reactor = Reactor::current();
    /// let upstream = ClientEndpoint::new(&reactor, TcpClient::new("127.0.0.1", 9000));
    /// let factory = ProxyFactory::new(move |side| upstream.connect_protocol(side));
    /// let port = reactor.listen_tcp("127.0.0.1:0".parse().unwrap(), factory).unwrap();
    /// assert!(port.local_addr().socket_addr().is_some());
    /// ```
    pub fn new(connect: impl Fn(ProxyClient) -> Deferred<Transport> + 'static) -> ProxyFactory {
        ProxyFactory {
            connect: Rc::new(connect),
            linger: DEFAULT_LINGER,
        }
    }

    /// Sets how long a connection whose other side is gone may take to finish (send what
    /// is buffered for it, see its peer close) before it is aborted (default
    /// [`DEFAULT_LINGER`]).
    pub fn with_linger(mut self, linger: Duration) -> ProxyFactory {
        self.linger = linger;
        self
    }
}

impl fmt::Debug for ProxyFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyFactory").finish_non_exhaustive()
    }
}

impl Factory for ProxyFactory {
    type Protocol = ProxyServer;

    fn build_protocol(&self, _peer: &Address) -> Option<ProxyServer> {
        Some(ProxyServer {
            connect: Rc::clone(&self.connect),
            linger: self.linger,
            link: None,
        })
    }
}

/// What the two protocols of one proxied client share.
struct Link {
    /// The connection the client made.
    client: Transport,
    /// The connection to upstream, once it is made.
    upstream: RefCell<Option<Transport>>,
    /// The connection attempt while it is under way: cancelled if the client goes first.
    attempt: RefCell<Option<Deferred<(), Error>>>,
    /// The client half-closed before upstream was there (its reading is paused until
    /// then, so this is a safeguard): passed on once upstream connects.
    client_eof: Cell<bool>,
    /// See [`ProxyFactory::with_linger`].
    linger: Duration,
    /// The abort waiting for the side being finished (see [`finish`]); cancelled when it
    /// closes by itself.
    lingering: RefCell<Option<DelayedCall>>,
}

impl Link {
    /// The side being finished closed (or never needed it): no abort is waiting for it.
    fn stop_lingering(&self) {
        if let Some(call) = self.lingering.borrow_mut().take() {
            let _ = call.cancel();
        }
    }
}

impl Link {
    fn with_upstream(&self, f: impl FnOnce(&Transport)) {
        if let Some(upstream) = &*self.upstream.borrow() {
            f(upstream);
        }
    }
}

/// Passes a half-close on to `to`: its writing side is shut down once its buffer is sent.
/// A transport that cannot half-close (or is already closing) is closed after the flush
/// instead, as Twisted's port forwarder always does.
fn pass_eof(to: &Transport) {
    if to.lose_write_connection().is_err() {
        to.lose_connection();
    }
}

/// The other side of a link is gone: `to` sends what is buffered for it, then shuts its
/// writing side; it is read (and what it sends dropped, as the other side is closed) until
/// its peer closes, so that a peer blocked writing to us can take our last bytes. After
/// `linger`, whatever is left is aborted.
fn finish(to: &Transport, link: &Link) {
    if to.is_closing() {
        return;
    }
    to.resume_reading();
    pass_eof(to);
    let to = to.clone();
    let call = Reactor::current().call_later(link.linger, move || to.abort_connection());
    *link.lingering.borrow_mut() = Some(call);
}

/// The protocol of the connection a client made to the proxy (Twisted's `ProxyServer`):
/// connects upstream, then forwards what the client sends.
pub struct ProxyServer {
    connect: Rc<Connect>,
    linger: Duration,
    link: Option<Rc<Link>>,
}

impl fmt::Debug for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyServer")
            .field("connected", &self.upstream().is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyServer {
    /// The connection to upstream, once it is made.
    pub fn upstream(&self) -> Option<Transport> {
        self.link.as_ref()?.upstream.borrow().clone()
    }
}

impl Protocol for ProxyServer {
    fn connection_made(&mut self, transport: &Transport) {
        // Nothing is read from the client until there is somewhere to send it.
        transport.pause_reading();
        let link = Rc::new(Link {
            client: transport.clone(),
            upstream: RefCell::new(None),
            attempt: RefCell::new(None),
            client_eof: Cell::new(false),
            linger: self.linger,
            lingering: RefCell::new(None),
        });
        let side = ProxyClient {
            link: Rc::clone(&link),
        };
        let weak: Weak<Link> = Rc::downgrade(&link);
        let client = transport.clone();
        let attempt = (self.connect)(side).then(move |connected| {
            if let Some(link) = weak.upgrade() {
                link.attempt.borrow_mut().take();
            }
            match connected {
                // `ProxyClient::connection_made` has attached it already.
                Ok(_) => {}
                // The client went first (`connection_lost` below).
                Err(err) if err.kind() == ErrorKind::Cancelled => {}
                Err(err) => {
                    log::warn!(
                        "closing the connection from {}: cannot reach upstream: {err}",
                        client.peer_addr()
                    );
                    client.lose_connection();
                }
            }
            Ok::<(), Error>(())
        });
        *link.attempt.borrow_mut() = Some(attempt);
        self.link = Some(link);
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        if let Some(link) = &self.link {
            link.with_upstream(|upstream| upstream.write(data));
        }
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        if let Some(link) = &self.link {
            match &*link.upstream.borrow() {
                Some(upstream) => pass_eof(upstream),
                None => link.client_eof.set(true),
            }
        }
        true // keep the client's connection open for what upstream still sends
    }

    // The client is not reading what upstream sends: stop reading upstream, so that
    // upstream is pushed back on instead of this buffer growing.
    fn pause_writing(&mut self, transport: &Transport) {
        if let Some(link) = &self.link {
            log::debug!(
                "{} is not reading: pausing reading from upstream",
                transport.peer_addr()
            );
            link.with_upstream(Transport::pause_reading);
        }
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        if let Some(link) = &self.link {
            link.with_upstream(Transport::resume_reading);
        }
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let Some(link) = self.link.take() else { return };
        log::debug!("proxied client {} gone: {reason}", link.client.peer_addr());
        let attempt = link.attempt.borrow_mut().take();
        if let Some(attempt) = attempt {
            attempt.cancel();
            attempt.on_result(drop);
        }
        link.stop_lingering(); // the client was the side being finished
        link.with_upstream(|upstream| finish(upstream, &link));
    }
}

/// The protocol of the proxy's connection to upstream (Twisted's `ProxyClient`): forwards
/// what upstream sends to the client. Built by [`ProxyFactory`] and handed to its connect
/// closure.
pub struct ProxyClient {
    link: Rc<Link>,
}

impl fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyClient")
            .field("client", &self.link.client.peer_addr())
            .finish_non_exhaustive()
    }
}

impl ProxyClient {
    /// The connection of the client this upstream connection serves (to choose upstream
    /// by the client's address, or to log it).
    pub fn client(&self) -> &Transport {
        &self.link.client
    }
}

impl Protocol for ProxyClient {
    fn connection_made(&mut self, transport: &Transport) {
        let link = &self.link;
        if link.client.is_closing() {
            transport.lose_connection(); // the client left while we were connecting
            return;
        }
        log::info!(
            "proxying {} to {}",
            link.client.peer_addr(),
            transport.peer_addr()
        );
        *link.upstream.borrow_mut() = Some(transport.clone());
        if link.client_eof.get() {
            pass_eof(transport);
        }
        link.client.resume_reading();
    }

    fn data_received(&mut self, _transport: &Transport, data: &[u8]) {
        self.link.client.write(data);
    }

    fn eof_received(&mut self, _transport: &Transport) -> bool {
        pass_eof(&self.link.client);
        true // keep the upstream connection open for what the client still sends
    }

    // Upstream is not reading what the client sends: stop reading the client.
    fn pause_writing(&mut self, transport: &Transport) {
        log::debug!(
            "upstream {} is not reading: pausing reading from {}",
            transport.peer_addr(),
            self.link.client.peer_addr()
        );
        self.link.client.pause_reading();
    }

    fn resume_writing(&mut self, _transport: &Transport) {
        self.link.client.resume_reading();
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        log::debug!(
            "upstream connection of {} gone: {reason}",
            self.link.client.peer_addr()
        );
        self.link.stop_lingering(); // upstream was the side being finished
        finish(&self.link.client, &self.link);
    }
}
