//! The connections a listening port accepted that are still open: what a server that
//! drains on stop closes (the way the reactor's shutdown winds them down) and waits for.
//!
//! Each accepted connection carries a lost-hook that takes it off its port's list after its
//! `connection_lost` has run; when the list empties, the Deferreds waiting for that fire.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use slab::Slab;

use super::conn::LostHook;
use crate::defer::deferred::{Deferred, Resolver};
use crate::event_loop::Inner;
use crate::io::{Source, Wind};

/// One port's open connections.
pub(crate) struct Accepted {
    inner: Weak<Inner>,
    /// `None` while a connection is being started (its entry is reserved first, so that its
    /// hook knows its key).
    open: RefCell<Slab<Option<Weak<dyn Source>>>>,
    idle: RefCell<Vec<Resolver<()>>>,
}

impl Accepted {
    pub(crate) fn new(inner: &Rc<Inner>) -> Rc<Accepted> {
        Rc::new(Accepted {
            inner: Rc::downgrade(inner),
            open: RefCell::new(Slab::new()),
            idle: RefCell::new(Vec::new()),
        })
    }

    /// Reserves an entry for a connection about to start: its key, and the hook the
    /// connection runs after its `connection_lost`.
    pub(crate) fn reserve(self: &Rc<Self>) -> (usize, LostHook) {
        let key = self.open.borrow_mut().insert(None);
        let me = Rc::downgrade(self);
        let hook: LostHook = Box::new(move |_| {
            if let Some(me) = me.upgrade() {
                me.remove(key);
            }
        });
        (key, hook)
    }

    /// The connection of a reserved entry started.
    pub(crate) fn fill(&self, key: usize, conn: Weak<dyn Source>) {
        if let Some(slot) = self.open.borrow_mut().get_mut(key) {
            *slot = Some(conn);
        }
    }

    /// Takes an entry off the list (its connection ended, or never started).
    pub(crate) fn remove(&self, key: usize) {
        let empty = {
            let mut open = self.open.borrow_mut();
            open.try_remove(key);
            open.is_empty()
        };
        if empty {
            let waiting = std::mem::take(&mut *self.idle.borrow_mut());
            for resolver in waiting {
                resolver.resolve_quiet(Ok(()));
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.open.borrow().len()
    }

    /// Winds every open connection down as the reactor's shutdown does: `Graceful` stops
    /// reading, flushes and closes; `Abort` closes at once. No user code runs inside.
    pub(crate) fn wind_down(&self, how: Wind) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let conns: Vec<Rc<dyn Source>> = self
            .open
            .borrow()
            .iter()
            .filter_map(|(_, conn)| conn.as_ref().and_then(Weak::upgrade))
            .collect();
        for conn in conns {
            conn.wind_down(&inner, how);
        }
    }

    /// Fires once no connection is open (at once if none is).
    #[track_caller]
    pub(crate) fn when_idle(&self) -> Deferred<()> {
        if self.open.borrow().is_empty() {
            return Deferred::succeed(());
        }
        let (d, resolver) = Deferred::new();
        self.idle.borrow_mut().push(resolver);
        d
    }
}
