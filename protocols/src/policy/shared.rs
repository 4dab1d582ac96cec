//! What the wrappers share: calling a protocol from a timer, with panics contained.

use std::any::Any;
use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use torsion_reactor::{ConnectionLost, Transport};

/// The message of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Calls a protocol from outside the reactor's own dispatch (from a timer): a panic is
/// logged, recorded in `panicked` (the reason its `connection_lost` will get) and aborts
/// the connection, as the reactor does for a panic in a callback it makes.
pub(crate) fn guarded<T>(
    what: &str,
    transport: &Transport,
    panicked: &RefCell<Option<String>>,
    f: impl FnOnce() -> T,
) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Some(v),
        Err(payload) => {
            let msg = panic_message(&*payload);
            log::error!(
                "protocol panicked in {what} on the connection from {}: {msg}; \
                 aborting this connection",
                transport.peer_addr()
            );
            *panicked.borrow_mut() = Some(msg);
            transport.abort_connection();
            None
        }
    }
}

/// The reason to give the wrapped protocol: a panic caught by [`guarded`] wins.
pub(crate) fn lost_reason(
    panicked: &RefCell<Option<String>>,
    reason: &ConnectionLost,
) -> ConnectionLost {
    match panicked.borrow_mut().take() {
        Some(msg) => ConnectionLost::Panicked(msg),
        None => reason.clone(),
    }
}
