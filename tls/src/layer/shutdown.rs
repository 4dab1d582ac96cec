//! Closing TLS connections cleanly when the reactor stops: a `Before`-shutdown trigger (one
//! per reactor) calls `lose_connection` on every live TLS connection, so each encrypts what
//! waits and sends `close_notify` before the reactor flushes and closes the transports under
//! them (the reactor's own wind-down closes those directly, knowing nothing of TLS).

use std::cell::RefCell;
use std::rc::Weak;

use slab::Slab;
use torsion_reactor::{Phase, Reactor, SystemEvent, TransportBackend};

use super::Session;

thread_local! {
    static LIVE: RefCell<Slab<Weak<Session>>> = const { RefCell::new(Slab::new()) };
    /// The reactor the trigger was added to (a test may replace the thread's reactor).
    static HOOKED: RefCell<Option<Reactor>> = const { RefCell::new(None) };
}

/// Registers a session for the shutdown; returns its key (for [`forget`]).
pub(super) fn register(session: Weak<Session>) -> usize {
    let reactor = Reactor::current();
    HOOKED.with(|hooked| {
        let mut hooked = hooked.borrow_mut();
        if !hooked.as_ref().is_some_and(|r| r.same_reactor(&reactor)) {
            reactor.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, close_all);
            *hooked = Some(reactor);
        }
    });
    LIVE.with(|live| live.borrow_mut().insert(session))
}

/// The session is gone.
pub(super) fn forget(key: usize) {
    // (`try_with`: a session may be dropped while the thread's locals are torn down.)
    let _ = LIVE.try_with(|live| {
        if let Ok(mut live) = live.try_borrow_mut() {
            if live.contains(key) {
                live.remove(key);
            }
        }
    });
}

fn close_all() {
    let sessions: Vec<Weak<Session>> =
        LIVE.with(|live| live.borrow().iter().map(|(_, s)| s.clone()).collect());
    for session in sessions.iter().filter_map(Weak::upgrade) {
        session.lose_connection();
    }
}
