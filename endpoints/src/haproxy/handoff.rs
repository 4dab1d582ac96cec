//! Handing a connection over from a layer that ran first (one that read or wrote a PROXY
//! header) to the protocol built after it, so that from then on the connection calls that
//! protocol directly: the layer costs nothing once the header is done.

use std::any::Any;
use std::cell::RefCell;
use std::rc::Rc;

use torsion_reactor::{ConnectionLost, Protocol, Transport};

/// The protocol handed over to, and what arrived for it while its reading was paused.
struct Slot {
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    held: RefCell<Vec<u8>>,
}

impl Slot {
    fn with(&self, f: impl FnOnce(&mut dyn Protocol)) {
        if let Some(p) = self.protocol.borrow_mut().as_mut() {
            f(&mut **p);
        }
    }
}

/// Passes every callback to the protocol handed over to: what the connection runs when
/// the protocol could not be installed directly (a transport that cannot switch
/// protocols; the protocol paused reading before the bytes that came with the header
/// could be given to it; the connection is closing).
pub(crate) struct Forward(Rc<Slot>);

impl Forward {
    fn deliver_held(&self, transport: &Transport) {
        if !transport.is_reading() {
            return;
        }
        let held = std::mem::take(&mut *self.0.held.borrow_mut());
        if !held.is_empty() {
            self.0.with(|p| p.data_received(transport, &held));
        }
    }
}

impl Protocol for Forward {
    fn connection_made(&mut self, _transport: &Transport) {
        // Its protocol was told already, by `start`.
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.deliver_held(transport);
        self.0.with(|p| p.data_received(transport, data));
    }

    fn eof_received(&mut self, transport: &Transport) -> bool {
        let mut keep_open = false;
        self.0.with(|p| keep_open = p.eof_received(transport));
        keep_open
    }

    fn connection_lost(&mut self, reason: &ConnectionLost) {
        let protocol = self.0.protocol.borrow_mut().take();
        if let Some(mut p) = protocol {
            p.connection_lost(reason);
        }
    }

    fn pause_writing(&mut self, transport: &Transport) {
        self.0.with(|p| p.pause_writing(transport));
    }

    fn resume_writing(&mut self, transport: &Transport) {
        self.0.with(|p| p.resume_writing(transport));
    }

    fn reading_resumed(&mut self, transport: &Transport) {
        self.0.with(|p| p.reading_resumed(transport));
        self.deliver_held(transport);
    }
}

/// `protocol` as one box: a protocol that already is a `Box<dyn Protocol>` (what a
/// `BoxedFactory` builds) is not boxed again.
pub(crate) fn boxed<P: Protocol>(protocol: P) -> Box<dyn Protocol> {
    let mut slot = Some(protocol);
    let any: &mut dyn Any = &mut slot;
    if let Some(already) = any.downcast_mut::<Option<Box<dyn Protocol>>>() {
        if let Some(b) = already.take() {
            return b;
        }
    }
    match slot {
        Some(p) => Box::new(p),
        None => unreachable!("the protocol is taken only when it was already boxed"),
    }
}

/// Starts `protocol` on `transport` from inside a callback of the layer that is the
/// connection's protocol now: `connection_made`, then `data_received(received)` (the bytes
/// that came after the header) unless it paused reading or closed, and makes it the
/// connection's protocol when the layer's callback returns, as if it had been there from
/// the start. Returns a [`Forward`] the layer must keep and pass its callbacks to when the
/// transport cannot switch protocols (a test double).
///
/// A protocol that calls `set_protocol` in `connection_made` gets its replacement
/// installed as usual (and the received bytes itself, as the bytes of the same read).
pub(crate) fn start(
    transport: &Transport,
    protocol: Box<dyn Protocol>,
    received: &[u8],
) -> Option<Forward> {
    let slot = Rc::new(Slot {
        protocol: RefCell::new(Some(protocol)),
        held: RefCell::new(Vec::new()),
    });
    // Installed first, so that a `set_protocol` the protocol makes below replaces it (and
    // we see that it did: the pending `Forward` is dropped).
    let installed = transport.set_protocol(Forward(Rc::clone(&slot))).is_ok();
    slot.with(|p| p.connection_made(transport));
    if !received.is_empty() {
        if transport.is_reading() {
            slot.with(|p| p.data_received(transport, received));
        } else if !transport.is_closing() {
            slot.held.borrow_mut().extend_from_slice(received);
        }
    }
    if !installed {
        return Some(Forward(slot));
    }
    if Rc::strong_count(&slot) == 1 {
        // The protocol switched to another one, which takes over instead.
        return None;
    }
    if slot.held.borrow().is_empty() && !transport.is_closing() {
        let protocol = slot.protocol.borrow_mut().take();
        if let Some(p) = protocol {
            // Replaces the pending `Forward`: the connection calls `p` directly.
            let _ = transport.set_protocol(p);
        }
    }
    None
}
