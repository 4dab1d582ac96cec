//! [`LimitConnectionsByPeer`]: at most N connections from each peer IP address.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::{Rc, Weak};

use torsion_reactor::{Address, ConnectionLost, Protocol, Transport};

use super::Policy;

type Counts = RefCell<HashMap<IpAddr, usize>>;

/// Refuses a connection when its peer's IP address already has `max_per_peer` open
/// (Twisted's `LimitConnectionsByPeer`, which is broken on Python 3).
///
/// The count is per IP address, whatever the port; an IPv4 address seen through an
/// IPv6 socket (`::ffff:192.0.2.1`) counts as that IPv4 address. Connections that have
/// no IP address (Unix sockets) are not limited. A refused connection is closed at once
/// and never reaches the wrapped factory. A slot is freed when the connection is lost.
///
/// ```
/// use torsion_protocols::policy::{LimitConnectionsByPeer, Policy};
/// use torsion_reactor::{Address, testing::Sink};
///
/// let limit = LimitConnectionsByPeer::new(2);
/// let peer = Address::Tcp("192.0.2.7:40000".parse().unwrap());
/// let a = limit.wrap(&peer, || Some(Sink));
/// let b = limit.wrap(&peer, || Some(Sink));
/// assert!(a.is_some() && b.is_some());
/// assert!(limit.wrap(&peer, || Some(Sink)).is_none()); // a third: refused
/// drop(a); // (normally: the connection is lost)
/// assert!(limit.wrap(&peer, || Some(Sink)).is_some());
/// ```
#[derive(Clone)]
pub struct LimitConnectionsByPeer {
    max_per_peer: usize,
    counts: Rc<Counts>,
}

impl LimitConnectionsByPeer {
    /// At most `max_per_peer` connections from one IP address.
    pub fn new(max_per_peer: usize) -> LimitConnectionsByPeer {
        LimitConnectionsByPeer {
            max_per_peer,
            counts: Rc::default(),
        }
    }

    /// The limit.
    pub fn max_per_peer(&self) -> usize {
        self.max_per_peer
    }

    /// How many connections from `ip` are open.
    pub fn connections_from(&self, ip: IpAddr) -> usize {
        self.counts
            .borrow()
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

impl<P: Protocol> Policy<P> for LimitConnectionsByPeer {
    type Protocol = PeerLimited<P>;

    fn wrap(&self, peer: &Address, build: impl FnOnce() -> Option<P>) -> Option<PeerLimited<P>> {
        let Some(ip) = peer.socket_addr().map(|a| a.ip().to_canonical()) else {
            return build().map(|inner| PeerLimited { inner, slot: None });
        };
        let open = self.connections_from(ip);
        if open >= self.max_per_peer {
            log::info!(
                "refusing a connection from {peer}: {open} connections from {ip} are open, \
                 the most allowed per peer"
            );
            return None;
        }
        let inner = build()?;
        *self.counts.borrow_mut().entry(ip).or_insert(0) += 1;
        Some(PeerLimited {
            inner,
            slot: Some(Slot {
                counts: Rc::downgrade(&self.counts),
                ip,
            }),
        })
    }
}

/// One counted connection; uncounted when dropped.
struct Slot {
    counts: Weak<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(counts) = self.counts.upgrade() {
            let mut counts = counts.borrow_mut();
            if let Some(n) = counts.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&self.ip);
                }
            }
        }
    }
}

/// The protocol [`LimitConnectionsByPeer`] wraps around `P`: forwards every call, and
/// frees its peer's slot when the connection is lost (or the protocol dropped).
pub struct PeerLimited<P> {
    inner: P,
    slot: Option<Slot>,
}

impl<P> PeerLimited<P> {
    /// The wrapped protocol.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The wrapped protocol, mutably.
    pub fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }
}

impl<P: Protocol> Protocol for PeerLimited<P> {
    fn connection_made(&mut self, transport: &Transport) {
        self.inner.connection_made(transport)
    }
    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.inner.data_received(transport, data)
    }
    fn eof_received(&mut self, transport: &Transport) -> bool {
        self.inner.eof_received(transport)
    }
    fn connection_lost(&mut self, reason: &ConnectionLost) {
        self.slot.take();
        self.inner.connection_lost(reason)
    }
    fn pause_writing(&mut self, transport: &Transport) {
        self.inner.pause_writing(transport)
    }
    fn resume_writing(&mut self, transport: &Transport) {
        self.inner.resume_writing(transport)
    }
    fn reading_resumed(&mut self, transport: &Transport) {
        self.inner.reading_resumed(transport)
    }
}
