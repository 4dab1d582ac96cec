//! The connections a listening port accepted that are still open: what a server that
//! drains on stop closes (the way the reactor's shutdown winds them down) and waits for.
//!
//! The port keeps only a count. Each accepted connection holds a weak pointer to it, and
//! takes itself off the count after its `connection_lost` has run; when the count reaches
//! zero, the Deferreds waiting for that fire. Winding the port's connections down finds
//! them among the reactor's registered sources (a rare event, paid for then, rather than a
//! list entry per connection that a server holding many idle connections would pay for).

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use super::conn::OnLost;
use crate::defer::deferred::{Deferred, Resolver};
use crate::event_loop::Inner;
use crate::io::{Source, Wind};

/// One port's open connections.
pub(crate) struct Accepted {
    inner: Weak<Inner>,
    open: Cell<usize>,
    idle: RefCell<Vec<Resolver<()>>>,
}

impl Accepted {
    pub(crate) fn new(inner: &Rc<Inner>) -> Rc<Accepted> {
        Rc::new(Accepted {
            inner: Rc::downgrade(inner),
            open: Cell::new(0),
            idle: RefCell::new(Vec::new()),
        })
    }

    /// Counts a connection about to start, and returns what it does after its
    /// `connection_lost` (takes itself off the count). If it does not start, call
    /// [`remove`](Accepted::remove).
    pub(crate) fn add(self: &Rc<Self>) -> OnLost {
        self.open.set(self.open.get() + 1);
        OnLost::Untrack(Rc::downgrade(self))
    }

    /// Takes a connection off the count (its `connection_lost` ran, or it never started).
    pub(crate) fn remove(&self) {
        let open = self.open.get().saturating_sub(1);
        self.open.set(open);
        if open == 0 {
            let waiting = std::mem::take(&mut *self.idle.borrow_mut());
            for resolver in waiting {
                resolver.resolve_quiet(Ok(()));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.open.get()
    }

    /// Whether `on_lost` is this port's: the connection holding it was accepted here.
    pub(crate) fn owns(&self, on_lost: &OnLost) -> bool {
        matches!(on_lost, OnLost::Untrack(port) if std::ptr::eq(port.as_ptr(), self))
    }

    /// Winds every open connection down as the reactor's shutdown does: `Graceful` stops
    /// reading, flushes and closes; `Abort` closes at once. No user code runs inside.
    pub(crate) fn wind_down(&self, how: Wind) {
        if self.open.get() == 0 {
            return;
        }
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mine: Vec<Rc<dyn Source>> = inner
            .registry
            .all_sources()
            .into_iter()
            .filter(|source| source.accepted_by(self))
            .collect();
        for conn in mine {
            conn.wind_down(&inner, how);
        }
    }

    /// Fires once no connection is open (at once if none is).
    #[track_caller]
    pub(crate) fn when_idle(&self) -> Deferred<()> {
        if self.open.get() == 0 {
            return Deferred::succeed(());
        }
        let (d, resolver) = Deferred::new();
        self.idle.borrow_mut().push(resolver);
        d
    }
}
